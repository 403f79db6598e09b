"""Printing labels through the service: content decoded back, reprint rules, printer failures,
history and the "label applied" gate, on SQLite and PostgreSQL."""

from __future__ import annotations

import hashlib
import io
import re
from datetime import date
from datetime import timedelta
from zoneinfo import ZoneInfo

import pypdfium2
import pytest
import zxingcpp
from PIL import Image
from sqlalchemy import select
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.exc import IntegrityError
from sqlalchemy.exc import StatementError

from tests.factories import label_context
from tests.factories import make_bag
from tests.factories import make_order
from tests.unit.labels.test_label_decode import gs1_transmitted
from tests.unit.labels.test_label_printers import FakeZebra
from tests.unit.labels.test_label_zpl import bx_data
from tests.unit.labels.test_label_zpl import decode_bc
from tests.unit.labels.test_label_zpl import parse as parse_zpl
from tracker.adapters.printers import FakePrinter
from tracker.domain import identifiers
from tracker.domain.custody import CustodyState as S
from tracker.domain.custody import ItemKind
from tracker.domain.errors import TrackerError
from tracker.domain.label_rules import LabelKind
from tracker.models import AuditEntry
from tracker.models import Item
from tracker.models import LabelPrint
from tracker.services import custody
from tracker.services import labels
from tracker.services import orders
from tracker.services import printers

BASE = "https://tracker.test"
CC1_ZONE = ZoneInfo("America/New_York")


# --- helpers --------------------------------------------------------------------------------


def do_print(new_uow, world, clock, kind, target, *, who="nurse", **kw):
    with new_uow() as uow:
        result = labels.print_label(
            uow=uow,
            principal=world.principals[who],
            ctx=label_context(),
            kind=kind,
            target_public_id=target,
            now=clock.now(),
            **kw,
        )
        uow.commit()
        return result


def add_printer(new_uow, world, clock, site="CC1", name="Bench", host="127.0.0.1", **kw):
    with new_uow() as uow:
        printer = printers.create_printer(
            uow=uow,
            principal=world.principals["admin"],
            site_code=site,
            name=name,
            host=host,
            now=clock.now(),
            **kw,
        )
        uow.commit()
        return printer


def decoded(image: Image.Image) -> list[tuple[bytes, str]]:
    return sorted((r.bytes, r.symbology_identifier) for r in zxingcpp.read_barcodes(image))


def decode_png(payload: bytes) -> list[tuple[bytes, str]]:
    return decoded(Image.open(io.BytesIO(payload)).convert("L"))


def decode_pdf(payload: bytes, dpi: int) -> list[tuple[bytes, str]]:
    document = pypdfium2.PdfDocument(payload)
    try:
        (page,) = list(document)
        return decoded(page.render(scale=2 * dpi / 72).to_pil().convert("L"))
    finally:
        document.close()


def decode_zpl(payload: bytes) -> list[tuple[bytes, str]]:
    from labels.zpl import unescape_fh

    found = []
    for label in parse_zpl(payload):
        for f in label.fields:
            if f.get("BC") is not None:
                result = decode_bc(unescape_fh(f.data), int(f.get("BY")))
                found.append((result.bytes, result.symbology_identifier))
            elif f.get("BX") is not None:
                found.append(bx_data(unescape_fh(f.data)))
            elif f.get("BQ") is not None:
                found.append((unescape_fh(f.data[3:]).encode(), "]Q1"))
    return sorted(found)


def zpl_texts(payload: bytes) -> list[str]:
    from labels.zpl import unescape_fh

    return [
        unescape_fh(f.data)
        for label in parse_zpl(payload)
        for f in label.fields
        if f.get("A") is not None
    ]


def c128(data: str) -> tuple[bytes, str]:
    return data.encode(), "]C0"


def dm(data: str) -> tuple[bytes, str]:
    return data.encode(), "]d1"


def done_prints(new_uow, item_id=None, shipment_id=None):
    with new_uow() as uow:
        stmt = select(LabelPrint).where(LabelPrint.status == "done")
        if item_id is not None:
            stmt = stmt.where(LabelPrint.item_id == item_id)
        if shipment_id is not None:
            stmt = stmt.where(LabelPrint.shipment_id == shipment_id)
        return list(uow.session.scalars(stmt))


@pytest.fixture
def order(new_uow, world, clock):
    return make_order(new_uow, world, clock.now())


@pytest.fixture
def bag(new_uow, world, clock, order):
    return make_bag(new_uow, world, order, clock.now())


@pytest.fixture
def fake_zebra():
    server = FakeZebra()
    yield server
    server.close()


# --- what the labels carry, decoded back ----------------------------------------------------


def apheresis_expected(order, bag, clock, *, flags, token, size):
    """Every symbol an apheresis bag label must carry, built here from the records alone."""
    local = clock.now().astimezone(CC1_ZONE)  # the bag was registered at CC1 at T0
    expires = (clock.now() + timedelta(hours=72)).astimezone(CC1_ZONE)
    day = f"0{local:%y}{local.timetuple().tm_yday:03d}"
    exp_day = f"0{expires:%y}{expires.timetuple().tm_yday:03d}"
    din = f"={bag.din}{flags}"
    coi = f"&/{order.coi}"
    collection = f"&*{day}{local:%H%M}"
    expiry = f"&>{exp_day}{expires:%H%M}"
    matrix = f"=+05000{din}=<S1001100{collection}{expiry}{coi}"
    if size == "4x2":
        return sorted([c128(din), c128(coi), dm(matrix)])
    qr = (f"{BASE}/i/{token}".encode(), "]Q1")
    return sorted(
        [c128(din), c128("=<S1001100"), c128(collection), c128(expiry), c128(coi), dm(matrix), qr]
    )


@pytest.mark.parametrize("size", ["4x6", "4x2"])
def test_an_apheresis_bag_label_decodes_back_to_exactly_the_records_identity(
    new_uow, world, clock, order, bag, size
):
    result = do_print(
        new_uow, world, clock, LabelKind.apheresis_bag, bag.public_id, output="png", size=size
    )
    token = result.record.public_id
    assert decode_png(result.payload) == apheresis_expected(
        order, bag, clock, flags="00", token=token, size=size
    )
    # Everything on it also parses with our own scanner rules (DIN, K, compound count).
    for data, _ in apheresis_expected(order, bag, clock, flags="00", token=token, size=size):
        if not data.startswith(b"http"):
            parsed = identifiers.parse(data.decode())
            assert isinstance(parsed, identifiers.Parsed), (data, parsed)


def test_the_label_link_carries_only_an_opaque_token(new_uow, world, clock, order, bag):
    result = do_print(
        new_uow, world, clock, LabelKind.apheresis_bag, bag.public_id, output="png", size="4x6"
    )
    (url,) = [d for d, sym in decode_png(result.payload) if sym == "]Q1"]
    token = url.decode().removeprefix(f"{BASE}/i/")
    parsed = identifiers.parse(token)
    assert isinstance(parsed, identifiers.Parsed)
    assert parsed.value.kind is identifiers.InternalKind.label
    for secret in (order.coi, bag.din, order.public_id, bag.public_id, "MRN"):
        assert secret not in url.decode()


def test_a_pdf_at_300_dpi_and_zpl_decode_to_the_same_symbols_as_the_preview_png(
    new_uow, world, clock, order, bag
):
    first = do_print(
        new_uow, world, clock, LabelKind.apheresis_bag, bag.public_id,
        output="pdf", dpi=300, size="4x6",
    )  # fmt: skip
    expected = apheresis_expected(
        order, bag, clock, flags="00", token=first.record.public_id, size="4x6"
    )
    assert decode_pdf(first.payload, 300) == expected
    again = do_print(
        new_uow,
        world,
        clock,
        LabelKind.apheresis_bag,
        bag.public_id,
        output="zpl",
        size="4x6",
        reprint=True,
        reason="the first one jammed",
    )
    assert decode_zpl(again.payload) == apheresis_expected(
        order, bag, clock, flags="05", token=again.record.public_id, size="4x6"
    )


def test_a_final_product_label_carries_its_own_din_expiry_from_the_profile_and_the_coi(
    new_uow, world, clock, order, bag
):
    product = make_bag(
        new_uow,
        world,
        order,
        clock.now(),
        kind=ItemKind.final_product_bag,
        who="operator",
        parent_public_id=bag.public_id,
    )
    result = do_print(
        new_uow,
        world,
        clock,
        LabelKind.final_product,
        product.public_id,
        who="operator",
        output="png",
        size="4x6",
    )
    made = clock.now().astimezone(ZoneInfo("Europe/Amsterdam")).date()
    expires = made + timedelta(days=270)  # shelf_life_days of the product profile
    expiry = f"=>0{expires:%y}{expires.timetuple().tm_yday:03d}"
    din, coi = f"={product.din}00", f"&/{order.coi}"
    assert decode_png(result.payload) == sorted(
        [
            c128(din),
            c128("=<S1001100"),
            c128(expiry),
            c128(coi),
            dm(f"=+04000{din}=<S1001100{expiry}{coi}"),
            (f"{BASE}/i/{result.record.public_id}".encode(), "]Q1"),
        ]
    )
    assert product.din != bag.din


@pytest.mark.parametrize("size", ["2x1", "4x2"])
def test_a_processing_label_ties_the_cassette_to_its_bag_and_patient(
    new_uow, world, clock, order, bag, size
):
    result = do_print(
        new_uow,
        world,
        clock,
        LabelKind.processing,
        bag.public_id,
        output="png",
        size=size,
        step_text="cryopreservation",
    )
    din, coi = f"={bag.din}00", f"&/{order.coi}"
    expected = [dm(f"=+02000{din}{coi}")] + ([c128(coi)] if size == "4x2" else [])
    assert decode_png(result.payload) == sorted(expected)


def test_a_container_of_a_set_carries_its_container_flag(new_uow, world, clock, order, bag):
    second = make_bag(new_uow, world, order, clock.now(), din=bag.din, container=2)
    result = do_print(
        new_uow, world, clock, LabelKind.apheresis_bag, second.public_id, output="png", size="4x2"
    )
    assert c128(f"={bag.din}02") in decode_png(result.payload)
    assert result.record.din_flags == "02"


@pytest.fixture
def shipper(new_uow, world, clock):
    with new_uow() as uow:
        item = custody.register_shipper(
            uow=uow,
            principal=world.principals["admin"],
            serial="EVO-IS-0417",
            site_code="CC1",
            validated_hold_hours=240,
            now=clock.now(),
        )
        custody.change_item_state(
            uow=uow,
            principal=world.principals["admin"],
            item_public_id=item.public_id,
            to_state=S.charged,
            now=clock.now(),
        )
        uow.commit()
        return item


def test_a_cryoshipper_label_carries_its_grai_and_hold_deadline_in_gs1(
    new_uow, world, clock, shipper
):
    result = do_print(
        new_uow, world, clock, LabelKind.cryoshipper, shipper.public_id, output="png", size="4x6"
    )
    head = "0061414100001"
    grai = head + identifiers.gs1_check_digit(head) + "EVO-IS-0417"
    until = clock.now() + timedelta(hours=240)
    gs1 = f"(8003){grai}(7003){until:%y%m%d%H%M}"
    assert decode_png(result.payload) == sorted(
        [(gs1_transmitted(gs1), "]C1"), (gs1_transmitted(gs1), "]d2")]
    )
    parsed = identifiers.parse("]C1" + gs1_transmitted(gs1).decode())
    assert isinstance(parsed, identifiers.Parsed), parsed


# --- courier ticket: logistics only ---------------------------------------------------------


@pytest.fixture
def shipment(new_uow, world, clock, shipper):
    with new_uow() as uow:
        patient = orders.register_patient(
            uow=uow,
            principal=world.principals["coord"],
            treatment_site_code="TC1",
            given_name="Zebulon",
            family_name="Quixotic",
            date_of_birth=date(1961, 7, 14),
            mrn="MRN-UNIQUE-4711",
            now=clock.now(),
        )
        order = orders.create_order(
            uow=uow,
            principal=world.principals["coord"],
            patient_public_id=patient.public_id,
            product_code="CD19-FRESH",
            collection_site_code="CC1",
            manufacturing_site_code="MF1",
            coi_fin="W9999",
            now=clock.now(),
        )
        bag = custody.register_bag(
            uow=uow,
            principal=world.principals["nurse"],
            order_public_id=order.public_id,
            kind=ItemKind.apheresis_bag,
            now=clock.now(),
        )
        shipment = custody.create_shipment(
            uow=uow,
            principal=world.principals["nurse"],
            order_public_id=order.public_id,
            origin_code="CC1",
            destination_code="MF1",
            item_public_ids=[bag.public_id],
            shipper_public_id=shipper.public_id,
            tamper_seal="RW-889917",
            planned_pickup_at=clock.now() + timedelta(hours=3),
            planned_delivery_at=clock.now() + timedelta(hours=20),
            now=clock.now(),
        )
        uow.commit()
        return {"shipment": shipment, "order": order, "patient": patient, "bag": bag}


def pdf_text(payload: bytes) -> str:
    document = pypdfium2.PdfDocument(payload)
    try:
        return "\n".join(page.get_textpage().get_text_range() for page in document)
    finally:
        document.close()


def test_a_courier_ticket_carries_no_patient_data_in_any_symbol_or_text(
    new_uow, world, clock, shipment
):
    ship, order, patient, bag = (shipment[k] for k in ("shipment", "order", "patient", "bag"))
    seen: list[str] = []
    first = do_print(
        new_uow, world, clock, LabelKind.courier_job, ship.public_id, output="zpl", size="4x6"
    )
    seen += [d.decode() for d, _ in decode_zpl(first.payload)] + zpl_texts(first.payload)
    job = first.record.job_code
    for output, size in (("png", "4x6"), ("png", "4x2"), ("svg", "4x6"), ("pdf", "4x6")):
        result = do_print(
            new_uow,
            world,
            clock,
            LabelKind.courier_job,
            ship.public_id,
            output=output,
            size=size,
            reprint=True,
            reason=f"{output} copy for the depot",
        )
        assert result.record.job_code == job  # a reprint keeps the job code
        if output == "png":
            symbols = decode_png(result.payload)
            assert (job.encode(), "]C0") in symbols
            seen += [d.decode() for d, _ in symbols]
        elif output == "svg":
            seen += re.findall(r"<text[^>]*>([^<]*)</text>", result.payload.decode())
        else:
            seen += [d.decode() for d, _ in decode_pdf(result.payload, 203)]
            seen.append(pdf_text(result.payload))
    everything = "\n".join(seen).upper()
    assert "PROVIDENCE" not in everything  # sanity: the world's sites are called "... One"
    assert "COLLECTION ONE" in everything and "MANUFACTURING ONE" in everything
    assert "..0417" in everything.replace(" ", "") or "0417" in everything
    assert "9917" in everything and "RW-889917" not in everything
    coi_grouped, _ = identifiers.coi_eye_readable(order.coi)
    din_grouped, _ = identifiers.format_din_eye_readable(bag.din)
    forbidden = [
        order.coi,
        coi_grouped,
        bag.din,
        din_grouped,
        "ZEBULON",
        "QUIXOTIC",
        "MRN-UNIQUE-4711",
        "1961",
        patient.public_id,
        patient.wristband_code,
        order.public_id,
        bag.public_id,
        "CD19",
        "S1001100",
        "EVO-IS-0417",
    ]
    for value in forbidden:
        assert value.upper() not in everything, value
        assert value.upper().replace(" ", "") not in everything.replace(" ", ""), value


def test_a_courier_ticket_shows_local_windows_and_last_four_digits(new_uow, world, clock, shipment):
    result = do_print(
        new_uow,
        world,
        clock,
        LabelKind.courier_job,
        shipment["shipment"].public_id,
        output="zpl",
        size="4x6",
    )
    texts = zpl_texts(result.payload)
    pickup = (clock.now() + timedelta(hours=3)).astimezone(CC1_ZONE)
    assert f"WINDOW MON 02 MAR {pickup:%H:%M} EST" in texts
    assert "SHIPPER ..0417  SEAL ..9917" in texts
    assert any(t.startswith("WINDOW BY TUE 03 MAR") and t.endswith("CET") for t in texts)


# --- reprints -------------------------------------------------------------------------------


def test_a_reprint_needs_a_reason_and_its_din_barcode_carries_flag_05(
    new_uow, world, clock, order, bag
):
    printer = add_printer(new_uow, world, clock)
    fake = FakePrinter()
    factory = {"printer_factory": lambda p: fake}
    do_print(
        new_uow, world, clock, LabelKind.apheresis_bag, bag.public_id,
        printer_public_id=printer.public_id, **factory,
    )  # fmt: skip
    with pytest.raises(TrackerError) as err:
        do_print(
            new_uow, world, clock, LabelKind.apheresis_bag, bag.public_id,
            printer_public_id=printer.public_id, reprint=True, reason="  ", **factory,
        )  # fmt: skip
    assert err.value.reason == "reprint_reason_required"
    clock.advance(timedelta(minutes=7))
    reprint = do_print(
        new_uow, world, clock, LabelKind.apheresis_bag, bag.public_id,
        printer_public_id=printer.public_id, reprint=True, reason="smudged by disinfectant",
        copies=2, **factory,
    )  # fmt: skip
    assert len(fake.jobs) == 2  # the refused request never reached the printer
    original, repeated = (decode_zpl(payload) for payload in fake.payloads)
    assert c128(f"={bag.din}00") in original and c128(f"={bag.din}05") not in original
    # Two copies in one job, both repeated labels: flag 05 in the DIN barcode and inside the
    # Data Matrix compound message, "05" printed beside the DIN and REPRINT on the label.
    assert repeated.count(c128(f"={bag.din}05")) == 2
    assert all(f"={bag.din}05".encode() in d for d, sym in repeated if sym == "]d1")
    texts = zpl_texts(fake.payloads[1])
    assert texts.count("REPRINT") == 2 and texts.count("05") == 2
    record = reprint.record
    assert (record.reprint, record.reason, record.din_flags, record.copies) == (
        True,
        "smudged by disinfectant",
        "05",
        2,
    )
    assert record.barcode_data == f"={bag.din}05"


def test_printing_an_already_printed_label_as_an_original_is_refused(
    new_uow, world, clock, order, bag
):
    do_print(new_uow, world, clock, LabelKind.apheresis_bag, bag.public_id)
    with pytest.raises(TrackerError) as err:
        do_print(new_uow, world, clock, LabelKind.apheresis_bag, bag.public_id)
    assert err.value.reason == "label_already_printed"
    assert len(done_prints(new_uow, item_id=bag.id)) == 1


def test_a_reprint_of_a_label_never_printed_is_refused(new_uow, world, clock, order, bag):
    with pytest.raises(TrackerError) as err:
        do_print(
            new_uow, world, clock, LabelKind.apheresis_bag, bag.public_id,
            reprint=True, reason="lost",
        )  # fmt: skip
    assert err.value.reason == "label_not_printed"


def test_each_label_kind_keeps_its_own_history(new_uow, world, clock, order, bag):
    do_print(new_uow, world, clock, LabelKind.apheresis_bag, bag.public_id)
    # The cassette label of the same bag is a first print, not a reprint.
    first_cassette = do_print(new_uow, world, clock, LabelKind.processing, bag.public_id)
    assert first_cassette.record.reprint is False and first_cassette.record.din_flags == "00"


# --- printer failures -----------------------------------------------------------------------


@pytest.mark.parametrize("reason", ["printer_unreachable", "printer_refused"])
def test_a_failed_print_is_recorded_as_failed_and_never_counts_as_printed(
    new_uow, world, clock, order, bag, reason
):
    printer = add_printer(new_uow, world, clock)
    result = do_print(
        new_uow, world, clock, LabelKind.apheresis_bag, bag.public_id,
        printer_public_id=printer.public_id,
        printer_factory=lambda p: FakePrinter(fail_with=reason),
    )  # fmt: skip
    assert result.failed
    assert (result.record.status, result.record.error_reason) == ("failed", reason)
    with pytest.raises(TrackerError) as err:
        result.raise_if_failed()
    assert err.value.reason == reason and err.value.details["print_id"] == result.record.public_id
    assert done_prints(new_uow, item_id=bag.id) == []
    # Still a first print: the next attempt is an original, not a reprint.
    ok = do_print(
        new_uow, world, clock, LabelKind.apheresis_bag, bag.public_id,
        printer_public_id=printer.public_id, printer_factory=lambda p: FakePrinter(),
    )  # fmt: skip
    assert ok.record.reprint is False and ok.record.din_flags == "00"
    with new_uow() as uow:
        actions = list(
            uow.session.scalars(
                select(AuditEntry.action)
                .where(AuditEntry.entity_id == bag.public_id)
                .order_by(AuditEntry.id)
            )
        )
    assert actions[-2:] == ["label_print_failed", "label_print"]


@pytest.mark.enable_socket
def test_zpl_goes_to_a_real_socket_printer_byte_for_byte(
    new_uow, world, clock, order, bag, fake_zebra
):
    printer = add_printer(new_uow, world, clock, port=fake_zebra.port, dpi=300)
    result = do_print(
        new_uow, world, clock, LabelKind.apheresis_bag, bag.public_id,
        printer_public_id=printer.public_id, size="4x6",
    )  # fmt: skip
    fake_zebra.close()
    assert fake_zebra.received == [result.payload]
    assert result.record.payload_sha256 == hashlib.sha256(result.payload).hexdigest()
    assert (result.record.status, result.record.dpi, result.record.output) == ("done", 300, "zpl")
    assert parse_zpl(result.payload)[0].width == 1200  # 4 inches at 300 dpi


@pytest.mark.enable_socket
def test_a_printer_that_drops_the_job_on_a_real_socket_leaves_no_done_record(
    new_uow, world, clock, order, bag
):
    dropping = FakeZebra(reset_immediately=True)
    try:
        printer = add_printer(new_uow, world, clock, port=dropping.port)
        result = do_print(
            new_uow, world, clock, LabelKind.apheresis_bag, bag.public_id,
            printer_public_id=printer.public_id,
        )  # fmt: skip
    finally:
        dropping.close()
    assert result.record.error_reason == "printer_refused"
    assert done_prints(new_uow, item_id=bag.id) == []
    with new_uow() as uow, pytest.raises(TrackerError) as err:
        custody.change_item_state(
            uow=uow,
            principal=world.principals["nurse"],
            item_public_id=bag.public_id,
            to_state=S.labelled,
            now=clock.now(),
        )
    assert err.value.reason == "label_not_printed"


@pytest.mark.enable_socket
def test_a_printer_that_is_off_is_unreachable_and_recorded_so(new_uow, world, clock, order, bag):
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))  # bound, never listening: the connection is refused
        printer = add_printer(new_uow, world, clock, port=probe.getsockname()[1])
        result = do_print(
            new_uow, world, clock, LabelKind.apheresis_bag, bag.public_id,
            printer_public_id=printer.public_id,
        )  # fmt: skip
    assert result.record.error_reason == "printer_unreachable"
    assert "127.0.0.1" in result.record.error_message


def test_a_printer_at_another_site_or_switched_off_is_not_used(new_uow, world, clock, order, bag):
    elsewhere = add_printer(new_uow, world, clock, site="MF1", name="Fill room")
    off = add_printer(new_uow, world, clock, name="Old bench")
    with new_uow() as uow:
        printers.update_printer(
            uow=uow,
            principal=world.principals["admin"],
            printer_public_id=off.public_id,
            changes={"active": False},
            now=clock.now(),
        )
        uow.commit()
    fake = FakePrinter()
    for printer, words in ((elsewhere, "not at"), (off, "switched off")):
        with pytest.raises(TrackerError) as err:
            do_print(
                new_uow, world, clock, LabelKind.apheresis_bag, bag.public_id,
                who="admin", printer_public_id=printer.public_id, printer_factory=lambda p: fake,
            )  # fmt: skip
        assert err.value.reason == "invalid_request" and words in err.value.message
    assert fake.jobs == []


def test_only_administrators_manage_printers(new_uow, world, clock):
    with new_uow() as uow, pytest.raises(TrackerError) as err:
        printers.create_printer(
            uow=uow,
            principal=world.principals["coord"],
            site_code="CC1",
            name="Mine",
            host="10.0.0.9",
            now=clock.now(),
        )
    assert err.value.reason == "forbidden"


# --- who may print --------------------------------------------------------------------------


def test_staff_without_a_role_where_the_bag_is_cannot_print_and_others_cannot_see_it(
    new_uow, world, clock, order, bag
):
    with pytest.raises(TrackerError) as err:
        do_print(new_uow, world, clock, LabelKind.apheresis_bag, bag.public_id, who="operator")
    assert err.value.reason == "forbidden"
    with pytest.raises(TrackerError) as err:
        do_print(new_uow, world, clock, LabelKind.apheresis_bag, bag.public_id, who="coord2")
    assert err.value.reason == "not_found"
    with pytest.raises(TrackerError) as err:  # a bag takes no final product label
        do_print(new_uow, world, clock, LabelKind.final_product, bag.public_id)
    assert err.value.reason == "not_found"


def test_a_final_product_without_a_shelf_life_in_its_profile_is_not_labelled(
    new_uow, world, clock, order, bag
):
    product = make_bag(
        new_uow, world, order, clock.now(), kind=ItemKind.final_product_bag, who="operator",
        parent_public_id=bag.public_id,
    )  # fmt: skip
    with new_uow() as uow:
        profile = uow.session.get(Item, product.id).order.product_profile
        profile.data = {k: v for k, v in profile.data.items() if k != "shelf_life_days"}
        uow.commit()
    with pytest.raises(TrackerError) as err:
        do_print(new_uow, world, clock, LabelKind.final_product, product.public_id, who="operator")
    assert err.value.reason == "label_data_missing" and "shelf_life_days" in err.value.message


def test_formats_and_sizes_are_checked_before_anything_is_recorded(
    new_uow, world, clock, order, bag
):
    for kw in (
        {"output": "png", "size": "2x1"},  # a bag label has no 2x1 layout
        {"output": "png", "size": "a4"},  # sheets are PDF only
        {"output": "svg", "copies": 2},
        {"output": "pdf", "size": "4x6", "copies": 3},
        {"output": "pdf", "size": "letter", "copies": 11},
    ):
        with pytest.raises(TrackerError) as err:
            do_print(new_uow, world, clock, LabelKind.apheresis_bag, bag.public_id, **kw)
        assert err.value.reason == "invalid_request", kw
    sheet = do_print(
        new_uow, world, clock, LabelKind.apheresis_bag, bag.public_id,
        output="pdf", size="letter", copies=4,
    )  # fmt: skip
    din = c128(f"={bag.din}00")
    assert decode_pdf(sheet.payload, 203).count(din) == 4
    assert len(done_prints(new_uow, item_id=bag.id)) == 1


# --- history and evidence -------------------------------------------------------------------


def test_the_print_history_lists_every_attempt_newest_first_with_who_and_why(
    new_uow, world, clock, order, bag
):
    printer = add_printer(new_uow, world, clock)
    do_print(
        new_uow, world, clock, LabelKind.apheresis_bag, bag.public_id,
        printer_public_id=printer.public_id,
        printer_factory=lambda p: FakePrinter(fail_with="printer_unreachable"),
    )  # fmt: skip
    clock.advance(timedelta(minutes=2))
    do_print(new_uow, world, clock, LabelKind.apheresis_bag, bag.public_id, output="pdf")
    clock.advance(timedelta(minutes=2))
    do_print(
        new_uow, world, clock, LabelKind.apheresis_bag, bag.public_id, who="coord",
        output="zpl", reprint=True, reason="bag relabelled after spill",
    )  # fmt: skip
    with new_uow() as uow:
        history = labels.label_history(
            uow.session, world.principals["nurse"], LabelKind.apheresis_bag, bag.public_id
        )
    assert [(h["status"], h["reprint"], h["by"], h["output"]) for h in history] == [
        ("done", True, "Coord User", "zpl"),
        ("done", False, "Nurse User", "pdf"),
        ("failed", False, "Nurse User", "zpl"),
    ]
    assert history[0]["reason"] == "bag relabelled after spill"
    assert history[0]["din_flags"] == "05" and history[1]["din_flags"] == "00"
    assert history[2]["printer"] == "Bench" and history[2]["error_reason"] == "printer_unreachable"
    assert history[1]["printer"] is None  # a download
    assert {h["template_version"] for h in history} == {"APH-BAG TPL 1.0"}
    assert history[0]["at"] == clock.now()


def test_print_records_cannot_be_changed_or_deleted(new_uow, world, clock, order, bag, connection):
    do_print(new_uow, world, clock, LabelKind.apheresis_bag, bag.public_id)
    for statement in ("UPDATE label_prints SET reason = 'x'", "DELETE FROM label_prints"):
        savepoint = connection.begin_nested()
        with pytest.raises((DBAPIError, IntegrityError)):
            connection.execute(text(statement))
        savepoint.rollback()


def test_the_database_refuses_a_reprint_without_a_reason(new_uow, world, clock, order, bag):
    first = do_print(new_uow, world, clock, LabelKind.apheresis_bag, bag.public_id)
    with new_uow() as uow:
        row = uow.session.get(LabelPrint, first.record.id)
        copy = {c.key: getattr(row, c.key) for c in LabelPrint.__table__.columns if c.key != "id"}
        copy.update(public_id="TRKLBLCOPY", reprint=True, reason=None)
        uow.session.add(LabelPrint(**copy))
        with pytest.raises((IntegrityError, StatementError)):
            uow.session.flush()


# --- the "label applied" gate ---------------------------------------------------------------


def apply_label(new_uow, world, clock, item, who="nurse"):
    with new_uow() as uow:
        event = custody.change_item_state(
            uow=uow,
            principal=world.principals[who],
            item_public_id=item.public_id,
            to_state=S.labelled,
            now=clock.now(),
        )
        uow.commit()
        return event


def test_a_bag_cannot_be_marked_label_applied_before_its_label_is_printed(
    new_uow, world, clock, order, bag
):
    with pytest.raises(TrackerError) as err:
        apply_label(new_uow, world, clock, bag)
    assert err.value.reason == "label_not_printed"
    # A cassette label is not the bag label.
    do_print(new_uow, world, clock, LabelKind.processing, bag.public_id)
    with pytest.raises(TrackerError):
        apply_label(new_uow, world, clock, bag)
    with new_uow() as uow:
        assert uow.session.get(Item, bag.id).state == "registered"
    do_print(new_uow, world, clock, LabelKind.apheresis_bag, bag.public_id)
    assert apply_label(new_uow, world, clock, bag).to_state == "labelled"
    # What a label-applied scan of the bag should read: the printed DIN with its flags.
    do_print(
        new_uow, world, clock, LabelKind.apheresis_bag, bag.public_id,
        reprint=True, reason="first label creased",
    )  # fmt: skip
    with new_uow() as uow:
        item = uow.session.get(Item, bag.id)
        assert labels.printed_barcodes(uow.session, item) == [f"={bag.din}05", f"={bag.din}00"]


def test_a_final_product_bag_needs_its_final_product_label_before_label_applied(
    new_uow, world, clock, order, bag
):
    product = make_bag(
        new_uow, world, order, clock.now(), kind=ItemKind.final_product_bag, who="operator",
        parent_public_id=bag.public_id,
    )  # fmt: skip
    with pytest.raises(TrackerError) as err:
        apply_label(new_uow, world, clock, product, who="operator")
    assert err.value.reason == "label_not_printed"
    do_print(new_uow, world, clock, LabelKind.final_product, product.public_id, who="operator")
    assert apply_label(new_uow, world, clock, product, who="operator").to_state == "labelled"


def test_the_qr_token_leads_only_people_who_may_see_the_order_to_it(
    new_uow, world, clock, order, bag
):
    result = do_print(new_uow, world, clock, LabelKind.apheresis_bag, bag.public_id)
    with new_uow() as uow:
        where = labels.resolve_link(uow.session, world.principals["coord"], result.record.public_id)
        assert where == (order.public_id, f"item-{bag.public_id}")
        with pytest.raises(TrackerError) as err:
            labels.resolve_link(uow.session, world.principals["coord2"], result.record.public_id)
        assert err.value.reason == "not_found"


def test_every_demo_bag_was_printed_before_its_label_was_applied(new_uow, settings, clock):
    from tracker.demo import seed_demo
    from tracker.models import CustodyEvent
    from tracker.services.auth import make_hasher

    with new_uow() as uow:
        seed_demo(uow=uow, hasher=make_hasher(settings), settings=settings, now=clock.now())
        uow.commit()
    with new_uow() as uow:
        applied = list(
            uow.session.scalars(select(CustodyEvent).where(CustodyEvent.to_state == "labelled"))
        )
        assert len(applied) >= 12  # bags and final products of the journeys that got there
        for event in applied:
            (printed,) = uow.session.scalars(
                select(LabelPrint).where(
                    LabelPrint.item_id == event.item_id, LabelPrint.status == "done"
                )
            )
            assert printed.requested_at < event.occurred_at
            assert printed.reprint is False and printed.din_flags == "00"


# --- concurrency (PostgreSQL: real row locks, committed data) -------------------------------


class SlowPrinter(FakePrinter):
    """A printer that takes a moment, so two requests overlap while one is sending."""

    def send(self, payload: bytes, *, job_name: str) -> None:
        import time

        time.sleep(0.3)
        super().send(payload, job_name=job_name)


def test_two_people_printing_the_same_new_label_at_once_make_one_original(
    pg_only, engine, settings, clock
):
    import threading

    from tests.factories import build_world
    from tracker.db import Base
    from tracker.db import make_session_factory
    from tracker.unit_of_work import UnitOfWork

    factory = make_session_factory(engine)  # outside the test transaction: real commits

    def new_committed_uow():
        return UnitOfWork(factory)

    try:
        world = build_world(new_committed_uow, settings, clock.now())
        order = make_order(new_committed_uow, world, clock.now())
        bag = make_bag(new_committed_uow, world, order, clock.now())
        printer = add_printer(new_committed_uow, world, clock)
        fake = SlowPrinter()
        start = threading.Barrier(2)
        outcomes: list[str] = []

        def press_print(who: str) -> None:
            start.wait()
            try:
                result = do_print(
                    new_committed_uow, world, clock, LabelKind.apheresis_bag, bag.public_id,
                    who=who, printer_public_id=printer.public_id, printer_factory=lambda p: fake,
                )  # fmt: skip
                outcomes.append(f"printed {result.record.din_flags}")
            except TrackerError as exc:
                outcomes.append(exc.reason)

        threads = [threading.Thread(target=press_print, args=(w,)) for w in ("nurse", "coord")]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=30)
        # The second request waited for the first one's row lock, then saw its print.
        assert sorted(outcomes) == ["label_already_printed", "printed 00"]
        assert len(fake.jobs) == 1
    finally:
        tables = ", ".join(t.name for t in Base.metadata.sorted_tables)
        with engine.begin() as conn:
            # TRUNCATE fires no row triggers, so append-only tables can be emptied too.
            conn.execute(text(f"TRUNCATE {tables} RESTART IDENTITY CASCADE"))
