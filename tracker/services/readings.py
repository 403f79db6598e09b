"""Temperature loggers: registration, reading ingestion (API batches and file imports),
evaluation against the rules in force, exposure per bag, and silence.

Ingestion evaluates in the same transaction as the insert, so an excursion, its alert and
the alert's outbox rows commit together with the readings that caused them; the dispatcher
is woken by NOTIFY on commit. Evaluation is skipped when a batch cannot change anything:
all readings in range, none older than the last one, and no excursion under way.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from collections.abc import Sequence
from dataclasses import dataclass
from dataclasses import field
from datetime import datetime
from datetime import timedelta
from typing import Any

import psycopg
from sqlalchemy import insert
from sqlalchemy import select
from sqlalchemy.orm import Session
from sqlalchemy.orm import sessionmaker

from tracker.clock import require_aware
from tracker.domain import alerting
from tracker.domain.alerting import AlertKind
from tracker.domain.alerting import Notify
from tracker.domain.errors import TrackerError
from tracker.domain.excursions import BagExposure
from tracker.domain.excursions import Breach
from tracker.domain.excursions import CustodyInterval
from tracker.domain.excursions import TemperatureRule
from tracker.domain.excursions import bags_exposed
from tracker.domain.excursions import detect_silence
from tracker.domain.excursions import evaluate
from tracker.domain.excursions import exposure_ledger
from tracker.domain.excursions import find_excursions
from tracker.domain.excursions import rules_from_alarm_settings
from tracker.domain.loggers import AlarmSetting
from tracker.domain.loggers import LoggerImport
from tracker.domain.loggers import Reading
from tracker.domain.loggers import parse_logger_file
from tracker.models import Alert
from tracker.models import CustodyEvent
from tracker.models import Device
from tracker.models import ExcursionItem
from tracker.models import ExcursionRecord
from tracker.models import Item
from tracker.models import LoggerImportRun
from tracker.models import LoggerReading
from tracker.models import ProductProfile
from tracker.models import Shipment
from tracker.models import ShipmentItem
from tracker.models import Site
from tracker.models import TemperatureLogger
from tracker.models import TherapyOrder
from tracker.services import alerts
from tracker.services.audit import record_audit
from tracker.services.principals import Principal
from tracker.unit_of_work import UnitOfWork

log = logging.getLogger(__name__)

COPY_READINGS = (
    "COPY logger_readings (logger_id, at, celsius, received_at, import_id) FROM STDIN"
    " (FORMAT BINARY)"
)
SHIPMENT_START = ("packed", "picked_up")
SHIPMENT_END = ("received", "cancelled")
IMPORT_CHUNK = 1000


def register_logger(
    *,
    uow: UnitOfWork,
    principal: Principal,
    serial: str,
    site_code: str,
    placement: str,
    profile: str,
    expected_interval: timedelta,
    now: datetime,
    device_public_id: str | None = None,
    limit_c: float | None = None,
    location: str = "",
    shipper_public_id: str | None = None,
) -> TemperatureLogger:
    """Register a logger: where it measures, which rules apply, how often it reports."""
    session = uow.session
    site = session.scalar(select(Site).where(Site.code == site_code))
    if site is None:
        raise TrackerError("not_found", f"no site {site_code}")
    if not principal.is_admin:
        raise TrackerError("forbidden", "only administrators register loggers")
    if session.scalar(select(TemperatureLogger.id).where(TemperatureLogger.serial == serial)):
        raise TrackerError("duplicate_identifier", f"logger {serial} is already registered")
    device = None
    if device_public_id:
        device = session.scalar(select(Device).where(Device.public_id == device_public_id))
        if device is None or device.kind != "logger":
            raise TrackerError("not_a_logger", f"device {device_public_id} is not a logger")
    shipper = None
    if shipper_public_id:
        shipper = session.scalar(select(Item).where(Item.public_id == shipper_public_id))
        if shipper is None or shipper.kind != "cryoshipper":
            raise TrackerError("not_found", f"no cryoshipper {shipper_public_id}")
    logger = TemperatureLogger(
        serial=serial,
        device_id=device.id if device else None,
        site_id=site.id,
        placement=placement,
        location=location,
        shipper_item_id=shipper.id if shipper else None,
        profile=profile,
        limit_c=limit_c,
        expected_interval_seconds=int(expected_interval.total_seconds()),
        silence_factor=2.0,
        excursion_open=False,
        device_alarms={},
        active=True,
        created_at=require_aware(now),
    )
    session.add(logger)
    session.flush()
    record_audit(
        session,
        now=now,
        actor_user_id=principal.user_id,
        action="create",
        entity_type="logger",
        entity_id=serial,
        changes={"placement": [None, placement], "profile": [None, profile]},
        site_id=site.id,
    )
    return logger


def logger_for_device(session: Session, device_id: int | None) -> TemperatureLogger:
    logger = (
        session.scalar(select(TemperatureLogger).where(TemperatureLogger.device_id == device_id))
        if device_id is not None
        else None
    )
    if logger is None or not logger.active:
        raise TrackerError("not_a_logger", "this device is not registered as a logger")
    return logger


def start_series(session: Session, *, serial: str, at: datetime) -> None:
    """A logger starts a new leg: cumulative budgets count from here."""
    logger = session.scalar(select(TemperatureLogger).where(TemperatureLogger.serial == serial))
    if logger is not None and (logger.series_started_at is None or at > logger.series_started_at):
        logger.series_started_at = at


# --- ingestion ----------------------------------------------------------------------------


@dataclass
class IngestResult:
    accepted: int = 0
    duplicates: int = 0
    conflicts: list[dict[str, Any]] = field(default_factory=list)
    alerts: list[int] = field(default_factory=list)
    evaluated: bool = False


def _insert_new(
    session: Session,
    logger_id: int,
    readings: Sequence[Reading],
    now: datetime,
    import_id: int | None,
) -> set[datetime]:
    """Insert readings that are not stored yet; return the instants actually inserted."""
    if session.get_bind().dialect.name == "postgresql":
        # The session's own psycopg connection, so both paths run in its transaction.
        raw = session.connection().connection.driver_connection
        assert raw is not None
        # Usually every reading is new: a binary COPY is then the fastest insert there is.
        # A reading already stored aborts it, inside a savepoint, and the batch takes the
        # idempotent path below (the logger row lock orders rival batches of one logger).
        raw.execute("SAVEPOINT readings_copy")
        try:
            with raw.cursor().copy(COPY_READINGS) as copy:
                copy.set_types(["int4", "timestamptz", "float8", "timestamptz", "int4"])
                for r in readings:
                    copy.write_row((logger_id, r.at, r.celsius, now, import_id))
        except psycopg.errors.UniqueViolation:
            raw.execute("ROLLBACK TO SAVEPOINT readings_copy")
        else:
            raw.execute("RELEASE SAVEPOINT readings_copy")
            return {r.at for r in readings}
        # One statement, two arrays sent in binary; the inserted instants come back only
        # when some were already stored.
        count, some = (
            raw.cursor()
            .execute(
                "WITH ins AS ("
                " INSERT INTO logger_readings (logger_id, at, celsius, received_at, import_id)"
                " SELECT %(logger_id)s, t.at, t.c, %(now)s, %(import_id)s"
                " FROM unnest(%(ats)b::timestamptz[], %(cs)b::float8[]) AS t(at, c)"
                " ON CONFLICT DO NOTHING RETURNING at)"
                " SELECT count(*), CASE WHEN count(*) < %(n)s THEN array_agg(at) END FROM ins",
                {
                    "logger_id": logger_id,
                    "now": now,
                    "import_id": import_id,
                    "ats": [r.at for r in readings],
                    "cs": [r.celsius for r in readings],
                    "n": len(readings),
                },
                binary=True,
            )
            .fetchone()
        )
        if count == len(readings):
            return {r.at for r in readings}
        return {require_aware(at) for at in some or ()}
    # SQLite: one writer at a time (BEGIN IMMEDIATE), so look first, then insert the rest.
    lo, hi = min(r.at for r in readings), max(r.at for r in readings)
    stored = set(
        session.scalars(
            select(LoggerReading.at).where(
                LoggerReading.logger_id == logger_id, LoggerReading.at.between(lo, hi)
            )
        )
    )
    fresh = [r for r in readings if r.at not in stored]
    if fresh:
        session.execute(
            insert(LoggerReading),
            [
                {
                    "logger_id": logger_id,
                    "at": r.at,
                    "celsius": r.celsius,
                    "received_at": now,
                    "import_id": import_id,
                }
                for r in fresh
            ],
        )
    return {r.at for r in fresh}


def ingest_readings(
    *,
    uow: UnitOfWork,
    logger_id: int,
    readings: Sequence[Reading],
    now: datetime,
    import_id: int | None = None,
    evaluate_now: bool = True,
) -> IngestResult:
    """Store a batch (idempotent per logger and instant) and evaluate it in the same transaction.

    A second reading for a stored instant is a duplicate when the value matches and a conflict
    when it does not; the stored value stands either way (readings are evidence).
    """
    now = require_aware(now)
    session = uow.session
    # The logger row lock serialises batches of one logger, so evaluation sees a whole series
    # and two batches never upsert the same excursion at once.
    logger = session.scalar(
        select(TemperatureLogger)
        .where(TemperatureLogger.id == logger_id)
        .with_for_update(of=TemperatureLogger)
    )
    if logger is None:
        raise TrackerError("not_found", f"no logger {logger_id}")
    unique: dict[datetime, Reading] = {}
    for r in readings:
        unique.setdefault(r.at, r)
    batch = list(unique.values())
    result = IngestResult()
    if not batch:
        return result
    inserted = _insert_new(session, logger.id, batch, now, import_id)
    result.accepted = len(inserted)
    repeats = [r for r in batch if r.at not in inserted]
    if repeats:
        stored = dict(
            session.execute(
                select(LoggerReading.at, LoggerReading.celsius).where(
                    LoggerReading.logger_id == logger.id,
                    LoggerReading.at.in_([r.at for r in repeats]),
                )
            ).all()
        )
        for r in repeats:
            value = stored.get(r.at)
            if value is not None and abs(value - r.celsius) > 1e-9:
                result.conflicts.append(
                    {"at": r.at.isoformat(), "stored_c": value, "sent_c": r.celsius}
                )
            else:
                result.duplicates += 1
    if not inserted:
        return result
    new = batch if len(inserted) == len(batch) else [r for r in batch if r.at in inserted]
    previous_last = logger.last_reading_at
    interval = timedelta(seconds=logger.expected_interval_seconds)
    if previous_last is not None and now - previous_last > interval * logger.silence_factor:
        _resolve_silence(session, logger, now)  # it was silent long enough to have an alarm
    latest = max(r.at for r in new)
    if previous_last is None or latest > previous_last:
        logger.last_reading_at = latest
    if logger.series_started_at is None:
        logger.series_started_at = min(r.at for r in new)
    if not evaluate_now:
        return result
    rules = rules_for_logger(session, logger, at=latest).rules
    late = previous_last is not None and min(r.at for r in new) < previous_last
    # Rules are monotonic: a hot limit is crossed by some reading iff by the warmest one.
    warmest, coldest = max(r.celsius for r in new), min(r.celsius for r in new)
    out_of_range = any(
        rule.violated_by(warmest if rule.kind == "hot" else coldest) for rule in rules
    )
    if logger.excursion_open or out_of_range or late:
        result.alerts = [a.id for a in evaluate_logger(session, logger, now=now)]
        result.evaluated = True
    return result


# --- rules and evaluation -----------------------------------------------------------------


@dataclass(frozen=True)
class RuleChoice:
    rules: list[TemperatureRule]
    source: str
    profile_id: int | None = None
    profile_version: int | None = None


@dataclass(frozen=True)
class Placement:
    """A logger's view of custody: which bags it measured, when, and on which shipment."""

    interval: CustodyInterval
    item_id: int
    shipment_id: int | None


def _shipments_of(session: Session, logger: TemperatureLogger) -> list[Shipment]:
    cond = Shipment.logger_serial == logger.serial
    if logger.shipper_item_id is not None:
        cond = cond | (Shipment.shipper_id == logger.shipper_item_id)
    return list(session.scalars(select(Shipment).where(cond).order_by(Shipment.id)))


def _shipment_window(session: Session, shipment_id: int) -> tuple[datetime, datetime | None] | None:
    events = list(
        session.execute(
            select(CustodyEvent.to_state, CustodyEvent.occurred_at)
            .where(CustodyEvent.shipment_id == shipment_id, CustodyEvent.event_type == "transition")
            .order_by(CustodyEvent.occurred_at)
        )
    )
    starts = [at for state, at in events if state in SHIPMENT_START]
    if not starts:
        return None
    ends = [at for state, at in events if state in SHIPMENT_END]
    return min(starts), (max(ends) if ends else None)


def placements_for_logger(session: Session, logger: TemperatureLogger) -> list[Placement]:
    """Custody intervals of the bags this logger measured: its shipments' bags from packing to
    receipt, or (storage loggers) the bags stored at its site while they stayed 'stored'."""
    out: list[Placement] = []
    if logger.placement == "shipment" or logger.shipper_item_id is not None:
        for shipment in _shipments_of(session, logger):
            window = _shipment_window(session, shipment.id)
            if window is None:
                continue
            for item in shipment.items:
                out.append(
                    Placement(
                        CustodyInterval(item.public_id, logger.serial, window[0], window[1]),
                        item.id,
                        shipment.id,
                    )
                )
    if logger.placement == "storage":
        stored_ids = select(CustodyEvent.item_id).where(
            CustodyEvent.site_id == logger.site_id,
            CustodyEvent.to_state == "stored",
            CustodyEvent.event_type == "transition",
        )
        rows = list(
            session.execute(
                select(
                    CustodyEvent.item_id,
                    Item.public_id,
                    CustodyEvent.to_state,
                    CustodyEvent.site_id,
                    CustodyEvent.occurred_at,
                )
                .join(Item, Item.id == CustodyEvent.item_id)
                .where(
                    CustodyEvent.item_id.in_(stored_ids),
                    CustodyEvent.event_type == "transition",
                )
                .order_by(CustodyEvent.item_id, CustodyEvent.occurred_at, CustodyEvent.seq)
            )
        )
        for row, nxt in zip(rows, [*rows[1:], None][: len(rows)], strict=True):
            item_id, public_id, state, site_id, at = row
            if item_id is None or state != "stored" or site_id != logger.site_id:
                continue
            end = nxt[4] if nxt is not None and nxt[0] == item_id else None
            out.append(Placement(CustodyInterval(public_id, logger.serial, at, end), item_id, None))
    return out


def _shipment_at(placements: list[Placement], at: datetime) -> int | None:
    for p in placements:
        iv = p.interval
        if p.shipment_id and iv.start <= at and (iv.end is None or at < iv.end):
            return p.shipment_id
    return None


def rules_for_logger(
    session: Session,
    logger: TemperatureLogger,
    *,
    at: datetime,
    placements: list[Placement] | None = None,
) -> RuleChoice:
    """The rules in force for a logger at ``at``: the product profile of what it carries,
    else its own container profile (or the device's alarm settings)."""
    if logger.profile == "device" and logger.device_alarms.get("alarms"):
        settings = [
            AlarmSetting(
                slot=a["slot"],
                kind=a["kind"],
                mode=a["mode"],
                threshold_c=a["threshold_c"],
                delay=timedelta(seconds=a["delay_seconds"]),
            )
            for a in logger.device_alarms["alarms"]
        ]
        return RuleChoice(rules_from_alarm_settings(settings), "device alarm settings")
    if placements is None:
        placements = (
            placements_for_logger(session, logger) if logger.placement == "shipment" else []
        )
    shipment_id = _shipment_at(placements, at)
    if shipment_id is not None:
        shipment = session.get(Shipment, shipment_id)
        assert shipment is not None
        profile = session.get(TherapyOrder, shipment.order_id).product_profile  # type: ignore[union-attr]
        kinds = {i.kind for i in shipment.items}
        material: alerting.Material = (
            "fresh"
            if any(alerting.material_for(k, profile.starting_material) == "fresh" for k in kinds)
            else "cryogenic"
        )
        return RuleChoice(
            alerting.profile_rules(material, profile.data),
            f"product {profile.code} v{profile.version} ({material})",
            profile.id,
            profile.version,
        )
    own: alerting.Material = "fresh" if logger.profile == "fresh" else "cryogenic"
    data: dict[str, Any] = {} if logger.limit_c is None else {"storage_max_c": logger.limit_c}
    return RuleChoice(alerting.profile_rules(own, data), f"container profile {own}")


def _series(session: Session, logger: TemperatureLogger) -> list[Reading]:
    stmt = select(LoggerReading.at, LoggerReading.celsius).where(
        LoggerReading.logger_id == logger.id
    )
    if logger.series_started_at is not None:
        stmt = stmt.where(LoggerReading.at >= logger.series_started_at)
    return [Reading(at, c) for at, c in session.execute(stmt.order_by(LoggerReading.at))]


def _breach_key(logger: TemperatureLogger, b: Breach) -> str:
    return (
        f"{logger.id}:{b.level}:{b.kind}:{b.mode}:{b.threshold_c:g}:{int(b.inclusive)}:"
        f"{int(b.min_duration.total_seconds())}:{b.start.isoformat()}"
    )


def evaluate_logger(session: Session, logger: TemperatureLogger, *, now: datetime) -> list[Alert]:
    """Re-run the rules over the logger's current series; record breaches, name the bags
    exposed, and raise an alert for each new breach. Returns the alerts raised."""
    interval = timedelta(seconds=logger.expected_interval_seconds)
    readings = _series(session, logger)
    if not readings:
        return []
    placements = placements_for_logger(session, logger)
    choice = rules_for_logger(session, logger, at=readings[-1].at, placements=placements)
    breaches = evaluate(
        readings, choice.rules, expected_interval=interval, container_id=logger.serial
    )
    logger.excursion_open = any(
        e.ongoing for e in find_excursions(readings, choice.rules, expected_interval=interval)
    )
    by_public = {p.interval.bag_id: p.item_id for p in placements}
    intervals = [p.interval for p in placements]
    raised: list[Alert] = []
    for breach in breaches:
        record, created = _upsert_excursion(session, logger, breach, choice, placements, now)
        exposed = [by_public[b] for b in bags_exposed(breach, intervals) if b in by_public]
        for item_id in exposed:
            alerts.insert_ignore(
                session, ExcursionItem, {"excursion_id": record.id, "item_id": item_id}
            )
        if created:
            alert = _raise_excursion_alert(session, logger, record, exposed, now)
            if alert is not None:
                raised.append(alert)
    session.flush()
    return raised


def _upsert_excursion(
    session: Session,
    logger: TemperatureLogger,
    b: Breach,
    choice: RuleChoice,
    placements: list[Placement],
    now: datetime,
) -> tuple[ExcursionRecord, bool]:
    key = _breach_key(logger, b)
    values = {
        "end_at": b.end,
        "duration_seconds": int(b.duration.total_seconds()),
        "worst_c": b.worst_c,
        "worst_at": b.worst_at,
        "spans": {
            "spans": [[s.start.isoformat(), s.end.isoformat() if s.end else None] for s in b.spans]
        },
        "updated_at": now,
    }
    record = session.scalar(select(ExcursionRecord).where(ExcursionRecord.dedupe_key == key))
    if record is not None:
        for name, value in values.items():
            setattr(record, name, value)
        return record, False
    shipment_id = _shipment_at(placements, b.start)
    site_id = logger.site_id
    if shipment_id is not None:
        shipment = session.get(Shipment, shipment_id)
        site_id = shipment.origin_site_id if shipment else site_id
    record = ExcursionRecord(
        dedupe_key=key,
        logger_id=logger.id,
        shipment_id=shipment_id,
        site_id=site_id,
        # The rule in force, copied: later profile changes never rewrite this record.
        level=b.level,
        kind=b.kind,
        mode=b.mode,
        threshold_c=b.threshold_c,
        inclusive=b.inclusive,
        min_duration_seconds=int(b.min_duration.total_seconds()),
        rule_source=choice.source[:160],
        profile_id=choice.profile_id,
        profile_version=choice.profile_version,
        start_at=b.start,
        triggered_at=b.triggered_at,
        detected_at=now,
        **values,
    )
    session.add(record)
    session.flush()
    return record, True


def _raise_excursion_alert(
    session: Session,
    logger: TemperatureLogger,
    record: ExcursionRecord,
    exposed: list[int],
    now: datetime,
) -> Alert | None:
    shipment = session.get(Shipment, record.shipment_id) if record.shipment_id else None
    sign = ">=" if record.inclusive else ">"
    if record.kind == "cold":
        sign = "<=" if record.inclusive else "<"
    title = (
        f"{record.level.upper()}: logger {logger.serial} {record.kind} {record.mode} breach "
        f"({sign} {record.threshold_c:g} °C for "
        f"{alerting.format_duration(timedelta(seconds=record.min_duration_seconds))}), "
        f"worst {record.worst_c:g} °C; {len(exposed)} bag(s) exposed"
    )
    return alerts.raise_alert(
        session,
        dedupe_key=f"excursion:{record.id}",
        kind=AlertKind.temperature_excursion,
        severity=record.level,
        notify=alerting.notify_for_level(record.level),  # type: ignore[arg-type]
        title=title,
        site_id=record.site_id,
        now=now,
        sms_template="temperature_alarm",
        subject=shipment.public_id if shipment else f"logger:{logger.serial}",
        order_id=shipment.order_id if shipment else None,
        shipment_id=record.shipment_id,
        logger_id=logger.id,
        excursion_id=record.id,
    )


# --- silence ------------------------------------------------------------------------------


def _resolve_silence(session: Session, logger: TemperatureLogger, now: datetime) -> None:
    for alert in session.scalars(
        select(Alert).where(
            Alert.logger_id == logger.id,
            Alert.kind == AlertKind.logger_silent,
            Alert.status != "resolved",
        )
    ):
        alerts.resolve_alert(session, alert, now=now, resolution="logger reporting again")


def sweep_silent_loggers(*, uow: UnitOfWork, now: datetime) -> int:
    """Raise one alarm per silence: no reading for longer than ``silence_factor`` intervals."""
    session = uow.session
    raised = 0
    # No row locks: the alert's dedupe key (logger + last reading) makes a rival sweep a no-op,
    # and ingestion is never held up by a sweep.
    candidates = session.scalars(
        select(TemperatureLogger).where(
            TemperatureLogger.active.is_(True), TemperatureLogger.last_reading_at.is_not(None)
        )
    )
    for logger in candidates:
        assert logger.last_reading_at is not None
        silence = detect_silence(
            logger.last_reading_at,
            timedelta(seconds=logger.expected_interval_seconds),
            now,
            factor=logger.silence_factor,
        )
        if silence is None:
            continue
        placements = (
            placements_for_logger(session, logger) if logger.placement == "shipment" else []
        )
        shipment_id = _shipment_at(placements, now)
        if logger.placement == "shipment" and shipment_id is None:
            continue  # between legs a shipment logger is switched off: not a silence
        shipment = session.get(Shipment, shipment_id) if shipment_id else None
        alert = alerts.raise_alert(
            session,
            dedupe_key=f"silent:{logger.id}:{logger.last_reading_at.isoformat()}",
            kind=AlertKind.logger_silent,
            severity="alarm",
            notify=Notify.ladder,
            title=(
                f"Logger {logger.serial} silent for {alerting.format_duration(silence.silent_for)} "
                f"({silence.missed_readings} readings missed)"
            ),
            site_id=shipment.origin_site_id if shipment else logger.site_id,
            now=now,
            sms_template="logger_silent",
            subject=shipment.public_id if shipment else f"logger:{logger.serial}",
            order_id=shipment.order_id if shipment else None,
            shipment_id=shipment_id,
            logger_id=logger.id,
            details={"last_reading_at": logger.last_reading_at.isoformat()},
        )
        raised += alert is not None
    uow.commit()
    return raised


# --- exposure per bag ---------------------------------------------------------------------


@dataclass(frozen=True)
class ItemExposure:
    item_public_id: str
    exposure: BagExposure | None
    loggers: list[str]
    rule_source: str
    excursions: list[ExcursionRecord]


def exposure_for_item(session: Session, item: Item, *, now: datetime) -> ItemExposure:
    """One bag's exposure ledger across every logger that measured it, under the bag's rules."""
    order = session.get(TherapyOrder, item.order_id) if item.order_id else None
    profile: ProductProfile | None = order.product_profile if order else None
    material = alerting.material_for(item.kind, profile.starting_material if profile else "")
    rules = alerting.profile_rules(material, profile.data if profile else {})
    source = f"product {profile.code} v{profile.version} ({material})" if profile else material
    loggers = _loggers_of_item(session, item)
    intervals: list[CustodyInterval] = []
    readings: dict[str, list[Reading]] = {}
    interval = timedelta(minutes=5)
    for logger in loggers:
        own = [p.interval for p in placements_for_logger(session, logger) if p.item_id == item.id]
        if not own:
            continue
        intervals.extend(own)
        interval = max(interval, timedelta(seconds=logger.expected_interval_seconds))
        readings[logger.serial] = _readings_between(session, logger, own)
    ledger = exposure_ledger(intervals, readings, rules, expected_interval=interval, now=now)
    excursions = list(
        session.scalars(
            select(ExcursionRecord)
            .join(ExcursionItem, ExcursionItem.excursion_id == ExcursionRecord.id)
            .where(ExcursionItem.item_id == item.id)
            .order_by(ExcursionRecord.start_at)
        )
    )
    return ItemExposure(
        item.public_id, ledger.get(item.public_id), sorted(readings), source, excursions
    )


def _loggers_of_item(session: Session, item: Item) -> list[TemperatureLogger]:
    shipments = list(
        session.scalars(
            select(Shipment)
            .join(ShipmentItem, ShipmentItem.shipment_id == Shipment.id)
            .where(ShipmentItem.item_id == item.id)
        )
    )
    serials = {s.logger_serial for s in shipments if s.logger_serial}
    shippers = {s.shipper_id for s in shipments if s.shipper_id}
    stored_sites = set(
        session.scalars(
            select(CustodyEvent.site_id).where(
                CustodyEvent.item_id == item.id, CustodyEvent.to_state == "stored"
            )
        )
    )
    cond = TemperatureLogger.serial.in_(serials) | TemperatureLogger.shipper_item_id.in_(shippers)
    cond = cond | (
        TemperatureLogger.site_id.in_(stored_sites) & (TemperatureLogger.placement == "storage")
    )
    return list(session.scalars(select(TemperatureLogger).where(cond)))


def _readings_between(
    session: Session, logger: TemperatureLogger, intervals: list[CustodyInterval]
) -> list[Reading]:
    # One reading before the first interval: it holds until the next one (sample and hold).
    start = min(iv.start for iv in intervals)
    ends = [iv.end for iv in intervals]
    stmt = select(LoggerReading.at, LoggerReading.celsius).where(
        LoggerReading.logger_id == logger.id,
        LoggerReading.at >= start - timedelta(seconds=logger.expected_interval_seconds),
    )
    if all(e is not None for e in ends):
        stmt = stmt.where(LoggerReading.at <= max(e for e in ends if e is not None))
    return [Reading(at, c) for at, c in session.execute(stmt.order_by(LoggerReading.at))]


# --- file imports -------------------------------------------------------------------------


def queue_import(
    *,
    uow: UnitOfWork,
    principal: Principal,
    filename: str,
    content: str,
    site_code: str,
    now: datetime,
    serial: str | None = None,
    profile: str = "cryogenic",
) -> LoggerImportRun:
    """Store an uploaded logger file (the archived original) for the worker to import."""
    session = uow.session
    site = session.scalar(select(Site).where(Site.code == site_code))
    if site is None or not principal.can_see_site(site.id):
        raise TrackerError("not_found", f"no site {site_code}")
    if profile not in ("cryogenic", "fresh", "device"):
        raise TrackerError("invalid_request", f"unknown profile {profile}")
    run = LoggerImportRun(
        site_id=site.id,
        filename=filename[:255] or "upload.txt",
        serial_hint=(serial or "").strip() or None,
        profile_hint=profile,
        content=content,
        status="queued",
        total=0,
        done=0,
        readings_new=0,
        readings_duplicate=0,
        readings_conflicting=0,
        excursions=0,
        summary={},
        uploaded_by_user_id=principal.user_id,
        created_at=require_aware(now),
    )
    session.add(run)
    session.flush()
    record_audit(
        session,
        now=now,
        actor_user_id=principal.user_id,
        action="upload",
        entity_type="logger_import",
        entity_id=str(run.id),
        changes={"filename": [None, run.filename]},
        site_id=site.id,
    )
    return run


def _summary(parsed: LoggerImport) -> dict[str, Any]:
    sensors = parsed.config.sensors if parsed.config else ()
    return {
        "format": parsed.format,
        "device": {
            "model": parsed.device.model if parsed.device else None,
            "serial": parsed.device.serial if parsed.device else None,
        },
        "interval_seconds": (
            int(parsed.logging_interval.total_seconds()) if parsed.logging_interval else None
        ),
        "alarms": [
            {
                "slot": a.slot,
                "kind": a.kind,
                "mode": a.mode,
                "threshold_c": a.threshold_c,
                "delay_seconds": int(a.delay.total_seconds()),
            }
            for a in parsed.alarm_settings
        ],
        "sensor_timeouts": [
            {
                "sensor": s.name,
                "timeout_seconds": int(s.timeout.total_seconds()) if s.timeout else None,
            }
            for s in sensors
        ],
        "readings": len(parsed.readings),
        "missing_values": len(parsed.missing),
        "device_alarm_events": len(parsed.alarm_events),
        "errors": [f"line {i.line}: {i.code}: {i.message}" for i in parsed.errors[:50]],
        "warnings": [f"line {i.line}: {i.code}: {i.message}" for i in parsed.warnings[:50]],
        "signature_present": parsed.signature is not None,
    }


def run_import(
    *,
    session_factory: sessionmaker[Session],
    import_id: int,
    now: Callable[[], datetime],
) -> LoggerImportRun | None:
    """Parse, store and evaluate one queued import, committing progress as it goes.

    Progress lives on the import row and is committed in its own short transactions, so the
    page polling it moves while the file is read; readings go in chunks of IMPORT_CHUNK
    (idempotent, so a re-run after a crash resumes where it stopped).
    """

    def progress(status: str, done: int | None = None, total: int | None = None) -> None:
        with UnitOfWork(session_factory) as uow:
            run = uow.session.get(LoggerImportRun, import_id)
            assert run is not None
            run.status = status
            if done is not None:
                run.done = done
            if total is not None:
                run.total = total
            uow.commit()

    with UnitOfWork(session_factory) as uow:
        run = uow.session.scalar(
            select(LoggerImportRun)
            .where(LoggerImportRun.id == import_id, LoggerImportRun.status == "queued")
            .with_for_update(skip_locked=True)
        )
        if run is None:
            return None
        run.status, run.started_at = "parsing", now()
        content, filename = run.content, run.filename
        serial_hint, profile_hint, site_id = run.serial_hint, run.profile_hint, run.site_id
        uow.commit()
    try:
        parsed = parse_logger_file(
            content, filename=filename, progress=lambda d, t: progress("parsing", d, t)
        )
        serial = serial_hint or (parsed.device.serial if parsed.device else None)
        if parsed.format == "unknown" or not serial:
            raise ValueError(
                "unrecognised file" if parsed.format == "unknown" else "the file names no logger"
            )
        with UnitOfWork(session_factory) as uow:
            logger = _logger_for_import(uow.session, serial, site_id, profile_hint, parsed, now())
            logger_id = logger.id
            run = uow.session.get(LoggerImportRun, import_id)
            assert run is not None
            run.logger_id, run.format, run.summary = logger_id, parsed.format, _summary(parsed)
            run.status, run.total, run.done = "storing", len(parsed.readings), 0
            uow.commit()
        totals = IngestResult()
        for start in range(0, len(parsed.readings), IMPORT_CHUNK):
            chunk = parsed.readings[start : start + IMPORT_CHUNK]
            with UnitOfWork(session_factory) as uow:
                part = ingest_readings(
                    uow=uow,
                    logger_id=logger_id,
                    readings=chunk,
                    now=now(),
                    import_id=import_id,
                    evaluate_now=False,
                )
                run = uow.session.get(LoggerImportRun, import_id)
                assert run is not None
                totals.accepted += part.accepted
                totals.duplicates += part.duplicates
                totals.conflicts += part.conflicts
                run.done = start + len(chunk)
                run.readings_new, run.readings_duplicate = totals.accepted, totals.duplicates
                run.readings_conflicting = len(totals.conflicts)
                uow.commit()
        progress("evaluating")
        with UnitOfWork(session_factory) as uow:
            locked = uow.session.scalar(
                select(TemperatureLogger)
                .where(TemperatureLogger.id == logger_id)
                .with_for_update(of=TemperatureLogger)
            )
            assert locked is not None
            evaluate_logger(uow.session, locked, now=now())
            run = uow.session.get(LoggerImportRun, import_id)
            assert run is not None
            run.excursions = len(
                list(
                    uow.session.scalars(
                        select(ExcursionRecord.id).where(ExcursionRecord.logger_id == logger_id)
                    )
                )
            )
            run.status, run.finished_at = "done", now()
            uow.commit()
    except Exception as exc:  # the import failed; say why on the page, keep the worker alive
        log.exception("logger import %s failed", import_id)
        with UnitOfWork(session_factory) as uow:
            run = uow.session.get(LoggerImportRun, import_id)
            assert run is not None
            run.status, run.finished_at = "failed", now()
            run.summary = {**(run.summary or {}), "failure": f"{type(exc).__name__}: {exc}"}
            uow.commit()
    with UnitOfWork(session_factory) as uow:
        final = uow.session.get(LoggerImportRun, import_id)
        if final is not None:
            uow.session.expunge(final)  # a snapshot for the caller
        return final


def _logger_for_import(
    session: Session,
    serial: str,
    site_id: int,
    profile: str,
    parsed: LoggerImport,
    now: datetime,
) -> TemperatureLogger:
    logger = session.scalar(
        select(TemperatureLogger)
        .where(TemperatureLogger.serial == serial)
        .with_for_update(of=TemperatureLogger)
    )
    if logger is None:
        interval = parsed.logging_interval or timedelta(minutes=5)
        logger = TemperatureLogger(
            serial=serial,
            site_id=site_id,
            # A file read at receipt belongs to the shipment that named its serial, if any.
            placement=(
                "shipment"
                if session.scalar(select(Shipment.id).where(Shipment.logger_serial == serial))
                else "storage"
            ),
            location="",
            profile=profile,
            expected_interval_seconds=int(interval.total_seconds()),
            silence_factor=2.0,
            excursion_open=False,
            device_alarms={},
            # A downloaded file is history, not a live feed: no silence alarms for it.
            active=False,
            created_at=now,
        )
        session.add(logger)
    if parsed.alarm_settings:
        logger.device_alarms = {"alarms": _summary(parsed)["alarms"]}
    session.flush()
    return logger


def queued_imports(session: Session, limit: int = 5) -> list[int]:
    return list(
        session.scalars(
            select(LoggerImportRun.id)
            .where(LoggerImportRun.status == "queued")
            .order_by(LoggerImportRun.id)
            .limit(limit)
        )
    )
