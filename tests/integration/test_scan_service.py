"""Scans through the service on a real database: refusals, replays, offline facts, deviations."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import func
from sqlalchemy import select
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError

from tests import scanning as sc
from tracker.domain.errors import TrackerError
from tracker.domain.journey import default_journey
from tracker.models import CustodyEvent
from tracker.models import Deviation
from tracker.models import Item
from tracker.models import Scan
from tracker.services import auth
from tracker.services import scans


@pytest.fixture
def driver(new_uow, world, clock, settings):
    return sc.Driver(new_uow, world, clock, settings, sc.make_scanners(new_uow, world, clock.now()))


def _state(new_uow):
    """Every item's state and the number of custody events: what a refusal must not change."""
    with new_uow() as uow:
        states = dict(uow.session.execute(select(Item.public_id, Item.state)).all())
        events = uow.session.scalar(select(func.count(CustodyEvent.id)))
    return states, events


def _reasons(new_uow, **where):
    with new_uow() as uow:
        stmt = select(Scan.reason).where(Scan.result == "error").order_by(Scan.id)
        for column, value in where.items():
            stmt = stmt.where(getattr(Scan, column) == value)
        return list(uow.session.scalars(stmt))


class Intruder(sc.Driver):
    """After the first accepted scan of every run, tries another patient's codes in it."""

    other: list[str]
    covered: set[str]

    def scan(self, user, step, raw, **kw):
        outcome = super().scan(user, step, raw, **kw)
        key = (user, step, kw.get("run") or self.run_key(user, step))
        if outcome.body["status"] != "error" and key not in self.seen:
            self.seen.add(key)
            before = _state(self.new_uow)
            for code in self.other:
                wrong = super().scan(user, step, code, **kw)
                assert wrong.body["status"] == "error", (step, code, wrong.body)
                assert wrong.body["reason"] == "coi_mismatch", (step, code, wrong.body)
                assert wrong.http_status == 400
            assert _state(self.new_uow) == before, f"a wrong-patient scan changed state in {step}"
            self.covered.add(step)
        return outcome


def test_a_wrong_patient_code_is_refused_and_recorded_at_every_journey_step(
    new_uow, world, clock, settings
):
    d = Intruder(new_uow, world, clock, settings, sc.make_scanners(new_uow, world, clock.now()))
    d.seen, d.covered = set(), set()
    other = sc.new_journey(d, bags=1, mrn="OTHER")
    # Another patient's wristband, COI label and bag label: each is a hard stop mid-step.
    d.other = [other.wristband, sc.coi_code(other.order), sc.din_code(other.bags[0])]
    j = sc.new_journey(d, bags=1)
    sc.walk(d, j, "infuse")
    journey_steps = {s.code for s in default_journey("fresh").steps if not s.exception}
    assert d.covered == journey_steps
    # Every attempt is stored against the order being worked on, naming the other chain.
    attempts = 3 * len(d.seen)  # one run per step, two at the two-person bedside check
    assert (
        _reasons(new_uow, order_id=j.order.id, scanned_order_id=other.order.id)
        == ["coi_mismatch"] * attempts
    )
    assert _reasons(new_uow, order_id=j.order.id) == ["coi_mismatch"] * attempts


def test_a_label_whose_coi_and_din_disagree_is_a_hard_stop_even_as_the_first_scan(driver):
    j = sc.new_journey(driver, bags=1)
    other = sc.new_journey(driver, bags=1, mrn="OTHER")
    sc.collect(driver, j, upto="collect_verify_patient")
    sc.ok(driver.scan("nurse", "collect_label_bags", j.wristband, site="CC1"))
    compound = f"=+02000{sc.din_code(j.bags[0])}{sc.coi_code(other.order)}"
    body = driver.scan("nurse", "collect_label_bags", compound, site="CC1").body
    assert body["reason"] == "coi_mismatch"


def test_steps_out_of_sequence_are_refused_as_wrong_step(driver, new_uow):
    j = sc.new_journey(driver, bags=1)
    body = driver.scan("nurse", "collect_label_bags", j.wristband, site="CC1").body
    assert body["reason"] == "wrong_step"
    assert "Verify the patient" in body["message"]
    sc.collect(driver, j)
    body = driver.scan("operator", "receive_apheresis", sc.coi_code(j.order), site="MF1").body
    assert body["reason"] == "wrong_step"
    body = driver.scan("infusion", "thaw", j.wristband, site="TC1").body
    assert body["reason"] == "wrong_step"
    assert _state(new_uow)[0][j.bags[0].public_id] == "collected"


def test_within_a_step_codes_are_taken_in_the_step_order(driver):
    j = sc.new_journey(driver, bags=1)
    sc.walk(driver, j, "pickup")
    step = "receive_apheresis"
    sc.ok(driver.scan("operator", step, sc.coi_code(j.order), site="MF1"))
    # A bag before the shipper, seal, logger and the temperature question: out of order.
    body = driver.scan("operator", step, sc.din_code(j.bags[0]), site="MF1").body
    assert (body["reason"], body["message"]) == ("out_of_order", "First: Scan the shipper.")
    sc.ok(driver.scan("operator", step, j.shipper.serial, site="MF1"))
    body = driver.scan("operator", step, "SEAL-NOT-OURS", site="MF1").body
    assert body["reason"] == "shipment_mismatch"
    sc.ok(driver.scan("operator", step, j.seal, site="MF1"))
    body = driver.scan("operator", step, j.wristband, site="MF1").body
    assert body["reason"] == "wrong_item_type"


def test_receipt_is_refused_until_the_scanned_bags_equal_the_shipped_ones(driver, new_uow):
    j = sc.new_journey(driver, bags=3)
    sc.collect(driver, j)
    # All three bags were collected, but only two are shipped.
    shipped, left_behind = j.bags[:2], j.bags[2]
    j.bags = shipped
    sc.pack(driver, j)
    sc.pickup(driver, j)
    step = "receive_apheresis"
    for code in (sc.coi_code(j.order), j.shipper.serial, j.seal, j.logger):
        sc.ok(driver.scan("operator", step, code, site="MF1"))
    sc.ok(driver.answer("operator", step, {"temperature_alarm": False}))
    body = driver.scan("operator", step, sc.din_code(left_behind), site="MF1").body
    assert body["reason"] == "not_in_shipment"
    body = sc.ok(driver.scan("operator", step, sc.din_code(shipped[0]), site="MF1"))
    assert (body["next"]["done"], body["next"]["of"]) == (1, 2)
    assert _state(new_uow)[0][shipped[0].public_id] == "in_transit"
    sc.ok(driver.scan("operator", step, sc.din_code(shipped[1]), site="MF1"), "ok")
    states = _state(new_uow)[0]
    assert [states[b.public_id] for b in shipped] == ["received", "received"]


def test_a_repeated_nonce_returns_the_first_answer_and_stores_nothing_new(driver, new_uow):
    j = sc.new_journey(driver, bags=1)
    first = driver.scan("nurse", "collect_verify_patient", j.wristband, site="CC1", nonce="n-1")
    again = driver.scan("nurse", "collect_verify_patient", "garbage", site="CC1", nonce="n-1")
    assert again.replayed and not first.replayed
    assert (again.http_status, again.body) == (first.http_status, first.body)
    with new_uow() as uow:
        assert uow.session.scalar(select(func.count(Scan.id))) == 1
    # The nonce belongs to its device: another scanner may use the same one.
    other = driver.scan(
        "nurse",
        "collect_verify_patient",
        j.wristband,
        site="CC1",
        nonce="n-1",
        device=driver.scanners["TC1"],
    )
    assert not other.replayed and other.body["reason"] == "forbidden"


def test_every_refused_scan_is_stored_with_what_arrived(driver, new_uow, world, clock):
    late = clock.now() - timedelta(minutes=5)
    body = driver.scan(
        "nurse", "collect_verify_patient", "=w99992600000100\r\n", site="CC1", client_at=late
    ).body
    assert body["reason"] == "caps_lock"
    with new_uow() as uow:
        row = uow.session.scalars(select(Scan)).one()
        assert row.raw == "=w99992600000100\r\n"
        assert row.user_id == world.users["nurse"].id and row.device_id is not None
        assert (row.client_at, row.server_at) == (late, clock.now())
        assert (row.result, row.reason, row.message) == ("error", body["reason"], body["message"])
        assert row.parsed is None and row.response["reason"] == "caps_lock"


def test_keyboard_damage_is_explained_with_the_likely_reading_never_applied(driver):
    j = sc.new_journey(driver, bags=1)
    sc.collect(driver, j, upto="collect_verify_patient")
    sc.ok(driver.scan("nurse", "collect_label_bags", j.wristband, site="CC1"))
    body = driver.scan(
        "nurse", "collect_label_bags", sc.din_code(j.bags[0]).lower(), site="CC1"
    ).body
    assert body["reason"] == "caps_lock"
    assert body["suggestion"] == sc.din_code(j.bags[0])
    # The bag is still waiting for its label confirmation.
    sc.ok(driver.scan("nurse", "collect_label_bags", sc.din_code(j.bags[0]), site="CC1"), "ok")


def test_a_typed_din_is_accepted_only_with_its_check_character(driver):
    from tracker.domain.identifiers import isbt_check_character

    j = sc.new_journey(driver, bags=1)
    sc.collect(driver, j, upto="collect_verify_patient")
    sc.ok(driver.scan("nurse", "collect_label_bags", j.wristband, site="CC1"))
    din = j.bags[0].din
    body = driver.scan("nurse", "collect_label_bags", din, site="CC1", manual=True).body
    assert body["reason"] == "malformed"
    wrong = "0" if isbt_check_character(din) != "0" else "1"
    body = driver.scan("nurse", "collect_label_bags", din + wrong, site="CC1", manual=True).body
    assert body["reason"] == "bad_check_character"
    typed = f"{din[:5]} {din[5:7]} {din[7:]} {isbt_check_character(din)}"
    sc.ok(driver.scan("nurse", "collect_label_bags", typed, site="CC1", manual=True), "ok")


def test_scanner_device_role_and_site_are_checked(driver, world):
    j = sc.new_journey(driver, bags=1)
    assert (
        driver.scan(
            "nurse", "collect_verify_patient", j.wristband, site="CC1", device="DEV-NOPE"
        ).body["reason"]
        == "unknown_device"
    )
    assert (
        driver.scan(
            "nurse", "collect_verify_patient", j.wristband, site="CC1", device="DEV-NOPE"
        ).http_status
        == 404
    )
    # The operator works at MF1 only: the collection scanner is not theirs.
    body = driver.scan("operator", "collect_verify_patient", j.wristband, site="CC1").body
    assert body["reason"] == "forbidden"
    # The coordinator works at CC1, but verifying the patient is the nurse's step.
    body = driver.scan("coord", "collect_verify_patient", j.wristband, site="CC1").body
    assert body["reason"] == "forbidden"
    body = driver.scan("coord", "collect_verify_patient", j.wristband, site="TC1").body
    assert body["reason"] == "wrong_site"


def test_only_people_scan(driver, world):
    from tracker.services.principals import Principal

    j = sc.new_journey(driver, bags=1)
    device_only = Principal(user_id=None, name="scanner", device_id=1, device_site_id=1)
    with driver.new_uow() as uow, pytest.raises(TrackerError) as refused:
        scans.record_scan(
            uow=uow,
            principal=device_only,
            scan=scans.ScanInput(
                j.wristband,
                driver.scanners["CC1"],
                "collect_verify_patient",
                driver.clock.now(),
                "n",
            ),
            now=driver.clock.now(),
        )
    assert refused.value.reason == "forbidden"


def test_an_offline_scan_that_would_fail_is_kept_forced_and_blocks_the_next_step(
    driver, new_uow, clock, world, settings
):
    j = sc.new_journey(driver, bags=1)
    sc.collect(driver, j)
    sc.pack(driver, j)
    # The courier's handheld was offline; it scanned the wrong shipper's COI label... of
    # another patient, and uploads an hour later with its own times and nonces.
    other = sc.new_journey(driver, bags=1, mrn="OTHER")
    then = clock.now()
    driver.tick(60)
    first = driver.scan(
        "courier",
        "pickup_apheresis",
        sc.coi_code(j.order),
        site="CD1",
        offline=True,
        client_at=then,
    )
    assert first.body["status"] == "incomplete" and first.body["offline"] is True
    forced = driver.scan(
        "courier",
        "pickup_apheresis",
        sc.coi_code(other.order),
        site="CD1",
        offline=True,
        client_at=then + timedelta(seconds=20),
    )
    assert forced.body["reason"] == "coi_mismatch" and forced.body["forced"] is True
    deviation = forced.body["deviation"]
    assert deviation and "Deviation" in forced.body["message"]
    # The offline pickup itself completes (it happened), with the device's time.
    done = driver.scan(
        "courier",
        "pickup_apheresis",
        j.shipper.serial,
        site="CD1",
        offline=True,
        client_at=then + timedelta(seconds=40),
    )
    assert done.body["status"] == "ok"
    with new_uow() as uow:
        row = uow.session.scalars(select(Scan).where(Scan.forced.is_(True))).one()
        assert row.offline and row.result == "error" and row.deviation_id is not None
        event = uow.session.scalars(
            select(CustodyEvent).where(CustodyEvent.to_state == "in_transit")
        ).first()
        assert event.occurred_at == then + timedelta(seconds=40)
    # The next custody step is blocked until QA closes the deviation with a reason.
    body = driver.scan("operator", "receive_apheresis", sc.coi_code(j.order), site="MF1").body
    assert body["reason"] == "deviation_open"
    with new_uow() as uow, pytest.raises(TrackerError) as refused:
        scans.close_deviation(
            uow=uow,
            hasher=auth.make_hasher(settings),
            settings=settings,
            principal=world.principals["operator"],
            deviation_public_id=deviation,
            reason="looked",
            password=sc.WORLD_PASSWORD,
            now=clock.now(),
        )
    assert refused.value.reason == "forbidden"
    with new_uow() as uow:
        scans.close_deviation(
            uow=uow,
            hasher=auth.make_hasher(settings),
            settings=settings,
            principal=world.principals["qa"],
            deviation_public_id=deviation,
            reason="Label of another patient was scanned by mistake; right shipper collected.",
            password=sc.WORLD_PASSWORD,
            now=clock.now(),
        )
        uow.commit()
    sc.receive(driver, j)


def test_offline_scans_that_are_merely_unreadable_or_repeated_open_no_deviation(driver, new_uow):
    j = sc.new_journey(driver, bags=1)
    driver.scan("nurse", "collect_verify_patient", "???", site="CC1", offline=True)
    driver.scan("nurse", "collect_verify_patient", j.wristband, site="CC1", offline=True)
    body = driver.scan(
        "nurse", "collect_verify_patient", j.wristband, site="CC1", offline=True
    ).body
    assert body["reason"] == "already_scanned" and body["forced"] is False
    with new_uow() as uow:
        assert uow.session.scalar(select(func.count(Deviation.id))) == 0


def test_a_temperature_alarm_opens_a_deviation_but_storage_still_happens(driver, new_uow):
    j = sc.new_journey(driver, bags=1)
    sc.walk(driver, j, "pickup")
    step = "receive_apheresis"
    for code in (sc.coi_code(j.order), j.shipper.serial, j.seal, j.logger):
        sc.ok(driver.scan("operator", step, code, site="MF1"))
    body = sc.ok(driver.answer("operator", step, {"temperature_alarm": True}))
    assert "Deviation" in body["message"]
    # The receipt that raised it may still finish ...
    sc.ok(driver.scan("operator", step, sc.din_code(j.bags[0]), site="MF1"), "ok")
    # ... but manufacturing is blocked until QA has looked.
    body = driver.scan("operator", "start_manufacturing", sc.coi_code(j.order), site="MF1").body
    assert body["reason"] == "deviation_open"


def test_a_no_to_the_identity_question_stops_the_step(driver):
    j = sc.new_journey(driver, bags=1)
    sc.ok(driver.scan("nurse", "collect_verify_patient", j.wristband, site="CC1"))
    body = driver.answer("nurse", "collect_verify_patient", {"identity_confirmed": False}).body
    assert body["reason"] == "checklist_refused"
    body = driver.scan("nurse", "collect_label_bags", j.wristband, site="CC1").body
    assert body["reason"] == "wrong_step"


def test_two_scanners_in_the_same_step_share_one_run(driver, new_uow):
    j = sc.new_journey(driver, bags=2)
    sc.collect(driver, j, upto="collect_verify_patient")
    step = "collect_label_bags"
    sc.ok(driver.scan("nurse", step, j.wristband, site="CC1", run="bench-a"))
    joined = sc.ok(driver.scan("nurse", step, j.wristband, site="CC1", run="bench-b"))
    assert joined["message"].startswith("Joined")
    sc.ok(driver.scan("nurse", step, sc.din_code(j.bags[0]), site="CC1", run="bench-a"))
    body = driver.scan("nurse", step, sc.din_code(j.bags[0]), site="CC1", run="bench-b").body
    assert body["reason"] == "already_scanned"
    sc.ok(driver.scan("nurse", step, sc.din_code(j.bags[1]), site="CC1", run="bench-b"), "ok")


def test_bedside_verification_needs_two_different_people_within_the_window(driver, clock):
    j = sc.new_journey(driver, bags=1)
    sc.walk(driver, j, "thaw")
    step = "bedside_verify"
    for code in (j.wristband, sc.din_code(j.products[0]), j.certificate):
        sc.ok(driver.scan("infusion", step, code, site="TC1"))
    body = sc.ok(driver.sign("infusion", step, "verification"))
    assert body["waiting_for_second_person"] is True
    again = driver.sign("infusion", step, "verification").body
    assert again["reason"] == "already_scanned"
    # The second person comes 16 minutes later: the first verification has lapsed.
    driver.tick(16)
    for code in (j.wristband, sc.din_code(j.products[0]), j.certificate):
        sc.ok(driver.scan("coord", step, code, site="TC1"))
    body = sc.ok(driver.sign("coord", step, "verification"))
    assert body["waiting_for_second_person"] is True
    body = sc.ok(driver.sign("infusion", step, "verification"), "ok")
    assert body["following"] == [{"code": "infusion_start", "title": "Start infusion"}]


def test_infusion_is_refused_once_the_thaw_countdown_has_run_out(driver, new_uow):
    j = sc.new_journey(driver, bags=1)
    sc.walk(driver, j, "ship_product")
    body = sc.thaw(driver, j)
    assert body["countdown"]["deadline"] == (driver.clock.now() + timedelta(minutes=30)).isoformat()
    sc.verify_at_bedside(driver, j)
    driver.tick(31)
    body = driver.scan("infusion", "infusion_start", j.wristband, site="TC1").body
    assert body["reason"] == "expired"
    assert _state(new_uow)[0][j.products[0].public_id] == "thawed"


def test_a_quarantined_bag_is_stopped_and_returns_only_through_qa(driver, new_uow):
    j = sc.new_journey(driver, bags=1)
    sc.walk(driver, j, "release")
    bag = sc.din_code(j.products[0])
    sc.ok(driver.scan("qa", "quarantine", sc.coi_code(j.order), site="MF1"))
    sc.ok(driver.scan("qa", "quarantine", bag, site="MF1"))
    with pytest.raises(TrackerError) as blank:
        driver.answer("qa", "quarantine", {"reason": "  "})
    assert blank.value.reason == "invalid_request"
    sc.ok(driver.answer("qa", "quarantine", {"reason": "Visible crack in the cassette"}), "ok")
    with new_uow() as uow:
        event = uow.session.scalars(
            select(CustodyEvent).where(CustodyEvent.to_state == "quarantined")
        ).one()
        assert event.reason == "Visible crack in the cassette"
    # Packing refuses it.
    shipper = sc.make_shipper(driver.new_uow, driver.world, driver.clock.now(), site="MF1")
    sc.plan_shipment(
        driver.new_uow,
        driver.world,
        j.order,
        j.products,
        driver.clock.now(),
        origin="MF1",
        destination="TC1",
    )
    sc.ok(driver.scan("operator", "pack_product", sc.coi_code(j.order), site="MF1"))
    sc.ok(driver.scan("operator", "pack_product", shipper.serial, site="MF1"))
    body = driver.scan("operator", "pack_product", bag, site="MF1").body
    assert body["reason"] == "quarantined"
    # QA releases it from quarantine (reason and signature), then releases it for infusion.
    sc.ok(driver.scan("qa", "release_quarantine", sc.coi_code(j.order), site="MF1"))
    sc.ok(driver.scan("qa", "release_quarantine", bag, site="MF1"))
    sc.ok(driver.answer("qa", "release_quarantine", {"reason": "Cassette replaced; bag intact"}))
    sc.ok(driver.sign("qa", "release_quarantine", "approval"), "ok")
    assert _state(new_uow)[0][j.products[0].public_id] == "stored"
    driver.new_run("qa", "qa_release")
    sc.release(driver, j)
    sc.ok(driver.scan("operator", "pack_product", bag, site="MF1"))


def test_discarding_needs_qa_a_reason_and_a_signature(driver, new_uow):
    j = sc.new_journey(driver, bags=1)
    sc.collect(driver, j)
    code = sc.din_code(j.bags[0])
    body = driver.scan("nurse", "discard", sc.coi_code(j.order), site="CC1").body
    assert body["reason"] == "forbidden"
    assert driver.scan("qa", "discard", sc.coi_code(j.order), site="MF1").http_status == 201
    # QA's scanner is at the manufacturing site; the bag is at the collection site.
    assert driver.scan("qa", "discard", code, site="MF1").body["reason"] == "wrong_site"
    assert _state(new_uow)[0][j.bags[0].public_id] == "collected"


def test_scans_cannot_be_changed_or_deleted(driver, new_uow):
    j = sc.new_journey(driver, bags=1)
    driver.scan("nurse", "collect_verify_patient", j.wristband, site="CC1")
    for sql in ("UPDATE scans SET reason = 'x'", "DELETE FROM scans"):
        with new_uow() as uow, pytest.raises(DBAPIError):
            uow.session.execute(text(sql))


def test_qa_discards_a_bag_with_a_reason_and_a_signature(driver, new_uow):
    j = sc.new_journey(driver, bags=1)
    sc.walk(driver, j, "release")
    bag = sc.din_code(j.products[0])
    sc.ok(driver.scan("qa", "discard", sc.coi_code(j.order), site="MF1"))
    sc.ok(driver.scan("qa", "discard", bag, site="MF1"))
    body = sc.ok(driver.answer("qa", "discard", {"reason": "Bag punctured during handling"}))
    assert body["next"]["type"] == "signature"
    with pytest.raises(TrackerError) as wrong:
        driver.sign("qa", "discard", "approval", password="wrong password")
    assert wrong.value.reason == "signature_failed"
    assert _state(new_uow)[0][j.products[0].public_id] == "released"
    sc.ok(driver.sign("qa", "discard", "approval"), "ok")
    assert _state(new_uow)[0][j.products[0].public_id] == "discarded"


def test_a_quarantined_product_goes_back_to_the_manufacturer_from_the_treatment_site(
    driver, new_uow
):
    j = sc.new_journey(driver, bags=1)
    sc.walk(driver, j, "ship_product")
    bag = sc.din_code(j.products[0])
    # Not quarantined yet: returning it is refused.
    sc.ok(driver.scan("infusion", "return_to_manufacturer", sc.coi_code(j.order), site="TC1"))
    body = driver.scan("infusion", "return_to_manufacturer", bag, site="TC1").body
    assert body["reason"] == "custody_gap"
    for step, answer in (
        ("quarantine", "Logger showed a temperature excursion"),
        ("return_to_manufacturer", "Returned for investigation"),
    ):
        driver.new_run("infusion", step)
        sc.ok(driver.scan("infusion", step, sc.coi_code(j.order), site="TC1"))
        sc.ok(driver.scan("infusion", step, bag, site="TC1"))
        sc.ok(driver.answer("infusion", step, {"reason": answer}), "ok")
    assert _state(new_uow)[0][j.products[0].public_id] == "returned_to_manufacturer"
