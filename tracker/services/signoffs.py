"""Decisions that carry an electronic signature: QA dispositions after an excursion, and the
periodic review of the audit trail (EU GMP Annex 11 §9: "regularly reviewed").

Order of work in both: authority first, then the signature ceremony (a wrong password is
counted and committed by ``sign_record`` before anything else is in the session), then the
record. Any refusal after the signature rolls the signature back with the record.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from argon2 import PasswordHasher
from sqlalchemy import select

from tracker.clock import require_aware
from tracker.config import Settings
from tracker.domain.access import Role
from tracker.domain.alerting import Decision
from tracker.domain.errors import TrackerError
from tracker.models import AuditEntry
from tracker.models import Item
from tracker.models import QaDisposition
from tracker.models import Signature
from tracker.models import TherapyOrder
from tracker.services import alerts
from tracker.services.audit import record_audit
from tracker.services.auth import sign_record
from tracker.services.certificates import disposition_content
from tracker.services.principals import Principal
from tracker.unit_of_work import UnitOfWork

REVIEW_ROLES = frozenset({Role.qa})


def _require_qa_for_item(session: Any, principal: Principal, item_public_id: str) -> None:
    """The same authority rule as record_disposition, checked before the ceremony."""
    item = session.scalar(select(Item).where(Item.public_id == item_public_id))
    if item is None:
        raise TrackerError("not_found", f"no item {item_public_id}")
    order = session.get(TherapyOrder, item.order_id) if item.order_id else None
    sites = {s for s in (item.site_id, order.manufacturing_site_id if order else None) if s}
    if not principal.is_admin and not any(
        principal.has_role_at(frozenset({Role.qa}), s) for s in sites
    ):
        raise TrackerError("forbidden", "only QA of the bag's site or manufacturer decides")


def record_signed_disposition(
    *,
    uow: UnitOfWork,
    hasher: PasswordHasher,
    settings: Settings,
    principal: Principal,
    item_public_id: str,
    decision: Decision,
    comment: str,
    password: str,
    now: datetime,
    excursion_id: int | None = None,
) -> tuple[QaDisposition, Signature]:
    """QA's accept / quarantine / discard for a bag, signed with the meaning 'approval'."""
    now = require_aware(now)
    if principal.user_id is None:
        raise TrackerError("forbidden", "only a person can record a disposition")
    cleaned = (comment or "").strip()
    if not cleaned:
        raise TrackerError("reason_required", "a QA disposition needs a comment")
    _require_qa_for_item(uow.session, principal, item_public_id)
    # The signed content is exactly what the disposition row will hold (decided_at = now).
    content = {
        "item": item_public_id,
        "decision": Decision(decision).value,
        "comment": cleaned[:2000],
        "excursion_id": excursion_id,
        "decided_at": require_aware(now).isoformat(timespec="microseconds").replace("+00:00", "Z"),
    }
    signature = sign_record(
        uow=uow,
        hasher=hasher,
        settings=settings,
        user_id=principal.user_id,
        password=password,
        meaning="approval",
        record_type="qa_disposition",
        record_id=item_public_id,
        content=content,
        now=now,
    )
    row = alerts.record_disposition(
        uow=uow,
        principal=principal,
        item_public_id=item_public_id,
        decision=decision,
        comment=cleaned,
        excursion_id=excursion_id,
        now=now,
    )
    assert disposition_content(row, item_public_id) == content
    return row, signature


@dataclass(frozen=True)
class ReviewScope:
    """What a reviewer looked at: the filter and a digest of the exact entries shown."""

    filters: str
    entries: int
    first_at: str | None
    last_at: str | None
    digest: str


def review_scope(filters: str, rows: list[dict[str, Any]]) -> ReviewScope:
    """Digest of the reviewed entries (id, time, action, record, changes, reason)."""
    listing = [
        [
            r["id"],
            r["at"].isoformat(),
            r["action"],
            r["entity_type"],
            r["entity_id"],
            r["changes"],
            r["reason"],
        ]
        for r in rows
    ]
    body = json.dumps(listing, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    times = [r["at"] for r in rows]
    return ReviewScope(
        filters=filters,
        entries=len(rows),
        first_at=min(times).isoformat() if times else None,
        last_at=max(times).isoformat() if times else None,
        digest=hashlib.sha256(body.encode()).hexdigest(),
    )


def sign_audit_review(
    *,
    uow: UnitOfWork,
    hasher: PasswordHasher,
    settings: Settings,
    principal: Principal,
    scope: ReviewScope,
    comment: str,
    password: str,
    now: datetime,
) -> Signature:
    """QA signs that they reviewed these audit entries (meaning 'review'), with a comment."""
    now = require_aware(now)
    if principal.user_id is None or not (
        principal.is_admin or any(role in REVIEW_ROLES for role, _ in principal.grants)
    ):
        raise TrackerError("forbidden", "only QA signs audit-trail reviews")
    cleaned = (comment or "").strip()
    if not cleaned:
        raise TrackerError("reason_required", "say what the review found (a comment)")
    record_id = f"review-{now:%Y%m%dT%H%M%S%fZ}-{principal.user_id}"
    content = {
        "filters": scope.filters,
        "entries": scope.entries,
        "first_at": scope.first_at,
        "last_at": scope.last_at,
        "digest": scope.digest,
        "comment": cleaned,
    }
    signature = sign_record(
        uow=uow,
        hasher=hasher,
        settings=settings,
        user_id=principal.user_id,
        password=password,
        meaning="review",
        record_type="audit_review",
        record_id=record_id,
        content=content,
        now=now,
    )
    record_audit(
        uow.session,
        now=now,
        actor_user_id=principal.user_id,
        action="audit_review",
        entity_type="audit_review",
        entity_id=record_id,
        changes={k: [None, v] for k, v in content.items() if k != "comment"}
        | {"signature_id": [None, signature.id]},
        reason=cleaned,
    )
    return signature


def reviews(session: Any, *, limit: int = 50) -> list[dict[str, Any]]:
    """Signed audit-trail reviews, newest first."""
    rows = session.execute(
        select(AuditEntry, Signature)
        .join(
            Signature,
            (Signature.record_type == "audit_review")
            & (Signature.record_id == AuditEntry.entity_id),
        )
        .where(AuditEntry.action == "audit_review")
        .order_by(AuditEntry.at.desc())
        .limit(limit)
    )
    out = []
    for entry, signature in rows:
        changes = entry.changes or {}

        def new(key: str, changes: dict[str, Any] = changes) -> Any:
            value = changes.get(key)
            return value[1] if isinstance(value, list) else value

        out.append(
            {
                "record_id": entry.entity_id,
                "signed_at": signature.signed_at,
                "printed_name": signature.printed_name,
                "meaning": signature.meaning,
                "filters": new("filters"),
                "entries": new("entries"),
                "first_at": new("first_at"),
                "last_at": new("last_at"),
                "digest": new("digest"),
                "comment": entry.reason,
                "record_hash": signature.record_hash,
            }
        )
    return out


def disposition_signatures(session: Any, alert: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The latest signed QA disposition per exposed bag of an alert's excursion."""
    excursion = alert.get("excursion") or {}
    bags = [b["public_id"] for b in excursion.get("bags", [])]
    if not bags:
        return {}
    out: dict[str, dict[str, Any]] = {}
    for s in session.scalars(
        select(Signature)
        .where(Signature.record_type == "qa_disposition", Signature.record_id.in_(bags))
        .order_by(Signature.signed_at, Signature.id)
    ):
        out[s.record_id] = {
            "printed_name": s.printed_name,
            "meaning": s.meaning,
            "signed_at": s.signed_at,
            "record_hash": s.record_hash,
        }
    return out
