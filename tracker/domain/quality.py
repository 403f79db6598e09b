"""Quality gates as data and pure functions: acceptance criteria, release tests, lot readiness.

A product profile carries ``data["quality"]``::

    {"acceptance": [{"code", "name", "unit", "min", "max", "on_fail": "reject"|"deviation"}],
     "release_tests": [{"code", "method", "turnaround_hours", "spec": {...}}],
     "process": "standard_9d", "manufacturing_days": 9, "late_result_grace_hours": 24}

Units convert within one dimension only (cells, volume, fraction, age); a value in a unit of
another dimension is refused (``unit_mismatch``), never guessed. A criterion whose unit is an
age (h, d) is the material's age since collection: measured by the clock, not typed in.

Release is possible when every release test has a current result, every current result is
reviewed by someone other than its recorder, and every one is in specification. The expected
release is when the slowest pending test is due; a test that is overdue without a result is
re-estimated at ``now`` plus a grace period (``late_result_grace_hours``, default 24 h), so
the date moves later for as long as the result stays late.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from datetime import timedelta
from enum import StrEnum
from typing import Any

from tracker.domain.errors import TrackerError

DEFAULT_LATE_GRACE_HOURS = 24.0

# Each unit: its dimension and its factor to the dimension's base unit.
_UNITS: dict[str, tuple[str, float]] = {
    "cells": ("cells", 1.0),
    "10^6 cells": ("cells", 1e6),
    "10^9 cells": ("cells", 1e9),
    "ml": ("volume", 1.0),
    "l": ("volume", 1000.0),
    "%": ("fraction", 1.0),
    "fraction": ("fraction", 100.0),
    "h": ("age", 1.0),
    "d": ("age", 24.0),
}
# Ways people write the same unit.
_ALIASES = {
    "cell": "cells",
    "x10^6 cells": "10^6 cells",
    "1e6 cells": "10^6 cells",
    "x10^9 cells": "10^9 cells",
    "1e9 cells": "10^9 cells",
    "millilitre": "ml",
    "milliliter": "ml",
    "litre": "l",
    "liter": "l",
    "percent": "%",
    "hours": "h",
    "hour": "h",
    "days": "d",
    "day": "d",
}
UNIT_NAMES: dict[str, str] = {"ml": "mL", "l": "L"}


def _key(unit: str) -> str:
    text = " ".join(unit.strip().split()).lower()
    return _ALIASES.get(text, text)


def dimension(unit: str) -> str | None:
    """The dimension a unit measures, or None for a unit outside the convertible set."""
    known = _UNITS.get(_key(unit))
    return known[0] if known else None


def convert(value: float, from_unit: str, to_unit: str) -> float:
    """``value`` in ``from_unit`` expressed in ``to_unit`` (same dimension only)."""
    if not math.isfinite(value):
        raise TrackerError("invalid_request", "a measured value must be a finite number")
    src, dst = _key(from_unit), _key(to_unit)
    if src == dst:
        return value
    a, b = _UNITS.get(src), _UNITS.get(dst)
    if a is None or b is None or a[0] != b[0]:
        raise TrackerError(
            "unit_mismatch", f"a value in '{from_unit}' cannot be compared with '{to_unit}'"
        )
    return value * a[1] / b[1]


class OnFail(StrEnum):
    reject = "reject"
    deviation = "deviation"


class Decision(StrEnum):
    accepted = "accepted"
    rejected = "rejected"
    accepted_with_deviation = "accepted_with_deviation"


@dataclass(frozen=True, slots=True)
class Criterion:
    code: str
    name: str
    unit: str
    min: float | None
    max: float | None
    on_fail: OnFail

    @property
    def is_age(self) -> bool:
        return dimension(self.unit) == "age"


def _number(raw: Any, what: str) -> float | None:
    if raw is None:
        return None
    if isinstance(raw, bool) or not isinstance(raw, int | float):
        raise TrackerError("invalid_request", f"{what} must be a number")
    return float(raw)


def criteria_from_profile(quality: Mapping[str, Any]) -> list[Criterion]:
    """The acceptance criteria of a profile's ``quality`` block, validated."""
    out: list[Criterion] = []
    for raw in quality.get("acceptance", []):
        code = str(raw.get("code", ""))
        unit = str(raw.get("unit", ""))
        if not code or dimension(unit) is None:
            raise TrackerError("invalid_request", f"criterion {code or '?'}: unknown unit {unit!r}")
        low, high = _number(raw.get("min"), f"{code}.min"), _number(raw.get("max"), f"{code}.max")
        if low is None and high is None:
            raise TrackerError("invalid_request", f"criterion {code} has neither min nor max")
        out.append(
            Criterion(
                code=code,
                name=str(raw.get("name") or code),
                unit=unit,
                min=low,
                max=high,
                on_fail=OnFail(raw.get("on_fail", "reject")),
            )
        )
    return out


@dataclass(frozen=True, slots=True)
class Measured:
    """A value as entered: the number and the unit it was written in."""

    value: float
    unit: str


@dataclass(frozen=True, slots=True)
class CriterionResult:
    criterion: Criterion
    value: float
    unit: str
    converted: float
    passed: bool
    why: str

    @property
    def outcome(self) -> str:
        return "pass" if self.passed else "fail"


@dataclass(frozen=True, slots=True)
class AcceptanceDecision:
    decision: Decision
    results: tuple[CriterionResult, ...]

    @property
    def failed(self) -> tuple[CriterionResult, ...]:
        return tuple(r for r in self.results if not r.passed)

    def summary(self) -> str:
        if not self.failed:
            return "All acceptance criteria met."
        return "; ".join(r.why for r in self.failed)


def _fmt(value: float) -> str:
    return f"{value:.6g}"


def _unit_name(unit: str) -> str:
    return UNIT_NAMES.get(_key(unit), unit)


def judge_criterion(criterion: Criterion, measured: Measured) -> CriterionResult:
    """One criterion against one measured value (converted to the criterion's unit)."""
    converted = convert(measured.value, measured.unit, criterion.unit)
    unit = _unit_name(criterion.unit)
    shown = f"{criterion.name} {_fmt(converted)} {unit}"
    if criterion.min is not None and converted < criterion.min:
        return CriterionResult(
            criterion,
            measured.value,
            measured.unit,
            converted,
            False,
            f"{shown} is below the minimum {_fmt(criterion.min)} {unit}",
        )
    if criterion.max is not None and converted > criterion.max:
        return CriterionResult(
            criterion,
            measured.value,
            measured.unit,
            converted,
            False,
            f"{shown} is above the maximum {_fmt(criterion.max)} {unit}",
        )
    return CriterionResult(
        criterion, measured.value, measured.unit, converted, True, f"{shown} is within limits"
    )


def material_age(collected_at: datetime, at: datetime) -> Measured:
    """The age of the material since collection, in hours."""
    hours = (at - collected_at).total_seconds() / 3600
    if hours < 0:
        raise TrackerError("invalid_request", "the material was collected after this time")
    return Measured(round(hours, 2), "h")


def decide_acceptance(
    criteria: Iterable[Criterion],
    measured: Mapping[str, Measured],
    *,
    age: Measured | None = None,
) -> AcceptanceDecision:
    """Accept, reject or accept with a deviation; which criterion failed and why.

    Every non-age criterion needs a measurement; an age criterion takes ``age`` (from the
    custody record) unless a value was entered. Any failed ``reject`` criterion rejects; else
    any failed ``deviation`` criterion accepts with a deviation.
    """
    criteria = list(criteria)
    known = {c.code for c in criteria}
    unknown = sorted(set(measured) - known)
    if unknown:
        raise TrackerError("invalid_request", f"no such acceptance criterion: {', '.join(unknown)}")
    results: list[CriterionResult] = []
    for criterion in criteria:
        value = measured.get(criterion.code)
        if value is None and criterion.is_age:
            value = age
        if value is None:
            raise TrackerError(
                "measurement_missing", f"enter {criterion.name} ({_unit_name(criterion.unit)})"
            )
        results.append(judge_criterion(criterion, value))
    failed = [r for r in results if not r.passed]
    if any(r.criterion.on_fail is OnFail.reject for r in failed):
        decision = Decision.rejected
    elif failed:
        decision = Decision.accepted_with_deviation
    else:
        decision = Decision.accepted
    return AcceptanceDecision(decision, tuple(results))


# --- release tests --------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class TestSpec:
    """One release test of a profile: what, how, how long, and the specification."""

    __test__ = False  # not a pytest class

    code: str
    method: str
    turnaround_hours: float
    spec: Mapping[str, Any]


def release_tests_from_profile(quality: Mapping[str, Any]) -> list[TestSpec]:
    out = []
    for raw in quality.get("release_tests", []):
        spec = dict(raw.get("spec") or {})
        if spec.get("kind") not in ("qualitative", "range"):
            raise TrackerError("invalid_request", f"test {raw.get('code')}: unknown spec kind")
        hours = _number(raw.get("turnaround_hours"), f"{raw.get('code')}.turnaround_hours")
        if hours is None or hours < 0:
            raise TrackerError("invalid_request", f"test {raw.get('code')}: bad turnaround")
        out.append(TestSpec(str(raw["code"]), str(raw.get("method", "")), hours, spec))
    if len({t.code for t in out}) != len(out):
        raise TrackerError("invalid_request", "release test codes must be unique")
    return out


@dataclass(frozen=True, slots=True)
class Evaluated:
    outcome: str  # "pass" | "oos"
    numeric: float | None
    why: str


def describe_spec(spec: Mapping[str, Any]) -> str:
    if spec.get("kind") == "qualitative":
        return f"= {spec.get('expected')}"
    unit = spec.get("unit") or ""
    low, high = spec.get("min"), spec.get("max")
    if low is not None and high is not None:
        return f"{_fmt(low)}–{_fmt(high)} {unit}".strip()
    if low is not None:
        return f"≥ {_fmt(low)} {unit}".strip()
    if high is not None:
        return f"≤ {_fmt(high)} {unit}".strip()
    return "any value"


def evaluate_result(spec: Mapping[str, Any], value: str, unit: str | None) -> Evaluated:
    """Pass or out of specification (OOS) for a result against its test's specification."""
    text = value.strip()
    if not text:
        raise TrackerError("invalid_request", "enter the result")
    if spec.get("kind") == "qualitative":
        expected = str(spec.get("expected", "")).strip().lower()
        ok = text.lower() == expected
        return Evaluated(
            "pass" if ok else "oos",
            None,
            f"{text} (expected {expected})",
        )
    try:
        number = float(text)
    except ValueError:
        raise TrackerError("invalid_request", f"'{text}' is not a number") from None
    spec_unit = str(spec.get("unit") or "")
    if unit and spec_unit and _key(unit) != _key(spec_unit):
        number = convert(number, unit, spec_unit)
    low, high = spec.get("min"), spec.get("max")
    ok = (
        math.isfinite(number)
        and (low is None or number >= low)
        and (high is None or number <= high)
    )
    return Evaluated(
        "pass" if ok else "oos",
        number,
        f"{_fmt(number)} {spec_unit} (spec {describe_spec(spec)})".replace("  ", " "),
    )


def test_schedule(
    specs: Iterable[TestSpec], *, lot_started_at: datetime, manufacturing_days: float
) -> list[tuple[TestSpec, datetime, datetime]]:
    """(test, started_at, due_at): samples are taken at harvest, the end of manufacturing."""
    harvest = lot_started_at + timedelta(days=manufacturing_days)
    return [(s, harvest, harvest + timedelta(hours=s.turnaround_hours)) for s in specs]


# --- lot readiness and expected release ------------------------------------------------------


class Readiness(StrEnum):
    pending = "pending"
    failed = "failed"
    complete = "complete"


@dataclass(frozen=True, slots=True)
class TestState:
    """A release test with its current (latest, not superseded) result, if any."""

    __test__ = False

    code: str
    due_at: datetime
    outcome: str | None = None  # "pass" | "oos" | None (no result yet)
    reviewed: bool = False
    recorded_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class LotState:
    readiness: Readiness
    pending: tuple[str, ...]
    unreviewed: tuple[str, ...]
    oos: tuple[str, ...]

    @property
    def releasable(self) -> bool:
        return self.readiness is Readiness.complete


def lot_state(tests: Iterable[TestState]) -> LotState:
    """Failed if any current result is OOS; else pending while a result or review is missing."""
    tests = list(tests)
    pending = tuple(t.code for t in tests if t.outcome is None)
    unreviewed = tuple(t.code for t in tests if t.outcome is not None and not t.reviewed)
    oos = tuple(t.code for t in tests if t.outcome == "oos")
    if not tests:
        readiness = Readiness.pending
    elif oos:
        readiness = Readiness.failed
    elif pending or unreviewed:
        readiness = Readiness.pending
    else:
        readiness = Readiness.complete
    return LotState(readiness, pending, unreviewed, oos)


@dataclass(frozen=True, slots=True)
class ReleaseEstimate:
    expected_at: datetime | None
    slowest: str | None  # the test that sets the date
    late: tuple[str, ...]  # tests past their due time without a result


def expected_release(
    tests: Iterable[TestState], now: datetime, *, grace: timedelta | None = None
) -> ReleaseEstimate:
    """When the slowest pending test should report; an overdue one counts as now + grace.

    With no pending test the estimate is the last result's time (or None without tests).
    """
    grace = grace if grace is not None else timedelta(hours=DEFAULT_LATE_GRACE_HOURS)
    tests = list(tests)
    pending = [t for t in tests if t.outcome is None]
    if not pending:
        recorded = [t.recorded_at for t in tests if t.recorded_at is not None]
        return ReleaseEstimate(max(recorded) if recorded else None, None, ())
    late = tuple(t.code for t in pending if t.due_at <= now)
    estimates = [(t.due_at if t.due_at > now else now + grace, t.code) for t in pending]
    at, code = max(estimates)
    return ReleaseEstimate(at, code, late)


def grace_from_profile(quality: Mapping[str, Any]) -> timedelta:
    hours = _number(quality.get("late_result_grace_hours"), "late_result_grace_hours")
    return timedelta(hours=DEFAULT_LATE_GRACE_HOURS if hours is None else hours)
