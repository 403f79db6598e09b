"""On PostgreSQL, with committed data and real processes: two dispatchers at once, a worker
killed in the middle of a Twilio call, and a standby worker taking over from a dead leader."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from datetime import UTC
from datetime import datetime
from datetime import timedelta
from pathlib import Path

import pytest
from pydantic import SecretStr
from sqlalchemy import select
from sqlalchemy import text

from tests.fake_twilio import ACCOUNT
from tests.fake_twilio import SERVICE
from tests.fake_twilio import FakeTwilioHttp
from tests.fake_twilio import FakeTwilioServer
from tests.fake_twilio import twilio_client
from tracker.adapters.sms import TwilioSmsSender
from tracker.adapters.sms import make_sms_sender
from tracker.clock import SystemClock
from tracker.db import make_session_factory
from tracker.models import SmsOutbox
from tracker.models import WorkerHeartbeat
from tracker.services import sms
from tracker.unit_of_work import UnitOfWork

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.usefixtures("pg_only")


@pytest.fixture
def committed(engine):
    """A session factory that really commits; the tables it touched are emptied afterwards."""
    factory = make_session_factory(engine)
    yield factory
    with engine.begin() as conn:
        conn.execute(text("DELETE FROM sms_outbox"))
        conn.execute(text("DELETE FROM worker_heartbeats"))


def _queue(factory, count: int) -> None:
    now = datetime.now(UTC)
    with UnitOfWork(factory) as uow:
        for n in range(count):
            uow.session.add(
                SmsOutbox(
                    dedupe_key=f"concurrency:{n}",
                    to_phone=f"+1555000{n:04d}",
                    template="temperature_alarm",
                    body=f"Job J-TEST{n:02d}: temperature alarm. Reply ACK {1000 + n}.",
                    escalation_level=0,
                    state="pending",
                    attempts=0,
                    verify_attempts=0,
                    next_attempt_at=now,
                    created_at=now,
                )
            )
        uow.commit()


def _rows(factory):
    with UnitOfWork(factory) as uow:
        return [
            (r.state, r.sid, r.claimed_by)
            for r in uow.session.scalars(select(SmsOutbox).order_by(SmsOutbox.id))
        ]


def test_two_dispatchers_at_once_send_every_text_exactly_once(committed):
    _queue(committed, 40)
    http = FakeTwilioHttp(["ok"] * 40)
    http.delay = 0.01  # keep both dispatchers busy at the same time
    start = threading.Barrier(2)
    reports = {}

    def run(name: str) -> None:
        sender = TwilioSmsSender(twilio_client(http), messaging_service_sid=SERVICE)
        start.wait()
        reports[name] = sms.dispatch(
            session_factory=committed,
            sender=sender,
            now=SystemClock().now,
            worker=name,
            status_callback=None,
            lease=timedelta(seconds=60),
        )

    threads = [threading.Thread(target=run, args=(n,)) for n in ("worker-a", "worker-b")]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    bodies = [p["Body"] for p in http.posts]
    assert len(bodies) == 40 and len(set(bodies)) == 40
    rows = _rows(committed)
    assert all(state == "sent" for state, _, _ in rows)
    assert {claimed for _, _, claimed in rows} == {"worker-a", "worker-b"}  # both did work
    assert reports["worker-a"].sent + reports["worker-b"].sent == 40


def _worker_env(settings, **extra: str) -> dict[str, str]:
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "TRACKER_ENV": "test",
        "TRACKER_DATABASE_URL": settings.database_url,
        "TRACKER_SECRET_KEY": "worker-test-secret",
        "TRACKER_WORKER_HEARTBEAT_SECONDS": "1",
        **extra,
    }
    for key in [k for k in env if k.startswith("TRACKER_TWILIO") and k not in extra]:
        env.pop(key)
    return env


def _start_worker(env) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "flask", "--app", "wsgi", "tracker", "worker"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )


def _wait(predicate, timeout: float, what: str) -> float:
    start = time.monotonic()
    while time.monotonic() - start < timeout:
        if predicate():
            return time.monotonic() - start
        time.sleep(0.1)
    pytest.fail(f"timed out after {timeout}s waiting for {what}")


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        os.kill(proc.pid, signal.SIGTERM)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait(5)


@pytest.mark.parametrize(
    ("twilio_got_it", "posts_expected"),
    [(True, 1), (False, 2)],
    ids=["twilio-had-accepted-it", "twilio-never-got-it"],
)
def test_a_worker_killed_mid_dispatch_is_checked_before_any_resend(
    committed, settings, twilio_got_it, posts_expected
):
    _queue(committed, 1)
    with FakeTwilioServer() as twilio:
        twilio.mode = "hang" if twilio_got_it else "drop"
        twilio_env = {
            "TRACKER_TWILIO_ACCOUNT_SID": ACCOUNT,
            "TRACKER_TWILIO_AUTH_TOKEN": "auth-token",
            "TRACKER_TWILIO_MESSAGING_SERVICE_SID": SERVICE,
            "TRACKER_TWILIO_API_BASE_URL": twilio.url,
            "TRACKER_TWILIO_TIMEOUT_SECONDS": "20",
            "TRACKER_SMS_SENDING_LEASE_SECONDS": "21",
        }
        worker = _start_worker(_worker_env(settings, **twilio_env))
        try:
            _wait(lambda: twilio.arrivals, 30, "the worker's call to Twilio")
            assert _rows(committed)[0][0] == "sending"
            os.kill(worker.pid, signal.SIGKILL)  # killed while Twilio has not answered
            worker.wait(10)
        finally:
            _stop(worker)
        twilio.mode = "ok"
        twilio.release.set()
        assert _rows(committed)[0][0] == "sending"
        # Another dispatcher, once the dead one's lease is over (here: at once).
        env_settings = settings.model_copy(
            update={
                "twilio_account_sid": ACCOUNT,
                "twilio_auth_token": SecretStr("auth-token"),
                "twilio_messaging_service_sid": SERVICE,
                "twilio_api_base_url": twilio.url,
            }
        )
        report = sms.dispatch(
            session_factory=committed,
            sender=make_sms_sender(env_settings),
            now=SystemClock().now,
            worker="survivor",
            status_callback=None,
            lease=timedelta(0),
        )
        assert report.recovered == 1
        ((state, sid, _),) = _rows(committed)
        assert state == "sent"
        assert len(twilio.arrivals) == posts_expected
        assert len(twilio.messages) == 1 and sid == twilio.messages[0]["sid"]


def test_a_standby_worker_takes_over_within_seconds_when_the_leader_dies(committed, settings):
    def leader_pid():
        with UnitOfWork(committed) as uow:
            beat = uow.session.get(WorkerHeartbeat, "leader")
            return (
                beat.pid
                if beat and datetime.now(UTC) - beat.beat_at < timedelta(seconds=3)
                else None
            )

    env = _worker_env(settings)
    first = _start_worker(env)
    second = None
    try:
        _wait(lambda: leader_pid() == first.pid, 30, "the first worker to lead")
        second = _start_worker(env)
        time.sleep(3)
        assert leader_pid() == first.pid  # the second one waits as a standby
        os.kill(first.pid, signal.SIGKILL)
        took = _wait(lambda: leader_pid() == second.pid, 15, "the standby to take over")
        assert took < 10
    finally:
        _stop(first)
        if second is not None:
            _stop(second)
