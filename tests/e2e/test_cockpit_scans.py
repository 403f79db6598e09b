"""Scans, deviations and step signatures in the cockpit: the journey timeline (refused scans
too), the dashboard (activity, deviations, clock), the inbox (QA closes with a signature),
the audit trail by patient, and the certificate bundle."""

from __future__ import annotations

import re

import pytest
from sqlalchemy import select

from tests import scanning as sc
from tests.conftest import WORLD_PASSWORD
from tests.e2e.test_api import login
from tracker import verify_certificate as verifier
from tracker.models import Deviation
from tracker.models import Patient
from tracker.queries_audit import AuditFilters
from tracker.queries_audit import export_rows
from tracker.queries_cockpit import active_journeys
from tracker.queries_cockpit import inbox
from tracker.queries_cockpit import recent_activity
from tracker.services import certificates
from tracker.services import scans


@pytest.fixture
def driver(new_uow, world, clock, settings):
    return sc.Driver(new_uow, world, clock, settings, sc.make_scanners(new_uow, world, clock.now()))


@pytest.fixture
def scanned(driver, new_uow, world):
    """Collected with scans, one wrong-patient attempt, and a deviation reported by hand."""
    j = sc.new_journey(driver, bags=1)
    other = sc.new_journey(driver, bags=1, mrn="MRN-OTHER")
    sc.collect(driver, j, upto="collect_verify_patient")
    driver.tick()
    sc.ok(driver.scan("nurse", "collect_label_bags", j.wristband, site="CC1"))
    refused = driver.scan("nurse", "collect_label_bags", sc.din_code(other.bags[0]), site="CC1")
    assert refused.body["reason"] == "coi_mismatch"
    driver.tick()
    with new_uow() as uow:
        deviation = scans.report_deviation(
            uow=uow,
            principal=world.principals["nurse"],
            order_public_id=j.order.public_id,
            description="Label printer jammed; bag relabelled by hand",
            now=driver.clock.now(),
        )
        uow.commit()
        j.deviation = deviation.public_id  # type: ignore[attr-defined]
    return j


def close(driver, new_uow, world, deviation, password=WORLD_PASSWORD):
    from tracker.services.auth import make_hasher

    with new_uow() as uow:
        scans.close_deviation(
            uow=uow,
            hasher=make_hasher(driver.settings),
            settings=driver.settings,
            principal=world.principals["qa"],
            deviation_public_id=deviation,
            reason="Relabel checked against the DIN; no mix-up",
            password=password,
            now=driver.clock.now(),
        )
        uow.commit()


def test_the_journey_shows_accepted_and_refused_scans_and_the_deviation(client, scanned):
    login(client, "coord")
    page = client.get(f"/orders/{scanned.order.public_id}/journey").get_data(as_text=True)
    kinds = re.findall(r'data-kind="(\w+)"', page)
    assert kinds.count("scan") >= 3 and "deviation" in kinds
    assert "Scan refused at step collect label bags: coi_mismatch" in page
    assert f"Deviation {scanned.deviation} opened (manual)" in page
    assert "Label printer jammed" in page
    assert "Step collect verify patient completed" in page
    only = client.get(f"/orders/{scanned.order.public_id}/journey?show=scan").get_data(as_text=True)
    assert set(re.findall(r'data-kind="(\w+)"', only)) == {"scan"}


def test_the_dashboard_counts_the_deviation_and_shows_scans_as_they_land(
    scanned, uow, world, clock
):
    coord = world.principals["coord"]
    rows = {r["public_id"]: r for r in active_journeys(uow.session, coord, now=clock.now())}
    row = rows[scanned.order.public_id]
    assert row["open_deviations"] == 1
    assert (row["risk"], row["risk_reason"]) in {
        ("at_risk", "open deviation"),
        ("overdue", "deadline passed"),
        ("at_risk", "deadline close"),
    }
    box = inbox(uow.session, coord)
    assert box["open_deviations"] == 1 and box["deviations"][0]["patient"].startswith("PT-")
    activity = recent_activity(uow.session, coord)
    scans_seen = [a for a in activity if a["kind"] == "scan"]
    assert any(a["result"] == "error" and a["reason"] == "coi_mismatch" for a in scans_seen)
    assert activity == sorted(activity, key=lambda a: a["recorded_at"], reverse=True)


def test_qa_closes_the_deviation_from_the_inbox_with_a_signature(client, scanned, new_uow):
    token, _ = login(client, "qa")
    page = client.get("/alerts").get_data(as_text=True)
    assert f'data-deviation="{scanned.deviation}"' in page and "Sign and close" in page
    form = {"reason": "checked", "password": "wrong", "next": "inbox", "csrf_token": token}
    wrong = client.post(f"/scan/deviations/{scanned.deviation}/close", data=form)
    assert wrong.headers["Location"].endswith("/alerts#deviations")
    with new_uow() as uow:
        assert (
            uow.session.scalar(
                select(Deviation.status).where(Deviation.public_id == scanned.deviation)
            )
            == "open"
        )
    form["password"] = WORLD_PASSWORD
    client.post(f"/scan/deviations/{scanned.deviation}/close", data=form)
    assert f'data-deviation="{scanned.deviation}"' not in client.get("/alerts").get_data(
        as_text=True
    )
    assert "checked" in client.get("/alerts?show=all").get_data(as_text=True)


def test_the_bundle_proves_the_deviation_closing_signature(driver, scanned, new_uow, world, clock):
    close(driver, new_uow, world, scanned.deviation)
    with new_uow() as uow:
        bundle = certificates.build_bundle(
            uow.session, world.principals["coord"], scanned.order.public_id, now=clock.now()
        )
    kinds = {s["record_type"] for s in bundle["signatures"]}
    assert "deviation" in kinds
    [closing] = [s for s in bundle["signatures"] if s["record_type"] == "deviation"]
    assert closing["content"]["reason"].startswith("Relabel checked")
    problems, notes = verifier.verify_bundle(bundle)
    assert problems == []
    assert any("record hash matches its content" in n for n in notes)


def test_the_audit_trail_of_a_patient_includes_scanning_records(scanned, uow, world):
    pseudonym = uow.session.scalar(
        select(Patient.public_id).where(Patient.id == scanned.order.patient_id)
    )
    rows = export_rows(uow.session, world.principals["admin"], AuditFilters(patient=pseudonym))
    actions = {(r["entity_type"], r["action"]) for r in rows}
    assert ("deviation", "deviation_opened") in actions
    assert any(e == "step_run" for e, _ in actions)


def test_the_timeline_api_carries_the_scans(client, scanned):
    login(client, "coord")
    body = client.get(f"/api/v1/orders/{scanned.order.public_id}/timeline").get_json()
    refused = [e for e in body["entries"] if e["kind"] == "scan" and e["failed"]]
    assert refused and "coi_mismatch" in refused[0]["title"]
    listed = client.get("/api/v1/deviations").get_json()["deviations"]
    assert [d["public_id"] for d in listed] == [scanned.deviation]
    assert listed[0]["can_close"] is False  # a coordinator does not close deviations
