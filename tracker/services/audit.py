"""Append-only audit trail: who, what (old -> new), when, why."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import date
from datetime import datetime
from typing import Any

from sqlalchemy.orm import Session

from tracker.clock import require_aware
from tracker.models import AuditEntry
from tracker.services.rows import insert_attached


def _jsonable(value: Any) -> Any:
    if isinstance(value, datetime | date):
        return value.isoformat()
    return value


def diff(old: Mapping[str, Any], new: Mapping[str, Any]) -> dict[str, list[Any]]:
    """Fields that changed, as ``{name: [old, new]}``."""
    keys = sorted(set(old) | set(new))
    return {
        k: [_jsonable(old.get(k)), _jsonable(new.get(k))] for k in keys if old.get(k) != new.get(k)
    }


def record_audit(
    session: Session,
    *,
    now: datetime,
    actor_user_id: int | None,
    action: str,
    entity_type: str,
    entity_id: str,
    changes: Mapping[str, Any] | None = None,
    reason: str | None = None,
    site_id: int | None = None,
) -> AuditEntry:
    """Write one audit row in the caller's transaction (now: it is append-only)."""
    entry = AuditEntry(
        at=require_aware(now),
        actor_user_id=actor_user_id,
        action=action,
        entity_type=entity_type,
        entity_id=entity_id,
        changes={k: v for k, v in (changes or {}).items()},
        reason=reason,
        site_id=site_id,
    )
    return insert_attached(session, entry)
