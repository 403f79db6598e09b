"""Read-only views of schedules for pages, the API and calendar feeds: plain dicts, scoped in SQL.

Nothing here shows patient identity: plans, orders and patients appear by opaque reference.
"""

from __future__ import annotations

from collections import defaultdict
from datetime import date
from datetime import datetime
from datetime import timedelta
from typing import Any

from sqlalchemy import func
from sqlalchemy import select
from sqlalchemy.orm import Session

from schedules import service
from schedules.ics import IcsEvent
from schedules.models import BookingWindow
from schedules.models import Closure
from schedules.models import JourneyPlan
from schedules.models import Notification
from schedules.models import PlanDeadline
from schedules.models import PlanStepRow
from schedules.models import ScheduleResource
from schedules.models import SlotBooking
from schedules.models import WaitlistEntry
from schedules.models import WindowRow
from schedules.planning import DEFAULT_PRIORITY_POLICY
from schedules.planning import STEP_ORDER
from schedules.planning import StepKind
from schedules.planning import knock_on
from schedules.profiles import FIELDS
from schedules.profiles import confirmed_fields
from schedules.profiles import default_values
from schedules.profiles import stored_values
from schedules.profiles import unconfirmed_fields
from schedules.service import PLANNING_ROLES
from schedules.service import rank_entries
from schedules.slots import local_date
from schedules.slots import local_day_bounds
from schedules.slots import zone
from tracker.domain.errors import TrackerError
from tracker.models import Patient
from tracker.models import ProductProfile
from tracker.models import Site
from tracker.models import TherapyOrder
from tracker.services.orders import site_by_code
from tracker.services.principals import Principal
from tracker.services.principals import scope_orders

STEP_LABELS = {
    StepKind.collection: "Apheresis collection",
    StepKind.cryopreservation: "Cryopreservation",
    StepKind.outbound_shipping: "Shipping to manufacturing",
    StepKind.manufacturing: "Manufacturing",
    StepKind.release_testing: "Release testing",
    StepKind.return_shipping: "Return shipping",
    StepKind.lymphodepletion: "Lymphodepletion",
    StepKind.infusion: "Infusion",
    StepKind.second_dose: "Second dose",
}
KIND_LABELS = {
    "apheresis_chair": "Apheresis chairs",
    "manufacturing_slot": "Manufacturing slots",
    "infusion_bed": "Infusion beds",
    "courier": "Courier availability",
}
LIVE = ("held", "booked")


def local(instant: datetime | None, tz: str, fmt: str = "%Y-%m-%d %H:%M") -> str:
    """An instant in a site's wall time (pages only)."""
    if instant is None:
        return ""
    return instant.astimezone(zone(tz)).strftime(fmt)


def visible_site(session: Session, principal: Principal, code: str) -> Site:
    """A site the principal works at (others answer not_found)."""
    site = site_by_code(session, code)
    if not principal.can_see_site(site.id):
        raise TrackerError("not_found", f"no site {code}")
    return site


def visible_order(session: Session, principal: Principal, public_id: str) -> TherapyOrder:
    """An order the principal may see (others answer not_found)."""
    order = session.scalar(
        scope_orders(select(TherapyOrder), principal).where(TherapyOrder.public_id == public_id)
    )
    if order is None:
        raise TrackerError("not_found", f"no order {public_id}")
    return order


# ---------------------------------------------------------------------------------------------
# Overview and calendars


def overview(session: Session, principal: Principal) -> dict[str, Any]:
    """Sites with capacity the principal works at, and visible orders with their plan status."""
    stmt = select(Site).order_by(Site.name)
    sites = [s for s in session.scalars(stmt) if principal.can_see_site(s.id)]
    with_capacity = set(session.scalars(select(ScheduleResource.site_id).distinct()))
    orders = list(
        session.scalars(
            scope_orders(select(TherapyOrder), principal)
            .where(TherapyOrder.status == "active")
            .order_by(TherapyOrder.id.desc())
            .limit(200)
        )
    )
    plans = {
        p.order_id: p
        for p in session.scalars(
            select(JourneyPlan).where(
                JourneyPlan.order_id.in_([o.id for o in orders]), JourneyPlan.status.in_(LIVE)
            )
        )
    }
    firsts = dict(
        session.execute(
            select(PlanStepRow.plan_id, PlanStepRow.starts_at).where(
                PlanStepRow.plan_id.in_([p.id for p in plans.values()]),
                PlanStepRow.kind == StepKind.infusion.value,
            )
        ).all()
    )
    return {
        "sites": [
            {
                "code": s.code,
                "name": s.name,
                "kind": s.kind,
                "timezone": s.timezone,
                "has_capacity": s.id in with_capacity,
                "manufacturing": s.kind == "manufacturing_facility",
            }
            for s in sites
        ],
        "orders": [
            {
                "public_id": o.public_id,
                "patient": o.patient.public_id,
                "product": o.product_profile.code,
                "treatment_site": o.treatment_site.name,
                "plan": plans[o.id].public_id if o.id in plans else None,
                "plan_status": plans[o.id].status if o.id in plans else None,
                "infusion": local(firsts.get(plans[o.id].id), o.treatment_site.timezone)
                if o.id in plans
                else "",
                "infusion_at": firsts.get(plans[o.id].id) if o.id in plans else None,
            }
            for o in orders
        ],
    }


def site_calendar(
    session: Session, principal: Principal, *, site_code: str, day: date, days: int
) -> dict[str, Any]:
    """Windows, bookings and utilisation of a site's resources over ``days`` local days."""
    site = visible_site(session, principal, site_code)
    tz = site.timezone
    start = local_day_bounds(day, tz)[0]
    end = local_day_bounds(day + timedelta(days=days), tz)[0]
    dates = [day + timedelta(days=n) for n in range(days)]
    resources = list(
        session.scalars(
            select(ScheduleResource)
            .where(ScheduleResource.site_id == site.id, ScheduleResource.active.is_(True))
            .order_by(ScheduleResource.kind, ScheduleResource.name)
        )
    )
    windows = list(
        session.scalars(
            select(WindowRow)
            .where(
                WindowRow.resource_id.in_([r.id for r in resources]),
                WindowRow.starts_at >= start,
                WindowRow.starts_at < end,
            )
            .order_by(WindowRow.starts_at, WindowRow.id)
        )
    )
    booked: dict[int, list[dict[str, Any]]] = defaultdict(list)
    for window_id, booking, plan_id, plan_status, order_id in session.execute(
        select(
            BookingWindow.window_id,
            SlotBooking,
            JourneyPlan.public_id,
            JourneyPlan.status,
            TherapyOrder.public_id,
        )
        .join(SlotBooking, SlotBooking.id == BookingWindow.booking_id)
        .join(JourneyPlan, JourneyPlan.id == SlotBooking.plan_id)
        .join(TherapyOrder, TherapyOrder.id == JourneyPlan.order_id)
        .where(
            BookingWindow.window_id.in_([w.id for w in windows]),
            SlotBooking.status.in_(LIVE),
        )
        .order_by(SlotBooking.id)
    ):
        booked[window_id].append(
            {
                "booking": booking.public_id,
                "plan": plan_id,
                "order": order_id,
                "step": STEP_LABELS[StepKind(booking.step_kind)],
                "tentative": plan_status == "held",
                "units": booking.units,
            }
        )
    by_resource: dict[int, dict[date, list[WindowRow]]] = defaultdict(lambda: defaultdict(list))
    for w in windows:
        by_resource[w.resource_id][local_date(w.starts_at, tz)].append(w)
    totals: dict[date, list[int]] = {d: [0, 0] for d in dates}
    rows = []
    for r in resources:
        cells = []
        for d in dates:
            wins = by_resource[r.id].get(d, [])
            capacity = sum(w.capacity for w in wins)
            used = sum(w.used for w in wins)
            totals[d][0] += capacity
            totals[d][1] += used
            cells.append(
                {
                    "date": d,
                    "capacity": capacity,
                    "used": used,
                    "percent": round(100 * used / capacity) if capacity else None,
                    "windows": [
                        {
                            "start": local(w.starts_at, tz, "%H:%M"),
                            "end": local(w.ends_at, tz, "%H:%M"),
                            "next_day": local_date(w.ends_at - timedelta(seconds=1), tz) != d,
                            "starts_at": w.starts_at,
                            "ends_at": w.ends_at,
                            "capacity": w.capacity,
                            "used": w.used,
                            "full": w.used >= w.capacity,
                            "bookings": booked.get(w.id, []),
                        }
                        for w in wins
                    ],
                }
            )
        rows.append(
            {
                "public_id": r.public_id,
                "name": r.name,
                "kind": r.kind,
                "kind_label": KIND_LABELS.get(r.kind, r.kind),
                "product": r.product_code,
                "cells": cells,
            }
        )
    closures = [
        {
            "kind": c.kind,
            "first_day": c.first_day,
            "last_day": c.last_day,
            "reason": c.reason,
            "resource": c.resource_id,
        }
        for c in session.scalars(
            select(Closure)
            .where(
                Closure.site_id == site.id,
                Closure.first_day <= dates[-1],
                Closure.last_day >= dates[0],
            )
            .order_by(Closure.first_day)
        )
    ]
    return {
        "site": {"code": site.code, "name": site.name, "timezone": tz, "kind": site.kind},
        "dates": dates,
        "days": days,
        "resources": rows,
        "totals": [
            {
                "date": d,
                "capacity": c,
                "used": u,
                "percent": round(100 * u / c) if c else None,
            }
            for d, (c, u) in totals.items()
        ],
        "closures": closures,
    }


# ---------------------------------------------------------------------------------------------
# A patient's plan


def _step_dicts(session: Session, plan: JourneyPlan) -> list[dict[str, Any]]:
    rows = session.execute(
        select(PlanStepRow, Site, SlotBooking, ScheduleResource)
        .join(Site, Site.id == PlanStepRow.site_id)
        .outerjoin(SlotBooking, SlotBooking.id == PlanStepRow.booking_id)
        .outerjoin(ScheduleResource, ScheduleResource.id == SlotBooking.resource_id)
        .where(PlanStepRow.plan_id == plan.id)
    ).all()
    steps = []
    for step, site, booking, resource in rows:
        kind = StepKind(step.kind)
        steps.append(
            {
                "kind": kind.value,
                "label": STEP_LABELS[kind],
                "site": site.code,
                "site_name": site.name,
                "timezone": site.timezone,
                "starts_at": step.starts_at,
                "ends_at": step.ends_at,
                "deadline_at": step.deadline_at,
                "start_local": local(step.starts_at, site.timezone),
                "end_local": local(step.ends_at, site.timezone),
                "deadline_local": local(step.deadline_at, site.timezone),
                "local_date": local(step.starts_at, site.timezone, "%Y-%m-%d"),
                "local_time": local(step.starts_at, site.timezone, "%H:%M"),
                "booking": booking.public_id if booking else None,
                "booking_status": booking.status if booking else None,
                "resource": resource.name if resource else None,
            }
        )
    steps.sort(key=lambda s: STEP_ORDER.index(StepKind(str(s["kind"]))))
    return steps


def plan_history(
    session: Session, principal: Principal, order_public_id: str
) -> list[dict[str, Any]]:
    """Every plan an order had, newest first, with UTC times (the API's view of the history)."""
    order = visible_order(session, principal, order_public_id)
    return [
        {
            "public_id": p.public_id,
            "status": p.status,
            "created_at": p.created_at,
            "ended_at": p.ended_at,
            "reason": p.end_reason,
            "profile_version": p.profile_version,
        }
        for p in session.scalars(
            select(JourneyPlan)
            .where(JourneyPlan.order_id == order.id)
            .order_by(JourneyPlan.created_at.desc(), JourneyPlan.id.desc())
        )
    ]


def timeline(steps: list[dict[str, Any]], now: datetime, *, width: int = 760) -> dict[str, Any]:
    """SVG geometry for a plan timeline: one bar per step over the plan's days."""
    if not steps:
        return {"bars": [], "ticks": [], "width": width, "height": 0}
    tz = steps[-1]["timezone"]
    first = local_date(min(s["starts_at"] for s in steps), tz)
    last = local_date(max(s["ends_at"] for s in steps), tz) + timedelta(days=1)
    origin = local_day_bounds(first, tz)[0]
    span = (local_day_bounds(last, tz)[0] - origin).total_seconds()

    def x(instant: datetime) -> float:
        return round(width * (instant - origin).total_seconds() / span, 1)

    bars = []
    for i, s in enumerate(steps):
        left = x(s["starts_at"])
        right = max(x(s["ends_at"]), left + 3)
        bars.append(
            {
                **s,
                "y": i * 30,
                "x": left,
                "w": round(right - left, 1),
                "booked": s["booking"] is not None,
                "deadline_x": x(s["deadline_at"]) if s["deadline_at"] else None,
            }
        )
    total_days = (last - first).days
    step = 7 if total_days > 21 else 1
    ticks = []
    d = first
    while d < last:
        ticks.append({"x": x(local_day_bounds(d, tz)[0]), "label": d.strftime("%d %b")})
        d += timedelta(days=step)
    now_x = x(now) if origin <= now <= local_day_bounds(last, tz)[0] else None
    return {
        "bars": bars,
        "ticks": ticks,
        "width": width,
        "height": len(steps) * 30,
        "now_x": now_x,
        "timezone": tz,
    }


def order_plan(
    session: Session, principal: Principal, order_public_id: str, now: datetime
) -> dict[str, Any]:
    """An order's live plan (steps, timeline, explanations, deadlines), history and waitlist."""
    order = visible_order(session, principal, order_public_id)
    plans = list(
        session.scalars(
            select(JourneyPlan)
            .where(JourneyPlan.order_id == order.id)
            .order_by(JourneyPlan.created_at.desc(), JourneyPlan.id.desc())
        )
    )
    live = next((p for p in plans if p.status in LIVE), None)
    tz = order.treatment_site.timezone
    plan: dict[str, Any] | None = None
    if live is not None:
        steps = _step_dicts(session, live)
        deadlines = [
            {
                "kind": d.kind,
                "due_at": d.due_at,
                "due_local": local(d.due_at, site.timezone),
                "timezone": site.timezone,
                "site": site.code,
                "description": d.description,
                "what": d.description.rsplit(" by ", 1)[0],
                "profile_version": d.profile_version,
            }
            for d, site in session.execute(
                select(PlanDeadline, Site)
                .join(Site, Site.id == PlanDeadline.site_id)
                .where(PlanDeadline.plan_id == live.id, PlanDeadline.status == "open")
                .order_by(PlanDeadline.due_at, PlanDeadline.id)
            )
        ]
        stored = service.stored_plan(session, live)
        profile_row = session.get(ProductProfile, live.product_profile_id)
        assert profile_row is not None
        last = stored.steps[-1]
        # "Moving" the last step onto itself pushes nothing and reports every broken rule.
        flags = [
            {"step": STEP_LABELS[c.step], "code": v.code, "message": v.message}
            for c in knock_on(stored, last.kind, last.start, service.profile_for(profile_row))
            for v in c.violations
        ]
        plan = {
            "flags": flags,
            "public_id": live.public_id,
            "status": live.status,
            "held_until": live.held_until,
            "held_until_local": local(live.held_until, tz),
            "profile_version": live.profile_version,
            "created_at": live.created_at,
            "version": live.version_id,
            "steps": steps,
            "timeline": timeline(steps, now),
            "explanations": (live.explanations or {}).get("items", []),
            "deadlines": deadlines,
        }
    entry = session.scalar(
        select(WaitlistEntry).where(
            WaitlistEntry.order_id == order.id, WaitlistEntry.status == "waiting"
        )
    )
    waiting = None
    if entry is not None:
        ranked = rank_entries(session, site_id=entry.site_id, now=now)
        position = next(i for i, (e, _) in enumerate(ranked) if e.id == entry.id)
        waiting = {
            "public_id": entry.public_id,
            "position": position + 1,
            "of": len(ranked),
            "score": ranked[position][1].total,
        }
    return {
        "order": {
            "public_id": order.public_id,
            "patient": order.patient.public_id,
            "product": order.product_profile.code,
            "product_name": order.product_profile.name,
            "status": order.status,
            "sites": {
                "collection": order.collection_site.name,
                "manufacturing": order.manufacturing_site.name,
                "treatment": order.treatment_site.name,
            },
            "collection_timezone": order.collection_site.timezone,
            "treatment_timezone": tz,
        },
        "can_plan": principal.has_role_at(PLANNING_ROLES, order.treatment_site_id)
        or principal.is_admin,
        "plan": plan,
        "history": [
            {
                "public_id": p.public_id,
                "status": p.status,
                "created_at": local(p.created_at, tz),
                "ended_at": local(p.ended_at, tz),
                "reason": p.end_reason,
                "profile_version": p.profile_version,
            }
            for p in plans
            if p is not live
        ],
        "waiting": waiting,
        "urgencies": list(DEFAULT_PRIORITY_POLICY.urgency_levels),
    }


# ---------------------------------------------------------------------------------------------
# Waitlist, notifications, profiles


def waitlist(
    session: Session, principal: Principal, *, site_code: str, now: datetime
) -> dict[str, Any]:
    """A manufacturing site's waitlist, ranked, every score input and component shown."""
    site = visible_site(session, principal, site_code)
    visible = set(
        session.scalars(
            scope_orders(select(TherapyOrder), principal).with_only_columns(TherapyOrder.id)
        )
    )
    entries = []
    for rank, (entry, score) in enumerate(rank_entries(session, site_id=site.id, now=now), 1):
        order = session.get(TherapyOrder, entry.order_id)
        assert order is not None
        patient = session.get(Patient, order.patient_id)
        entries.append(
            {
                "rank": rank,
                "public_id": entry.public_id,
                "order": order.public_id,
                "order_visible": order.id in visible,
                "patient": patient.public_id if patient else "",
                "product": entry.product_code,
                "joined": local(entry.joined_at, site.timezone, "%Y-%m-%d"),
                "inputs": {
                    "days_waiting": max(0, (now - entry.joined_at).days),
                    "urgency_category": entry.urgency_category,
                    "bridging_therapy_failing": entry.bridging_therapy_failing,
                    "prior_slot_cancellations": entry.prior_slot_cancellations,
                },
                "components": [
                    {
                        "name": c.name,
                        "value": c.value,
                        "weight": c.weight,
                        "contribution": c.contribution,
                    }
                    for c in score.components
                ],
                "total": score.total,
                "policy_version": score.policy_version,
                "note": entry.note,
                "can_edit": principal.is_admin
                or principal.has_role_at(PLANNING_ROLES, order.treatment_site_id),
            }
        )
    policy = DEFAULT_PRIORITY_POLICY
    return {
        "site": {"code": site.code, "name": site.name, "timezone": site.timezone},
        "entries": entries,
        "policy": {
            "version": policy.version,
            "weights": dict(policy.weights),
            "urgency_levels": dict(policy.urgency_levels),
            "caps": dict(policy.caps),
        },
    }


def notifications(
    session: Session, user_id: int | None, *, limit: int = 100
) -> list[dict[str, Any]]:
    """The user's notifications, newest first."""
    if user_id is None:
        return []
    rows = session.execute(
        select(Notification, JourneyPlan.public_id, TherapyOrder.public_id)
        .outerjoin(JourneyPlan, JourneyPlan.id == Notification.plan_id)
        .outerjoin(TherapyOrder, TherapyOrder.id == Notification.order_id)
        .where(Notification.user_id == user_id)
        .order_by(Notification.created_at.desc(), Notification.id.desc())
        .limit(limit)
    ).all()
    return [
        {
            "id": n.id,
            "kind": n.kind,
            "subject": n.subject,
            "body": n.body,
            "plan": plan,
            "order": order,
            "created_at": n.created_at,
            "read": n.read_at is not None,
        }
        for n, plan, order in rows
    ]


def unread_count(session: Session, user_id: int | None) -> int:
    """How many notifications the user has not read."""
    if user_id is None:
        return 0
    count = session.scalar(
        select(func.count(Notification.id)).where(
            Notification.user_id == user_id, Notification.read_at.is_(None)
        )
    )
    return int(count or 0)


def profiles(session: Session) -> list[dict[str, Any]]:
    """Active product profiles with how many journey numbers still wait for confirmation."""
    return [
        {
            "code": p.code,
            "name": p.name,
            "version": p.version,
            "starting_material": p.starting_material,
            "unconfirmed": len(unconfirmed_fields(p.data)),
        }
        for p in session.scalars(
            select(ProductProfile)
            .where(ProductProfile.active.is_(True))
            .order_by(ProductProfile.code)
        )
    ]


def profile_journey(session: Session, code: str) -> dict[str, Any]:
    """The journey numbers of a profile's active version, each marked confirmed or default."""
    row = session.scalar(
        select(ProductProfile).where(ProductProfile.code == code, ProductProfile.active.is_(True))
    )
    if row is None:
        raise TrackerError("not_found", f"no active product profile {code}")
    values = stored_values(row.data)
    confirmed = confirmed_fields(row.data)
    defaults = default_values()
    versions = [
        {"version": v, "created_at": c}
        for v, c in session.execute(
            select(ProductProfile.version, ProductProfile.created_at)
            .where(ProductProfile.code == code)
            .order_by(ProductProfile.version.desc())
        )
    ]
    return {
        "code": row.code,
        "name": row.name,
        "version": row.version,
        "starting_material": row.starting_material,
        "values": values,
        "confirmed": sorted(confirmed),
        "defaults_to_confirm": unconfirmed_fields(row.data),
        "fields": [
            {
                "name": f.name,
                "label": f.label,
                "unit": f.unit,
                "help": f.help,
                "value": values[f.name],
                "default": defaults[f.name],
                "confirmed": f.name in confirmed,
            }
            for f in FIELDS
        ],
        "versions": versions,
    }


# ---------------------------------------------------------------------------------------------
# Calendar feed


def feed_events(session: Session, site: Site, *, now: datetime, base_url: str) -> list[IcsEvent]:
    """A site's live bookings and lymphodepletion days as events with opaque references only."""
    since = now - timedelta(days=31)
    events: list[IcsEvent] = []
    for booking, resource, plan, order_id in session.execute(
        select(SlotBooking, ScheduleResource, JourneyPlan, TherapyOrder.public_id)
        .join(ScheduleResource, ScheduleResource.id == SlotBooking.resource_id)
        .join(JourneyPlan, JourneyPlan.id == SlotBooking.plan_id)
        .join(TherapyOrder, TherapyOrder.id == JourneyPlan.order_id)
        .where(
            ScheduleResource.site_id == site.id,
            SlotBooking.status.in_(LIVE),
            SlotBooking.ends_at >= since,
        )
        .order_by(SlotBooking.starts_at, SlotBooking.id)
    ):
        label = STEP_LABELS[StepKind(booking.step_kind)]
        tentative = plan.status == "held"
        status_text = (
            f"tentative hold until {local(plan.held_until, site.timezone)} {site.timezone}"
            if tentative
            else "booked"
        )
        events.append(
            IcsEvent(
                uid=f"{booking.public_id}@coi-tracker",
                start=booking.starts_at,
                end=booking.ends_at,
                summary=f"{label} · {plan.public_id}",
                description=(
                    f"Plan {plan.public_id}, order {order_id}; {resource.name}; {status_text}. "
                    "Opaque references only: open the tracker for details."
                ),
                status="TENTATIVE" if tentative else "CONFIRMED",
                sequence=plan.version_id,
                categories=(label,),
                url=f"{base_url.rstrip('/')}/schedules/orders/{order_id}",
            )
        )
    for step, plan, order_id in session.execute(
        select(PlanStepRow, JourneyPlan, TherapyOrder.public_id)
        .join(JourneyPlan, JourneyPlan.id == PlanStepRow.plan_id)
        .join(TherapyOrder, TherapyOrder.id == JourneyPlan.order_id)
        .where(
            PlanStepRow.site_id == site.id,
            PlanStepRow.kind == StepKind.lymphodepletion.value,
            JourneyPlan.status.in_(LIVE),
            PlanStepRow.ends_at >= since,
        )
        .order_by(PlanStepRow.starts_at)
    ):
        events.append(
            IcsEvent(
                uid=f"{plan.public_id}-ld@coi-tracker",
                start=step.starts_at,
                end=step.ends_at,
                summary=f"Lymphodepletion · {plan.public_id}",
                description=(
                    f"Plan {plan.public_id}, order {order_id}: confirm product availability "
                    "before starting lymphodepletion."
                ),
                status="TENTATIVE" if plan.status == "held" else "CONFIRMED",
                sequence=plan.version_id,
                categories=("Lymphodepletion",),
                url=f"{base_url.rstrip('/')}/schedules/orders/{order_id}",
            )
        )
    return events
