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
from pydantic import Field

from tracker import queries_alerts
from tracker.domain.alerting import Decision
from tracker.domain.errors import TrackerError
from tracker.domain.loggers import Reading
from tracker.services import alerts
from tracker.services import readings
from tracker.services import signoffs
from tracker.web.api import SignatureOut
from tracker.web.api import bp
from tracker.web.api import registry
from tracker.web.auth import current_principal
from tracker.web.openapi import DbId
from tracker.web.openapi import Strict
from tracker.web.openapi import UtcDateTime
from tracker.web.runtime import runtime

MAX_BATCH = 5000


class ReadingIn(Strict):
    at: UtcDateTime
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
    excursion_id: DbId | None = None
    password: str = Field(
        min_length=1,
        max_length=200,
        description="The decider's password, re-entered: the decision is e-signed (approval).",
    )


class DispositionOut(Strict):
    id: int
    item: str
    decision: str
    signature: SignatureOut


class ExposureExcursionOut(Strict):
    id: int
    level: str
    kind: str
    mode: str
    threshold_c: float
    start_at: UtcDateTime
    end_at: UtcDateTime | None
    worst_c: float | None


class HoldOut(Strict):
    reason: str
    message: str


class ExposureOut(Strict):
    item: str
    kind: str
    state: str
    rules: str
    loggers: list[str]
    custody_time: float = Field(description="Seconds in custody.")
    monitored: float = Field(description="Seconds measured by a logger.")
    unmonitored: float = Field(description="Seconds no logger measured.")
    out_of_range: float = Field(description="Seconds outside the bag's limits.")
    max_c: float | None
    min_c: float | None
    excursions: list[ExposureExcursionOut]
    hold: HoldOut | None


class TextOut(Strict):
    to: str
    level: int
    state: str
    twilio_status: str | None
    attempts: int
    body: str
    error: str | None
    sent_at: UtcDateTime | None


class RuleOut(Strict):
    kind: str
    mode: str
    threshold_c: float
    inclusive: bool
    min_duration: float = Field(description="Seconds.")
    source: str


class ExposedBagOut(Strict):
    public_id: str
    kind: str
    state: str
    decision: str | None
    decision_by: str | None
    decision_comment: str | None


class ExcursionOut(Strict):
    id: int
    logger: str
    level: str
    rule: RuleOut
    start_at: UtcDateTime
    end_at: UtcDateTime | None
    duration: float = Field(description="Seconds.")
    triggered_at: UtcDateTime | None
    worst_c: float | None
    worst_at: UtcDateTime | None
    bags: list[ExposedBagOut]


class DeadlineOut(Strict):
    kind: str
    label: str
    due_at: UtcDateTime
    warn_at: UtcDateTime | None
    status: str
    closed_at: UtcDateTime | None
    profile_version: int | None


class AlertDetailOut(Strict):
    id: int
    kind: str
    severity: str
    status: str
    title: str
    site: str
    site_timezone: str
    raised_at: UtcDateTime
    job_code: str
    ack_code: str | None
    rung: str
    escalation_level: int
    next_escalation_at: UtcDateTime | None
    ladder_exhausted: bool
    shipment: str | None
    order: str | None
    acknowledged_at: UtcDateTime | None
    acknowledged_by: str | None
    ack_channel: str | None
    ack_comment: str | None
    ack_phone: str
    resolved_at: UtcDateTime | None
    resolution: str | None
    texts: list[TextOut]
    excursion: ExcursionOut | None
    deadline: DeadlineOut | None


class OptOutOut(Strict):
    phone: str = Field(description="Masked: the last four digits only.")
    user: str
    since: UtcDateTime
    source: str


class OptOutList(Strict):
    opt_outs: list[OptOutOut]


class LoggerRowOut(Strict):
    serial: str
    site: str
    placement: str
    profile: str
    interval: float = Field(description="Expected seconds between readings.")
    last_reading_at: UtcDateTime | None
    status: Literal["live", "silent", "excursion", "file"]


class LoggerList(Strict):
    loggers: list[LoggerRowOut]


class ImportList(Strict):
    imports: list[ImportOut]


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
    summary=(
        "QA disposition for a bag: accept, quarantine or discard (gates custody); e-signed "
        "with the password re-entered, like the page"
    ),
    body=DispositionIn,
    response=DispositionOut,
    status=201,
    tag="alerts",
    errors=(400, 401, 403, 404, 409, 423),
    caller="person",
)
def dispose(public_id: str, payload: DispositionIn) -> ResponseReturnValue:
    rt = runtime()
    with rt.uow() as uow:
        # Part 11: the decision is recorded only with its signature (a wrong password is
        # counted toward lockout and nothing else is stored).
        row, signature = signoffs.record_signed_disposition(
            uow=uow,
            hasher=rt.hasher,
            settings=rt.settings,
            principal=current_principal(),
            item_public_id=public_id,
            decision=payload.decision,
            comment=payload.comment,
            password=payload.password,
            excursion_id=payload.excursion_id,
            now=rt.clock.now(),
        )
        uow.commit()
        out = DispositionOut(
            id=row.id,
            item=public_id,
            decision=row.decision,
            signature=SignatureOut.model_validate(signature, from_attributes=True),
        )
    return jsonify(out.model_dump(mode="json")), 201


@registry.route(
    bp,
    "/items/<public_id>/exposure",
    "GET",
    summary="A bag's exposure ledger: time out of range, extremes, excursions, QA hold",
    response=ExposureOut,
    tag="alerts",
)
def exposure(public_id: str) -> ResponseReturnValue:
    rt = runtime()
    with rt.uow() as uow:
        row = queries_alerts.item_exposure(
            uow.session, current_principal(), public_id, now=rt.clock.now()
        )
    out = {k: (v.total_seconds() if isinstance(v, timedelta) else v) for k, v in row.items()}
    return jsonify(ExposureOut.model_validate(out, strict=False).model_dump(mode="json"))


@registry.route(
    bp,
    "/alerts/<int:alert_id>",
    "GET",
    summary="One alert: its escalation, texts sent, excursion with the bags' QA decisions",
    response=AlertDetailOut,
    tag="alerts",
)
def get_alert(alert_id: int) -> ResponseReturnValue:
    with runtime().uow() as uow:
        row = queries_alerts.alert_detail(uow.session, current_principal(), alert_id)
    return jsonify(
        AlertDetailOut.model_validate(_seconds(row), strict=False).model_dump(mode="json")
    )


@registry.route(
    bp,
    "/sms-opt-outs",
    "GET",
    summary="Phone numbers that replied STOP (masked), and whose they are",
    response=OptOutList,
    tag="alerts",
)
def list_opt_outs() -> ResponseReturnValue:
    with runtime().uow() as uow:
        rows = queries_alerts.opt_outs(uow.session, current_principal())
    return jsonify(
        OptOutList.model_validate({"opt_outs": rows}, strict=False).model_dump(mode="json")
    )


@registry.route(
    bp,
    "/loggers",
    "GET",
    summary="Temperature loggers at your sites: live, silent, in excursion, or file-only",
    response=LoggerList,
    tag="alerts",
)
def list_loggers() -> ResponseReturnValue:
    rt = runtime()
    with rt.uow() as uow:
        rows = queries_alerts.loggers(uow.session, current_principal(), now=rt.clock.now())
    out = {"loggers": [_seconds(r) for r in rows]}
    return jsonify(LoggerList.model_validate(out, strict=False).model_dump(mode="json"))


@registry.route(
    bp,
    "/logger-imports",
    "GET",
    summary="Recent logger file imports at your sites, newest first",
    response=ImportList,
    tag="alerts",
)
def list_imports() -> ResponseReturnValue:
    with runtime().uow() as uow:
        rows = queries_alerts.imports(uow.session, current_principal())
    return jsonify({"imports": [_import_out(r) for r in rows]})


def _seconds(value: Any) -> Any:
    """Durations as seconds, through nested dicts and lists."""
    if isinstance(value, timedelta):
        return value.total_seconds()
    if isinstance(value, dict):
        return {k: _seconds(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_seconds(v) for v in value]
    return value
