"""ZPL II output: hand-written Jinja2 templates (one per label kind) over a layout.

Every variable reaching a template passes a filter that hex-escapes it for ``^FH_``: the
environment's ``finalize`` hook refuses any string that did not, so no raw ``^``, ``~`` or ``_``
can end up inside a field. Symbols use the printer's own encoders: ``^BC`` in mode N with the
exact subset switches of our Code 128 encoding, ``^BX`` quality 200 at a forced square size, and
``^BQ`` for QR.
"""

from __future__ import annotations

from pathlib import Path

import jinja2

from labels import symbols
from labels.layouts import Field
from labels.layouts import Layout
from labels.symbols import Symbol

FH_INDICATOR = "_"
# Escape character given to ^BX (its parameter g); doubled when it occurs in data.
DATAMATRIX_ESCAPE = "\\"
# Printable ASCII passes unescaped except ZPL's command prefixes, the ^FH indicator and the
# backslash (^FB and ^BX give it meaning).
_SAFE = frozenset(chr(c) for c in range(0x20, 0x7F)) - set("^~_\\")
_START = {103: ("A", ">9"), 104: ("B", ">:"), 105: ("C", ">;")}
_SWITCH = {
    "A": {99: ("C", ">5"), 100: ("B", ">6")},
    "B": {99: ("C", ">5"), 101: ("A", ">7")},
    "C": {100: ("B", ">6"), 101: ("A", ">7")},
}


class ZplError(ValueError):
    """Data that cannot be expressed safely in ZPL, or a template that skipped a field."""


class Escaped(str):
    """Field data already escaped for ``^FH_``."""

    __slots__ = ()


def fh(value: str) -> Escaped:
    """Hex-escape every character that is not plain printable ASCII, as UTF-8 bytes."""
    if isinstance(value, Escaped):
        return value
    out: list[str] = []
    for char in str(value):
        if char in _SAFE:
            out.append(char)
        else:
            out.extend(f"{FH_INDICATOR}{byte:02X}" for byte in char.encode("utf-8"))
    return Escaped("".join(out))


def unescape_fh(data: str) -> str:
    """Inverse of :func:`fh`: what the printer sees after ^FH processing."""
    raw = bytearray()
    i = 0
    while i < len(data):
        if data[i] == FH_INDICATOR:
            raw.append(int(data[i + 1 : i + 3], 16))
            i += 3
        else:
            raw.extend(data[i].encode("ascii"))
            i += 1
    return raw.decode("utf-8")


def code128_field(symbol: Symbol) -> Escaped:
    """^BC mode N field data reproducing our encoding symbol character by symbol character.

    The printer adds the check character and stop pattern. '>' introduces ZPL invocation codes,
    so a data '>' is written '>0'; '^' and '~' have no reliable form and are refused.
    """
    start, *values = symbols.code128_values(symbol)
    subset, code = _START[start]
    out = [code]
    for value in values:
        if value == 102:
            out.append(">8")  # FNC1
        elif value in _SWITCH[subset]:
            subset, code = _SWITCH[subset][value]
            out.append(code)
        elif subset == "B" and value < 95:
            char = chr(value + 32)
            if char in "^~":
                raise ZplError(f"Code 128 data {char!r} cannot be sent to a Zebra printer")
            out.append(">0" if char == ">" else char)
        elif subset in "AC" and value < (96 if subset == "A" else 100):
            out.append(f"{value:02d}")  # subsets A and C are programmed as digit pairs
        else:
            raise ZplError(f"Code 128 symbol character {value} in subset {subset} unsupported")
    return fh("".join(out))


def datamatrix_field(symbol: Symbol) -> Escaped:
    """^BX quality 200 field data: FNC1 as escape + '1', a literal escape doubled."""
    fnc1 = DATAMATRIX_ESCAPE + "1"
    out = [fnc1] if symbol.kind == "gs1_datamatrix" else []
    for char in symbol.payload.decode("ascii"):
        if char == "\x1d" and symbol.kind == "gs1_datamatrix":
            out.append(fnc1)  # GS1 separator
        else:
            out.append(char * 2 if char == DATAMATRIX_ESCAPE else char)
    data = "".join(out)
    return fh(data)


def _finalize(value: object) -> object:
    if isinstance(value, Escaped) or (isinstance(value, int) and not isinstance(value, bool)):
        return value
    raise ZplError(f"unescaped value {value!r} reached a ZPL template")


_ENV = jinja2.Environment(
    loader=jinja2.FileSystemLoader(Path(__file__).parent),
    undefined=jinja2.StrictUndefined,
    autoescape=False,
    trim_blocks=True,
    lstrip_blocks=True,
    keep_trailing_newline=True,
    auto_reload=False,
    finalize=_finalize,
)
_ENV.filters.update(fh=fh, code128_field=code128_field, datamatrix_field=datamatrix_field)


def render_zpl(layout: Layout) -> bytes:
    """One ``^XA...^XZ`` label format for ``layout`` (ASCII bytes; text travels as UTF-8 hex)."""
    printed: list[str] = []

    def fields(*prefixes: str) -> list[Field]:
        chosen = [f for prefix in prefixes for f in layout.group(prefix)]
        printed.extend(f.name for f in chosen)
        return chosen

    template = _ENV.get_template(f"{layout.template}.zpl.j2")
    text = template.render(layout=layout, fields=fields)
    missing = {f.name for f in layout.fields} - set(printed)
    if missing or len(printed) != len(set(printed)):
        raise ZplError(f"{layout.template}.zpl.j2 prints fields wrongly: missing {sorted(missing)}")
    return text.encode("ascii")
