"""Label content rules: what is printed, where, and what is refused."""

from __future__ import annotations

import dataclasses

import pypdfium2
import pytest

from labels import samples
from labels.data import AUTOLOGOUS_NOTICE
from labels.data import ApheresisBagLabel
from labels.data import CourierJobTicket
from labels.data import FinalProductLabel
from labels.data import LabelDataError
from labels.layouts import BoxField
from labels.layouts import LayoutError
from labels.layouts import TextField
from labels.layouts import layout_for
from labels.layouts import supported_sizes
from labels.render import render
from labels.render import render_sheet
from labels.zpl import fh

IDENTITY = [samples.apheresis_bag(), samples.final_product()]


def pdf_text(pdf: bytes) -> str:
    document = pypdfium2.PdfDocument(pdf)
    try:
        return "\n".join(page.get_textpage().get_text_range() for page in document)
    finally:
        document.close()


def printed_texts(label, size: str) -> list[str]:
    layout = layout_for(label, size, 203)
    return [f.text for f in layout.fields if isinstance(f, TextField)]


@pytest.mark.parametrize("label", IDENTITY, ids=lambda label: type(label).__name__)
@pytest.mark.parametrize("size", ["4x6", "4x2"])
def test_bag_and_product_labels_always_say_for_autologous_use_only(label, size) -> None:
    assert AUTOLOGOUS_NOTICE in printed_texts(label, size)
    assert AUTOLOGOUS_NOTICE in pdf_text(render(label, "pdf", size=size))
    assert AUTOLOGOUS_NOTICE.encode() in render(label, "svg", size=size)
    assert fh(AUTOLOGOUS_NOTICE).encode() in render(label, "zpl", size=size)


@pytest.mark.parametrize("label", IDENTITY, ids=lambda label: type(label).__name__)
@pytest.mark.parametrize("size", ["4x6", "4x2"])
def test_din_and_coi_print_grouped_with_their_check_character_in_a_box(label, size) -> None:
    layout = layout_for(label, size, 203)
    for prefix, grouped, check in (
        ("din", label.din_grouped, label.din_check_char),
        ("coi", label.coi_grouped, label.coi_check_char),
    ):
        text = layout.get(f"{prefix}.text")
        k = layout.get(f"{prefix}.k")
        box = layout.get(f"{prefix}.k_box")
        assert isinstance(text, TextField) and text.text == grouped and text.ident
        assert isinstance(k, TextField) and k.text == check
        assert isinstance(box, BoxField)
        bx0, by0, bx1, by1 = box.bounds
        kx0, ky0, kx1, ky1 = k.bounds
        assert bx0 <= kx0 and kx1 <= bx1 and by0 <= ky0 and ky1 <= by1
        assert text.bounds[2] <= bx0  # K follows the identifier
    words = pdf_text(render(label, "pdf", size=size))
    assert label.din_grouped in words and label.coi_grouped in words


def test_pdf_text_uses_courier_which_separates_zero_from_letter_o() -> None:
    pdf = render(samples.apheresis_bag(), "pdf", size="4x6")
    assert b"/Courier" in pdf and b"/Helvetica" not in pdf


def test_repeat_label_flag_is_printed_rotated() -> None:
    layout = layout_for(samples.apheresis_bag(reprint=True), "4x6", 203)
    flags = layout.get("din.flags")
    assert isinstance(flags, TextField) and flags.rotated and flags.text == "05"
    assert b"^A0R" in render(samples.apheresis_bag(reprint=True), "zpl", size="4x6")


@pytest.mark.parametrize("flags", ["60", "70", "96"])
def test_type_3_flags_are_never_printed(flags: str) -> None:
    label = dataclasses.replace(samples.apheresis_bag(), flags=flags)
    for size in ("4x6", "4x2"):
        layout = layout_for(label, size, 300)
        assert not layout.group("din.flags")
        assert all(flags != text for text in printed_texts(label, size))


@pytest.mark.parametrize("reprint", [False, True])
def test_reprint_marking_appears_only_on_reprints(reprint: bool) -> None:
    for label in samples.one_of_each(reprint=reprint):
        for size in supported_sizes(label):
            assert ("REPRINT" in printed_texts(label, size)) is reprint
            svg = render(label, "svg", size=size)
            assert (b">REPRINT<" in svg) is reprint


def test_every_label_prints_its_template_version_in_every_format() -> None:
    for label in samples.one_of_each():
        for size in supported_sizes(label):
            assert label.template_version in printed_texts(label, size)
            assert label.template_version in pdf_text(render(label, "pdf", size=size))
            assert label.template_version.encode() in render(label, "svg", size=size)


def test_courier_ticket_prints_only_last_four_and_no_identity() -> None:
    ticket = samples.courier_job()
    texts = " ".join(printed_texts(ticket, "4x6"))
    assert ticket.shipper_serial_last4 in texts and ticket.seal_last4 in texts
    assert "&/" not in texts and "=W" not in texts and "CH W" not in texts


@pytest.mark.parametrize(
    "change",
    [
        {"pickup_address": ("W9999 26 000123",)},
        {"dropoff_address": ("=W99992600012300",)},
        {"job_code": "&/CHW99992600A1B2"},
        {"dropoff_address": ("COI CHW99992600A1B2",)},
        {"seal_last4": "77310"},
        {"pickup_address": ()},
    ],
)
def test_courier_ticket_refuses_identity_data(change: dict[str, object]) -> None:
    with pytest.raises(LabelDataError):
        dataclasses.replace(samples.courier_job(), **change)


def test_courier_ticket_accepts_an_ampersand_in_a_business_name() -> None:
    ticket = dataclasses.replace(samples.courier_job(), pickup_address=("SMITH & SONS LOGISTICS",))
    assert "SMITH & SONS LOGISTICS" in printed_texts(ticket, "4x2")


@pytest.mark.parametrize(
    "change",
    [
        {"din_check_char": "KK"},
        {"din_check_char": "a"},
        {"din_grouped": " "},
        {"din_barcode": "=W9999é"},
        {"product_description": "line\nbreak"},
        {"flags": "5"},
        {"template_version": ""},
    ],
)
def test_malformed_label_data_is_refused(change: dict[str, object]) -> None:
    with pytest.raises(LabelDataError):
        dataclasses.replace(samples.final_product(), **change)


def test_check_character_may_be_star_or_letter_o() -> None:
    for k in ("*", "O"):
        label = dataclasses.replace(samples.apheresis_bag(), coi_check_char=k)
        assert layout_for(label, "4x2", 203).get("coi.k").text == k


def test_unsupported_size_and_sheet_formats_are_refused() -> None:
    with pytest.raises(LayoutError):
        render(samples.apheresis_bag(), "pdf", size="2x1")
    with pytest.raises(LayoutError):
        render(samples.apheresis_bag(), "zpl", size="a4")
    with pytest.raises(LayoutError):
        render_sheet([], "letter")


def test_data_too_long_for_the_label_is_refused_not_clipped() -> None:
    long_text = "CAR T CELL SUSPENSION " * 12
    label = dataclasses.replace(samples.final_product(), product_description=long_text)
    with pytest.raises(LayoutError):
        layout_for(label, "4x2", 203)
    huge = dataclasses.replace(samples.processing(), datamatrix_data="=W99992600012300" * 80)
    with pytest.raises(LayoutError):
        layout_for(huge, "2x1", 203)


def test_rendering_is_deterministic() -> None:
    label = samples.cryoshipper()
    for fmt in ("pdf", "png", "svg", "zpl"):
        assert render(label, fmt, size="4x6") == render(label, fmt, size="4x6")


def test_apheresis_expiry_is_optional_but_needs_both_text_and_barcode() -> None:
    label = dataclasses.replace(
        samples.apheresis_bag(), expiry_date_text="", expiry_date_barcode=""
    )
    assert not layout_for(label, "4x6", 203).group("expiry")
    with pytest.raises(LabelDataError):
        dataclasses.replace(label, expiry_date_text="05 MAY 2026")
    assert isinstance(label, ApheresisBagLabel)
    assert not isinstance(label, FinalProductLabel | CourierJobTicket)
