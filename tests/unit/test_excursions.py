"""Excursion rules, silence, exposure ledger, hold time and ambient timers on synthetic data."""

from __future__ import annotations

import random
from collections.abc import Sequence
from datetime import UTC
from datetime import datetime
from datetime import timedelta

import pytest
from hypothesis import given
from hypothesis import settings
from hypothesis import strategies as st

from tracker.domain.excursions import CRYOPRESERVED_AMBIENT
from tracker.domain.excursions import FRESH_AMBIENT
from tracker.domain.excursions import CustodyInterval
from tracker.domain.excursions import OutOfStorageInterval
from tracker.domain.excursions import Span
from tracker.domain.excursions import TemperatureRule
from tracker.domain.excursions import ambient_exposure
from tracker.domain.excursions import bags_exposed
from tracker.domain.excursions import cryogenic_profile
from tracker.domain.excursions import detect_silence
from tracker.domain.excursions import evaluate
from tracker.domain.excursions import exposure_ledger
from tracker.domain.excursions import find_excursions
from tracker.domain.excursions import find_gaps
from tracker.domain.excursions import fresh_profile
from tracker.domain.excursions import hold_time_risk
from tracker.domain.excursions import remaining_hold
from tracker.domain.excursions import time_out_of_range
from tracker.domain.loggers import Reading

T0 = datetime(2026, 6, 1, 8, 0, tzinfo=UTC)
FIVE = timedelta(minutes=5)


def minutes(n: float) -> timedelta:
    return timedelta(minutes=n)


def series(
    values: Sequence[float], *, start: datetime = T0, step: timedelta = FIVE
) -> list[Reading]:
    return [Reading(start + i * step, v) for i, v in enumerate(values)]


def at(n: float) -> datetime:
    """T0 plus ``n`` minutes."""
    return T0 + minutes(n)


HOT_30 = TemperatureRule("alarm", "hot", 8.0, minutes(30), "consecutive")
COLD_20 = TemperatureRule("alarm", "cold", 2.0, minutes(20), "consecutive")
HOT_CUM_60 = TemperatureRule("alarm", "hot", 8.0, minutes(60), "cumulative")


# --- consecutive ------------------------------------------------------------------------------


def test_hot_run_of_35_minutes_is_one_consecutive_breach_ending_at_first_in_range_reading() -> None:
    readings = series([5, 5, 9, 9.5, 11, 9, 9, 9, 9, 5, 5])  # warm at 10..40 min, back at 45
    [breach] = evaluate(readings, [HOT_30], expected_interval=FIVE)
    assert (breach.start, breach.end) == (at(10), at(45))
    assert breach.duration == minutes(35)
    assert breach.triggered_at == at(40)
    assert (breach.worst_c, breach.worst_at) == (11, at(20))
    assert breach.spans == (Span(at(10), at(45)),)
    assert not breach.ongoing


def test_short_excursion_clears_itself_without_becoming_a_breach() -> None:
    readings = series([5, 9, 9, 9, 5, 5])  # 15 minutes warm
    assert evaluate(readings, [HOT_30], expected_interval=FIVE) == []
    [excursion] = find_excursions(readings, [HOT_30], expected_interval=FIVE)
    assert (excursion.start, excursion.end, excursion.duration) == (at(5), at(20), minutes(15))
    assert not excursion.ongoing


def test_series_ending_out_of_range_gives_an_ongoing_breach_counted_to_last_plus_interval() -> None:
    readings = series([5, 9, 9, 9, 9, 9, 9])  # warm from 5 min; last reading at 30 min
    [breach] = evaluate(readings, [HOT_30], expected_interval=FIVE)
    assert breach.end is None and breach.ongoing
    assert breach.duration == minutes(30)  # 30 + 5 - 5
    assert breach.triggered_at == at(35)


def test_readings_exactly_at_an_inclusive_threshold_count_as_out_of_range() -> None:
    readings = series([8.0] * 6 + [7.9])  # 30 minutes at exactly 8.0 °C
    [breach] = evaluate(readings, [HOT_30], expected_interval=FIVE)
    assert breach.duration == minutes(30)  # reaches min_duration exactly: >= fires


def test_cryogenic_limit_itself_is_in_range() -> None:
    rules = cryogenic_profile(limit_c=-150.0, alarm_after=minutes(10))
    assert evaluate(series([-150.0] * 10), rules, expected_interval=FIVE) == []
    breaches = evaluate(series([-160, -149.9, -149.9, -160]), rules, expected_interval=FIVE)
    assert [(b.level, b.duration) for b in breaches] == [
        ("alarm", minutes(10)),
        ("warning", minutes(10)),
    ]


def test_cold_consecutive_rule_uses_the_minimum_as_worst_value() -> None:
    readings = series([4, 2.0, 1.5, 0.8, 1.9, 2.0, 4])
    [breach] = evaluate(readings, [COLD_20], expected_interval=FIVE)
    assert (breach.kind, breach.duration, breach.worst_c) == ("cold", minutes(25), 0.8)


def test_breach_copies_the_thresholds_in_force() -> None:
    rule = TemperatureRule("critical", "hot", 8.0, minutes(30), "consecutive")
    [breach] = evaluate(series([9] * 8), [rule], expected_interval=FIVE, container_id="CS-1")
    assert breach.rule == rule
    assert (breach.level, breach.threshold_c, breach.min_duration) == ("critical", 8.0, minutes(30))
    assert breach.container_id == "CS-1"


def test_a_gap_does_not_end_an_excursion() -> None:
    readings = series([5, 9, 9]) + series([9, 5], start=at(60))  # nothing from 10 to 60 min
    [breach] = evaluate(readings, [HOT_30], expected_interval=FIVE)
    assert (breach.start, breach.end) == (at(5), at(65))
    [gap] = find_gaps(readings, FIVE)
    assert (gap.after, gap.before, gap.missed_readings) == (at(10), at(60), 9)


def test_unsorted_input_gives_the_same_breaches() -> None:
    readings = series([5, 9, 9, 9, 9, 9, 9, 9, 5, 1, 1, 1, 1, 1, 4])
    shuffled = readings[:]
    random.Random(7).shuffle(shuffled)
    rules = fresh_profile()
    expected = evaluate(readings, rules, expected_interval=FIVE)
    assert evaluate(shuffled, rules, expected_interval=FIVE) == expected


# --- cumulative -------------------------------------------------------------------------------


def test_three_short_excursions_add_up_to_a_cumulative_breach_but_no_consecutive_one() -> None:
    warm20 = [9, 9, 9, 9]
    readings = series([5] + warm20 + [5, 5] + warm20 + [5, 5] + warm20 + [5])
    breaches = evaluate(readings, [HOT_30, HOT_CUM_60], expected_interval=FIVE)
    [breach] = breaches
    assert breach.mode == "cumulative"
    assert breach.duration == minutes(60)
    assert [(s.start, s.end) for s in breach.spans] == [
        (at(5), at(25)),
        (at(35), at(55)),
        (at(65), at(85)),
    ]
    assert (breach.start, breach.end) == (at(5), at(85))
    assert breach.triggered_at == at(85)  # third excursion completes the 60 minutes


def test_cumulative_breach_is_ongoing_while_the_last_excursion_is() -> None:
    readings = series([9] * 8 + [5] * 2 + [9] * 6)
    [breach] = evaluate(readings, [HOT_CUM_60], expected_interval=FIVE)
    assert breach.ongoing
    assert breach.duration == minutes(40 + 30)
    assert breach.triggered_at == at(50 + 20)


def test_fresh_profile_defaults_come_from_domain_table() -> None:
    rules = fresh_profile()
    assert [(r.kind, r.threshold_c, r.min_duration, r.mode) for r in rules] == [
        ("hot", 8.0, minutes(30), "consecutive"),
        ("cold", 2.0, minutes(20), "consecutive"),
        ("hot", 8.0, minutes(60), "cumulative"),
        ("cold", 2.0, minutes(40), "cumulative"),
    ]
    assert fresh_profile(hot_c=25.0)[0].threshold_c == 25.0


@settings(max_examples=150, deadline=None)
@given(
    values=st.lists(
        st.floats(min_value=-5, max_value=15, allow_nan=False).map(lambda v: round(v, 1)),
        min_size=2,
        max_size=60,
    ),
    data=st.data(),
)
def test_out_of_range_time_of_a_regular_series_is_additive_over_a_split(
    values: list[float], data: st.DataObject
) -> None:
    readings = series(values)
    cut = data.draw(st.integers(min_value=1, max_value=len(values) - 1))
    rule = data.draw(st.sampled_from(fresh_profile()))
    whole = time_out_of_range(readings, rule, expected_interval=FIVE)
    parts = time_out_of_range(readings[:cut], rule, expected_interval=FIVE) + time_out_of_range(
        readings[cut:], rule, expected_interval=FIVE
    )
    assert whole == parts
    # ... and a zero-duration cumulative rule reports exactly that time as its breach.
    zero = TemperatureRule("warning", rule.kind, rule.threshold_c, timedelta(0), "cumulative")
    cumulative = evaluate(readings, [zero], expected_interval=FIVE)
    assert sum((b.duration for b in cumulative), timedelta(0)) == whole
    consecutive = evaluate(
        readings,
        [TemperatureRule("warning", rule.kind, rule.threshold_c, timedelta(0), "consecutive")],
        expected_interval=FIVE,
    )
    assert sum((b.duration for b in consecutive), timedelta(0)) == whole


def test_evaluate_refuses_a_non_positive_interval() -> None:
    with pytest.raises(ValueError):
        evaluate(series([5]), [HOT_30], expected_interval=timedelta(0))


# --- silence ----------------------------------------------------------------------------------


def test_silence_is_reported_only_after_more_than_factor_intervals() -> None:
    assert detect_silence(T0, FIVE, at(10)) is None  # exactly 2 intervals: still quiet
    alarm = detect_silence(T0, FIVE, at(10.5))
    assert alarm is not None
    assert (alarm.silent_for, alarm.missed_readings) == (minutes(10.5), 2)
    assert detect_silence(T0, FIVE, at(14), factor=3) is None
    assert detect_silence(at(20), FIVE, T0) is None  # a reading from the future is not silence


def test_silence_refuses_naive_datetimes() -> None:
    with pytest.raises(ValueError, match="naive"):
        detect_silence(T0, FIVE, datetime(2026, 6, 1, 9, 0))  # noqa: DTZ001


def test_regular_series_has_no_gaps_and_one_missed_reading_is_a_gap() -> None:
    assert find_gaps(series([5] * 10), FIVE) == []
    readings = series([5, 5]) + series([5], start=at(15))
    [gap] = find_gaps(readings, FIVE)
    assert (gap.duration, gap.missed_readings) == (minutes(10), 1)


# --- exposure ledger --------------------------------------------------------------------------


def test_two_bags_moving_between_two_shippers_get_their_own_exposure() -> None:
    # Shipper A is warm (9 °C) from 10 to 40 min; shipper B is cold (1 °C) from 60 to 90 min.
    shipper_a = series([5, 5, 9, 9, 9, 9, 9, 9, 5, 5, 5, 5, 5, 5, 5, 5, 5, 5, 5, 5, 5, 5, 5, 5])
    shipper_b = series([5] * 12 + [1] * 6 + [5] * 6)
    intervals = [
        CustodyInterval("BAG-1", "A", T0, at(20)),
        CustodyInterval("BAG-1", "B", at(20), None),
        CustodyInterval("BAG-2", "B", T0, at(30)),
        CustodyInterval("BAG-2", "A", at(30), at(120)),
    ]
    rules = [
        TemperatureRule("alarm", "hot", 8.0, minutes(25), "consecutive"),
        TemperatureRule("alarm", "cold", 2.0, minutes(25), "consecutive"),
    ]
    ledger = exposure_ledger(
        intervals, {"A": shipper_a, "B": shipper_b}, rules, expected_interval=FIVE, now=at(120)
    )
    bag1, bag2 = ledger["BAG-1"], ledger["BAG-2"]
    # BAG-1: warm in A from 10 to 20, cold in B from 60 to 90.
    assert bag1.out_of_range == minutes(10 + 30)
    assert (bag1.max_c, bag1.min_c) == (9, 1)
    assert [(b.container_id, b.kind) for b in bag1.breaches] == [("A", "hot"), ("B", "cold")]
    # BAG-2: B while it was fine, then A from 30 (warm until 40).
    assert bag2.out_of_range == minutes(10)
    assert (bag2.max_c, bag2.min_c) == (9, 5)
    assert [b.container_id for b in bag2.breaches] == ["A"]
    # Both loggers stop at 120 min (last reading 115 + 5): everything is monitored.
    assert bag1.custody_time == minutes(120) and bag1.unmonitored == timedelta(0)
    assert bag2.custody_time == minutes(120) and bag2.unmonitored == timedelta(0)


def test_bags_exposed_lists_only_bags_present_during_an_out_of_range_span() -> None:
    readings = series([9] * 4 + [5] * 4 + [9] * 8 + [5])  # warm 0-20 and 40-80
    [breach] = evaluate(readings, [HOT_CUM_60], expected_interval=FIVE, container_id="A")
    intervals = [
        CustodyInterval("EARLY", "A", at(0), at(5)),
        CustodyInterval("BETWEEN", "A", at(20), at(40)),  # only in range; touching edges
        CustodyInterval("LATE", "A", at(70), None),
        CustodyInterval("ELSEWHERE", "B", at(0), None),
    ]
    assert bags_exposed(breach, intervals) == ["EARLY", "LATE"]


def test_custody_without_readings_is_unmonitored_not_in_range() -> None:
    intervals = [CustodyInterval("BAG-9", "NO-LOGGER", T0, at(30))]
    ledger = exposure_ledger(intervals, {}, fresh_profile(), expected_interval=FIVE, now=at(60))
    assert ledger["BAG-9"].unmonitored == minutes(30)
    assert ledger["BAG-9"].max_c is None


def test_custody_interval_refuses_naive_and_backwards_times() -> None:
    with pytest.raises(ValueError, match="naive"):
        CustodyInterval("B", "C", datetime(2026, 1, 1), None)  # noqa: DTZ001
    with pytest.raises(ValueError):
        CustodyInterval("B", "C", at(10), at(5))


# --- cryoshipper hold time --------------------------------------------------------------------


def test_remaining_hold_counts_down_and_goes_negative_after_expiry() -> None:
    hold = timedelta(days=10)
    assert remaining_hold(T0, hold, T0 + timedelta(days=3)) == timedelta(days=7)
    assert remaining_hold(T0, hold, T0 + timedelta(days=11)) == -timedelta(days=1)


def test_hold_time_risk_when_arrival_plus_margin_passes_expiry() -> None:
    hold = timedelta(days=10)
    safe = hold_time_risk(T0, hold, T0 + timedelta(days=8), timedelta(days=2))
    assert safe.slack == timedelta(0) and not safe.at_risk  # exactly on the margin is fine
    risky = hold_time_risk(T0, hold, T0 + timedelta(days=8, hours=1), timedelta(days=2))
    assert risky.at_risk and risky.slack == -timedelta(hours=1)
    assert risky.expires_at == T0 + hold


def test_hold_time_refuses_naive_arrival() -> None:
    with pytest.raises(ValueError, match="naive"):
        hold_time_risk(T0, timedelta(days=10), datetime(2026, 6, 5), timedelta(0))  # noqa: DTZ001


# --- ambient exposure -------------------------------------------------------------------------


def test_cryopreserved_bag_may_spend_three_minutes_out_at_each_transfer() -> None:
    intervals = [
        OutOfStorageInterval("OK", at(0), at(3)),
        OutOfStorageInterval("OK", at(60), at(63)),
        OutOfStorageInterval("SLOW", at(0), at(4)),
        OutOfStorageInterval("OUT-NOW", at(10), None),
    ]
    status = ambient_exposure(intervals, CRYOPRESERVED_AMBIENT, now=at(11))
    assert not status["OK"].exceeded and status["OK"].total == minutes(6)
    assert status["SLOW"].exceeded and status["SLOW"].exceeded_at == at(3)
    out_now = status["OUT-NOW"]
    assert (out_now.open_since, out_now.deadline, out_now.exceeded) == (at(10), at(13), False)


def test_fresh_bag_ambient_time_is_cumulative_over_removals() -> None:
    intervals = [
        OutOfStorageInterval("FRESH-1", at(0), at(30)),
        OutOfStorageInterval("FRESH-1", at(100), at(125)),
        OutOfStorageInterval("FRESH-1", at(200), None),
    ]
    before = ambient_exposure(intervals, FRESH_AMBIENT, now=at(203))["FRESH-1"]
    assert (before.exceeded, before.deadline, before.total) == (False, at(205), minutes(58))
    after = ambient_exposure(intervals, FRESH_AMBIENT, now=at(210))["FRESH-1"]
    assert (after.exceeded, after.exceeded_at, after.deadline) == (True, at(205), None)
    assert after.longest == minutes(30)
