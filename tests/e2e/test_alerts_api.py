"""Readings through the API (logger token, batches, idempotent), imports with progress,
the alerts and exposure endpoints, and the staff pages."""

import io
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import select

from tests.alert_helpers import ingest
from tests.alert_helpers import on_the_road
from tests.alert_helpers import series
from tests.e2e.test_api import api
from tests.e2e.test_api import login
from tracker.domain.signatures import record_hash
from tracker.models import Alert
from tracker.models import AuditEntry
from tracker.models import LoggerImportRun
from tracker.models import QaDisposition
from tracker.models import Signature
from tracker.models import TemperatureLogger
from tracker.models import User
from tracker.services import auth
from tracker.services import readings
from tracker.services.certificates import disposition_content

DATA = Path(__file__).resolve().parents[1] / "data" / "loggers"


def _post_readings(client, token, values, serial=None):
    body = {"readings": [{"at": r.at.isoformat(), "celsius": r.celsius} for r in values]}
    if serial:
        body["serial"] = serial
    return client.post(
        "/api/v1/logger-readings", json=body, headers={"Authorization": f"Bearer {token}"}
    )


def test_a_logger_posts_batches_with_its_token_and_replays_change_nothing(
    client, new_uow, world, clock
):
    trip = on_the_road(new_uow, world, clock.now())
    values = series(trip.packed_at, [4.0, 4.5, 5.0])
    first = _post_readings(client, trip.token, values, serial=trip.logger_serial)
    assert first.status_code == 200, first.get_json()
    assert first.get_json() == {"accepted": 3, "duplicates": 0, "conflicts": [], "alerts": []}
    again = _post_readings(client, trip.token, values)
    assert again.get_json()["duplicates"] == 3
    hot = _post_readings(
        client, trip.token, series(trip.packed_at + timedelta(minutes=15), [9.0] * 8)
    )
    assert len(hot.get_json()["alerts"]) == 2


def test_readings_are_refused_from_other_devices_without_offsets_or_out_of_bounds(
    client, new_uow, world, clock
):
    trip = on_the_road(new_uow, world, clock.now())
    with new_uow() as uow:
        scanner = auth.register_device(
            uow=uow,
            name="Gun",
            kind="scanner",
            site_id=world.sites["CC1"].id,
            now=clock.now(),
            actor_user_id=world.users["admin"].id,
        )
        uow.commit()
    resp = _post_readings(client, scanner.token, series(trip.packed_at, [4.0]))
    assert (resp.status_code, resp.get_json()["reason"]) == (403, "not_a_logger")
    resp = _post_readings(client, trip.token, series(trip.packed_at, [4.0]), serial="OTHER")
    assert resp.get_json()["reason"] == "not_a_logger"
    naive = {"readings": [{"at": "2026-03-02T10:00:00", "celsius": 4.0}]}
    resp = client.post(
        "/api/v1/logger-readings", json=naive, headers={"Authorization": f"Bearer {trip.token}"}
    )
    assert (resp.status_code, resp.get_json()["reason"]) == (400, "naive_datetime")
    too_cold = {"readings": [{"at": "2026-03-02T10:00:00Z", "celsius": -300}]}
    resp = client.post(
        "/api/v1/logger-readings", json=too_cold, headers={"Authorization": f"Bearer {trip.token}"}
    )
    assert resp.status_code == 400
    assert _post_readings(client, "nope", series(trip.packed_at, [4.0])).status_code == 401


def _run_imports(session_factory, new_uow, clock):
    with new_uow() as uow:
        queued = readings.queued_imports(uow.session)
    return [
        readings.run_import(session_factory=session_factory, import_id=i, now=clock.now)
        for i in queued
    ]


def test_a_fridge_tag_export_is_imported_with_its_alarm_settings_and_sensor_timeouts(
    client, session_factory, new_uow, world, clock
):
    token, _ = login(client, "coord")
    content = (DATA / "fridgetag-ul_100800001215_202304201410.txt").read_text()
    resp = api(
        client,
        token,
        "POST",
        "/api/v1/logger-imports",
        {"filename": "fridgetag.txt", "content": content, "site": "CC1", "profile": "device"},
    )
    assert resp.status_code == 202, resp.get_json()
    import_id = resp.get_json()["id"]
    (run,) = _run_imports(session_factory, new_uow, clock)
    assert (run.status, run.format, run.readings_new, run.done, run.total) == (
        "done",
        "berlinger_fridgetag",
        835,
        835,
        835,
    )
    assert {a["threshold_c"] for a in run.summary["alarms"]} == {-90.0, -60.0}
    assert {s["timeout_seconds"] for s in run.summary["sensor_timeouts"]} == {600}
    assert run.summary["missing_values"] > 0
    status = client.get(f"/api/v1/logger-imports/{import_id}").get_json()
    assert status["percent"] == 100
    with new_uow() as uow:
        logger = uow.session.scalar(select(TemperatureLogger))
        assert (logger.serial, logger.profile, logger.active) == ("100800001215", "device", False)
    # Importing the same file again stores nothing new.
    api(
        client,
        token,
        "POST",
        "/api/v1/logger-imports",
        {"filename": "again.txt", "content": content, "site": "CC1"},
    )
    (again,) = _run_imports(session_factory, new_uow, clock)
    assert (again.readings_new, again.readings_duplicate) == (0, 835)


def test_a_q_tag_export_imports_and_its_readings_are_judged_by_the_device_alarms(
    client, session_factory, new_uow, world, clock
):
    token, _ = login(client, "coord")
    content = (DATA / "qtag-clm-doc-lr_RCPJ00010_03_202304201359.txt").read_text()
    api(
        client,
        token,
        "POST",
        "/api/v1/logger-imports",
        {"filename": "qtag.txt", "content": content, "site": "CC1", "profile": "device"},
    )
    (run,) = _run_imports(session_factory, new_uow, clock)
    assert (run.status, run.format, run.readings_new) == ("done", "berlinger_qtag", 424)
    assert run.excursions >= 1  # the file starts at 12.7 °C, above its own 8 °C alarm


def test_a_long_csv_import_commits_its_progress_as_it_goes(
    client, session_factory, new_uow, world, clock, monkeypatch
):
    monkeypatch.setattr(readings, "IMPORT_CHUNK", 500)
    start = clock.now() - timedelta(days=10)
    rows = ["timestamp,temperature_c,logger_serial"] + [
        f"{(start + timedelta(minutes=5 * i)).isoformat()},-180.5,CSV-LONG" for i in range(2600)
    ]
    token, _ = login(client, "coord")
    api(
        client,
        token,
        "POST",
        "/api/v1/logger-imports",
        {"filename": "long.csv", "content": "\n".join(rows), "site": "CC1"},
    )
    seen = []

    def now():
        with new_uow() as uow:
            run = uow.session.scalar(select(LoggerImportRun))
            seen.append((run.status, run.done))
        return clock.now()

    with new_uow() as uow:
        (import_id,) = readings.queued_imports(uow.session)
    run = readings.run_import(session_factory=session_factory, import_id=import_id, now=now)
    assert (run.status, run.readings_new) == ("done", 2600)
    stored = [done for status, done in seen if status == "storing"]
    assert stored == sorted(stored) and {500, 1000, 2500} <= set(stored)


def test_a_broken_file_fails_visibly(client, session_factory, new_uow, world, clock):
    token, _ = login(client, "coord")
    api(
        client,
        token,
        "POST",
        "/api/v1/logger-imports",
        {"filename": "junk.txt", "content": "hello\nworld", "site": "CC1"},
    )
    (run,) = _run_imports(session_factory, new_uow, clock)
    assert run.status == "failed" and "unrecognised" in run.summary["failure"]


def test_alerts_acknowledgement_and_exposure_through_the_api(client, new_uow, world, clock):
    trip = on_the_road(new_uow, world, clock.now())
    ingest(new_uow, trip, series(trip.packed_at, [9.0] * 8 + [5.0]), clock.now())
    token, _ = login(client, "coord")
    listed = client.get("/api/v1/alerts").get_json()["alerts"]
    alarm = next(a for a in listed if a["severity"] == "alarm")
    assert alarm["rung"] == "courier"
    resp = api(
        client, token, "POST", f"/api/v1/alerts/{alarm['id']}/acknowledgements", {"comment": ""}
    )
    assert resp.status_code == 400
    resp = api(
        client,
        token,
        "POST",
        f"/api/v1/alerts/{alarm['id']}/acknowledgements",
        {"comment": "Courier re-iced the shipper"},
    )
    assert resp.get_json()["status"] == "acknowledged"
    ledger = client.get(f"/api/v1/items/{trip.bag.public_id}/exposure").get_json()
    assert ledger["out_of_range"] == 40 * 60 and ledger["max_c"] == 9.0
    assert ledger["hold"]["reason"] == "disposition_pending"
    # QA decides through the API; the alert closes once every exposed bag has a decision.
    qa_client = client.application.test_client()
    qa_token, _ = login(qa_client, "qa")
    resp = api(
        qa_client,
        qa_token,
        "POST",
        f"/api/v1/items/{trip.bag.public_id}/dispositions",
        {"decision": "accept", "comment": "Within stability data", "password": world.password},
    )
    assert resp.status_code == 201, resp.get_json()
    with new_uow() as uow:
        assert uow.session.get(Alert, alarm["id"]).status == "resolved"
    assert client.get(f"/api/v1/items/{trip.bag.public_id}/exposure").get_json()["hold"] is None


@pytest.fixture
def hot_trip(new_uow, world, clock):
    """A bag on the road whose logger recorded 40 minutes above 8 °C (QA must decide)."""
    trip = on_the_road(new_uow, world, clock.now())
    ingest(new_uow, trip, series(trip.packed_at, [9.0] * 8 + [5.0]), clock.now())
    return trip


def _dispose(client, token, bag, body):
    return api(client, token, "POST", f"/api/v1/items/{bag}/dispositions", body)


def test_an_api_disposition_without_the_right_password_is_refused_and_records_nothing(
    client, new_uow, world, settings, hot_trip
):
    bag = hot_trip.bag.public_id
    token, _ = login(client, "qa")
    body = {"decision": "accept", "comment": "Within stability data"}
    # The password is part of the request body: without it the request is malformed.
    missing = _dispose(client, token, bag, body)
    assert missing.status_code == 400 and missing.get_json()["reason"] == "invalid_request"
    wrong = _dispose(client, token, bag, {**body, "password": "not-my-password"})
    assert wrong.status_code == 401 and wrong.get_json()["reason"] == "signature_failed"
    with new_uow() as uow:
        assert uow.session.scalars(select(QaDisposition)).all() == []
        assert uow.session.scalars(select(Signature)).all() == []
        assert uow.session.get(User, world.users["qa"].id).failed_logins == 1
        failed = uow.session.scalars(
            select(AuditEntry.entity_id).where(AuditEntry.action == "signature_failed")
        ).all()
        assert failed == [bag]
    # Failed signatures count toward the lockout like failed logins; then even the right
    # password is refused until the lock expires.
    for _ in range(settings.lockout_threshold - 1):
        last = _dispose(client, token, bag, {**body, "password": "not-my-password"})
    assert last.status_code == 423 and last.get_json()["reason"] == "account_locked"
    locked = _dispose(client, token, bag, {**body, "password": world.password})
    assert locked.status_code == 423 and locked.get_json()["reason"] == "account_locked"
    with new_uow() as uow:
        assert uow.session.scalars(select(QaDisposition)).all() == []
        assert uow.session.scalar(select(Alert.status).where(Alert.severity == "alarm")) == "open"


def test_an_api_disposition_is_recorded_with_a_signature_binding_name_meaning_time_and_hash(
    client, new_uow, world, clock, hot_trip
):
    bag = hot_trip.bag.public_id
    token, _ = login(client, "qa")
    body = {"decision": "quarantine", "comment": "Hold for review", "password": world.password}
    resp = _dispose(client, token, bag, body)
    assert resp.status_code == 201, resp.get_json()
    out = resp.get_json()
    signature = out["signature"]
    assert out["decision"] == "quarantine" and out["item"] == bag
    assert signature["printed_name"] == world.users["qa"].full_name
    assert signature["meaning"] == "approval"
    assert signature["record_type"] == "qa_disposition" and signature["record_id"] == bag
    assert signature["signed_at"] == clock.now().isoformat().replace("+00:00", "Z")
    with new_uow() as uow:
        row = uow.session.get(QaDisposition, out["id"])
        stored = uow.session.get(Signature, signature["id"])
        assert row.decision == "quarantine" and row.decided_by_user_id == world.users["qa"].id
        # The hash covers exactly the stored decision: change it and the signature no
        # longer matches.
        content = disposition_content(row, bag)
        assert stored.record_hash == signature["record_hash"]
        assert stored.record_hash == record_hash("qa_disposition", bag, content)
        assert auth.signature_matches(stored, content)
        assert not auth.signature_matches(stored, {**content, "decision": "accept"})


def test_the_pages_show_acknowledge_and_record_decisions(client, new_uow, world, clock):
    trip = on_the_road(new_uow, world, clock.now())
    ingest(new_uow, trip, series(trip.packed_at, [9.0] * 8 + [5.0]), clock.now())
    token, _ = login(client, "coord")
    page = client.get("/alerts").get_data(as_text=True)
    assert "ALARM: logger LOG-T1" in page
    with new_uow() as uow:
        alarm_id = uow.session.scalar(select(Alert.id).where(Alert.severity == "alarm"))
    detail = client.get(f"/alerts/{alarm_id}").get_data(as_text=True)
    assert trip.bag.public_id in detail and "≥ 8.0 °C for 30 min" in detail
    resp = client.post(
        f"/alerts/{alarm_id}/acknowledge", data={"comment": "on it", "csrf_token": token}
    )
    assert resp.status_code == 302
    assert "on it" in client.get(f"/alerts/{alarm_id}").get_data(as_text=True)
    resp = client.post(
        f"/alerts/{alarm_id}/dispositions",
        data={
            "item": trip.bag.public_id,
            "decision": "accept",
            "comment": "x",
            "csrf_token": token,
        },
        follow_redirects=True,
    )
    assert "only QA" in resp.get_data(as_text=True)
    assert trip.bag.public_id in client.get(f"/items/{trip.bag.public_id}/exposure").get_data(
        as_text=True
    )


def test_the_loggers_page_uploads_a_file_and_shows_its_progress(
    client, session_factory, new_uow, world, clock
):
    token, _ = login(client, "coord")
    assert "Import a logger file" in client.get("/loggers").get_data(as_text=True)
    content = (DATA / "readings_ok.csv").read_bytes()
    resp = client.post(
        "/loggers/imports",
        data={"file": (io.BytesIO(content), "readings_ok.csv"), "site": "CC1", "csrf_token": token},
        content_type="multipart/form-data",
    )
    assert resp.status_code == 302
    progress_url = resp.headers["Location"] + "/progress"
    queued = client.get(progress_url).get_data(as_text=True)
    assert 'data-status="queued"' in queued and "hx-trigger" in queued
    _run_imports(session_factory, new_uow, clock)
    done = client.get(progress_url).get_data(as_text=True)
    assert 'data-status="done"' in done and "hx-trigger" not in done
