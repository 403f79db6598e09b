"""JSON API for loggers, readings, imports, alerts and QA dispositions (under /api/v1).

Registered on the API blueprint, so authentication, CSRF rules, errors and the OpenAPI
document are the ones every other endpoint uses.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any
from typing import Literal

from flask import jsonify
from flask.typing import ResponseReturnValue
from pydantic import AwareDatetime
from pydantic import Field

from tracker import queries_alerts
from tracker.domain.alerting import Decision
from tracker.domain.errors import TrackerError
from tracker.domain.loggers import Reading
from tracker.services import alerts
from tracker.services import readings
from tracker.web.api import Strict
from tracker.web.api import bp
from tracker.web.api import registry
from tracker.web.auth import current_principal
from tracker.web.runtime import runtime

MAX_BATCH = 5000


class ReadingIn(Strict):
    at: AwareDatetime
    celsius: float = Field(ge=-273.15, le=200)


class ReadingsIn(Strict):
    serial: str | None = Field(default=None, max_length=64)
    readings: list[ReadingIn] = Field(min_length=1, max_length=MAX_BATCH)


class ConflictOut(Strict):
    at: str
    stored_c: float
    sent_c: float


class ReadingsOut(Strict):
    accepted: int
    duplicates: int
    conflicts: list[ConflictOut]
    alerts: list[int]


class LoggerIn(Strict):
    serial: str = Field(min_length=1, max_length=64)
    site: str
    placement: Literal["shipment", "storage"]
    profile: Literal["cryogenic", "fresh", "device"]
    expected_interval_seconds: int = Field(ge=1, le=24 * 3600)
    device: str | None = None
    limit_c: float | None = Field(default=None, ge=-273.15, le=200)
    location: str = Field(default="", max_length=120)
    shipper: str | None = None


class LoggerOut(Strict):
    serial: str
    placement: str
    profile: str


class ImportIn(Strict):
    filename: str = Field(min_length=1, max_length=255)
    content: str = Field(min_length=1, max_length=8 * 1024 * 1024)
    site: str
    serial: str | None = Field(default=None, max_length=64)
    profile: Literal["cryogenic", "fresh", "device"] = "cryogenic"


class ImportOut(Strict):
    id: int
    status: str
    done: int
    total: int
    percent: int
    readings_new: int
    readings_duplicate: int
    excursions: int


class AlertOut(Strict):
    id: int
    kind: str
    severity: str
    status: str
    title: str
    job_code: str
    rung: str


class AlertList(Strict):
    alerts: list[AlertOut]


class AckIn(Strict):
    comment: str = Field(min_length=1, max_length=2000)


class DispositionIn(Strict):
    decision: Decision
    comment: str = Field(min_length=1, max_length=2000)
    excursion_id: int | None = None


class DispositionOut(Strict):
    id: int
    item: str
    decision: str


def _alert_out(row: dict[str, Any]) -> dict[str, Any]:
    return AlertOut(**{k: row[k] for k in AlertOut.model_fields}).model_dump()


def _import_out(row: dict[str, Any]) -> dict[str, Any]:
    return ImportOut(**{k: row[k] for k in ImportOut.model_fields}).model_dump()


@registry.route(
    bp,
    "/logger-readings",
    "POST",
    summary="Post a batch of readings (logger device token; idempotent per instant)",
    body=ReadingsIn,
    response=ReadingsOut,
    tag="alerts",
)
def post_readings(payload: ReadingsIn) -> ResponseReturnValue:
    rt = runtime()
    principal = current_principal()
    with rt.uow() as uow:
        logger = readings.logger_for_device(uow.session, principal.device_id)
        if payload.serial is not None and payload.serial != logger.serial:
            raise TrackerError("not_a_logger", f"this token belongs to logger {logger.serial}")
        result = readings.ingest_readings(
            uow=uow,
            logger_id=logger.id,
            readings=[Reading(r.at, r.celsius) for r in payload.readings],
            now=rt.clock.now(),
        )
        uow.commit()
    return jsonify(
        {
            "accepted": result.accepted,
            "duplicates": result.duplicates,
            "conflicts": result.conflicts,
            "alerts": result.alerts,
        }
    )


@registry.route(
    bp,
    "/loggers",
    "POST",
    summary="Register a temperature logger (administrators)",
    body=LoggerIn,
    response=LoggerOut,
    status=201,
    tag="alerts",
    errors=(400, 401, 403, 404, 409),
)
def register_logger(payload: LoggerIn) -> ResponseReturnValue:
    rt = runtime()
    with rt.uow() as uow:
        logger = readings.register_logger(
            uow=uow,
            principal=current_principal(),
            serial=payload.serial,
            site_code=payload.site,
            placement=payload.placement,
            profile=payload.profile,
            expected_interval=timedelta(seconds=payload.expected_interval_seconds),
            device_public_id=payload.device,
            limit_c=payload.limit_c,
            location=payload.location,
            shipper_public_id=payload.shipper,
            now=rt.clock.now(),
        )
        uow.commit()
        out = LoggerOut(serial=logger.serial, placement=logger.placement, profile=logger.profile)
    return jsonify(out.model_dump()), 201


@registry.route(
    bp,
    "/logger-imports",
    "POST",
    summary="Upload a logger export (generic CSV, Fridge-tag, Q-tag); the worker imports it",
    body=ImportIn,
    response=ImportOut,
    status=202,
    tag="alerts",
)
def upload_import(payload: ImportIn) -> ResponseReturnValue:
    rt = runtime()
    principal = current_principal()
    with rt.uow() as uow:
        run = readings.queue_import(
            uow=uow,
            principal=principal,
            filename=payload.filename,
            content=payload.content,
            site_code=payload.site,
            serial=payload.serial,
            profile=payload.profile,
            now=rt.clock.now(),
        )
        uow.commit()
        out = _import_out(queries_alerts.import_dict(run))
    return jsonify(out), 202


@registry.route(
    bp,
    "/logger-imports/<int:import_id>",
    "GET",
    summary="Progress and outcome of a logger import",
    response=ImportOut,
    tag="alerts",
)
def get_import(import_id: int) -> ResponseReturnValue:
    with runtime().uow() as uow:
        row = queries_alerts.import_status(uow.session, current_principal(), import_id)
    return jsonify(_import_out(row))


@registry.route(
    bp, "/alerts", "GET", summary="Alerts visible to you", response=AlertList, tag="alerts"
)
def list_alerts() -> ResponseReturnValue:
    with runtime().uow() as uow:
        rows = queries_alerts.list_alerts(uow.session, current_principal())
    return jsonify({"alerts": [_alert_out(r) for r in rows]})


@registry.route(
    bp,
    "/alerts/<int:alert_id>/acknowledgements",
    "POST",
    summary="Acknowledge an alert (a comment is required); stops its escalation",
    body=AckIn,
    response=AlertOut,
    tag="alerts",
    errors=(400, 401, 403, 404, 409),
)
def acknowledge(alert_id: int, payload: AckIn) -> ResponseReturnValue:
    rt = runtime()
    principal = current_principal()
    with rt.uow() as uow:
        alerts.acknowledge_alert(
            uow=uow,
            principal=principal,
            alert_id=alert_id,
            comment=payload.comment,
            now=rt.clock.now(),
        )
        uow.commit()
        row = queries_alerts.alert_detail(uow.session, principal, alert_id)
    return jsonify(_alert_out(row))


@registry.route(
    bp,
    "/items/<public_id>/dispositions",
    "POST",
    summary="QA disposition for a bag: accept, quarantine or discard (gates custody)",
    body=DispositionIn,
    response=DispositionOut,
    status=201,
    tag="alerts",
    errors=(400, 401, 403, 404, 409),
)
def dispose(public_id: str, payload: DispositionIn) -> ResponseReturnValue:
    rt = runtime()
    with rt.uow() as uow:
        row = alerts.record_disposition(
            uow=uow,
            principal=current_principal(),
            item_public_id=public_id,
            decision=payload.decision,
            comment=payload.comment,
            excursion_id=payload.excursion_id,
            now=rt.clock.now(),
        )
        uow.commit()
        out = DispositionOut(id=row.id, item=public_id, decision=row.decision)
    return jsonify(out.model_dump()), 201


@registry.route(
    bp,
    "/items/<public_id>/exposure",
    "GET",
    summary="A bag's exposure ledger: time out of range, extremes, excursions, QA hold",
    tag="alerts",
)
def exposure(public_id: str) -> ResponseReturnValue:
    rt = runtime()
    with rt.uow() as uow:
        row = queries_alerts.item_exposure(
            uow.session, current_principal(), public_id, now=rt.clock.now()
        )
    out = {k: (v.total_seconds() if isinstance(v, timedelta) else v) for k, v in row.items()}
    out["excursions"] = [
        {k: (v.isoformat() if hasattr(v, "isoformat") else v) for k, v in e.items()}
        for e in row["excursions"]
    ]
    return jsonify(out)
