"""Alerts: raised once per dedupe key, notified up a site's escalation ladder, acknowledged
with a comment (web) or a courier's ``ACK <code>`` (SMS); QA dispositions that gate custody.

The ladder is courier -> backup courier -> coordinator -> on-call manager by default, each rung
with its own acknowledgement timeout. SMS rungs write outbox rows in the caller's transaction
(the transactional outbox): the alert and its texts commit together or not at all.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import datetime
from datetime import timedelta
from functools import cache
from typing import Any

from sqlalchemy import Table
from sqlalchemy import bindparam
from sqlalchemy import exists
from sqlalchemy import func
from sqlalchemy import or_
from sqlalchemy import select
from sqlalchemy import text
from sqlalchemy import update
from sqlalchemy.dialects import postgresql
from sqlalchemy.dialects import sqlite
from sqlalchemy.orm import Session

from tracker.clock import require_aware
from tracker.clock import to_local
from tracker.domain.access import Role
from tracker.domain.alerting import GATING_LEVELS
from tracker.domain.alerting import Decision
from tracker.domain.alerting import LadderRole
from tracker.domain.alerting import Notify
from tracker.domain.alerting import last_digits
from tracker.domain.custody import CustodyState
from tracker.domain.errors import TrackerError
from tracker.domain.sms_templates import Place
from tracker.domain.sms_templates import SmsContext
from tracker.domain.sms_templates import render
from tracker.models import Alert
from tracker.models import EscalationStep
from tracker.models import ExcursionItem
from tracker.models import ExcursionRecord
from tracker.models import HandoffDeadline
from tracker.models import Item
from tracker.models import QaDisposition
from tracker.models import Shipment
from tracker.models import Site
from tracker.models import SmsOptOut
from tracker.models import SmsOutbox
from tracker.models import TherapyOrder
from tracker.models import User
from tracker.services.audit import record_audit
from tracker.services.principals import Principal
from tracker.services.principals import scope_orders
from tracker.unit_of_work import UnitOfWork

SMS_CHANNEL = "tracker_sms"  # PostgreSQL NOTIFY channel the dispatcher listens on

# When a site has no ladder of its own: the shipment's courier by SMS, then the site's
# coordinators on the alerts page.
DEFAULT_LADDER = (
    (LadderRole.courier, "sms", 10),
    (LadderRole.coordinator, "in_app", 15),
)


def insert_ignore(session: Session, model: type[Any], values: dict[str, Any]) -> Any | None:
    """INSERT ... ON CONFLICT DO NOTHING; the new primary key, or None if the row existed.

    This is how repeats are stopped by stored markers: two sweepers or two requests racing
    on one dedupe key insert it once, and neither transaction fails.
    """
    if session.new:
        session.flush()  # the row may reference one still pending; nothing else is read
    table = model.__table__
    if not values.keys() <= set(table.c.keys()):  # Core would drop an unknown key silently
        raise ValueError(f"{table.name} has no column {sorted(values.keys() - table.c.keys())}")
    conn = session.connection()
    stmt = _insert_ignore_statement(conn.dialect.name, table)
    row = conn.execute(stmt, values).first()
    if row is None:
        return None
    return row[0] if len(row) == 1 else tuple(row)


@cache
def _insert_ignore_statement(dialect: str, table: Table) -> Any:
    # One statement object per table (the values come as parameters): SQLAlchemy finds its
    # compiled form by identity instead of building and keying a new statement per call.
    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    return insert(table).on_conflict_do_nothing().returning(*table.primary_key.columns)


def wake_dispatcher(session: Session) -> None:
    """Ask the dispatcher to look now; PostgreSQL delivers the NOTIFY when we commit."""
    if session.get_bind().dialect.name == "postgresql":
        session.execute(text("SELECT pg_notify(:channel, '')"), {"channel": SMS_CHANNEL})


def job_code_for(subject: str) -> str:
    """An opaque, stable job code for SMS (a digest of an already opaque reference)."""
    return "J-" + hashlib.sha256(f"job:{subject}".encode()).hexdigest()[:6].upper()


def _new_ack_code(session: Session) -> str:
    for _ in range(50):
        code = f"{secrets.randbelow(9000) + 1000}"
        taken = session.scalar(
            select(Alert.id).where(Alert.ack_code == code, Alert.status == "open").limit(1)
        )
        if taken is None:
            return code
    return f"{secrets.randbelow(9000) + 1000}"  # 50 collisions: replies are matched by phone too


# --- ladders ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Rung:
    position: int
    role: LadderRole
    channel: str
    timeout: timedelta
    user: User | None


def ladder_for(session: Session, site_id: int) -> list[Rung]:
    """A site's escalation ladder, or the default one."""
    steps = list(
        session.scalars(
            select(EscalationStep)
            .where(EscalationStep.site_id == site_id)
            .order_by(EscalationStep.position)
        )
    )
    if not steps:
        return [
            Rung(i, role, channel, timedelta(minutes=minutes), None)
            for i, (role, channel, minutes) in enumerate(DEFAULT_LADDER)
        ]
    return [
        Rung(
            s.position,
            LadderRole(s.role),
            s.channel,
            timedelta(minutes=s.ack_timeout_minutes),
            s.user,
        )
        for s in steps
    ]


def set_ladder(
    *,
    uow: UnitOfWork,
    site_id: int,
    steps: list[tuple[LadderRole, int | None, str, int]],
    now: datetime,
    actor_user_id: int | None = None,
    reason: str | None = None,
) -> None:
    """Replace a site's ladder: (role, user id or None for the courier, channel, timeout min)."""
    session = uow.session
    old = [
        (s.role, s.user_id, s.channel, s.ack_timeout_minutes)
        for s in session.scalars(select(EscalationStep).where(EscalationStep.site_id == site_id))
    ]
    for step in session.scalars(select(EscalationStep).where(EscalationStep.site_id == site_id)):
        session.delete(step)
    session.flush()
    for position, (role, user_id, channel, minutes) in enumerate(steps):
        session.add(
            EscalationStep(
                site_id=site_id,
                position=position,
                role=LadderRole(role).value,
                user_id=user_id,
                channel=channel,
                ack_timeout_minutes=minutes,
            )
        )
    session.flush()
    record_audit(
        session,
        now=now,
        actor_user_id=actor_user_id,
        action="set_ladder",
        entity_type="site",
        entity_id=str(site_id),
        changes={"ladder": [old, [[str(r), u, c, m] for r, u, c, m in steps]]},
        site_id=site_id,
        reason=reason,
    )


def _recipients(session: Session, rung: Rung, alert: Alert) -> list[User]:
    if rung.role is LadderRole.courier:
        if alert.shipment_id is None:
            return []
        shipment = session.get(Shipment, alert.shipment_id)
        courier = session.get(User, shipment.courier_user_id) if shipment else None
        return [courier] if courier is not None else ([rung.user] if rung.user else [])
    return [rung.user] if rung.user is not None else []


def _fmt(value: datetime | None, tz: str) -> str | None:
    return to_local(value, tz).strftime("%b %d %H:%M %Z") if value else None


def sms_context(session: Session, alert: Alert, *, escalated: bool = False) -> SmsContext:
    """What an alert's text may say: job code, places, windows, last digits. Nothing else."""
    shipment = session.get(Shipment, alert.shipment_id) if alert.shipment_id else None
    deadline = session.get(HandoffDeadline, alert.deadline_id) if alert.deadline_id else None
    due = deadline.due_at if deadline else None
    if shipment is None:
        site = session.get(Site, alert.site_id)
        assert site is not None
        return SmsContext(
            job_code=alert.job_code,
            ack_code=alert.ack_code,
            site=Place(site.name, site.address),
            due=_fmt(due, site.timezone),
            escalated=escalated,
        )
    origin, destination = shipment.origin_site, shipment.destination_site
    return SmsContext(
        job_code=alert.job_code,
        ack_code=alert.ack_code,
        pickup=Place(origin.name, origin.address),
        dropoff=Place(destination.name, destination.address),
        window_start=_fmt(shipment.planned_pickup_at, origin.timezone),
        window_end=_fmt(shipment.planned_delivery_at, destination.timezone),
        due=_fmt(due, origin.timezone),
        shipper_last4=last_digits(shipment.shipper.serial if shipment.shipper else None),
        seal_last4=last_digits(shipment.tamper_seal),
        escalated=escalated,
    )


def is_opted_out(session: Session, phone: str) -> bool:
    return bool(
        session.scalar(select(SmsOptOut.opted_out).where(SmsOptOut.phone == phone)) or False
    )


def _enqueue(session: Session, alert: Alert, user: User, level: int, now: datetime) -> bool:
    """Queue one text for one person; False when it cannot go (no phone, opted out)."""
    if not user.phone:
        return False
    template = alert.details.get("sms_template") or "deadline_overdue"
    body = render(template, sms_context(session, alert, escalated=level > 0))
    suppressed = is_opted_out(session, user.phone)
    insert_ignore(
        session,
        SmsOutbox,
        {
            "dedupe_key": f"alert:{alert.id}:level:{level}:user:{user.id}",
            "alert_id": alert.id,
            "user_id": user.id,
            "to_phone": user.phone,
            "template": template,
            "body": body,
            "escalation_level": level,
            "state": "suppressed" if suppressed else "pending",
            "last_error": "recipient opted out (STOP)" if suppressed else None,
            "attempts": 0,
            "verify_attempts": 0,
            "next_attempt_at": now,
            "created_at": now,
        },
    )
    if not suppressed:
        wake_dispatcher(session)
    return not suppressed


def notify_from(session: Session, alert: Alert, level: int, now: datetime) -> None:
    """Notify the first reachable rung at or above ``level`` and set its acknowledgement timer.

    A rung nobody can be reached on (no shipment courier, no phone, opted out) is skipped at
    once rather than waited out: its timeout would only delay the next person.
    """
    rungs = ladder_for(session, alert.site_id)
    while level < len(rungs):
        rung = rungs[level]
        if rung.channel == "in_app":
            reached = True  # the alerts page shows it, marked with the rung it reached
        else:
            reached = False
            for user in _recipients(session, rung, alert):
                reached = _enqueue(session, alert, user, level, now) or reached
        if reached:
            alert.escalation_level = level
            alert.next_escalation_at = now + rung.timeout if alert.notify == Notify.ladder else None
            return
        level += 1
    alert.ladder_exhausted = True
    alert.next_escalation_at = None


def raise_alert(
    session: Session,
    *,
    dedupe_key: str,
    kind: str,
    severity: str,
    notify: Notify,
    title: str,
    site_id: int,
    now: datetime,
    sms_template: str | None = None,
    subject: str | None = None,
    order_id: int | None = None,
    item_id: int | None = None,
    shipment_id: int | None = None,
    logger_id: int | None = None,
    excursion_id: int | None = None,
    deadline_id: int | None = None,
    details: dict[str, Any] | None = None,
) -> Alert | None:
    """Raise an alert once per dedupe key and notify its first rung; None if it existed."""
    now = require_aware(now)
    new_id = insert_ignore(
        session,
        Alert,
        {
            "dedupe_key": dedupe_key,
            "kind": kind,
            "severity": severity,
            "notify": notify.value,
            "title": title[:300],
            "details": {**(details or {}), "sms_template": sms_template},
            "site_id": site_id,
            "order_id": order_id,
            "item_id": item_id,
            "shipment_id": shipment_id,
            "logger_id": logger_id,
            "excursion_id": excursion_id,
            "deadline_id": deadline_id,
            "job_code": job_code_for(subject or dedupe_key),
            "ack_code": _new_ack_code(session),
            "status": "open",
            "raised_at": now,
            "escalation_level": 0,
            "ladder_exhausted": False,
            "version_id": 1,
        },
    )
    if new_id is None:
        return None
    alert = session.get(Alert, new_id)
    assert alert is not None
    if notify != Notify.in_app:
        notify_from(session, alert, 0, now)
    session.flush()
    return alert


def escalate_now(session: Session, alert_id: int, now: datetime) -> None:
    """Bring the next rung forward (a text failed, bounced or was suppressed)."""
    session.execute(
        update(Alert)
        .where(Alert.id == alert_id, Alert.status == "open", Alert.notify == Notify.ladder.value)
        .where(Alert.ladder_exhausted.is_(False))
        .values(next_escalation_at=now, version_id=Alert.version_id + 1)
        .execution_options(synchronize_session=False)
    )


def sweep_escalations(*, uow: UnitOfWork, now: datetime, limit: int = 50) -> int:
    """Move every open alert whose rung timed out to the next rung. Safe to run twice at once."""
    session = uow.session
    due = list(
        session.scalars(
            select(Alert)
            .where(
                Alert.status == "open",
                Alert.notify == Notify.ladder.value,
                Alert.next_escalation_at <= now,
            )
            .order_by(Alert.next_escalation_at)
            .limit(limit)
            .with_for_update(of=Alert, skip_locked=True)
        )
    )
    for alert in due:
        notify_from(session, alert, alert.escalation_level + 1, now)
    uow.commit()
    return len(due)


def resolve_alert(session: Session, alert: Alert, *, now: datetime, resolution: str) -> None:
    """Close an alert that no longer needs anyone (the deadline was met, the logger is back)."""
    if alert.status == "resolved":
        return
    alert.status = "resolved"
    alert.resolved_at = now
    alert.resolution = resolution[:200]
    alert.next_escalation_at = None
    _cancel_pending_texts(session, alert.id, f"alert resolved: {resolution}")


def _cancel_pending_texts(session: Session, alert_id: int, why: str) -> None:
    session.execute(
        update(SmsOutbox)
        .where(SmsOutbox.alert_id == alert_id, SmsOutbox.state == "pending")
        .values(state="cancelled", last_error=why[:200])
        .execution_options(synchronize_session=False)
    )


# --- who may see and act ----------------------------------------------------------------


def visible_alerts(principal: Principal) -> Any:
    """A query of the alerts the principal may see: their sites, or orders they can see."""
    stmt = select(Alert)
    sites = principal.site_ids
    if sites is None:
        return stmt
    orders = scope_orders(select(TherapyOrder), principal).with_only_columns(TherapyOrder.id)
    return stmt.where(or_(Alert.site_id.in_(sites), Alert.order_id.in_(orders.scalar_subquery())))


def get_visible_alert(
    session: Session, principal: Principal, alert_id: int, *, lock: bool = False
) -> Alert:
    stmt = visible_alerts(principal).where(Alert.id == alert_id)
    if lock:
        stmt = stmt.with_for_update(of=Alert)
    alert: Alert | None = session.scalar(stmt)
    if alert is None:
        raise TrackerError("not_found", f"no alert {alert_id}")
    return alert


def acknowledge_alert(
    *,
    uow: UnitOfWork,
    principal: Principal,
    alert_id: int,
    comment: str,
    now: datetime,
) -> Alert:
    """Acknowledge an alert from the alerts page; a comment is required. Stops escalation."""
    if principal.user_id is None:
        raise TrackerError("forbidden", "only a person can acknowledge an alert")
    cleaned = (comment or "").strip()
    if not cleaned:
        raise TrackerError("reason_required", "acknowledging an alert needs a comment")
    session = uow.session
    alert = get_visible_alert(session, principal, alert_id, lock=True)
    mark_acknowledged(
        session, alert, now=now, user_id=principal.user_id, channel="web", comment=cleaned
    )
    return alert


def mark_acknowledged(
    session: Session,
    alert: Alert,
    *,
    now: datetime,
    user_id: int | None,
    channel: str,
    comment: str,
    phone: str | None = None,
) -> None:
    """Record who acknowledged, how and when; pending texts for the alert are not sent."""
    if alert.status != "open":
        raise TrackerError("alert_not_open", f"alert {alert.id} is already {alert.status}")
    now = require_aware(now)
    alert.status = "acknowledged"
    alert.acknowledged_at = now
    alert.acknowledged_by_user_id = user_id
    alert.ack_channel = channel
    alert.ack_comment = comment[:2000]
    alert.ack_phone = phone
    alert.next_escalation_at = None
    _cancel_pending_texts(session, alert.id, "alert acknowledged")
    record_audit(
        session,
        now=now,
        actor_user_id=user_id,
        action="acknowledge",
        entity_type="alert",
        entity_id=str(alert.id),
        changes={"status": ["open", "acknowledged"], "channel": [None, channel]},
        reason=comment[:2000],
        site_id=alert.site_id,
    )


# --- QA dispositions and the custody gate -------------------------------------------------

# Safety moves stay possible whatever QA has or has not decided.
ALWAYS_ALLOWED = frozenset(
    {CustodyState.quarantined, CustodyState.discarded, CustodyState.returned_to_manufacturer}
)
# Where a held bag physically is still gets recorded: it travels, arrives and goes into
# storage ("storage happens even when the shipment has problems"); it is not used, released,
# thawed or shipped on, and it does not leave quarantine, until QA clears it.
PLACEMENT_MOVES = frozenset({CustodyState.in_transit, CustodyState.received, CustodyState.stored})


@dataclass(frozen=True)
class Block:
    reason: str
    message: str
    excursion_ids: tuple[int, ...] = ()


def _latest_disposition(session: Session, item_id: int) -> QaDisposition | None:
    return session.scalar(
        select(QaDisposition)
        .where(QaDisposition.item_id == item_id)
        .order_by(QaDisposition.id.desc())
        .limit(1)
    )


def _undecided_excursions(
    session: Session, item_id: int, since: datetime | None
) -> list[ExcursionRecord]:
    stmt = (
        select(ExcursionRecord)
        .join(ExcursionItem, ExcursionItem.excursion_id == ExcursionRecord.id)
        .where(ExcursionItem.item_id == item_id, ExcursionRecord.level.in_(GATING_LEVELS))
        .order_by(ExcursionRecord.id)
    )
    if since is not None:
        stmt = stmt.where(ExcursionRecord.detected_at > since)
    return list(session.scalars(stmt))


# Most bags never meet a gating excursion or a QA decision: one look tells, before the two
# that find the latest decision and the excursions it left undecided.
_Q_MAY_BE_HELD = select(
    or_(
        exists().where(QaDisposition.item_id == bindparam("item")),
        exists().where(
            ExcursionItem.item_id == bindparam("item"),
            ExcursionRecord.id == ExcursionItem.excursion_id,
            ExcursionRecord.level.in_(GATING_LEVELS),
        ),
    )
)


def is_blocked(session: Session, item: Item) -> Block | None:
    """Whether QA holds this bag: an undecided alarm/critical excursion, or a quarantine or
    discard decision (the latest decision wins; an 'accept' releases the bag)."""
    if not session.scalar(_Q_MAY_BE_HELD, {"item": item.id}):
        return None  # no decision and no gating excursion: nothing can hold it
    latest = _latest_disposition(session, item.id)
    if latest is not None and latest.decision != Decision.accept:
        return Block(
            "quarantine_hold",
            f"QA decided '{latest.decision}' for this bag: {latest.comment}",
        )
    pending = _undecided_excursions(session, item.id, latest.decided_at if latest else None)
    if pending:
        return Block(
            "disposition_pending",
            f"{len(pending)} temperature excursion(s) await a QA decision for this bag",
            tuple(e.id for e in pending),
        )
    return None


def require_custody_step_allowed(session: Session, item: Item, to_state: CustodyState) -> None:
    """The gate custody changes consult: refuse any step QA has not cleared."""
    if to_state in ALWAYS_ALLOWED:
        return
    block = is_blocked(session, item)
    if block is None:
        return
    if to_state in PLACEMENT_MOVES and item.state != CustodyState.quarantined:
        return
    raise TrackerError(block.reason, block.message)


def record_disposition(
    *,
    uow: UnitOfWork,
    principal: Principal,
    item_public_id: str,
    decision: Decision,
    comment: str,
    now: datetime,
    excursion_id: int | None = None,
) -> QaDisposition:
    """QA's accept / quarantine / discard for one bag; the latest decision gates custody."""
    now = require_aware(now)
    cleaned = (comment or "").strip()
    if not cleaned:
        raise TrackerError("reason_required", "a QA disposition needs a comment")
    if principal.user_id is None:
        raise TrackerError("forbidden", "only a person can record a disposition")
    session = uow.session
    item = session.scalar(
        select(Item).where(Item.public_id == item_public_id).with_for_update(of=Item)
    )
    if item is None:
        raise TrackerError("not_found", f"no item {item_public_id}")
    order = session.get(TherapyOrder, item.order_id) if item.order_id else None
    qa_sites = {s for s in (item.site_id, order.manufacturing_site_id if order else None) if s}
    if not principal.is_admin and not any(
        principal.has_role_at(frozenset({Role.qa}), s) for s in qa_sites
    ):
        raise TrackerError("forbidden", "only QA of the bag's site or manufacturer decides")
    if excursion_id is not None and (
        session.scalar(
            select(ExcursionItem.excursion_id).where(
                ExcursionItem.excursion_id == excursion_id, ExcursionItem.item_id == item.id
            )
        )
        is None
    ):
        raise TrackerError("not_found", f"no excursion {excursion_id} exposed {item.public_id}")
    if decision == Decision.accept:
        latest = _latest_disposition(session, item.id)
        pending = _undecided_excursions(session, item.id, latest.decided_at if latest else None)
        ongoing = [e.id for e in pending if e.end_at is None]
        if ongoing:
            raise TrackerError(
                "excursion_ongoing", f"excursion {ongoing[0]} has not ended; it cannot be accepted"
            )
    row = QaDisposition(
        item_id=item.id,
        excursion_id=excursion_id,
        decision=Decision(decision).value,
        comment=cleaned[:2000],
        decided_by_user_id=principal.user_id,
        decided_at=now,
    )
    session.add(row)
    session.flush()
    record_audit(
        session,
        now=now,
        actor_user_id=principal.user_id,
        action="qa_disposition",
        entity_type="item",
        entity_id=item.public_id,
        changes={"disposition": [None, row.decision]},
        reason=row.comment,
        site_id=item.site_id,
    )
    _resolve_decided_excursion_alerts(session, item.id, now)
    return row


def _resolve_decided_excursion_alerts(session: Session, item_id: int, now: datetime) -> None:
    """An excursion alert closes once it is acknowledged and every gated bag has a decision."""
    alerts = session.scalars(
        select(Alert)
        .join(ExcursionItem, ExcursionItem.excursion_id == Alert.excursion_id)
        .where(ExcursionItem.item_id == item_id, Alert.status == "acknowledged")
    )
    for alert in alerts:
        excursion = session.get(ExcursionRecord, alert.excursion_id)
        if excursion is None or excursion.end_at is None:
            continue
        undecided = session.scalar(
            select(func.count())
            .select_from(ExcursionItem)
            .where(
                ExcursionItem.excursion_id == excursion.id,
                ~exists().where(
                    QaDisposition.item_id == ExcursionItem.item_id,
                    QaDisposition.decided_at >= excursion.detected_at,
                ),
            )
        )
        if not undecided:
            resolve_alert(session, alert, now=now, resolution="QA decided every exposed bag")
