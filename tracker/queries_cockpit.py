"""The dashboard's reads: every active journey with its clock, today's work, the inbox.

Built for thousands of journeys: each function runs a fixed number of statements whatever
the number of orders (column selects joined to one scoped subquery, never per-row loads,
never relationship loaders whose IN lists are chunked by size). Everything after the
statements is plain Python over the rows they returned.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from datetime import UTC
from datetime import date
from datetime import datetime
from datetime import timedelta
from typing import Any

from sqlalchemy import Select
from sqlalchemy import case
from sqlalchemy import func
from sqlalchemy import literal
from sqlalchemy import or_
from sqlalchemy import select
from sqlalchemy.orm import Session
from sqlalchemy.orm import aliased

from schedules.models import JourneyPlan
from schedules.models import PlanDeadline
from schedules.models import PlanStepRow
from tracker.clock import to_local
from tracker.domain.access import Role
from tracker.domain.alerting import format_duration
from tracker.models import Alert
from tracker.models import CustodyEvent
from tracker.models import Deviation
from tracker.models import HandoffDeadline
from tracker.models import Item
from tracker.models import Patient
from tracker.models import ProductProfile
from tracker.models import Scan
from tracker.models import Shipment
from tracker.models import Site
from tracker.models import TherapyOrder
from tracker.models import User
from tracker.queries import coi_display
from tracker.queries import journey_stage
from tracker.services import alerts as alert_service
from tracker.services.principals import Principal
from tracker.services.principals import scope_orders

# Risk of a journey, worst first. A deadline without its own warning time counts as at risk
# this long before it is due.
RISKS = ("overdue", "at_risk", "on_track", "no_clock")
RISK_LABELS = {
    "overdue": "overdue",
    "at_risk": "at risk",
    "on_track": "on track",
    "no_clock": "no deadline",
}
DEFAULT_WARNING = timedelta(hours=4)
SEVERITY_RANK = {"critical": 0, "alarm": 1, "warning": 2, "info": 3}
PAGE_SIZE = 50
# States that put a bag on "today's" boards, and what the board calls them.
TODAY_EVENTS = {"collected": "collection", "infusing": "infusion", "infused": "infusion"}


def visible_active_order_ids(principal: Principal) -> Any:
    """A subquery of the ids of active orders the principal may see (the orders page scope)."""
    return (
        scope_orders(select(TherapyOrder), principal)
        .where(TherapyOrder.status == "active")
        .with_only_columns(TherapyOrder.id)
        .scalar_subquery()
    )


def _visible_order_ids(principal: Principal) -> Any:
    return (
        scope_orders(select(TherapyOrder), principal)
        .with_only_columns(TherapyOrder.id)
        .scalar_subquery()
    )


@dataclass(frozen=True)
class Filters:
    risk: str = ""
    stage: str = ""
    q: str = ""
    page: int = 1

    @classmethod
    def from_args(cls, args: Any) -> Filters:
        risk = args.get("risk", "")
        page = args.get("page", "1")
        return cls(
            risk=risk if risk in RISKS else "",
            stage=(args.get("stage") or "")[:40],
            q=(args.get("q") or "").strip()[:40],
            page=max(1, int(page)) if str(page).isdigit() else 1,
        )

    def params(self, **overrides: Any) -> dict[str, Any]:
        """Query-string values for links that keep the other filters (page 1 is implied)."""
        out: dict[str, Any] = {"risk": self.risk, "stage": self.stage, "q": self.q}
        out["page"] = self.page
        out.update(overrides)
        return {k: v for k, v in out.items() if v and not (k == "page" and v == 1)}


def _risk(
    due_at: datetime | None,
    warn_at: datetime | None,
    now: datetime,
    alarms: int,
    deviations: int = 0,
) -> tuple[str, str]:
    """The vein-to-vein clock's colour and the reason for it."""
    if due_at is not None and due_at <= now:
        return "overdue", "deadline passed"
    warn = warn_at if warn_at is not None else (due_at - DEFAULT_WARNING if due_at else None)
    if warn is not None and warn <= now:
        return "at_risk", "deadline close"
    if deviations:
        # An open deviation blocks the order's next custody step until QA closes it.
        return "at_risk", "open deviation"
    if alarms:
        return "at_risk", "open alarm"
    if due_at is None:
        return "no_clock", "no open deadline"
    return "on_track", "on time"


def _time_left(due_at: datetime | None, now: datetime) -> str:
    if due_at is None:
        return ""
    left = due_at - now
    if left.total_seconds() < 0:
        return f"{format_duration(-left)} late"
    return format_duration(left)


def active_journeys(
    session: Session, principal: Principal, *, now: datetime
) -> list[dict[str, Any]]:
    """Every active journey the principal may see, with stage, next deadline and risk.

    Eight statements, whatever the number of journeys.
    """
    ids = visible_active_order_ids(principal)
    treatment = aliased(Site)
    orders = session.execute(
        select(
            TherapyOrder.id,
            TherapyOrder.public_id,
            TherapyOrder.coi,
            TherapyOrder.created_at,
            Patient.public_id.label("patient"),
            ProductProfile.code.label("product_code"),
            ProductProfile.name.label("product"),
            treatment.name.label("treatment_site"),
            treatment.timezone.label("treatment_tz"),
        )
        .join(Patient, Patient.id == TherapyOrder.patient_id)
        .join(ProductProfile, ProductProfile.id == TherapyOrder.product_profile_id)
        .join(treatment, treatment.id == TherapyOrder.treatment_site_id)
        .where(TherapyOrder.id.in_(ids))
    ).all()
    items: dict[int, list[dict[str, Any]]] = defaultdict(list)
    for order_id, kind, state, site_kind in session.execute(
        select(Item.order_id, Item.kind, Item.state, Site.kind)
        .outerjoin(Site, Site.id == Item.site_id)
        .where(Item.order_id.in_(ids))
    ):
        if order_id is not None:
            items[order_id].append({"kind": kind, "state": state, "site_kind": site_kind})
    deadlines: dict[int, Any] = {row.order_id: row for row in session.execute(_next_deadlines(ids))}
    # Without an open handoff deadline, the live plan's next step still has a date.
    planned = {row.order_id: row for row in session.execute(_next_plan_steps(ids, now))}
    alarms: dict[int, tuple[int, int]] = {
        order_id: (count, worst)
        for order_id, count, worst in session.execute(
            select(
                Alert.order_id,
                func.count(),
                func.min(case(SEVERITY_RANK, value=Alert.severity, else_=3)),
            )
            .where(Alert.status == "open", Alert.order_id.in_(ids))
            .group_by(Alert.order_id)
        )
    }
    deviations = {
        order_id: count
        for order_id, count in session.execute(
            select(Deviation.order_id, func.count())
            .where(Deviation.status == "open", Deviation.order_id.in_(ids))
            .group_by(Deviation.order_id)
        )
    }
    clocks = {
        order_id: (last, collected)
        for order_id, last, collected in session.execute(
            select(
                CustodyEvent.order_id,
                func.max(CustodyEvent.occurred_at),
                func.min(
                    case(
                        (CustodyEvent.to_state == "collected", CustodyEvent.occurred_at),
                        else_=None,
                    )
                ).label("collected"),
            )
            .where(CustodyEvent.order_id.in_(ids))
            .group_by(CustodyEvent.order_id)
        )
    }
    out = []
    for o in orders:
        d = deadlines.get(o.id) or planned.get(o.id)
        open_alerts, worst = alarms.get(o.id, (0, 9))
        open_deviations = deviations.get(o.id, 0)
        risk, why = _risk(
            d.due_at if d else None,
            d.warn_at if d else None,
            now,
            int(worst <= 1),
            open_deviations,
        )
        last, collected = clocks.get(o.id, (None, None))
        collected_at = _aware(collected)
        out.append(
            {
                "public_id": o.public_id,
                # Eye-readable form and check character are computed for shown rows only.
                "coi": {"value": o.coi},
                "patient": o.patient,
                "product": o.product,
                "product_code": o.product_code,
                "treatment_site": o.treatment_site,
                "timezone": o.treatment_tz,
                "stage": journey_stage(items.get(o.id, [])),
                "bags": sum(1 for i in items.get(o.id, []) if i["kind"] != "cryoshipper"),
                "deadline": None
                if d is None
                else {
                    "label": d.label,
                    "kind": d.kind,
                    "due_at": d.due_at,
                    "timezone": d.timezone,
                    "site": d.site,
                    "left": _time_left(d.due_at, now),
                    "seconds_left": int((d.due_at - now).total_seconds()),
                    "source": d.source,
                },
                "risk": risk,
                "risk_label": RISK_LABELS[risk],
                "risk_reason": why,
                "open_alerts": open_alerts,
                "open_deviations": open_deviations,
                "worst_alert": next((k for k, v in SEVERITY_RANK.items() if v == worst), None),
                "last_event_at": _aware(last),
                # The vein-to-vein clock runs from the end of apheresis (DOMAIN.md idea 6).
                "v2v_day": (now - collected_at).days + 1 if collected_at else None,
                "created_at": o.created_at,
            }
        )
    out.sort(
        key=lambda j: (
            RISKS.index(j["risk"]),
            j["deadline"]["due_at"] if j["deadline"] else datetime.max.replace(tzinfo=now.tzinfo),
            j["public_id"],
        )
    )
    return out


def _aware(value: Any) -> datetime | None:
    """Aggregates over a UTC column lose the column type on some dialects; restore it."""
    if value is None:
        return None
    when = datetime.fromisoformat(value) if isinstance(value, str) else value
    if not isinstance(when, datetime):
        raise TypeError(f"not a time: {value!r}")
    return when.replace(tzinfo=UTC) if when.tzinfo is None else when


def _next_deadlines(ids: Any) -> Select[Any]:
    """Each order's earliest open handoff deadline (window function: one statement)."""
    ranked = (
        select(
            HandoffDeadline.order_id,
            HandoffDeadline.label,
            HandoffDeadline.kind,
            HandoffDeadline.due_at,
            HandoffDeadline.warn_at,
            Site.timezone,
            Site.name.label("site"),
            literal("handoff").label("source"),
            func.row_number()
            .over(
                partition_by=HandoffDeadline.order_id,
                order_by=(HandoffDeadline.due_at, HandoffDeadline.id),
            )
            .label("rank"),
        )
        .join(Site, Site.id == HandoffDeadline.site_id)
        .where(HandoffDeadline.status == "open", HandoffDeadline.order_id.in_(ids))
        .subquery()
    )
    return select(ranked).where(ranked.c.rank == 1)


def _next_plan_steps(ids: Any, now: datetime) -> Select[Any]:
    """Each order's next future deadline of its live plan (held or booked), one statement.

    Plan deadlines are never marked met (custody events meet the handoff deadlines mirrored
    from them), so only future ones say anything here.
    """
    ranked = (
        select(
            PlanDeadline.order_id,
            PlanDeadline.description.label("label"),
            PlanDeadline.kind,
            PlanDeadline.due_at,
            literal(None).label("warn_at"),
            Site.timezone,
            Site.name.label("site"),
            literal("plan").label("source"),
            func.row_number()
            .over(
                partition_by=PlanDeadline.order_id,
                order_by=(PlanDeadline.due_at, PlanDeadline.id),
            )
            .label("rank"),
        )
        .join(JourneyPlan, JourneyPlan.id == PlanDeadline.plan_id)
        .join(Site, Site.id == PlanDeadline.site_id)
        .where(
            PlanDeadline.status == "open",
            JourneyPlan.status.in_(("held", "booked")),
            PlanDeadline.due_at > now,
            PlanDeadline.order_id.in_(ids),
        )
        .subquery()
    )
    return select(ranked).where(ranked.c.rank == 1)


def summarize(journeys: list[dict[str, Any]], filters: Filters) -> dict[str, Any]:
    """Counts per risk and stage, the filtered journeys and the requested page of them."""
    counts = {r: 0 for r in RISKS}
    stages: dict[str, int] = defaultdict(int)
    for j in journeys:
        counts[j["risk"]] += 1
        stages[j["stage"]] += 1
    q = filters.q.upper()
    chosen = [
        j
        for j in journeys
        if (not filters.risk or j["risk"] == filters.risk)
        and (not filters.stage or j["stage"] == filters.stage)
        and (
            not q
            or q in j["coi"]["value"].upper()
            or q in j["patient"].upper()
            or q in j["public_id"].upper()
        )
    ]
    pages = max(1, -(-len(chosen) // PAGE_SIZE))
    page = min(filters.page, pages)
    rows = chosen[(page - 1) * PAGE_SIZE : page * PAGE_SIZE]
    for row in rows:
        row["coi"] = coi_display(row["coi"]["value"])
    return {
        "total": len(journeys),
        "counts": counts,
        "stages": sorted(stages.items()),
        "matching": len(chosen),
        "rows": rows,
        "page": page,
        "pages": pages,
    }


# --- today -------------------------------------------------------------------------------


def _is_today(instant: datetime | None, tz: str, now: datetime) -> bool:
    return instant is not None and to_local(instant, tz).date() == to_local(now, tz).date()


def today_board(session: Session, principal: Principal, *, now: datetime) -> dict[str, Any]:
    """Today's collections, shipments and infusions, "today" being each site's local day.

    Three statements. Rows are fetched for a two-day margin around now in UTC and kept when
    their local date at their own site is that site's today.
    """
    ids = _visible_order_ids(principal)
    lo, hi = now - timedelta(days=2), now + timedelta(days=2)
    collections: dict[str, dict[str, Any]] = {}
    infusions: dict[str, dict[str, Any]] = {}
    for step in session.execute(
        select(
            PlanStepRow.kind,
            PlanStepRow.starts_at,
            PlanStepRow.ends_at,
            Site.name.label("site"),
            Site.timezone,
            JourneyPlan.status,
            TherapyOrder.public_id,
            TherapyOrder.coi,
            Patient.public_id.label("patient"),
        )
        .join(JourneyPlan, JourneyPlan.id == PlanStepRow.plan_id)
        .join(TherapyOrder, TherapyOrder.id == JourneyPlan.order_id)
        .join(Patient, Patient.id == TherapyOrder.patient_id)
        .join(Site, Site.id == PlanStepRow.site_id)
        .where(
            JourneyPlan.status.in_(("held", "booked")),
            PlanStepRow.kind.in_(("collection", "infusion", "second_dose")),
            PlanStepRow.starts_at < hi,
            PlanStepRow.ends_at > lo,
            TherapyOrder.id.in_(ids),
        )
        .order_by(PlanStepRow.starts_at)
    ):
        if not _is_today(step.starts_at, step.timezone, now):
            continue
        board = collections if step.kind == "collection" else infusions
        board[step.public_id] = {
            "order": step.public_id,
            "coi": coi_display(step.coi),
            "patient": step.patient,
            "site": step.site,
            "timezone": step.timezone,
            "planned_at": step.starts_at,
            "plan_status": step.status,
            "done_at": None,
            "what": "second dose" if step.kind == "second_dose" else step.kind,
        }
    for ev in session.execute(
        select(
            CustodyEvent.to_state,
            CustodyEvent.occurred_at,
            Site.name.label("site"),
            Site.timezone,
            TherapyOrder.public_id,
            TherapyOrder.coi,
            Patient.public_id.label("patient"),
        )
        .join(TherapyOrder, TherapyOrder.id == CustodyEvent.order_id)
        .join(Patient, Patient.id == TherapyOrder.patient_id)
        .join(Site, Site.id == CustodyEvent.site_id)
        .where(
            CustodyEvent.event_type == "transition",
            CustodyEvent.to_state.in_(tuple(TODAY_EVENTS)),
            CustodyEvent.occurred_at.between(lo, hi),
            TherapyOrder.id.in_(ids),
        )
        .order_by(CustodyEvent.occurred_at)
    ):
        if not _is_today(ev.occurred_at, ev.timezone, now):
            continue
        board = collections if TODAY_EVENTS[ev.to_state] == "collection" else infusions
        row = board.setdefault(
            ev.public_id,
            {
                "order": ev.public_id,
                "coi": coi_display(ev.coi),
                "patient": ev.patient,
                "site": ev.site,
                "timezone": ev.timezone,
                "planned_at": None,
                "plan_status": None,
                "what": TODAY_EVENTS[ev.to_state],
            },
        )
        row["done_at"] = ev.occurred_at
        row["done_state"] = ev.to_state
    origin, dest = aliased(Site), aliased(Site)
    shipments = []
    for s in session.execute(
        select(
            Shipment.public_id,
            Shipment.state,
            Shipment.planned_pickup_at,
            Shipment.planned_delivery_at,
            origin.name.label("origin"),
            origin.timezone.label("origin_tz"),
            dest.name.label("destination"),
            dest.timezone.label("destination_tz"),
            TherapyOrder.public_id.label("order"),
            Patient.public_id.label("patient"),
        )
        .join(TherapyOrder, TherapyOrder.id == Shipment.order_id)
        .join(Patient, Patient.id == TherapyOrder.patient_id)
        .join(origin, origin.id == Shipment.origin_site_id)
        .join(dest, dest.id == Shipment.destination_site_id)
        .where(
            TherapyOrder.id.in_(ids),
            (Shipment.state == "picked_up")
            | Shipment.planned_pickup_at.between(lo, hi)
            | Shipment.planned_delivery_at.between(lo, hi),
        )
        .order_by(Shipment.planned_pickup_at, Shipment.id)
    ):
        on_road = s.state == "picked_up"
        pickup = _is_today(s.planned_pickup_at, s.origin_tz, now)
        delivery = _is_today(s.planned_delivery_at, s.destination_tz, now)
        if not (on_road or pickup or delivery):
            continue
        shipments.append(
            {
                "public_id": s.public_id,
                "state": s.state,
                "origin": s.origin,
                "destination": s.destination,
                "order": s.order,
                "patient": s.patient,
                "pickup_at": s.planned_pickup_at,
                "pickup_tz": s.origin_tz,
                "delivery_at": s.planned_delivery_at,
                "delivery_tz": s.destination_tz,
                "on_road": on_road,
            }
        )

    def by_time(row: dict[str, Any]) -> datetime:
        when: datetime = row["planned_at"] or row["done_at"]
        return when

    return {
        "collections": sorted(collections.values(), key=by_time),
        "infusions": sorted(infusions.values(), key=by_time),
        "shipments": shipments,
        "dates": _site_dates(session, principal, now),
    }


def _site_dates(session: Session, principal: Principal, now: datetime) -> list[dict[str, str]]:
    """The local date at each of the principal's sites (they may straddle midnight)."""
    stmt = select(Site.code, Site.name, Site.timezone).order_by(Site.name)
    if principal.site_ids is not None:
        stmt = stmt.where(Site.id.in_(principal.site_ids))
    seen: dict[date, list[str]] = defaultdict(list)
    for code, _name, tz in session.execute(stmt):
        seen[to_local(now, tz).date()].append(code)
    return [{"date": d.isoformat(), "sites": ", ".join(codes)} for d, codes in sorted(seen.items())]


# --- inbox and activity --------------------------------------------------------------------


def inbox(session: Session, principal: Principal, *, limit: int = 8) -> dict[str, Any]:
    """The open alerts (most severe and newest first) and open deviations, with how many there
    are of each. Four statements."""
    visible = alert_service.visible_alerts(principal).where(Alert.status == "open").subquery()
    total = session.scalar(select(func.count()).select_from(visible)) or 0
    rows = session.execute(
        select(
            visible.c.id,
            visible.c.title,
            visible.c.severity,
            visible.c.kind,
            visible.c.raised_at,
            Site.name.label("site"),
            Site.timezone,
            TherapyOrder.public_id.label("order"),
        )
        .join(Site, Site.id == visible.c.site_id)
        .outerjoin(TherapyOrder, TherapyOrder.id == visible.c.order_id)
        .order_by(
            case(SEVERITY_RANK, value=visible.c.severity, else_=3), visible.c.raised_at.desc()
        )
        .limit(limit)
    ).all()
    ids = _visible_order_ids(principal)
    open_deviations = (
        session.scalar(
            select(func.count())
            .select_from(Deviation)
            .where(Deviation.status == "open", Deviation.order_id.in_(ids))
        )
        or 0
    )
    deviation_rows = session.execute(
        select(
            Deviation.public_id,
            Deviation.kind,
            Deviation.description,
            Deviation.opened_at,
            TherapyOrder.public_id.label("order"),
            Patient.public_id.label("patient"),
        )
        .join(TherapyOrder, TherapyOrder.id == Deviation.order_id)
        .join(Patient, Patient.id == TherapyOrder.patient_id)
        .where(Deviation.status == "open", Deviation.order_id.in_(ids))
        .order_by(Deviation.opened_at.desc(), Deviation.id.desc())
        .limit(limit)
    ).all()
    return {
        "open_deviations": open_deviations,
        "deviations": [
            {
                "public_id": d.public_id,
                "kind": d.kind,
                "description": d.description,
                "opened_at": d.opened_at,
                "order": d.order,
                "patient": d.patient,
            }
            for d in deviation_rows
        ],
        "open_alerts": total,
        "alerts": [
            {
                "id": r.id,
                "title": r.title,
                "severity": r.severity,
                "kind": r.kind,
                "raised_at": _aware(r.raised_at),
                "site": r.site,
                "timezone": r.timezone,
                "order": r.order,
            }
            for r in rows
        ],
    }


def recent_activity(
    session: Session, principal: Principal, *, limit: int = 12
) -> list[dict[str, Any]]:
    """The latest custody events and scans (refused ones too) the principal may see, newest
    first. Two statements."""
    ids = _visible_order_ids(principal)
    scans = _recent_scans(session, principal, ids, limit)
    rows = session.execute(
        select(
            CustodyEvent.id,
            CustodyEvent.recorded_at,
            CustodyEvent.event_type,
            CustodyEvent.from_state,
            CustodyEvent.to_state,
            CustodyEvent.occurred_at,
            CustodyEvent.details,
            Site.name.label("site"),
            Site.timezone,
            TherapyOrder.public_id.label("order"),
            Patient.public_id.label("patient"),
            Item.public_id.label("item"),
            User.full_name.label("actor"),
        )
        .join(TherapyOrder, TherapyOrder.id == CustodyEvent.order_id)
        .join(Patient, Patient.id == TherapyOrder.patient_id)
        .outerjoin(Site, Site.id == CustodyEvent.site_id)
        .outerjoin(Item, Item.id == CustodyEvent.item_id)
        .outerjoin(User, User.id == CustodyEvent.actor_user_id)
        .where(CustodyEvent.order_id.in_(ids))
        .order_by(CustodyEvent.recorded_at.desc(), CustodyEvent.id.desc())
        .limit(limit)
    ).all()
    events = [
        {
            "kind": "custody",
            "recorded_at": r.recorded_at,
            "type": r.event_type,
            "from_state": r.from_state,
            "to_state": r.to_state,
            "at": r.occurred_at,
            "site": r.site,
            "timezone": r.timezone or "UTC",
            "order": r.order,
            "patient": r.patient,
            "item": r.item,
            "actor": r.actor,
            "note": (r.details or {}).get("note") or (r.details or {}).get("step"),
        }
        for r in rows
    ]
    merged = sorted([*events, *scans], key=lambda e: e["recorded_at"], reverse=True)
    return merged[:limit]


def _recent_scans(
    session: Session, principal: Principal, ids: Any, limit: int
) -> list[dict[str, Any]]:
    """Scans of visible orders, plus every scan made at the principal's sites (an unknown or
    refused code belongs to no order, and is exactly what a coordinator wants to see)."""
    stmt = (
        select(
            Scan.id,
            Scan.step,
            Scan.result,
            Scan.reason,
            Scan.message,
            Scan.server_at,
            Scan.offline,
            Site.name.label("site"),
            Site.timezone,
            TherapyOrder.public_id.label("order"),
            Patient.public_id.label("patient"),
            User.full_name.label("actor"),
        )
        .outerjoin(
            TherapyOrder, TherapyOrder.id == func.coalesce(Scan.order_id, Scan.scanned_order_id)
        )
        .outerjoin(Patient, Patient.id == TherapyOrder.patient_id)
        .outerjoin(Site, Site.id == Scan.site_id)
        .join(User, User.id == Scan.user_id)
        .order_by(Scan.server_at.desc(), Scan.id.desc())
        .limit(limit)
    )
    if principal.site_ids is not None:
        stmt = stmt.where(
            or_(
                Scan.order_id.in_(ids),
                Scan.scanned_order_id.in_(ids),
                Scan.site_id.in_(principal.site_ids),
            )
        )
    return [
        {
            "kind": "scan",
            "type": "scan",
            "step": r.step,
            "result": r.result,
            "reason": r.reason,
            "message": r.message,
            "at": r.server_at,
            "recorded_at": r.server_at,
            "offline": r.offline,
            "site": r.site,
            "timezone": r.timezone or "UTC",
            "order": r.order,
            "patient": r.patient,
            "item": None,
            "actor": r.actor,
            "note": None,
        }
        for r in session.execute(stmt)
    ]


def deviation_list(
    session: Session, principal: Principal, *, open_only: bool = True, limit: int = 100
) -> list[dict[str, Any]]:
    """Deviations of orders the principal may see, open ones first, and whether the
    principal may close each (QA at one of the order's sites)."""
    ids = _visible_order_ids(principal)
    opener, closer = aliased(User), aliased(User)
    stmt = (
        select(
            Deviation,
            TherapyOrder.public_id.label("order"),
            TherapyOrder.collection_site_id,
            TherapyOrder.manufacturing_site_id,
            TherapyOrder.treatment_site_id,
            Patient.public_id.label("patient"),
            opener.full_name.label("opened_by"),
            closer.full_name.label("closed_by"),
        )
        .join(TherapyOrder, TherapyOrder.id == Deviation.order_id)
        .join(Patient, Patient.id == TherapyOrder.patient_id)
        .outerjoin(opener, opener.id == Deviation.opened_by_id)
        .outerjoin(closer, closer.id == Deviation.closed_by_id)
        .where(Deviation.order_id.in_(ids))
        .order_by(Deviation.status != "open", Deviation.opened_at.desc(), Deviation.id.desc())
        .limit(limit)
    )
    if open_only:
        stmt = stmt.where(Deviation.status == "open")
    qa = frozenset({Role.qa})
    return [
        {
            "public_id": d.public_id,
            "kind": d.kind,
            "status": d.status,
            "description": d.description,
            "opened_at": d.opened_at,
            "opened_by": r.opened_by,
            "closed_at": d.closed_at,
            "closed_by": r.closed_by,
            "close_reason": d.close_reason,
            "order": r.order,
            "patient": r.patient,
            "can_close": d.status == "open"
            and any(
                principal.has_role_at(qa, s)
                for s in (r.collection_site_id, r.manufacturing_site_id, r.treatment_site_id)
            ),
        }
        for r in session.execute(stmt)
        for d in [r.Deviation]
    ]
