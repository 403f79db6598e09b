"""Thin, idempotent job bodies. Each opens a unit of work and receives ``now``."""

from __future__ import annotations

import logging
import os
import socket
from collections.abc import Callable
from dataclasses import dataclass
from dataclasses import field
from datetime import timedelta
from functools import wraps

from sqlalchemy.orm import Session
from sqlalchemy.orm import sessionmaker

from tracker.adapters.sms import SmsSender
from tracker.adapters.sms import make_sms_sender
from tracker.clock import Clock
from tracker.config import Settings
from tracker.models import WorkerHeartbeat
from tracker.services.sms import Dispatcher
from tracker.unit_of_work import UnitOfWork

log = logging.getLogger(__name__)


@dataclass
class JobContext:
    session_factory: sessionmaker[Session]
    clock: Clock
    settings: Settings
    name: str
    sms: SmsSender | None = None
    dispatcher: Dispatcher = field(init=False)

    def __post_init__(self) -> None:
        if self.sms is None:
            self.sms = make_sms_sender(self.settings)
        self.dispatcher = Dispatcher(lambda: dispatch_pass(self))

    def uow(self) -> UnitOfWork:
        return UnitOfWork(self.session_factory)


def logged(func: Callable[[JobContext], object]) -> Callable[[JobContext], None]:
    """A failing job logs and returns; the next run tries again (every job is idempotent)."""

    @wraps(func)
    def wrapper(ctx: JobContext) -> None:
        try:
            func(ctx)
        except Exception:
            log.exception("job %s failed", func.__name__)

    return wrapper


def record_heartbeat(ctx: JobContext) -> None:
    """Write this worker's heartbeat (read by /readyz)."""
    try:
        with ctx.uow() as uow:
            beat = uow.session.get(WorkerHeartbeat, "leader")
            now = ctx.clock.now()
            if beat is None:
                uow.session.add(
                    WorkerHeartbeat(
                        name="leader", beat_at=now, host=socket.gethostname(), pid=os.getpid()
                    )
                )
            else:
                beat.beat_at, beat.host, beat.pid = now, socket.gethostname(), os.getpid()
            uow.commit()
    except Exception:
        log.exception("heartbeat failed")


def dispatch_pass(ctx: JobContext) -> object:
    """One pass of the SMS outbox dispatcher (recover, verify, send)."""
    from tracker.services import sms

    assert ctx.sms is not None
    report = sms.dispatch(
        session_factory=ctx.session_factory,
        sender=ctx.sms,
        now=ctx.clock.now,
        worker=ctx.name,
        status_callback=ctx.settings.public_base_url.rstrip("/") + "/twilio/status",
        lease=timedelta(seconds=ctx.settings.sms_sending_lease_seconds),
    )
    if report.sent or report.failed or report.to_verify or report.recovered:
        log.info("sms dispatch: %s", report)
    return report


@logged
def dispatch_sms(ctx: JobContext) -> None:
    """Send due SMS; NOTIFY wake-ups call the same dispatcher between polls."""
    ctx.dispatcher.wake()


@logged
def sweep_alerts(ctx: JobContext) -> None:
    """Warn and alert on handoff deadlines, then climb ladders whose rung timed out."""
    from tracker.services import alerts
    from tracker.services import deadlines

    with ctx.uow() as uow:
        deadlines.sweep_deadlines(uow=uow, now=ctx.clock.now())
    with ctx.uow() as uow:
        alerts.sweep_escalations(uow=uow, now=ctx.clock.now())


@logged
def sweep_silent_loggers(ctx: JobContext) -> None:
    """Alarm on loggers that stopped reporting."""
    from tracker.services import readings

    with ctx.uow() as uow:
        readings.sweep_silent_loggers(uow=uow, now=ctx.clock.now())


@logged
def rederive_shipment_deadlines(ctx: JobContext) -> None:
    """Pick up plan changes (pickup, delivery, shipper charge) on shipments still under way."""
    from tracker.services import deadlines

    with ctx.uow() as uow:
        deadlines.rederive_open_shipments(uow=uow, now=ctx.clock.now())


@logged
def sweep_release_estimates(ctx: JobContext) -> None:
    """Re-estimate open lots' release (late results move it) against the planned LD start."""
    from tracker.services import quality

    with ctx.uow() as uow:
        quality.sweep_release_estimates(uow=uow, now=ctx.clock.now())


@logged
def run_logger_imports(ctx: JobContext) -> None:
    """Import uploaded logger files, committing progress the upload page shows."""
    from tracker.services import readings

    with ctx.uow() as uow:
        queued = readings.queued_imports(uow.session)
    for import_id in queued:
        readings.run_import(
            session_factory=ctx.session_factory, import_id=import_id, now=ctx.clock.now
        )


def purge_idempotency_keys(ctx: JobContext) -> None:
    """Delete Idempotency-Keys older than their 24 hours."""
    from tracker.services.idempotency import purge_expired

    try:
        with ctx.uow() as uow:
            purged = purge_expired(uow=uow, now=ctx.clock.now())
            uow.commit()
        if purged:
            log.info("purged %d expired idempotency keys", purged)
    except Exception:
        log.exception("idempotency key purge failed")
