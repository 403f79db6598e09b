"""Schedules through the JSON API: capacity set-up, proposal, booking, holds, rescheduling,
waitlist, journey profiles, notifications and the calendar feed."""

import pytest

from tests.e2e.test_api import api
from tests.e2e.test_api import login
from tests.factories import make_order

T0_ISO = "2026-03-02T14:00:00Z"


@pytest.fixture
def capacity(client, world):
    token, _ = login(client, "admin")
    chairs = api(
        client,
        token,
        "POST",
        "/api/v1/sites/CC1/resources",
        {"kind": "apheresis_chair", "name": "Chairs", "slot_minutes": 240},
    )
    line = api(
        client,
        token,
        "POST",
        "/api/v1/sites/MF1/resources",
        {"kind": "manufacturing_slot", "name": "Line", "product_code": "CD19-FRESH"},
    )
    beds = api(
        client,
        token,
        "POST",
        "/api/v1/sites/TC1/resources",
        {"kind": "infusion_bed", "name": "Beds"},
    )
    assert {chairs.status_code, line.status_code, beds.status_code} == {201}
    weekdays = range(5)
    for resource, opens, closes, days in (
        (chairs, "08:00", "16:00", weekdays),
        (line, "09:00", "10:00", weekdays),
        (beds, "00:00", "00:00", range(6)),
    ):
        hours = [{"weekday": d, "opens": opens, "closes": closes, "capacity": 1} for d in days]
        resp = api(
            client,
            token,
            "PUT",
            f"/api/v1/resources/{resource.get_json()['public_id']}/hours",
            {"hours": hours, "reason": "initial capacity"},
        )
        assert resp.status_code == 200 and resp.get_json()["added"] > 100
    client.post("/logout", data={"csrf_token": token})
    return {"chairs": chairs.get_json(), "line": line.get_json(), "beds": beds.get_json()}


def test_a_coordinator_proposes_holds_confirms_and_reads_a_plan(
    client, new_uow, world, capacity, clock
):
    order = make_order(new_uow, world, clock.now()).public_id
    token, _ = login(client, "coord")
    proposal = api(
        client,
        token,
        "POST",
        f"/api/v1/orders/{order}/plan-proposals",
        {"earliest_collection": T0_ISO},
    )
    assert proposal.status_code == 200
    body = proposal.get_json()
    assert [s["kind"] for s in body["steps"]][:3] == [
        "collection",
        "outbound_shipping",
        "manufacturing",
    ]
    assert body["steps"][0]["start"] == "2026-03-02T17:00:00Z"
    assert body["explanations"] and body["deadlines"][0]["kind"] == "collection_start"
    assert "fresh_stability_hours" in body["unconfirmed_profile_fields"]
    booked = api(
        client,
        token,
        "POST",
        f"/api/v1/orders/{order}/plans",
        {"earliest_collection": T0_ISO, "fingerprint": body["fingerprint"], "hold_hours": 24},
    )
    assert booked.status_code == 201
    plan = booked.get_json()
    assert plan["status"] == "held" and plan["held_until"] == "2026-03-03T14:00:00Z"
    again = api(
        client, token, "POST", f"/api/v1/orders/{order}/plans", {"earliest_collection": T0_ISO}
    )
    assert again.status_code == 409 and again.get_json()["reason"] == "plan_exists"
    confirmed = api(client, token, "POST", f"/api/v1/plans/{plan['public_id']}/confirmation")
    assert confirmed.status_code == 200 and confirmed.get_json()["status"] == "booked"
    fetched = client.get(f"/api/v1/plans/{plan['public_id']}").get_json()
    assert fetched["steps"] == plan["steps"]
    calendar = client.get("/api/v1/sites/CC1/calendar?start=2026-03-02&days=1").get_json()
    (chairs,) = calendar["resources"]
    assert chairs["days"][0]["used"] == 1
    booked_window = [w for w in chairs["days"][0]["windows"] if w["bookings"]]
    assert booked_window[0]["bookings"][0]["plan"] == plan["public_id"]


def test_a_stale_proposal_and_a_missing_reason_are_refused_with_coded_errors(
    client, new_uow, world, capacity, clock
):
    first = make_order(new_uow, world, clock.now()).public_id
    second = make_order(new_uow, world, clock.now()).public_id
    token, _ = login(client, "coord")
    stale = api(
        client,
        token,
        "POST",
        f"/api/v1/orders/{second}/plan-proposals",
        {"earliest_collection": T0_ISO},
    ).get_json()
    first_plan = api(
        client,
        token,
        "POST",
        f"/api/v1/orders/{first}/plans",
        {"earliest_collection": T0_ISO, "tentative": False},
    ).get_json()
    refused = api(
        client,
        token,
        "POST",
        f"/api/v1/orders/{second}/plans",
        {"earliest_collection": T0_ISO, "fingerprint": stale["fingerprint"]},
    )
    assert refused.status_code == 409
    assert refused.get_json()["reason"] == "plan_changed"
    no_reason = api(
        client,
        token,
        "POST",
        f"/api/v1/plans/{first_plan['public_id']}/cancellation",
        {"reason": ""},
    )
    assert no_reason.status_code == 400 and no_reason.get_json()["status"] == "error"
    naive = api(
        client,
        token,
        "POST",
        f"/api/v1/orders/{second}/plan-proposals",
        {"earliest_collection": "2026-03-02T14:00:00"},
    )
    assert naive.status_code == 400 and naive.get_json()["reason"] == "naive_datetime"


def test_rescheduling_through_the_api_needs_the_previewed_fingerprint(
    client, new_uow, world, capacity, clock
):
    order = make_order(new_uow, world, clock.now()).public_id
    token, _ = login(client, "coord")
    plan = api(
        client,
        token,
        "POST",
        f"/api/v1/orders/{order}/plans",
        {"earliest_collection": T0_ISO, "tentative": False},
    ).get_json()
    move = {"step": "collection", "new_start": "2026-03-03T13:00:00Z"}
    preview = api(
        client, token, "POST", f"/api/v1/plans/{plan['public_id']}/reschedule-previews", move
    )
    assert preview.status_code == 200
    shown = preview.get_json()
    moved = {m["step"]: m for m in shown["moves"]}
    assert moved["manufacturing"]["snapped_from"] == "2026-03-04T17:00:00Z"
    assert moved["manufacturing"]["rebooked"] is True
    wrong = api(
        client,
        token,
        "POST",
        f"/api/v1/plans/{plan['public_id']}/reschedules",
        {**move, "reason": "fever", "confirm": "0" * 16},
    )
    assert wrong.status_code == 409 and wrong.get_json()["reason"] == "plan_changed"
    done = api(
        client,
        token,
        "POST",
        f"/api/v1/plans/{plan['public_id']}/reschedules",
        {**move, "reason": "fever", "confirm": shown["fingerprint"]},
    )
    assert done.status_code == 200
    steps = {s["kind"]: s for s in done.get_json()["steps"]}
    assert steps["collection"]["start"] == "2026-03-03T13:00:00Z"
    assert steps["manufacturing"]["start"] == "2026-03-05T08:00:00Z"
    assert done.get_json()["version"] > plan["version"]


def test_the_waitlist_api_shows_score_inputs_and_takes_committee_changes(
    client, new_uow, world, clock
):
    order = make_order(new_uow, world, clock.now()).public_id
    token, _ = login(client, "coord")
    joined = api(
        client,
        token,
        "POST",
        f"/api/v1/orders/{order}/waitlist",
        {"urgency_category": "elevated", "bridging_therapy_failing": True},
    )
    assert joined.status_code == 201
    entry = joined.get_json()["public_id"]
    bad = api(
        client, token, "POST", f"/api/v1/orders/{order}/waitlist", {"urgency_category": "elevated"}
    )
    assert bad.status_code == 409
    changed = api(
        client,
        token,
        "PATCH",
        f"/api/v1/waitlist/{entry}",
        {"prior_slot_cancellations": 2, "reason": "lost two slots to line faults"},
    )
    assert changed.status_code == 200
    login(client, "operator")
    listing = client.get("/api/v1/sites/MF1/waitlist").get_json()
    (row,) = listing["entries"]
    assert row["inputs"]["prior_slot_cancellations"] == 2
    assert row["total"] == 30.0 + 40.0 + 30.0
    assert listing["policy"]["weights"]["bridging_therapy_failing"] == 40.0


def test_only_administrators_change_journey_profiles_and_each_change_is_a_version(client, world):
    token, _ = login(client, "coord")
    current = client.get("/api/v1/product-profiles/CD19-FRESH/journey").get_json()
    assert current["version"] == 1 and "manufacturing_days" in current["defaults_to_confirm"]
    refused = api(
        client,
        token,
        "PUT",
        "/api/v1/product-profiles/CD19-FRESH/journey",
        {"values": {"manufacturing_days": 3}, "confirmed": [], "reason": "rapid"},
    )
    assert refused.status_code == 403
    token, _ = login(client, "admin")
    saved = api(
        client,
        token,
        "PUT",
        "/api/v1/product-profiles/CD19-FRESH/journey",
        {
            "values": {"manufacturing_days": 3},
            "confirmed": ["manufacturing_days"],
            "reason": "rapid process per label",
        },
    )
    assert saved.status_code == 200
    body = saved.get_json()
    assert body["version"] == 2 and body["values"]["manufacturing_days"] == 3
    assert "manufacturing_days" not in body["defaults_to_confirm"]
    invalid = api(
        client,
        token,
        "PUT",
        "/api/v1/product-profiles/CD19-FRESH/journey",
        {"values": {"ld_start_day": 1}, "confirmed": [], "reason": "typo here"},
    )
    assert invalid.status_code == 400 and invalid.get_json()["reason"] == "invalid_request"


def test_notifications_and_the_calendar_feed_through_the_api(
    client, new_uow, world, capacity, clock
):
    order = make_order(new_uow, world, clock.now()).public_id
    token, _ = login(client, "coord")
    api(client, token, "POST", f"/api/v1/orders/{order}/plans", {"earliest_collection": T0_ISO})
    feed = api(client, token, "POST", "/api/v1/sites/TC1/calendar-feeds")
    assert feed.status_code == 201
    path = feed.get_json()["url"].split("127.0.0.1:5000", 1)[1]
    client.post("/logout", data={"csrf_token": token})
    ics = client.get(path)  # no session: the secret URL is the credential
    assert ics.status_code == 200 and ics.mimetype == "text/calendar"
    assert b"SUMMARY:Infusion \xc2\xb7 PLN-" in ics.data and b"STATUS:TENTATIVE" in ics.data
    assert b"MRN" not in ics.data and b"Patient" not in ics.data
    token, _ = login(client, "infusion")
    notes = client.get("/api/v1/notifications").get_json()["notifications"]
    assert notes and notes[0]["kind"] == "plan_held" and not notes[0]["read"]
    read = api(client, token, "POST", f"/api/v1/notifications/{notes[0]['id']}/read")
    assert read.status_code == 200 and read.get_json()["read"] is True
    other = api(client, token, "POST", "/api/v1/notifications/999999/read")
    assert other.status_code == 404


def test_the_openapi_document_describes_the_schedules_endpoints_and_reasons(client):
    doc = client.get("/api/openapi.json").get_json()
    assert "/api/v1/orders/{public_id}/plans" in doc["paths"]
    assert doc["paths"]["/api/v1/plans/{plan_id}/reschedules"]["post"]["tags"] == ["schedules"]
    for reason in ("capacity_taken", "plan_changed", "hold_expired", "no_manufacturing_capacity"):
        assert reason in doc["x-reason-codes"]
