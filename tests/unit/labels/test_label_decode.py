"""Every label template, in every output that draws symbols, decodes back to its exact data.

PDFs are rasterised with pypdfium2; SVGs with a small rasteriser for the path syntax we emit.
Each symbol is cut out along its layout bounds (quiet zone included) and read with zxing-cpp,
which must report exactly the model's bytes and the expected AIM symbology identifier.
"""

from __future__ import annotations

import io
import re
import xml.etree.ElementTree as ET

import pypdfium2
import pytest
import zxingcpp
from PIL import Image
from PIL import ImageDraw

from labels import samples
from labels.data import ApheresisBagLabel
from labels.data import CourierJobTicket
from labels.data import CryoshipperLabel
from labels.data import FinalProductLabel
from labels.data import LabelData
from labels.data import ProcessingLabel
from labels.layouts import Layout
from labels.layouts import SymbolField
from labels.layouts import layout_for
from labels.layouts import supported_sizes
from labels.render import SHEET_TILE
from labels.render import render
from labels.render import render_sheet

FORMATS = {
    "code128": zxingcpp.BarcodeFormat.Code128,
    "gs1_128": zxingcpp.BarcodeFormat.Code128,
    "datamatrix": zxingcpp.BarcodeFormat.DataMatrix,
    "gs1_datamatrix": zxingcpp.BarcodeFormat.DataMatrix,
    "qr": zxingcpp.BarcodeFormat.QRCode,
}
# GS1 AIs of fixed length: no FNC1/GS follows them inside an element string.
FIXED_LENGTH_AIS = {"00", "01", "02", "11", "12", "13", "15", "16", "17", "20", "7003"}


def gs1_transmitted(element_string: str) -> bytes:
    """What a scanner transmits for a parenthesised element string (GS after variable AIs)."""
    pairs = re.findall(r"\((\d+)\)([^(]*)", element_string)
    out = ""
    for i, (ai, value) in enumerate(pairs):
        out += ai + value
        if ai not in FIXED_LENGTH_AIS and i < len(pairs) - 1:
            out += "\x1d"
    return out.encode("ascii")


def expected_symbols(label: LabelData, size: str) -> dict[str, tuple[bytes, str]]:
    """Field name -> (decoded bytes, symbology identifier), straight from the model."""
    if isinstance(label, ApheresisBagLabel | FinalProductLabel) and size != "4x6":
        # Compact ISBT 128 layout: DIN and COI linear, everything else in the Data Matrix.
        return {
            "din.symbol": (label.din_barcode.encode(), "]C0"),
            "coi.symbol": (label.coi_barcode.encode(), "]C0"),
            "matrix": (label.datamatrix_data.encode(), "]d1"),
        }
    if isinstance(label, ApheresisBagLabel | FinalProductLabel):
        found = {
            "din.symbol": (label.din_barcode.encode(), "]C0"),
            "product.symbol": (label.product_code_barcode.encode(), "]C0"),
            "expiry.symbol": (label.expiry_date_barcode.encode(), "]C0"),
            "coi.symbol": (label.coi_barcode.encode(), "]C0"),
            "matrix": (label.datamatrix_data.encode(), "]d1"),
        }
        if isinstance(label, ApheresisBagLabel):
            found["collection.symbol"] = (label.collection_date_barcode.encode(), "]C0")
        if label.qr_url is not None:
            found["qr"] = (label.qr_url.encode(), "]Q1")
        return found
    if isinstance(label, ProcessingLabel):
        found = {"matrix": (label.datamatrix_data.encode(), "]d1")}
        if size != "2x1":  # the small label has room only for the 2-D symbol
            found["coi.symbol"] = (label.coi_barcode.encode(), "]C0")
        return found
    if isinstance(label, CryoshipperLabel):
        return {
            "gs1.symbol": (gs1_transmitted(label.gs1_data), "]C1"),
            "matrix": (gs1_transmitted(label.gs1_data), "]d2"),
        }
    assert isinstance(label, CourierJobTicket)
    found = {"job.symbol": (label.job_code.encode(), "]C0")}
    if label.qr_url is not None and size == "4x6":
        found["qr"] = (label.qr_url.encode(), "]Q1")
    return found


def rasterise_pdf(pdf: bytes, dots_per_inch: int) -> list[Image.Image]:
    document = pypdfium2.PdfDocument(pdf)
    try:
        return [page.render(scale=dots_per_inch / 72).to_pil().convert("L") for page in document]
    finally:
        document.close()


def rasterise_svg(svg: bytes, layout: Layout) -> Image.Image:
    """Fill the rectangles our symbol paths describe ("M x y h w v h h -w z", in dots)."""
    image = Image.new("L", (layout.width, layout.height), 255)
    draw = ImageDraw.Draw(image)
    for element in ET.fromstring(svg).iter("{http://www.w3.org/2000/svg}path"):
        for x, y, w, h in re.findall(r"M(\d+) (\d+)h(\d+)v(\d+)h-\d+z", element.attrib["d"]):
            x0, y0 = int(x), int(y)
            draw.rectangle((x0, y0, x0 + int(w) - 1, y0 + int(h) - 1), fill=0)
    return image


def decode_field(image: Image.Image, field: SymbolField, scale: float, origin=(0, 0)):
    x0, y0, x1, y1 = field.bounds
    pad = 0 if field.symbol.is_linear else field.module
    box = (
        round(origin[0] + (x0 - pad) * scale),
        round(origin[1] + (y0 - pad) * scale),
        round(origin[0] + (x1 + pad) * scale),
        round(origin[1] + (y1 + pad) * scale),
    )
    crop = image.crop(box)
    return zxingcpp.read_barcodes(crop, formats=FORMATS[field.symbol.kind])


def assert_layout_decodes(label: LabelData, layout: Layout, image: Image.Image, scale: float):
    expected = expected_symbols(label, layout.size)
    placed = {f.name: f for f in layout.symbols}
    assert set(placed) == set(expected)
    for name, field in placed.items():
        results = decode_field(image, field, scale)
        assert len(results) == 1, f"{name}: {len(results)} symbols read"
        assert results[0].bytes == expected[name][0], name
        assert results[0].symbology_identifier == expected[name][1], name


CASES = [
    pytest.param(label, size, id=f"{type(label).__name__}-{size}")
    for label in samples.one_of_each(reprint=True)
    for size in supported_sizes(label)
]


@pytest.mark.parametrize("dpi", [203, 300])
@pytest.mark.parametrize(("label", "size"), CASES)
def test_every_png_symbol_decodes_to_the_model_data(label: LabelData, size, dpi) -> None:
    png = render(label, "png", size=size, dpi=dpi)
    image = Image.open(io.BytesIO(png)).convert("L")
    layout = layout_for(label, size, dpi)
    assert image.size == (layout.width, layout.height)
    assert image.info["dpi"] == pytest.approx((dpi, dpi), abs=0.01)  # PNG stores dots/metre
    assert_layout_decodes(label, layout, image, 1.0)


@pytest.mark.parametrize("dpi", [203, 300])
@pytest.mark.parametrize(("label", "size"), CASES)
def test_every_pdf_symbol_decodes_after_rasterising(label: LabelData, size, dpi) -> None:
    pdf = render(label, "pdf", size=size, dpi=dpi)
    raster = 2 * dpi  # two pixels per printer dot
    (page,) = rasterise_pdf(pdf, raster)
    layout = layout_for(label, size, dpi)
    # pdfium may round the page up by one pixel
    assert page.size[0] - layout.width * 2 in (0, 1)
    assert page.size[1] - layout.height * 2 in (0, 1)
    assert_layout_decodes(label, layout, page, 2.0)


@pytest.mark.parametrize(("label", "size"), CASES)
def test_every_svg_symbol_decodes_after_rasterising(label: LabelData, size) -> None:
    svg = render(label, "svg", size=size, dpi=203)
    layout = layout_for(label, size, 203)
    assert_layout_decodes(label, layout, rasterise_svg(svg, layout), 1.0)


@pytest.mark.parametrize("paper", ["a4", "letter"])
def test_sheet_of_a_batch_decodes_every_label_in_its_cell(paper) -> None:
    batch = samples.batch(12)
    pdf = render_sheet(batch, paper)
    pages = rasterise_pdf(pdf, 406)
    assert len(pages) == 2  # ten 4x2 labels per page on both papers
    # Find each label by decoding the whole page: every identity must be there exactly once.
    decoded = []
    for page in pages:
        decoded += [(r.bytes, r.symbology_identifier) for r in zxingcpp.read_barcodes(page)]
    wanted = [v for label in batch for v in expected_symbols(label, SHEET_TILE).values()]
    assert sorted(decoded) == sorted(wanted)


def test_repeated_label_sheet_fills_a_page_with_identical_copies() -> None:
    label = samples.final_product()
    (page,) = rasterise_pdf(render(label, "pdf", size="letter"), 406)
    decoded = [(r.bytes, r.symbology_identifier) for r in zxingcpp.read_barcodes(page)]
    expected = list(expected_symbols(label, SHEET_TILE).values())
    assert sorted(decoded) == sorted(expected * 10)  # 2 columns x 5 rows of 4x2 labels
