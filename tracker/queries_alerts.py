"""Read-only views of alerts, loggers, imports and exposure, as plain dicts for pages and API.

Scoped to the principal in SQL: an alert is visible at its site or through an order the
principal may see; loggers and imports by site.
"""

from __future__ import annotations

from datetime import datetime
from datetime import timedelta
from typing import Any

from sqlalchemy import case
from sqlalchemy import select
from sqlalchemy.orm import Session

from tracker.domain.errors import TrackerError
from tracker.models import Alert
from tracker.models import ExcursionRecord
from tracker.models import HandoffDeadline
from tracker.models import Item
from tracker.models import LoggerImportRun
from tracker.models import QaDisposition
from tracker.models import Shipment
from tracker.models import Site
from tracker.models import SmsOptOut
from tracker.models import SmsOutbox
from tracker.models import TemperatureLogger
from tracker.models import TherapyOrder
from tracker.models import User
from tracker.services import alerts as alert_service
from tracker.services import readings
from tracker.services.principals import Principal
from tracker.services.principals import scope_orders

RUNG_LABELS = {
    "courier": "courier",
    "backup_courier": "backup courier",
    "coordinator": "coordinator",
    "on_call_manager": "on-call manager",
}


def mask_phone(phone: str | None) -> str:
    return f"…{phone[-4:]}" if phone else ""


def _rung(session: Session, alert: Alert, ladders: dict[int, list[Any]]) -> str:
    if alert.notify == "in_app":
        return "alerts page"
    if alert.site_id not in ladders:
        ladders[alert.site_id] = alert_service.ladder_for(session, alert.site_id)
    rungs = ladders[alert.site_id]
    if alert.escalation_level < len(rungs):
        return RUNG_LABELS[rungs[alert.escalation_level].role.value]
    return "end of ladder"


def _alert_row(
    session: Session, alert: Alert, ladders: dict[int, list[Any]] | None = None
) -> dict[str, Any]:
    shipment = session.get(Shipment, alert.shipment_id) if alert.shipment_id else None
    order = session.get(TherapyOrder, alert.order_id) if alert.order_id else None
    return {
        "id": alert.id,
        "kind": alert.kind,
        "severity": alert.severity,
        "status": alert.status,
        "title": alert.title,
        "site": alert.site.name,
        "site_timezone": alert.site.timezone,
        "raised_at": alert.raised_at,
        "job_code": alert.job_code,
        "ack_code": alert.ack_code,
        "rung": _rung(session, alert, {} if ladders is None else ladders),
        "escalation_level": alert.escalation_level,
        "next_escalation_at": alert.next_escalation_at,
        "ladder_exhausted": alert.ladder_exhausted,
        "shipment": shipment.public_id if shipment else None,
        "order": order.public_id if order else None,
        "acknowledged_at": alert.acknowledged_at,
        "acknowledged_by": alert.acknowledged_by.full_name if alert.acknowledged_by else None,
        "ack_channel": alert.ack_channel,
        "ack_comment": alert.ack_comment,
        "ack_phone": mask_phone(alert.ack_phone),
        "resolved_at": alert.resolved_at,
        "resolution": alert.resolution,
    }


def list_alerts(
    session: Session, principal: Principal, *, open_only: bool = False, limit: int = 200
) -> list[dict[str, Any]]:
    """Alerts the principal may see: open ones first, most severe and newest first."""
    severity = case({"critical": 0, "alarm": 1, "warning": 2}, value=Alert.severity, else_=3)
    stmt = alert_service.visible_alerts(principal)
    if open_only:
        stmt = stmt.where(Alert.status == "open")
    stmt = stmt.order_by(Alert.status != "open", severity, Alert.raised_at.desc()).limit(limit)
    ladders: dict[int, list[Any]] = {}  # one ladder query per site, not per alert
    return [_alert_row(session, a, ladders) for a in session.scalars(stmt)]


def _texts(session: Session, alert_id: int) -> list[dict[str, Any]]:
    rows = session.scalars(
        select(SmsOutbox).where(SmsOutbox.alert_id == alert_id).order_by(SmsOutbox.id)
    )
    return [
        {
            "to": (r.user.full_name if r.user else "") + f" ({mask_phone(r.to_phone)})",
            "level": r.escalation_level,
            "state": r.state,
            "twilio_status": r.twilio_status,
            "attempts": r.attempts,
            "body": r.body,
            "error": r.last_error,
            "sent_at": r.sent_at,
        }
        for r in rows
    ]


def _excursion(session: Session, record: ExcursionRecord) -> dict[str, Any]:
    decisions: dict[int, QaDisposition] = {}
    for d in session.scalars(
        select(QaDisposition)
        .where(QaDisposition.item_id.in_([i.id for i in record.items]))
        .order_by(QaDisposition.id)
    ):
        decisions[d.item_id] = d
    return {
        "id": record.id,
        "logger": record.logger.serial,
        "level": record.level,
        "rule": {
            "kind": record.kind,
            "mode": record.mode,
            "threshold_c": record.threshold_c,
            "inclusive": record.inclusive,
            "min_duration": timedelta(seconds=record.min_duration_seconds),
            "source": record.rule_source,
        },
        "start_at": record.start_at,
        "end_at": record.end_at,
        "duration": timedelta(seconds=record.duration_seconds),
        "triggered_at": record.triggered_at,
        "worst_c": record.worst_c,
        "worst_at": record.worst_at,
        "bags": [
            {
                "public_id": item.public_id,
                "kind": item.kind,
                "state": item.state,
                "decision": decisions[item.id].decision if item.id in decisions else None,
                "decision_by": decisions[item.id].decided_by.full_name
                if item.id in decisions
                else None,
                "decision_comment": decisions[item.id].comment if item.id in decisions else None,
            }
            for item in record.items
        ],
    }


def alert_detail(session: Session, principal: Principal, alert_id: int) -> dict[str, Any]:
    alert = alert_service.get_visible_alert(session, principal, alert_id)
    out = _alert_row(session, alert)
    out["texts"] = _texts(session, alert.id)
    out["excursion"] = None
    if alert.excursion_id:
        record = session.get(ExcursionRecord, alert.excursion_id)
        out["excursion"] = _excursion(session, record) if record else None
    out["deadline"] = None
    if alert.deadline_id:
        d = session.get(HandoffDeadline, alert.deadline_id)
        if d is not None:
            out["deadline"] = {
                "kind": d.kind,
                "label": d.label,
                "due_at": d.due_at,
                "warn_at": d.warn_at,
                "status": d.status,
                "closed_at": d.closed_at,
                "profile_version": d.profile_version,
            }
    return out


def opt_outs(session: Session, principal: Principal) -> list[dict[str, Any]]:
    """Numbers that said STOP, with whose number it is (staff must call them instead)."""
    rows = session.execute(
        select(SmsOptOut, User)
        .outerjoin(User, User.phone == SmsOptOut.phone)
        .where(SmsOptOut.opted_out.is_(True))
        .order_by(SmsOptOut.changed_at.desc())
    )
    return [
        {
            "phone": mask_phone(o.phone),
            "user": u.full_name if u else "unknown number",
            "since": o.changed_at,
            "source": o.source,
        }
        for o, u in rows
    ]


def loggers(session: Session, principal: Principal, *, now: datetime) -> list[dict[str, Any]]:
    stmt = select(TemperatureLogger).order_by(TemperatureLogger.serial)
    sites = principal.site_ids
    if sites is not None:
        stmt = stmt.where(TemperatureLogger.site_id.in_(sites))
    out = []
    for logger in session.scalars(stmt):
        interval = timedelta(seconds=logger.expected_interval_seconds)
        last = logger.last_reading_at
        silent = (
            logger.active and last is not None and now - last > interval * logger.silence_factor
        )
        out.append(
            {
                "serial": logger.serial,
                "site": logger.site.name,
                "placement": logger.placement,
                "profile": logger.profile,
                "interval": interval,
                "last_reading_at": last,
                "status": "silent"
                if silent
                else (
                    "excursion" if logger.excursion_open else ("live" if logger.active else "file")
                ),
            }
        )
    return out


def imports(session: Session, principal: Principal, *, limit: int = 20) -> list[dict[str, Any]]:
    stmt = select(LoggerImportRun).order_by(LoggerImportRun.id.desc()).limit(limit)
    sites = principal.site_ids
    if sites is not None:
        stmt = stmt.where(LoggerImportRun.site_id.in_(sites))
    return [import_dict(r) for r in session.scalars(stmt)]


def import_dict(run: LoggerImportRun) -> dict[str, Any]:
    percent = 100 if run.status == "done" else (int(100 * run.done / run.total) if run.total else 0)
    return {
        "id": run.id,
        "filename": run.filename,
        "status": run.status,
        "format": run.format,
        "done": run.done,
        "total": run.total,
        "percent": min(percent, 100),
        "readings_new": run.readings_new,
        "readings_duplicate": run.readings_duplicate,
        "readings_conflicting": run.readings_conflicting,
        "excursions": run.excursions,
        "summary": run.summary or {},
        "created_at": run.created_at,
        "finished_at": run.finished_at,
    }


def import_status(session: Session, principal: Principal, import_id: int) -> dict[str, Any]:
    run = session.get(LoggerImportRun, import_id)
    if run is None or not principal.can_see_site(run.site_id):
        raise TrackerError("not_found", f"no import {import_id}")
    return import_dict(run)


def item_exposure(
    session: Session, principal: Principal, public_id: str, *, now: datetime
) -> dict[str, Any]:
    """One bag's exposure ledger: time out of range, extremes, and the excursions it sat in."""
    item = session.scalar(select(Item).where(Item.public_id == public_id))
    visible = item is not None and (
        principal.site_ids is None
        or (item.site_id is not None and principal.can_see_site(item.site_id))
        or (
            item.order_id is not None
            and session.scalar(
                scope_orders(select(TherapyOrder), principal).where(
                    TherapyOrder.id == item.order_id
                )
            )
            is not None
        )
    )
    if item is None or not visible:
        raise TrackerError("not_found", f"no item {public_id}")
    result = readings.exposure_for_item(session, item, now=now)
    block = alert_service.is_blocked(session, item)
    ledger = result.exposure
    return {
        "item": item.public_id,
        "kind": item.kind,
        "state": item.state,
        "rules": result.rule_source,
        "loggers": result.loggers,
        "custody_time": ledger.custody_time if ledger else timedelta(0),
        "monitored": ledger.monitored if ledger else timedelta(0),
        "unmonitored": ledger.unmonitored if ledger else timedelta(0),
        "out_of_range": ledger.out_of_range if ledger else timedelta(0),
        "max_c": ledger.max_c if ledger else None,
        "min_c": ledger.min_c if ledger else None,
        "excursions": [
            {
                "id": e.id,
                "level": e.level,
                "kind": e.kind,
                "mode": e.mode,
                "threshold_c": e.threshold_c,
                "start_at": e.start_at,
                "end_at": e.end_at,
                "worst_c": e.worst_c,
            }
            for e in result.excursions
        ],
        "hold": {"reason": block.reason, "message": block.message} if block else None,
    }


def visible_sites(session: Session, principal: Principal) -> list[tuple[str, str]]:
    """(code, name) of the sites the principal works at, for upload forms."""
    stmt = select(Site).order_by(Site.name)
    if principal.site_ids is not None:
        stmt = stmt.where(Site.id.in_(principal.site_ids))
    return [(s.code, s.name) for s in session.scalars(stmt)]
