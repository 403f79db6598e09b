"""Per-label layouts: every field placed in printer dots, shared by PDF, PNG, SVG and ZPL.

Coordinates are dots at the target resolution with the origin at the top-left corner (ZPL's
convention). Symbols use a whole number of dots per module. A layout that cannot place its data
inside the label, or that would put anything inside a symbol's quiet zone, raises LayoutError
instead of printing a clipped or unreadable label.
"""

from __future__ import annotations

import math
import textwrap
from collections.abc import Callable
from dataclasses import dataclass
from typing import ClassVar

from labels import symbols
from labels.data import AUTOLOGOUS_NOTICE
from labels.data import ApheresisBagLabel
from labels.data import CourierJobTicket
from labels.data import CryoshipperLabel
from labels.data import Dpi
from labels.data import FinalProductLabel
from labels.data import LabelData
from labels.data import LabelSize
from labels.data import ProcessingLabel
from labels.data import printed_flags
from labels.symbols import Symbol

# Advance of one glyph in ems for the monospaced faces we print with (Courier, DejaVu Sans Mono).
CHAR_WIDTH = 0.6
LABEL_INCHES: dict[LabelSize, tuple[float, float]] = {
    "2x1": (2.0, 1.0),
    "4x2": (4.0, 2.0),
    "4x6": (4.0, 6.0),
}


class LayoutError(ValueError):
    """The label's data does not fit the requested size."""


@dataclass(frozen=True, slots=True)
class TextField:
    """One line of text; ``width`` is the room allotted (its height when rotated)."""

    kind: ClassVar[str] = "text"
    name: str
    x: int
    y: int
    width: int
    font: int
    text: str
    bold: bool = False
    ident: bool = False
    rotated: bool = False
    inverse: bool = False
    centered: bool = False

    @property
    def inner_font(self) -> int:
        """Glyph size actually drawn: smaller than the box for white-on-black text."""
        return round(self.font * 0.8) if self.inverse else self.font

    @property
    def bounds(self) -> tuple[int, int, int, int]:
        if self.rotated:
            return self.x, self.y, self.x + self.font, self.y + self.width
        return self.x, self.y, self.x + self.width, self.y + self.font


@dataclass(frozen=True, slots=True)
class BoxField:
    """A rectangle outline (the box around a keyboard check character)."""

    kind: ClassVar[str] = "box"
    name: str
    x: int
    y: int
    width: int
    height: int
    thickness: int

    @property
    def bounds(self) -> tuple[int, int, int, int]:
        return self.x, self.y, self.x + self.width, self.y + self.height


@dataclass(frozen=True, slots=True)
class SymbolField:
    """A symbol whose first module is at (x, y); ``reserved`` is the 2-D side kept free."""

    kind: ClassVar[str] = "symbol"
    name: str
    x: int
    y: int
    symbol: Symbol
    module: int
    bar_height: int
    reserved: int

    @property
    def width(self) -> int:
        return max(self.symbol.width, self.reserved) * self.module

    @property
    def height(self) -> int:
        if self.symbol.is_linear:
            return self.bar_height
        return max(self.symbol.height, self.reserved) * self.module

    @property
    def bounds(self) -> tuple[int, int, int, int]:
        """The symbol with its quiet zone: nothing else may be drawn here."""
        q = self.symbol.quiet_zone * self.module
        top_q = 0 if self.symbol.is_linear else q
        return self.x - q, self.y - top_q, self.x + self.width + q, self.y + self.height + top_q


Field = TextField | BoxField | SymbolField


@dataclass(frozen=True, slots=True)
class Layout:
    """A label placed in dots: the single description every output format draws."""

    template: str
    size: LabelSize
    dpi: Dpi
    width: int
    height: int
    fields: tuple[Field, ...]

    def get(self, name: str) -> Field:
        for field in self.fields:
            if field.name == name:
                return field
        raise KeyError(name)

    def group(self, prefix: str) -> tuple[Field, ...]:
        """Fields named ``prefix`` or ``prefix.<anything>``, in drawing order."""
        return tuple(f for f in self.fields if f.name == prefix or f.name.startswith(prefix + "."))

    @property
    def symbols(self) -> tuple[SymbolField, ...]:
        return tuple(f for f in self.fields if isinstance(f, SymbolField))


def text_width(text: str, font: int) -> int:
    return math.ceil(len(text) * CHAR_WIDTH * font)


def _overlaps(a: tuple[int, int, int, int], b: tuple[int, int, int, int]) -> bool:
    return a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]


class _Builder:
    def __init__(self, template: str, size: LabelSize, dpi: Dpi, *, compact: bool = False):
        inches_w, inches_h = LABEL_INCHES[size]
        self.template, self.size, self.dpi = template, size, dpi
        self.width, self.height = round(inches_w * dpi), round(inches_h * dpi)
        # X dimension about 0.25 mm for linear symbols (ISBT 128), larger for 2-D on big labels.
        self.linear_module = 2 if dpi == 203 else 3
        self.matrix_module = (2 if dpi == 203 else 3) if compact else (3 if dpi == 203 else 4)
        self.fields: list[Field] = []

    def d(self, inches: float) -> int:
        return round(inches * self.dpi)

    def pt(self, points: float) -> int:
        return max(1, round(points * self.dpi / 72))

    def _font_for(self, name: str, text: str, width: int, points: float, floor: float) -> int:
        font = self.pt(points)
        while font > self.pt(floor) and text_width(text, font) > width:
            font -= 1
        if text_width(text, font) > width:
            raise LayoutError(f"{self.template} {self.size}: {name} {text!r} does not fit")
        return font

    def text(
        self,
        name: str,
        x: int,
        y: int,
        width: int,
        text: str,
        points: float,
        *,
        min_points: float | None = None,
        bold: bool = False,
        ident: bool = False,
        inverse: bool = False,
    ) -> int:
        """Place one line; shrink it down to ``min_points`` if needed. Returns its bottom."""
        if not text:
            return y
        font = self._font_for(name, text, width, points, min_points or points)
        self.fields.append(
            TextField(name, x, y, width, font, text, bold=bold, ident=ident, inverse=inverse)
        )
        return y + font

    def paragraph(
        self,
        name: str,
        x: int,
        y: int,
        width: int,
        text: str,
        points: float,
        *,
        max_lines: int,
        min_points: float | None = None,
    ) -> int:
        """Word-wrapped lines named ``name.0``, ``name.1``...; returns the bottom."""
        if not text:
            return y
        font = self.pt(points)
        while True:
            per_line = max(1, int(width / (CHAR_WIDTH * font)))
            lines = textwrap.wrap(text, per_line, break_long_words=False)
            fits = len(lines) <= max_lines and all(text_width(s, font) <= width for s in lines)
            if fits:
                break
            if font <= self.pt(min_points or points):
                raise LayoutError(f"{self.template} {self.size}: {name} does not fit")
            font -= 1
        step = round(font * 1.15)
        for i, line in enumerate(lines):
            self.fields.append(TextField(f"{name}.{i}", x, y + i * step, width, font, line))
        return y + (len(lines) - 1) * step + font

    def linear(self, name: str, left: int, top: int, symbol: Symbol, bar: float) -> int:
        """Place a linear symbol whose quiet zone starts at ``left``. Returns its bottom."""
        m = self.linear_module
        x = left + symbol.quiet_zone * m
        self.fields.append(SymbolField(name, x, top, symbol, m, self.d(bar), 0))
        return top + self.d(bar)

    def linear_width(self, symbol: Symbol) -> int:
        return (symbol.width + 2 * symbol.quiet_zone) * self.linear_module

    def matrix_extent(self, symbol: Symbol) -> int:
        """Side of a 2-D symbol's reserved square plus quiet zones, in dots."""
        side = _reserved(symbol)
        return (side + 2 * symbol.quiet_zone) * self.matrix_module

    def matrix(self, name: str, left: int, top: int, symbol: Symbol) -> int:
        """Place a 2-D symbol whose quiet zone starts at (left, top). Returns its bottom."""
        m, q = self.matrix_module, symbol.quiet_zone * self.matrix_module
        field = SymbolField(name, left + q, top + q, symbol, m, 0, _reserved(symbol))
        self.fields.append(field)
        return field.bounds[3]

    def identifier(
        self, name: str, x: int, y: int, grouped: str, check: str, points: float, flags: str = ""
    ) -> tuple[int, int]:
        """Eye-readable identifier, its check character K in a box, then any flags rotated.

        Returns (right, bottom).
        """
        font = self.pt(points)
        side = round(font * 1.3)
        text_y = y + (side - font) // 2
        width = text_width(grouped, font)
        self.fields.append(TextField(f"{name}.text", x, text_y, width, font, grouped, ident=True))
        box_x = x + width + font // 2
        thickness = max(2, self.dpi // 100)
        self.fields.append(BoxField(f"{name}.k_box", box_x, y, side, side, thickness))
        self.fields.append(
            TextField(
                f"{name}.k",
                box_x + thickness,
                text_y,
                side - 2 * thickness,
                font,
                check,
                bold=True,
                ident=True,
                centered=True,
            )
        )
        right = box_x + side
        if flags:
            flag_font = round(font * 0.8)
            self.fields.append(
                TextField(
                    f"{name}.flags",
                    right + font // 3,
                    y,
                    text_width(flags, flag_font),
                    flag_font,
                    flags,
                    ident=True,
                    rotated=True,
                )
            )
            right += font // 3 + flag_font
        return right, y + side

    def build(self) -> Layout:
        for field in self.fields:
            x0, y0, x1, y1 = field.bounds
            if x0 < 0 or y0 < 0 or x1 > self.width or y1 > self.height:
                raise LayoutError(f"{self.template} {self.size}: {field.name} leaves the label")
            if isinstance(field, SymbolField):
                for other in self.fields:
                    other_box = other.bounds
                    if isinstance(other, SymbolField):
                        other_box = (
                            other.x,
                            other.y,
                            other.x + other.width,
                            other.y + other.height,
                        )
                    if other is not field and _overlaps(field.bounds, other_box):
                        raise LayoutError(
                            f"{self.template} {self.size}: {other.name} is inside the quiet "
                            f"zone of {field.name}"
                        )
        return Layout(
            self.template, self.size, self.dpi, self.width, self.height, tuple(self.fields)
        )


def _reserved(symbol: Symbol) -> int:
    if symbol.kind in ("datamatrix", "gs1_datamatrix"):
        return symbols.datamatrix_reserved_size(symbol)
    return symbol.width


def _version_line(b: _Builder, margin: int, version: str, points: float = 6) -> None:
    font = b.pt(points)
    b.text("version", margin, b.height - margin - font, b.width // 2, version, points)


def _reprint(b: _Builder, x: int, y: int, points: float, reprint: bool) -> int:
    if not reprint:
        return y
    width = text_width("REPRINT", b.pt(points)) + b.pt(points) // 2
    return b.text("reprint", x, y, width, "REPRINT", points, bold=True, inverse=True)


# --- ISBT 128 container labels (apheresis bag, final product) -------------------------------


def _identity_4x6(label: ApheresisBagLabel | FinalProductLabel, b: _Builder, title: str) -> None:
    m, gap = b.d(0.1), b.d(0.05)
    half = b.width // 2
    right_x, right_w, left_w = half + b.d(0.02), b.width - half - b.d(0.02) - m, half - m
    y = b.text("header", m, m, b.width - 2 * m, AUTOLOGOUS_NOTICE, 14, bold=True) + gap
    y = b.text("title", m, y, b.width - 2 * m, title, 9, min_points=7) + 2 * gap

    def quadrant(
        prefix: str, x: int, top: int, width: int, caption: str, data: str, text: str
    ) -> int:
        yy = b.text(f"{prefix}.caption", x, top, width, caption, 7) + gap // 2
        yy = b.linear(f"{prefix}.symbol", x, yy, symbols.code128(data), 0.5) + gap
        return b.text(f"{prefix}.text", x + b.d(0.1), yy, width - b.d(0.1), text, 10, min_points=7)

    # Upper left: DIN, with K boxed and non-Type-3 flags rotated (ST-001 §7.4.1).
    yy = b.text("din.caption", m, y, left_w, "DIN", 7) + gap // 2
    yy = b.linear("din.symbol", m, yy, symbols.code128(label.din_barcode), 0.5) + gap
    _, din_bottom = b.identifier(
        "din",
        m + b.d(0.1),
        yy,
        label.din_grouped,
        label.din_check_char,
        11,
        printed_flags(label.flags),
    )
    # Upper right: product code and description.
    yy = b.text("product.caption", right_x, y, right_w, "PRODUCT", 7) + gap // 2
    yy = b.linear("product.symbol", right_x, yy, symbols.code128(label.product_code_barcode), 0.5)
    product_bottom = b.paragraph(
        "product.desc",
        right_x + b.d(0.1),
        yy + gap,
        right_w - b.d(0.1),
        label.product_description,
        8,
        max_lines=3,
        min_points=6,
    )
    y = max(din_bottom, product_bottom) + 3 * gap
    if isinstance(label, ApheresisBagLabel):
        low_left = quadrant(
            "collection",
            m,
            y,
            left_w,
            "COLLECTED",
            label.collection_date_barcode,
            label.collection_date_text,
        )
        low_right = y
        if label.expiry_date_barcode:
            low_right = quadrant(
                "expiry",
                right_x,
                y,
                right_w,
                "EXPIRES",
                label.expiry_date_barcode,
                label.expiry_date_text,
            )
    else:
        low_left = quadrant(
            "expiry", m, y, left_w, "EXPIRES", label.expiry_date_barcode, label.expiry_date_text
        )
        low_right = b.text("bag", right_x, y, right_w, label.bag_text, 10, min_points=7)
        low_right = b.paragraph(
            "storage",
            right_x,
            low_right + gap,
            right_w,
            label.storage_text,
            8,
            max_lines=3,
            min_points=6,
        )
    y = max(low_left, low_right) + 3 * gap
    # Chain of identity, full width: the COI symbol is the longest linear one.
    y = b.text("coi.caption", m, y, b.width - 2 * m, "CHAIN OF IDENTITY (COI)", 7) + gap // 2
    y = b.linear("coi.symbol", m, y, symbols.code128(label.coi_barcode), 0.5) + gap
    _, y = b.identifier("coi", m + b.d(0.1), y, label.coi_grouped, label.coi_check_char, 12)
    y += 3 * gap
    # 2-D symbols: the ISBT 128 Data Matrix, and a QR link (opaque token) if given.
    matrix = symbols.datamatrix(label.datamatrix_data)
    b.matrix("matrix", m, y, matrix)
    text_x = m + b.matrix_extent(matrix) + gap
    text_right = b.width - m
    if label.qr_url is not None:
        code = symbols.qr(label.qr_url)
        text_right -= b.matrix_extent(code) + gap
        b.matrix("qr", text_right + gap, y, code)
    _reprint(b, text_x, y + gap, 12, label.reprint)
    _version_line(b, m, label.template_version)
    if text_x >= text_right:
        raise LayoutError("2-D symbols leave no room")


def _identity_4x2(label: ApheresisBagLabel | FinalProductLabel, b: _Builder) -> None:
    m, gap = b.d(0.06), b.d(0.03)
    y = b.text("header", m, m, b.width - 2 * m, AUTOLOGOUS_NOTICE, 9, bold=True) + gap
    coi = symbols.code128(label.coi_barcode)
    col_x = m + max(b.linear_width(coi), b.linear_width(symbols.code128(label.din_barcode)))
    col_x += gap
    col_w = b.width - m - col_x
    # Left: DIN and COI, each as symbol + eye-readable text + boxed K.
    yy = b.linear("din.symbol", m, y, symbols.code128(label.din_barcode), 0.25) + gap
    _, yy = b.identifier(
        "din",
        m + b.d(0.1),
        yy,
        label.din_grouped,
        label.din_check_char,
        9,
        printed_flags(label.flags),
    )
    yy = b.linear("coi.symbol", m, yy + 2 * gap, coi, 0.25) + gap
    b.identifier("coi", m + b.d(0.1), yy, label.coi_grouped, label.coi_check_char, 9)
    # Right: Data Matrix (carries product code and dates too), then text.
    yy = b.matrix("matrix", col_x, y, symbols.datamatrix(label.datamatrix_data)) + gap
    yy = b.paragraph(
        "product.desc", col_x, yy, col_w, label.product_description, 7, max_lines=2, min_points=5
    )
    lines: list[tuple[str, str]] = []
    if isinstance(label, ApheresisBagLabel):
        lines.append(("collection.text", "COLL " + label.collection_date_text))
        if label.expiry_date_text:
            lines.append(("expiry.text", "EXP " + label.expiry_date_text))
    else:
        lines.append(("expiry.text", "EXP " + label.expiry_date_text))
        lines.append(("bag", label.bag_text))
    for name, text in lines:
        yy = b.text(name, col_x, yy + gap, col_w, text, 7, min_points=5, bold=True)
    _reprint(b, col_x, yy + gap, 8, label.reprint)
    _version_line(b, m, label.template_version, 5)


def _apheresis(label: ApheresisBagLabel, size: LabelSize, dpi: Dpi) -> Layout:
    b = _Builder("apheresis_bag", size, dpi)
    if size == "4x6":
        _identity_4x6(label, b, "APHERESIS COLLECTION - STARTING MATERIAL")
    else:
        _identity_4x2(label, b)
    return b.build()


def _final_product(label: FinalProductLabel, size: LabelSize, dpi: Dpi) -> Layout:
    b = _Builder("final_product", size, dpi)
    if size == "4x6":
        _identity_4x6(label, b, "CELLULAR THERAPY PRODUCT")
    else:
        _identity_4x2(label, b)
    return b.build()


# --- Processing, shipper and courier labels --------------------------------------------------


def _processing(label: ProcessingLabel, size: LabelSize, dpi: Dpi) -> Layout:
    b = _Builder("processing", size, dpi, compact=size == "2x1")
    matrix = symbols.datamatrix(label.datamatrix_data)
    if size == "2x1":
        m, gap = b.d(0.05), b.d(0.02)
        b.matrix("matrix", m, m, matrix)
        x = m + b.matrix_extent(matrix) + gap
        w = b.width - m - x
        _, y = b.identifier("coi", x, m, label.coi_grouped, label.coi_check_char, 7)
        y = b.text("step", x, y + gap, w, label.step_text, 6, min_points=5, bold=True)
        y = b.text("container", x, y + gap, w, label.container_text, 6, min_points=5)
        _reprint(b, x, y + gap, 6, label.reprint)
        _version_line(b, m, label.template_version, 5)
        return b.build()
    m, gap = b.d(0.06), b.d(0.03)
    coi = symbols.code128(label.coi_barcode)
    y = b.text("header", m, m, b.width - 2 * m, "CELL PROCESSING - CHAIN OF IDENTITY", 9, bold=True)
    y = b.linear("coi.symbol", m, y + gap, coi, 0.3) + gap
    _, y = b.identifier("coi", m + b.d(0.1), y, label.coi_grouped, label.coi_check_char, 10)
    x = m + b.linear_width(coi)
    top = m + b.pt(9) + gap
    b.matrix("matrix", b.width - m - b.matrix_extent(matrix), top, matrix)
    w = b.width - m - b.matrix_extent(matrix) - m
    y = b.text("step", m, y + 2 * gap, w, label.step_text, 10, min_points=7, bold=True)
    y = b.text("container", m, y + gap, w, label.container_text, 9, min_points=7)
    _reprint(b, max(x, b.width // 2), y + gap, 9, label.reprint)
    _version_line(b, m, label.template_version, 5)
    return b.build()


def _cryoshipper(label: CryoshipperLabel, size: LabelSize, dpi: Dpi) -> Layout:
    b = _Builder("cryoshipper", size, dpi)
    if size == "4x2":
        return _cryoshipper_4x2(label, b)
    linear = symbols.gs1_128(label.gs1_data)
    matrix = symbols.gs1_datamatrix(label.gs1_data)
    m, gap = b.d(0.1), b.d(0.05)
    full = b.width - 2 * m
    y = b.text("header", m, m, full, "CRYOSHIPPER", 14, bold=True)
    y = b.text("serial", m, y + gap, full, label.shipper_serial, 16, ident=True)
    y = b.linear("gs1.symbol", m, y + 2 * gap, linear, 0.5) + gap
    hri_x = m + linear.quiet_zone * b.linear_module
    y = b.text("gs1.text", hri_x, y, b.width - m - hri_x, label.gs1_data, 8, min_points=6)
    y += 3 * gap
    b.matrix("matrix", m, y, matrix)
    x = m + b.matrix_extent(matrix) + 2 * gap
    w = b.width - m - x
    yy = b.text("hold_time", x, y, w, label.hold_time_text, 11, min_points=7, bold=True)
    yy = b.text("hold_until", x, yy + gap, w, label.hold_until_text, 11, min_points=7)
    yy = b.paragraph(
        "condition", x, yy + gap, w, label.condition_text, 9, max_lines=3, min_points=6
    )
    _reprint(b, x, yy + 2 * gap, 12, label.reprint)
    _version_line(b, m, label.template_version)
    return b.build()


def _cryoshipper_4x2(label: CryoshipperLabel, b: _Builder) -> Layout:
    m, gap = b.d(0.06), b.d(0.03)
    linear = symbols.gs1_128(label.gs1_data)
    matrix = symbols.gs1_datamatrix(label.gs1_data)
    matrix_x = b.width - m - b.matrix_extent(matrix)
    w = matrix_x - m - gap
    y = b.text("header", m, m, w, "CRYOSHIPPER", 9, bold=True)
    y = b.text("serial", m, y + gap, w, label.shipper_serial, 12, min_points=9, ident=True)
    y = max(y, b.matrix("matrix", matrix_x, m, matrix)) + gap
    y = b.linear("gs1.symbol", m, y, linear, 0.3) + gap
    hri_x = m + linear.quiet_zone * b.linear_module
    y = b.text("gs1.text", hri_x, y, b.width - m - hri_x, label.gs1_data, 6, min_points=5)
    full = b.width - 2 * m
    y = b.text("hold_time", m, y + 2 * gap, full, label.hold_time_text, 7, min_points=5, bold=True)
    y = b.text("hold_until", m, y + gap, full, label.hold_until_text, 7, min_points=5)
    y = b.paragraph(
        "condition", m, y + gap, full, label.condition_text, 7, max_lines=2, min_points=5
    )
    _reprint(b, m, y + gap, 8, label.reprint)
    _version_line(b, m, label.template_version, 5)
    return b.build()


def _courier(label: CourierJobTicket, size: LabelSize, dpi: Dpi) -> Layout:
    b = _Builder("courier_job", size, dpi)
    big = size == "4x6"
    m, gap = (b.d(0.1), b.d(0.05)) if big else (b.d(0.06), b.d(0.03))
    job = symbols.code128(label.job_code)
    half = b.width // 2

    def stop(prefix: str, x: int, y: int, w: int, caption: str, lines: tuple[str, ...]) -> int:
        pts = 10 if big else 7
        y = b.text(f"{prefix}.caption", x, y, w, caption, pts, bold=True) + gap // 2
        for i, line in enumerate(lines):
            y = b.text(f"{prefix}.line.{i}", x, y, w, line, pts, min_points=pts - 2) + gap // 2
        return y

    col_w = b.width - 2 * m if big else half - m - gap
    y = b.text("header", m, m, col_w, "COURIER JOB TICKET", 14 if big else 9, bold=True)
    y = b.text("job", m, y + gap, col_w, label.job_code, 20 if big else 12, ident=True, bold=True)
    y = b.linear("job.symbol", m, y + 2 * gap, job, 0.4 if big else 0.25) + 2 * gap
    tail = f"SHIPPER ..{label.shipper_serial_last4}  SEAL ..{label.seal_last4}"
    y = b.text("custody", m, y, col_w, tail, 12 if big else 8, ident=True) + 2 * gap
    pickup = (*label.pickup_address, "WINDOW " + label.pickup_window_text)
    dropoff = (*label.dropoff_address, "WINDOW " + label.dropoff_window_text)
    if big:
        y = stop("pickup", m, y, col_w, "PICKUP", pickup) + 2 * gap
        y = stop("dropoff", m, y, col_w, "DROP-OFF", dropoff) + 2 * gap
        if label.qr_url is not None:
            code = symbols.qr(label.qr_url)
            b.matrix("qr", b.width - m - b.matrix_extent(code), y, code)
        _reprint(b, m, y + gap, 12, label.reprint)
        _version_line(b, m, label.template_version)
        return b.build()
    stop("pickup", m, y, col_w, "PICKUP", pickup)
    yy = stop("dropoff", half + gap, m, col_w, "DROP-OFF", dropoff)
    _reprint(b, half + gap, yy + gap, 8, label.reprint)
    _version_line(b, m, label.template_version, 5)
    return b.build()


_LAYOUTS: dict[type, tuple[tuple[LabelSize, ...], Callable[..., Layout]]] = {
    ApheresisBagLabel: (("4x6", "4x2"), _apheresis),
    FinalProductLabel: (("4x6", "4x2"), _final_product),
    ProcessingLabel: (("2x1", "4x2"), _processing),
    CryoshipperLabel: (("4x6", "4x2"), _cryoshipper),
    CourierJobTicket: (("4x6", "4x2"), _courier),
}


def supported_sizes(label: LabelData) -> tuple[LabelSize, ...]:
    return _LAYOUTS[type(label)][0]


def layout_for(label: LabelData, size: LabelSize, dpi: Dpi) -> Layout:
    """Place every field of ``label`` for a ``size`` label printed at ``dpi``."""
    sizes, build = _LAYOUTS[type(label)]
    if size not in sizes:
        raise LayoutError(f"{type(label).__name__} has no {size} layout (supported: {sizes})")
    if dpi not in (203, 300):
        raise LayoutError(f"unsupported resolution {dpi} dpi")
    return build(label, size, dpi)
