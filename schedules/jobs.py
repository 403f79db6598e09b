"""Schedules job bodies: thin, idempotent sweepers (registered in tracker/scheduler.py)."""

from __future__ import annotations

import logging

from schedules import service
from tracker.jobs import JobContext

log = logging.getLogger(__name__)


def sweep_expired_holds(ctx: JobContext) -> None:
    """Release tentative holds whose time has passed, a batch per run."""
    try:
        with ctx.uow() as uow:
            expired = service.expire_holds(uow=uow, now=ctx.clock.now())
            uow.commit()
        if expired:
            log.info("expired %d tentative holds", len(expired))
    except Exception:
        log.exception("sweeping expired holds failed")


def extend_capacity_horizon(ctx: JobContext) -> None:
    """Keep a year and more of capacity windows expanded ahead of today."""
    try:
        with ctx.uow() as uow:
            added = service.extend_capacity(uow=uow, now=ctx.clock.now())
            uow.commit()
        if added:
            log.info("expanded %d capacity windows", added)
    except Exception:
        log.exception("extending the capacity horizon failed")
