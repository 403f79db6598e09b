"""Cockpit pages over HTTP: journey, shipment (with its chart data), inbox actions, audit
exports and reviews, certificates, administration, and the cockpit's API routes."""

from __future__ import annotations

import json
import re
from datetime import timedelta

import pytest
from sqlalchemy import select

from tests.alert_helpers import COURIER_PHONE
from tests.alert_helpers import ingest
from tests.alert_helpers import on_the_road
from tests.alert_helpers import series
from tests.conftest import WORLD_PASSWORD
from tests.e2e.test_api import login
from tests.factories import label_context
from tests.factories_schedules import build_capacity
from tracker import verify_certificate as verifier
from tracker.adapters.printers import FakePrinter
from tracker.models import Alert
from tracker.models import AuditEntry
from tracker.models import QaDisposition
from tracker.models import SmsOutbox
from tracker.services import labels
from tracker.services import sms


@pytest.fixture
def trip(new_uow, world, clock):
    """On the road, 40 min above 8 °C (an alarm), the courier texted and answering ACK."""
    trip = on_the_road(new_uow, world, clock.now())
    ingest(new_uow, trip, series(trip.packed_at, [5.0] * 4 + [9.0] * 8 + [5.0] * 4), clock.now())
    with new_uow() as uow:
        alert = uow.session.scalar(select(Alert).where(Alert.severity == "alarm"))
        uow.session.execute(SmsOutbox.__table__.update().values(state="sent", sid="SMcourier1"))
        sms.handle_inbound(
            uow=uow,
            message_sid="SMack1",
            from_phone=COURIER_PHONE,
            to_phone="+15550000000",
            body=f"ACK {alert.ack_code}",
            now=clock.now(),
        )
        uow.commit()
    return trip


def text(resp):
    assert resp.status_code == 200, resp.get_data(as_text=True)[:800]
    return resp.get_data(as_text=True)


def test_the_journey_page_merges_every_kind_of_record_in_time_order(client, trip, world):
    login(client, "coord")
    page = text(client.get(f"/orders/{trip.order.public_id}/journey"))
    kinds = re.findall(r'data-kind="(\w+)"', page)
    assert {"custody", "label", "temperature", "alert", "sms"} <= set(kinds)
    assert "Chain of identity verified" in page
    assert page.count("✔ linked") == kinds.count("custody")
    assert "Sms acknowledgement" in page  # the courier's ACK, in the chain
    assert f"Reply from …{COURIER_PHONE[-4:]}: ack" in page
    assert COURIER_PHONE not in page  # phones are masked on pages
    times = re.findall(r'<time datetime="([^"]+)"', page)
    assert times == sorted(times)
    only = text(client.get(f"/orders/{trip.order.public_id}/journey?show=temperature"))
    assert set(re.findall(r'data-kind="(\w+)"', only)) == {"temperature"}


def test_a_failed_label_print_shows_on_the_journey(client, trip, world, new_uow, clock):
    from tracker.services import printers

    with new_uow() as uow:
        printer = printers.create_printer(
            uow=uow,
            principal=world.principals["admin"],
            site_code="CC1",
            name="Dead Zebra",
            host="127.0.0.1",
            now=clock.now(),
        )
        uow.commit()
        printer_id = printer.public_id
    with new_uow() as uow:
        result = labels.print_label(
            uow=uow,
            principal=world.principals["nurse"],
            ctx=label_context(),
            kind=labels.label_kinds_for("apheresis_bag")[0],
            target_public_id=trip.bag.public_id,
            printer_public_id=printer_id,
            reprint=True,
            reason="smudged",
            printer_factory=lambda p: FakePrinter(fail_with="printer_unreachable"),
            now=clock.now(),
        )
        uow.commit()
    assert result.failed
    login(client, "coord")
    page = text(client.get(f"/orders/{trip.order.public_id}/journey?show=label"))
    assert "FAILED: Reprint of the apheresis bag label" in page
    assert "printer_unreachable" in page and "Dead Zebra" in page


def test_the_plan_stands_against_what_happened(client, new_uow, world, clock):
    from schedules import service

    build_capacity(new_uow, world, clock.now())
    trip = on_the_road(new_uow, world, clock.now())
    with new_uow() as uow:
        service.book_plan(
            uow=uow,
            principal=world.principals["coord"],
            order_public_id=trip.order.public_id,
            earliest_collection=clock.now() - timedelta(hours=4),
            now=clock.now(),
            tentative=False,
        )
        uow.commit()
    login(client, "coord")
    page = text(client.get(f"/orders/{trip.order.public_id}/journey"))
    assert 'data-step="collection"' in page and 'data-step="infusion"' in page
    row = re.search(r'data-step="collection">(.*?)</tr>', page, re.S).group(1)
    assert "—" not in row.split("</td>")[4]  # the collection really happened
    assert "Plan " in page and 'data-kind="plan"' in page


def test_the_shipment_page_tells_the_temperature_story_in_words(client, trip):
    login(client, "coord")
    page = text(client.get(f"/shipments/{trip.shipment.public_id}"))
    assert "readings" in page and "9.0 °C" in page
    assert 'data-testid="excursions"' in page and "alarm" in page
    assert 'data-testid="sms-acks"' in page and f"…{COURIER_PHONE[-4:]}" in page
    assert "Per-bag exposure" in page and trip.bag.public_id in page
    assert "/static/vendor/uplot/uPlot.iife.min.js" in page
    assert "<script>" not in page and " style=" not in page  # CSP: no inline script or style


def test_the_chart_data_carries_readings_limits_and_excursion_bands(client, trip):
    login(client, "coord")
    data = client.get(f"/shipments/{trip.shipment.public_id}/temperatures.json").get_json()
    assert data["logger"] == trip.logger_serial
    assert len(data["x"]) == len(data["y"]) >= 16 and max(data["y"]) == 9.0
    assert {t["c"] for t in data["thresholds"]} == {8.0, 2.0}
    bands = data["excursions"]
    assert {b["level"] for b in bands} == {"alarm", "warning"}
    assert all(b["start"] < b["end"] and not b["ongoing"] for b in bands)
    assert data["x"] == sorted(data["x"])


def test_other_sites_cannot_see_a_shipment(client, trip):
    login(client, "coord2")
    assert client.get(f"/shipments/{trip.shipment.public_id}").status_code == 404
    assert client.get(f"/shipments/{trip.shipment.public_id}/temperatures.json").status_code == 404


def test_alerts_are_acknowledged_from_the_inbox_list(client, new_uow, world, clock):
    trip = on_the_road(new_uow, world, clock.now())
    ingest(new_uow, trip, series(trip.packed_at, [9.0] * 8), clock.now())
    token, _ = login(client, "coord")
    page = text(client.get("/alerts"))
    alert_id = int(re.search(r'id="alert-(\d+)"', page).group(1))
    resp = client.post(
        f"/alerts/{alert_id}/acknowledge",
        data={"comment": "courier called", "next": "list", "show": "open", "csrf_token": token},
    )
    assert resp.status_code == 302 and "/alerts?show=open" in resp.headers["Location"]
    assert f'id="alert-{alert_id}"' not in text(client.get("/alerts"))
    assert "courier called" in text(client.get("/alerts?show=all"))


def test_a_qa_disposition_on_the_page_needs_the_password(client, trip, new_uow, world):
    token, _ = login(client, "qa")
    with new_uow() as uow:
        alert_id = uow.session.scalar(select(Alert.id).where(Alert.severity == "alarm"))
    form = {
        "item": trip.bag.public_id,
        "decision": "quarantine",
        "comment": "hold for review",
        "csrf_token": token,
    }
    page = text(client.post(f"/alerts/{alert_id}/dispositions", data=form, follow_redirects=True))
    assert "password" in page.lower() and "wrong" in page.lower()
    with new_uow() as uow:
        assert uow.session.scalar(select(QaDisposition.id)) is None
    form["password"] = WORLD_PASSWORD
    page = text(client.post(f"/alerts/{alert_id}/dispositions", data=form, follow_redirects=True))
    assert 'data-testid="qa-signature"' in page and "Signed by Qa User (approval)" in page


def test_audit_exports_are_downloads_and_are_themselves_audited(client, trip, new_uow):
    login(client, "admin")
    csv_resp = client.get(f"/audit/export.csv?item={trip.bag.public_id}")
    assert csv_resp.status_code == 200 and csv_resp.mimetype == "text/csv"
    assert "attachment" in csv_resp.headers["Content-Disposition"]
    assert trip.bag.public_id in csv_resp.get_data(as_text=True)
    pdf = client.get("/audit/export.pdf?action=custody_transition")
    assert pdf.status_code == 200 and pdf.data.startswith(b"%PDF")
    with new_uow() as uow:
        exported = list(
            uow.session.scalars(select(AuditEntry).where(AuditEntry.action == "audit_export"))
        )
        assert [e.entity_id for e in exported] == ["csv", "pdf"]
        assert exported[0].changes["filters"] == [None, f"item={trip.bag.public_id}"]


def test_a_review_is_signed_only_for_the_entries_on_screen(client, trip, new_uow, world, clock):
    token, _ = login(client, "qa")
    page = text(client.get("/audit?site=MF1"))
    digest = re.search(r'name="digest" value="([0-9a-f]+)"', page).group(1)
    form = {
        "site": "MF1",
        "digest": digest,
        "comment": "checked",
        "password": WORLD_PASSWORD,
        "csrf_token": token,
    }
    stale = text(
        client.post("/audit/reviews", data={**form, "digest": "0" * 64}, follow_redirects=True)
    )
    assert "New entries arrived" in stale
    done = text(client.post("/audit/reviews", data=form, follow_redirects=True))
    assert "Signed audit-trail reviews" in done and "checked" in done


def test_the_certificate_downloads_verify(client, trip):
    login(client, "coord")
    resp = client.get(f"/orders/{trip.order.public_id}/certificate.json")
    assert resp.status_code == 200
    assert resp.headers["Content-Disposition"].startswith('attachment; filename="coi-certificate')
    bundle = json.loads(resp.data)
    assert verifier.verify_bundle(bundle)[0] == []
    pdf = client.get(f"/orders/{trip.order.public_id}/certificate.pdf")
    assert pdf.data.startswith(b"%PDF")
    api = client.get(f"/api/v1/orders/{trip.order.public_id}/certificate").get_json()
    assert verifier.verify_bundle(api)[0] == []


def test_the_cockpit_api_routes_are_documented_and_answer(client, trip):
    login(client, "admin")
    doc = client.get("/api/openapi.json").get_json()
    for path in (
        "/api/v1/audit-entries",
        "/api/v1/audit-entries.csv",
        "/api/v1/audit-entries.pdf",
        "/api/v1/orders/{public_id}/certificate",
        "/api/v1/orders/{public_id}/certificate.pdf",
    ):
        assert path in doc["paths"], path
    page = client.get(f"/api/v1/audit-entries?item={trip.bag.public_id}").get_json()
    assert page["total"] == len(page["entries"]) > 0
    assert {e["entity_id"] for e in page["entries"]} == {trip.bag.public_id}
    assert client.get("/api/v1/audit-entries.csv").mimetype == "text/csv"
    login(client, "nurse")
    refused = client.get("/api/v1/audit-entries")
    assert refused.status_code == 403 and refused.get_json()["reason"] == "forbidden"


@pytest.mark.parametrize(
    "path",
    [
        "/admin/sites",
        "/admin/users",
        "/admin/profiles",
        "/admin/ladders",
        "/admin/printers",
        "/admin/devices",
    ],
)
def test_admin_pages_are_for_administrators_only(client, world, path):
    login(client, "coord")
    assert client.get(path).status_code == 403
    login(client, "admin")
    assert client.get(path).status_code == 200


def test_a_device_token_is_shown_once_and_never_again(client, world):
    token, _ = login(client, "admin")
    resp = client.post(
        "/admin/devices",
        data={"name": "Fill room scanner", "kind": "scanner", "site": "MF1", "csrf_token": token},
    )
    assert resp.status_code == 201 and resp.headers["Cache-Control"] == "no-store"
    shown = re.search(r'data-testid="device-token">([^<]+)<', resp.get_data(as_text=True))
    device_token = shown.group(1)
    assert device_token.startswith("dev_")
    assert device_token not in text(client.get("/admin/devices"))
    me = client.get("/api/v1/me", headers={"Authorization": f"Bearer {device_token}"})
    assert me.get_json()["name"] == "Fill room scanner"


def test_an_admin_change_without_a_reason_is_refused_on_the_page(client, world):
    token, _ = login(client, "admin")
    page = text(
        client.post(
            "/admin/sites/TC1",
            data={"name": "Renamed", "reason": "", "csrf_token": token},
            follow_redirects=True,
        )
    )
    assert "needs a reason" in page
    page = text(
        client.post(
            "/admin/sites/TC1",
            data={"name": "Renamed", "reason": "signage", "csrf_token": token},
            follow_redirects=True,
        )
    )
    assert "Site TC1 updated." in page and 'value="Renamed"' in page
