"""Render labels to PDF, PNG, SVG or ZPL II bytes.

All formats draw the same :class:`labels.layouts.Layout`, so a preview shows what the printer
prints. Symbols are drawn from their module matrices at whole printer dots per module: vector
rectangles in PDF and SVG, pixels in PNG, native printer symbologies in ZPL.
"""

from __future__ import annotations

import io
from collections.abc import Callable
from collections.abc import Sequence
from functools import lru_cache
from typing import Literal
from xml.sax.saxutils import escape

from PIL import Image
from PIL import ImageDraw
from PIL import ImageFont
from reportlab.lib.pagesizes import A4
from reportlab.lib.pagesizes import LETTER
from reportlab.pdfgen.canvas import Canvas

from labels import symbols
from labels.data import Dpi
from labels.data import LabelData
from labels.data import LabelSize
from labels.data import PaperSize
from labels.layouts import LABEL_INCHES
from labels.layouts import BoxField
from labels.layouts import Layout
from labels.layouts import LayoutError
from labels.layouts import SymbolField
from labels.layouts import TextField
from labels.layouts import layout_for
from labels.zpl import render_zpl

Format = Literal["pdf", "png", "svg", "zpl"]
Size = Literal["2x1", "4x2", "4x6", "a4", "letter"]

SHEET_TILE: LabelSize = "4x2"
_PAPER: dict[PaperSize, tuple[float, float]] = {"a4": A4, "letter": LETTER}
_SHEET_MARGIN_PT = 0.1 * 72
# Baseline of a line of text below the top of its em box (Courier/DejaVu Sans Mono ascent).
_BASELINE = 0.78
_SVG_FONT = "'DejaVu Sans Mono','Liberation Mono','Courier New',Courier,monospace"


def render(label: LabelData, fmt: Format, *, size: Size, dpi: Dpi = 203) -> bytes:
    """Render one label; ``size`` "a4"/"letter" gives a PDF sheet filled with copies of it."""
    if size == "a4" or size == "letter":
        if fmt != "pdf":
            raise LayoutError(f"{size} sheets are PDF only, not {fmt}")
        layout = layout_for(label, SHEET_TILE, dpi)
        per_page = len(_sheet_cells(_PAPER[size], layout))
        return render_sheet([label] * per_page, size, dpi=dpi)
    layout = layout_for(label, size, dpi)
    if fmt == "pdf":
        return layout_pdf(layout)
    if fmt == "png":
        return layout_png(layout)
    if fmt == "svg":
        return layout_svg(layout).encode("utf-8")
    if fmt == "zpl":
        return render_zpl(layout)
    raise ValueError(f"unknown format {fmt!r}")


def render_sheet(
    labels: Sequence[LabelData], paper: PaperSize, *, tile: LabelSize = SHEET_TILE, dpi: Dpi = 203
) -> bytes:
    """A batch of labels as one PDF of A4/Letter sheets, ``tile``-sized labels in a grid."""
    if not labels:
        raise LayoutError("no labels to place on a sheet")
    page = _PAPER[paper]
    layouts = [layout_for(label, tile, dpi) for label in labels]
    cells = _sheet_cells(page, layouts[0])
    buffer = io.BytesIO()
    canvas = Canvas(
        buffer, pagesize=page, invariant=True, pageCompression=1, initialFontName="Courier"
    )
    canvas.setTitle("labels")
    for index, layout in enumerate(layouts):
        if index and index % len(cells) == 0:
            canvas.showPage()
        x, y = cells[index % len(cells)]
        canvas.setStrokeGray(0.8)
        canvas.setLineWidth(0.25)
        w_pt, h_pt = layout.width * 72 / dpi, layout.height * 72 / dpi
        canvas.rect(x, y, w_pt, h_pt, stroke=1, fill=0)  # cutting guide
        _draw_pdf(canvas, layout, x, y)
    canvas.showPage()
    canvas.save()
    return buffer.getvalue()


def render_zpl_batch(labels: Sequence[LabelData], *, size: LabelSize, dpi: Dpi = 203) -> bytes:
    """Several labels as consecutive ``^XA...^XZ`` formats, one print job."""
    return b"".join(render_zpl(layout_for(label, size, dpi)) for label in labels)


def _sheet_cells(page: tuple[float, float], layout: Layout) -> list[tuple[float, float]]:
    """Bottom-left corners (points) of the label cells on one page, row by row from the top."""
    w_pt, h_pt = layout.width * 72 / layout.dpi, layout.height * 72 / layout.dpi
    cols = int((page[0] - 2 * _SHEET_MARGIN_PT) // w_pt)
    rows = int((page[1] - 2 * _SHEET_MARGIN_PT) // h_pt)
    if cols < 1 or rows < 1:
        raise LayoutError(f"{layout.size} labels do not fit on the sheet")
    left = (page[0] - cols * w_pt) / 2
    top = (page[1] + rows * h_pt) / 2
    return [(left + c * w_pt, top - (r + 1) * h_pt) for r in range(rows) for c in range(cols)]


# --- PDF ------------------------------------------------------------------------------------


def layout_pdf(layout: Layout) -> bytes:
    """A one-page PDF the size of the label."""
    buffer = io.BytesIO()
    inches = LABEL_INCHES[layout.size]
    canvas = Canvas(
        buffer,
        pagesize=(inches[0] * 72, inches[1] * 72),
        invariant=True,
        pageCompression=1,
        initialFontName="Courier",
    )
    canvas.setTitle(layout.template)
    _draw_pdf(canvas, layout, 0.0, 0.0)
    canvas.showPage()
    canvas.save()
    return buffer.getvalue()


def _draw_pdf(canvas: Canvas, layout: Layout, left: float, bottom: float) -> None:
    scale = 72 / layout.dpi

    def px(x: float) -> float:
        return left + x * scale

    def py(y: float) -> float:  # top-origin dots to PDF points
        return bottom + (layout.height - y) * scale

    # Symbols: one fill of integer rectangles in a dot grid with y pointing down, so every
    # module edge falls exactly on a printer dot (and the stream stays small and fast).
    canvas.saveState()
    canvas.setFillGray(0)
    canvas.transform(scale, 0, 0, -scale, left, bottom + layout.height * scale)
    ops = [_pdf_symbol_ops(f) for f in layout.fields if isinstance(f, SymbolField)]
    canvas.addLiteral("".join(ops) + "f\n")
    canvas.restoreState()
    canvas.saveState()
    canvas.setFillGray(0)
    canvas.setStrokeGray(0)
    for field in layout.fields:
        if isinstance(field, BoxField):
            line = field.thickness * scale
            canvas.setLineWidth(line)
            canvas.rect(
                px(field.x) + line / 2,
                py(field.y + field.height) + line / 2,
                field.width * scale - line,
                field.height * scale - line,
                stroke=1,
                fill=0,
            )
        elif isinstance(field, TextField):
            _draw_pdf_text(canvas, field, scale, px, py)
    canvas.restoreState()


def _pdf_symbol_ops(field: SymbolField) -> str:
    row_h = field.bar_height if field.symbol.is_linear else field.module
    m = field.module
    return "".join(
        f"{field.x + start * m} {field.y + row * row_h} {run * m} {row_h} re\n"
        for row, start, run in symbols.dark_runs(field.symbol)
    )


def _draw_pdf_text(
    canvas: Canvas,
    field: TextField,
    scale: float,
    px: Callable[[float], float],
    py: Callable[[float], float],
) -> None:
    font = "Courier-Bold" if field.bold or field.inverse else "Courier"
    size = field.inner_font * scale
    canvas.setFont(font, size)
    if field.inverse:
        box = field.font * scale
        canvas.rect(px(field.x), py(field.y + field.font), field.width * scale, box, fill=1)
        canvas.setFillGray(1)
        x = px(field.x + field.font // 4)
        baseline = field.y + field.font * 0.1 + _BASELINE * field.inner_font
        canvas.drawString(x, py(baseline), field.text)
        canvas.setFillGray(0)
    elif field.rotated:
        canvas.saveState()
        canvas.translate(px(field.x + 0.22 * field.font), py(field.y))
        canvas.rotate(-90)  # clockwise: reads top to bottom, like ZPL's R orientation
        canvas.drawString(0, 0, field.text)
        canvas.restoreState()
    elif field.centered:
        x = px(field.x + field.width / 2)
        canvas.drawCentredString(x, py(field.y + _BASELINE * field.font), field.text)
    else:
        canvas.drawString(px(field.x), py(field.y + _BASELINE * field.font), field.text)


# --- PNG ------------------------------------------------------------------------------------


@lru_cache(maxsize=64)
def _png_font(size: int, bold: bool) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    name = "DejaVuSansMono-Bold.ttf" if bold else "DejaVuSansMono.ttf"
    try:
        return ImageFont.truetype(name, size)
    except OSError:  # no DejaVu on this machine: Pillow's bundled face (not monospaced)
        return ImageFont.load_default(size)


def layout_png(layout: Layout) -> bytes:
    """A 1-bit-deep grayscale preview, one pixel per printer dot."""
    image = layout_image(layout)
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", dpi=(layout.dpi, layout.dpi), optimize=False)
    return buffer.getvalue()


def layout_image(layout: Layout) -> Image.Image:
    """The label as a grayscale PIL image at printer resolution."""
    image = Image.new("L", (layout.width, layout.height), 255)
    draw = ImageDraw.Draw(image)
    for field in layout.fields:
        if isinstance(field, SymbolField):
            symbol_image = symbols.to_image(
                field.symbol, field.module, bar_height=field.bar_height, quiet=False
            )
            image.paste(symbol_image, (field.x, field.y))
        elif isinstance(field, BoxField):
            x1, y1 = field.x + field.width - 1, field.y + field.height - 1
            draw.rectangle((field.x, field.y, x1, y1), outline=0, width=field.thickness)
        elif field.rotated:
            font = _png_font(field.font, field.bold)
            strip = Image.new("L", (field.width, field.font), 255)
            ImageDraw.Draw(strip).text((0, 0), field.text, font=font, fill=0)
            image.paste(strip.rotate(-90, expand=True), (field.x, field.y))
        elif field.inverse:
            x1, y1 = field.x + field.width - 1, field.y + field.font - 1
            draw.rectangle((field.x, field.y, x1, y1), fill=0)
            font = _png_font(field.inner_font, True)
            origin = (field.x + field.font // 4, field.y + field.font // 10)
            draw.text(origin, field.text, font=font, fill=255)
        elif field.centered:
            font = _png_font(field.font, field.bold)
            middle = (field.x + field.width / 2, field.y)
            draw.text(middle, field.text, font=font, fill=0, anchor="ma")
        else:
            font = _png_font(field.font, field.bold)
            draw.text((field.x, field.y), field.text, font=font, fill=0)
    return image


# --- SVG ------------------------------------------------------------------------------------


def layout_svg(layout: Layout) -> str:
    """An SVG preview; user units are printer dots, the physical size is the label's."""
    inches = LABEL_INCHES[layout.size]
    parts = [
        '<svg xmlns="http://www.w3.org/2000/svg" '
        f'width="{inches[0]}in" height="{inches[1]}in" '
        f'viewBox="0 0 {layout.width} {layout.height}" shape-rendering="crispEdges">',
        f'<rect width="{layout.width}" height="{layout.height}" fill="#fff"/>',
    ]
    for field in layout.fields:
        if isinstance(field, SymbolField):
            row_h = field.bar_height if field.symbol.is_linear else field.module
            d = symbols.svg_path(field.symbol, field.x, field.y, field.module, row_h)
            parts.append(f'<path data-field="{field.name}" d="{d}" fill="#000"/>')
        elif isinstance(field, BoxField):
            t = field.thickness
            parts.append(
                f'<rect x="{field.x + t / 2}" y="{field.y + t / 2}" width="{field.width - t}" '
                f'height="{field.height - t}" fill="none" stroke="#000" stroke-width="{t}"/>'
            )
        else:
            parts.append(_svg_text(field))
    parts.append("</svg>")
    return "".join(parts)


def _svg_text(field: TextField) -> str:
    weight = ' font-weight="bold"' if field.bold or field.inverse else ""
    style = f'font-family="{_SVG_FONT}" font-size="{field.inner_font}"{weight}'
    text = escape(field.text)
    if field.rotated:
        x, y = field.x + 0.22 * field.font, field.y
        return f'<text x="{x}" y="{y}" {style} transform="rotate(90 {x} {y})">{text}</text>'
    baseline = field.y + _BASELINE * field.font
    if field.inverse:
        baseline = field.y + field.font // 10 + _BASELINE * field.inner_font
        return (
            f'<rect x="{field.x}" y="{field.y}" width="{field.width}" height="{field.font}"/>'
            f'<text x="{field.x + field.font // 4}" y="{baseline}" {style} fill="#fff">'
            f"{text}</text>"
        )
    if field.centered:
        x = field.x + field.width / 2
        return f'<text x="{x}" y="{baseline}" text-anchor="middle" {style}>{text}</text>'
    return f'<text x="{field.x}" y="{baseline}" {style}>{text}</text>'
