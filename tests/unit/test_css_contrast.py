"""WCAG 2.1 AA contrast of every colour pair our style sheets declare (1.4.3, 1.4.11).

The browser test measures the text actually shown on a few pages; this one reads the CSS
itself, so a colour that only appears in a state no page test reaches (a countdown running
out, a refused scan, a quarantined bag) is checked too. Each rule's text colour is paired
with the background it sits on: its own, else that of the rule it is nested in (``.topbar``
for ``.topbar a``, and every variant of it such as ``.result[data-kind=stop]``), else the
page and card surfaces. The sheets are read as one cascade (a page may load more than one),
so a rule that leaves its text colour to chance is caught even where today's pages happen to
load a sheet that sets it. Text needs 4.5:1, large or not; the focus outline 3:1 on every
surface it is drawn on (1.4.11).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

STATIC = Path(__file__).resolve().parents[2] / "tracker" / "static"
SHEETS = sorted(p for p in STATIC.rglob("*.css") if "vendor" not in p.parts)
# Boxes that hold no text: the chart legend's colour samples and the camera preview.
DECORATIVE = ("swatch", "video")


Colour = tuple[float, float, float]


@dataclass(frozen=True)
class Rule:
    sheet: str
    selector: str
    props: dict[str, str]


def _rules() -> tuple[list[Rule], dict[str, str]]:
    rules: list[Rule] = []
    variables: dict[str, str] = {}
    for sheet in SHEETS:
        text = re.sub(r"/\*.*?\*/", "", sheet.read_text(), flags=re.S)
        # Innermost blocks only: rules inside @media are read like the others.
        for selectors, body in re.findall(r"([^{}]+)\{([^{}]*)\}", text):
            props = {}
            for declaration in body.split(";"):
                name, _, value = declaration.partition(":")
                if value.strip():
                    props[name.strip()] = value.replace("!important", "").strip()
            for selector in selectors.split(","):
                selector = " ".join(selector.split())
                if selector == ":root":
                    variables.update({k: v for k, v in props.items() if k.startswith("--")})
                elif selector and not selector.startswith("@"):
                    rules.append(Rule(sheet.name, selector, props))
    return rules, variables


RULES, VARIABLES = _rules()


def _colour(value: str | None) -> Colour | None:
    """The first opaque colour in a declaration value (var() resolved), or None."""
    if value is None:
        return None
    value = re.sub(r"var\((--[\w-]+)\)", lambda m: VARIABLES[m.group(1)], value)
    if m := re.search(r"#([0-9a-fA-F]{6}|[0-9a-fA-F]{3})\b", value):
        digits = m.group(1)
        if len(digits) == 3:
            digits = "".join(c * 2 for c in digits)
        return tuple(int(digits[i : i + 2], 16) for i in (0, 2, 4))  # type: ignore[return-value]
    if m := re.search(r"rgba?\(([^)]*)\)", value):
        parts = [float(p) for p in re.split(r"[,\s/]+", m.group(1).strip()) if p]
        if len(parts) == 4 and parts[3] < 1:
            return None  # translucent: only drawn behind text-free bands (chart excursions)
        return (parts[0], parts[1], parts[2])
    if re.search(r"\b(white)\b", value):
        return (255, 255, 255)
    if re.search(r"\b(black)\b", value):
        return (0, 0, 0)
    return None


def _luminance(rgb: Colour) -> float:
    def channel(c: float) -> float:
        c /= 255
        return c / 12.92 if c <= 0.03928 else ((c + 0.055) / 1.055) ** 2.4

    r, g, b = (channel(c) for c in rgb)
    return 0.2126 * r + 0.7152 * g + 0.0722 * b


def contrast(a: Colour, b: Colour) -> float:
    high, low = sorted((_luminance(a), _luminance(b)), reverse=True)
    return (high + 0.05) / (low + 0.05)


def _background(rule: Rule) -> Colour | None:
    return _colour(_background_value(rule))


def _same_element(selector: str) -> list[Rule]:
    """Less specific rules for the same element: ``button.big`` for ``button.big.yes``."""
    *outer, last = selector.split(" ")
    tokens = re.findall(r"[.#\[:]?[^.#\[:]+", last)
    bases = [" ".join([*outer, "".join(tokens[:n])]) for n in range(len(tokens) - 1, 0, -1)]
    return [r for base in bases for r in RULES if r.selector == base]


def _around(selector: str) -> list[Rule]:
    """Rules for the elements ``selector`` sits in: each ancestor and its variants."""
    parts = selector.split(" ")
    found = []
    for n in range(len(parts) - 1, 0, -1):
        ancestor = " ".join(parts[:n])
        found += [
            r
            for r in RULES
            if r.selector == ancestor or re.match(re.escape(ancestor) + r"[.\[:]", r.selector)
        ]
    return found


def _background_value(rule: Rule) -> str | None:
    return rule.props.get("background-color") or rule.props.get("background")


def _inherited(selector: str, value: Callable[[Rule], str | None]) -> list[Colour]:
    """The colours a rule without its own takes: from the most specific rule for the same
    element that sets one, else from every rule of the elements around it."""
    same = [c for r in _same_element(selector) if (c := _colour(value(r)))]
    if same:
        return same[:1]
    return [c for r in _around(selector) if (c := _colour(value(r)))]


SURFACES = {"page": _colour("var(--bg)"), "card": _colour("var(--card)")}


def _pairs() -> list[tuple[str, Colour, Colour]]:
    """Every (where, text colour, background) a rule can produce."""
    ink = _colour("var(--ink)")
    assert ink is not None
    out = []
    for rule in RULES:
        if any(word in rule.selector for word in DECORATIVE):
            continue
        own_fg, own_bg = _colour(rule.props.get("color")), _background(rule)
        if own_fg is None and own_bg is None:
            continue
        fgs = [own_fg] if own_fg else _inherited(rule.selector, lambda r: r.props.get("color"))
        bgs = [own_bg] if own_bg else _inherited(rule.selector, _background_value)
        where = f"{rule.sheet}: {rule.selector}"
        for fg in fgs or [ink]:
            for name, bg in [("its box", b) for b in bgs] or list(SURFACES.items()):
                assert bg is not None
                out.append((f"{where} (on {name} {bg})", fg, bg))
    return out


def test_the_contrast_formula_matches_wcag_reference_values():
    assert contrast((0, 0, 0), (255, 255, 255)) == pytest.approx(21.0)
    assert contrast((255, 255, 255), (255, 255, 255)) == pytest.approx(1.0)
    # #767676 on white is the lightest grey that passes AA for body text (4.54:1).
    assert contrast((0x76, 0x76, 0x76), (255, 255, 255)) == pytest.approx(4.54, abs=0.01)


def test_the_style_sheets_are_read_with_their_colour_pairs():
    names = {s.name for s in SHEETS}
    assert {"app.css", "cockpit.css", "scan.css"} <= names
    selectors = {r.selector for r in RULES}
    assert {".risk-overdue", ".sev-critical", '.result[data-kind="wrong-patient"]'} <= selectors
    pairs = _pairs()
    assert len(pairs) > 60
    # Nested rules take the background of the rule they sit in.
    assert any(w.startswith("app.css: .topbar a ") and bg == (15, 23, 42) for w, _, bg in pairs)


def test_every_text_colour_meets_aa_on_every_background_it_can_sit_on():
    failures = [
        f"{where}: {contrast(fg, bg):.2f}:1" for where, fg, bg in _pairs() if contrast(fg, bg) < 4.5
    ]
    assert failures == []


def test_the_keyboard_focus_outline_stands_out_on_every_surface():
    focus = [r for r in RULES if ":focus" in r.selector and "outline" in r.props]
    assert focus, "no focus style found"
    surfaces = [*SURFACES.values(), _colour("#0f172a")]  # pages, cards, the top bar
    for rule in focus:
        colour = _colour(rule.props["outline"])
        assert colour is not None, rule
        for surface in surfaces:
            assert surface is not None
            assert contrast(colour, surface) >= 3.0, (rule.selector, surface)
