"""Barcode symbols as module matrices, and their raster and vector forms.

Encoders: zxing-cpp for Code 128 (ISBT 128 linear symbols; its zint-based writer picks the
shortest subset A/B/C mix), Data Matrix ECC 200 and the GS1 forms (FNC1); qrcode for QR. Every
symbol becomes a matrix of modules, so each output draws it at a whole number of printer dots
per module. reportlab's barcode widgets are never used: its ECC200DataMatrix mis-encodes.
python-barcode 0.16.1 is not used to encode Code 128 either: data starting with "99" comes out
as a different value ("990" reads back as "0"); we only borrow its pattern table.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from functools import lru_cache
from typing import Any
from typing import Literal
from typing import cast

import qrcode
import zxingcpp
from barcode.charsets.code128 import CODES as _C128_PATTERNS
from PIL import Image

SymbolKind = Literal["code128", "gs1_128", "datamatrix", "gs1_datamatrix", "qr"]

# AIM symbology identifiers a decoder must report for each kind.
SYMBOLOGY_IDENTIFIERS: dict[SymbolKind, str] = {
    "code128": "]C0",
    "gs1_128": "]C1",
    "datamatrix": "]d1",
    "gs1_datamatrix": "]d2",
    "qr": "]Q1",
}
_QUIET_ZONES: dict[SymbolKind, int] = {
    "code128": 10,
    "gs1_128": 10,
    "datamatrix": 1,
    "gs1_datamatrix": 1,
    "qr": 4,
}
_C128_STOP = "1100011101011"
_C128_VALUES = {pattern: value for value, pattern in enumerate(_C128_PATTERNS)}

# Square ECC 200 symbols: (size in modules, data codewords).
DATAMATRIX_SQUARE_CAPACITY: tuple[tuple[int, int], ...] = (
    (10, 3), (12, 5), (14, 8), (16, 12), (18, 18), (20, 22), (22, 30), (24, 36), (26, 44),
    (32, 62), (36, 86), (40, 114), (44, 144), (48, 174), (52, 204), (64, 280), (72, 368),
    (80, 456), (88, 576), (96, 696), (104, 816), (120, 1050), (132, 1304), (144, 1558),
)  # fmt: skip


class SymbolError(ValueError):
    """Data that the chosen symbology cannot carry, or an encoder that misbehaved."""


@dataclass(frozen=True, slots=True)
class Symbol:
    """An encoded symbol: rows of modules ('1' dark), the data and what a reader returns."""

    kind: SymbolKind
    data: str
    payload: bytes
    rows: tuple[str, ...]

    @property
    def is_linear(self) -> bool:
        return self.kind in ("code128", "gs1_128")

    @property
    def width(self) -> int:
        return len(self.rows[0])

    @property
    def height(self) -> int:
        return len(self.rows)

    @property
    def quiet_zone(self) -> int:
        """Minimum light margin on each side, in modules."""
        return _QUIET_ZONES[self.kind]

    @property
    def symbology_identifier(self) -> str:
        return SYMBOLOGY_IDENTIFIERS[self.kind]


_DARK_TO_DIGIT = bytes(0x31 if value < 128 else 0x30 for value in range(256))  # "1" dark


def _rows_from_zxing(barcode: zxingcpp.Barcode) -> tuple[str, ...]:
    image = barcode.to_image(scale=1, add_quiet_zones=False)
    height, width = image.shape
    pixels = memoryview(cast(Any, image)).tobytes()  # the stubs omit its buffer protocol
    modules = pixels.translate(_DARK_TO_DIGIT).decode("ascii")
    return tuple(modules[r * width : (r + 1) * width] for r in range(height))


def _zxing_create(data: str, fmt: zxingcpp.BarcodeFormat, expected_id: str, **kw: bool) -> Symbol:
    try:
        barcode = zxingcpp.create_barcode(data, fmt, **kw)
    except ValueError as exc:
        raise SymbolError(f"cannot encode {data!r}: {exc}") from exc
    # zxing-cpp silently ignores misspelt keyword options: prove GS1 mode (or not) took effect.
    if barcode.symbology_identifier != expected_id:
        raise SymbolError(f"encoder produced {barcode.symbology_identifier}, not {expected_id}")
    rows = _rows_from_zxing(barcode)
    if fmt == zxingcpp.BarcodeFormat.Code128:
        rows = rows[:1]  # the writer draws bars 50 rows tall; one row is the module pattern
    return Symbol(kind=_KIND_BY_ID[expected_id], data=data, payload=barcode.bytes, rows=rows)


_KIND_BY_ID: dict[str, SymbolKind] = {v: k for k, v in SYMBOLOGY_IDENTIFIERS.items()}


@lru_cache(maxsize=2048)
def code128(data: str) -> Symbol:
    """Plain Code 128 (ISBT 128 data structures)."""
    if not re.fullmatch(r"[\x20-\x7e]+", data):
        raise SymbolError("Code 128 data must be printable ASCII")
    symbol = _zxing_create(data, zxingcpp.BarcodeFormat.Code128, "]C0")
    if symbol.payload != data.encode("ascii") or not symbol.rows[0].endswith(_C128_STOP):
        raise SymbolError(f"Code 128 encoder changed {data!r}")
    return symbol


@lru_cache(maxsize=512)
def gs1_128(element_string: str) -> Symbol:
    """GS1-128 from a parenthesised element string; FNC1 leads and ends variable AIs."""
    return _zxing_create(element_string, zxingcpp.BarcodeFormat.Code128, "]C1", gs1=True)


@lru_cache(maxsize=2048)
def datamatrix(data: str) -> Symbol:
    """Data Matrix ECC 200, square (ISBT 128 2-D symbol)."""
    return _zxing_create(data, zxingcpp.BarcodeFormat.DataMatrix, "]d1", forceSquare=True)


@lru_cache(maxsize=512)
def gs1_datamatrix(element_string: str) -> Symbol:
    """GS1 DataMatrix (leading FNC1) from a parenthesised element string, square."""
    return _zxing_create(
        element_string, zxingcpp.BarcodeFormat.DataMatrix, "]d2", gs1=True, forceSquare=True
    )


@lru_cache(maxsize=512)
def qr(data: str) -> Symbol:
    """QR Code model 2, error correction M; used only for links carrying an opaque token."""
    code = qrcode.QRCode(error_correction=qrcode.constants.ERROR_CORRECT_M, border=0)
    code.add_data(data)
    code.make(fit=True)
    matrix: list[list[bool]] = code.get_matrix()
    rows = tuple("".join("1" if dark else "0" for dark in row) for row in matrix)
    return Symbol(kind="qr", data=data, payload=data.encode("utf-8"), rows=rows)


def dark_runs(symbol: Symbol) -> Iterator[tuple[int, int, int]]:
    """Yield (row, first module, run length) for every horizontal run of dark modules."""
    for r, row in enumerate(symbol.rows):
        for match in re.finditer("1+", row):
            yield r, match.start(), match.end() - match.start()


def extent(symbol: Symbol, module: int, bar_height: int) -> tuple[int, int]:
    """Width and height in dots, without quiet zone (bar_height applies to linear symbols)."""
    if symbol.is_linear:
        return symbol.width * module, bar_height
    return symbol.width * module, symbol.height * module


def to_image(
    symbol: Symbol, module: int, *, bar_height: int = 0, quiet: bool = True
) -> Image.Image:
    """Grayscale image at ``module`` pixels (printer dots) per module."""
    if module < 1:
        raise SymbolError("module size must be at least one dot")
    pixels = bytes(0 if c == "1" else 255 for row in symbol.rows for c in row)
    small = Image.frombytes("L", (symbol.width, symbol.height), pixels)
    width, height = extent(symbol, module, bar_height or 50 * module)
    image = small.resize((width, height), Image.Resampling.NEAREST)
    if not quiet:
        return image
    q = symbol.quiet_zone * module
    framed = Image.new("L", (width + 2 * q, height + 2 * q), 255)
    framed.paste(image, (q, q))
    return framed


def svg_path(symbol: Symbol, x: int, y: int, module: int, bar_height: int) -> str:
    """SVG path data drawing the dark modules at (x, y), in dots."""
    row_height = bar_height if symbol.is_linear else module
    parts = []
    for r, start, run in dark_runs(symbol):
        parts.append(f"M{x + start * module} {y + r * row_height}h{run * module}v{row_height}")
        parts.append(f"h-{run * module}z")
    return "".join(parts)


def to_svg(symbol: Symbol, module: int, *, bar_height: int = 0) -> str:
    """A standalone SVG of the symbol with its quiet zone; user units are printer dots."""
    q = symbol.quiet_zone * module
    width, height = extent(symbol, module, bar_height or 50 * module)
    path = svg_path(symbol, q, q, module, height if symbol.is_linear else module)
    w, h = width + 2 * q, height + 2 * q
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" '
        f'viewBox="0 0 {w} {h}" shape-rendering="crispEdges">'
        f'<rect width="{w}" height="{h}" fill="#fff"/><path d="{path}" fill="#000"/></svg>'
    )


def code128_values(symbol: Symbol) -> list[int]:
    """Symbol character values of a Code 128 symbol: start + data (check and stop dropped)."""
    if not symbol.is_linear:
        raise SymbolError("not a Code 128 symbol")
    modules = symbol.rows[0][: -len(_C128_STOP)]
    try:
        values = [_C128_VALUES[modules[i : i + 11]] for i in range(0, len(modules), 11)]
    except KeyError as exc:
        raise SymbolError("unknown Code 128 pattern") from exc
    *body, check = values
    expected = (body[0] + sum(i * v for i, v in enumerate(body) if i)) % 103
    if check != expected:
        raise SymbolError("Code 128 check character mismatch")
    return body


def datamatrix_ascii_codewords(payload: bytes, *, gs1: bool) -> int:
    """Codewords needed in ASCII encodation alone: an upper bound for any ECC 200 encoder."""
    count, i, n = (1 if gs1 else 0), 0, len(payload)
    while i < n:
        if i + 1 < n and payload[i : i + 2].isdigit():
            count, i = count + 1, i + 2  # a digit pair is one codeword
        else:
            count, i = count + (1 if payload[i] < 128 else 2), i + 1  # upper shift above 127
    return count


def datamatrix_reserved_size(symbol: Symbol) -> int:
    """Side, in modules, of the smallest square symbol any ECC 200 encoder can fit the data in.

    Printers run their own encoder (ZPL ^BX), so the label reserves this much room and the ZPL
    forces this size: pure ASCII encodation always fits, whatever the printer's firmware does.
    """
    needed = datamatrix_ascii_codewords(symbol.payload, gs1=symbol.kind == "gs1_datamatrix")
    for size, capacity in DATAMATRIX_SQUARE_CAPACITY:
        if capacity >= needed and size >= symbol.width:
            return size
    raise SymbolError("Data Matrix data too long for a square symbol")
