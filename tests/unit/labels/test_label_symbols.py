"""Symbol encoders: exact round trips through zxing-cpp, module geometry, size bounds."""

from __future__ import annotations

import re

import pytest
import zxingcpp
from hypothesis import example
from hypothesis import given
from hypothesis import settings
from hypothesis import strategies as st
from PIL import Image
from PIL import ImageDraw

from labels import symbols
from labels.symbols import SymbolError

ISBT_ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789=&<>*()+,/:;'!%$#-. "
ISBT_LIKE = st.text(alphabet=ISBT_ALPHABET, min_size=1, max_size=60)


def read_one(image: Image.Image) -> zxingcpp.Barcode:
    results = zxingcpp.read_barcodes(image)
    assert len(results) == 1
    return results[0]


@pytest.mark.parametrize(
    ("encode", "data", "payload", "identifier"),
    [
        (symbols.code128, "=W99992600012300", b"=W99992600012300", "]C0"),
        (symbols.code128, "=<S1234100", b"=<S1234100", "]C0"),
        (symbols.code128, "=>026123", b"=>026123", "]C0"),
        (symbols.code128, "&/CHW99992600A1B2", b"&/CHW99992600A1B2", "]C0"),
        (symbols.datamatrix, "=W12342612345600", b"=W12342612345600", "]d1"),
        (
            symbols.gs1_128,
            "(8003)00614141000012CS0417(7003)2612091400",
            b"800300614141000012CS0417\x1d70032612091400",
            "]C1",
        ),
        (
            symbols.gs1_datamatrix,
            "(8003)00614141000012CS0417(7003)2612091400",
            b"800300614141000012CS0417\x1d70032612091400",
            "]d2",
        ),
        (symbols.qr, "https://coi.example.org/t/Q8ZK4N2PX7", None, "]Q1"),
    ],
)
def test_each_symbology_decodes_to_exact_bytes_and_identifier(
    encode, data, payload, identifier
) -> None:
    symbol = encode(data)
    result = read_one(symbols.to_image(symbol, 2))
    assert result.bytes == (payload or data.encode())
    assert result.symbology_identifier == identifier == symbol.symbology_identifier
    assert symbol.payload == result.bytes


def test_reportlab_trap_din_reads_back_unchanged_from_our_datamatrix() -> None:
    # STACK.md: reportlab's ECC200DataMatrix makes another decoder read a different DIN.
    symbol = symbols.datamatrix("=W12342612345600")
    assert symbol.width == symbol.height  # square, as ISBT 128 labels use
    assert read_one(symbols.to_image(symbol, 3)).text == "=W12342612345600"


@pytest.mark.parametrize("module", [1, 2, 3, 4])
def test_images_use_a_whole_number_of_dots_per_module(module: int) -> None:
    symbol = symbols.code128("=W99992600012300")
    image = symbols.to_image(symbol, module, bar_height=40)
    q = symbol.quiet_zone * module
    assert image.size == (symbol.width * module + 2 * q, 40 + 2 * q)
    row = image.crop((q, q, q + symbol.width * module, q + 1)).tobytes()
    assert row == bytes(0 if c == "1" else 255 for c in symbol.rows[0] for _ in range(module))


def test_linear_symbols_have_one_row_and_iso_stop_pattern() -> None:
    for symbol in (symbols.code128("=<S1234100"), symbols.gs1_128("(21)ABC123")):
        assert symbol.height == 1 and symbol.is_linear
        assert symbol.rows[0].endswith("1100011101011")


def test_code128_data_starting_with_99_reads_back_unchanged() -> None:
    # python-barcode's Code128 (the encoder STACK.md names) turns "990" into "0": not used.
    for data in ("99", "990", "99AB", "9999"):
        assert read_one(symbols.to_image(symbols.code128(data), 2)).bytes == data.encode()


def test_code128_switches_to_subset_c_for_digit_runs() -> None:
    values = symbols.code128_values(symbols.code128("=W99992600012300"))
    assert values[0] == 104 and 99 in values  # start B, then CODE C
    assert len(values) < 1 + len("=W99992600012300")


def test_gs1_mode_really_took_effect_or_the_encoder_refuses() -> None:
    with pytest.raises(SymbolError):
        symbols.gs1_128("(8003)123")  # AI 8003 needs at least 14 digits
    with pytest.raises(SymbolError):
        symbols.gs1_datamatrix("8003 no parentheses")


def test_non_ascii_code128_data_is_refused() -> None:
    with pytest.raises(SymbolError):
        symbols.code128("=W9999é")


def test_svg_paths_draw_exactly_the_module_matrix() -> None:
    symbol = symbols.datamatrix("=+03000=W99992600012300=<S1234100=>026334")
    svg = symbols.to_svg(symbol, 3)
    size = int(re.search(r'width="(\d+)"', svg).group(1))
    image = Image.new("L", (size, size), 255)
    draw = ImageDraw.Draw(image)
    for x, y, w, h in re.findall(r"M(\d+) (\d+)h(\d+)v(\d+)", svg):
        x0, y0 = int(x), int(y)
        draw.rectangle((x0, y0, x0 + int(w) - 1, y0 + int(h) - 1), fill=0)
    assert image.tobytes() == symbols.to_image(symbol, 3).tobytes()
    assert read_one(image).bytes == symbol.payload


def test_datamatrix_reserved_size_bounds_pure_ascii_encodation() -> None:
    for data in ("=W99992600012300", "A" * 40, "=+05000" + "=W99992600012300" * 5):
        symbol = symbols.datamatrix(data)
        reserved = symbols.datamatrix_reserved_size(symbol)
        assert reserved >= symbol.width
        capacity = dict(symbols.DATAMATRIX_SQUARE_CAPACITY)[reserved]
        assert capacity >= symbols.datamatrix_ascii_codewords(symbol.payload, gs1=False)
    assert symbols.datamatrix_ascii_codewords(b"1234", gs1=False) == 2
    assert symbols.datamatrix_ascii_codewords(b"12\x1d3", gs1=True) == 4


@settings(max_examples=25, deadline=None)
@given(ISBT_LIKE)
@example("99")  # python-barcode 0.16.1 encodes this as an empty symbol
@example("990")  # ... and this as "0"
@example("=W99992699000100")
def test_code128_round_trips_random_isbt_like_strings(data: str) -> None:
    result = read_one(symbols.to_image(symbols.code128(data), 2, bar_height=30))
    assert result.bytes == data.encode()
    assert result.symbology_identifier == "]C0"


@settings(max_examples=25, deadline=None)
@given(ISBT_LIKE)
def test_datamatrix_round_trips_random_isbt_like_strings(data: str) -> None:
    symbol = symbols.datamatrix(data)
    result = read_one(symbols.to_image(symbol, 2))
    assert result.bytes == data.encode()
    assert result.symbology_identifier == "]d1"
