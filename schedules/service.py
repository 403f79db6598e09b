"""Schedules use cases: capacity set-up, planning, atomic booking, holds, rescheduling, the
waitlist, journey profiles, notifications and calendar feeds.

Every function takes keyword arguments, a unit of work and ``now``; none commits (the entrypoint
does). Lock order, wherever several are taken: the order row, then the plan row, then resource
rows (share), then window rows in id order (schedules/capacity.py explains why that is enough).
"""

from __future__ import annotations

import hashlib
import json
import secrets
from collections.abc import Iterable
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date
from datetime import datetime
from datetime import time
from datetime import timedelta
from typing import Any

from sqlalchemy import delete
from sqlalchemy import select
from sqlalchemy import update
from sqlalchemy.orm import Session
from sqlalchemy.orm import lazyload

from schedules.capacity import HORIZON
from schedules.capacity import Reserved
from schedules.capacity import SqlCapacity
from schedules.capacity import SyncResult
from schedules.capacity import change_capacity
from schedules.capacity import sync_windows
from schedules.deadlines import plan_deadlines
from schedules.models import BookingWindow
from schedules.models import CalendarFeed
from schedules.models import Closure
from schedules.models import JourneyPlan
from schedules.models import Notification
from schedules.models import PlanDeadline
from schedules.models import PlanStepRow
from schedules.models import ScheduleResource
from schedules.models import SlotBooking
from schedules.models import WaitlistEntry
from schedules.models import WeeklyHours
from schedules.planning import DEFAULT_PRIORITY_POLICY
from schedules.planning import STEP_ORDER
from schedules.planning import Explanation
from schedules.planning import JourneyProfile
from schedules.planning import JourneySites
from schedules.planning import Plan
from schedules.planning import PlanningError
from schedules.planning import PlanStep
from schedules.planning import PriorityInputs
from schedules.planning import StepKind
from schedules.planning import propose_plan
from schedules.planning import rank_waitlist
from schedules.profiles import CONFIRMED_KEY
from schedules.profiles import FIELD_NAMES
from schedules.profiles import JOURNEY_KEY
from schedules.profiles import build_profile
from schedules.profiles import confirmed_fields
from schedules.profiles import journey_profile
from schedules.profiles import stored_values
from schedules.profiles import unconfirmed_fields
from schedules.rescheduling import Replan
from schedules.rescheduling import replan_step
from schedules.slots import Booking
from schedules.slots import ResourceKind
from schedules.slots import zone
from tracker.clock import require_aware
from tracker.domain.access import ORDER_ROLES
from tracker.domain.access import Role
from tracker.domain.errors import TrackerError
from tracker.models import ProductProfile
from tracker.models import RoleAssignment
from tracker.models import Site
from tracker.models import TherapyOrder
from tracker.models import User
from tracker.services import deadlines as alert_deadlines
from tracker.services import orders as order_service
from tracker.services.audit import diff
from tracker.services.audit import record_audit
from tracker.services.custody import lock_order
from tracker.services.custody import new_public_id
from tracker.services.principals import Principal
from tracker.services.principals import scope_orders
from tracker.unit_of_work import UnitOfWork

DEFAULT_HOLD = timedelta(hours=48)
# Coordinators plan their patients' journeys; administrators may act anywhere.
PLANNING_ROLES = ORDER_ROLES
CAPACITY_ROLES = frozenset({Role.coordinator, Role.admin})
LIVE = ("held", "booked")
_NO_CAPACITY = {
    StepKind.collection: "no_collection_capacity",
    StepKind.manufacturing: "no_manufacturing_capacity",
    StepKind.infusion: "no_infusion_capacity",
    StepKind.second_dose: "no_infusion_capacity",
}


def _reason(reason: str | None) -> str:
    text = (reason or "").strip()
    if len(text) < 3:
        raise TrackerError(
            "reason_required", "give a reason for this change (3 characters or more)"
        )
    return text


def _require_admin(principal: Principal, action: str) -> None:
    if not principal.is_admin:
        raise TrackerError("forbidden", f"only administrators may {action}")


def _visible_order(session: Session, principal: Principal, public_id: str) -> TherapyOrder:
    # Planning needs the order's sites and profile, not its bags and shipments (selectin).
    order = session.scalar(
        scope_orders(select(TherapyOrder), principal)
        .where(TherapyOrder.public_id == public_id)
        .options(lazyload(TherapyOrder.items), lazyload(TherapyOrder.shipments))
    )
    if order is None:
        raise TrackerError("not_found", f"no order {public_id}")
    return order


def _journey_sites(order: TherapyOrder) -> JourneySites:
    return JourneySites(
        collection=order.collection_site.code,
        manufacturing=order.manufacturing_site.code,
        treatment=order.treatment_site.code,
    )


def _site_ids(order: TherapyOrder) -> dict[str, int]:
    return {
        order.collection_site.code: order.collection_site_id,
        order.manufacturing_site.code: order.manufacturing_site_id,
        order.treatment_site.code: order.treatment_site_id,
    }


def current_profile(session: Session, order: TherapyOrder) -> ProductProfile:
    """The active version of the order's product profile (plans use the newest numbers)."""
    row = session.scalar(
        select(ProductProfile).where(
            ProductProfile.code == order.product_profile.code, ProductProfile.active.is_(True)
        )
    )
    return row or order.product_profile


def profile_for(row: ProductProfile) -> JourneyProfile:
    """The JourneyProfile of a stored product profile version."""
    try:
        return journey_profile(
            code=row.code,
            version=row.version,
            starting_material=row.starting_material,
            data=row.data,
        )
    except ValueError as exc:
        raise TrackerError("invalid_request", f"profile {row.code} v{row.version}: {exc}") from exc


def fingerprint(plan: Plan) -> str:
    """A short digest of a plan's steps and bookings, echoed back to confirm exactly it."""
    body = [
        (s.kind.value, s.start.isoformat(), s.end.isoformat(), s.resource_id) for s in plan.steps
    ]
    return hashlib.sha256(json.dumps(body).encode()).hexdigest()[:16]


def _explanations_json(plan: Plan) -> dict[str, Any]:
    return {
        "items": [
            {
                "step": e.step.value,
                "earliest": e.earliest.isoformat(),
                "chosen": e.chosen.isoformat(),
                "message": e.message,
            }
            for e in plan.explanations
        ]
    }


def stored_plan(session: Session, row: JourneyPlan) -> Plan:
    """Rebuild the pure Plan of a stored plan (steps, live bookings, explanations)."""
    order = session.get(TherapyOrder, row.order_id)
    profile_row = session.get(ProductProfile, row.product_profile_id)
    assert order is not None and profile_row is not None
    step_rows = session.execute(
        select(PlanStepRow, Site.code, Site.timezone)
        .join(Site, Site.id == PlanStepRow.site_id)
        .where(PlanStepRow.plan_id == row.id)
    ).all()
    booking_ids = [s.booking_id for s, _, _ in step_rows if s.booking_id is not None]
    bookings = {
        b.id: Booking(pid, b.starts_at, b.ends_at, b.units)
        for b, pid in session.execute(
            select(SlotBooking, ScheduleResource.public_id)
            .join(ScheduleResource, ScheduleResource.id == SlotBooking.resource_id)
            .where(SlotBooking.id.in_(booking_ids))
        )
    }
    steps = sorted(
        (
            PlanStep(
                StepKind(s.kind),
                code,
                tz,
                s.starts_at,
                s.ends_at,
                deadline=s.deadline_at,
                booking=bookings.get(s.booking_id) if s.booking_id else None,
            )
            for s, code, tz in step_rows
        ),
        key=lambda step: STEP_ORDER.index(step.kind),
    )
    explanations = tuple(
        Explanation(
            StepKind(e["step"]),
            datetime.fromisoformat(e["earliest"]),
            datetime.fromisoformat(e["chosen"]),
            e["message"],
        )
        for e in (row.explanations or {}).get("items", [])
    )
    return Plan(
        product=profile_row.code,
        profile_version=row.profile_version,
        sites=_journey_sites(order),
        steps=tuple(steps),
        explanations=explanations,
        created_at=row.created_at,
    )


# ---------------------------------------------------------------------------------------------
# Notifications


def _notify(
    session: Session,
    *,
    site_ids: Iterable[int],
    kind: str,
    subject: str,
    body: str,
    key: str,
    now: datetime,
    order: TherapyOrder | None = None,
    plan: JourneyPlan | None = None,
    exclude_user_id: int | None = None,
    roles: frozenset[Role] | None = None,
    extra_user_ids: Iterable[int] = (),
) -> int:
    """Write one in-app notification per user with a role at ``site_ids`` (deduplicated)."""
    sites = sorted(set(site_ids))
    stmt = (
        select(RoleAssignment.user_id)
        .join(User, User.id == RoleAssignment.user_id)
        .where(RoleAssignment.site_id.in_(sites), User.active.is_(True))
    )
    if roles is not None:
        stmt = stmt.where(RoleAssignment.role.in_([r.value for r in roles]))
    users = set(session.scalars(stmt)) | set(extra_user_ids)
    users.discard(exclude_user_id)
    if not users:
        return 0
    seen = set(
        session.scalars(
            select(Notification.user_id).where(
                Notification.user_id.in_(users), Notification.dedupe_key == key
            )
        )
    )
    site_id = sites[0] if len(sites) == 1 else None
    for user_id in sorted(users - seen):
        session.add(
            Notification(
                user_id=user_id,
                kind=kind,
                subject=subject[:200],
                body=body,
                order_id=order.id if order else None,
                plan_id=plan.id if plan else None,
                site_id=site_id,
                dedupe_key=key[:120],
                created_at=now,
            )
        )
    return len(users - seen)


def mark_notification_read(
    *, uow: UnitOfWork, principal: Principal, notification_id: int, now: datetime
) -> Notification:
    """Mark one of the caller's notifications as read."""
    note = uow.session.get(Notification, notification_id)
    if note is None or note.user_id != principal.user_id:
        raise TrackerError("not_found", f"no notification {notification_id}")
    if note.read_at is None:
        note.read_at = require_aware(now)
    return note


# ---------------------------------------------------------------------------------------------
# Capacity set-up


@dataclass(frozen=True)
class HoursSpec:
    """One weekly opening period in local wall time (weekday 0 = Monday)."""

    weekday: int
    opens_at: time
    closes_at: time
    capacity: int


def _resource(session: Session, public_id: str, *, lock: bool = False) -> ScheduleResource:
    stmt = select(ScheduleResource).where(ScheduleResource.public_id == public_id)
    resource = session.scalar(stmt.with_for_update() if lock else stmt)
    if resource is None:
        raise TrackerError("not_found", f"no resource {public_id}")
    return resource


def define_resource(
    *,
    uow: UnitOfWork,
    principal: Principal,
    site_code: str,
    kind: ResourceKind,
    name: str,
    now: datetime,
    product_code: str | None = None,
    slot_minutes: int | None = None,
) -> ScheduleResource:
    """Define a bookable pool at a site (hours come separately)."""
    _require_admin(principal, "define capacity")
    session = uow.session
    site = order_service.site_by_code(session, site_code)
    kind = ResourceKind(kind)
    if product_code is not None and kind is not ResourceKind.manufacturing_slot:
        raise TrackerError("invalid_request", "only manufacturing slots are per product")
    if not name.strip():
        raise TrackerError("invalid_request", "a resource needs a name")
    taken = session.scalar(
        select(ScheduleResource.id).where(
            ScheduleResource.site_id == site.id, ScheduleResource.name == name.strip()
        )
    )
    if taken is not None:
        raise TrackerError("conflict", f"{site.code} already has a resource named {name.strip()!r}")
    resource = ScheduleResource(
        public_id=f"{site.code}-{kind.value.split('_')[0].upper()}-{secrets.token_hex(3).upper()}",
        site_id=site.id,
        kind=kind.value,
        name=name.strip(),
        product_code=product_code,
        slot_minutes=slot_minutes,
        created_at=require_aware(now),
    )
    session.add(resource)
    session.flush()
    record_audit(
        session,
        now=now,
        actor_user_id=principal.user_id,
        action="define_resource",
        entity_type="schedule_resource",
        entity_id=resource.public_id,
        changes={"kind": [None, kind.value], "name": [None, resource.name]},
        site_id=site.id,
    )
    return resource


def set_weekly_hours(
    *,
    uow: UnitOfWork,
    principal: Principal,
    resource_public_id: str,
    hours: Sequence[HoursSpec],
    reason: str,
    now: datetime,
) -> SyncResult:
    """Replace a resource's weekly hours and re-expand its future windows (refused if booked)."""
    _require_admin(principal, "change capacity")
    session = uow.session
    now = require_aware(now)
    resource = _resource(session, resource_public_id, lock=True)
    seen: set[tuple[int, time]] = set()
    for spec in hours:
        if spec.weekday not in range(7) or spec.capacity < 0:
            raise TrackerError("invalid_request", "weekday is 0..6 and capacity >= 0")
        if (spec.weekday, spec.opens_at) in seen:
            raise TrackerError("invalid_request", "two periods open at the same time")
        seen.add((spec.weekday, spec.opens_at))
    old = [
        f"{h.weekday} {h.opens_at:%H:%M}-{h.closes_at:%H:%M} x{h.capacity}"
        for h in session.scalars(
            select(WeeklyHours)
            .where(WeeklyHours.resource_id == resource.id)
            .order_by(WeeklyHours.weekday, WeeklyHours.opens_at)
        )
    ]
    session.execute(delete(WeeklyHours).where(WeeklyHours.resource_id == resource.id))
    for spec in hours:
        session.add(
            WeeklyHours(
                resource_id=resource.id,
                weekday=spec.weekday,
                opens_at=spec.opens_at,
                closes_at=spec.closes_at,
                capacity=spec.capacity,
            )
        )
    session.flush()
    end = max(now + HORIZON, resource.expanded_until or now)
    result = sync_windows(session, resource, start=now, end=end)
    new = [
        f"{h.weekday} {h.opens_at:%H:%M}-{h.closes_at:%H:%M} x{h.capacity}"
        for h in sorted(hours, key=lambda h: (h.weekday, h.opens_at))
    ]
    record_audit(
        session,
        now=now,
        actor_user_id=principal.user_id,
        action="set_weekly_hours",
        entity_type="schedule_resource",
        entity_id=resource.public_id,
        changes={"hours": [old, new]},
        reason=_reason(reason),
        site_id=resource.site_id,
    )
    return result


def add_closure(
    *,
    uow: UnitOfWork,
    principal: Principal,
    site_code: str,
    first_day: date,
    last_day: date,
    kind: str,
    reason: str,
    now: datetime,
    resource_public_id: str | None = None,
) -> Closure:
    """Close a site (or one resource) on local dates; refused if bookings hold those days."""
    session = uow.session
    now = require_aware(now)
    site = order_service.site_by_code(session, site_code)
    principal.require_role_at(CAPACITY_ROLES, site.id, "close capacity")
    if kind not in ("closure", "holiday"):
        raise TrackerError("invalid_request", "kind is closure or holiday")
    if first_day > last_day:
        raise TrackerError("invalid_request", "first day is after last day")
    resources = list(
        session.scalars(
            select(ScheduleResource)
            .where(ScheduleResource.site_id == site.id, ScheduleResource.active.is_(True))
            .order_by(ScheduleResource.id)
        )
    )
    if resource_public_id is not None:
        resources = [r for r in resources if r.public_id == resource_public_id]
        if not resources:
            raise TrackerError("not_found", f"no resource {resource_public_id} at {site_code}")
    closure = Closure(
        site_id=site.id,
        resource_id=resources[0].id if resource_public_id else None,
        kind=kind,
        first_day=first_day,
        last_day=last_day,
        reason=_reason(reason),
        created_at=now,
        created_by_id=principal.user_id,
    )
    session.add(closure)
    session.flush()
    for resource in resources:
        sync_windows(
            session, resource, start=now, end=max(now + HORIZON, resource.expanded_until or now)
        )
    record_audit(
        session,
        now=now,
        actor_user_id=principal.user_id,
        action="add_closure",
        entity_type="site",
        entity_id=site.code,
        changes={kind: [None, f"{first_day.isoformat()}..{last_day.isoformat()}"]},
        reason=closure.reason,
        site_id=site.id,
    )
    return closure


def extend_capacity(*, uow: UnitOfWork, now: datetime, horizon: timedelta = HORIZON) -> int:
    """Expand every active resource's windows up to ``now + horizon``; returns windows added."""
    session = uow.session
    now = require_aware(now)
    target = now + horizon
    added = 0
    for resource in session.scalars(
        select(ScheduleResource)
        .where(ScheduleResource.active.is_(True))
        .order_by(ScheduleResource.id)
    ).all():
        start = max(now, resource.expanded_until or now)
        if start >= target - timedelta(hours=12):
            continue
        added += sync_windows(session, resource, start=start, end=target).added
    return added


# ---------------------------------------------------------------------------------------------
# Planning and booking


@dataclass(frozen=True)
class Proposal:
    """A proposed plan with the digest to book exactly it and the profile fields to confirm."""

    order_public_id: str
    plan: Plan
    fingerprint: str
    profile_id: int
    unconfirmed: tuple[str, ...]


def _propose(session: Session, order: TherapyOrder, earliest: datetime, now: datetime) -> Proposal:
    row = current_profile(session, order)
    try:
        plan = propose_plan(
            profile_for(row),
            sites=_journey_sites(order),
            earliest_collection=require_aware(earliest),
            capacity=SqlCapacity(session),
            now=require_aware(now),
        )
    except PlanningError as exc:
        raise TrackerError(exc.code, exc.message) from exc
    return Proposal(
        order.public_id, plan, fingerprint(plan), row.id, tuple(unconfirmed_fields(row.data))
    )


def propose_journey(
    *,
    uow: UnitOfWork,
    principal: Principal,
    order_public_id: str,
    earliest_collection: datetime,
    now: datetime,
) -> Proposal:
    """Propose the earliest feasible journey for an order, with explanations; writes nothing."""
    order = _visible_order(uow.session, principal, order_public_id)
    principal.require_role_at(PLANNING_ROLES, order.treatment_site_id, "plan journeys")
    return _propose(uow.session, order, earliest_collection, now)


def _live_plan(session: Session, order_id: int, *, lock: bool = False) -> JourneyPlan | None:
    stmt = select(JourneyPlan).where(JourneyPlan.order_id == order_id, JourneyPlan.status.in_(LIVE))
    return session.scalar(stmt.with_for_update() if lock else stmt)


def book_plan(
    *,
    uow: UnitOfWork,
    principal: Principal,
    order_public_id: str,
    earliest_collection: datetime,
    now: datetime,
    tentative: bool = True,
    hold_for: timedelta = DEFAULT_HOLD,
    expected_fingerprint: str | None = None,
) -> JourneyPlan:
    """Plan and reserve collection, manufacturing and infusion capacity: all or nothing.

    ``tentative`` makes a hold that expires after ``hold_for`` unless confirmed. With
    ``expected_fingerprint`` the booking is refused (``plan_changed``) unless the fresh plan is
    exactly the proposal the user reviewed.
    """
    session = uow.session
    now = require_aware(now)
    order = lock_order(session, order_public_id, principal)  # serialises plans of one order
    principal.require_role_at(PLANNING_ROLES, order.treatment_site_id, "book journeys")
    if order.status != "active":
        raise TrackerError("invalid_request", f"order {order.public_id} is {order.status}")
    if _live_plan(session, order.id) is not None:
        raise TrackerError("plan_exists", f"order {order.public_id} already has a live plan")
    if tentative and not timedelta(minutes=5) <= hold_for <= timedelta(days=14):
        raise TrackerError("invalid_request", "a hold lasts between 5 minutes and 14 days")
    proposal = _propose(session, order, earliest_collection, now)
    if expected_fingerprint is not None and expected_fingerprint != proposal.fingerprint:
        raise TrackerError(
            "plan_changed",
            "capacity changed since that proposal was made; review the new proposal",
        )
    return _persist(
        session,
        principal=principal,
        order=order,
        proposal=proposal,
        earliest=require_aware(earliest_collection),
        hold_until=now + hold_for if tentative else None,
        now=now,
    )


def _write_bookings(
    session: Session,
    plan_row: JourneyPlan,
    kinds: Sequence[StepKind],
    reserved: Sequence[Reserved],
    status: str,
    now: datetime,
) -> dict[StepKind, SlotBooking]:
    rows: dict[StepKind, SlotBooking] = {}
    for kind, held in zip(kinds, reserved, strict=True):
        booking = SlotBooking(
            public_id=new_public_id("BKG"),
            plan_id=plan_row.id,
            step_kind=kind.value,
            resource_id=held.resource_id,
            starts_at=held.booking.start,
            ends_at=held.booking.end,
            units=held.booking.units,
            status=status,
            created_at=now,
        )
        session.add(booking)
        rows[kind] = booking
    session.flush()
    for kind, held in zip(kinds, reserved, strict=True):
        for window_id in held.window_ids:
            session.add(BookingWindow(booking_id=rows[kind].id, window_id=window_id))
    return rows


def _write_deadlines(
    session: Session, plan_row: JourneyPlan, order: TherapyOrder, plan: Plan, now: datetime
) -> None:
    site_ids = _site_ids(order)
    specs = plan_deadlines(plan)
    # The alerting side watches the same dates (warn before, alert at breach, ladders).
    alert_deadlines.watch_plan_milestones(
        session,
        plan_id=plan_row.id,
        order_id=order.id,
        milestones=[(s.kind.value, s.due_at, site_ids[s.site], s.description) for s in specs],
        profile_id=plan_row.product_profile_id,
        now=now,
    )
    for spec in specs:
        session.add(
            PlanDeadline(
                plan_id=plan_row.id,
                order_id=order.id,
                kind=spec.kind.value,
                due_at=spec.due_at,
                site_id=site_ids[spec.site],
                description=spec.description,
                profile_version=plan.profile_version,
                status="open",
                created_at=now,
            )
        )


def _close_deadlines(session: Session, plan_row: JourneyPlan, status: str, now: datetime) -> None:
    if status != "superseded":  # a re-plan moves the alerting rows in _write_deadlines
        alert_deadlines.close_plan_milestones(
            session, plan_id=plan_row.id, order_id=plan_row.order_id, now=now, why=f"plan {status}"
        )
    session.execute(
        update(PlanDeadline)
        .where(PlanDeadline.plan_id == plan_row.id, PlanDeadline.status == "open")
        .values(status=status, closed_at=now)
        .execution_options(synchronize_session=False)
    )


def _plan_sites(order: TherapyOrder) -> list[int]:
    return [order.collection_site_id, order.manufacturing_site_id, order.treatment_site_id]


def _persist(
    session: Session,
    *,
    principal: Principal,
    order: TherapyOrder,
    proposal: Proposal,
    earliest: datetime,
    hold_until: datetime | None,
    now: datetime,
) -> JourneyPlan:
    plan = proposal.plan
    booked_kinds = [s.kind for s in plan.steps if s.booking is not None]
    reserved = change_capacity(session, reserve=plan.bookings(), now=now)
    status = "held" if hold_until is not None else "booked"
    row = JourneyPlan(
        public_id=new_public_id("PLN"),
        order_id=order.id,
        status=status,
        product_profile_id=proposal.profile_id,
        profile_version=plan.profile_version,
        earliest_collection=earliest,
        held_until=hold_until,
        explanations=_explanations_json(plan),
        created_at=now,
        created_by_id=principal.user_id,
        booked_at=None if hold_until is not None else now,
    )
    session.add(row)
    session.flush()
    bookings = _write_bookings(session, row, booked_kinds, reserved, status, now)
    site_ids = _site_ids(order)
    for step in plan.steps:
        session.add(
            PlanStepRow(
                plan_id=row.id,
                kind=step.kind.value,
                site_id=site_ids[step.site],
                starts_at=step.start,
                ends_at=step.end,
                deadline_at=step.deadline,
                booking_id=bookings[step.kind].id if step.kind in bookings else None,
            )
        )
    _write_deadlines(session, row, order, plan, now)
    session.execute(
        update(WaitlistEntry)
        .where(WaitlistEntry.order_id == order.id, WaitlistEntry.status == "waiting")
        .values(status="placed", ended_at=now, end_reason=f"plan {row.public_id}")
        .execution_options(synchronize_session=False)
    )
    record_audit(
        session,
        now=now,
        actor_user_id=principal.user_id,
        action="plan_hold" if status == "held" else "plan_book",
        entity_type="journey_plan",
        entity_id=row.public_id,
        changes={
            "order": [None, order.public_id],
            "profile": [None, plan.profile_version],
            "steps": [None, {s.kind.value: s.start.isoformat() for s in plan.steps}],
            "held_until": [None, hold_until.isoformat() if hold_until else None],
        },
        site_id=order.treatment_site_id,
    )
    collection = plan.step(StepKind.collection)
    _notify(
        session,
        site_ids=_plan_sites(order),
        kind="plan_held" if status == "held" else "plan_booked",
        subject=f"Journey plan {row.public_id} {'held' if status == 'held' else 'booked'}",
        body=(
            f"Order {order.public_id}: collection {_local(collection.start, collection.tz)}, "
            f"{len(booked_kinds)} bookings"
            + (f"; tentative until {_local(hold_until, collection.tz)}" if hold_until else "")
        ),
        key=f"{row.public_id}:{status}",
        now=now,
        order=order,
        plan=row,
        exclude_user_id=principal.user_id,
    )
    session.flush()
    return row


def _local(instant: datetime, tz: str) -> str:
    return f"{instant.astimezone(zone(tz)):%Y-%m-%d %H:%M %Z}"


def _lock_plan(
    session: Session, principal: Principal, plan_public_id: str
) -> tuple[JourneyPlan, TherapyOrder]:
    probe = session.scalar(select(JourneyPlan).where(JourneyPlan.public_id == plan_public_id))
    if probe is None:
        raise TrackerError("not_found", f"no plan {plan_public_id}")
    order_public_id = session.scalar(
        select(TherapyOrder.public_id).where(TherapyOrder.id == probe.order_id)
    )
    assert order_public_id is not None
    order = lock_order(session, order_public_id, principal)
    row = session.scalar(
        select(JourneyPlan)
        .where(JourneyPlan.id == probe.id)
        .with_for_update()
        .execution_options(populate_existing=True)
    )
    assert row is not None
    principal.require_role_at(PLANNING_ROLES, order.treatment_site_id, "change journey plans")
    return row, order


def _live_bookings(session: Session, plan_row: JourneyPlan) -> list[SlotBooking]:
    return list(
        session.scalars(
            select(SlotBooking)
            .where(SlotBooking.plan_id == plan_row.id, SlotBooking.status.in_(LIVE))
            .order_by(SlotBooking.id)
        )
    )


def _require_live(row: JourneyPlan, now: datetime) -> None:
    if row.status not in LIVE:
        raise TrackerError("plan_not_live", f"plan {row.public_id} is {row.status}")
    if row.status == "held" and row.held_until is not None and row.held_until <= now:
        raise TrackerError("hold_expired", f"the hold on plan {row.public_id} expired; plan again")


def confirm_plan(
    *, uow: UnitOfWork, principal: Principal, plan_public_id: str, now: datetime
) -> JourneyPlan:
    """Turn a tentative hold into a booking (refused once the hold has expired)."""
    session = uow.session
    now = require_aware(now)
    row, order = _lock_plan(session, principal, plan_public_id)
    _require_live(row, now)
    if row.status == "booked":
        raise TrackerError("plan_not_live", f"plan {row.public_id} is already booked")
    for booking in _live_bookings(session, row):
        booking.status = "booked"
    row.status, row.booked_at = "booked", now
    record_audit(
        session,
        now=now,
        actor_user_id=principal.user_id,
        action="plan_confirm",
        entity_type="journey_plan",
        entity_id=row.public_id,
        changes={"status": ["held", "booked"]},
        site_id=order.treatment_site_id,
    )
    _notify(
        session,
        site_ids=_plan_sites(order),
        kind="plan_booked",
        subject=f"Journey plan {row.public_id} booked",
        body=f"Order {order.public_id}: the tentative hold was confirmed",
        key=f"{row.public_id}:booked",
        now=now,
        order=order,
        plan=row,
        exclude_user_id=principal.user_id,
    )
    session.flush()
    return row


def _release(
    session: Session,
    row: JourneyPlan,
    order: TherapyOrder,
    *,
    status: str,
    reason: str,
    now: datetime,
) -> list[SlotBooking]:
    bookings = _live_bookings(session, row)
    change_capacity(session, release=bookings, now=now)
    row.status, row.ended_at, row.end_reason = status, now, reason
    _close_deadlines(session, row, "cancelled", now)
    return bookings


def cancel_plan(
    *, uow: UnitOfWork, principal: Principal, plan_public_id: str, reason: str, now: datetime
) -> JourneyPlan:
    """Cancel a live plan, release its capacity and tell the sites (reason required)."""
    session = uow.session
    now = require_aware(now)
    why = _reason(reason)
    row, order = _lock_plan(session, principal, plan_public_id)
    if row.status not in LIVE:
        raise TrackerError("plan_not_live", f"plan {row.public_id} is {row.status}")
    old = row.status
    released = _release(session, row, order, status="cancelled", reason=why, now=now)
    record_audit(
        session,
        now=now,
        actor_user_id=principal.user_id,
        action="plan_cancel",
        entity_type="journey_plan",
        entity_id=row.public_id,
        changes={"status": [old, "cancelled"], "released": [None, [b.public_id for b in released]]},
        reason=why,
        site_id=order.treatment_site_id,
    )
    _notify(
        session,
        site_ids=_plan_sites(order),
        kind="plan_cancelled",
        subject=f"Journey plan {row.public_id} cancelled",
        body=f"Order {order.public_id}: {len(released)} bookings released. Reason: {why}",
        key=f"{row.public_id}:cancelled",
        now=now,
        order=order,
        plan=row,
        exclude_user_id=principal.user_id,
    )
    _offer_freed_slot(session, order, released, now)
    session.flush()
    return row


def _offer_freed_slot(
    session: Session, order: TherapyOrder, released: Sequence[SlotBooking], now: datetime
) -> None:
    """Tell the top of the waitlist's coordinators that a manufacturing slot came free."""
    freed = [b for b in released if b.step_kind == StepKind.manufacturing.value]
    if not freed:
        return
    ranked = rank_entries(session, site_id=order.manufacturing_site_id, now=now)
    if not ranked:
        return
    entry, score = ranked[0]
    waiting = session.get(TherapyOrder, entry.order_id)
    assert waiting is not None
    tz = order.manufacturing_site.timezone
    _notify(
        session,
        site_ids=[waiting.treatment_site_id],
        kind="slot_freed",
        subject=f"Manufacturing slot freed at {order.manufacturing_site.code}",
        body=(
            f"A slot starting {_local(freed[0].starts_at, tz)} was released. Top of the "
            f"waitlist: order {waiting.public_id} (score {score.total:g}). Propose a plan."
        ),
        key=f"freed:{freed[0].public_id}",
        now=now,
        order=waiting,
        roles=frozenset({Role.coordinator}),
    )


def expire_holds(*, uow: UnitOfWork, now: datetime, limit: int = 100) -> list[str]:
    """Release every tentative hold whose time has passed; returns the expired plan ids."""
    session = uow.session
    now = require_aware(now)
    # SKIP LOCKED: a plan being confirmed or changed right now is left for the next sweep.
    rows = list(
        session.scalars(
            select(JourneyPlan)
            .where(JourneyPlan.status == "held", JourneyPlan.held_until <= now)
            .order_by(JourneyPlan.held_until, JourneyPlan.id)
            .limit(limit)
            .with_for_update(skip_locked=True)
        )
    )
    if not rows:
        return []
    bookings = list(
        session.scalars(
            select(SlotBooking)
            .where(SlotBooking.plan_id.in_([r.id for r in rows]), SlotBooking.status.in_(LIVE))
            .order_by(SlotBooking.id)
        )
    )
    # All the batch's windows in one sorted lock (see schedules/capacity.py).
    change_capacity(session, release=bookings, now=now)
    for row in rows:
        row.status, row.ended_at, row.end_reason = "expired", now, "tentative hold expired"
        _close_deadlines(session, row, "cancelled", now)
        order = session.get(TherapyOrder, row.order_id)
        assert order is not None
        record_audit(
            session,
            now=now,
            actor_user_id=None,
            action="plan_expire",
            entity_type="journey_plan",
            entity_id=row.public_id,
            changes={"status": ["held", "expired"]},
            reason="tentative hold expired",
            site_id=order.treatment_site_id,
        )
        _notify(
            session,
            site_ids=[],
            kind="hold_expired",
            subject=f"Hold on journey plan {row.public_id} expired",
            body=f"Order {order.public_id}: the tentative hold lapsed; its capacity was released",
            key=f"{row.public_id}:expired",
            now=now,
            order=order,
            plan=row,
            extra_user_ids=[row.created_by_id] if row.created_by_id else [],
        )
    session.flush()
    return [r.public_id for r in rows]


# ---------------------------------------------------------------------------------------------
# Rescheduling


@dataclass(frozen=True)
class ReschedulePreview:
    """The knock-on effects of moving one step, and the digest that confirms exactly them."""

    plan_public_id: str
    step: StepKind
    requested_start: datetime
    replan: Replan
    fingerprint: str


def _preview(
    session: Session, row: JourneyPlan, step: StepKind, new_start: datetime
) -> ReschedulePreview:
    plan = stored_plan(session, row)
    if not plan.has_step(step):
        raise TrackerError("invalid_request", f"plan {row.public_id} has no {step} step")
    profile_row = session.get(ProductProfile, row.product_profile_id)
    assert profile_row is not None
    credit: dict[int, int] = {}
    for booking in _live_bookings(session, row):
        for window_id in session.scalars(
            select(BookingWindow.window_id).where(BookingWindow.booking_id == booking.id)
        ):
            credit[window_id] = credit.get(window_id, 0) + booking.units
    try:
        replan = replan_step(
            plan,
            step,
            require_aware(new_start),
            profile_for(profile_row),
            SqlCapacity(session, credit=credit),
        )
    except ValueError as exc:
        raise TrackerError("invalid_request", str(exc)) from exc
    body = [
        row.public_id,
        row.version_id,
        step.value,
        [
            (m.step.value, m.new_start.isoformat(), m.new_end.isoformat(), m.new_resource)
            for m in replan.moves
        ],
    ]
    digest = hashlib.sha256(json.dumps(body).encode()).hexdigest()[:16]
    return ReschedulePreview(row.public_id, step, new_start, replan, digest)


def preview_reschedule(
    *,
    uow: UnitOfWork,
    principal: Principal,
    plan_public_id: str,
    step: StepKind,
    new_start: datetime,
    now: datetime,
) -> ReschedulePreview:
    """Show what moving one step would change (knock-on, capacity, rules); writes nothing."""
    session = uow.session
    row = session.scalar(select(JourneyPlan).where(JourneyPlan.public_id == plan_public_id))
    if row is None:
        raise TrackerError("not_found", f"no plan {plan_public_id}")
    order = session.get(TherapyOrder, row.order_id)
    assert order is not None
    _visible_order(session, principal, order.public_id)
    principal.require_role_at(PLANNING_ROLES, order.treatment_site_id, "change journey plans")
    _require_live(row, require_aware(now))
    return _preview(session, row, StepKind(step), new_start)


def reschedule_step(
    *,
    uow: UnitOfWork,
    principal: Principal,
    plan_public_id: str,
    step: StepKind,
    new_start: datetime,
    reason: str,
    confirm: str,
    now: datetime,
) -> ReschedulePreview:
    """Apply a previewed move: rebook atomically, refresh deadlines, audit, notify the sites.

    ``confirm`` must be the preview's fingerprint: anything that changed since the user looked
    (capacity, the plan itself) refuses the change with ``plan_changed``.
    """
    session = uow.session
    now = require_aware(now)
    why = _reason(reason)
    row, order = _lock_plan(session, principal, plan_public_id)
    _require_live(row, now)
    preview = _preview(session, row, StepKind(step), new_start)
    if not confirm or confirm != preview.fingerprint:
        raise TrackerError(
            "plan_changed", "the knock-on effects changed since the preview; review them again"
        )
    replan = preview.replan
    for move in replan.moves:
        if move.problem:
            raise TrackerError(_NO_CAPACITY[move.step], move.problem)
    if not any(m.moved for m in replan.moves):
        raise TrackerError("invalid_request", "that move changes nothing")
    old_bookings = {StepKind(b.step_kind): b for b in _live_bookings(session, row)}
    rebooked = [m.step for m in replan.moves if m.rebooked]
    new_plan = replan.plan
    reserve = [new_plan.step(kind).booking for kind in rebooked]
    reserved = change_capacity(
        session,
        reserve=[b for b in reserve if b is not None],
        release=[old_bookings[k] for k in rebooked if k in old_bookings],
        now=now,
    )
    status = "held" if row.status == "held" else "booked"
    new_rows = _write_bookings(session, row, rebooked, reserved, status, now)
    steps = {
        StepKind(s.kind): s
        for s in session.scalars(select(PlanStepRow).where(PlanStepRow.plan_id == row.id))
    }
    for step_ in new_plan.steps:
        target = steps[step_.kind]
        target.starts_at, target.ends_at, target.deadline_at = (
            step_.start,
            step_.end,
            step_.deadline,
        )
        if step_.kind in new_rows:
            target.booking_id = new_rows[step_.kind].id
    row.explanations = _explanations_json(new_plan)
    _close_deadlines(session, row, "superseded", now)
    _write_deadlines(session, row, order, new_plan, now)
    changes: dict[str, Any] = {
        m.step.value: [
            f"{m.old_start.isoformat()}..{m.old_end.isoformat()}",
            f"{m.new_start.isoformat()}..{m.new_end.isoformat()}",
        ]
        for m in replan.moves
        if m.moved
    }
    flagged = [f"{m.step.value}: {v.code}" for m in replan.moves for v in m.violations]
    if flagged:
        changes["rule_flags"] = [None, flagged]
    session.flush()
    record_audit(
        session,
        now=now,
        actor_user_id=principal.user_id,
        action="plan_reschedule",
        entity_type="journey_plan",
        entity_id=row.public_id,
        changes=changes,
        reason=why,
        site_id=order.treatment_site_id,
    )
    site_ids = _site_ids(order)
    moved_kinds = {m.step for m in replan.moves if m.moved}
    affected = {site_ids[s.site] for s in new_plan.steps if s.kind in moved_kinds}
    affected.add(order.treatment_site_id)
    moved_text = "; ".join(
        f"{m.step.value.replace('_', ' ')} {_local(m.old_start, new_plan.step(m.step).tz)} -> "
        f"{_local(m.new_start, new_plan.step(m.step).tz)}"
        for m in replan.moves
        if m.moved
    )
    _notify(
        session,
        site_ids=affected,
        kind="plan_rescheduled",
        subject=f"Journey plan {row.public_id} rescheduled",
        body=f"Order {order.public_id}: {moved_text}. Reason: {why}"
        + (f". Check: {', '.join(flagged)}" if flagged else ""),
        key=f"{row.public_id}:v{row.version_id}:rescheduled",
        now=now,
        order=order,
        plan=row,
        exclude_user_id=principal.user_id,
    )
    session.flush()
    return preview


# ---------------------------------------------------------------------------------------------
# Waitlist


def rank_entries(
    session: Session, *, site_id: int, now: datetime
) -> list[tuple[WaitlistEntry, Any]]:
    """Waiting entries of a manufacturing site, best score first, with their Score."""
    entries = {
        e.public_id: e
        for e in session.scalars(
            select(WaitlistEntry).where(
                WaitlistEntry.site_id == site_id, WaitlistEntry.status == "waiting"
            )
        )
    }
    ranked = rank_waitlist(
        [(pid, priority_inputs(e, now)) for pid, e in entries.items()], DEFAULT_PRIORITY_POLICY
    )
    return [(entries[pid], score) for pid, score in ranked]


def priority_inputs(entry: WaitlistEntry, now: datetime) -> PriorityInputs:
    """The documented score inputs of an entry at ``now``."""
    return PriorityInputs(
        days_waiting=max(0, (require_aware(now) - entry.joined_at).days),
        urgency_category=entry.urgency_category,
        bridging_therapy_failing=entry.bridging_therapy_failing,
        prior_slot_cancellations=entry.prior_slot_cancellations,
    )


def _check_urgency(category: str) -> None:
    if category not in DEFAULT_PRIORITY_POLICY.urgency_levels:
        known = ", ".join(DEFAULT_PRIORITY_POLICY.urgency_levels)
        raise TrackerError("invalid_request", f"urgency is one of: {known}")


def join_waitlist(
    *,
    uow: UnitOfWork,
    principal: Principal,
    order_public_id: str,
    urgency_category: str,
    now: datetime,
    bridging_therapy_failing: bool = False,
    prior_slot_cancellations: int = 0,
    note: str = "",
) -> WaitlistEntry:
    """Put an order on its manufacturing site's waitlist for a slot."""
    session = uow.session
    now = require_aware(now)
    order = lock_order(session, order_public_id, principal)
    principal.require_role_at(PLANNING_ROLES, order.treatment_site_id, "manage the waitlist")
    _check_urgency(urgency_category)
    if prior_slot_cancellations < 0:
        raise TrackerError("invalid_request", "cancellations cannot be negative")
    waiting = session.scalar(
        select(WaitlistEntry).where(
            WaitlistEntry.order_id == order.id, WaitlistEntry.status == "waiting"
        )
    )
    if waiting is not None:
        raise TrackerError("conflict", f"order {order.public_id} is already waiting")
    entry = WaitlistEntry(
        public_id=new_public_id("WL"),
        order_id=order.id,
        site_id=order.manufacturing_site_id,
        product_code=order.product_profile.code,
        status="waiting",
        joined_at=now,
        urgency_category=urgency_category,
        bridging_therapy_failing=bridging_therapy_failing,
        prior_slot_cancellations=prior_slot_cancellations,
        note=note.strip(),
        created_by_id=principal.user_id,
    )
    session.add(entry)
    session.flush()
    record_audit(
        session,
        now=now,
        actor_user_id=principal.user_id,
        action="waitlist_join",
        entity_type="waitlist_entry",
        entity_id=entry.public_id,
        changes={
            "order": [None, order.public_id],
            "urgency_category": [None, urgency_category],
            "bridging_therapy_failing": [None, bridging_therapy_failing],
            "prior_slot_cancellations": [None, prior_slot_cancellations],
        },
        site_id=order.manufacturing_site_id,
    )
    return entry


def _lock_entry(
    session: Session, principal: Principal, public_id: str
) -> tuple[WaitlistEntry, TherapyOrder]:
    entry = session.scalar(
        select(WaitlistEntry).where(WaitlistEntry.public_id == public_id).with_for_update()
    )
    if entry is None:
        raise TrackerError("not_found", f"no waitlist entry {public_id}")
    order = session.get(TherapyOrder, entry.order_id)
    assert order is not None
    _visible_order(session, principal, order.public_id)
    principal.require_role_at(PLANNING_ROLES, order.treatment_site_id, "manage the waitlist")
    if entry.status != "waiting":
        raise TrackerError("conflict", f"entry {public_id} is {entry.status}")
    return entry, order


def update_waitlist_entry(
    *,
    uow: UnitOfWork,
    principal: Principal,
    entry_public_id: str,
    reason: str,
    now: datetime,
    urgency_category: str | None = None,
    bridging_therapy_failing: bool | None = None,
    prior_slot_cancellations: int | None = None,
) -> WaitlistEntry:
    """Change a waiting entry's score inputs (committee decision; reason required, audited)."""
    session = uow.session
    why = _reason(reason)
    entry, order = _lock_entry(session, principal, entry_public_id)
    before = {
        "urgency_category": entry.urgency_category,
        "bridging_therapy_failing": entry.bridging_therapy_failing,
        "prior_slot_cancellations": entry.prior_slot_cancellations,
    }
    if urgency_category is not None:
        _check_urgency(urgency_category)
        entry.urgency_category = urgency_category
    if bridging_therapy_failing is not None:
        entry.bridging_therapy_failing = bridging_therapy_failing
    if prior_slot_cancellations is not None:
        if prior_slot_cancellations < 0:
            raise TrackerError("invalid_request", "cancellations cannot be negative")
        entry.prior_slot_cancellations = prior_slot_cancellations
    after = {k: getattr(entry, k) for k in before}
    record_audit(
        session,
        now=require_aware(now),
        actor_user_id=principal.user_id,
        action="waitlist_update",
        entity_type="waitlist_entry",
        entity_id=entry.public_id,
        changes=diff(before, after),
        reason=why,
        site_id=order.manufacturing_site_id,
    )
    return entry


def leave_waitlist(
    *, uow: UnitOfWork, principal: Principal, entry_public_id: str, reason: str, now: datetime
) -> WaitlistEntry:
    """Take an entry off the waitlist (reason required, audited)."""
    session = uow.session
    why = _reason(reason)
    entry, order = _lock_entry(session, principal, entry_public_id)
    entry.status, entry.ended_at, entry.end_reason = "removed", require_aware(now), why
    record_audit(
        session,
        now=now,
        actor_user_id=principal.user_id,
        action="waitlist_leave",
        entity_type="waitlist_entry",
        entity_id=entry.public_id,
        changes={"status": ["waiting", "removed"]},
        reason=why,
        site_id=order.manufacturing_site_id,
    )
    return entry


# ---------------------------------------------------------------------------------------------
# Journey profiles


def update_journey_profile(
    *,
    uow: UnitOfWork,
    principal: Principal,
    code: str,
    values: dict[str, Any],
    confirmed: Iterable[str],
    reason: str,
    now: datetime,
) -> ProductProfile:
    """Save edited journey numbers as a new profile version (administrators; audited)."""
    _require_admin(principal, "edit product profiles")
    session = uow.session
    why = _reason(reason)
    latest = session.scalar(
        select(ProductProfile).where(ProductProfile.code == code, ProductProfile.active.is_(True))
    )
    if latest is None:
        raise TrackerError("not_found", f"no active product profile {code}")
    before = stored_values(latest.data)
    merged = {**before, **values}
    confirmed_now = sorted(set(confirmed))
    unknown = [f for f in confirmed_now if f not in FIELD_NAMES]
    if unknown:
        raise TrackerError("invalid_request", f"unknown journey fields: {', '.join(unknown)}")
    try:
        build_profile(
            code=code,
            version=latest.version + 1,
            starting_material=latest.starting_material,
            values=merged,
        )
    except ValueError as exc:
        raise TrackerError("invalid_request", str(exc)) from exc
    data = dict(latest.data)
    data[JOURNEY_KEY] = merged
    data[CONFIRMED_KEY] = confirmed_now
    old_confirmed = sorted(confirmed_fields(latest.data))
    profile = order_service.create_product_profile(
        uow=uow,
        code=latest.code,
        name=latest.name,
        product_code=latest.product_code,
        starting_material=latest.starting_material,
        data=data,
        now=now,
        actor_user_id=principal.user_id,
    )
    changes = diff(before, merged)
    if old_confirmed != confirmed_now:
        changes["confirmed"] = [old_confirmed, confirmed_now]
    record_audit(
        session,
        now=now,
        actor_user_id=principal.user_id,
        action="update_journey",
        entity_type="product_profile",
        entity_id=f"{code}@{profile.version}",
        changes=changes,
        reason=why,
    )
    return profile


# ---------------------------------------------------------------------------------------------
# Calendar feeds


def _token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def issue_calendar_feed(
    *, uow: UnitOfWork, principal: Principal, site_code: str, now: datetime
) -> str:
    """Issue a secret ICS feed token for a site; only its hash is stored, shown once."""
    session = uow.session
    site = order_service.site_by_code(session, site_code)
    if principal.user_id is None or not principal.can_see_site(site.id):
        raise TrackerError("forbidden", "only staff of the site may subscribe to its calendar")
    token = secrets.token_urlsafe(24)
    feed = CalendarFeed(
        site_id=site.id,
        user_id=principal.user_id,
        token_hash=_token_hash(token),
        created_at=require_aware(now),
    )
    session.add(feed)
    session.flush()
    record_audit(
        session,
        now=now,
        actor_user_id=principal.user_id,
        action="issue_calendar_feed",
        entity_type="site",
        entity_id=site.code,
        changes={"feed": [None, feed.id]},
        site_id=site.id,
    )
    return token


def feed_site(*, uow: UnitOfWork, token: str, now: datetime) -> Site:
    """The site a live feed token belongs to (its holder must still be active)."""
    session = uow.session
    feed = session.scalar(
        select(CalendarFeed).where(
            CalendarFeed.token_hash == _token_hash(token), CalendarFeed.revoked_at.is_(None)
        )
    )
    user = session.get(User, feed.user_id) if feed is not None else None
    if feed is None or user is None or not user.active:
        raise TrackerError("not_found", "no such calendar feed")
    feed.last_used_at = require_aware(now)
    site = session.get(Site, feed.site_id)
    assert site is not None
    return site


# ---------------------------------------------------------------------------------------------
# Read-only helpers for the quality gates (re-collection knock-on, planned lymphodepletion)


def live_plan(session: Session, order_id: int) -> JourneyPlan | None:
    """The order's held or booked plan, if it has one."""
    return _live_plan(session, order_id)


def knock_on_preview(
    session: Session, row: JourneyPlan, step: str, new_start: datetime
) -> ReschedulePreview:
    """What moving ``step`` of a live plan to ``new_start`` would change; writes nothing."""
    return _preview(session, row, StepKind(step), new_start)


def step_start(session: Session, row: JourneyPlan, kind: str) -> datetime | None:
    """When a step of the plan starts (None when the plan has no such step)."""
    return session.scalar(
        select(PlanStepRow.starts_at).where(PlanStepRow.plan_id == row.id, PlanStepRow.kind == kind)
    )
