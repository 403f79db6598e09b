"""The scan API and API-wide idempotency over HTTP, plus fuzzing that never gets a 500."""

from __future__ import annotations

import json
import string
import uuid

import pytest
from hypothesis import HealthCheck
from hypothesis import given
from hypothesis import settings as hsettings
from hypothesis import strategies as st

from tests import scanning as sc
from tests.e2e.test_api import api
from tests.e2e.test_api import device_token
from tests.e2e.test_api import login
from tracker.services import idempotency as idem


@pytest.fixture
def scanners(new_uow, world, clock):
    return sc.make_scanners(new_uow, world, clock.now())


def _scan(client, token, device, raw, step="collect_verify_patient", **extra):
    body = {
        "raw": raw,
        "device": device,
        "step": step,
        "client_at": "2026-03-02T14:00:00+00:00",
        "nonce": extra.pop("nonce", str(uuid.uuid4())),
        "run": extra.pop("run", "run-api-0001"),
        **extra,
    }
    return client.post("/api/v1/scans", json=body, headers={"X-CSRFToken": token})


def _journey(new_uow, world, clock, settings, scanners):
    driver = sc.Driver(new_uow, world, clock, settings, scanners)
    return driver, sc.new_journey(driver, bags=1)


def test_a_scan_answers_with_status_reason_message_and_what_comes_next(
    client, world, new_uow, clock, settings, scanners
):
    _, j = _journey(new_uow, world, clock, settings, scanners)
    token, _ = login(client, "nurse")
    resp = _scan(client, token, scanners["CC1"], j.wristband)
    assert resp.status_code == 201
    body = resp.get_json()
    assert (body["status"], body["reason"]) == ("incomplete", None)
    assert body["next"]["type"] == "question" and body["next"]["key"] == "identity_confirmed"
    assert body["order"] == {"public_id": j.order.public_id, "coi": j.order.coi}
    resp = api(
        client,
        token,
        "POST",
        "/api/v1/runs/run-api-0001/answers",
        {"answers": {"identity_confirmed": True}},
    )
    assert resp.status_code == 201 and resp.get_json()["status"] == "ok"
    assert resp.get_json()["following"] == [
        {"code": "collect_label_bags", "title": "Confirm bag labels applied"}
    ]


def test_refusals_are_400_unknown_codes_404_and_both_are_stored(
    client, world, new_uow, clock, settings, scanners
):
    _, j = _journey(new_uow, world, clock, settings, scanners)
    token, _ = login(client, "nurse")
    resp = _scan(client, token, scanners["CC1"], "TRKPAT0000000000X")
    assert resp.status_code == 400 and resp.get_json()["reason"] in (
        "bad_check_character",
        "malformed",
    )
    resp = _scan(client, token, scanners["CC1"], sc.coi_code(j.order)[:-1] + "Z")
    assert resp.status_code == 404 and resp.get_json()["reason"] == "unknown_code"
    resp = _scan(client, token, scanners["CC1"], j.wristband, step="collect_bags", run="run-2-xyz")
    assert resp.status_code == 400 and resp.get_json()["reason"] == "wrong_step"
    listed = client.get(f"/api/v1/orders/{j.order.public_id}/scans?result=error").get_json()
    assert [s["reason"] for s in listed["scans"]] == ["wrong_step"]
    assert client.get(f"/api/v1/orders/{j.order.public_id}/scans").get_json()["scans"] == []


def test_a_repeated_nonce_replays_the_stored_answer(
    client, world, new_uow, clock, settings, scanners
):
    _, j = _journey(new_uow, world, clock, settings, scanners)
    token, _ = login(client, "nurse")
    first = _scan(client, token, scanners["CC1"], j.wristband, nonce="nonce-replay-1")
    again = _scan(client, token, scanners["CC1"], j.wristband, nonce="nonce-replay-1")
    assert again.status_code == first.status_code == 201
    assert again.get_json() == first.get_json()
    assert again.headers["Idempotent-Replayed"] == "true"
    assert "Idempotent-Replayed" not in first.headers


def test_a_scan_body_with_a_naive_time_or_a_bad_field_is_refused(client, world, scanners):
    token, _ = login(client, "nurse")
    resp = _scan(client, token, scanners["CC1"], "x", client_at="2026-03-02T14:00:00")
    assert resp.status_code == 400 and resp.get_json()["reason"] == "naive_datetime"
    resp = _scan(client, token, scanners["CC1"], "x", offline="yes")
    assert resp.status_code == 400 and resp.get_json()["reason"] == "invalid_request"


def test_the_coordinator_sees_a_wrong_patient_attempt_on_the_order(
    client, world, new_uow, clock, settings, scanners
):
    driver, j = _journey(new_uow, world, clock, settings, scanners)
    other = sc.new_journey(driver, bags=1, mrn="OTHER")
    sc.collect(driver, j, upto="collect_verify_patient")
    sc.ok(driver.scan("nurse", "collect_label_bags", j.wristband, site="CC1"))
    wrong = driver.scan("nurse", "collect_label_bags", sc.din_code(other.bags[0]), site="CC1")
    assert wrong.body["reason"] == "coi_mismatch"
    login(client, "coord")
    listed = client.get(f"/api/v1/orders/{j.order.public_id}/scans?result=error").get_json()
    assert [(s["reason"], s["other_order"]) for s in listed["scans"]] == [
        ("coi_mismatch", other.order.public_id)
    ]
    # The other patient's coordinator sees that their bag was scanned elsewhere too.
    listed = client.get(f"/api/v1/orders/{other.order.public_id}/scans?result=error").get_json()
    assert [s["reason"] for s in listed["scans"]] == ["coi_mismatch"]
    page = client.get(f"/orders/{j.order.public_id}").get_data(as_text=True)
    assert 'class="wrong-patient"' in page and "coi_mismatch" in page
    journey = client.get(f"/api/v1/orders/{j.order.public_id}/journey").get_json()
    assert [s["code"] for s in journey["following"]] == ["collect_label_bags"]


def test_qa_closes_a_deviation_over_the_api_with_a_signature(
    client, world, new_uow, clock, settings, scanners
):
    _, j = _journey(new_uow, world, clock, settings, scanners)
    token, _ = login(client, "coord")
    resp = api(
        client,
        token,
        "POST",
        f"/api/v1/orders/{j.order.public_id}/deviations",
        {"description": "Bag label smudged"},
    )
    assert resp.status_code == 201
    deviation = resp.get_json()["public_id"]
    resp = api(
        client,
        token,
        "POST",
        f"/api/v1/deviations/{deviation}/close",
        {"reason": "fine", "password": sc.WORLD_PASSWORD},
    )
    assert resp.status_code == 403
    client.post("/logout")
    token, _ = login(client, "qa")
    resp = api(
        client,
        token,
        "POST",
        f"/api/v1/deviations/{deviation}/close",
        {"reason": "Relabelled and verified", "password": "wrong"},
    )
    assert resp.status_code == 401 and resp.get_json()["reason"] == "signature_failed"
    resp = api(
        client,
        token,
        "POST",
        f"/api/v1/deviations/{deviation}/close",
        {"reason": "Relabelled and verified", "password": sc.WORLD_PASSWORD},
    )
    assert resp.status_code == 200 and resp.get_json()["status"] == "closed"


# ---------------------------------------------------------------------------------------------
# Idempotency-Key on every other write
# ---------------------------------------------------------------------------------------------

PATIENT = {
    "treatment_site": "TC1",
    "given_name": "Idem",
    "family_name": "Potent",
    "date_of_birth": "1980-01-01",
    "mrn": "MRN-IDEM",
}


def _post(client, token, path, body, key):
    return client.post(path, json=body, headers={"X-CSRFToken": token, "Idempotency-Key": key})


def test_a_replayed_write_returns_the_stored_answer_and_creates_nothing(client, world):
    token, _ = login(client, "coord")
    first = _post(client, token, "/api/v1/patients", PATIENT, "key-patient-1")
    again = _post(client, token, "/api/v1/patients", PATIENT, "key-patient-1")
    assert first.status_code == again.status_code == 201
    assert again.get_json() == first.get_json()
    assert again.headers["Idempotent-Replayed"] == "true"
    fresh = _post(client, token, "/api/v1/patients", PATIENT, "key-patient-2")
    assert fresh.get_json()["public_id"] != first.get_json()["public_id"]


def test_the_same_key_with_a_different_body_is_refused_with_422(client, world):
    token, _ = login(client, "coord")
    _post(client, token, "/api/v1/patients", PATIENT, "key-reuse")
    other = _post(client, token, "/api/v1/patients", {**PATIENT, "mrn": "MRN-2"}, "key-reuse")
    assert other.status_code == 422 and other.get_json()["reason"] == "idempotency_key_reused"


def test_a_replay_while_the_first_request_runs_gets_409_and_retry_after(
    client, world, new_uow, clock
):
    token, _ = login(client, "coord")
    # The first request has claimed the key and is still running (in another worker).
    import hashlib

    body = json.dumps(PATIENT).encode()
    digest = hashlib.sha256()
    for part in (b"POST", b"/api/v1/patients?", body):
        digest.update(part)
        digest.update(b"\0")
    with new_uow() as uow:
        claimed = idem.claim(
            uow=uow,
            caller=f"user:{world.users['coord'].id}",
            key="key-busy",
            fingerprint=digest.hexdigest(),
            now=clock.now(),
        )
        uow.commit()
    assert isinstance(claimed, idem.Claimed)
    resp = client.post(
        "/api/v1/patients",
        data=body,
        content_type="application/json",
        headers={"X-CSRFToken": token, "Idempotency-Key": "key-busy"},
    )
    assert resp.status_code == 409 and resp.headers["Retry-After"] == "1"
    assert resp.get_json()["reason"] == "idempotency_in_flight"


def test_keys_belong_to_their_caller_and_answers_asking_for_a_retry_are_not_kept(
    client, world, new_uow, clock
):
    token, _ = login(client, "coord")
    first = _post(client, token, "/api/v1/patients", PATIENT, "shared-key")
    client.post("/logout")
    token2, _ = login(client, "coord2")
    other = _post(
        client, token2, "/api/v1/patients", {**PATIENT, "treatment_site": "TC2"}, "shared-key"
    )
    assert other.status_code == 201 and "Idempotent-Replayed" not in other.headers
    assert other.get_json()["public_id"] != first.get_json()["public_id"]
    # A 409 (here: a duplicate shipper serial) is not stored, so the retry runs again.
    client.post("/logout")
    token, _ = login(client, "admin")
    shipper = {"serial": "EVO-1", "site": "CC1", "validated_hold_hours": 240}
    assert _post(client, token, "/api/v1/shippers", shipper, "s-1").status_code == 201
    dup = _post(client, token, "/api/v1/shippers", shipper, "s-2")
    assert dup.status_code == 409
    again = _post(client, token, "/api/v1/shippers", shipper, "s-2")
    assert again.status_code == 409 and "Idempotent-Replayed" not in again.headers


def test_expired_keys_are_purged_after_a_day(new_uow, clock):
    from datetime import timedelta

    with new_uow() as uow:
        idem.claim(uow=uow, caller="user:1", key="old", fingerprint="f", now=clock.now())
        uow.commit()
    with new_uow() as uow:
        assert idem.purge_expired(uow=uow, now=clock.now() + timedelta(hours=23)) == 0
        assert idem.purge_expired(uow=uow, now=clock.now() + timedelta(hours=25)) == 1


# ---------------------------------------------------------------------------------------------
# Fuzzing: whatever arrives, the answer is a coded 4xx or a 201, never a 500
# ---------------------------------------------------------------------------------------------

_RAW = st.one_of(
    st.text(max_size=80),
    st.text(alphabet=string.printable + "\x1d\x00]", max_size=60),
    st.sampled_from(
        ["=", "&/", "=+", "]C1", "]d2", "TRK", "TRKPAT", "(01)", "\x1d", "=<", "&,"]
    ).flatmap(
        lambda prefix: st.text(
            alphabet=string.ascii_uppercase + string.digits + "=&<>%*\x1d", max_size=40
        ).map(lambda rest: prefix + rest)
    ),
)
_JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=8), children, max_size=3)
    ),
    max_leaves=8,
)


def _logged_in(client):
    # Hypothesis reuses the test's fixtures for every example: log in once per test.
    if not hasattr(client, "nurse_token"):
        client.nurse_token, _ = login(client, "nurse")
    return client.nurse_token


@hsettings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    raw=_RAW,
    manual=st.booleans(),
    offline=st.booleans(),
    step=st.sampled_from(
        [
            "collect_verify_patient",
            "collect_label_bags",
            "receive_apheresis",
            "bedside_verify",
            "quarantine",
            "no_such_step",
        ]
    ),
)
def test_fuzzed_scans_never_cause_a_server_error(
    client, world, new_uow, clock, settings, scanners, raw, manual, offline, step
):
    token = _logged_in(client)
    resp = _scan(client, token, scanners["CC1"], raw, step=step, manual=manual, offline=offline)
    assert resp.status_code in (201, 400, 404), resp.get_data(as_text=True)
    body = resp.get_json()
    assert body["status"] in ("ok", "incomplete", "error")


@hsettings(
    max_examples=100,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(body=_JSON)
def test_fuzzed_request_bodies_never_cause_a_server_error(client, world, scanners, body):
    token = _logged_in(client)
    resp = client.post("/api/v1/scans", json=body, headers={"X-CSRFToken": token})
    assert resp.status_code == 400 and resp.get_json()["status"] == "error"
    resp = client.post(
        "/api/v1/runs/run-none-0001/answers", json=body, headers={"X-CSRFToken": token}
    )
    assert resp.status_code in (400, 404)


@pytest.mark.parametrize("raw", ["\\u0000", "\\ud800", "=W9999\\u0000", "\\udfff\\ud83d\\ude00"])
def test_nul_and_lone_surrogates_are_stored_escaped(client, world, scanners, raw):
    token = _logged_in(client)
    body = (
        '{"raw": "' + raw + '", "device": "' + scanners["CC1"] + '", "step": '
        '"collect_verify_patient", "client_at": "2026-03-02T14:00:00+00:00", '
        '"nonce": "' + str(uuid.uuid4()) + '"}'
    )
    resp = client.post(
        "/api/v1/scans",
        data=body.encode(),
        content_type="application/json",
        headers={"X-CSRFToken": token},
    )
    assert resp.status_code in (400, 404), resp.get_data(as_text=True)


def test_the_worker_purges_expired_idempotency_keys(session_factory, new_uow, clock, settings):
    from datetime import timedelta

    from sqlalchemy import func
    from sqlalchemy import select

    from tracker.jobs import JobContext
    from tracker.jobs import purge_idempotency_keys
    from tracker.models import IdempotencyKey
    from tracker.scheduler import jobs

    assert "purge-idempotency-keys" in {job.id for job in jobs(settings)}
    with new_uow() as uow:
        idem.claim(uow=uow, caller="user:1", key="stale", fingerprint="f", now=clock.now())
        uow.commit()
    clock.advance(timedelta(hours=25))
    purge_idempotency_keys(JobContext(session_factory, clock, settings, "test"))
    with new_uow() as uow:
        assert uow.session.scalar(select(func.count(IdempotencyKey.id))) == 0


def test_the_scan_api_checks_a_session_csrf_token_once_and_never_a_device_tokens(
    client, world, new_uow, clock, scanners
):
    """A device token is no ambient credential: its scan reaches the scan rules (which want a
    person) instead of being refused as a forged browser request; a session still needs its
    CSRF token."""
    issued = device_token(new_uow, world, clock)
    body = {
        "raw": "TRKPAT0000000000X",
        "device": issued.device.public_id,
        "step": "collect_verify_patient",
        "client_at": "2026-03-02T14:00:00+00:00",
        "nonce": str(uuid.uuid4()),
        "run": "run-api-0001",
    }
    resp = client.post(
        "/api/v1/scans", json=body, headers={"Authorization": f"Bearer {issued.token}"}
    )
    assert resp.status_code == 403
    assert resp.get_json()["reason"] == "forbidden"
    assert "person" in resp.get_json()["message"]
    login(client, "nurse")
    resp = client.post("/api/v1/scans", json={**body, "device": scanners["CC1"]})
    assert resp.status_code == 403 and resp.get_json()["reason"] == "csrf_failed"
