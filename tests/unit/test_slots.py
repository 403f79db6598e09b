from datetime import UTC
from datetime import date
from datetime import datetime
from datetime import time
from datetime import timedelta
from datetime import timezone

import pytest
from hypothesis import given
from hypothesis import settings
from hypothesis import strategies as st

from schedules.slots import Booking
from schedules.slots import CapacityTemplate
from schedules.slots import CapacityWindow
from schedules.slots import OpeningHours
from schedules.slots import Resource
from schedules.slots import ResourceKind
from schedules.slots import expand_capacity
from schedules.slots import first_day_starting_at_or_after
from schedules.slots import fits
from schedules.slots import local_day_bounds
from schedules.slots import local_to_utc
from schedules.slots import remaining
from schedules.slots import utilisation_by_local_day

BERLIN = "Europe/Berlin"
NEW_YORK = "America/New_York"
EVERY_DAY = range(7)
CHAIR = Resource("chair-1", ResourceKind.apheresis_chair, "C")


def utc(year: int, month: int, day: int, hour: int = 0, minute: int = 0) -> datetime:
    return datetime(year, month, day, hour, minute, tzinfo=UTC)


def make_template(
    opening: tuple[time, time, int] = (time(0), time(0), 1),
    *,
    days: range = EVERY_DAY,
    slot_length: timedelta | None = None,
    closures: tuple[tuple[date, date], ...] = (),
    holidays: frozenset[date] = frozenset(),
) -> CapacityTemplate:
    hours = OpeningHours(*opening)
    return CapacityTemplate(
        CHAIR,
        {day: [hours] for day in days},
        slot_length=slot_length,
        closures=closures,
        holidays=holidays,
    )


def windows_on(day: date, tz: str, template: CapacityTemplate) -> list[CapacityWindow]:
    start, end = local_day_bounds(day, tz)
    return [w for w in expand_capacity(template, tz, start, end) if w.start >= start]


def window(start: datetime, end: datetime, capacity: int, rid: str = "chair-1") -> CapacityWindow:
    return CapacityWindow(rid, start, end, capacity)


def booking(start: datetime, end: datetime, units: int = 1, rid: str = "chair-1") -> Booking:
    return Booking(rid, start, end, units)


# --- DST ------------------------------------------------------------------------------------

DST_DAYS = [
    (BERLIN, date(2026, 3, 29), 23),
    (BERLIN, date(2026, 10, 25), 25),
    (NEW_YORK, date(2026, 3, 8), 23),
    (NEW_YORK, date(2026, 11, 1), 25),
    (BERLIN, date(2026, 6, 1), 24),
]


@pytest.mark.parametrize(("tz", "day", "hours"), DST_DAYS)
def test_local_day_bounds_span_23_or_25_hours_on_dst_days(tz: str, day: date, hours: int) -> None:
    start, end = local_day_bounds(day, tz)
    assert end - start == timedelta(hours=hours)
    assert start.tzinfo is UTC


@pytest.mark.parametrize(("tz", "day", "hours"), DST_DAYS)
def test_full_day_window_lasts_the_elapsed_length_of_the_local_day(
    tz: str, day: date, hours: int
) -> None:
    [only] = windows_on(day, tz, make_template())
    assert only.end - only.start == timedelta(hours=hours)
    assert (only.start, only.end) == local_day_bounds(day, tz)


def test_day_starting_inside_a_midnight_gap_starts_when_clocks_jump() -> None:
    # Havana springs forward at 00:00 -> 01:00, so 2026-03-08 starts at 01:00 CDT.
    start, end = local_day_bounds(date(2026, 3, 8), "America/Havana")
    assert start == utc(2026, 3, 8, 5)
    assert end - start == timedelta(hours=23)


@pytest.mark.parametrize(
    ("tz", "day", "wall", "expected"),
    [
        (BERLIN, date(2026, 3, 29), time(2, 30), utc(2026, 3, 29, 1)),
        (NEW_YORK, date(2026, 3, 8), time(2, 30), utc(2026, 3, 8, 7)),
    ],
)
def test_opening_time_inside_spring_forward_gap_opens_when_clocks_jump(
    tz: str, day: date, wall: time, expected: datetime
) -> None:
    assert local_to_utc(day, wall, tz) == expected
    [only] = windows_on(day, tz, make_template((wall, time(6), 1)))
    assert only.start == expected


@pytest.mark.parametrize(
    ("tz", "day", "wall", "expected"),
    [
        (BERLIN, date(2026, 10, 25), time(2, 30), utc(2026, 10, 25, 0, 30)),
        (NEW_YORK, date(2026, 11, 1), time(1, 30), utc(2026, 11, 1, 5, 30)),
    ],
)
def test_opening_time_in_repeated_hour_opens_once_at_first_occurrence(
    tz: str, day: date, wall: time, expected: datetime
) -> None:
    assert local_to_utc(day, wall, tz) == expected
    windows = windows_on(day, tz, make_template((wall, time(6), 1)))
    assert [w.start for w in windows] == [expected]


def test_slot_entirely_inside_spring_forward_gap_is_dropped() -> None:
    template = make_template((time(2), time(3), 1))
    assert windows_on(date(2026, 3, 29), BERLIN, template) == []
    assert len(windows_on(date(2026, 3, 30), BERLIN, template)) == 1


@pytest.mark.parametrize(
    ("tz", "day", "elapsed_hours"),
    [
        (BERLIN, date(2026, 3, 29), [2, 1, 2]),
        (BERLIN, date(2026, 10, 25), [2, 3, 2]),
        (NEW_YORK, date(2026, 3, 8), [2, 1, 2]),
        (NEW_YORK, date(2026, 11, 1), [3, 2, 2]),
    ],
)
def test_slots_across_a_dst_change_stay_contiguous_without_overlap(
    tz: str, day: date, elapsed_hours: list[int]
) -> None:
    template = make_template((time(0), time(6), 1), slot_length=timedelta(hours=2))
    windows = windows_on(day, tz, template)
    assert [(w.end - w.start) // timedelta(hours=1) for w in windows] == elapsed_hours
    for earlier, later in zip(windows, windows[1:], strict=False):
        assert earlier.end == later.start


def test_wall_clock_opening_hours_keep_local_time_across_the_transition() -> None:
    template = make_template((time(8), time(12), 1))
    [friday] = windows_on(date(2026, 3, 27), BERLIN, template)
    [monday] = windows_on(date(2026, 3, 30), BERLIN, template)
    assert friday.start == utc(2026, 3, 27, 7)  # CET
    assert monday.start == utc(2026, 3, 30, 6)  # CEST


@settings(max_examples=200, deadline=None)
@given(
    tz=st.sampled_from([BERLIN, NEW_YORK, "America/Havana"]),
    day=st.dates(min_value=date(2026, 1, 1), max_value=date(2026, 12, 31)),
    minutes=st.lists(st.integers(0, 24 * 60 - 1), min_size=2, max_size=2),
)
def test_local_to_utc_never_goes_backwards(tz: str, day: date, minutes: list[int]) -> None:
    low, high = sorted(minutes)
    first = local_to_utc(day, time(low // 60, low % 60), tz)
    second = local_to_utc(day, time(high // 60, high % 60), tz)
    assert first <= second


# --- templates ------------------------------------------------------------------------------


def test_chair_slots_are_cut_from_opening_hours_dropping_a_short_remainder() -> None:
    template = make_template((time(8), time(18), 2), slot_length=timedelta(hours=4))
    windows = windows_on(date(2026, 6, 2), BERLIN, template)
    assert [(w.start, w.end, w.capacity) for w in windows] == [
        (utc(2026, 6, 2, 6), utc(2026, 6, 2, 10), 2),
        (utc(2026, 6, 2, 10), utc(2026, 6, 2, 14), 2),
    ]


def test_holidays_and_closures_remove_windows_on_those_local_days() -> None:
    template = make_template(
        (time(8), time(16), 1),
        days=range(5),
        holidays=frozenset({date(2026, 5, 1)}),
        closures=((date(2026, 5, 4), date(2026, 5, 5)),),
    )
    windows = expand_capacity(template, BERLIN, utc(2026, 4, 30), utc(2026, 5, 7))
    days = [w.start.date() for w in windows]
    assert days == [date(2026, 4, 30), date(2026, 5, 6)]  # Sat/Sun closed by weekly hours


def test_night_window_belongs_to_the_local_day_it_starts_on() -> None:
    template = make_template((time(22), time(6), 1), holidays=frozenset({date(2026, 6, 2)}))
    windows = expand_capacity(template, BERLIN, utc(2026, 6, 2), utc(2026, 6, 4))
    starts = [w.start for w in windows]
    assert utc(2026, 6, 2, 20) not in starts  # the holiday's night shift is gone
    assert starts == [utc(2026, 6, 1, 20), utc(2026, 6, 3, 20)]
    assert windows[0].end == utc(2026, 6, 2, 4)


def test_expansion_returns_whole_windows_that_overlap_the_range() -> None:
    template = make_template((time(8), time(16), 1))
    [only] = expand_capacity(template, BERLIN, utc(2026, 6, 2, 9), utc(2026, 6, 2, 10))
    assert (only.start, only.end) == (utc(2026, 6, 2, 6), utc(2026, 6, 2, 14))


def test_refuses_naive_and_non_utc_datetimes() -> None:
    template = make_template()
    with pytest.raises(ValueError, match="naive"):
        expand_capacity(template, BERLIN, datetime(2026, 6, 1), utc(2026, 6, 2))  # noqa: DTZ001
    with pytest.raises(ValueError, match="UTC"):
        plus_two = timezone(timedelta(hours=2))
        Booking("chair-1", datetime(2026, 6, 1, tzinfo=plus_two), utc(2026, 7, 1))
    with pytest.raises(ValueError, match="naive"):
        first_day_starting_at_or_after(datetime(2026, 6, 1), BERLIN)  # noqa: DTZ001


def test_unknown_time_zone_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown time zone"):
        expand_capacity(make_template(), "Mars/Olympus", utc(2026, 6, 1), utc(2026, 6, 2))


# --- strictest wins ---------------------------------------------------------------------------

SLOT = (utc(2026, 6, 2, 8), utc(2026, 6, 2, 12))
DAY = (utc(2026, 6, 2), utc(2026, 6, 3))


def test_booking_fits_while_the_window_has_room() -> None:
    windows = [window(*SLOT, capacity=2)]
    assert fits(windows, [booking(*SLOT)], booking(*SLOT))


def test_booking_is_refused_when_the_window_is_full() -> None:
    windows = [window(*SLOT, capacity=2)]
    result = fits(windows, [booking(*SLOT), booking(*SLOT)], booking(*SLOT))
    assert not result
    assert result.code == "full"
    assert result.window == windows[0]


def test_strictest_overlapping_window_wins_over_a_roomier_slot() -> None:
    # The 4 h slot has room for 3, but the day allows only 2 patients in all.
    windows = [window(*SLOT, capacity=3), window(*DAY, capacity=2)]
    earlier = booking(utc(2026, 6, 2, 13), utc(2026, 6, 2, 15))
    existing = [booking(*SLOT), earlier]
    result = fits(windows, existing, booking(*SLOT))
    assert result.code == "full"
    assert result.window == windows[1]


def test_booking_without_any_window_fails_closed() -> None:
    result = fits([], [], booking(*SLOT))
    assert not result
    assert result.code == "closed"


def test_booking_reaching_past_its_windows_fails_closed() -> None:
    windows = [window(*SLOT, capacity=5)]
    result = fits(windows, [], booking(SLOT[0], SLOT[1] + timedelta(minutes=1)))
    assert result.code == "closed"


def test_booking_spanning_a_gap_between_windows_fails_closed() -> None:
    windows = [
        window(utc(2026, 6, 2, 8), utc(2026, 6, 2, 10), 1),
        window(utc(2026, 6, 2, 11), utc(2026, 6, 2, 12), 1),
    ]
    result = fits(windows, [], booking(*SLOT))
    assert result.code == "closed"
    assert "10:00" in result.message


def test_booking_across_adjacent_windows_needs_room_in_each() -> None:
    first = window(utc(2026, 6, 2, 8), utc(2026, 6, 2, 10), 1)
    second = window(utc(2026, 6, 2, 10), utc(2026, 6, 2, 12), 1)
    assert fits([first, second], [], booking(*SLOT))
    taken = booking(utc(2026, 6, 2, 10), utc(2026, 6, 2, 11))
    assert fits([first, second], [taken], booking(*SLOT)).window == second


def test_other_resources_and_touching_bookings_do_not_count() -> None:
    windows = [window(*SLOT, capacity=1), window(*SLOT, capacity=1, rid="chair-2")]
    existing = [
        booking(*SLOT, rid="chair-2"),
        booking(utc(2026, 6, 2, 6), SLOT[0]),  # ends exactly when the slot starts
    ]
    assert fits(windows, existing, booking(*SLOT))


def test_booking_refuses_zero_units_and_empty_intervals() -> None:
    with pytest.raises(ValueError, match="units"):
        booking(*SLOT, units=0)
    with pytest.raises(ValueError, match="after its start"):
        booking(SLOT[0], SLOT[0])


def test_remaining_reports_used_remaining_and_strictest_bookable() -> None:
    slot, day = window(*SLOT, capacity=3), window(*DAY, capacity=2)
    usage = remaining([slot, day], [booking(*SLOT), booking(utc(2026, 6, 2, 14), DAY[1])])
    assert [(u.used, u.remaining, u.bookable) for u in usage] == [(1, 2, 0), (2, 0, 0)]


def test_remaining_goes_negative_when_overbooked() -> None:
    [usage] = remaining([window(*SLOT, capacity=1)], [booking(*SLOT), booking(*SLOT)])
    assert (usage.remaining, usage.bookable) == (-1, 0)


def test_utilisation_is_grouped_by_local_start_day() -> None:
    late = window(utc(2026, 6, 1, 22, 30), utc(2026, 6, 2, 2), 2)  # 00:30 CEST on June 2
    early = window(utc(2026, 6, 2, 8), utc(2026, 6, 2, 10), 2)
    other_day = window(utc(2026, 6, 1, 8), utc(2026, 6, 1, 10), 4)
    rows = utilisation_by_local_day(
        [late, early, other_day], [booking(early.start, early.end)], BERLIN
    )
    assert [(r.day, r.capacity, r.used) for r in rows] == [
        (date(2026, 6, 1), 4, 0),
        (date(2026, 6, 2), 4, 1),
    ]
    assert rows[1].ratio == 0.25
