"""Temperature-excursion rules and the clocks around them.

Covers: threshold + duration rules (consecutive and cumulative) over logger readings, silent
loggers and gaps, the per-bag exposure ledger, cryoshipper hold time, and ambient-exposure
timers. Pure functions over plain values; ``now`` is always a parameter.

Conventions (the numbers every caller sees depend on these):
- **Sample and hold.** A reading holds until the next one: reading *i* covers
  ``[at_i, at_{i+1})``; the last reading covers ``expected_interval``. A gap therefore does not
  end an excursion: without an in-range reading nobody can show the temperature recovered.
  ``find_gaps`` and ``detect_silence`` report the missing data separately.
- **Out of range.** A hot rule is violated at ``celsius >= threshold_c`` and a cold one at
  ``<= threshold_c``; with ``inclusive=False`` the limit itself is in range (a "store at or
  below -150 °C" label makes exactly -150 °C acceptable).
- **Excursion** = a maximal run of out-of-range readings. ``start`` is its first out-of-range
  reading, ``end`` the first in-range reading after it; ``end is None`` means the latest reading
  is still out of range (ongoing) and the duration runs to ``last reading + expected_interval``.
  An excursion clears itself; it only matters to QA once it becomes a breach.
- **Consecutive breach** = an excursion whose duration reaches ``min_duration`` (``>=``).
- **Cumulative breach** = the excursions of a series together reach ``min_duration``. At most
  one per rule and series: it starts at the first excursion, ends when the last one ends, and
  lists every excursion in ``spans``. It never "recovers": the budget is spent.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from collections.abc import Mapping
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC
from datetime import datetime
from datetime import timedelta
from typing import Literal

from tracker.domain.loggers import AlarmSetting
from tracker.domain.loggers import Reading

Level = Literal["warning", "alarm", "critical"]
Kind = Literal["hot", "cold"]
Mode = Literal["consecutive", "cumulative"]

_LEVEL_ORDER: dict[str, int] = {"warning": 0, "alarm": 1, "critical": 2}
_ZERO = timedelta(0)


def _utc(value: datetime, name: str) -> datetime:
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(f"naive {name} refused: give a UTC offset")
    return value.astimezone(UTC)


def _positive(value: timedelta, name: str) -> None:
    if value <= _ZERO:
        raise ValueError(f"{name} must be positive, got {value}")


@dataclass(frozen=True, slots=True)
class TemperatureRule:
    """Threshold + minimum duration + level: one line of a product's temperature profile."""

    level: Level
    kind: Kind
    threshold_c: float
    min_duration: timedelta
    mode: Mode
    inclusive: bool = True

    def __post_init__(self) -> None:
        if self.level not in _LEVEL_ORDER:
            raise ValueError(f"unknown level {self.level!r}")
        if self.kind not in ("hot", "cold"):
            raise ValueError(f"unknown kind {self.kind!r}")
        if self.mode not in ("consecutive", "cumulative"):
            raise ValueError(f"unknown mode {self.mode!r}")
        if not math.isfinite(self.threshold_c):
            raise ValueError("threshold must be a finite number")
        if self.min_duration < _ZERO:
            raise ValueError("min_duration cannot be negative")

    def violated_by(self, celsius: float) -> bool:
        """True when ``celsius`` is out of range for this rule."""
        if self.kind == "hot":
            return celsius >= self.threshold_c if self.inclusive else celsius > self.threshold_c
        return celsius <= self.threshold_c if self.inclusive else celsius < self.threshold_c


def fresh_profile(
    *,
    hot_c: float = 8.0,
    cold_c: float = 2.0,
    hot_consecutive: timedelta = timedelta(minutes=30),
    cold_consecutive: timedelta = timedelta(minutes=20),
    hot_cumulative: timedelta = timedelta(minutes=60),
    cold_cumulative: timedelta = timedelta(minutes=40),
    level: Level = "alarm",
) -> list[TemperatureRule]:
    """Rules for fresh 2-8 °C material; defaults are the open mSupply fridge numbers (DOMAIN §5).

    They are configurable defaults, not label limits: the product profile supplies the real ones.
    """
    return [
        TemperatureRule(level, "hot", hot_c, hot_consecutive, "consecutive"),
        TemperatureRule(level, "cold", cold_c, cold_consecutive, "consecutive"),
        TemperatureRule(level, "hot", hot_c, hot_cumulative, "cumulative"),
        TemperatureRule(level, "cold", cold_c, cold_cumulative, "cumulative"),
    ]


def cryogenic_profile(
    *,
    limit_c: float = -150.0,
    alarm_after: timedelta = timedelta(minutes=15),
    warning_after: timedelta | None = _ZERO,
) -> list[TemperatureRule]:
    """Rules for cryopreserved product stored at or below ``limit_c``.

    The limit itself is in range. ``warning_after`` (default: any warm reading) gives an early
    warning; ``alarm_after`` is an unverified default, to be replaced by the product profile.
    """
    rules = [TemperatureRule("alarm", "hot", limit_c, alarm_after, "consecutive", inclusive=False)]
    if warning_after is not None:
        rules.insert(
            0,
            TemperatureRule(
                "warning", "hot", limit_c, warning_after, "consecutive", inclusive=False
            ),
        )
    return rules


def rules_from_alarm_settings(
    settings: Iterable[AlarmSetting], *, level: Level = "alarm"
) -> list[TemperatureRule]:
    """The device's own alarm configuration, as rules we can re-run over its readings."""
    return [TemperatureRule(level, s.kind, s.threshold_c, s.delay, s.mode) for s in settings]


@dataclass(frozen=True, slots=True)
class Span:
    """A half-open time span; ``end is None`` means still open."""

    start: datetime
    end: datetime | None

    def overlaps(self, start: datetime, end: datetime | None) -> bool:
        starts_before_other_ends = end is None or self.start < end
        other_starts_before_end = self.end is None or start < self.end
        return starts_before_other_ends and other_starts_before_end


@dataclass(frozen=True, slots=True)
class Excursion:
    """Out of range now or earlier, for any length of time (see the module conventions)."""

    kind: Kind
    threshold_c: float
    inclusive: bool
    start: datetime
    end: datetime | None
    duration: timedelta
    worst_c: float
    worst_at: datetime
    reading_count: int

    @property
    def ongoing(self) -> bool:
        return self.end is None


@dataclass(frozen=True, slots=True)
class Breach:
    """An excursion (or sum of them) that lasted long enough to need a quality decision.

    The rule's fields are copied, not referenced, so a later profile change never rewrites a
    recorded breach. ``worst_c`` is the warmest value for hot rules and the coldest for cold.
    """

    level: Level
    kind: Kind
    mode: Mode
    threshold_c: float
    inclusive: bool
    min_duration: timedelta
    start: datetime
    end: datetime | None
    duration: timedelta
    triggered_at: datetime
    worst_c: float
    worst_at: datetime
    spans: tuple[Span, ...]
    container_id: str | None = None

    @property
    def ongoing(self) -> bool:
        return self.end is None

    @property
    def rule(self) -> TemperatureRule:
        return TemperatureRule(
            self.level, self.kind, self.threshold_c, self.min_duration, self.mode, self.inclusive
        )


def _sorted(readings: Iterable[Reading]) -> list[Reading]:
    return sorted(readings, key=lambda r: r.at)


def _excursions_for(
    ordered: list[Reading], rule: TemperatureRule, interval: timedelta
) -> list[Excursion]:
    found: list[Excursion] = []
    run: list[Reading] = []
    for reading in [*ordered, None]:
        if reading is not None and rule.violated_by(reading.celsius):
            run.append(reading)
            continue
        if run:
            if reading is None:
                end = None
                duration = run[-1].at + interval - run[0].at
            else:
                end = reading.at
                duration = reading.at - run[0].at
            pick = max if rule.kind == "hot" else min
            worst = pick(run, key=lambda r: r.celsius)
            found.append(
                Excursion(
                    rule.kind,
                    rule.threshold_c,
                    rule.inclusive,
                    run[0].at,
                    end,
                    duration,
                    worst.celsius,
                    worst.at,
                    len(run),
                )
            )
            run = []
    return found


def find_excursions(
    readings: Iterable[Reading], rules: Iterable[TemperatureRule], *, expected_interval: timedelta
) -> list[Excursion]:
    """Every out-of-range run, once per distinct limit among ``rules``, ordered by start."""
    _positive(expected_interval, "expected_interval")
    ordered = _sorted(readings)
    seen: set[tuple[str, float, bool]] = set()
    found: list[Excursion] = []
    for rule in rules:
        key = (rule.kind, rule.threshold_c, rule.inclusive)
        if key not in seen:
            seen.add(key)
            found.extend(_excursions_for(ordered, rule, expected_interval))
    return sorted(found, key=lambda e: (e.start, e.kind, e.threshold_c))


def time_out_of_range(
    readings: Iterable[Reading], rule: TemperatureRule, *, expected_interval: timedelta
) -> timedelta:
    """Total time the series spent out of range for ``rule``'s limit (sum of excursions)."""
    _positive(expected_interval, "expected_interval")
    excursions = _excursions_for(_sorted(readings), rule, expected_interval)
    return sum((e.duration for e in excursions), _ZERO)


def _breach(
    rule: TemperatureRule,
    parts: list[Excursion],
    triggered_at: datetime,
    container_id: str | None,
) -> Breach:
    pick = max if rule.kind == "hot" else min
    worst = pick(parts, key=lambda e: e.worst_c)
    return Breach(
        level=rule.level,
        kind=rule.kind,
        mode=rule.mode,
        threshold_c=rule.threshold_c,
        inclusive=rule.inclusive,
        min_duration=rule.min_duration,
        start=parts[0].start,
        end=parts[-1].end,
        duration=sum((p.duration for p in parts), _ZERO),
        triggered_at=triggered_at,
        worst_c=worst.worst_c,
        worst_at=worst.worst_at,
        spans=tuple(Span(p.start, p.end) for p in parts),
        container_id=container_id,
    )


def evaluate(
    readings: Iterable[Reading],
    rules: Iterable[TemperatureRule],
    *,
    expected_interval: timedelta,
    container_id: str | None = None,
) -> list[Breach]:
    """Breaches of each rule over one logger's readings, ordered by start then severity."""
    _positive(expected_interval, "expected_interval")
    ordered = _sorted(readings)
    breaches: list[Breach] = []
    for rule in rules:
        excursions = _excursions_for(ordered, rule, expected_interval)
        if rule.mode == "consecutive":
            breaches.extend(
                _breach(rule, [e], e.start + rule.min_duration, container_id)
                for e in excursions
                if e.duration >= rule.min_duration
            )
            continue
        total = _ZERO
        for e in excursions:
            if total + e.duration >= rule.min_duration:
                triggered_at = e.start + (rule.min_duration - total)
                breaches.append(_breach(rule, excursions, triggered_at, container_id))
                break
            total += e.duration
    return sorted(breaches, key=lambda b: (b.start, -_LEVEL_ORDER[b.level], b.mode))


# --- missing data -----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SilenceAlarm:
    """No reading for longer than ``factor`` expected intervals."""

    last_reading_at: datetime
    now: datetime
    silent_for: timedelta
    expected_interval: timedelta
    missed_readings: int


def detect_silence(
    last_reading_at: datetime, expected_interval: timedelta, now: datetime, *, factor: float = 2
) -> SilenceAlarm | None:
    """Alarm when ``now - last_reading_at`` is strictly more than ``factor`` intervals.

    Exactly ``factor`` intervals is still quiet: the reading due at that instant may be in
    flight. A last reading after ``now`` (clock skew) is not silence.
    """
    _positive(expected_interval, "expected_interval")
    if factor <= 0:
        raise ValueError("factor must be positive")
    last = _utc(last_reading_at, "last_reading_at")
    silent_for = _utc(now, "now") - last
    if silent_for <= expected_interval * factor:
        return None
    return SilenceAlarm(
        last, _utc(now, "now"), silent_for, expected_interval, silent_for // expected_interval
    )


@dataclass(frozen=True, slots=True)
class Gap:
    """Missing readings between two that arrived."""

    after: datetime
    before: datetime
    duration: timedelta
    missed_readings: int


def find_gaps(
    readings: Iterable[Reading], expected_interval: timedelta, *, factor: float = 1.5
) -> list[Gap]:
    """Steps between consecutive readings longer than ``factor`` intervals.

    The default 1.5 flags a single missed reading while tolerating clock jitter.
    """
    _positive(expected_interval, "expected_interval")
    ordered = _sorted(readings)
    gaps: list[Gap] = []
    for a, b in zip(ordered, ordered[1:], strict=False):
        step = b.at - a.at
        if step > expected_interval * factor:
            missed = max(round(step / expected_interval) - 1, 1)
            gaps.append(Gap(a.at, b.at, step, missed))
    return gaps


# --- per-bag exposure ledger ------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class CustodyInterval:
    """A bag inside a container (shipper, freezer) from ``start`` until ``end`` (None: still)."""

    bag_id: str
    container_id: str
    start: datetime
    end: datetime | None

    def __post_init__(self) -> None:
        object.__setattr__(self, "start", _utc(self.start, "custody start"))
        if self.end is not None:
            object.__setattr__(self, "end", _utc(self.end, "custody end"))
            if self.end < self.start:
                raise ValueError("custody interval ends before it starts")


@dataclass(frozen=True, slots=True)
class BagExposure:
    """What one bag went through, from its containers' loggers.

    ``unmonitored`` is custody time no reading covers (no logger, or before/after its data);
    treat it as unknown, never as in range.
    """

    bag_id: str
    custody_time: timedelta
    monitored: timedelta
    unmonitored: timedelta
    out_of_range: timedelta
    max_c: float | None
    min_c: float | None
    breaches: tuple[Breach, ...]


def bags_exposed(
    breach: Breach, intervals: Iterable[CustodyInterval], *, container_id: str | None = None
) -> list[str]:
    """Bags that were in the breached container during any out-of-range span of the breach."""
    container = container_id or breach.container_id
    if container is None:
        raise ValueError("the breach names no container; pass container_id")
    exposed = {
        iv.bag_id
        for iv in intervals
        if iv.container_id == container
        and any(span.overlaps(iv.start, iv.end) for span in breach.spans)
    }
    return sorted(exposed)


def _coverage(
    ordered: list[Reading], interval: timedelta
) -> list[tuple[datetime, datetime, float]]:
    ends = [r.at for r in ordered[1:]] + ([ordered[-1].at + interval] if ordered else [])
    return [(r.at, end, r.celsius) for r, end in zip(ordered, ends, strict=True)]


def exposure_ledger(
    intervals: Sequence[CustodyInterval],
    readings_by_container: Mapping[str, Sequence[Reading]],
    rules: Sequence[TemperatureRule],
    *,
    expected_interval: timedelta,
    now: datetime,
) -> dict[str, BagExposure]:
    """Per bag: time out of range (any rule's limit), extremes seen, and breaches it sat through.

    Open custody intervals run until ``now``. Readings are shared by every bag in the container
    at that time; each container's breaches are evaluated once and then attributed.
    """
    _positive(expected_interval, "expected_interval")
    now = _utc(now, "now")
    coverage = {
        cid: _coverage(_sorted(rs), expected_interval) for cid, rs in readings_by_container.items()
    }
    breaches = [
        b
        for cid, rs in readings_by_container.items()
        for b in evaluate(rs, rules, expected_interval=expected_interval, container_id=cid)
    ]
    ledger: dict[str, BagExposure] = {}
    for bag_id in sorted({iv.bag_id for iv in intervals}):
        own = [iv for iv in intervals if iv.bag_id == bag_id]
        custody = monitored = out = _ZERO
        seen: list[float] = []
        for iv in own:
            end = iv.end if iv.end is not None else max(now, iv.start)
            custody += end - iv.start
            for seg_start, seg_end, celsius in coverage.get(iv.container_id, []):
                overlap = min(end, seg_end) - max(iv.start, seg_start)
                if overlap <= _ZERO:
                    continue
                monitored += overlap
                seen.append(celsius)
                if any(rule.violated_by(celsius) for rule in rules):
                    out += overlap
        hits = tuple(b for b in breaches if bag_id in bags_exposed(b, own))
        ledger[bag_id] = BagExposure(
            bag_id=bag_id,
            custody_time=custody,
            monitored=monitored,
            unmonitored=custody - monitored,
            out_of_range=out,
            max_c=max(seen) if seen else None,
            min_c=min(seen) if seen else None,
            breaches=hits,
        )
    return ledger


# --- cryoshipper hold time --------------------------------------------------------------------


def remaining_hold(charged_at: datetime, validated_hold: timedelta, now: datetime) -> timedelta:
    """Hold time left on a charged dry-vapour shipper; negative once it has expired."""
    _positive(validated_hold, "validated_hold")
    return _utc(charged_at, "charged_at") + validated_hold - _utc(now, "now")


@dataclass(frozen=True, slots=True)
class HoldTimeRisk:
    """Whether a shipper will still hold when it arrives, with ``margin`` to spare.

    ``slack`` is ``expires_at - (planned_arrival + margin)``; negative slack is a risk.
    """

    expires_at: datetime
    planned_arrival: datetime
    margin: timedelta
    slack: timedelta

    @property
    def at_risk(self) -> bool:
        return self.slack < _ZERO


def hold_time_risk(
    charged_at: datetime,
    validated_hold: timedelta,
    planned_arrival: datetime,
    margin: timedelta,
) -> HoldTimeRisk:
    """Alert rule from DOMAIN §4: risk when arrival + margin falls after the hold expires."""
    _positive(validated_hold, "validated_hold")
    if margin < _ZERO:
        raise ValueError("margin cannot be negative")
    expires_at = _utc(charged_at, "charged_at") + validated_hold
    arrival = _utc(planned_arrival, "planned_arrival")
    return HoldTimeRisk(expires_at, arrival, margin, expires_at - (arrival + margin))


# --- ambient exposure -------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class AmbientRule:
    """How long a bag may be out of controlled storage.

    ``per_interval``: each removal separately (cryopreserved: every transfer). ``cumulative``:
    all removals together (fresh apheresis).
    """

    name: str
    max_duration: timedelta
    mode: Literal["per_interval", "cumulative"]


CRYOPRESERVED_AMBIENT = AmbientRule("cryopreserved", timedelta(minutes=3), "per_interval")
FRESH_AMBIENT = AmbientRule("fresh", timedelta(minutes=60), "cumulative")


@dataclass(frozen=True, slots=True)
class OutOfStorageInterval:
    """A bag at ambient temperature from ``start`` until ``end`` (None: still out)."""

    bag_id: str
    start: datetime
    end: datetime | None

    def __post_init__(self) -> None:
        object.__setattr__(self, "start", _utc(self.start, "out-of-storage start"))
        if self.end is not None:
            object.__setattr__(self, "end", _utc(self.end, "out-of-storage end"))
            if self.end < self.start:
                raise ValueError("out-of-storage interval ends before it starts")


@dataclass(frozen=True, slots=True)
class AmbientStatus:
    """One bag against an ambient rule at ``now``.

    The limit is allowed (``<= max_duration``); ``exceeded_at`` is the instant it was used up.
    ``deadline`` is when the bag that is out right now will exceed, if it has not yet.
    """

    bag_id: str
    rule: AmbientRule
    total: timedelta
    longest: timedelta
    open_since: datetime | None
    exceeded: bool
    exceeded_at: datetime | None
    deadline: datetime | None


def _merged(
    intervals: list[OutOfStorageInterval], now: datetime
) -> list[tuple[datetime, datetime, bool]]:
    """Overlapping records of one bag merged (it cannot be out twice at once); open ones end now."""
    spans = sorted(
        (iv.start, iv.end if iv.end is not None else max(now, iv.start), iv.end is None)
        for iv in intervals
    )
    merged: list[tuple[datetime, datetime, bool]] = []
    for start, end, is_open in spans:
        if merged and start <= merged[-1][1]:
            prev = merged[-1]
            merged[-1] = (prev[0], max(prev[1], end), prev[2] or is_open)
        else:
            merged.append((start, end, is_open))
    return merged


def ambient_exposure(
    intervals: Iterable[OutOfStorageInterval], rule: AmbientRule, *, now: datetime
) -> dict[str, AmbientStatus]:
    """Each bag's time out of storage against ``rule``."""
    now = _utc(now, "now")
    by_bag: dict[str, list[OutOfStorageInterval]] = {}
    for iv in intervals:
        by_bag.setdefault(iv.bag_id, []).append(iv)
    result: dict[str, AmbientStatus] = {}
    for bag_id, own in sorted(by_bag.items()):
        total = longest = _ZERO
        exceeded_at: datetime | None = None
        deadline: datetime | None = None
        open_since: datetime | None = None
        for start, end, is_open in _merged(own, now):
            length = end - start
            budget = rule.max_duration if rule.mode == "per_interval" else rule.max_duration - total
            if exceeded_at is None and length > budget:
                exceeded_at = start + budget
            if is_open:
                open_since = start
                deadline = start + budget if length <= budget else None
            total += length
            longest = max(longest, length)
        result[bag_id] = AmbientStatus(
            bag_id, rule, total, longest, open_since, exceeded_at is not None, exceeded_at, deadline
        )
    return result
