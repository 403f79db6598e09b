"""The worker: one job registry with stable ids, run by the leader only.

On PostgreSQL the leader holds a session advisory lock on an unpooled connection and
heartbeats it; a standby retries every few seconds and takes over when the lock frees. In the
documented SQLite mode there is a single worker and no lock.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC
from datetime import datetime

from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.triggers.interval import IntervalTrigger
from sqlalchemy import text
from sqlalchemy.engine import make_url
from sqlalchemy.pool import NullPool

from schedules.jobs import extend_capacity_horizon
from schedules.jobs import sweep_expired_holds
from tracker import jobs as j
from tracker.clock import Clock
from tracker.clock import SystemClock
from tracker.config import Settings
from tracker.db import make_engine
from tracker.db import make_session_factory
from tracker.jobs import JobContext
from tracker.jobs import purge_idempotency_keys
from tracker.jobs import record_heartbeat

log = logging.getLogger(__name__)

LEADER_LOCK = 0x7C0_1D  # one constant key for the whole deployment


@dataclass(frozen=True)
class Job:
    id: str
    func: Callable[[JobContext], None]
    seconds: float


def jobs(settings: Settings) -> list[Job]:
    """Every periodic job, with a stable id (sweepers over database rows)."""
    return [
        Job("worker-heartbeat", record_heartbeat, settings.worker_heartbeat_seconds),
        # Polled every second and woken by NOTIFY on PostgreSQL: an alert's SMS leaves within
        # a second or two of the reading that caused it.
        Job("sms-dispatch", j.dispatch_sms, settings.sms_dispatch_seconds),
        Job("alert-sweep", j.sweep_alerts, settings.alert_sweep_seconds),
        Job("logger-silence", j.sweep_silent_loggers, settings.silence_sweep_seconds),
        Job("logger-imports", j.run_logger_imports, 1),
        Job("shipment-deadlines", j.rederive_shipment_deadlines, 60),
        Job("quality-release-estimates", j.sweep_release_estimates, 300),
        Job("schedules-expire-holds", sweep_expired_holds, 60),
        Job("schedules-extend-capacity", extend_capacity_horizon, 6 * 3600),
        Job("purge-idempotency-keys", purge_idempotency_keys, 3600),
    ]


def _schedule(ctx: JobContext, settings: Settings) -> BackgroundScheduler:
    sched = BackgroundScheduler(
        timezone=UTC,
        # APScheduler's default grace is 1 s; a sweeper that runs late should still run once.
        job_defaults={"misfire_grace_time": 30, "coalesce": True, "max_instances": 1},
    )
    for job in jobs(settings):
        sched.add_job(
            job.func,
            IntervalTrigger(seconds=job.seconds),
            args=[ctx],
            id=job.id,
            next_run_time=datetime.now(UTC),
        )
    return sched


def _listen_for_sms(settings: Settings, ctx: JobContext, stop: threading.Event) -> None:
    """Wake the dispatcher on NOTIFY (sent by the transaction that queued a text)."""
    import psycopg

    from tracker.services.alerts import SMS_CHANNEL

    url = make_url(settings.database_url).set(drivername="postgresql")
    while not stop.is_set():
        try:
            with psycopg.connect(url.render_as_string(hide_password=False), autocommit=True) as c:
                c.execute(f"LISTEN {SMS_CHANNEL}")
                while not stop.is_set():
                    for _ in c.notifies(timeout=1.0, stop_after=1):
                        ctx.dispatcher.wake()
        except Exception:
            log.exception("SMS listener lost its connection; retrying")
            stop.wait(2)


def run(settings: Settings, stop: threading.Event, *, clock: Clock | None = None) -> None:
    """Run until ``stop`` is set: lead when possible, otherwise wait as a standby."""
    engine = make_engine(settings.database_url)
    ctx = JobContext(
        make_session_factory(engine),
        clock or SystemClock(),
        settings,
        name=f"{socket.gethostname()}:{os.getpid()}",
    )
    if settings.is_sqlite:
        sched = _schedule(ctx, settings)
        sched.start()
        log.info("worker started (SQLite mode, single worker)")
        stop.wait()
        sched.shutdown(wait=True)
        return
    lock_engine = make_engine(settings.database_url, poolclass=NullPool)
    while not stop.is_set():
        with lock_engine.connect() as conn:
            if not conn.scalar(text("SELECT pg_try_advisory_lock(:k)"), {"k": LEADER_LOCK}):
                conn.rollback()
                log.info("standby: another worker leads")
                stop.wait(3)
                continue
            conn.commit()
            log.info("worker is leader")
            sched = _schedule(ctx, settings)
            sched.start()
            stepping_down = threading.Event()
            listener = threading.Thread(
                target=_listen_for_sms, args=(settings, ctx, stepping_down), daemon=True
            )
            listener.start()
            try:
                while not stop.wait(2):
                    conn.execute(text("SELECT 1"))  # heartbeat; raises if the session died
                    conn.commit()
            except Exception:
                log.exception("lost the leader connection; stepping down")
            finally:
                stepping_down.set()
                sched.shutdown(wait=True)
                listener.join(timeout=5)
    engine.dispose()
