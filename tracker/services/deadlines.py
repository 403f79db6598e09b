"""Handoff deadlines: rows derived from the plan and the product profile, swept into alerts.

``set_deadline`` is the one entry point other features call (plans, scans); the custody
service calls the ``after_*`` hooks so the deadlines that follow from what already exists are
derived in the same transaction as the event that starts or ends them:

- pickup by / delivery by: a shipment's planned pickup and delivery;
- fresh stability: fresh starting material, from 'collected' to the start of manufacturing;
- shipper expiry: a cryoshipper's charge time plus its validated hold time, while it carries
  a shipment (and a hold-time alert when planned arrival plus margin is later);
- ambient exposure: a bag out of controlled temperature (AMBIENT_STATES) until it leaves
  that state, with the profile's per-transfer or cumulative budget;
- thaw to infusion: from 'thawed' to 'infused'.

Each deadline warns once before it is due and alerts once when it passes; a deadline met late
still leaves its breach on record.
"""

from __future__ import annotations

from datetime import datetime
from datetime import timedelta
from typing import Any

from sqlalchemy import and_
from sqlalchemy import bindparam
from sqlalchemy import or_
from sqlalchemy import select
from sqlalchemy.orm import Session
from sqlalchemy.orm import make_transient_to_detached

from tracker.clock import require_aware
from tracker.clock import to_local
from tracker.domain import alerting
from tracker.domain.alerting import AMBIENT_STATES
from tracker.domain.alerting import AlertKind
from tracker.domain.alerting import DeadlineKind
from tracker.domain.alerting import Notify
from tracker.domain.excursions import OutOfStorageInterval
from tracker.domain.excursions import ambient_exposure
from tracker.domain.excursions import hold_time_risk
from tracker.models import Alert
from tracker.models import CustodyEvent
from tracker.models import HandoffDeadline
from tracker.models import Item
from tracker.models import ProductProfile
from tracker.models import Shipment
from tracker.models import Site
from tracker.models import TherapyOrder
from tracker.services import alerts
from tracker.unit_of_work import UnitOfWork

LABELS = {
    DeadlineKind.pickup_by: "Pickup by",
    DeadlineKind.delivery_by: "Delivery by",
    DeadlineKind.fresh_stability: "Fresh material stability",
    DeadlineKind.shipper_expiry: "Cryoshipper hold expires",
    DeadlineKind.ambient_exposure: "Ambient exposure limit",
    DeadlineKind.thaw_to_infusion: "Thaw-to-infusion limit",
    DeadlineKind.plan_milestone: "Plan milestone",
}
_SMS = {
    DeadlineKind.pickup_by: ("pickup_warning", "pickup_overdue"),
    DeadlineKind.delivery_by: ("delivery_warning", "delivery_overdue"),
    DeadlineKind.shipper_expiry: ("shipper_hold", "deadline_overdue"),
}
_CRITICAL = frozenset({DeadlineKind.thaw_to_infusion, DeadlineKind.shipper_expiry})
_DONE_SHIPMENT = ("received", "cancelled")


def set_deadline(
    *,
    uow: UnitOfWork,
    kind: DeadlineKind,
    due_at: datetime,
    site_id: int,
    dedupe_key: str,
    now: datetime,
    starts_at: datetime | None = None,
    warn_at: datetime | None = None,
    label: str | None = None,
    order_id: int | None = None,
    item_id: int | None = None,
    shipment_id: int | None = None,
    profile_id: int | None = None,
    profile_version: int | None = None,
    profile_data: dict[str, Any] | None = None,
) -> HandoffDeadline:
    """Create a deadline, or move an open one (one row per dedupe key)."""
    return upsert_deadline(
        uow.session,
        kind=kind,
        due_at=due_at,
        site_id=site_id,
        dedupe_key=dedupe_key,
        now=now,
        starts_at=starts_at,
        warn_at=warn_at,
        label=label,
        order_id=order_id,
        item_id=item_id,
        shipment_id=shipment_id,
        profile_id=profile_id,
        profile_version=profile_version,
        profile_data=profile_data,
    )


def upsert_deadline(
    session: Session,
    *,
    kind: DeadlineKind,
    due_at: datetime,
    site_id: int,
    dedupe_key: str,
    now: datetime,
    starts_at: datetime | None = None,
    warn_at: datetime | None = None,
    label: str | None = None,
    order_id: int | None = None,
    item_id: int | None = None,
    shipment_id: int | None = None,
    profile_id: int | None = None,
    profile_version: int | None = None,
    profile_data: dict[str, Any] | None = None,
) -> HandoffDeadline:
    """``set_deadline`` inside a caller's session (custody hooks)."""
    now = require_aware(now)
    due_at = require_aware(due_at)
    if warn_at is None:
        warn_at = alerting.warn_at(
            kind, require_aware(starts_at or now), due_at, profile_data or {}
        )
    warn_at = min(require_aware(warn_at), due_at)
    values: dict[str, Any] = {
        "dedupe_key": dedupe_key,
        "kind": DeadlineKind(kind).value,
        "label": (label or LABELS[DeadlineKind(kind)])[:200],
        "due_at": due_at,
        "warn_at": warn_at,
        "order_id": order_id,
        "item_id": item_id,
        "shipment_id": shipment_id,
        "site_id": site_id,
        "profile_id": profile_id,
        "profile_version": profile_version,
        "status": "open",
        "created_at": now,
        "updated_at": now,
    }
    # Insert first: most keys are new (a custody event's deadlines), and then the insert is
    # the only statement. A key that exists (or that a concurrent transaction is inserting:
    # ON CONFLICT waits for it) inserts nothing, and the row is read under a lock below.
    new_id = alerts.insert_ignore(session, HandoffDeadline, values)
    if new_id is not None:
        # Ours: the row is exactly what we inserted (every column given, the rest NULL),
        # so it joins the session as a loaded row without being read back.
        return _attached(session, HandoffDeadline(id=new_id, **values))
    row = session.scalar(
        select(HandoffDeadline).where(HandoffDeadline.dedupe_key == dedupe_key).with_for_update()
    )
    assert row is not None
    if row.status != "open" or (row.due_at == due_at and row.warn_at == warn_at):
        return row
    # A moved deadline warns and alerts again if its new times are still ahead.
    row.due_at, row.warn_at, row.updated_at = due_at, warn_at, now
    if warn_at > now:
        row.warned_at = None
    if due_at > now:
        row.breached_at = None
    return row


def _attached(session: Session, row: HandoffDeadline) -> HandoffDeadline:
    """A row this transaction just inserted, as a persistent object with no SQL: the columns
    not given are NULL in the database and set to None here, so nothing is lazily loaded."""
    row.warned_at = row.breached_at = row.closed_at = None
    make_transient_to_detached(row)
    session.add(row)
    return row


def _open_for(session: Session, **where: Any) -> list[HandoffDeadline]:
    stmt = select(HandoffDeadline).where(HandoffDeadline.status == "open")
    for column, value in where.items():
        stmt = stmt.where(getattr(HandoffDeadline, column) == value)
    return list(session.scalars(stmt.with_for_update()))


def _alerts_of(session: Session, deadline: HandoffDeadline) -> list[Alert]:
    return list(
        session.scalars(
            select(Alert).where(Alert.deadline_id == deadline.id, Alert.status == "open")
        )
    )


def complete(session: Session, deadline: HandoffDeadline, *, at: datetime, now: datetime) -> None:
    """The awaited event happened at ``at``; met late, the breach is raised and kept."""
    if deadline.status != "open":
        return
    at = require_aware(at)
    if at > deadline.due_at and deadline.breached_at is None:
        _raise(session, deadline, "breach", now, late_at=at)
    deadline.status, deadline.closed_at, deadline.updated_at = "met", at, now
    for alert in _alerts_of(session, deadline):
        if alert.kind == AlertKind.deadline_warning:
            alerts.resolve_alert(session, alert, now=now, resolution="deadline met")
        else:
            # The breach stays on the page for review; nobody needs to be chased any more.
            alert.next_escalation_at = None


def cancel(session: Session, deadline: HandoffDeadline, *, now: datetime, why: str) -> None:
    if deadline.status != "open":
        return
    deadline.status, deadline.closed_at, deadline.updated_at = "cancelled", now, now
    for alert in _alerts_of(session, deadline):
        alerts.resolve_alert(session, alert, now=now, resolution=f"deadline cancelled: {why}")


def _site_tz(session: Session, site_id: int) -> str:
    site = session.get(Site, site_id)
    return site.timezone if site else "UTC"


def _raise(
    session: Session,
    deadline: HandoffDeadline,
    phase: str,
    now: datetime,
    *,
    late_at: datetime | None = None,
) -> Alert | None:
    kind = DeadlineKind(deadline.kind)
    warning = phase == "warning"
    due_local = to_local(deadline.due_at, _site_tz(session, deadline.site_id))
    due_text = due_local.strftime("%b %d %H:%M %Z")
    if warning:
        title = f"{deadline.label}: due {due_text}"
    elif late_at is not None:
        title = (
            f"{deadline.label}: missed, done "
            f"{alerting.format_duration(late_at - deadline.due_at)} late (due {due_text})"
        )
    else:
        title = f"{deadline.label}: passed at {due_text}"
    shipment = session.get(Shipment, deadline.shipment_id) if deadline.shipment_id else None
    item = session.get(Item, deadline.item_id) if deadline.item_id else None
    subject = shipment.public_id if shipment else (item.public_id if item else deadline.dedupe_key)
    warn_sms, breach_sms = _SMS.get(kind, ("deadline_warning", "deadline_overdue"))
    if warning:
        notify = Notify.first
    elif late_at is not None:
        notify = Notify.in_app  # already done: a record to review, not someone to chase
    else:
        notify = Notify.ladder
    if warning:
        deadline.warned_at = now
    else:
        deadline.breached_at = min(now, late_at) if late_at else now
    return alerts.raise_alert(
        session,
        dedupe_key=f"deadline:{deadline.id}:{phase}",
        kind=AlertKind.deadline_warning if warning else AlertKind.deadline_breach,
        severity="warning" if warning else ("critical" if kind in _CRITICAL else "alarm"),
        notify=notify,
        title=title,
        site_id=deadline.site_id,
        now=now,
        sms_template=warn_sms if warning else breach_sms,
        subject=subject,
        order_id=deadline.order_id,
        item_id=deadline.item_id,
        shipment_id=deadline.shipment_id,
        deadline_id=deadline.id,
        details={"deadline_kind": kind.value, "due_at": deadline.due_at.isoformat()},
    )


def sweep_deadlines(*, uow: UnitOfWork, now: datetime, limit: int = 100) -> int:
    """Warn on deadlines coming due and alert on those that passed. Safe to run twice at once."""
    session = uow.session
    due = list(
        session.scalars(
            select(HandoffDeadline)
            .where(
                HandoffDeadline.status == "open",
                HandoffDeadline.breached_at.is_(None),
                or_(
                    HandoffDeadline.due_at <= now,
                    and_(HandoffDeadline.warned_at.is_(None), HandoffDeadline.warn_at <= now),
                ),
            )
            .order_by(HandoffDeadline.due_at)
            .limit(limit)
            .with_for_update(skip_locked=True)
        )
    )
    for deadline in due:
        if deadline.due_at <= now:
            for alert in _alerts_of(session, deadline):
                if alert.kind == AlertKind.deadline_warning:
                    alerts.resolve_alert(session, alert, now=now, resolution="deadline passed")
            _raise(session, deadline, "breach", now)
        else:
            _raise(session, deadline, "warning", now)
    uow.commit()
    return len(due)


# --- derivation from custody events ---------------------------------------------------------


def _profile(item: Item) -> tuple[Any, dict[str, Any]]:
    profile = item.order.product_profile if item.order else None
    return profile, (profile.data if profile else {})


_Q_TRANSITIONS = (
    select(CustodyEvent.to_state, CustodyEvent.occurred_at)
    .where(CustodyEvent.item_id == bindparam("item"), CustodyEvent.event_type == "transition")
    .order_by(CustodyEvent.occurred_at, CustodyEvent.seq)
)


def _ambient_intervals(
    session: Session, item: Item, rule_name: str, material: str
) -> list[OutOfStorageInterval]:
    """The bag's earlier spells in ambient states that count against the same budget."""
    # Custody events are written as they happen (rows.insert_attached): nothing to flush.
    events = list(session.connection().execute(_Q_TRANSITIONS, {"item": item.id}))
    spells = []
    ambient = AMBIENT_STATES.get(item.kind, frozenset())
    for (state, start), nxt in zip(events, [*events[1:], None][: len(events)], strict=True):
        if state not in ambient:
            continue
        _, data = _profile(item)
        if alerting.ambient_rule_for(item.kind, state, material, data).name != rule_name:
            continue
        spells.append(OutOfStorageInterval(item.public_id, start, nxt[1] if nxt else None))
    return spells


def after_item_event(session: Session, *, item: Item, event: CustodyEvent, now: datetime) -> None:
    """Derive, meet or cancel the deadlines an item's custody change starts or ends."""
    state, previous, at = event.to_state or "", event.from_state or "", event.occurred_at
    profile, data = _profile(item)
    material = profile.starting_material if profile else "cryopreserved"
    common: dict[str, Any] = {
        "site_id": event.site_id or item.site_id,
        "order_id": item.order_id,
        "item_id": item.id,
        "profile_id": profile.id if profile else None,
        "profile_version": profile.version if profile else None,
        "profile_data": data,
        "now": now,
    }
    ambient = AMBIENT_STATES.get(item.kind, frozenset())
    if previous in ambient:
        for row in _open_for(session, item_id=item.id, kind=DeadlineKind.ambient_exposure):
            complete(session, row, at=at, now=now)
    if state in ambient:
        rule = alerting.ambient_rule_for(item.kind, state, material, data)
        spells = _ambient_intervals(session, item, rule.name, material)
        status = ambient_exposure(spells, rule, now=at).get(item.public_id)
        due = status.deadline if status and status.deadline else at
        upsert_deadline(
            session,
            kind=DeadlineKind.ambient_exposure,
            due_at=due,
            starts_at=at,
            dedupe_key=f"ambient_exposure:{item.id}:{event.id}",
            label=(
                f"Ambient exposure limit ({rule.name}, "
                f"{alerting.format_duration(rule.max_duration)} {rule.mode.replace('_', ' ')})"
            ),
            **common,
        )
    if (
        item.kind == "apheresis_bag"
        and state == "collected"
        and material == "fresh"
        and data.get("fresh_stability_hours")
    ):
        upsert_deadline(
            session,
            kind=DeadlineKind.fresh_stability,
            due_at=at + timedelta(hours=float(data["fresh_stability_hours"])),
            starts_at=at,
            dedupe_key=f"fresh_stability:{item.id}",
            **common,
        )
    if state in ("in_manufacturing", "consumed"):
        for row in _open_for(session, item_id=item.id, kind=DeadlineKind.fresh_stability):
            complete(session, row, at=at, now=now)
    if state == "thawed" and data.get("thaw_to_infusion_minutes"):
        upsert_deadline(
            session,
            kind=DeadlineKind.thaw_to_infusion,
            due_at=at + timedelta(minutes=float(data["thaw_to_infusion_minutes"])),
            starts_at=at,
            dedupe_key=f"thaw_to_infusion:{item.id}",
            **common,
        )
    if state == "infused":
        for row in _open_for(session, item_id=item.id, kind=DeadlineKind.thaw_to_infusion):
            complete(session, row, at=at, now=now)
    _meet_plan_milestones(session, item=item, state=state, at=at, now=now)
    if state in ("discarded", "returned_to_manufacturer"):
        for row in _open_for(session, item_id=item.id):
            cancel(session, row, now=now, why=f"bag {state.replace('_', ' ')}")
    if item.kind == "cryoshipper" and state == "charged":
        for shipment in session.scalars(
            select(Shipment).where(
                Shipment.shipper_id == item.id, Shipment.state.not_in(_DONE_SHIPMENT)
            )
        ):
            derive_shipment_deadlines(session, shipment=shipment, now=now)


def plan_milestone_key(plan_id: int, milestone: str) -> str:
    return f"plan:{plan_id}:{milestone}"


def watch_plan_milestones(
    session: Session,
    *,
    plan_id: int,
    order_id: int,
    milestones: list[tuple[str, datetime, int, str]],
    profile_id: int | None,
    now: datetime,
) -> None:
    """Hand a booked plan's dates to the alerting side: one deadline per watched milestone.

    ``milestones`` holds (milestone kind, due, site id, description). A re-plan moves the
    open rows (same keys) and cancels those the new plan no longer has.
    """
    keep = set()
    for milestone, due_at, site_id, description in milestones:
        if milestone not in alerting.PLAN_MILESTONES_MET_BY:
            continue
        key = plan_milestone_key(plan_id, milestone)
        keep.add(key)
        upsert_deadline(
            session,
            kind=DeadlineKind.plan_milestone,
            due_at=due_at,
            site_id=site_id,
            dedupe_key=key,
            label=description,
            order_id=order_id,
            profile_id=profile_id,
            profile_version=_profile_version(session, profile_id),
            now=now,
        )
    for row in _open_for(session, order_id=order_id, kind=DeadlineKind.plan_milestone):
        if row.dedupe_key.startswith(f"plan:{plan_id}:") and row.dedupe_key not in keep:
            cancel(session, row, now=now, why="no longer in the plan")


def _profile_version(session: Session, profile_id: int | None) -> int | None:
    profile = session.get(ProductProfile, profile_id) if profile_id is not None else None
    return profile.version if profile else None


def close_plan_milestones(
    session: Session, *, plan_id: int, order_id: int, now: datetime, why: str
) -> None:
    """Cancel every open milestone deadline of a plan (cancelled or expired)."""
    for row in _open_for(session, order_id=order_id, kind=DeadlineKind.plan_milestone):
        if row.dedupe_key.startswith(f"plan:{plan_id}:"):
            cancel(session, row, now=now, why=why)


def _meet_plan_milestones(
    session: Session, *, item: Item, state: str, at: datetime, now: datetime
) -> None:
    met = alerting.plan_milestones_met(item.kind, state)
    if not met or item.order_id is None:
        return
    for row in _open_for(session, order_id=item.order_id, kind=DeadlineKind.plan_milestone):
        if row.dedupe_key.rsplit(":", 1)[-1] in met:
            complete(session, row, at=at, now=now)


def derive_shipment_deadlines(session: Session, *, shipment: Shipment, now: datetime) -> None:
    """(Re)derive a shipment's pickup, delivery and shipper-hold deadlines from its plan."""
    if shipment.state in _DONE_SHIPMENT:
        return
    order = session.get(TherapyOrder, shipment.order_id)
    profile = order.product_profile if order else None
    data = profile.data if profile else {}
    common: dict[str, Any] = {
        "site_id": shipment.origin_site_id,
        "order_id": shipment.order_id,
        "shipment_id": shipment.id,
        "profile_id": profile.id if profile else None,
        "profile_version": profile.version if profile else None,
        "profile_data": data,
        "now": now,
    }
    if shipment.planned_pickup_at and shipment.state in ("planned", "packed"):
        upsert_deadline(
            session,
            kind=DeadlineKind.pickup_by,
            due_at=shipment.planned_pickup_at,
            starts_at=shipment.created_at,
            dedupe_key=f"pickup_by:{shipment.id}",
            **common,
        )
    if shipment.planned_delivery_at:
        upsert_deadline(
            session,
            kind=DeadlineKind.delivery_by,
            due_at=shipment.planned_delivery_at,
            starts_at=shipment.planned_pickup_at or shipment.created_at,
            dedupe_key=f"delivery_by:{shipment.id}",
            **common,
        )
    shipper = shipment.shipper
    if shipper is None or shipper.charged_at is None or not shipper.validated_hold_hours:
        return
    hold = timedelta(hours=shipper.validated_hold_hours)
    expiry = upsert_deadline(
        session,
        kind=DeadlineKind.shipper_expiry,
        due_at=shipper.charged_at + hold,
        starts_at=shipper.charged_at,
        dedupe_key=f"shipper_expiry:{shipment.id}",
        **common,
    )
    arrival = shipment.planned_delivery_at
    if arrival is None:
        return
    risk = hold_time_risk(shipper.charged_at, hold, arrival, alerting.hold_margin(data))
    if risk.at_risk:
        tz = shipment.origin_site.timezone
        alerts.raise_alert(
            session,
            dedupe_key=(
                f"shipper_hold:{shipment.id}:{risk.expires_at.isoformat()}:{arrival.isoformat()}"
            ),
            kind=AlertKind.shipper_hold,
            severity="alarm",
            notify=Notify.ladder,
            title=(
                f"Shipper {shipper.serial} hold expires "
                f"{to_local(risk.expires_at, tz):%b %d %H:%M %Z}, before planned arrival "
                f"plus {alerting.format_duration(risk.margin)} margin "
                f"(short by {alerting.format_duration(-risk.slack)})"
            ),
            site_id=shipment.origin_site_id,
            now=now,
            sms_template="shipper_hold",
            subject=shipment.public_id,
            order_id=shipment.order_id,
            item_id=shipper.id,
            shipment_id=shipment.id,
            deadline_id=expiry.id,
            details={"slack_seconds": int(risk.slack.total_seconds())},
        )


def after_shipment_event(
    session: Session, *, shipment: Shipment, event: CustodyEvent, now: datetime
) -> None:
    """Meet or cancel a shipment's deadlines as it is picked up, delivered or received."""
    state, at = event.to_state, event.occurred_at
    meets = {
        "picked_up": (DeadlineKind.pickup_by,),
        "delivered": (DeadlineKind.pickup_by, DeadlineKind.delivery_by),
        "received": (
            DeadlineKind.pickup_by,
            DeadlineKind.delivery_by,
            DeadlineKind.shipper_expiry,
        ),
    }.get(state or "", ())
    for kind in meets:
        for row in _open_for(session, shipment_id=shipment.id, kind=kind):
            complete(session, row, at=at, now=now)
    if state == "cancelled":
        for row in _open_for(session, shipment_id=shipment.id):
            cancel(session, row, now=now, why="shipment cancelled")
    if state == "packed" and shipment.logger_serial:
        from tracker.services.readings import start_series

        start_series(session, serial=shipment.logger_serial, at=at)


def rederive_open_shipments(*, uow: UnitOfWork, now: datetime, limit: int = 500) -> int:
    """Re-derive deadlines for shipments still on the road (plans may change anywhere)."""
    session = uow.session
    shipments = list(
        session.scalars(
            select(Shipment)
            .where(Shipment.state.not_in(_DONE_SHIPMENT))
            .order_by(Shipment.id)
            .limit(limit)
        )
    )
    for shipment in shipments:
        derive_shipment_deadlines(session, shipment=shipment, now=now)
    uow.commit()
    return len(shipments)
