"""ZPL II output, checked structurally and read back field by field.

Each label format is parsed command by command (only a known set of commands may appear, so a
stray '^' in data would show up as an unknown command). Every ^FD must follow ^FH_, contain only
safe characters or _XX escapes, and un-escape to the model value; ^BC field data is turned back
into Code 128 symbol characters, drawn and decoded with zxing-cpp.
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass
from dataclasses import field

import pytest
import zxingcpp
from barcode.charsets.code128 import CODES
from hypothesis import example
from hypothesis import given
from hypothesis import settings
from hypothesis import strategies as st
from PIL import Image

from labels import samples
from labels import symbols
from labels.data import ApheresisBagLabel
from labels.data import CourierJobTicket
from labels.data import CryoshipperLabel
from labels.data import FinalProductLabel
from labels.data import LabelData
from labels.data import ProcessingLabel
from labels.layouts import Layout
from labels.layouts import SymbolField
from labels.layouts import TextField
from labels.layouts import layout_for
from labels.layouts import supported_sizes
from labels.render import render
from labels.render import render_zpl_batch
from labels.zpl import ZplError
from labels.zpl import code128_field
from labels.zpl import fh
from labels.zpl import unescape_fh

ALLOWED = {"XA", "XZ", "FX", "CI", "PW", "LL", "LH", "PO", "FO", "FS", "FD", "FH", "FB", "FR"}
ALLOWED |= {"A", "BY", "BC", "BX", "BQ", "GB"}
FIELD_DATA = re.compile(r"(?:[ -\[\]`-}]|_[0-9A-F]{2})*")  # printable minus ^ _ \ ~, or _XX


@dataclass
class ZplField:
    x: int
    y: int
    commands: list[tuple[str, str]] = field(default_factory=list)

    def get(self, name: str) -> str | None:
        return next((arg for cmd, arg in self.commands if cmd == name), None)

    @property
    def data(self) -> str:
        raw = self.get("FD")
        assert raw is not None
        return raw


@dataclass
class ZplLabel:
    width: int
    height: int
    fields: list[ZplField]


def parse(payload: bytes) -> list[ZplLabel]:
    text = payload.decode("ascii")
    assert "~" not in text, "a tilde would start a ZPL control command"
    assert text.count("^XA") == text.count("^XZ") >= 1
    formats = re.findall(r"\^XA(.*?)\^XZ", text, flags=re.S)
    assert re.sub(r"\^XA.*?\^XZ", "", text, flags=re.S).strip() == ""
    labels = []
    for body in formats:
        settings_: dict[str, str] = {}
        fields: list[ZplField] = []
        current: ZplField | None = None
        for token in body.split("^")[1:]:
            token = token.rstrip("\r\n")
            cmd, arg = (token[0], token[1:]) if token[0] == "A" else (token[:2], token[2:])
            assert cmd in ALLOWED, f"unexpected command ^{token[:12]}"
            if cmd == "FO":
                assert current is None, "^FO inside an open field"
                x, y = arg.split(",")
                current = ZplField(int(x), int(y))
            elif cmd == "FS":
                assert current is not None
                fields.append(current)
                current = None
            elif current is not None:
                current.commands.append((cmd, arg))
            else:
                settings_[cmd] = arg
        assert current is None, "field left open"
        assert settings_["CI"] == "28"
        assert settings_["LH"] == "0,0"
        labels.append(ZplLabel(int(settings_["PW"]), int(settings_["LL"]), fields))
    return labels


def bc_values(data: str) -> list[int]:
    """ZPL ^BC mode N field data -> Code 128 symbol characters (start + data)."""
    starts = {">9": (103, "A"), ">:": (104, "B"), ">;": (105, "C")}
    value, subset = starts[data[:2]]
    values, i = [value], 2
    while i < len(data):
        if data[i] == ">":
            code = data[i + 1]
            i += 2
            if code == "0":
                values.append(30)  # '>' in subset B
            elif code == "8":
                values.append(102)
            else:
                switch = {"5": (99, "C"), "6": (100, "B"), "7": (101, "A")}[code]
                values.append(switch[0])
                subset = switch[1]
        elif subset == "B":
            values.append(ord(data[i]) - 32)
            i += 1
        else:
            values.append(int(data[i : i + 2]))
            i += 2
    return values


def decode_bc(data: str, module: int = 2) -> zxingcpp.Barcode:
    values = bc_values(data)
    check = (values[0] + sum(i * v for i, v in enumerate(values) if i)) % 103
    modules = "".join(CODES[v] for v in [*values, check]) + "1100011101011"
    quiet = "0" * 10
    row = bytes(0 if m == "1" else 255 for m in quiet + modules + quiet)
    image = Image.frombytes("L", (len(row), 1), row).resize((len(row) * module, 40))
    (result,) = zxingcpp.read_barcodes(image, formats=zxingcpp.BarcodeFormat.Code128)
    return result


def bx_data(data: str) -> tuple[bytes, str]:
    """^BX field data (escape '\\') -> (bytes a reader returns, symbology identifier)."""
    out, gs1, i = "", False, 0
    while i < len(data):
        if data[i] == "\\":
            code = data[i + 1]
            i += 2
            if code == "1":
                gs1 = gs1 or i == 2
                out += "" if i == 2 else "\x1d"
            else:
                assert code == "\\"
                out += "\\"
        else:
            out += data[i]
            i += 1
    return out.encode(), "]d2" if gs1 else "]d1"


def model_symbols(label: LabelData, layout: Layout) -> dict[str, SymbolField]:
    return {f.name: f for f in layout.symbols}


def check_label(label: LabelData, layout: Layout, zpl: ZplLabel) -> None:
    assert (zpl.width, zpl.height) == (layout.width, layout.height)
    texts, decoded = [], []
    for f in zpl.fields:
        assert 0 <= f.x < zpl.width and 0 <= f.y < zpl.height
        if f.get("FD") is not None:
            assert f.commands[-2] == ("FH", "_"), "every ^FD follows ^FH_"
            assert FIELD_DATA.fullmatch(f.data), f.data
        if f.get("A") is not None:
            orientation, height, _ = f.get("A").split(",")
            fb = f.get("FB")
            right = f.x + (int(fb.split(",")[0]) if fb else int(height) * 2)
            assert right <= zpl.width and f.y + int(height) <= zpl.height
            texts.append(unescape_fh(f.data))
        elif f.get("GB") is not None:
            w, h, *_ = f.get("GB").split(",")
            assert f.x + int(w) <= zpl.width and f.y + int(h) <= zpl.height
        elif f.get("BC") is not None:
            module = int(f.get("BY"))
            height = int(f.get("BC").split(",")[1])
            result = decode_bc(unescape_fh(f.data), module)
            width = (len(bc_values(unescape_fh(f.data))) + 1) * 11 * module + 13 * module
            assert f.x + width <= zpl.width and f.y + height <= zpl.height
            decoded.append((result.bytes, result.symbology_identifier))
        elif f.get("BX") is not None:
            _, module, quality, cols, rows, _, escape = f.get("BX").split(",")
            assert quality == "200" and escape == "\\" and cols == rows
            assert f.x + int(cols) * int(module) <= zpl.width
            assert f.y + int(rows) * int(module) <= zpl.height
            decoded.append(bx_data(unescape_fh(f.data)))
        elif f.get("BQ") is not None:
            assert f.data.startswith("MA,")
            decoded.append((unescape_fh(f.data[3:]).encode(), "]Q1"))
        else:
            pytest.fail(f"field without a known type: {f}")
    model_texts = [f.text for f in layout.fields if isinstance(f, TextField)]
    assert sorted(texts) == sorted(model_texts)
    wanted = [(s.symbol.payload, s.symbol.symbology_identifier) for s in layout.symbols]
    assert sorted(decoded) == sorted(wanted)
    assert label.template_version in texts


CASES = [
    pytest.param(label, size, id=f"{type(label).__name__}-{size}-{'reprint' * label.reprint}")
    for reprint in (False, True)
    for label in samples.one_of_each(reprint=reprint)
    for size in supported_sizes(label)
]


@pytest.mark.parametrize("dpi", [203, 300])
@pytest.mark.parametrize(("label", "size"), CASES)
def test_zpl_fields_are_escaped_in_bounds_and_read_back_to_the_model(label, size, dpi) -> None:
    layout = layout_for(label, size, dpi)
    (zpl,) = parse(render(label, "zpl", size=size, dpi=dpi))
    check_label(label, layout, zpl)


def test_zpl_symbols_carry_the_model_values_not_just_the_layout() -> None:
    label = samples.apheresis_bag()
    (zpl,) = parse(render(label, "zpl", size="4x6"))
    bc = {decode_bc(unescape_fh(f.data)).bytes for f in zpl.fields if f.get("BC") is not None}
    assert bc == {
        label.din_barcode.encode(),
        label.product_code_barcode.encode(),
        label.collection_date_barcode.encode(),
        label.expiry_date_barcode.encode(),
        label.coi_barcode.encode(),
    }
    (bx,) = [f for f in zpl.fields if f.get("BX") is not None]
    assert bx_data(unescape_fh(bx.data)) == (label.datamatrix_data.encode(), "]d1")


def test_gs1_datamatrix_in_zpl_starts_with_fnc1_and_separates_variable_ais() -> None:
    label = samples.cryoshipper()
    (zpl,) = parse(render(label, "zpl", size="4x2"))
    (bx,) = [f for f in zpl.fields if f.get("BX") is not None]
    assert unescape_fh(bx.data).startswith("\\1")
    data, identifier = bx_data(unescape_fh(bx.data))
    assert identifier == "]d2" and b"\x1d7003" in data
    (bc,) = [f for f in zpl.fields if f.get("BC") is not None]
    assert unescape_fh(bc.data).startswith(">;>8")  # start C, FNC1
    assert decode_bc(unescape_fh(bc.data)).symbology_identifier == "]C1"


def test_hostile_text_is_hex_escaped_and_prints_back_verbatim() -> None:
    hostile = "^XZ^XA~JA _5E \\& <tag> é ° µ"
    label = dataclasses.replace(
        samples.final_product(), product_description=hostile, storage_text="~DGR:X ^FS"
    )
    (zpl,) = parse(render(label, "zpl", size="4x6"))
    check_label(label, layout_for(label, "4x6", 203), zpl)
    texts = " ".join(unescape_fh(f.data) for f in zpl.fields if f.get("A") is not None)
    assert "^XZ^XA~JA _5E \\&" in texts and "é ° µ" in texts


def test_batch_is_one_job_of_consecutive_label_formats() -> None:
    batch = samples.batch(7)
    payload = render_zpl_batch(batch, size="4x2", dpi=300)
    parsed = parse(payload)
    assert len(parsed) == 7
    for label, zpl in zip(batch, parsed, strict=True):
        check_label(label, layout_for(label, "4x2", 300), zpl)


def test_fh_escapes_command_prefixes_indicator_and_non_ascii() -> None:
    assert fh("A^B~C_D\\E") == "A_5EB_7EC_5FD_5CE"
    assert fh("°") == "_C2_B0"
    assert unescape_fh(fh("^~_\\ é\x1d")) == "^~_\\ é\x1d"


def test_template_refuses_a_variable_that_skipped_the_escape_filter() -> None:
    from labels import zpl as zpl_module

    template = zpl_module._ENV.from_string("^FO0,0^FD{{ value }}^FS")
    with pytest.raises(ZplError, match="unescaped"):
        template.render(value="^XZ")
    assert template.render(value=fh("^XZ")) == "^FO0,0^FD_5EXZ^FS"


@pytest.mark.parametrize("char", ["^", "~"])
def test_code128_with_caret_or_tilde_is_refused_for_zebra(char: str) -> None:
    with pytest.raises(ZplError):
        code128_field(symbols.code128(f"=A{char}B"))


ISBT_LIKE = st.text(
    alphabet="ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789=&<>*()+,/:;'!%$#-. ", min_size=1, max_size=40
)


@settings(max_examples=25, deadline=None)
@given(ISBT_LIKE)
@example("99")
@example("=>026123")
def test_code128_zpl_field_round_trips_any_isbt_like_string(data: str) -> None:
    symbol = symbols.code128(data)
    field_data = unescape_fh(code128_field(symbol))
    assert bc_values(field_data) == symbols.code128_values(symbol)
    result = decode_bc(field_data)
    assert result.bytes == data.encode() and result.symbology_identifier == "]C0"


def test_every_kind_has_a_zpl_template_and_a_version_line() -> None:
    kinds = {ApheresisBagLabel, FinalProductLabel, ProcessingLabel}
    kinds |= {CryoshipperLabel, CourierJobTicket}
    assert {type(label) for label in samples.one_of_each()} == kinds
    for label in samples.one_of_each():
        for size in supported_sizes(label):
            payload = render(label, "zpl", size=size)
            assert fh(label.template_version).encode() in payload
