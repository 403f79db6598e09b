"""Idempotency keys for API writes: one caller's key maps to one request and its answer.

A first request claims the key (``in_flight``) in its own short transaction; when it has
answered, the answer is stored (``done``) and replayed for every retry within 24 hours. A
retry while the first is still running is told to wait; the same key with a different request
is refused. Answers that say "try again" (409, 429, 5xx) are not kept, so a retry runs anew.

The claim and the stored answer are separate transactions from the work itself: a process
that dies in between leaves an ``in_flight`` claim, which another request may take over once
it is older than ``STALE_AFTER`` (longer than any request may run under gunicorn's timeout).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from datetime import timedelta

from sqlalchemy import delete
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from tracker.clock import require_aware
from tracker.models import IdempotencyKey
from tracker.unit_of_work import UnitOfWork

KEEP_FOR = timedelta(hours=24)
STALE_AFTER = timedelta(seconds=60)


@dataclass(frozen=True)
class Claimed:
    row_id: int


@dataclass(frozen=True)
class Replay:
    status_code: int
    content_type: str
    body: str


@dataclass(frozen=True)
class InFlight:
    retry_after_seconds: int


@dataclass(frozen=True)
class Mismatch:
    pass


Claim = Claimed | Replay | InFlight | Mismatch


def claim(*, uow: UnitOfWork, caller: str, key: str, fingerprint: str, now: datetime) -> Claim:
    """Claim ``key`` for this request, or say what to answer instead (not committed)."""
    now = require_aware(now)
    session = uow.session
    row = IdempotencyKey(
        caller=caller,
        key=key,
        fingerprint=fingerprint,
        state="in_flight",
        created_at=now,
        expires_at=now + KEEP_FOR,
    )
    try:
        with session.begin_nested():
            session.add(row)
            session.flush()
        return Claimed(row.id)
    except IntegrityError:
        pass
    existing = session.scalar(
        select(IdempotencyKey)
        .where(IdempotencyKey.caller == caller, IdempotencyKey.key == key)
        .with_for_update()
    )
    if existing is None:  # released between our insert and this read: claim it now
        return claim(uow=uow, caller=caller, key=key, fingerprint=fingerprint, now=now)
    expired = existing.expires_at <= now
    stale = existing.state == "in_flight" and now - existing.created_at > STALE_AFTER
    if expired or (stale and existing.fingerprint == fingerprint):
        existing.fingerprint, existing.state = fingerprint, "in_flight"
        existing.created_at, existing.expires_at = now, now + KEEP_FOR
        existing.status_code = existing.content_type = existing.body = None
        session.flush()
        return Claimed(existing.id)
    if existing.fingerprint != fingerprint:
        return Mismatch()
    if existing.state == "in_flight":
        return InFlight(retry_after_seconds=1)
    return Replay(
        status_code=existing.status_code or 200,
        content_type=existing.content_type or "application/json",
        body=existing.body or "",
    )


def complete(
    *, uow: UnitOfWork, row_id: int, status_code: int, content_type: str, body: str
) -> None:
    """Store the answer of a claimed request; answers that invite a retry are not kept."""
    session = uow.session
    row = session.get(IdempotencyKey, row_id)
    if row is None:
        return
    if status_code in (409, 429) or status_code >= 500:
        session.delete(row)
    else:
        row.state, row.status_code = "done", status_code
        row.content_type, row.body = content_type, body
    session.flush()


def purge_expired(*, uow: UnitOfWork, now: datetime) -> int:
    """Delete keys past their 24 hours; returns how many."""
    result = uow.session.execute(
        delete(IdempotencyKey).where(IdempotencyKey.expires_at < require_aware(now))
    )
    return int(getattr(result, "rowcount", 0) or 0)
