"""The SVG charts, read back as XML: names, geometry proportional to the numbers, contrast."""

from __future__ import annotations

import xml.etree.ElementTree as ET

import pytest

from tracker.domain.comparability import Distribution
from tracker.domain.comparability import Rate
from tracker.domain.plots import BACKGROUND
from tracker.domain.plots import BOX_FILL
from tracker.domain.plots import GRID
from tracker.domain.plots import PALETTE
from tracker.domain.plots import TEXT
from tracker.domain.plots import box_plots
from tracker.domain.plots import contrast_ratio
from tracker.domain.plots import nice_axis
from tracker.domain.plots import rate_bars
from tracker.domain.plots import stacked_bars

NS = {"s": "http://www.w3.org/2000/svg"}


def _parse(svg: str) -> ET.Element:
    return ET.fromstring(svg)  # noqa: S314 - our own output, parsed to check it


def _texts(root: ET.Element) -> list[str]:
    return ["".join(t.itertext()) for t in root.iter("{http://www.w3.org/2000/svg}text")]


def _named(root: ET.Element) -> None:
    assert root.get("role") == "img"
    title_id, desc_id = (root.get("aria-labelledby") or "").split()
    title = root.find("s:title", NS)
    desc = root.find("s:desc", NS)
    assert title is not None and title.get("id") == title_id and title.text
    assert desc is not None and desc.get("id") == desc_id and desc.text


def test_rate_bars_are_as_long_as_their_share_and_say_n() -> None:
    svg = rate_bars(
        "p1",
        "First-pass release rate",
        [("North <hub>", Rate(3, 4)), ("South", Rate(1, 5)), ("East", Rate(0, 0))],
    )
    root = _parse(svg)
    _named(root)
    bars = root.findall(".//s:rect[@class='bar']", NS)
    # Two bars (East has no data); widths in proportion to 75 % and 20 %.
    assert len(bars) == 2
    widths = [float(b.get("width") or 0) for b in bars]
    assert widths[0] / widths[1] == pytest.approx(0.75 / 0.2, rel=1e-3)
    texts = _texts(root)
    assert "North <hub>" in texts  # escaped in the source, intact once parsed
    assert "75% (3 of 4)" in texts
    assert "20% (1 of 5)" in texts
    assert "no data (n = 0)" in texts
    desc = root.find("s:desc", NS)
    assert desc is not None and "South 20% (1 of 5)" in (desc.text or "")
    bar_titles = [b.find("s:title", NS) for b in bars]
    assert [t.text for t in bar_titles if t is not None] == [
        "North <hub>: 75% (3 of 4)",
        "South: 20% (1 of 5)",
    ]


def test_box_plot_places_quartiles_and_median_on_one_scale() -> None:
    a = Distribution(n=5, minimum=70, q1=80, median=85, q3=90, maximum=95)
    b = Distribution(n=2, minimum=76, q1=77, median=78, q3=79, maximum=80)
    root = _parse(box_plots("p2", "Viability", "%", [("A", a), ("B", b), ("C", Distribution(0))]))
    _named(root)
    boxes = root.findall(".//s:g[@class='box']", NS)
    assert len(boxes) == 2
    iqr = [g.find("s:rect[@class='iqr']", NS) for g in boxes]
    med = [g.find("s:line[@class='median']", NS) for g in boxes]
    assert all(r is not None for r in iqr) and all(m is not None for m in med)
    x_q1 = float(iqr[0].get("x") or 0)  # type: ignore[union-attr]
    w = float(iqr[0].get("width") or 0)  # type: ignore[union-attr]
    x_median = float(med[0].get("x1") or 0)  # type: ignore[union-attr]
    # Median 85 sits halfway between Q1 80 and Q3 90 on the shared scale.
    assert x_median - x_q1 == pytest.approx(w / 2, abs=0.2)
    # One unit is the same length in both rows.
    w_b = float(iqr[1].get("width") or 0)  # type: ignore[union-attr]
    assert w / 10 == pytest.approx(w_b / 2, abs=0.2)
    texts = _texts(root)
    assert "median 85 (n = 5)" in texts and "median 78 (n = 2)" in texts
    assert "no data (n = 0)" in texts
    assert "%" in texts


def test_stacked_bar_segments_follow_each_other_in_leg_order_with_a_legend() -> None:
    legs = ["to manufacturing", "manufacturing", "release"]
    root = _parse(
        stacked_bars(
            "p3", "Vein to vein", "h", legs, [("A", [20, 200, None]), ("B", [30, 100, 60])]
        )
    )
    _named(root)
    segments = root.findall(".//s:rect[@class='segment']", NS)
    assert len(segments) == 5  # A's unknown release leg is not drawn
    b = [s for s in segments if "B," in (s.findtext("s:title", "", NS))]
    xs = [float(s.get("x") or 0) for s in b]
    ws = [float(s.get("width") or 0) for s in b]
    assert xs[1] == pytest.approx(xs[0] + ws[0]) and xs[2] == pytest.approx(xs[1] + ws[1])
    assert ws[1] / ws[0] == pytest.approx(100 / 30, rel=1e-3)
    assert [s.get("data-segment") for s in b] == ["0", "1", "2"]
    texts = _texts(root)
    assert all(leg in texts for leg in legs)
    assert "sum 190 h" in texts and "sum 220 h" in texts
    assert b[2].findtext("s:title", "", NS) == "B, release: 60 h"


def test_every_colour_meets_wcag_aa_against_white() -> None:
    # Text is 4.5:1 or better; bars take white text, so they need 4.5:1 too.
    for colour in (*PALETTE, TEXT, GRID):
        assert contrast_ratio(colour, BACKGROUND) >= 4.5, colour
    assert contrast_ratio(TEXT, BOX_FILL) >= 4.5
    assert contrast_ratio("#000000", "#ffffff") == pytest.approx(21)
    assert contrast_ratio("#777777", "#ffffff") < 4.5


@pytest.mark.parametrize(("low", "high"), [(0, 963), (73.2, 95.2), (0, 0.37), (5, 5), (-12, 30)])
def test_axis_ticks_are_round_and_cover_the_data(low: float, high: float) -> None:
    axis = nice_axis(high, low)
    assert axis.minimum <= low and axis.maximum >= high
    assert axis.ticks[0] == axis.minimum and axis.ticks[-1] == pytest.approx(axis.maximum)
    steps = {round(b - a, 9) for a, b in zip(axis.ticks, axis.ticks[1:], strict=False)}
    assert len(steps) == 1
    assert 3 <= len(axis.ticks) <= 12


def test_row_labels_get_room_for_the_longest_and_very_long_ones_are_cut_with_their_full_title() -> (
    None
):
    long = "Manufacturing Two · standard_9d"
    root = _parse(rate_bars("p4", "Rates", [(long, Rate(1, 2)), ("B", Rate(1, 1))]))
    label = root.find(".//s:text[@class='row-label']", NS)
    assert label is not None and "".join(label.itertext()) == long
    bar = root.find(".//s:rect[@class='bar']", NS)
    assert bar is not None and float(bar.get("x") or 0) >= len(long) * 7
    huge = "x" * 120
    root = _parse(rate_bars("p5", "Rates", [(huge, Rate(1, 2))]))
    label = root.find(".//s:text[@class='row-label']", NS)
    assert label is not None and label.findtext("s:title", "", NS) == huge
    shown = (label.text or "") + (label[0].tail or "")
    assert shown.endswith("…") and len(shown) < len(huge)
