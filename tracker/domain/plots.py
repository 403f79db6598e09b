"""Small server-rendered SVG charts: rate bars, box plots and stacked bars.

Pages embed the SVG inline, so a chart needs no script and reads the same with one. Every
chart is an ``<svg role="img">`` named by its ``<title>`` and described by a ``<desc>`` that
says in words what the picture shows; each bar or box carries its own ``<title>`` with the
exact numbers, and the page puts the same numbers in a table beside it. Colours come from one
palette whose every entry has at least 4.5:1 contrast with white (so white text on a bar and
the bar against the page both pass WCAG AA), and text is near-black on white.

Pure functions of their inputs: no database, no web framework, no clock.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from xml.sax.saxutils import escape
from xml.sax.saxutils import quoteattr

from tracker.domain.comparability import Distribution
from tracker.domain.comparability import Rate

TEXT = "#1a1a1a"
GRID = "#767676"  # 4.5:1 on white: axis lines and tick labels stay legible
BACKGROUND = "#ffffff"
# Dark enough for white text on them and for 3:1 against the page, distinguishable by hue.
PALETTE = ("#1f4e99", "#a8420a", "#2b6d2f", "#6a3d9a", "#7a5c00", "#00626b")
BOX_FILL = "#dbe6f5"

FONT = 13
ROW = 30
LABEL_MIN, LABEL_MAX = 90, 340  # the row-label column grows with its longest label
CHAR_WIDTH = 7.4  # average width of a 13 px sans-serif character
VALUE_WIDTH = 150
PLOT_WIDTH = 420
TOP = 34
AXIS_HEIGHT = 30


@dataclass(frozen=True, slots=True)
class Axis:
    minimum: float
    maximum: float
    ticks: tuple[float, ...]


def nice_axis(maximum: float, minimum: float = 0.0, target_ticks: int = 5) -> Axis:
    """Round-numbered axis covering ``minimum`` to ``maximum`` in about ``target_ticks`` steps."""
    if maximum <= minimum:  # one value (or none): give it some room
        maximum = minimum + (abs(minimum) * 0.1 or 1.0)
    span = maximum - minimum
    raw = span / target_ticks
    magnitude = 10 ** math.floor(math.log10(raw))
    step = next(m * magnitude for m in (1, 2, 2.5, 5, 10) if m * magnitude >= raw)
    bottom = step * math.floor(minimum / step + 1e-9)
    top = max(step * math.ceil(maximum / step - 1e-9), bottom + step)
    count = round((top - bottom) / step)
    return Axis(bottom, top, tuple(round(bottom + i * step, 10) for i in range(count + 1)))


def fmt(value: float, digits: int = 1) -> str:
    """A number for a label: no trailing ``.0`` and no ``-0``."""
    text = f"{value:.{digits}f}"
    if "." in text:
        text = text.rstrip("0").rstrip(".")
    return "0" if text in ("-0", "") else text


def _svg(plot_id: str, title: str, description: str, width: int, height: int, body: str) -> str:
    title_id, desc_id = f"{plot_id}-title", f"{plot_id}-desc"
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" id={quoteattr(plot_id)} role="img" '
        f'aria-labelledby="{title_id} {desc_id}" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" font-family="system-ui, sans-serif" '
        f'font-size="{FONT}" class="plot">'
        f"<title id={quoteattr(title_id)}>{escape(title)}</title>"
        f"<desc id={quoteattr(desc_id)}>{escape(description)}</desc>"
        f'<rect width="{width}" height="{height}" fill="{BACKGROUND}"/>'
        f'<text x="0" y="{FONT + 4}" font-weight="600" fill="{TEXT}">{escape(title)}</text>'
        f"{body}</svg>"
    )


def label_width(labels: Sequence[str]) -> float:
    """Room for the longest row label (estimated: SVG text is not measured server-side)."""
    longest = max((len(label) for label in labels), default=0)
    return min(LABEL_MAX, max(LABEL_MIN, longest * CHAR_WIDTH + 16))


def _x_axis(lw: float, axis: Axis, y: float, unit: str, scale: float, digits: int = 1) -> str:
    parts = [f'<line x1="{lw}" x2="{lw + PLOT_WIDTH}" y1="{y:.1f}" y2="{y:.1f}" stroke="{GRID}"/>']
    for tick in axis.ticks:
        x = lw + (tick - axis.minimum) * scale
        parts.append(
            f'<line x1="{x:.1f}" x2="{x:.1f}" y1="{y:.1f}" y2="{y + 4:.1f}" stroke="{GRID}"/>'
            f'<text x="{x:.1f}" y="{y + 17:.1f}" text-anchor="middle" fill="{TEXT}" '
            f'class="tick">{escape(fmt(tick, digits))}</text>'
        )
    parts.append(
        f'<text x="{lw + PLOT_WIDTH}" y="{y + 29:.1f}" text-anchor="end" '
        f'fill="{TEXT}" class="axis-unit">{escape(unit)}</text>'
    )
    return "".join(parts)


def _row_label(lw: float, label: str, y: float) -> str:
    room = int((lw - 16) / CHAR_WIDTH)
    shown = label if len(label) <= room else label[: room - 1] + "…"
    full = f"<title>{escape(label)}</title>" if shown != label else ""
    return (
        f'<text x="{lw - 8}" y="{y:.1f}" text-anchor="end" dominant-baseline="middle" '
        f'fill="{TEXT}" class="row-label">{full}{escape(shown)}</text>'
    )


def _value_label(lw: float, text: str, y: float) -> str:
    return (
        f'<text x="{lw + PLOT_WIDTH + 8}" y="{y:.1f}" dominant-baseline="middle" '
        f'fill="{TEXT}" class="value">{escape(text)}</text>'
    )


def rate_bars(
    plot_id: str, title: str, rows: Sequence[tuple[str, Rate]], *, description: str = ""
) -> str:
    """Horizontal bars from 0 to 100 %, one per row, each labelled with its share and n."""
    lw = label_width([label for label, _ in rows])
    width = round(lw) + PLOT_WIDTH + VALUE_WIDTH
    height = TOP + ROW * len(rows) + AXIS_HEIGHT + 6
    scale = PLOT_WIDTH / 100
    parts = []
    words = []
    for i, (label, rate) in enumerate(rows):
        y = TOP + i * ROW
        middle = y + ROW / 2
        counted = f"{rate.numerator} of {rate.denominator}"
        text = f"{rate.percent} ({counted})" if rate.denominator else "no data (n = 0)"
        parts.append(_row_label(lw, label, middle))
        if rate.value is not None:
            bar = rate.value * 100 * scale
            parts.append(
                f'<rect class="bar" x="{lw}" y="{y + 6}" width="{bar:.1f}" '
                f'height="{ROW - 12}" fill="{PALETTE[0]}" data-value="{rate.value:.6f}">'
                f"<title>{escape(f'{label}: {text}')}</title></rect>"
            )
        parts.append(_value_label(lw, text, middle))
        words.append(f"{label} {text}")
    axis = Axis(0, 100, (0, 20, 40, 60, 80, 100))
    parts.append(_x_axis(lw, axis, TOP + ROW * len(rows) + 2, "%", scale, 0))
    return _svg(plot_id, title, description or "; ".join(words), width, height, "".join(parts))


def box_plots(
    plot_id: str,
    title: str,
    unit: str,
    rows: Sequence[tuple[str, Distribution]],
    *,
    description: str = "",
) -> str:
    """One horizontal box per row: whiskers at minimum and maximum, box from Q1 to Q3."""
    lw = label_width([label for label, _ in rows])
    width = round(lw) + PLOT_WIDTH + VALUE_WIDTH
    height = TOP + ROW * len(rows) + AXIS_HEIGHT + 6
    known = [d for _, d in rows if d.n]
    low = min((d.minimum for d in known if d.minimum is not None), default=0.0)
    high = max((d.maximum for d in known if d.maximum is not None), default=1.0)
    # Start at zero for positive data so boxes compare by length, unless zero squashes them.
    axis = nice_axis(high, 0.0 if 0 <= low <= high * 0.5 else low)
    origin = axis.minimum
    scale = PLOT_WIDTH / (axis.maximum - origin)
    parts = []
    words = []

    def x(value: float) -> float:
        return lw + (value - origin) * scale

    for i, (label, d) in enumerate(rows):
        y = TOP + i * ROW
        middle = y + ROW / 2
        parts.append(_row_label(lw, label, middle))
        if (
            d.n
            and d.minimum is not None
            and d.q1 is not None
            and d.median is not None
            and d.q3 is not None
            and d.maximum is not None
        ):
            summary = (
                f"n {d.n}, median {fmt(d.median)} {unit}, quartiles {fmt(d.q1)} to "
                f"{fmt(d.q3)}, range {fmt(d.minimum)} to {fmt(d.maximum)}"
            )
            parts.append(
                f'<g class="box" data-median="{d.median:.6f}"><title>{escape(label)}: '
                f"{escape(summary)}</title>"
                f'<line x1="{x(d.minimum):.1f}" x2="{x(d.maximum):.1f}" y1="{middle:.1f}" '
                f'y2="{middle:.1f}" stroke="{PALETTE[0]}" class="whisker"/>'
                f'<line x1="{x(d.minimum):.1f}" x2="{x(d.minimum):.1f}" y1="{y + 9}" '
                f'y2="{y + ROW - 9}" stroke="{PALETTE[0]}"/>'
                f'<line x1="{x(d.maximum):.1f}" x2="{x(d.maximum):.1f}" y1="{y + 9}" '
                f'y2="{y + ROW - 9}" stroke="{PALETTE[0]}"/>'
                f'<rect x="{x(d.q1):.1f}" y="{y + 5}" width="{max(x(d.q3) - x(d.q1), 1):.1f}" '
                f'height="{ROW - 10}" fill="{BOX_FILL}" stroke="{PALETTE[0]}" class="iqr"/>'
                f'<line x1="{x(d.median):.1f}" x2="{x(d.median):.1f}" y1="{y + 5}" '
                f'y2="{y + ROW - 5}" stroke="{TEXT}" stroke-width="3" class="median"/></g>'
            )
            parts.append(_value_label(lw, f"median {fmt(d.median)} (n = {d.n})", middle))
            words.append(f"{label}: {summary}")
        else:
            parts.append(_value_label(lw, "no data (n = 0)", middle))
            words.append(f"{label}: no data")
    parts.append(_x_axis(lw, axis, TOP + ROW * len(rows) + 2, unit, scale))
    return _svg(plot_id, title, description or "; ".join(words), width, height, "".join(parts))


def stacked_bars(
    plot_id: str,
    title: str,
    unit: str,
    segments: Sequence[str],
    rows: Sequence[tuple[str, Sequence[float | None]]],
    *,
    description: str = "",
) -> str:
    """One horizontal bar per row made of its segments end to end, with a legend below."""
    lw = label_width([label for label, _ in rows])
    width = round(lw) + PLOT_WIDTH + VALUE_WIDTH
    legend_rows = len(segments)
    body_height = TOP + ROW * len(rows) + AXIS_HEIGHT + 14
    height = body_height + 20 * legend_rows
    total = max((sum(v or 0 for v in values) for _, values in rows), default=0.0)
    axis = nice_axis(total or 1)
    scale = PLOT_WIDTH / axis.maximum
    parts = []
    words = []
    for i, (label, values) in enumerate(rows):
        y = TOP + i * ROW
        middle = y + ROW / 2
        parts.append(_row_label(lw, label, middle))
        left = lw
        for j, (segment, value) in enumerate(zip(segments, values, strict=True)):
            if not value:
                continue
            w = value * scale
            colour = PALETTE[j % len(PALETTE)]
            parts.append(
                f'<rect class="segment" data-segment="{j}" x="{left:.1f}" y="{y + 5}" '
                f'width="{w:.1f}" height="{ROW - 10}" fill="{colour}" stroke="{BACKGROUND}">'
                f"<title>{escape(f'{label}, {segment}: {fmt(value)} {unit}')}</title></rect>"
            )
            if w > 34:  # white on every palette colour is at least 4.5:1
                parts.append(
                    f'<text x="{left + w / 2:.1f}" y="{middle:.1f}" text-anchor="middle" '
                    f'dominant-baseline="middle" fill="{BACKGROUND}" font-size="11">'
                    f"{escape(fmt(value))}</text>"
                )
            left += w
        known = [v for v in values if v is not None]
        summed = sum(known)
        text = f"sum {fmt(summed)} {unit}" if known else "no data"
        parts.append(_value_label(lw, text, middle))
        legs = ", ".join(
            f"{s} {fmt(v)} {unit}" for s, v in zip(segments, values, strict=True) if v is not None
        )
        words.append(f"{label}: {legs or 'no data'}")
    parts.append(_x_axis(lw, axis, TOP + ROW * len(rows) + 2, unit, scale))
    for j, segment in enumerate(segments):
        y = body_height + 20 * j
        parts.append(
            f'<g class="legend-entry"><rect x="{lw}" y="{y}" width="14" height="14" '
            f'fill="{PALETTE[j % len(PALETTE)]}"/><text x="{lw + 20}" y="{y + 11}" '
            f'fill="{TEXT}">{escape(segment)}</text></g>'
        )
    return _svg(plot_id, title, description or "; ".join(words), width, height, "".join(parts))


def contrast_ratio(foreground: str, background: str) -> float:
    """WCAG 2 contrast ratio of two ``#rrggbb`` colours."""

    def luminance(colour: str) -> float:
        channels = [int(colour[i : i + 2], 16) / 255 for i in (1, 3, 5)]
        linear = [c / 12.92 if c <= 0.03928 else ((c + 0.055) / 1.055) ** 2.4 for c in channels]
        return 0.2126 * linear[0] + 0.7152 * linear[1] + 0.0722 * linear[2]

    lighter, darker = sorted((luminance(foreground), luminance(background)), reverse=True)
    return (lighter + 0.05) / (darker + 0.05)
