"""One patient's journey on one page, and one shipment's custody and temperature.

The journey merges every kind of record into a single timeline: custody events (each with
its hash and whether its link verifies), signatures, label prints (failed ones too),
excursions, alerts, QA decisions, text messages and plan changes. The plan is set against
what custody events say actually happened.
"""

from __future__ import annotations

import re
from collections import defaultdict
from datetime import datetime
from datetime import timedelta
from typing import Any

from sqlalchemy import or_
from sqlalchemy import select
from sqlalchemy.orm import Session

from schedules.models import JourneyPlan
from schedules.models import PlanStepRow
from schedules.planning import STEP_ORDER
from schedules.planning import StepKind
from schedules.queries import STEP_LABELS
from tracker.domain import chain
from tracker.domain.alerting import format_duration
from tracker.domain.errors import TrackerError
from tracker.domain.excursions import TemperatureRule
from tracker.domain.excursions import time_out_of_range
from tracker.domain.loggers import Reading
from tracker.domain.signatures import SIGNATURE_MEANINGS
from tracker.models import Alert
from tracker.models import AuditEntry
from tracker.models import CustodyEvent
from tracker.models import Deviation
from tracker.models import ExcursionItem
from tracker.models import ExcursionRecord
from tracker.models import Item
from tracker.models import LabelPrint
from tracker.models import LoggerReading
from tracker.models import QaDisposition
from tracker.models import Scan
from tracker.models import Shipment
from tracker.models import Signature
from tracker.models import Site
from tracker.models import SmsInbound
from tracker.models import SmsOutbox
from tracker.models import StepRun
from tracker.models import TemperatureLogger
from tracker.models import TherapyOrder
from tracker.models import User
from tracker.queries import order_detail
from tracker.queries_alerts import mask_phone
from tracker.services import readings
from tracker.services.certificates import signature_filter
from tracker.services.custody import event_fields
from tracker.services.principals import Principal
from tracker.services.principals import scope_orders

# Which custody state shows that a planned step really started and ended.
ACTUAL_STATES: dict[StepKind, tuple[str, tuple[str, ...], tuple[str, ...]]] = {
    StepKind.collection: ("apheresis_bag", ("collected",), ("collected",)),
    StepKind.cryopreservation: ("apheresis_bag", ("stored",), ("stored",)),
    StepKind.outbound_shipping: ("apheresis_bag", ("in_transit",), ("received",)),
    StepKind.manufacturing: ("apheresis_bag", ("in_manufacturing",), ("consumed",)),
    StepKind.release_testing: ("final_product_bag", ("stored",), ("released",)),
    StepKind.return_shipping: ("final_product_bag", ("in_transit",), ("received",)),
    StepKind.infusion: ("final_product_bag", ("infusing",), ("infused",)),
}
# Phone numbers in free text (an SMS acknowledgement's comment) are shown by their last digits.
PHONE = re.compile(r"\+?\d[\d ]{6,}\d")


def masked(text: str | None) -> str | None:
    return PHONE.sub(lambda m: mask_phone(m.group(0).replace(" ", "")), text) if text else text


# A step that starts within this of its plan is on time.
ON_TIME = timedelta(hours=1)
# Also the order of records at the same instant: a scan comes before what it caused.
KINDS = (
    "scan",
    "custody",
    "deviation",
    "signature",
    "label",
    "temperature",
    "alert",
    "sms",
    "plan",
)
KIND_LABELS = {
    "custody": "Custody",
    "scan": "Scans",
    "deviation": "Deviations",
    "signature": "Signatures",
    "label": "Labels",
    "temperature": "Temperature",
    "alert": "Alerts and QA",
    "sms": "Text messages",
    "plan": "Plan",
}


def _entry(kind: str, at: datetime, title: str, *, tz: str = "UTC", **extra: Any) -> dict[str, Any]:
    return {"kind": kind, "at": at, "tz": tz, "title": title, "failed": False, **extra}


def _custody_title(e: CustodyEvent, items: dict[int, str], ships: dict[int, str]) -> str:
    item = items.get(e.item_id or 0) or ships.get(e.shipment_id or 0) or ""
    details = e.details or {}
    if e.event_type == "registered":
        din = f" (DIN {details['din']})" if details.get("din") else ""
        return f"Registered {item}{din}"
    if e.event_type == "linked":
        bags = ", ".join(details.get("items", []))
        return f"Shipment {item} planned to {details.get('destination', '?')} with {bags}"
    if e.event_type == "correction":
        return f"Correction of event {e.corrects_event_id}: {e.reason}"
    if e.event_type == "note":
        if details.get("step") and not details.get("note"):
            signed = details.get("verified_by") or []
            title = f"Step {str(details['step']).replace('_', ' ')} completed"
            return title + (f", signed by {' and '.join(signed)}" if signed else "")
        note = str(details.get("note") or "note").replace("_", " ")
        return f"{note.capitalize()}" + (f" ({item})" if item else "")
    frm = (e.from_state or "").replace("_", " ")
    to = (e.to_state or "").replace("_", " ")
    return f"{item}: {frm} → {to}"


def _chain(
    events: list[CustodyEvent], items: dict[int, str], ships: dict[int, str]
) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Custody entries with their hash and link status, and the chain's verdict."""
    chained = [chain.ChainedEvent(e.seq, e.prev_hash, e.hash, event_fields(e)) for e in events]
    breaks = chain.verify(chained)
    problems: dict[int, list[str]] = defaultdict(list)
    for b in breaks:
        problems[b.seq].append(b.problem)
    out = []
    for e in events:
        out.append(
            _entry(
                "custody",
                e.occurred_at,
                _custody_title(e, items, ships),
                tz=e.site.timezone if e.site else "UTC",
                seq=e.seq,
                hash=e.hash,
                prev_hash=e.prev_hash,
                link_ok=not problems.get(e.seq),
                problems=problems.get(e.seq, []),
                site=e.site.name if e.site else None,
                actor=e.actor.full_name if e.actor else ("device" if e.device_id else None),
                reason=e.reason if e.event_type != "correction" else None,
                recorded_at=e.recorded_at,
                late=(e.recorded_at - e.occurred_at) > timedelta(minutes=2),
                event_type=e.event_type,
            )
        )
    verdict = {
        "intact": not breaks,
        "events": len(events),
        "head": events[-1].hash if events else chain.GENESIS,
        "breaks": [{"seq": b.seq, "problem": b.problem} for b in breaks],
    }
    return out, verdict


def journey(
    session: Session, principal: Principal, public_id: str, *, now: datetime
) -> dict[str, Any]:
    """Everything that happened to one order, in time order, with the plan beside it."""
    detail = order_detail(session, principal, public_id)
    order = session.scalar(select(TherapyOrder).where(TherapyOrder.public_id == public_id))
    assert order is not None  # order_detail checked visibility
    item_rows = list(session.scalars(select(Item).where(Item.order_id == order.id)))
    items = {i.id: i.public_id for i in item_rows}
    ship_rows = list(session.scalars(select(Shipment).where(Shipment.order_id == order.id)))
    ships = {s.id: s.public_id for s in ship_rows}
    tz = order.treatment_site.timezone
    events = list(
        session.scalars(
            select(CustodyEvent)
            .where(CustodyEvent.chain_key == f"coi:{order.coi}")
            .order_by(CustodyEvent.seq)
        )
    )
    entries, verdict = _chain(events, items, ships)
    runs = {
        run_id: step
        for run_id, step in session.execute(
            select(StepRun.id, StepRun.step).where(StepRun.order_id == order.id)
        )
    }
    deviations = list(
        session.scalars(
            select(Deviation).where(Deviation.order_id == order.id).order_by(Deviation.id)
        )
    )
    entries += _signatures(session, order, items, ships, runs, deviations)
    entries += _scans(session, order.id)
    entries += _deviations(session, deviations)
    entries += _label_prints(session, order.id, items, ships)
    entries += _temperature(session, set(items), set(ships), items)
    alert_entries, alert_ids = _alerts(session, order.id)
    entries += alert_entries
    entries += _dispositions(session, items)
    entries += _texts(session, alert_ids)
    plans = list(session.scalars(select(JourneyPlan).where(JourneyPlan.order_id == order.id)))
    entries += _plan_changes(session, [p.public_id for p in plans], tz)
    entries.sort(key=lambda e: (e["at"], KINDS.index(e["kind"]), e.get("seq") or 0))
    counts: dict[str, int] = defaultdict(int)
    for e in entries:
        counts[e["kind"]] += 1
    live = next((p for p in plans if p.status in ("held", "booked")), None)
    return {
        "order": detail,
        "timezone": tz,
        "entries": entries,
        "counts": dict(counts),
        "chain": verdict,
        "plan": _plan_vs_actual(session, live, events, items, item_rows, now) if live else None,
        "shipments": [
            {
                "public_id": s.public_id,
                "state": s.state,
                "origin": s.origin_site.name,
                "destination": s.destination_site.name,
                "logger_serial": s.logger_serial,
            }
            for s in ship_rows
        ],
    }


def _signatures(
    session: Session,
    order: TherapyOrder,
    items: dict[int, str],
    ships: dict[int, str],
    runs: dict[int, str],
    deviations: list[Deviation],
) -> list[dict[str, Any]]:
    rows = session.scalars(
        select(Signature)
        .where(signature_filter(order, items, ships, runs, deviations))
        .order_by(Signature.signed_at)
    )
    out = []
    for s in rows:
        record = f"{s.record_type.replace('_', ' ')} {s.record_id}"
        if s.record_type == "step_run" and s.record_id.isdigit():
            step = runs.get(int(s.record_id), "")
            record = f"step {step.replace('_', ' ')} (run {s.record_id})"
        out.append(
            _entry(
                "signature",
                s.signed_at,
                f"Signed by {s.printed_name}: {s.meaning}",
                meaning_text=SIGNATURE_MEANINGS.get(s.meaning, s.meaning),
                record=record,
                hash=s.record_hash,
            )
        )
    return out


def _scans(session: Session, order_id: int) -> list[dict[str, Any]]:
    """Every scan for this order's steps or of its codes, refused ones included."""
    rows = session.execute(
        select(Scan, User.full_name, Site.name, Site.timezone)
        .join(User, User.id == Scan.user_id)
        .outerjoin(Site, Site.id == Scan.site_id)
        .where(or_(Scan.order_id == order_id, Scan.scanned_order_id == order_id))
        .order_by(Scan.server_at, Scan.id)
    )
    out = []
    for scan, user, site, tz in rows:
        step = (scan.step or "").replace("_", " ")
        other = scan.order_id is not None and scan.order_id != order_id
        if scan.result == "error":
            title = f"Scan refused at step {step}: {scan.reason}"
            if scan.reason == "coi_mismatch":
                title += (
                    " (this patient's code at another patient's step)"
                    if other
                    else (" (another patient's code)")
                )
        elif scan.result == "ok":
            title = f"Scan accepted at step {step}; the step is complete"
        else:
            title = f"Scan accepted at step {step}"
        when = "offline" if scan.offline else None
        detail = scan.message
        if when:
            detail = f"{detail} (scanned offline at {scan.client_at:%Y-%m-%d %H:%M} UTC" + (
                ", forced)" if scan.forced else ")"
            )
        out.append(
            _entry(
                "scan",
                scan.server_at,
                title,
                tz=tz or "UTC",
                site=site,
                actor=user,
                detail=detail,
                failed=scan.result == "error",
            )
        )
    return out


def _deviations(session: Session, deviations: list[Deviation]) -> list[dict[str, Any]]:
    names = {
        uid: name
        for uid, name in session.execute(
            select(User.id, User.full_name).where(
                User.id.in_(
                    {d.opened_by_id for d in deviations if d.opened_by_id}
                    | {d.closed_by_id for d in deviations if d.closed_by_id}
                    or {-1}
                )
            )
        )
    }
    out = []
    for d in deviations:
        out.append(
            _entry(
                "deviation",
                d.opened_at,
                f"Deviation {d.public_id} opened ({d.kind.replace('_', ' ')})",
                actor=names.get(d.opened_by_id or 0),
                detail=d.description,
                failed=d.status == "open",
            )
        )
        if d.closed_at is not None:
            out.append(
                _entry(
                    "deviation",
                    d.closed_at,
                    f"Deviation {d.public_id} closed by QA",
                    actor=names.get(d.closed_by_id or 0),
                    detail=d.close_reason,
                )
            )
    return out


def _label_prints(
    session: Session, order_id: int, items: dict[int, str], ships: dict[int, str]
) -> list[dict[str, Any]]:
    rows = session.scalars(
        select(LabelPrint)
        .where(
            or_(
                LabelPrint.order_id == order_id,
                LabelPrint.item_id.in_(list(items) or [-1]),
                LabelPrint.shipment_id.in_(list(ships) or [-1]),
            )
        )
        .order_by(LabelPrint.requested_at)
    )
    out = []
    for p in rows:
        target = items.get(p.item_id or 0) or ships.get(p.shipment_id or 0) or ""
        what = "Reprint" if p.reprint else "Label print"
        title = f"{what} of the {p.label_kind.replace('_', ' ')} label for {target}"
        entry = _entry(
            "label",
            p.requested_at,
            title,
            tz=p.site.timezone,
            site=p.site.name,
            actor=p.actor.full_name if p.actor else None,
            detail=f"{p.output.upper()} {p.size}, {p.copies} cop{'y' if p.copies == 1 else 'ies'}"
            + (f" on {p.printer.name}" if p.printer else " (download)")
            + (f"; reason: {p.reason}" if p.reason else ""),
        )
        if p.status == "failed":
            entry["failed"] = True
            entry["title"] = f"FAILED: {title}"
            entry["detail"] += f"; {p.error_reason}: {p.error_message or ''}"
        out.append(entry)
    return out


def _temperature(
    session: Session, item_ids: set[int], ship_ids: set[int], items: dict[int, str]
) -> list[dict[str, Any]]:
    if not item_ids and not ship_ids:
        return []
    exposed = select(ExcursionItem.excursion_id).where(ExcursionItem.item_id.in_(item_ids or {-1}))
    rows = session.scalars(
        select(ExcursionRecord)
        .where(
            or_(
                ExcursionRecord.id.in_(exposed),
                ExcursionRecord.shipment_id.in_(ship_ids or {-1}),
            )
        )
        .order_by(ExcursionRecord.start_at)
    )
    out = []
    for x in rows:
        sign = ">" if x.kind == "hot" else "<"
        duration = format_duration(timedelta(seconds=x.duration_seconds))
        bags = ", ".join(i.public_id for i in x.items) or "no bag"
        out.append(
            _entry(
                "temperature",
                x.start_at,
                f"Temperature excursion ({x.level}) on logger {x.logger.serial}: "
                f"{sign} {x.threshold_c} °C for {duration}",
                tz=x.logger.site.timezone,
                failed=x.level != "warning",
                detail=f"worst {x.worst_c} °C; "
                + ("ongoing" if x.end_at is None else f"ended {x.end_at:%Y-%m-%d %H:%M} UTC")
                + f"; bags exposed: {bags}; rule from {x.rule_source}",
            )
        )
    return out


def _alerts(session: Session, order_id: int) -> tuple[list[dict[str, Any]], list[int]]:
    rows = list(
        session.scalars(select(Alert).where(Alert.order_id == order_id).order_by(Alert.raised_at))
    )
    out = []
    for a in rows:
        tz = a.site.timezone
        out.append(
            _entry(
                "alert",
                a.raised_at,
                f"Alert raised ({a.severity}): {a.title}",
                tz=tz,
                alert_id=a.id,
                detail=f"job {a.job_code}",
            )
        )
        if a.acknowledged_at is not None:
            who = a.acknowledged_by.full_name if a.acknowledged_by else mask_phone(a.ack_phone)
            out.append(
                _entry(
                    "alert",
                    a.acknowledged_at,
                    f"Alert acknowledged by {who} ({a.ack_channel})",
                    tz=tz,
                    alert_id=a.id,
                    detail=masked(a.ack_comment),
                )
            )
        if a.resolved_at is not None:
            out.append(_entry("alert", a.resolved_at, f"Alert resolved: {a.resolution}", tz=tz))
    return out, [a.id for a in rows]


def _dispositions(session: Session, items: dict[int, str]) -> list[dict[str, Any]]:
    if not items:
        return []
    rows = session.scalars(
        select(QaDisposition)
        .where(QaDisposition.item_id.in_(list(items)))
        .order_by(QaDisposition.decided_at)
    )
    return [
        _entry(
            "alert",
            d.decided_at,
            f"QA decision for {items[d.item_id]}: {d.decision}",
            actor=d.decided_by.full_name,
            detail=d.comment,
            failed=d.decision != "accept",
        )
        for d in rows
    ]


def _texts(session: Session, alert_ids: list[int]) -> list[dict[str, Any]]:
    if not alert_ids:
        return []
    out = []
    for o, user in session.execute(
        select(SmsOutbox, User)
        .outerjoin(User, User.id == SmsOutbox.user_id)
        .where(SmsOutbox.alert_id.in_(alert_ids))
        .order_by(SmsOutbox.created_at)
    ):
        entry = _entry(
            "sms",
            o.sent_at or o.created_at,
            f"Text to {user.full_name if user else 'unknown'} ({mask_phone(o.to_phone)}): "
            f"{o.state}" + (f", Twilio {o.twilio_status}" if o.twilio_status else ""),
            detail=o.body,
        )
        entry["failed"] = o.state in ("failed", "unknown", "suppressed")
        out.append(entry)
    for r in session.scalars(
        select(SmsInbound).where(SmsInbound.alert_id.in_(alert_ids)).order_by(SmsInbound.id)
    ):
        out.append(
            _entry(
                "sms",
                r.received_at,
                f"Reply from {mask_phone(r.from_phone)}: {r.action}",
                detail=f"“{r.body}” → {r.outcome}",
            )
        )
    return out


def _plan_changes(session: Session, plan_ids: list[str], tz: str) -> list[dict[str, Any]]:
    if not plan_ids:
        return []
    rows = session.execute(
        select(AuditEntry, User)
        .outerjoin(User, User.id == AuditEntry.actor_user_id)
        .where(AuditEntry.entity_type == "journey_plan", AuditEntry.entity_id.in_(plan_ids))
        .order_by(AuditEntry.at)
    )
    return [
        _entry(
            "plan",
            a.at,
            f"Plan {a.entity_id}: {a.action.removeprefix('plan_').replace('_', ' ')}",
            tz=tz,
            actor=u.full_name if u else None,
            detail=a.reason,
        )
        for a, u in rows
    ]


def _plan_vs_actual(
    session: Session,
    plan: JourneyPlan,
    events: list[CustodyEvent],
    items: dict[int, str],
    item_rows: list[Item],
    now: datetime,
) -> dict[str, Any]:
    kinds = {i.id: i.kind for i in item_rows}
    first: dict[tuple[str, str], datetime] = {}
    for e in events:
        if e.event_type == "transition" and e.item_id in kinds and e.to_state:
            first.setdefault((kinds[e.item_id], e.to_state), e.occurred_at)
    steps: list[dict[str, Any]] = []
    for step, site in session.execute(
        select(PlanStepRow, Site)
        .join(Site, Site.id == PlanStepRow.site_id)
        .where(PlanStepRow.plan_id == plan.id)
    ):
        kind = StepKind(step.kind)
        rule = ACTUAL_STATES.get(kind)
        started = ended = None
        if rule is not None:
            item_kind, starts, ends = rule
            started = min(
                (first[(item_kind, s)] for s in starts if (item_kind, s) in first), default=None
            )
            ended = min(
                (first[(item_kind, s)] for s in ends if (item_kind, s) in first), default=None
            )
        delta = started - step.starts_at if started else None
        if rule is None:
            status = "not tracked by custody"
        elif started is None:
            status = "overdue" if step.starts_at < now else "to come"
        elif delta is not None and abs(delta) <= ON_TIME:
            status = "on time"
        elif delta is not None and delta > timedelta(0):
            status = f"{format_duration(delta)} late"
        else:
            status = f"{format_duration(-delta)} early" if delta is not None else ""
        missed = (
            step.deadline_at is not None
            and ((ended or started) or now) > step.deadline_at
            and rule is not None
        )
        steps.append(
            {
                "kind": kind.value,
                "label": STEP_LABELS[kind],
                "site": site.name,
                "timezone": site.timezone,
                "planned_start": step.starts_at,
                "planned_end": step.ends_at,
                "deadline": step.deadline_at,
                "actual_start": started,
                "actual_end": ended,
                "status": status,
                "late": status.endswith("late") or status == "overdue",
                "missed_deadline": missed,
            }
        )
    steps.sort(key=lambda s: STEP_ORDER.index(StepKind(s["kind"])))
    return {"public_id": plan.public_id, "status": plan.status, "steps": steps}


# --- shipments -------------------------------------------------------------------------------


def _visible_shipment(session: Session, principal: Principal, public_id: str) -> Shipment:
    shipment = session.scalar(
        select(Shipment)
        .join(TherapyOrder, TherapyOrder.id == Shipment.order_id)
        .where(
            Shipment.public_id == public_id,
            TherapyOrder.id.in_(
                scope_orders(select(TherapyOrder), principal)
                .with_only_columns(TherapyOrder.id)
                .scalar_subquery()
            ),
        )
    )
    if shipment is None:
        raise TrackerError("not_found", f"no shipment {public_id}")
    return shipment


def _logger_of(session: Session, shipment: Shipment) -> TemperatureLogger | None:
    cond = TemperatureLogger.serial == (shipment.logger_serial or "")
    if shipment.shipper_id is not None:
        cond = cond | (TemperatureLogger.shipper_item_id == shipment.shipper_id)
    return session.scalar(select(TemperatureLogger).where(cond).order_by(TemperatureLogger.id))


def _window(session: Session, shipment: Shipment, now: datetime) -> tuple[datetime, datetime]:
    """The time the shipment's logger speaks for: packing (or pickup) to receipt, else plan."""
    events = list(
        session.execute(
            select(CustodyEvent.to_state, CustodyEvent.occurred_at)
            .where(CustodyEvent.shipment_id == shipment.id, CustodyEvent.event_type == "transition")
            .order_by(CustodyEvent.occurred_at)
        )
    )
    starts = [at for s, at in events if s in readings.SHIPMENT_START]
    ends = [at for s, at in events if s in readings.SHIPMENT_END]
    start = min(starts) if starts else (shipment.planned_pickup_at or shipment.created_at)
    end = max(ends) if ends else now
    return start, max(end, start + timedelta(minutes=1))


def shipment_page(
    session: Session, principal: Principal, public_id: str, *, now: datetime
) -> dict[str, Any]:
    """A shipment's legs, hand-offs, courier acknowledgements and temperature summary."""
    s = _visible_shipment(session, principal, public_id)
    order = s.order
    courier = session.get(User, s.courier_user_id) if s.courier_user_id else None
    items = {i.id: i.public_id for i in s.items}
    ships = {x.id: x.public_id for x in order.shipments}
    events = list(
        session.scalars(
            select(CustodyEvent)
            .where(
                CustodyEvent.chain_key == f"coi:{order.coi}",
                or_(
                    CustodyEvent.shipment_id == s.id,
                    CustodyEvent.item_id.in_(list(items) or [-1]),
                ),
            )
            .order_by(CustodyEvent.seq)
        )
    )
    handoffs: list[dict[str, Any]] = [
        {
            "seq": e.seq,
            "at": e.occurred_at,
            "tz": e.site.timezone if e.site else "UTC",
            "title": _custody_title(e, items, ships),
            "site": e.site.name if e.site else None,
            "actor": e.actor.full_name if e.actor else ("device" if e.device_id else None),
            "hash": e.hash,
            "type": e.event_type,
            # Phones in evidence (SMS acknowledgements) are shown by their last digits.
            "details": {
                k: (mask_phone(v) if k == "phone" and isinstance(v, str) else v)
                for k, v in (e.details or {}).items()
            },
        }
        for e in events
    ]
    acks = [h for h in handoffs if h["details"].get("note") == "sms_acknowledgement"]
    for h in acks:
        h["phone"] = h["details"].get("phone")
    alerts = list(
        session.scalars(select(Alert).where(Alert.shipment_id == s.id).order_by(Alert.raised_at))
    )
    replies = (
        list(
            session.scalars(
                select(SmsInbound)
                .where(SmsInbound.alert_id.in_([a.id for a in alerts]))
                .order_by(SmsInbound.received_at)
            )
        )
        if alerts
        else []
    )
    start, end = _window(session, s, now)
    logger = _logger_of(session, s)
    return {
        "public_id": s.public_id,
        "state": s.state,
        "order": order.public_id,
        "coi": order.coi,
        "patient": order.patient.public_id,
        "origin": s.origin_site.name,
        "origin_tz": s.origin_site.timezone,
        "destination": s.destination_site.name,
        "destination_tz": s.destination_site.timezone,
        "courier": courier.full_name if courier else None,
        "shipper": s.shipper.serial if s.shipper else None,
        "tamper_seal": s.tamper_seal,
        "air_waybill": s.air_waybill,
        "logger_serial": logger.serial if logger else s.logger_serial,
        "planned_pickup_at": s.planned_pickup_at,
        "planned_delivery_at": s.planned_delivery_at,
        "items": list(items.values()),
        "legs": [
            {
                "public_id": x.public_id,
                "state": x.state,
                "origin": x.origin_site.name,
                "destination": x.destination_site.name,
                "current": x.id == s.id,
            }
            for x in order.shipments
        ],
        "handoffs": handoffs,
        "acks": acks,
        "alerts": [
            {
                "id": a.id,
                "title": a.title,
                "severity": a.severity,
                "status": a.status,
                "job_code": a.job_code,
                "raised_at": a.raised_at,
                "acknowledged_at": a.acknowledged_at,
                "ack_channel": a.ack_channel,
                "ack_phone": mask_phone(a.ack_phone),
                "ack_by": a.acknowledged_by.full_name if a.acknowledged_by else None,
                "tz": a.site.timezone,
            }
            for a in alerts
        ],
        "replies": [
            {
                "at": r.received_at,
                "phone": mask_phone(r.from_phone),
                "body": r.body,
                "action": r.action,
                "outcome": r.outcome,
            }
            for r in replies
        ],
        "window": {"start": start, "end": end, "open": s.state not in readings.SHIPMENT_END},
        "temperature": _temperature_summary(session, s, logger, start, end, now),
        "exposure": [_exposure(session, item, now) for item in s.items],
    }


def _exposure(session: Session, item: Item, now: datetime) -> dict[str, Any]:
    result = readings.exposure_for_item(session, item, now=now)
    ledger = result.exposure
    return {
        "item": item.public_id,
        "kind": item.kind,
        "state": item.state,
        "rules": result.rule_source,
        "custody_time": ledger.custody_time if ledger else timedelta(0),
        "monitored": ledger.monitored if ledger else timedelta(0),
        "unmonitored": ledger.unmonitored if ledger else timedelta(0),
        "out_of_range": ledger.out_of_range if ledger else timedelta(0),
        "max_c": ledger.max_c if ledger else None,
        "min_c": ledger.min_c if ledger else None,
        "excursions": len(result.excursions),
    }


def _series(
    session: Session, logger: TemperatureLogger, start: datetime, end: datetime
) -> list[tuple[datetime, float]]:
    # One reading before the window too: its value holds until the next one.
    margin = timedelta(seconds=logger.expected_interval_seconds)
    return [
        (at, c)
        for at, c in session.execute(
            select(LoggerReading.at, LoggerReading.celsius)
            .where(
                LoggerReading.logger_id == logger.id,
                LoggerReading.at >= start - margin,
                LoggerReading.at <= end,
            )
            .order_by(LoggerReading.at)
        )
    ]


def _excursions(
    session: Session, shipment: Shipment, logger: TemperatureLogger, start: datetime, end: datetime
) -> list[ExcursionRecord]:
    return list(
        session.scalars(
            select(ExcursionRecord)
            .where(
                or_(
                    ExcursionRecord.shipment_id == shipment.id,
                    (ExcursionRecord.logger_id == logger.id)
                    & (ExcursionRecord.start_at <= end)
                    & ((ExcursionRecord.end_at.is_(None)) | (ExcursionRecord.end_at >= start)),
                )
            )
            .order_by(ExcursionRecord.start_at)
        )
    )


def _temperature_summary(
    session: Session,
    shipment: Shipment,
    logger: TemperatureLogger | None,
    start: datetime,
    end: datetime,
    now: datetime,
) -> dict[str, Any] | None:
    """The server-rendered account of the chart: range, rules, time out of range, excursions."""
    if logger is None:
        return None
    series = _series(session, logger, start, end)
    choice = readings.rules_for_logger(session, logger, at=start)
    values = [c for _, c in series]
    excursions = _excursions(session, shipment, logger, start, end)
    return {
        "logger": logger.serial,
        "interval": timedelta(seconds=logger.expected_interval_seconds),
        "count": len(series),
        "first_at": series[0][0] if series else None,
        "last_at": series[-1][0] if series else None,
        "min_c": min(values) if values else None,
        "max_c": max(values) if values else None,
        "mean_c": round(sum(values) / len(values), 1) if values else None,
        "rules_source": choice.source,
        "rules": [
            {
                "level": r.level,
                "kind": r.kind,
                "threshold_c": r.threshold_c,
                "inclusive": r.inclusive,
                "mode": r.mode,
                "min_duration": r.min_duration,
                "out_of_range": _out_of_range(series, r, logger),
            }
            for r in choice.rules
        ],
        "excursions": [
            {
                "id": x.id,
                "level": x.level,
                "kind": x.kind,
                "threshold_c": x.threshold_c,
                "start_at": x.start_at,
                "end_at": x.end_at,
                "duration": timedelta(seconds=x.duration_seconds),
                "worst_c": x.worst_c,
            }
            for x in excursions
        ],
        "silent_since": logger.last_reading_at
        if logger.last_reading_at
        and now - logger.last_reading_at
        > timedelta(seconds=logger.expected_interval_seconds * logger.silence_factor)
        else None,
    }


def _out_of_range(
    series: list[tuple[datetime, float]], rule: TemperatureRule, logger: TemperatureLogger
) -> timedelta:
    if not series:
        return timedelta(0)
    return time_out_of_range(
        [Reading(at, c) for at, c in series],
        rule,
        expected_interval=timedelta(seconds=logger.expected_interval_seconds),
    )


# The chart never needs more points than a screen has pixels; longer series are thinned to
# each bucket's minimum and maximum so no peak disappears.
MAX_POINTS = 4000


def _thin(series: list[tuple[datetime, float]]) -> list[tuple[datetime, float]]:
    if len(series) <= MAX_POINTS:
        return series
    size = -(-len(series) // (MAX_POINTS // 2))
    out: list[tuple[datetime, float]] = []
    for i in range(0, len(series), size):
        bucket = series[i : i + size]
        lo = min(bucket, key=lambda p: p[1])
        hi = max(bucket, key=lambda p: p[1])
        out.extend(sorted({lo, hi}))
    return out


def shipment_temperatures(
    session: Session, principal: Principal, public_id: str, *, now: datetime
) -> dict[str, Any]:
    """Chart data for a shipment: readings, rule thresholds and excursion bands (epoch s)."""
    s = _visible_shipment(session, principal, public_id)
    logger = _logger_of(session, s)
    start, end = _window(session, s, now)
    if logger is None:
        return {"logger": None, "x": [], "y": [], "thresholds": [], "excursions": []}
    series = _thin(_series(session, logger, start, end))
    choice = readings.rules_for_logger(session, logger, at=start)
    # One line per limit; the levels sharing it (warning, alarm, critical) are named on it.
    limits: dict[tuple[str, float], list[TemperatureRule]] = defaultdict(list)
    for r in choice.rules:
        limits[(r.kind, r.threshold_c)].append(r)
    thresholds = [
        {
            "c": c,
            "kind": kind,
            "level": rules[-1].level,
            "label": _rule_label(rules[0]).split(" ", 1)[1]
            + f" ({', '.join(dict.fromkeys(r.level for r in rules))})",
        }
        for (kind, c), rules in limits.items()
    ]
    return {
        "logger": logger.serial,
        "start": start.timestamp(),
        "end": end.timestamp(),
        "x": [at.timestamp() for at, _ in series],
        "y": [c for _, c in series],
        "thresholds": thresholds,
        "rules_source": choice.source,
        "excursions": [
            {
                "start": x.start_at.timestamp(),
                "end": (x.end_at or now).timestamp(),
                "level": x.level,
                "kind": x.kind,
                "ongoing": x.end_at is None,
            }
            for x in _excursions(session, s, logger, start, end)
        ],
    }


def _rule_label(rule: TemperatureRule) -> str:
    sign = (
        (">" if not rule.inclusive else "≥")
        if rule.kind == "hot"
        else ("<" if not rule.inclusive else "≤")
    )
    return f"{rule.level} limit {sign} {rule.threshold_c} °C"
