"""The audit trail as people search it: by patient (pseudonym), item, user, site and time.

Who sees what: administrators see every entry. QA and coordinators see the entries recorded
at their sites, and, when they name a patient whose orders they may see, that patient's whole
trail wherever it was recorded. Nobody else opens the audit trail.
"""

from __future__ import annotations

from dataclasses import asdict
from dataclasses import dataclass
from datetime import UTC
from datetime import date
from datetime import datetime
from datetime import time
from datetime import timedelta
from typing import Any

from sqlalchemy import ColumnElement
from sqlalchemy import Select
from sqlalchemy import and_
from sqlalchemy import false
from sqlalchemy import func
from sqlalchemy import or_
from sqlalchemy import select
from sqlalchemy.orm import Session
from sqlalchemy.orm import aliased

from schedules.models import JourneyPlan
from tracker.domain.access import Role
from tracker.domain.errors import TrackerError
from tracker.models import Alert
from tracker.models import AuditEntry
from tracker.models import CustodyEvent
from tracker.models import Deviation
from tracker.models import Item
from tracker.models import Patient
from tracker.models import Shipment
from tracker.models import Site
from tracker.models import StepRun
from tracker.models import TherapyOrder
from tracker.models import User
from tracker.services.principals import Principal
from tracker.services.principals import scope_orders

AUDIT_ROLES = frozenset({Role.admin, Role.qa, Role.coordinator})
PAGE_SIZE = 100
# Exports are for a period, not the whole database: past this many rows, narrow the filter.
EXPORT_LIMIT = 20_000


def may_read_audit(principal: Principal) -> bool:
    return principal.is_admin or any(role in AUDIT_ROLES for role, _ in principal.grants)


def require_audit_reader(principal: Principal) -> None:
    if principal.user_id is None or not may_read_audit(principal):
        raise TrackerError("forbidden", "only QA, coordinators and administrators read the audit")


@dataclass(frozen=True)
class AuditFilters:
    patient: str = ""
    item: str = ""
    user: str = ""
    site: str = ""
    action: str = ""
    start: str = ""  # ISO dates (UTC days), inclusive
    end: str = ""
    page: int = 1

    @classmethod
    def from_args(cls, args: Any) -> AuditFilters:
        def text(name: str) -> str:
            return str(args.get(name) or "").strip()[:64]

        page = str(args.get("page") or "1")
        return cls(
            patient=text("patient"),
            item=text("item"),
            user=text("user"),
            site=text("site"),
            action=text("action"),
            start=text("from") or text("start"),
            end=text("to") or text("end"),
            page=max(1, int(page)) if page.isdigit() else 1,
        )

    def params(self, **overrides: Any) -> dict[str, Any]:
        values = asdict(self)
        values["from"] = values.pop("start")
        values["to"] = values.pop("end")
        values.update(overrides)
        return {k: v for k, v in values.items() if v and not (k == "page" and v == 1)}

    def described(self) -> str:
        parts = [f"{k}={v}" for k, v in self.params().items() if k != "page"]
        return ", ".join(parts) or "no filter"


def parse_day(value: str, name: str) -> date | None:
    """A UTC day from a filter (YYYY-MM-DD), or None when empty; refuses anything else."""
    if not value:
        return None
    try:
        day = date.fromisoformat(value)
    except ValueError as exc:
        raise TrackerError("invalid_request", f"{name} must be a date (YYYY-MM-DD)") from exc
    if not 1900 <= day.year <= 2999:
        raise TrackerError("invalid_request", f"{name} must be a date from 1900 to 2999")
    return day


def _patient_entities(
    session: Session, principal: Principal, pseudonym: str
) -> ColumnElement[bool]:
    """Every (entity type, id) pair the audit trail uses for one patient's records."""
    patient = session.scalar(select(Patient).where(Patient.public_id == pseudonym))
    if patient is None:
        return false()
    orders = list(
        session.scalars(
            scope_orders(select(TherapyOrder), principal).where(
                TherapyOrder.patient_id == patient.id
            )
        )
    )
    if not orders and not principal.is_admin:
        return false()
    order_ids = [o.id for o in orders]
    pairs: dict[str, set[str]] = {
        "patient": {patient.public_id},
        "therapy_order": {o.public_id for o in orders},
    }
    items = set(session.scalars(select(Item.public_id).where(Item.order_id.in_(order_ids))))
    pairs["item"] = items
    pairs["qa_disposition"] = items
    pairs["shipment"] = set(
        session.scalars(select(Shipment.public_id).where(Shipment.order_id.in_(order_ids)))
    )
    pairs["journey_plan"] = set(
        session.scalars(select(JourneyPlan.public_id).where(JourneyPlan.order_id.in_(order_ids)))
    )
    pairs["alert"] = {
        str(i) for i in session.scalars(select(Alert.id).where(Alert.order_id.in_(order_ids)))
    }
    pairs["custody_event"] = {
        str(i)
        for i in session.scalars(
            select(CustodyEvent.id).where(CustodyEvent.order_id.in_(order_ids))
        )
    }
    pairs.update(_extra_patient_entities(session, order_ids))
    # Certificate sign-offs are recorded as "<order>@<event count>".
    signoffs = [
        and_(
            AuditEntry.entity_type == "coi_certificate",
            AuditEntry.entity_id.like(f"{o.public_id}@%"),
        )
        for o in orders
    ]
    return or_(
        *(
            and_(AuditEntry.entity_type == kind, AuditEntry.entity_id.in_(sorted(ids)))
            for kind, ids in pairs.items()
            if ids
        ),
        *signoffs,
    )


def _extra_patient_entities(session: Session, order_ids: list[int]) -> dict[str, set[str]]:
    """Scanning's records: deviations (by public id) and step runs (answers, signatures)."""
    return {
        "deviation": set(
            session.scalars(select(Deviation.public_id).where(Deviation.order_id.in_(order_ids)))
        ),
        "step_run": {
            str(i)
            for i in session.scalars(select(StepRun.id).where(StepRun.order_id.in_(order_ids)))
        },
    }


def _item_entities(session: Session, public_id: str) -> ColumnElement[bool]:
    return and_(
        AuditEntry.entity_type.in_(("item", "qa_disposition")), AuditEntry.entity_id == public_id
    )


def audit_query(
    session: Session, principal: Principal, filters: AuditFilters
) -> Select[AuditEntry, User, Site]:
    """The filtered, scoped audit query (newest first), for the page and for exports."""
    require_audit_reader(principal)
    actor = aliased(User)
    stmt = (
        select(AuditEntry, actor, Site)
        .outerjoin(actor, actor.id == AuditEntry.actor_user_id)
        .outerjoin(Site, Site.id == AuditEntry.site_id)
    )
    if filters.patient:
        stmt = stmt.where(_patient_entities(session, principal, filters.patient))
    elif principal.site_ids is not None:
        stmt = stmt.where(AuditEntry.site_id.in_(principal.site_ids))
    if filters.item:
        stmt = stmt.where(_item_entities(session, filters.item))
    if filters.user:
        stmt = stmt.where(actor.username == filters.user)
    if filters.site:
        stmt = stmt.where(Site.code == filters.site)
    if filters.action:
        stmt = stmt.where(AuditEntry.action == filters.action)
    first, last = parse_day(filters.start, "from"), parse_day(filters.end, "to")
    if first:
        stmt = stmt.where(AuditEntry.at >= datetime.combine(first, time(0), tzinfo=UTC))
    if last:
        stmt = stmt.where(
            AuditEntry.at < datetime.combine(last + timedelta(days=1), time(0), tzinfo=UTC)
        )
    return stmt.order_by(AuditEntry.at.desc(), AuditEntry.id.desc())


def entry_dict(entry: AuditEntry, actor: User | None, site: Site | None) -> dict[str, Any]:
    return {
        "id": entry.id,
        "at": entry.at,
        "actor": actor.full_name if actor else None,
        "username": actor.username if actor else None,
        "action": entry.action,
        "entity_type": entry.entity_type,
        "entity_id": entry.entity_id,
        "site": site.code if site else None,
        "site_timezone": site.timezone if site else "UTC",
        "changes": entry.changes or {},
        "reason": entry.reason,
    }


def audit_page(session: Session, principal: Principal, filters: AuditFilters) -> dict[str, Any]:
    """One page of matching entries, the total, and the choices for the filter form."""
    stmt = audit_query(session, principal, filters)
    total = session.scalar(select(func.count()).select_from(stmt.order_by(None).subquery())) or 0
    pages = max(1, -(-total // PAGE_SIZE))
    page = min(filters.page, pages)
    rows = session.execute(stmt.limit(PAGE_SIZE).offset((page - 1) * PAGE_SIZE)).all()
    return {
        "entries": [entry_dict(e, u, s) for e, u, s in rows],
        "total": total,
        "page": page,
        "pages": pages,
        "actions": list(
            session.scalars(select(AuditEntry.action).distinct().order_by(AuditEntry.action))
        ),
        "sites": _sites(session, principal),
    }


def _sites(session: Session, principal: Principal) -> list[tuple[str, str]]:
    stmt = select(Site.code, Site.name).order_by(Site.name)
    if principal.site_ids is not None:
        stmt = stmt.where(Site.id.in_(principal.site_ids))
    return [(c, n) for c, n in session.execute(stmt)]


def export_rows(
    session: Session, principal: Principal, filters: AuditFilters
) -> list[dict[str, Any]]:
    """Every matching entry for an export (newest first), refusing oversized exports."""
    stmt = audit_query(session, principal, filters)
    rows = session.execute(stmt.limit(EXPORT_LIMIT + 1)).all()
    if len(rows) > EXPORT_LIMIT:
        raise TrackerError(
            "invalid_request",
            f"more than {EXPORT_LIMIT} entries match; narrow the filter (dates, site, patient)",
        )
    return [entry_dict(e, u, s) for e, u, s in rows]
