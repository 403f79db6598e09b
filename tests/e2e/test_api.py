import re

import pytest

from tests.conftest import WORLD_PASSWORD
from tests.factories import make_bag
from tests.factories import make_label_print
from tests.factories import make_order


def login(client, username, password=WORLD_PASSWORD):
    page = client.get("/login")
    token = re.search(rb'name="csrf_token" value="([^"]+)"', page.data).group(1).decode()
    resp = client.post(
        "/login", data={"username": username, "password": password, "csrf_token": token}
    )
    if resp.status_code == 302:
        # Logging in starts a new session, and with it a new CSRF token.
        page = client.get("/orders")
        token = re.search(rb'name="csrf_token" value="([^"]+)"', page.data).group(1).decode()
    return token, resp


def api(client, token, method, path, json=None):
    return client.open(path, method=method, json=json, headers={"X-CSRFToken": token})


def test_health_answers_without_touching_anything(client):
    assert client.get("/healthz").get_json() == {"status": "ok"}


def test_readiness_checks_the_database_and_migration_head(client):
    body = client.get("/readyz").get_json()
    assert body["checks"]["database"] == "ok"
    assert body["checks"]["migrations"] == "at head"
    assert body["checks"]["worker"] == "no recent heartbeat"


def test_readiness_reports_a_live_worker_heartbeat(client, app, clock):
    from tracker.jobs import JobContext
    from tracker.jobs import record_heartbeat

    rt = app.extensions["tracker"]
    record_heartbeat(JobContext(rt.session_factory, clock, rt.settings, name="test"))
    resp = client.get("/readyz")
    assert resp.status_code == 200
    assert resp.get_json()["checks"]["worker"] == "ok"


def test_the_api_refuses_anonymous_callers_with_a_coded_json_error(client, world):
    resp = client.get("/api/v1/orders")
    assert resp.status_code == 401
    assert resp.get_json() == {
        "status": "error",
        "reason": "unauthenticated",
        "message": resp.get_json()["message"],
    }


def test_a_coordinator_creates_a_patient_and_an_order_through_the_api(client, world):
    token, _ = login(client, "coord")
    resp = api(
        client,
        token,
        "POST",
        "/api/v1/patients",
        {
            "treatment_site": "TC1",
            "given_name": "Api",
            "family_name": "Person",
            "date_of_birth": "1980-05-06",
            "mrn": "MRN-API",
        },
    )
    assert resp.status_code == 201, resp.get_json()
    patient = resp.get_json()["public_id"]
    resp = api(
        client,
        token,
        "POST",
        "/api/v1/orders",
        {
            "patient": patient,
            "product": "CD19-FRESH",
            "collection_site": "CC1",
            "manufacturing_site": "MF1",
        },
    )
    assert resp.status_code == 201, resp.get_json()
    order = resp.get_json()
    assert order["coi"]["eye_readable"].replace(" ", "") == order["coi"]["value"]
    listed = client.get("/api/v1/orders").get_json()["orders"]
    assert [o["public_id"] for o in listed] == [order["public_id"]]


def test_unsafe_requests_from_a_browser_session_need_the_csrf_token(client, world):
    login(client, "coord")
    resp = client.post("/api/v1/patients", json={})
    assert resp.status_code == 403
    assert resp.get_json()["reason"] == "csrf_failed"


def test_naive_datetimes_are_refused_with_a_clear_reason(client, world, new_uow, clock):
    order = make_order(new_uow, world, clock.now())
    bag = make_bag(new_uow, world, order, clock.now())
    make_label_print(new_uow, world, bag, clock.now())
    token, _ = login(client, "nurse")
    resp = api(
        client,
        token,
        "POST",
        f"/api/v1/items/{bag.public_id}/transitions",
        {"to_state": "labelled", "occurred_at": "2026-03-02T10:00:00"},
    )
    assert resp.status_code == 400
    assert resp.get_json()["reason"] == "naive_datetime"
    resp = api(
        client,
        token,
        "POST",
        f"/api/v1/items/{bag.public_id}/transitions",
        {"to_state": "labelled", "occurred_at": "2026-03-02T10:00:00+01:00"},
    )
    assert resp.status_code == 201, resp.get_json()


def test_wrong_types_and_unknown_fields_are_refused_not_coerced(client, world):
    token, _ = login(client, "coord")
    resp = api(
        client,
        token,
        "POST",
        "/api/v1/orders",
        {
            "patient": 123,
            "product": "CD19-FRESH",
            "collection_site": "CC1",
            "manufacturing_site": "MF1",
            "surprise": True,
        },
    )
    assert resp.status_code == 400
    body = resp.get_json()
    assert body["reason"] == "invalid_request"
    assert {p["field"] for p in body["problems"]} >= {"patient", "surprise"}


def test_another_sites_order_is_invisible_and_answers_404(client, world, new_uow, clock):
    order = make_order(new_uow, world, clock.now())
    token, _ = login(client, "coord2")
    assert client.get("/api/v1/orders").get_json()["orders"] == []
    resp = client.get(f"/api/v1/orders/{order.public_id}")
    assert resp.status_code == 404 and resp.get_json()["reason"] == "not_found"
    resp = client.get(f"/orders/{order.public_id}")
    assert resp.status_code == 404


def test_identity_data_is_shown_only_to_clinical_roles_at_the_treatment_site(
    client, world, new_uow, clock
):
    order = make_order(new_uow, world, clock.now())
    login(client, "coord")
    assert (
        client.get(f"/api/v1/orders/{order.public_id}").get_json()["patient"]["identity"]["mrn"]
        == "MRN-1"
    )
    client.post("/logout", data={})
    client2 = client.application.test_client()
    login(client2, "operator")
    body = client2.get(f"/api/v1/orders/{order.public_id}").get_json()
    assert body["patient"]["identity"] is None
    assert "MRN-1" not in str(body)


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        ("=G12341765432171", "bad_check_character"),
        ("", "empty"),
        ("hello world", "unknown_code"),
    ],
)
def test_malformed_identifiers_get_clear_refusals(client, world, raw, reason):
    token, _ = login(client, "nurse")
    resp = api(client, token, "POST", "/api/v1/identifiers/parse", {"raw": raw})
    assert resp.status_code == 400
    assert resp.get_json()["reason"] == reason


def test_a_valid_din_is_parsed(client, world):
    token, _ = login(client, "nurse")
    resp = api(client, token, "POST", "/api/v1/identifiers/parse", {"raw": "=G12341765432170"})
    assert resp.status_code == 200, resp.get_json()
    assert resp.get_json()["parsed"]["din"] == "G123417654321"


def device_token(new_uow, world, clock, site: str = "CC1"):  # type: ignore[no-untyped-def]
    """A scanner registered at ``site``, with the token it authenticates with."""
    from tracker.services import auth

    with new_uow() as uow:
        issued = auth.register_device(
            uow=uow,
            name="Gun",
            kind="scanner",
            site_id=world.sites[site].id,
            now=clock.now(),
            actor_user_id=None,
        )
        uow.commit()
    return issued


def test_a_device_token_authenticates_without_a_session(client, world, new_uow, clock):
    issued = device_token(new_uow, world, clock)
    me = client.get("/api/v1/me", headers={"Authorization": f"Bearer {issued.token}"})
    assert me.status_code == 200 and me.get_json()["device_id"] == issued.device.id
    bad = client.get("/api/v1/me", headers={"Authorization": "Bearer nonsense"})
    assert bad.status_code == 401


def test_signing_an_order_needs_the_password_again(client, world, new_uow, clock):
    order = make_order(new_uow, world, clock.now())
    token, _ = login(client, "coord")
    resp = api(
        client,
        token,
        "POST",
        f"/api/v1/orders/{order.public_id}/signatures",
        {"password": "wrong", "meaning": "approval"},
    )
    assert resp.status_code == 401 and resp.get_json()["reason"] == "signature_failed"
    resp = api(
        client,
        token,
        "POST",
        f"/api/v1/orders/{order.public_id}/signatures",
        {"password": WORLD_PASSWORD, "meaning": "approval"},
    )
    assert resp.status_code == 201
    assert resp.get_json()["printed_name"] == "Coord User"


def test_the_openapi_document_lists_every_api_route_with_error_schemas(client, app):
    doc = client.get("/api/openapi.json").get_json()
    assert doc["openapi"].startswith("3.1")
    api_rules = {r.rule for r in app.url_map.iter_rules() if r.rule.startswith("/api/v1")}
    documented = set()
    for path, ops in doc["paths"].items():
        # Integer path parameters are documented as integers: rebuild Flask's <int:...> rule.
        ints = {
            p["name"]
            for op in ops.values()
            for p in op.get("parameters", [])
            if p["in"] == "path" and p["schema"]["type"] == "integer"
        }
        documented.add(
            re.sub(
                r"\{(\w+)\}",
                lambda m, ints=ints: f"<int:{m[1]}>" if m[1] in ints else f"<{m[1]}>",
                path,
            )
        )
    assert api_rules == documented
    for ops in doc["paths"].values():
        for op in ops.values():
            assert "400" in op["responses"] and "500" in op["responses"]
    assert "coi_mismatch" in doc["x-reason-codes"]


def test_the_idle_timeout_ends_the_session(client, world, clock, settings):
    from datetime import timedelta

    login(client, "coord")
    assert client.get("/api/v1/me").status_code == 200
    clock.advance(timedelta(minutes=settings.idle_timeout_minutes + 1))
    resp = client.get("/api/v1/me")
    assert resp.status_code == 401 and resp.get_json()["reason"] == "session_expired"


def test_activity_keeps_the_session_alive_without_a_new_cookie_on_every_request(
    client, world, clock, settings
):
    from datetime import timedelta

    from tracker.web.auth import LAST_SEEN_STEP

    login(client, "coord")
    idle = timedelta(minutes=settings.idle_timeout_minutes)
    # Requests close together leave the cookie alone (no re-signing per scan).
    clock.advance(timedelta(seconds=LAST_SEEN_STEP / 3))
    resp = client.get("/api/v1/me")
    assert resp.status_code == 200 and "Set-Cookie" not in resp.headers
    # A request after the step records the activity...
    clock.advance(idle - timedelta(minutes=1))
    resp = client.get("/api/v1/me")
    assert resp.status_code == 200 and "Set-Cookie" in resp.headers
    # ...so the session lives on past the idle limit counted from the login.
    clock.advance(idle - timedelta(minutes=1))
    assert client.get("/api/v1/me").status_code == 200
    clock.advance(idle + timedelta(minutes=1))
    assert client.get("/api/v1/me").status_code == 401


def test_login_page_refuses_a_locked_account_with_its_reason(client, world, settings):
    for _ in range(settings.lockout_threshold):
        _, resp = login(client, "qa", "bad password")
    assert resp.status_code == 200
    assert b'data-reason="account_locked"' in resp.data


def test_a_bumped_session_version_logs_every_session_out(client, world, new_uow):
    login(client, "coord")
    assert client.get("/api/v1/me").status_code == 200
    with new_uow() as uow:
        from tracker.models import User

        uow.session.get(User, world.users["coord"].id).session_version += 1
        uow.commit()
    assert client.get("/api/v1/me").status_code == 401
