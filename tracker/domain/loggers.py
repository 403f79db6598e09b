"""Parsers for temperature-logger exports: a generic CSV and Berlinger text reports.

``parse_logger_file`` detects the format and returns a ``LoggerImport``. Nothing is dropped
silently: a row that cannot be used becomes an ``ImportIssue`` (line number + reason code from
``ISSUE_CODES``) in ``errors``; oddities that do not lose data go to ``warnings``. The caller
decides whether an import with errors is accepted.

Berlinger exports (Fridge-tag 2 / 2L / Ultra Low, Q-tag CLm doc and relatives) share one layout:
indented ``Key: value`` lines (several pairs per line separated by ", "), numbered sub-sections,
tab-separated ``Data:`` and ``Marker:`` tables, and a trailing ``Cert``/``Sig Cert``/``Sig``
block. Their timestamps are device-local wall-clock times; the ``Zone`` field gives the device's
UTC offset in decimal hours, which callers may override when they know the clock was set
differently (``device_utc_offset``). The offset is fixed: these devices do not follow DST.

Facts the code relies on (checked against the real exports in ``tests/data/loggers``):
- Fridge-tag alarm slot 0 is the lower (cold) limit and slot 1 the upper (hot) one; both trigger
  on a single uninterrupted event (Berlinger manual, "cumulative daily time" section). The
  per-day ``t Acc`` totals are informational and never trigger an alarm.
- Q-tag alarm ``Type`` codes: 0 off, 1 cold single-event, 2 hot single-event, 3 cold cumulative,
  4 hot cumulative (as read by msupply-foundation/temperature-sensor; matches the 2-8 °C file).
- ``--.-`` in a data row is a logged time without a value (external probe disconnected, or out of
  the probe's display range); such rows become ``MissingReading`` entries, not readings.
"""

from __future__ import annotations

import csv
import io
import math
import re
from collections.abc import Callable
from collections.abc import Iterator
from dataclasses import dataclass
from dataclasses import field
from datetime import UTC
from datetime import date
from datetime import datetime
from datetime import time
from datetime import timedelta
from datetime import timezone
from typing import Literal

LoggerFormat = Literal["csv", "berlinger_fridgetag", "berlinger_qtag", "unknown"]
AlarmKind = Literal["hot", "cold"]
AlarmMode = Literal["consecutive", "cumulative"]
SensorName = Literal["internal", "external"]
ProgressCallback = Callable[[int, int], None]

ISSUE_CODES: dict[str, str] = {
    # errors: data that could not be imported
    "empty_file": "The file contains no data.",
    "unknown_format": "The file is neither the generic CSV nor a known logger export.",
    "missing_column": "A required CSV column is missing from the header.",
    "wrong_column_count": "The row has a different number of fields than the header.",
    "bad_timestamp": "The timestamp cannot be parsed.",
    "naive_timestamp": "The timestamp has no UTC offset.",
    "bad_temperature": "The temperature is not a finite number.",
    "implausible_temperature": "The temperature is outside -273.15..200 °C.",
    "duplicate_timestamp": "Another row already holds a reading for this instant.",
    "serial_mismatch": "The row names a different logger serial than the rest of the file.",
    "missing_utc_offset": "The export has no Zone field and no device UTC offset was given.",
    "bad_utc_offset": "The Zone field is not a UTC offset between -14 and +14 hours.",
    "bad_row": "A data-table row does not have the expected cells.",
    # warnings: the import is complete but something deserves a look
    "no_value": "Logged times without a temperature (sensor timeout or out of range).",
    "not_chronological": "Rows are out of time order; readings were sorted.",
    "unknown_column": "An unrecognised CSV column was ignored.",
    "unknown_alarm_type": "An alarm definition has a type code this parser does not know.",
    "utc_offset_overridden": "The caller's device UTC offset replaced the file's Zone field.",
    "unparsed_line": "A line did not match the export's key/value layout and was ignored.",
    "irregular_interval": "Some steps between rows differ from the logging interval.",
    "no_time_series": "The export has no Data section (only daily summaries).",
    "flag_mismatch": "The device's out-of-limits flag disagrees with its own alarm limits.",
    "fahrenheit_converted": "The export was in °F; values were converted to °C.",
    "missing_signature": "The export has no Cert/Sig block.",
}

_PLAUSIBLE_MIN_C = -273.15
_PLAUSIBLE_MAX_C = 200.0
_PROGRESS_EVERY = 256
_NO_VALUE = "--.-"
_SENSOR_KEYS: tuple[tuple[str, SensorName], ...] = (
    ("Int Sensor", "internal"),
    ("Ext Sensor", "external"),
)


def _aware_utc(value: datetime, name: str = "datetime") -> datetime:
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(f"naive {name} refused: give a UTC offset")
    return value.astimezone(UTC)


@dataclass(frozen=True, slots=True)
class Reading:
    """One temperature reading; ``at`` is normalised to aware UTC."""

    at: datetime
    celsius: float

    def __post_init__(self) -> None:
        object.__setattr__(self, "at", _aware_utc(self.at, "reading time"))
        if not math.isfinite(self.celsius):
            raise ValueError("reading temperature must be a finite number")


@dataclass(frozen=True, slots=True)
class MissingReading:
    """A time the device logged without a value (``--.-``)."""

    at: datetime
    line: int


@dataclass(frozen=True, slots=True)
class ImportIssue:
    """An error or warning tied to a line of the file (``None`` for whole-file issues)."""

    line: int | None
    code: str
    message: str

    def __post_init__(self) -> None:
        if self.code not in ISSUE_CODES:
            raise ValueError(f"undocumented import issue code: {self.code!r}")


@dataclass(frozen=True, slots=True)
class DeviceInfo:
    """Who measured: the logger's identity as the file states it."""

    model: str | None
    serial: str | None
    firmware: str | None = None
    report_version: str | None = None
    pcb: str | None = None
    lot: str | None = None
    cid: str | None = None
    device_id: str | None = None
    uses_external_sensor: bool | None = None


@dataclass(frozen=True, slots=True)
class AlarmSetting:
    """One alarm the device was configured with, in the same terms as ``TemperatureRule``.

    A reading at or beyond ``threshold_c`` (>= for hot, <= for cold) counts towards the alarm;
    the vendors' own wording on whether the limit itself is included varies, so callers who need
    the strict reading should adjust the rule they derive.
    """

    slot: int
    kind: AlarmKind
    mode: AlarmMode
    threshold_c: float
    delay: timedelta
    device_type_code: int | None = None


@dataclass(frozen=True, slots=True)
class SensorSettings:
    """Per-sensor settings: how long a lost probe may be silent, and its calibration offset."""

    name: SensorName
    timeout: timedelta | None
    offset_c: float | None


@dataclass(frozen=True, slots=True)
class LoggerConfig:
    """Device configuration besides alarms. ``raw`` keeps every ``Conf`` value by dotted path."""

    logging_interval: timedelta | None
    utc_offset: timedelta | None
    file_utc_offset: timedelta | None
    start_delay: timedelta | None
    temperature_unit: str | None
    moving_average: int | None
    mkt_activation_energy_kj_per_mol: float | None
    sensors: tuple[SensorSettings, ...]
    raw: dict[str, str]


@dataclass(frozen=True, slots=True)
class DailyAlarmTotal:
    """One alarm slot's line in a Fridge-tag daily summary.

    ``alarm_code`` is the export's ``C A`` field, kept verbatim: its meaning is not documented in
    the file and the two samples we have do not settle it.
    """

    slot: int
    time_accumulated: timedelta
    first_at: datetime | None
    ambient_c: float | None
    alarm_code: int | None


@dataclass(frozen=True, slots=True)
class SensorTimeoutTotal:
    sensor: SensorName
    time_accumulated: timedelta
    first_at: datetime | None


@dataclass(frozen=True, slots=True)
class DailySummary:
    """The device's own per-day statistics (Fridge-tag ``Hist``); ``day`` is device-local."""

    day: date
    min_c: float | None
    min_at: datetime | None
    max_c: float | None
    max_at: datetime | None
    mean_c: float | None
    alarms: tuple[DailyAlarmTotal, ...]
    sensor_timeouts: tuple[SensorTimeoutTotal, ...]
    events: int | None
    checked_at: tuple[datetime, ...]


@dataclass(frozen=True, slots=True)
class DeviceAlarmEvent:
    """An alarm the device itself reported (Q-tag ``Res`` / ``Alarm``).

    ``started_at`` is when the limit was first crossed, ``triggered_at`` when the alarm fired,
    ``ended_at`` when the temperature came back (``None``: not back before the logger stopped).
    """

    slot: int
    started_at: datetime | None
    triggered_at: datetime | None
    ended_at: datetime | None
    time_in_alarm_zone: timedelta | None
    extreme_c: float | None
    extreme_at: datetime | None


@dataclass(frozen=True, slots=True)
class Marker:
    number: int
    celsius: float | None
    at: datetime


@dataclass(frozen=True, slots=True)
class DeviceError:
    """An entry in a Fridge-tag ``Errors`` section (device self-test error code)."""

    code: str
    count: int | None
    at: datetime | None


@dataclass(frozen=True, slots=True)
class RunSummary:
    """Whole-run facts: activation, start/stop, and the device's own statistics."""

    activated_at: datetime | None = None
    start_triggered_at: datetime | None = None
    started_at: datetime | None = None
    stopped_at: datetime | None = None
    report_created_at: datetime | None = None
    run_number: int | None = None
    min_c: float | None = None
    min_at: datetime | None = None
    max_c: float | None = None
    max_at: datetime | None = None
    mean_c: float | None = None
    mkt_c: float | None = None


@dataclass(frozen=True, slots=True)
class SignatureBlock:
    """The vendor's certificate and signature as text; nothing here is verified.

    Line ends are normalised to ``\n``: verification, if it comes, must run on the archived
    original upload, not on this copy.
    """

    text: str
    issuer: str | None
    public_key: str | None
    signature_certificate: str | None
    signature: str | None
    first_line: int


@dataclass(frozen=True, slots=True)
class LoggerImport:
    """Everything read from one logger file."""

    format: LoggerFormat
    source_name: str | None
    device: DeviceInfo | None
    config: LoggerConfig | None
    alarm_settings: list[AlarmSetting]
    readings: list[Reading]
    missing: list[MissingReading] = field(default_factory=list)
    daily_summaries: list[DailySummary] = field(default_factory=list)
    alarm_events: list[DeviceAlarmEvent] = field(default_factory=list)
    markers: list[Marker] = field(default_factory=list)
    device_errors: list[DeviceError] = field(default_factory=list)
    run: RunSummary | None = None
    signature: SignatureBlock | None = None
    warnings: list[ImportIssue] = field(default_factory=list)
    errors: list[ImportIssue] = field(default_factory=list)

    @property
    def logging_interval(self) -> timedelta | None:
        return self.config.logging_interval if self.config else None


def parse_logger_file(
    text: str,
    *,
    filename: str | None = None,
    device_utc_offset: timedelta | None = None,
    progress: ProgressCallback | None = None,
) -> LoggerImport:
    """Detect the export format and parse it.

    ``device_utc_offset`` applies to Berlinger exports only: the offset of the device clock
    from UTC, used instead of the file's ``Zone`` field. ``progress(done, total)`` is called
    every few hundred data rows and once at the end.
    """
    text = text.removeprefix("\ufeff")
    lines = text.splitlines()
    fmt = detect_format(text)
    if fmt == "csv":
        return _parse_csv(lines, filename, progress)
    if fmt in ("berlinger_fridgetag", "berlinger_qtag"):
        return _parse_berlinger(lines, fmt, filename, device_utc_offset, progress)
    if not text.strip():
        issue = ImportIssue(None, "empty_file", f"{filename or 'input'} is empty")
    else:
        issue = ImportIssue(
            1, "unknown_format", f"{filename or 'input'}: unrecognised first line {lines[0]!r:.60}"
        )
    return LoggerImport("unknown", filename, None, None, [], [], errors=[issue])


def detect_format(text: str) -> LoggerFormat:
    """Name the export format from the content alone (file names lie)."""
    lines = [line for line in text.removeprefix("\ufeff").splitlines() if line.strip()]
    if not lines:
        return "unknown"
    first = lines[0].strip()
    if first.startswith("Device:"):
        model = first.partition(":")[2]
        tops = {line.rstrip(":").strip() for line in lines if line[:1].isalpha()}
        if "Fridge-tag" in model or "Hist" in tops:
            return "berlinger_fridgetag"
        if "Q-tag" in model or "Res" in tops:
            return "berlinger_qtag"
        return "unknown"
    header = {cell.strip().lower() for cell in first.split(",")}
    # One known column is enough to call it our CSV, so a missing one is reported precisely.
    if header & {"timestamp", "temperature_c"}:
        return "csv"
    return "unknown"


def iter_csv_readings(
    lines: list[str], *, first_line: int = 1
) -> Iterator[tuple[int, Reading | ImportIssue, str | None]]:
    """Yield ``(line, reading-or-error, serial)`` for each data row of a generic CSV.

    ``lines`` includes the header. This is the streaming form used by ``parse_logger_file``;
    it does not check order or duplicates, which need the whole series.
    """
    reader = csv.reader(io.StringIO("\n".join(lines)))
    try:
        header = [cell.strip().lower() for cell in next(reader)]
    except StopIteration:
        return
    index = {name: i for i, name in enumerate(header)}
    if "timestamp" not in index or "temperature_c" not in index:
        missing = sorted({"timestamp", "temperature_c"} - index.keys())
        yield first_line, ImportIssue(first_line, "missing_column", f"missing {missing}"), None
        return
    serial_col = index.get("logger_serial")
    for row in reader:
        line = first_line + reader.line_num - 1
        if not any(cell.strip() for cell in row):
            continue
        serial = None
        if serial_col is not None and serial_col < len(row):
            serial = row[serial_col].strip() or None
        yield line, _csv_row(row, line, header, index), serial


def _csv_row(
    row: list[str], line: int, header: list[str], index: dict[str, int]
) -> Reading | ImportIssue:
    if len(row) != len(header):
        return ImportIssue(
            line, "wrong_column_count", f"{len(row)} fields where the header has {len(header)}"
        )
    raw_ts = row[index["timestamp"]].strip()
    raw_t = row[index["temperature_c"]].strip()
    try:
        at = datetime.fromisoformat(raw_ts)
    except ValueError:
        return ImportIssue(line, "bad_timestamp", f"not ISO 8601: {raw_ts!r}")
    if at.tzinfo is None:
        return ImportIssue(line, "naive_timestamp", f"no UTC offset in {raw_ts!r}")
    celsius = _float_or_none(raw_t)
    if celsius is None:
        return ImportIssue(line, "bad_temperature", f"not a number: {raw_t!r}")
    if not _PLAUSIBLE_MIN_C <= celsius <= _PLAUSIBLE_MAX_C:
        return ImportIssue(line, "implausible_temperature", f"{celsius} °C")
    return Reading(at, celsius)


def _parse_csv(
    lines: list[str], filename: str | None, progress: ProgressCallback | None
) -> LoggerImport:
    warnings: list[ImportIssue] = []
    errors: list[ImportIssue] = []
    skip = next(i for i, line in enumerate(lines) if line.strip())
    lines = lines[skip:]
    header = [cell.strip().lower() for cell in next(csv.reader([lines[0]]))]
    for name in header:
        if name not in ("timestamp", "temperature_c", "logger_serial"):
            warnings.append(ImportIssue(skip + 1, "unknown_column", f"column {name!r} ignored"))
    total = max(len(lines) - 1, 0)
    serial: str | None = None
    rows: list[tuple[int, Reading]] = []
    rows_iter = iter_csv_readings(lines, first_line=skip + 1)
    for done, (line, item, row_serial) in enumerate(rows_iter, start=1):
        if isinstance(item, ImportIssue):
            errors.append(item)
        elif serial is not None and row_serial is not None and row_serial != serial:
            errors.append(
                ImportIssue(line, "serial_mismatch", f"{row_serial!r} in a file of {serial!r}")
            )
        else:
            serial = serial or row_serial
            rows.append((line, item))
        if progress is not None and done % _PROGRESS_EVERY == 0:
            progress(done, total)
    readings = _order_and_dedupe(rows, warnings, errors)
    if progress is not None:
        progress(total, total)
    device = DeviceInfo(model=None, serial=serial)
    return LoggerImport(
        "csv",
        filename,
        device,
        None,
        [],
        readings,
        warnings=_by_line(warnings),
        errors=_by_line(errors),
    )


def _by_line(issues: list[ImportIssue]) -> list[ImportIssue]:
    """Whole-file issues first, then in file order (stable for equal lines)."""
    return sorted(issues, key=lambda i: -1 if i.line is None else i.line)


def _order_and_dedupe(
    rows: list[tuple[int, Reading]], warnings: list[ImportIssue], errors: list[ImportIssue]
) -> list[Reading]:
    """Sort rows by time (warning once if needed); a second row for one instant is an error."""
    if any(b[1].at < a[1].at for a, b in zip(rows, rows[1:], strict=False)):
        first_bad = next(b[0] for a, b in zip(rows, rows[1:], strict=False) if b[1].at < a[1].at)
        warnings.append(
            ImportIssue(first_bad, "not_chronological", "rows out of time order; sorted")
        )
    seen: dict[datetime, int] = {}
    kept: list[Reading] = []
    for line, reading in sorted(rows, key=lambda r: (r[1].at, r[0])):
        if reading.at in seen:
            errors.append(
                ImportIssue(line, "duplicate_timestamp", f"same instant as line {seen[reading.at]}")
            )
            continue
        seen[reading.at] = line
        kept.append(reading)
    return kept


# --- Berlinger text exports -------------------------------------------------------------------


@dataclass(slots=True)
class _Node:
    key: str
    value: str | None  # None: a section header ("Key:" alone on its line)
    line: int
    children: list[_Node] = field(default_factory=list)

    def child(self, key: str) -> _Node | None:
        return next((c for c in self.children if c.key == key), None)

    def get(self, key: str) -> str | None:
        """The value of a direct child; a header without children reads as empty text."""
        node = self.child(key)
        if node is None:
            return None
        if node.value is None:
            return None if node.children else ""
        return node.value

    def path(self, *keys: str) -> _Node | None:
        node: _Node | None = self
        for key in keys:
            node = node.child(key) if node else None
        return node


# A pair separator is ", " followed by something shaped like "Key:"; values may contain commas.
_PAIR_SPLIT = re.compile(r", (?=[^,:]+:)")


@dataclass(slots=True)
class _Tree:
    root: _Node
    tables: dict[str, list[tuple[int, list[str]]]]
    cert_line: int | None


def _build_tree(lines: list[str], warnings: list[ImportIssue]) -> _Tree:
    root = _Node("", None, 0)
    stack: list[tuple[int, _Node]] = [(-1, root)]
    tables: dict[str, list[tuple[int, list[str]]]] = {}
    top = ""
    cert_line: int | None = None
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        if line.startswith("\t"):
            if top in ("Data", "Marker"):
                tables.setdefault(top, []).append((number, line.split("\t")[1:]))
            else:
                warnings.append(ImportIssue(number, "unparsed_line", "table row outside a table"))
            continue
        depth = len(line) - len(line.lstrip(" "))
        pieces = _PAIR_SPLIT.split(line.strip())
        nodes: list[_Node] = []
        for piece in pieces:
            key, sep, value = piece.partition(":")
            if not sep:
                warnings.append(ImportIssue(number, "unparsed_line", f"no 'Key:' in {piece!r}"))
                continue
            nodes.append(_Node(key.strip(), value.strip(), number))
        if not nodes:
            continue
        while stack[-1][0] >= depth:
            stack.pop()
        parent = stack[-1][1]
        parent.children.extend(nodes)
        if len(nodes) == 1 and nodes[0].value == "" and len(pieces) == 1:
            nodes[0].value = None
            stack.append((depth, nodes[0]))
        if depth == 0:
            top = nodes[0].key
            if top == "Cert" and cert_line is None:
                cert_line = number
    return _Tree(root, tables, cert_line)


def _float_or_none(raw: str | None) -> float | None:
    if raw is None or not raw.strip():
        return None
    try:
        value = float(raw.strip())
    except ValueError:
        return None
    return value if math.isfinite(value) else None


def _int_or_none(raw: str | None) -> int | None:
    if raw is None:
        return None
    try:
        return int(raw.strip())
    except ValueError:
        return None


def _minutes(raw: str | None) -> timedelta | None:
    value = _int_or_none(raw)
    return None if value is None else timedelta(minutes=value)


def _zone_offset(raw: str) -> timedelta | None:
    """``Zone`` is decimal hours (``5.50`` is +05:30); refuse anything outside -14..+14 h."""
    hours = _float_or_none(raw)
    if hours is None or not -14 <= hours <= 14:
        return None
    return timedelta(minutes=round(hours * 60))


# Berlinger declares its timestamp layout in the Data table header (e.g. "yyyy-MM-dd hh:mm");
# the calendar format is a device setting, so honour the declared one.
_LAYOUT_TOKENS = (("yyyy", "%Y"), ("MM", "%m"), ("dd", "%d"), ("hh", "%H"), ("HH", "%H"))


def _strptime_layout(declared: str) -> str:
    layout = declared
    for token, directive in _LAYOUT_TOKENS:
        layout = layout.replace(token, directive)
    return layout.replace("mm", "%M")


_DEFAULT_LAYOUT = "%Y-%m-%d %H:%M"


@dataclass(slots=True)
class _Clock:
    """Turns the device's local wall-clock text into aware UTC."""

    zone: timezone
    layout: str = _DEFAULT_LAYOUT
    fahrenheit: bool = False

    def at(self, raw: str | None) -> datetime | None:
        if raw is None or not raw.strip():
            return None
        # The declared Data layout first, then the ISO-like one the header fields use.
        for candidate in dict.fromkeys((self.layout, _DEFAULT_LAYOUT)):
            try:
                # Naive on purpose: device wall-clock text; the zone is attached just below.
                local = datetime.strptime(raw.strip(), candidate)  # noqa: DTZ007
            except ValueError:
                continue
            return local.replace(tzinfo=self.zone).astimezone(UTC)
        return None

    def on(self, day: date, raw: str | None) -> datetime | None:
        if raw is None or not raw.strip():
            return None
        try:
            clock = time.fromisoformat(raw.strip())
        except ValueError:
            return None
        return datetime.combine(day, clock, tzinfo=self.zone).astimezone(UTC)

    def celsius(self, raw: str | None) -> float | None:
        value = _float_or_none(raw)
        if value is None or not self.fahrenheit:
            return value
        return round((value - 32.0) * 5.0 / 9.0, 3)

    def delta_c(self, raw: str | None) -> float | None:
        value = _float_or_none(raw)
        if value is None or not self.fahrenheit:
            return value
        return round(value * 5.0 / 9.0, 3)


def _flatten(node: _Node, prefix: str = "") -> dict[str, str]:
    out: dict[str, str] = {}
    for child in node.children:
        key = f"{prefix}{child.key}"
        if child.value is not None:
            out[key] = child.value
        elif child.children:
            out.update(_flatten(child, key + "."))
        else:
            out[key] = ""
    return out


def _parse_berlinger(
    lines: list[str],
    fmt: LoggerFormat,
    filename: str | None,
    device_utc_offset: timedelta | None,
    progress: ProgressCallback | None,
) -> LoggerImport:
    warnings: list[ImportIssue] = []
    errors: list[ImportIssue] = []
    tree = _build_tree(lines, warnings)
    root = tree.root
    conf = root.child("Conf") or _Node("Conf", None, 0)
    external = conf.get("Use ext devices")
    device = DeviceInfo(
        model=root.get("Device"),
        serial=conf.get("Serial"),
        firmware=root.get("Fw Vers"),
        report_version=root.get("Vers"),
        pcb=conf.get("PCB"),
        lot=conf.get("Lot"),
        cid=conf.get("CID"),
        device_id=root.get("Device ID"),
        uses_external_sensor=None if external is None else external == "1",
    )
    offset = _device_offset(conf.child("Zone"), device_utc_offset, warnings, errors)
    unit = conf.get("Temp unit") or "C"
    clock = _Clock(timezone(offset or timedelta(0)), fahrenheit=unit.upper() == "F")
    if clock.fahrenheit:
        warnings.append(ImportIssue(None, "fahrenheit_converted", "Temp unit: F"))
    zone = conf.child("Zone")
    config = LoggerConfig(
        logging_interval=_minutes(conf.get("Logging Interval")),
        utc_offset=offset,
        file_utc_offset=_zone_offset(zone.value or "") if zone else None,
        start_delay=_minutes(conf.get("Start Delay")),
        temperature_unit=unit,
        moving_average=_int_or_none(conf.get("Moving Avrg")),
        mkt_activation_energy_kj_per_mol=_float_or_none(conf.get("MKT Energy")),
        sensors=_sensor_settings(conf, clock),
        raw=_flatten(conf),
    )
    if fmt == "berlinger_fridgetag":
        alarms = _fridgetag_alarms(conf.child("Alarm"), clock)
    else:
        alarms = _qtag_alarms(conf.child("Alarm"), clock, warnings)
    if offset is None:
        # Without an offset every timestamp would be a guess: report it and import no times.
        return LoggerImport(
            fmt, filename, device, config, alarms, [], warnings=warnings, errors=_by_line(errors)
        )

    signature = _signature(lines, tree.cert_line, root)
    if signature is None:
        warnings.append(ImportIssue(None, "missing_signature", "no Cert block"))
    readings: list[Reading] = []
    missing: list[MissingReading] = []
    data = tree.tables.get("Data", [])
    if not data:
        warnings.append(ImportIssue(None, "no_time_series", "no Data section"))
    else:
        readings, missing = _read_data_table(
            data, clock, config.logging_interval, warnings, errors, progress
        )
        _check_flags(data, alarms, clock, warnings)
    return LoggerImport(
        fmt,
        filename,
        device,
        config,
        alarms,
        readings,
        missing=missing,
        daily_summaries=_daily_summaries(root.child("Hist"), clock),
        alarm_events=_qtag_events(root.path("Res", "Alarm"), clock),
        markers=_markers(tree.tables.get("Marker", []), clock, warnings),
        device_errors=_device_errors(root.child("Errors"), clock),
        run=_run_summary(root, clock),
        signature=signature,
        warnings=_by_line(warnings),
        errors=_by_line(errors),
    )


def _device_offset(
    zone: _Node | None,
    override: timedelta | None,
    warnings: list[ImportIssue],
    errors: list[ImportIssue],
) -> timedelta | None:
    """The device clock's UTC offset: the caller's word first, then the file's Zone field."""
    file_offset = _zone_offset(zone.value or "") if zone else None
    line = zone.line if zone else None
    if override is not None:
        if file_offset is not None and override != file_offset:
            warnings.append(
                ImportIssue(
                    line, "utc_offset_overridden", f"file says {file_offset}, caller {override}"
                )
            )
        return override
    if zone is None:
        errors.append(ImportIssue(None, "missing_utc_offset", "no Zone field in Conf"))
    elif file_offset is None:
        errors.append(ImportIssue(line, "bad_utc_offset", f"Zone {zone.value!r}"))
    return file_offset


def _sensor_settings(conf: _Node, clock: _Clock) -> tuple[SensorSettings, ...]:
    sensors: list[SensorSettings] = []
    for key, name in _SENSOR_KEYS:
        node = conf.child(key)
        if node is not None and node.children:
            timeout = _minutes(node.get("Timeout"))
            sensors.append(SensorSettings(name, timeout, clock.delta_c(node.get("Offset"))))
    if not sensors and conf.get("Temp Offset") is not None:
        sensors.append(SensorSettings("internal", None, clock.delta_c(conf.get("Temp Offset"))))
    return tuple(sensors)


def _fridgetag_alarms(alarm_conf: _Node | None, clock: _Clock) -> list[AlarmSetting]:
    alarms: list[AlarmSetting] = []
    for node in alarm_conf.children if alarm_conf else []:
        slot = _int_or_none(node.key)
        threshold = clock.celsius(node.get("T AL"))
        delay = _minutes(node.get("t AL"))
        if slot is None or threshold is None or delay is None:
            continue
        kind: AlarmKind = "cold" if slot == 0 else "hot"
        alarms.append(AlarmSetting(slot, kind, "consecutive", threshold, delay))
    return alarms


_QTAG_TYPES: dict[int, tuple[AlarmKind, AlarmMode]] = {
    1: ("cold", "consecutive"),
    2: ("hot", "consecutive"),
    3: ("cold", "cumulative"),
    4: ("hot", "cumulative"),
}


def _qtag_alarms(
    alarm_conf: _Node | None, clock: _Clock, warnings: list[ImportIssue]
) -> list[AlarmSetting]:
    alarms: list[AlarmSetting] = []
    for node in alarm_conf.children if alarm_conf else []:
        slot = _int_or_none(node.key)
        type_code = _int_or_none(node.get("Type"))
        if slot is None or type_code is None or type_code == 0:
            continue
        if type_code not in _QTAG_TYPES:
            warnings.append(
                ImportIssue(node.line, "unknown_alarm_type", f"alarm {slot}: Type {type_code}")
            )
            continue
        threshold = clock.celsius(node.get("T AL"))
        delay = _minutes(node.get("t AL"))
        if threshold is None or delay is None:
            continue
        kind, mode = _QTAG_TYPES[type_code]
        alarms.append(AlarmSetting(slot, kind, mode, threshold, delay, type_code))
    return alarms


def _daily_summaries(hist: _Node | None, clock: _Clock) -> list[DailySummary]:
    days: list[DailySummary] = []
    for node in hist.children if hist else []:
        raw_day = node.get("Date")
        if _int_or_none(node.key) is None or raw_day is None:
            continue
        try:
            day = date.fromisoformat(raw_day)
        except ValueError:
            continue
        alarms = []
        alarm_node = node.child("Alarm")
        for alarm in alarm_node.children if alarm_node else []:
            slot = _int_or_none(alarm.key)
            if slot is None:
                continue
            alarms.append(
                DailyAlarmTotal(
                    slot,
                    _minutes(alarm.get("t Acc")) or timedelta(0),
                    clock.on(day, alarm.get("TS A")),
                    clock.celsius(alarm.get("T Amb")),
                    _int_or_none(alarm.get("C A")),
                )
            )
        timeouts = []
        for key, sensor in _SENSOR_KEYS:
            timeout = node.child(f"{key} timeout")
            if timeout is not None:
                timeouts.append(
                    SensorTimeoutTotal(
                        sensor,
                        _minutes(timeout.get("t AccST")) or timedelta(0),
                        clock.on(day, timeout.get("TS ST")),
                    )
                )
        checked = node.child("Checked")
        checked_at = [
            at
            for c in (checked.children if checked else [])
            if (at := clock.on(day, c.value)) is not None
        ]
        days.append(
            DailySummary(
                day=day,
                min_c=clock.celsius(node.get("Min T")),
                min_at=clock.on(day, node.get("TS Min T")),
                max_c=clock.celsius(node.get("Max T")),
                max_at=clock.on(day, node.get("TS Max T")),
                mean_c=clock.celsius(node.get("Avrg T")),
                alarms=tuple(alarms),
                sensor_timeouts=tuple(timeouts),
                events=_int_or_none(node.get("Events")),
                checked_at=tuple(checked_at),
            )
        )
    return sorted(days, key=lambda d: d.day)


def _qtag_events(res_alarm: _Node | None, clock: _Clock) -> list[DeviceAlarmEvent]:
    events: list[DeviceAlarmEvent] = []
    for node in res_alarm.children if res_alarm else []:
        slot = _int_or_none(node.key)
        if slot is None or node.get("TS S") is None:
            continue  # a slot listed without content: the alarm never started
        events.append(
            DeviceAlarmEvent(
                slot=slot,
                started_at=clock.at(node.get("TS S")),
                triggered_at=clock.at(node.get("TS A")),
                ended_at=clock.at(node.get("TS E")),
                time_in_alarm_zone=_minutes(node.get("t A")),
                extreme_c=clock.celsius(node.get("T M")),
                extreme_at=clock.at(node.get("TS M")),
            )
        )
    return events


def _device_errors(errors_node: _Node | None, clock: _Clock) -> list[DeviceError]:
    return [
        DeviceError(node.key, _int_or_none(node.get("Err Count")), clock.at(node.get("Err TS")))
        for node in (errors_node.children if errors_node else [])
    ]


def _run_summary(root: _Node, clock: _Clock) -> RunSummary | None:
    hist = root.child("Hist")
    res = root.child("Res")
    if res is not None:
        return RunSummary(
            activated_at=clock.at(res.get("TS Actv")),
            start_triggered_at=clock.at(res.get("TS Start Trig")),
            started_at=clock.at(res.get("TS Start")),
            stopped_at=clock.at(res.get("TS Stop")),
            run_number=_int_or_none(res.get("Run Number")),
            min_c=clock.celsius(res.get("Min T")),
            min_at=clock.at(res.get("TS Min T")),
            max_c=clock.celsius(res.get("Max T")),
            max_at=clock.at(res.get("TS Max T")),
            mean_c=clock.celsius(res.get("Avrg T")),
            mkt_c=clock.celsius(res.get("MKT")),
        )
    if hist is not None:
        return RunSummary(
            activated_at=clock.at(hist.get("TS Actv")),
            report_created_at=clock.at(hist.get("TS Report Creation")),
        )
    return None


def _signature(lines: list[str], cert_line: int | None, root: _Node) -> SignatureBlock | None:
    if cert_line is None:
        return None
    cert = root.child("Cert")
    return SignatureBlock(
        text="\n".join(lines[cert_line - 1 :]).rstrip() + "\n",
        issuer=cert.get("Issuer") if cert else None,
        public_key=cert.get("Public Key") if cert else None,
        signature_certificate=root.get("Sig Cert"),
        signature=root.get("Sig"),
        first_line=cert_line,
    )


def _read_data_table(
    table: list[tuple[int, list[str]]],
    clock: _Clock,
    interval: timedelta | None,
    warnings: list[ImportIssue],
    errors: list[ImportIssue],
    progress: ProgressCallback | None,
) -> tuple[list[Reading], list[MissingReading]]:
    (header_line, header), rows = table[0], table[1:]
    if header and "yyyy" in header[0]:
        clock.layout = _strptime_layout(header[0])
    parsed: list[tuple[int, Reading]] = []
    missing: list[MissingReading] = []
    total = len(rows)
    for done, (line, cells) in enumerate(rows, start=1):
        at = clock.at(cells[0]) if cells else None
        raw_t = cells[1].strip() if len(cells) > 1 else ""
        if at is None:
            errors.append(ImportIssue(line, "bad_row", f"bad timestamp in {cells!r:.60}"))
        elif raw_t == _NO_VALUE:
            missing.append(MissingReading(at, line))
        elif (celsius := clock.celsius(raw_t)) is None:
            errors.append(ImportIssue(line, "bad_temperature", f"not a number: {raw_t!r}"))
        elif not _PLAUSIBLE_MIN_C <= celsius <= _PLAUSIBLE_MAX_C:
            errors.append(ImportIssue(line, "implausible_temperature", f"{celsius} °C"))
        else:
            parsed.append((line, Reading(at, celsius)))
        if progress is not None and done % _PROGRESS_EVERY == 0:
            progress(done, total)
    readings = _order_and_dedupe(parsed, warnings, errors)
    if missing:
        numbers = [m.line for m in missing]
        warnings.append(
            ImportIssue(
                numbers[0],
                "no_value",
                f"{len(numbers)} logged times without a value (lines {_ranges(numbers)})",
            )
        )
    times = sorted([r.at for r in readings] + [m.at for m in missing])
    if interval is not None:
        odd = sum(1 for a, b in zip(times, times[1:], strict=False) if b - a != interval)
        if odd:
            warnings.append(
                ImportIssue(
                    header_line, "irregular_interval", f"{odd} steps differ from {interval}"
                )
            )
    if progress is not None:
        progress(total, total)
    return readings, missing


def _ranges(numbers: list[int]) -> str:
    """Compact "99-101, 937-939" rendering of sorted line numbers."""
    spans: list[list[int]] = []
    for n in numbers:
        if spans and n == spans[-1][1] + 1:
            spans[-1][1] = n
        else:
            spans.append([n, n])
    return ", ".join(f"{a}-{b}" if a != b else str(a) for a, b in spans)


def _check_flags(
    table: list[tuple[int, list[str]]],
    alarms: list[AlarmSetting],
    clock: _Clock,
    warnings: list[ImportIssue],
) -> None:
    """Warn when the device's per-row out-of-limits flag disagrees with its alarm limits.

    Only meaningful when the header declares the flag column; a disagreement suggests the
    alarm directions were read wrongly, which would silently invert every excursion.
    """
    header = table[0][1]
    if len(header) < 3 or "limit" not in header[2].lower() or not alarms:
        return
    mismatched: list[int] = []
    for line, cells in table[1:]:
        celsius = clock.celsius(cells[1]) if len(cells) > 1 else None
        if celsius is None:
            continue
        flagged = len(cells) > 2 and cells[2].strip() != ""
        out = any(
            celsius >= a.threshold_c if a.kind == "hot" else celsius <= a.threshold_c
            for a in alarms
        )
        if flagged != out:
            mismatched.append(line)
    if mismatched:
        warnings.append(
            ImportIssue(
                mismatched[0],
                "flag_mismatch",
                f"{len(mismatched)} rows (lines {_ranges(mismatched)})",
            )
        )


def _markers(
    table: list[tuple[int, list[str]]], clock: _Clock, warnings: list[ImportIssue]
) -> list[Marker]:
    markers: list[Marker] = []
    for line, cells in table[1:]:
        number = _int_or_none(cells[0]) if cells else None
        at = clock.at(cells[2]) if len(cells) > 2 else None
        if number is None or at is None:
            warnings.append(ImportIssue(line, "unparsed_line", f"marker row {cells!r:.60}"))
            continue
        markers.append(Marker(number, clock.celsius(cells[1]), at))
    return markers
