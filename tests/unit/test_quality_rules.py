"""Acceptance per criterion and unit, release test evaluation, readiness, expected release."""

from __future__ import annotations

from datetime import UTC
from datetime import datetime
from datetime import timedelta

import pytest

from tests.factories_quality import quality_profile_data
from tracker.domain import quality as q
from tracker.domain.errors import TrackerError

T0 = datetime(2026, 3, 2, 14, 0, tzinfo=UTC)


@pytest.fixture
def criteria() -> list[q.Criterion]:
    return q.criteria_from_profile(quality_profile_data())


def good() -> dict[str, q.Measured]:
    return {
        "tnc": q.Measured(3.0, "10^9 cells"),
        "viability": q.Measured(92.0, "%"),
        "cd3_fraction": q.Measured(40.0, "%"),
        "volume": q.Measured(180.0, "mL"),
    }


# --- units -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "src", "dst", "expected"),
    [
        (2_500_000_000, "cells", "10^9 cells", 2.5),
        (2500, "10^6 cells", "10^9 cells", 2.5),
        (2.5, "10^9 cells", "10^6 cells", 2500),
        (3, "10^9 cells", "cells", 3e9),
        (0.25, "L", "mL", 250),
        (250, "ml", "L", 0.25),
        (0.875, "fraction", "%", 87.5),
        (87.5, "%", "fraction", 0.875),
        (2, "d", "h", 48),
        (36, "h", "d", 1.5),
        (36, "hours", "h", 36),
    ],
)
def test_units_convert_within_their_dimension(value, src, dst, expected):  # type: ignore[no-untyped-def]
    assert q.convert(value, src, dst) == pytest.approx(expected)


@pytest.mark.parametrize(
    ("src", "dst"),
    [("mL", "%"), ("10^9 cells", "mL"), ("h", "fraction"), ("%", "d"), ("kg", "mL")],
)
def test_a_unit_of_another_dimension_is_refused(src, dst):  # type: ignore[no-untyped-def]
    with pytest.raises(TrackerError) as err:
        q.convert(1.0, src, dst)
    assert err.value.reason == "unit_mismatch"


def test_a_non_finite_value_is_refused():
    with pytest.raises(TrackerError) as err:
        q.convert(float("nan"), "%", "%")
    assert err.value.reason == "invalid_request"


# --- acceptance decisions, one criterion at a time --------------------------------------------


def test_material_meeting_every_criterion_is_accepted(criteria):  # type: ignore[no-untyped-def]
    d = q.decide_acceptance(criteria, good(), age=q.Measured(20, "h"))
    assert d.decision is q.Decision.accepted
    assert d.failed == ()
    assert [r.outcome for r in d.results] == ["pass"] * 5


@pytest.mark.parametrize(
    ("code", "value", "expected", "why"),
    [
        # total nucleated cells, reject below 2 x 10^9, entered in three units
        ("tnc", q.Measured(1.9, "10^9 cells"), q.Decision.rejected, "below the minimum 2"),
        ("tnc", q.Measured(1900, "10^6 cells"), q.Decision.rejected, "below the minimum 2"),
        ("tnc", q.Measured(1.9e9, "cells"), q.Decision.rejected, "below the minimum 2"),
        ("tnc", q.Measured(2000, "10^6 cells"), q.Decision.accepted, None),
        # viability: a failure is accepted with a deviation; as % or as a fraction
        ("viability", q.Measured(79.9, "%"), q.Decision.accepted_with_deviation, "below"),
        ("viability", q.Measured(0.799, "fraction"), q.Decision.accepted_with_deviation, "below"),
        ("viability", q.Measured(0.80, "fraction"), q.Decision.accepted, None),
        # CD3+ fraction: reject
        ("cd3_fraction", q.Measured(0.1, "fraction"), q.Decision.rejected, "CD3+ fraction 10 %"),
        ("cd3_fraction", q.Measured(15, "%"), q.Decision.accepted, None),
        # volume: both limits, mL and L, deviation
        (
            "volume",
            q.Measured(0.45, "L"),
            q.Decision.accepted_with_deviation,
            "above the maximum 400 mL",
        ),
        (
            "volume",
            q.Measured(40, "mL"),
            q.Decision.accepted_with_deviation,
            "below the minimum 50 mL",
        ),
        ("volume", q.Measured(0.4, "L"), q.Decision.accepted, None),
    ],
)
def test_each_criterion_decides_in_any_unit_of_its_dimension(criteria, code, value, expected, why):  # type: ignore[no-untyped-def]
    measured = good() | {code: value}
    d = q.decide_acceptance(criteria, measured, age=q.Measured(20, "h"))
    assert d.decision is expected
    if why is None:
        assert d.failed == ()
    else:
        assert [r.criterion.code for r in d.failed] == [code]
        assert why in d.failed[0].why


def test_material_age_since_collection_is_a_criterion(criteria):  # type: ignore[no-untyped-def]
    collected = T0
    fresh = q.decide_acceptance(
        criteria, good(), age=q.material_age(collected, T0 + timedelta(hours=47))
    )
    old = q.decide_acceptance(
        criteria, good(), age=q.material_age(collected, T0 + timedelta(hours=49))
    )
    assert fresh.decision is q.Decision.accepted
    assert old.decision is q.Decision.rejected
    assert old.failed[0].criterion.code == "age"
    assert old.failed[0].why == "Age since collection 49 h is above the maximum 48 h"
    # An age entered in days is converted to the criterion's hours.
    typed = q.decide_acceptance(criteria, good() | {"age": q.Measured(2.5, "d")})
    assert typed.decision is q.Decision.rejected
    assert typed.failed[0].converted == 60


def test_a_reject_criterion_wins_over_a_deviation_criterion(criteria):  # type: ignore[no-untyped-def]
    measured = good() | {"viability": q.Measured(50, "%"), "tnc": q.Measured(1, "10^9 cells")}
    d = q.decide_acceptance(criteria, measured, age=q.Measured(1, "h"))
    assert d.decision is q.Decision.rejected
    assert {r.criterion.code for r in d.failed} == {"viability", "tnc"}


def test_a_missing_measurement_or_a_wrong_unit_is_refused(criteria):  # type: ignore[no-untyped-def]
    measured = good()
    del measured["volume"]
    with pytest.raises(TrackerError) as err:
        q.decide_acceptance(criteria, measured, age=q.Measured(1, "h"))
    assert err.value.reason == "measurement_missing"
    with pytest.raises(TrackerError) as err:
        q.decide_acceptance(criteria, good(), age=None)
    assert err.value.reason == "measurement_missing"
    with pytest.raises(TrackerError) as err:
        q.decide_acceptance(
            criteria, good() | {"volume": q.Measured(180, "%")}, age=q.Measured(1, "h")
        )
    assert err.value.reason == "unit_mismatch"
    with pytest.raises(TrackerError) as err:
        q.decide_acceptance(
            criteria, good() | {"colour": q.Measured(1, "%")}, age=q.Measured(1, "h")
        )
    assert err.value.reason == "invalid_request"


def test_material_collected_after_the_decision_is_refused():
    with pytest.raises(TrackerError):
        q.material_age(T0, T0 - timedelta(minutes=1))


def test_profile_criteria_are_validated():
    with pytest.raises(TrackerError):
        q.criteria_from_profile({"acceptance": [{"code": "x", "unit": "furlongs", "min": 1}]})
    with pytest.raises(TrackerError):
        q.criteria_from_profile({"acceptance": [{"code": "x", "unit": "%"}]})
    with pytest.raises(TrackerError):
        q.criteria_from_profile({"acceptance": [{"code": "x", "unit": "%", "min": "5"}]})


# --- release tests --------------------------------------------------------------------------


def test_results_are_judged_against_their_specification():
    qualitative = {"kind": "qualitative", "expected": "negative"}
    assert q.evaluate_result(qualitative, "Negative", None).outcome == "pass"
    assert q.evaluate_result(qualitative, "positive", None).outcome == "oos"
    endotoxin = {"kind": "range", "unit": "EU/mL", "min": None, "max": 5.0}
    assert q.evaluate_result(endotoxin, "5.0", "EU/mL").outcome == "pass"
    assert q.evaluate_result(endotoxin, "5.01", "EU/mL").outcome == "oos"
    viability = {"kind": "range", "unit": "%", "min": 70.0, "max": None}
    as_fraction = q.evaluate_result(viability, "0.65", "fraction")
    assert (as_fraction.outcome, as_fraction.numeric) == ("oos", pytest.approx(65))
    with pytest.raises(TrackerError) as err:
        q.evaluate_result(viability, "70", "mL")
    assert err.value.reason == "unit_mismatch"
    with pytest.raises(TrackerError):
        q.evaluate_result(viability, "high", "%")


def test_tests_are_sampled_at_harvest_and_due_after_their_turnaround():
    specs = q.release_tests_from_profile(quality_profile_data(rapid=True))
    schedule = {
        s.code: (start, due)
        for s, start, due in q.test_schedule(specs, lot_started_at=T0, manufacturing_days=3)
    }
    harvest = T0 + timedelta(days=3)
    assert schedule["sterility"] == (harvest, harvest + timedelta(hours=72))
    assert schedule["viability"] == (harvest, harvest + timedelta(hours=4))
    slow = q.release_tests_from_profile(quality_profile_data(rapid=False))
    sterility = next(s for s in slow if s.code == "sterility")
    assert (sterility.method, sterility.turnaround_hours) == ("culture_14d", 336)


# --- readiness and the expected release ------------------------------------------------------


def states(**outcomes: str | None) -> list[q.TestState]:
    due = {
        "sterility": T0 + timedelta(days=14),
        "endotoxin": T0 + timedelta(days=1),
        "potency": T0 + timedelta(days=3),
    }
    return [
        q.TestState(
            code,
            due[code],
            outcome,
            reviewed=outcome is not None,
            recorded_at=T0 if outcome else None,
        )
        for code, outcome in outcomes.items()
    ]


def test_a_lot_is_pending_failed_or_complete():
    assert q.lot_state([]).readiness is q.Readiness.pending
    pending = q.lot_state(states(sterility=None, endotoxin="pass", potency="pass"))
    assert (pending.readiness, pending.pending) == (q.Readiness.pending, ("sterility",))
    failed = q.lot_state(states(sterility=None, endotoxin="oos", potency="pass"))
    assert (failed.readiness, failed.oos) == (q.Readiness.failed, ("endotoxin",))
    done = q.lot_state(states(sterility="pass", endotoxin="pass", potency="pass"))
    assert done.readiness is q.Readiness.complete and done.releasable
    unreviewed = q.lot_state([q.TestState("sterility", T0, "pass", reviewed=False, recorded_at=T0)])
    assert (unreviewed.readiness, unreviewed.unreviewed) == (q.Readiness.pending, ("sterility",))


def test_the_expected_release_is_the_slowest_pending_test_and_moves_when_it_is_late():
    tests = states(sterility=None, endotoxin=None, potency="pass")
    on_time = q.expected_release(tests, T0 + timedelta(days=2))
    assert (on_time.expected_at, on_time.slowest, on_time.late) == (
        T0 + timedelta(days=14),
        "sterility",
        ("endotoxin",),
    )
    # The day after sterility was due, without a result: now + the grace period, later each day.
    late_now = T0 + timedelta(days=15)
    late = q.expected_release(tests, late_now, grace=timedelta(hours=12))
    assert (late.expected_at, late.slowest) == (late_now + timedelta(hours=12), "sterility")
    assert set(late.late) == {"sterility", "endotoxin"}
    later = q.expected_release(tests, late_now + timedelta(days=1), grace=timedelta(hours=12))
    assert later.expected_at is not None and late.expected_at is not None
    assert later.expected_at > late.expected_at
    # All results in: the estimate is the last result's time.
    done = q.expected_release(states(sterility="pass", endotoxin="pass", potency="pass"), late_now)
    assert (done.expected_at, done.slowest) == (T0, None)


def test_the_grace_period_comes_from_the_profile():
    assert q.grace_from_profile({}) == timedelta(hours=24)
    assert q.grace_from_profile({"late_result_grace_hours": 6}) == timedelta(hours=6)
