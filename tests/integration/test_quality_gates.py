"""Quality gates end to end through the services and the scan steps.

Acceptance at receipt decides and gates manufacturing; a rejection alerts the coordinator with
the plan's knock-on effects; the lot's release tests gate the one QA release step; an OOS lot
is released only exceptionally, after the physician's acknowledgement; corrections are new
rows with a reason; a late test moves the expected release and alerts before lymphodepletion.
"""

from __future__ import annotations

import json
from datetime import timedelta

import pytest
from sqlalchemy import select

from schedules import service as plans
from tests import scanning as sc
from tests.factories_schedules import build_capacity
from tracker.domain.chain import canonical_json
from tracker.domain.errors import TrackerError
from tracker.models import Alert
from tracker.models import Deviation
from tracker.models import ReleaseCertificate
from tracker.models import Signature
from tracker.models_quality import LotRelease
from tracker.models_quality import ManufacturingLot
from tracker.models_quality import ReleaseTest
from tracker.models_quality import ReleaseTestResult
from tracker.services import quality
from tracker.services import scans
from tracker.services.auth import make_hasher
from tracker.services.auth import signature_matches


@pytest.fixture
def driver(new_uow, world, clock, settings):  # type: ignore[no-untyped-def]
    scanners = sc.make_scanners(new_uow, world, clock.now())
    return sc.Driver(new_uow, world, clock, settings, scanners)


def received(driver):  # type: ignore[no-untyped-def]
    j = sc.new_journey(driver, bags=1)
    for play in (sc.collect, sc.pack, sc.pickup, sc.receive):
        play(driver, j)
    return j


def made(driver):  # type: ignore[no-untyped-def]
    """A journey whose product is stored and waiting for QA release; returns it and its lot."""
    j = received(driver)
    sc.manufacture(driver, j)
    return j, sc.lot_code(driver, j)


def record(driver, code, test, value, unit=None, who="operator", **kw):  # type: ignore[no-untyped-def]
    with driver.new_uow() as uow:
        row = quality.record_result(
            uow=uow,
            principal=driver.world.principals[who],
            lot_code=code,
            test_code=test,
            value=value,
            unit=unit,
            now=driver.clock.now(),
            **kw,
        )
        uow.commit()
        return row


def review(driver, result_id, who="qa"):  # type: ignore[no-untyped-def]
    with driver.new_uow() as uow:
        row = quality.review_result(
            uow=uow,
            principal=driver.world.principals[who],
            result_id=result_id,
            now=driver.clock.now(),
        )
        uow.commit()
        return row


def book(new_uow, world, clock, j):  # type: ignore[no-untyped-def]
    with new_uow() as uow:
        plan = plans.book_plan(
            uow=uow,
            principal=world.principals["coord"],
            order_public_id=j.order.public_id,
            earliest_collection=clock.now(),
            now=clock.now(),
        )
        uow.commit()
        return plan.public_id


def planned_and_started(driver, new_uow, world, clock):  # type: ignore[no-untyped-def]
    """A booked plan, the material received and accepted, manufacturing started."""
    build_capacity(new_uow, world, clock.now())
    j = received(driver)
    book(new_uow, world, clock, j)
    sc.accept_material(driver, j)
    sc.bags_step(driver, j, "start_manufacturing", "operator", "MF1", j.bags)
    return j


def qa_release_refusal(driver, j):  # type: ignore[no-untyped-def]
    body = driver.scan("qa", "qa_release", sc.coi_code(j.order), site="MF1").body
    assert body["status"] == "error"
    return body["reason"], body["message"]


# --- acceptance ----------------------------------------------------------------------------


def test_manufacturing_is_refused_until_the_material_is_accepted(driver, new_uow):
    j = received(driver)
    sc.ok(driver.scan("operator", "start_manufacturing", sc.coi_code(j.order), site="MF1"))
    body = driver.scan("operator", "start_manufacturing", sc.din_code(j.bags[0]), site="MF1").body
    assert (body["status"], body["reason"]) == ("error", "material_not_accepted")
    outcome = sc.accept_material(driver, j)
    assert outcome.acceptance.decision == "accepted" and outcome.decision.failed == ()
    sc.ok(driver.scan("operator", "start_manufacturing", sc.din_code(j.bags[0]), site="MF1"), "ok")
    with new_uow() as uow:
        lot = quality.order_lot(uow.session, j.order.id)
        assert lot is not None and lot.status == "manufacturing"
        assert lot.acceptance_id == outcome.acceptance.id and lot.process == "standard_9d"
        tests = {t.code: t.due_at for t in quality.lot_tests(uow.session, lot.id)}
        harvest = lot.started_at + timedelta(days=9)
    # Samples at harvest (9 days), each due after its method's turnaround.
    assert set(tests) == set(sc.PASSING_RESULTS)
    assert tests["sterility"] == harvest + timedelta(hours=336)
    assert tests["viability"] == harvest + timedelta(hours=4)


def test_only_the_manufacturing_site_records_acceptance_and_only_after_receipt(driver):
    j = sc.new_journey(driver, bags=1)
    sc.collect(driver, j)
    with pytest.raises(TrackerError) as early:
        sc.accept_material(driver, j)
    assert early.value.reason == "out_of_order"
    for play in (sc.pack, sc.pickup, sc.receive):
        play(driver, j)
    for who, reason in (("coord", "forbidden"), ("nurse", "forbidden"), ("coord2", "not_found")):
        with driver.new_uow() as uow, pytest.raises(TrackerError) as refused:
            quality.record_acceptance(
                uow=uow,
                principal=driver.world.principals[who],
                order_public_id=j.order.public_id,
                measurements=sc.GOOD_MATERIAL,
                now=driver.clock.now(),
            )
        assert refused.value.reason == reason, who


def test_a_deviation_criterion_opens_a_deviation_that_qa_closes_before_manufacturing(
    driver, new_uow
):
    j = received(driver)
    low = sc.GOOD_MATERIAL | {"viability": (0.72, "fraction")}
    outcome = sc.accept_material(driver, j, low)
    assert outcome.acceptance.decision == "accepted_with_deviation"
    assert [r.criterion.code for r in outcome.decision.failed] == ["viability"]
    assert "Viability 72 % is below the minimum 80 %" in outcome.decision.summary()
    with new_uow() as uow:
        dev = uow.session.scalar(select(Deviation).where(Deviation.public_id == outcome.deviation))
        assert dev is not None and dev.status == "open" and "Viability" in dev.description
    sc.ok(driver.scan("operator", "start_manufacturing", sc.coi_code(j.order), site="MF1"))
    body = driver.scan("operator", "start_manufacturing", sc.din_code(j.bags[0]), site="MF1").body
    assert body["reason"] == "deviation_open"
    with new_uow() as uow:
        scans.close_deviation(
            uow=uow,
            hasher=make_hasher(driver.settings),
            settings=driver.settings,
            principal=driver.world.principals["qa"],
            deviation_public_id=outcome.deviation,
            reason="Viability acceptable for this patient per medical review",
            password=driver.world.password,
            now=driver.clock.now(),
        )
        uow.commit()
    code = sc.din_code(j.bags[0])
    sc.ok(driver.scan("operator", "start_manufacturing", code, site="MF1"), "ok")


def test_a_rejection_alerts_the_coordinator_with_the_plans_knock_on_and_blocks_manufacturing(
    driver, new_uow, world, clock
):
    build_capacity(new_uow, world, clock.now())
    j = received(driver)
    plan_id = book(new_uow, world, clock, j)
    outcome = sc.accept_material(driver, j, sc.GOOD_MATERIAL | {"tnc": (1500, "10^6 cells")})
    assert outcome.acceptance.decision == "rejected"
    assert outcome.decision.failed[0].why.startswith("Total nucleated cells 1.5 10^9 cells")
    knock = outcome.knock_on
    assert knock is not None and knock["recollection"] and knock["plan"] == plan_id
    moved = {m["step"] for m in knock["moves"]}
    assert "collection" in moved and "infusion" in moved  # the whole plan slides
    with new_uow() as uow:
        alert = uow.session.scalar(select(Alert).where(Alert.order_id == j.order.id))
        assert alert is not None and alert.site_id == world.sites["TC1"].id
        assert "re-collection" in alert.title and alert.details["moves"] == knock["moves"]
    sc.ok(driver.scan("operator", "start_manufacturing", sc.coi_code(j.order), site="MF1"))
    body = driver.scan("operator", "start_manufacturing", sc.din_code(j.bags[0]), site="MF1").body
    assert body["reason"] == "material_not_accepted" and "re-collection" in body["message"]


def test_an_acceptance_is_corrected_by_a_new_decision_with_a_reason(driver, new_uow):
    j = received(driver)
    first = sc.accept_material(driver, j, sc.GOOD_MATERIAL | {"cd3_fraction": (5.0, "%")})
    assert first.acceptance.decision == "rejected"
    with new_uow() as uow, pytest.raises(TrackerError) as no_reason:
        quality.record_acceptance(
            uow=uow,
            principal=driver.world.principals["operator"],
            order_public_id=j.order.public_id,
            measurements=sc.GOOD_MATERIAL,
            supersedes_id=first.acceptance.id,
            now=driver.clock.now(),
        )
    assert no_reason.value.reason == "reason_required"
    with new_uow() as uow:
        fixed = quality.record_acceptance(
            uow=uow,
            principal=driver.world.principals["operator"],
            order_public_id=j.order.public_id,
            measurements=sc.GOOD_MATERIAL,
            supersedes_id=first.acceptance.id,
            reason="CD3+ entered as 5 instead of 50 (transcription)",
            now=driver.clock.now(),
        )
        uow.commit()
    assert fixed.acceptance.decision == "accepted"
    with new_uow() as uow:
        assert quality.current_acceptance(uow.session, j.order.id).id == fixed.acceptance.id
    sc.bags_step(driver, j, "start_manufacturing", "operator", "MF1", j.bags)


# --- release testing and the one release --------------------------------------------------


def test_release_is_refused_while_a_test_is_pending_or_unreviewed(driver, new_uow):
    j, code = made(driver)
    reason, message = qa_release_refusal(driver, j)
    assert reason == "release_tests_incomplete" and "sterility (no result)" in message
    rows = {t: record(driver, code, t, v, u) for t, (v, u) in sc.PASSING_RESULTS.items()}
    reason, message = qa_release_refusal(driver, j)
    assert reason == "release_tests_incomplete" and "potency (not reviewed)" in message
    with pytest.raises(TrackerError) as own:
        review(driver, rows["potency"].id, who="operator")
    assert own.value.reason == "forbidden"  # operators record; QA reviews
    for row in rows.values():
        review(driver, row.id)
    driver.new_run("qa", "qa_release")
    sc.release(driver, j)
    with new_uow() as uow:
        release = uow.session.scalar(select(LotRelease))
        lot = uow.session.get(ManufacturingLot, release.lot_id)
        cert = uow.session.get(ReleaseCertificate, release.certificate_id)
        assert (release.kind, lot.status, cert.code) == ("standard", "released", j.certificate)
        assert cert.items["lot"] == code and release.physician_name is None


def test_a_reviewer_must_not_be_the_recorder(driver):
    _j, code = made(driver)
    row = record(driver, code, "viability", "90", "%", who="qa")
    with pytest.raises(TrackerError) as same:
        review(driver, row.id, who="qa")
    assert same.value.reason == "reviewer_is_recorder"


def test_an_oos_lot_is_refused_and_released_only_exceptionally_with_the_physicians_word(
    driver, new_uow
):
    j, code = made(driver)
    results = sc.PASSING_RESULTS | {"endotoxin": ("7.5", "EU/mL")}
    for test, (value, unit) in results.items():
        review(driver, record(driver, code, test, value, unit).id)
    reason, message = qa_release_refusal(driver, j)
    assert reason == "lot_out_of_specification" and "endotoxin" in message
    ack_at = driver.clock.now() - timedelta(minutes=30)
    with new_uow() as uow:
        ack = quality.acknowledge_oos(
            uow=uow,
            principal=driver.world.principals["qa"],
            lot_code=code,
            physician_name="Dr. Treating",
            statement="Endotoxin 7.5 EU/mL acknowledged; no alternative; infuse.",
            acknowledged_at=ack_at,
            now=driver.clock.now(),
        )
        uow.commit()
    assert ack.oos_results["tests"] == ["endotoxin"]
    driver.new_run("qa", "qa_release")
    sc.release(driver, j)
    with new_uow() as uow:
        release = uow.session.scalar(select(LotRelease))
        lot = uow.session.get(ManufacturingLot, release.lot_id)
        outcome = uow.session.scalar(
            select(ReleaseTestResult.outcome)
            .join(ReleaseTest)
            .where(ReleaseTest.lot_id == lot.id, ReleaseTest.code == "endotoxin")
        )
        assert (release.kind, lot.status) == ("exceptional", "exceptional_release")
        assert (release.physician_name, release.physician_acknowledged_at) == (
            "Dr. Treating",
            ack_at,
        )
    assert outcome == "oos"  # the result is kept as it was: never edited to pass
    sc.ship_product(driver, j)  # the bedside flow works on an exceptional release too
    sc.thaw(driver, j)
    sc.verify_at_bedside(driver, j)


def test_the_acknowledgement_covers_only_the_oos_results_it_named(driver, new_uow):
    j, code = made(driver)
    rows = {}
    for test, (value, unit) in (sc.PASSING_RESULTS | {"vcn": ("6.2", "copies/cell")}).items():
        rows[test] = record(driver, code, test, value, unit)
        review(driver, rows[test].id)
    with new_uow() as uow:
        quality.acknowledge_oos(
            uow=uow,
            principal=driver.world.principals["qa"],
            lot_code=code,
            physician_name="Dr. Treating",
            statement="VCN 6.2 acknowledged.",
            acknowledged_at=driver.clock.now(),
            now=driver.clock.now(),
        )
        uow.commit()
    # A re-test corrects VCN to another OOS value: the old acknowledgement no longer covers it.
    fixed = record(
        driver, code, "vcn", "5.8", "copies/cell", supersedes_id=rows["vcn"].id, reason="re-test"
    )
    review(driver, fixed.id)
    assert qa_release_refusal(driver, j)[0] == "lot_out_of_specification"


def test_results_are_corrected_by_new_rows_with_a_reason_never_in_place(driver, new_uow):
    j, code = made(driver)
    rows = {t: record(driver, code, t, v, u) for t, (v, u) in sc.PASSING_RESULTS.items()}
    wrong = record(
        driver,
        code,
        "potency",
        "45",
        "pg/mL",
        supersedes_id=rows["potency"].id,
        reason="value re-read from the plate reader",
    )
    assert wrong.outcome == "oos"
    with pytest.raises(TrackerError) as twice:
        record(driver, code, "potency", "450", "pg/mL")
    assert twice.value.reason == "conflict"
    with pytest.raises(TrackerError) as no_reason:
        record(driver, code, "potency", "450", "pg/mL", supersedes_id=wrong.id)
    assert no_reason.value.reason == "reason_required"
    with pytest.raises(TrackerError) as stale:
        record(
            driver, code, "potency", "450", "pg/mL", supersedes_id=rows["potency"].id, reason="x"
        )
    assert stale.value.reason == "superseded"
    with pytest.raises(TrackerError) as old_review:
        review(driver, rows["potency"].id)
    assert old_review.value.reason == "superseded"
    right = record(
        driver,
        code,
        "potency",
        "450",
        "pg/mL",
        supersedes_id=wrong.id,
        reason="plate reader export mis-scaled; original 450 confirmed",
    )
    for t, row in rows.items():
        review(driver, (right if t == "potency" else row).id)
    with new_uow() as uow:
        history = uow.session.scalars(
            select(ReleaseTestResult.value)
            .join(ReleaseTest)
            .where(ReleaseTest.code == "potency")
            .order_by(ReleaseTestResult.id)
        ).all()
    assert history == ["450", "45", "450"]
    driver.new_run("qa", "qa_release")
    sc.release(driver, j)


def test_the_qa_signature_covers_the_lots_complete_record_including_results(driver, new_uow):
    j, code = made(driver)
    sc.release(driver, j)
    with new_uow() as uow:
        cert = uow.session.scalar(
            select(ReleaseCertificate).where(ReleaseCertificate.code == j.certificate)
        )
        signature, content = scans.release_signature(uow.session, cert.run_id)
        signature_id = cert.signature_id
        assert signature.id == signature_id
        lot = quality.order_lot(uow.session, j.order.id)
        assert cert.items["lot_record_hash"] == quality.lot_record_hash(uow.session, lot)
        assert signature_matches(signature, content)
    values = {t["code"]: t["results"][0]["value"] for t in content["lot"]["tests"]}
    assert values == {t: v for t, (v, _u) in sc.PASSING_RESULTS.items()}
    # Any other result value would not match the signature.
    tampered = canonical_json(content).replace('"value":"450"', '"value":"451"')
    assert tampered != canonical_json(content)
    with new_uow() as uow:
        signature = uow.session.get(Signature, signature_id)
        assert not signature_matches(signature, json.loads(tampered))


def test_certificates_come_from_the_release_step_only(driver, new_uow):
    j, _code = made(driver)
    sc.release(driver, j)
    with new_uow() as uow:
        certs = [(c.id, c.code) for c in uow.session.scalars(select(ReleaseCertificate))]
        releases = [
            (r.certificate_id, r.signature_id) for r in uow.session.scalars(select(LotRelease))
        ]
        sigs = set(uow.session.scalars(select(Signature.id).where(Signature.meaning == "approval")))
    assert [c for _, c in certs] == [j.certificate]
    assert [r[0] for r in releases] == [certs[0][0]]
    assert releases[0][1] in sigs


# --- expected release against the plan ------------------------------------------------------


def test_a_late_test_moves_the_expected_release_and_alerts_before_lymphodepletion(
    driver, new_uow, world, clock
):
    j = planned_and_started(driver, new_uow, world, clock)
    with new_uow() as uow:
        lot = quality.order_lot(uow.session, j.order.id)
        lot_id, code = lot.id, lot.code
        ld = quality.planned_ld_start(uow.session, j.order.id)
        first = quality.estimate(uow.session, lot, clock.now())
        sterility_due = max(t.due_at for t in quality.lot_tests(uow.session, lot.id))
    assert ld is not None and first.slowest == "sterility" and first.expected_at == sterility_due
    # On time, release comes before the planned lymphodepletion: nothing to tell anyone.
    assert first.expected_at <= ld
    with new_uow() as uow:
        assert not uow.session.scalars(select(Alert).where(Alert.order_id == j.order.id)).all()
    # Every test but sterility reports; sterility passes its due time without a result.
    for t, (v, u) in sc.PASSING_RESULTS.items():
        if t != "sterility":
            review(driver, record(driver, code, t, v, u).id)
    late_now = sterility_due + timedelta(hours=3)
    with new_uow() as uow:
        lot = uow.session.get(ManufacturingLot, lot_id)
        late = quality.estimate(uow.session, lot, late_now)
        later = quality.estimate(uow.session, lot, late_now + timedelta(days=1))
        still_before_ld = quality.check_release_against_plan(uow.session, lot, late_now)
    assert late.late == ("sterility",)
    assert late.expected_at == late_now + timedelta(hours=24)  # now + the default grace
    assert later.expected_at == late.expected_at + timedelta(days=1)  # and it keeps moving
    assert not still_before_ld
    # Half a day before lymphodepletion, still no sterility result: the expected release is
    # now after the LD start, and the coordinator hears it before LD begins.
    at = ld - timedelta(hours=12)
    with new_uow() as uow:
        lot = uow.session.get(ManufacturingLot, lot_id)
        assert quality.check_release_against_plan(uow.session, lot, at)
        uow.commit()
    with new_uow() as uow:
        alerts = [
            (a.details["quality"], a.details["expected_release"], a.site_id, a.title)
            for a in uow.session.scalars(select(Alert).where(Alert.order_id == j.order.id))
        ]
    assert len(alerts) == 1
    kind, expected, site, title = alerts[0]
    assert (kind, expected, site) == (
        "release_after_ld",
        (at + timedelta(hours=24)).isoformat(),
        world.sites["TC1"].id,
    )
    assert "sterility late" in title


def test_the_sweeper_alerts_when_a_late_result_pushes_release_past_lymphodepletion(
    driver, new_uow, world, clock
):
    j = planned_and_started(driver, new_uow, world, clock)
    with new_uow() as uow:
        lot = quality.order_lot(uow.session, j.order.id)
        ld = quality.planned_ld_start(uow.session, j.order.id)
        viability_due = next(
            t.due_at for t in quality.lot_tests(uow.session, lot.id) if t.code == "viability"
        )

    def after_ld_alerts() -> list[tuple[int, dict]]:
        with new_uow() as uow:
            return [
                (a.id, a.details)
                for a in uow.session.scalars(
                    select(Alert).where(
                        Alert.order_id == j.order.id, Alert.dedupe_key.like("quality:after_ld:%")
                    )
                )
            ]

    before = len(after_ld_alerts())
    assert ld is not None
    # Just before LD, with tests still late: the sweep re-estimates and alerts (once a day).
    at = ld - timedelta(hours=2)
    assert at > viability_due
    with new_uow() as uow:
        assert quality.sweep_release_estimates(uow=uow, now=at) == 1
    with new_uow() as uow:
        quality.sweep_release_estimates(uow=uow, now=at + timedelta(minutes=30))
    alerts = after_ld_alerts()
    assert len(alerts) == before + 1
    newest = max(alerts, key=lambda a: a[0])[1]
    assert newest["expected_release"] > ld.isoformat()
    # After lymphodepletion has started there is nothing left to warn about.
    with new_uow() as uow:
        assert quality.sweep_release_estimates(uow=uow, now=ld + timedelta(hours=1)) == 0
