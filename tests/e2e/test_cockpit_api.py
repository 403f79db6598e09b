"""The cockpit's API: what the dashboard, journey, shipment, audit and admin pages do, as JSON."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import select

from tests.alert_helpers import COURIER_PHONE
from tests.alert_helpers import ingest
from tests.alert_helpers import on_the_road
from tests.alert_helpers import series
from tests.cockpit_helpers import bulk_journeys
from tests.conftest import WORLD_PASSWORD
from tests.e2e.test_api import api
from tests.e2e.test_api import login
from tracker import verify_certificate as verifier
from tracker.domain.chain import GENESIS
from tracker.models import CustodyEvent
from tracker.models import TherapyOrder
from tracker.models import User
from tracker.services import custody
from tracker.services.custody import order_chain_key


@pytest.fixture
def trip(new_uow, world, clock):
    trip = on_the_road(new_uow, world, clock.now())
    ingest(new_uow, trip, series(trip.packed_at, [5.0] * 4 + [9.0] * 8 + [5.0] * 4), clock.now())
    return trip


def test_the_dashboard_as_json_with_its_filters(client, new_uow, world, clock):
    bulk_journeys(new_uow, world, clock.now(), start=0, count=60)
    login(client, "coord")
    body = client.get("/api/v1/dashboard").get_json()
    assert body["total"] == 60 and len(body["journeys"]) == 50 and body["pages"] == 2
    assert sum(body["counts"].values()) == 60
    first = body["journeys"][0]
    assert first["risk"] == "overdue" and first["deadline"]["source"] == "handoff"
    assert first["coi"].startswith("CHW9999")
    overdue = client.get("/api/v1/dashboard?risk=overdue").get_json()
    assert {j["risk"] for j in overdue["journeys"]} == {"overdue"}
    assert client.get("/api/v1/dashboard?risk=late").status_code == 400
    assert "collections" in body["today"] and body["inbox"]["open_alerts"] == 6


def test_the_timeline_as_json_verifies_the_chain_and_masks_phones(client, trip):
    login(client, "coord")
    body = client.get(f"/api/v1/orders/{trip.order.public_id}/timeline").get_json()
    assert body["chain"]["intact"] and body["chain"]["events"] >= 7
    kinds = {e["kind"] for e in body["entries"]}
    assert {"custody", "label", "temperature", "alert"} <= kinds
    assert all(e["link_ok"] for e in body["entries"] if e["kind"] == "custody")
    assert COURIER_PHONE not in str(body)


def test_the_chain_answer_names_the_head_hash_a_client_can_pin(client, new_uow, world, clock, trip):
    login(client, "coord")
    path = f"/api/v1/orders/{trip.order.public_id}/chain"
    first = client.get(path).get_json()
    with new_uow() as uow:
        order = uow.session.get(TherapyOrder, trip.order.id)
        hashes = list(
            uow.session.scalars(
                select(CustodyEvent.hash)
                .where(CustodyEvent.chain_key == order_chain_key(order))
                .order_by(CustodyEvent.seq)
            )
        )
    assert first["intact"] and first["breaks"] == []
    assert first["events"] == len(hashes) >= 5 and first["head_hash"] == hashes[-1]
    # The same head and length the certificate bundle signs and an auditor verifies offline.
    manifest = client.get(f"/api/v1/orders/{trip.order.public_id}/certificate").get_json()
    assert manifest["manifest"]["head_hash"] == first["head_hash"]
    assert manifest["manifest"]["event_count"] == first["events"]
    # One more custody event moves the head on: a pinned head shows the chain grew.
    clock.advance(timedelta(minutes=5))
    with new_uow() as uow:
        custody.record_note(
            uow.session,
            order_id=trip.order.id,
            item_id=None,
            shipment_id=None,
            site_id=None,
            actor_user_id=world.users["coord"].id,
            occurred_at=clock.now(),
            now=clock.now(),
            details={"note": "courier called from the road"},
        )
        uow.commit()
    later = client.get(path).get_json()
    assert later["events"] == first["events"] + 1
    assert later["head_hash"] not in (first["head_hash"], GENESIS)


def test_a_shipment_and_its_temperatures_as_json(client, trip):
    login(client, "coord")
    ship = client.get(f"/api/v1/shipments/{trip.shipment.public_id}").get_json()
    assert ship["logger_serial"] == trip.logger_serial and ship["items"] == [trip.bag.public_id]
    assert ship["temperature"]["max_c"] == 9.0 and ship["exposure"][0]["out_of_range"] > 0
    temps = client.get(f"/api/v1/shipments/{trip.shipment.public_id}/temperatures").get_json()
    assert len(temps["x"]) == len(temps["y"]) and temps["excursions"]
    login(client, "coord2")
    assert client.get(f"/api/v1/shipments/{trip.shipment.public_id}").status_code == 404


def test_qa_signs_the_certificate_through_the_api(client, trip):
    token, _ = login(client, "qa")
    path = f"/api/v1/orders/{trip.order.public_id}/certificate/signatures"
    wrong = api(client, token, "POST", path, {"password": "nope", "meaning": "review"})
    assert wrong.status_code == 401 and wrong.get_json()["reason"] == "signature_failed"
    signed = api(client, token, "POST", path, {"password": WORLD_PASSWORD, "meaning": "approval"})
    assert signed.status_code == 201, signed.get_json()
    assert signed.get_json()["record_type"] == "coi_certificate"
    bundle = client.get(f"/api/v1/orders/{trip.order.public_id}/certificate").get_json()
    problems, notes = verifier.verify_bundle(bundle)
    assert problems == [] and any("signs the chain up to event" in n for n in notes)


def test_a_review_is_signed_through_the_api_against_the_listed_digest(client, trip):
    token, _ = login(client, "qa")
    page = client.get("/api/v1/audit-entries?site=MF1").get_json()
    digest = page["review_digest"]
    body = {"site": "MF1", "digest": digest, "comment": "fine", "password": WORLD_PASSWORD}
    stale = api(client, token, "POST", "/api/v1/audit-reviews", {**body, "digest": "0" * 64})
    assert stale.status_code == 409
    done = api(client, token, "POST", "/api/v1/audit-reviews", body)
    assert done.status_code == 201 and done.get_json()["digest"] == digest
    listed = client.get("/api/v1/audit-reviews").get_json()["reviews"]
    assert [r["comment"] for r in listed] == ["fine"]


def test_administration_through_the_api(client, world, new_uow):
    token, _ = login(client, "admin")
    site = api(
        client,
        token,
        "POST",
        "/api/v1/sites",
        {"code": "PL-9", "name": "Lab Nine", "kind": "processing_lab", "timezone": "Europe/Oslo"},
    )
    assert site.status_code == 201 and site.get_json()["code"] == "PL-9"
    no_reason = api(client, token, "PATCH", "/api/v1/sites/PL-9", {"name": "Lab 9", "reason": ""})
    assert no_reason.status_code == 400
    moved = api(
        client, token, "PATCH", "/api/v1/sites/PL-9", {"name": "Lab 9", "reason": "renamed"}
    )
    assert moved.get_json()["name"] == "Lab 9"
    user = api(
        client,
        token,
        "POST",
        "/api/v1/users",
        {
            "username": "labtech",
            "full_name": "Lab Tech",
            "password": "long-enough-password",
            "role": "manufacturing_operator",
            "site": "PL-9",
        },
    )
    assert user.status_code == 201, user.get_json()
    granted = api(
        client,
        token,
        "POST",
        "/api/v1/users/labtech/roles",
        {"role": "qa", "site": "PL-9", "reason": "second hat"},
    )
    roles = {(r["role"], r["site"]) for r in granted.get_json()["roles"]}
    assert roles == {("manufacturing_operator", "PL-9"), ("qa", "PL-9")}
    qa_role = next(r for r in granted.get_json()["roles"] if r["role"] == "qa")
    revoked = api(
        client,
        token,
        "POST",
        f"/api/v1/users/labtech/roles/{qa_role['id']}/revocation",
        {"reason": "one hat is enough"},
    )
    assert {r["role"] for r in revoked.get_json()["roles"]} == {"manufacturing_operator"}
    off = api(
        client,
        token,
        "POST",
        "/api/v1/users/labtech/activation",
        {"active": False, "reason": "left"},
    )
    assert off.get_json()["active"] is False
    with new_uow() as uow:
        assert uow.session.scalar(select(User.active).where(User.username == "labtech")) is False
    ladder = api(
        client,
        token,
        "PUT",
        "/api/v1/sites/PL-9/ladder",
        {
            "rungs": [
                {"role": "courier", "channel": "sms", "minutes": 10},
                {
                    "role": "coordinator",
                    "user_id": world.users["coord"].id,
                    "channel": "in_app",
                    "minutes": 20,
                },
            ],
            "reason": "new lab",
        },
    )
    assert [r["minutes"] for r in ladder.get_json()["rungs"]] == [10, 20]
    assert client.get("/api/v1/sites/PL-9/ladder").get_json()["code"] == "PL-9"
    device = api(
        client, token, "POST", "/api/v1/devices", {"name": "S1", "kind": "scanner", "site": "PL-9"}
    ).get_json()
    revoked_device = api(
        client,
        token,
        "PATCH",
        f"/api/v1/devices/{device['public_id']}",
        {"active": False, "reason": "lost"},
    )
    assert revoked_device.get_json()["active"] is False
    assert {d["public_id"] for d in client.get("/api/v1/devices").get_json()["devices"]} >= {
        device["public_id"]
    }


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/api/v1/sites"),
        ("GET", "/api/v1/users"),
        ("GET", "/api/v1/users/nurse"),
        ("GET", "/api/v1/devices"),
        ("GET", "/api/v1/sites/TC1/ladder"),
    ],
)
def test_administration_api_is_for_administrators_only(client, world, method, path):
    login(client, "coord")
    resp = client.open(path, method=method)
    assert resp.status_code == 403 and resp.get_json()["reason"] == "forbidden"
