"""Thin, idempotent job bodies. Each opens a unit of work and receives ``now``."""

from __future__ import annotations

import logging
import os
import socket
from dataclasses import dataclass

from sqlalchemy.orm import Session
from sqlalchemy.orm import sessionmaker

from tracker.clock import Clock
from tracker.config import Settings
from tracker.models import WorkerHeartbeat
from tracker.unit_of_work import UnitOfWork

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class JobContext:
    session_factory: sessionmaker[Session]
    clock: Clock
    settings: Settings
    name: str

    def uow(self) -> UnitOfWork:
        return UnitOfWork(self.session_factory)


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
