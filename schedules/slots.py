"""Capacity of schedulable resources: templates in site-local time, windows and bookings in UTC.

Pure module: standard library and zoneinfo only. Every datetime that enters or leaves is aware
UTC; naive or non-UTC values raise ValueError. Local wall time appears only where a site's zone
is an explicit argument (templates, local days).

DST convention for every local wall time converted here (templates, local days):

* Gap (spring forward): a wall time that does not exist resolves to the instant the clocks jump.
  Europe/Berlin 2026-03-29 02:30 -> 03:00 CEST (01:00 UTC); America/New_York 2026-03-08 02:30
  -> 03:00 EDT (07:00 UTC). A window whose two ends fall into the same gap becomes empty and is
  dropped; a window that spans the gap is shorter in elapsed time (a full day is 23 h).
* Fold (fall back): a wall time that exists twice resolves to its first occurrence (fold=0).
  Europe/Berlin 2026-10-25 02:30 -> 02:30 CEST (00:30 UTC). A window is therefore never
  doubled; one that spans the repeated hour is longer in elapsed time (a full day is 25 h).

Both rules keep the mapping from wall time to UTC non-decreasing, so consecutive slots stay
contiguous and never overlap.

Capacity semantics ("strictest wins", after Medplum's slotCapacity): a window's capacity is the
number of booking units that may overlap it. A booking must fit under EVERY window of its
resource that it overlaps, and the union of those windows must cover the booking entirely:
time covered by no window is closed (fail closed).
"""

from __future__ import annotations

from bisect import bisect_left
from bisect import bisect_right
from collections.abc import Iterable
from collections.abc import Mapping
from collections.abc import Sequence
from dataclasses import dataclass
from dataclasses import field
from datetime import UTC
from datetime import date
from datetime import datetime
from datetime import time
from datetime import timedelta
from enum import StrEnum
from typing import Generic
from typing import Protocol
from typing import TypeVar
from zoneinfo import ZoneInfo
from zoneinfo import ZoneInfoNotFoundError

ONE_DAY = timedelta(days=1)


class ResourceKind(StrEnum):
    apheresis_chair = "apheresis_chair"
    manufacturing_slot = "manufacturing_slot"
    infusion_bed = "infusion_bed"
    courier = "courier"


# ---------------------------------------------------------------------------------------------
# Time helpers


def require_utc(value: datetime, name: str = "datetime") -> datetime:
    """Return ``value`` normalised to ``datetime.UTC``; refuse naive and non-UTC datetimes."""
    offset = value.utcoffset()
    if offset is None:
        raise ValueError(f"{name} must be an aware UTC datetime, got naive {value.isoformat()}")
    if offset != timedelta(0):
        raise ValueError(f"{name} must be in UTC, got offset {offset} ({value.isoformat()})")
    return value.astimezone(UTC)


def zone(tz: str) -> ZoneInfo:
    """Return the IANA zone ``tz``; ValueError if it is unknown."""
    try:
        return ZoneInfo(tz)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise ValueError(f"unknown time zone {tz!r}") from exc


def local_to_utc(day: date, wall: time, tz: str) -> datetime:
    """Resolve the wall time ``wall`` on ``day`` in ``tz`` to UTC (gap -> jump, fold -> first)."""
    return _resolve(datetime.combine(day, wall, tzinfo=zone(tz)))


def _resolve(local: datetime) -> datetime:
    """Resolve an aware local wall time (tzinfo a ZoneInfo) to UTC under the module DST rules."""
    tz = local.tzinfo
    assert tz is not None
    first = local.replace(fold=0)
    candidate = first.astimezone(UTC)
    if candidate.astimezone(tz).replace(tzinfo=None) == first.replace(tzinfo=None):
        return candidate  # exists once, or the first of two occurrences
    # In a gap zoneinfo maps fold=0 with the offset before the jump and fold=1 with the offset
    # after it, so the jump lies between the two readings. Binary search to the second.
    other = local.replace(fold=1).astimezone(UTC)
    low, high = min(candidate, other), max(candidate, other)
    after = high.astimezone(tz).utcoffset()
    lo_s, hi_s = 0, int((high - low).total_seconds())
    while hi_s - lo_s > 1:
        mid = (lo_s + hi_s) // 2
        if (low + timedelta(seconds=mid)).astimezone(tz).utcoffset() == after:
            hi_s = mid
        else:
            lo_s = mid
    return low + timedelta(seconds=hi_s)


def local_date(instant: datetime, tz: str) -> date:
    """Return the local calendar date of the UTC ``instant`` in ``tz``."""
    return require_utc(instant, "instant").astimezone(zone(tz)).date()


def local_day_bounds(day: date, tz: str) -> tuple[datetime, datetime]:
    """Return the UTC [start, end) of the local ``day`` in ``tz`` (23 h or 25 h on DST days)."""
    return local_to_utc(day, time(0), tz), local_to_utc(day + ONE_DAY, time(0), tz)


def first_day_starting_at_or_after(instant: datetime, tz: str) -> date:
    """Return the first local date in ``tz`` whose start is at or after ``instant``."""
    day = local_date(instant, tz)
    start, _ = local_day_bounds(day, tz)
    return day if start >= instant else day + ONE_DAY


def shift_local_days(instant: datetime, days: int, tz: str) -> datetime:
    """Move ``instant`` by ``days`` calendar days in ``tz``, keeping its wall-clock time."""
    local = require_utc(instant, "instant").astimezone(zone(tz))
    return _resolve(local.replace(fold=0) + timedelta(days=days))


# ---------------------------------------------------------------------------------------------
# Resources, templates, windows, bookings


@dataclass(frozen=True)
class Resource:
    """A bookable pool (e.g. the 3 apheresis chairs of a site) with a stable opaque id."""

    id: str
    kind: ResourceKind
    site: str
    product: str | None = None  # manufacturing slots only; None = shared by every product

    def __post_init__(self) -> None:
        if not self.id or not self.site:
            raise ValueError("resource id and site must not be empty")
        if self.product is not None and self.kind is not ResourceKind.manufacturing_slot:
            raise ValueError("only manufacturing slots are per product")


@dataclass(frozen=True)
class OpeningHours:
    """One local-time opening period; ``end <= start`` means it ends on the next local day.

    ``start == end`` is a 24-hour period (``time(0), time(0)`` is the whole local day).
    """

    start: time
    end: time
    capacity: int

    def __post_init__(self) -> None:
        if self.start.tzinfo is not None or self.end.tzinfo is not None:
            raise ValueError("opening hours are local wall times: pass naive time objects")
        if self.capacity < 0:
            raise ValueError("capacity must be >= 0")


@dataclass(frozen=True)
class CapacityTemplate:
    """Weekly capacity of one resource in its site's local time.

    ``weekly`` maps ``date.weekday()`` (0 = Monday) to opening periods. ``slot_length`` cuts
    each period into whole slots counted in wall-clock time from the period start (a trailing
    remainder shorter than a slot is dropped); None makes each period one window (a
    manufacturing start slot, an infusion day). ``closures`` are inclusive local date ranges;
    closures and ``holidays`` remove every window that STARTS on those local dates.
    """

    resource: Resource
    weekly: Mapping[int, Sequence[OpeningHours]]
    slot_length: timedelta | None = None
    closures: Sequence[tuple[date, date]] = ()
    holidays: frozenset[date] = field(default_factory=frozenset)

    def __post_init__(self) -> None:
        if any(day not in range(7) for day in self.weekly):
            raise ValueError("weekly keys are weekdays 0 (Monday) .. 6 (Sunday)")
        if self.slot_length is not None and self.slot_length <= timedelta(0):
            raise ValueError("slot_length must be positive")
        if any(first > last for first, last in self.closures):
            raise ValueError("closure ranges must have start <= end")

    def is_open_on(self, day: date) -> bool:
        """Return False when ``day`` is a holiday or inside a closure."""
        if day in self.holidays:
            return False
        return not any(first <= day <= last for first, last in self.closures)


@dataclass(frozen=True)
class CapacityWindow:
    """``capacity`` units of ``resource_id`` during the UTC interval [start, end)."""

    resource_id: str
    start: datetime
    end: datetime
    capacity: int

    def __post_init__(self) -> None:
        object.__setattr__(self, "start", require_utc(self.start, "window start"))
        object.__setattr__(self, "end", require_utc(self.end, "window end"))
        if self.end <= self.start:
            raise ValueError("window end must be after its start")
        if self.capacity < 0:
            raise ValueError("capacity must be >= 0")


@dataclass(frozen=True)
class Booking:
    """``units`` of ``resource_id`` held during the UTC interval [start, end)."""

    resource_id: str
    start: datetime
    end: datetime
    units: int = 1

    def __post_init__(self) -> None:
        object.__setattr__(self, "start", require_utc(self.start, "booking start"))
        object.__setattr__(self, "end", require_utc(self.end, "booking end"))
        if self.end <= self.start:
            raise ValueError("booking end must be after its start")
        if self.units < 1:
            raise ValueError("booking units must be >= 1")


def expand_capacity(
    template: CapacityTemplate, tz: str, start_utc: datetime, end_utc: datetime
) -> list[CapacityWindow]:
    """Return the template's windows that overlap [start_utc, end_utc), whole and sorted."""
    start_utc = require_utc(start_utc, "start_utc")
    end_utc = require_utc(end_utc, "end_utc")
    site_zone = zone(tz)
    windows: list[CapacityWindow] = []
    # Start a day early: a period that wraps past midnight belongs to the day it starts on.
    day = start_utc.astimezone(site_zone).date() - ONE_DAY
    last_day = end_utc.astimezone(site_zone).date()
    while day <= last_day:
        if template.is_open_on(day):
            for opening in template.weekly.get(day.weekday(), ()):
                slots = _wall_slots(day, opening, template.slot_length, site_zone)
                for wall_start, wall_end in slots:
                    start, end = _resolve(wall_start), _resolve(wall_end)
                    if end <= start or end <= start_utc or start >= end_utc:
                        continue
                    windows.append(
                        CapacityWindow(template.resource.id, start, end, opening.capacity)
                    )
        day += ONE_DAY
    windows.sort(key=window_order)
    return windows


def window_order(window: CapacityWindow) -> tuple[datetime, datetime, str]:
    """Sort key for windows: start, end, resource id."""
    return window.start, window.end, window.resource_id


def _wall_slots(
    day: date, opening: OpeningHours, slot_length: timedelta | None, site_zone: ZoneInfo
) -> list[tuple[datetime, datetime]]:
    # Aware datetimes sharing one tzinfo add and compare in wall-clock time, which is what a
    # local opening-hours template means; _resolve maps each boundary to UTC afterwards.
    period_start = datetime.combine(day, opening.start, tzinfo=site_zone)
    period_end = datetime.combine(day, opening.end, tzinfo=site_zone)
    if opening.end <= opening.start:
        period_end += ONE_DAY
    if slot_length is None:
        return [(period_start, period_end)]
    slots: list[tuple[datetime, datetime]] = []
    cursor = period_start
    while cursor + slot_length <= period_end:
        slots.append((cursor, cursor + slot_length))
        cursor += slot_length
    return slots


# ---------------------------------------------------------------------------------------------
# Booking checks


class _Span(Protocol):
    @property
    def resource_id(self) -> str: ...
    @property
    def start(self) -> datetime: ...
    @property
    def end(self) -> datetime: ...


SpanT = TypeVar("SpanT", bound=_Span)


class SpanIndex(Generic[SpanT]):
    """Spans of ONE resource sorted by start; overlap queries by bisect in O(log n + k)."""

    def __init__(self, spans: Iterable[SpanT]) -> None:
        self.items: list[SpanT] = sorted(spans, key=lambda s: (s.start, s.end))
        self.starts: list[datetime] = [s.start for s in self.items]
        self.max_length = max((s.end - s.start for s in self.items), default=timedelta(0))

    def overlapping_indices(self, start: datetime, end: datetime) -> range:
        """Return the index range that can overlap [start, end); filter with ``.end > start``."""
        # A span overlapping [start, end) starts before ``end`` and, being at most max_length
        # long, after ``start - max_length``.
        low = bisect_right(self.starts, start - self.max_length)
        high = bisect_left(self.starts, end)
        return range(low, max(low, high))

    def overlapping(self, start: datetime, end: datetime) -> list[SpanT]:
        """Return the spans overlapping the half-open interval [start, end), sorted by start."""
        spans = (self.items[i] for i in self.overlapping_indices(start, end))
        return [s for s in spans if s.end > start]


def index_by_resource(spans: Iterable[SpanT]) -> dict[str, SpanIndex[SpanT]]:
    """Group spans by resource id into SpanIndex objects."""
    groups: dict[str, list[SpanT]] = {}
    for span in spans:
        groups.setdefault(span.resource_id, []).append(span)
    return {rid: SpanIndex(items) for rid, items in groups.items()}


@dataclass(frozen=True)
class Fit:
    """Outcome of a booking check; truthy when the booking fits.

    ``code`` is None when it fits, else ``"closed"`` (some of the booking is covered by no
    window) or ``"full"`` (``window`` would exceed its capacity).
    """

    ok: bool
    code: str | None = None
    message: str = ""
    window: CapacityWindow | None = None

    def __bool__(self) -> bool:
        return self.ok


FITS = Fit(ok=True)


def check_against(
    overlapping: Sequence[CapacityWindow], used: Sequence[int], booking: Booking
) -> Fit:
    """Judge ``booking`` against the windows it overlaps (sorted by start) and their used units.

    Order: coverage first (fail closed), then every window's capacity (strictest wins).
    """
    cursor = booking.start
    for window in overlapping:
        if window.start > cursor:
            break
        cursor = max(cursor, window.end)
        if cursor >= booking.end:
            break
    if cursor < booking.end:
        return Fit(
            ok=False,
            code="closed",
            message=f"{booking.resource_id} has no capacity window at {cursor.isoformat()}",
        )
    for window, units_used in zip(overlapping, used, strict=True):
        if units_used + booking.units > window.capacity:
            return Fit(
                ok=False,
                code="full",
                message=(
                    f"{booking.resource_id} window {window.start.isoformat()}.."
                    f"{window.end.isoformat()} holds {units_used}/{window.capacity} units"
                ),
                window=window,
            )
    return FITS


def fits(
    windows: Iterable[CapacityWindow],
    existing_bookings: Iterable[Booking],
    new_booking: Booking,
) -> Fit:
    """Check whether ``new_booking`` fits under every overlapping window of its resource."""
    rid = new_booking.resource_id
    own_windows = SpanIndex(w for w in windows if w.resource_id == rid)
    own_bookings = SpanIndex(b for b in existing_bookings if b.resource_id == rid)
    overlapping = own_windows.overlapping(new_booking.start, new_booking.end)
    used = [sum(b.units for b in own_bookings.overlapping(w.start, w.end)) for w in overlapping]
    return check_against(overlapping, used, new_booking)


@dataclass(frozen=True)
class WindowUsage:
    """Usage of one window.

    ``remaining`` is capacity minus the units of bookings overlapping the window (negative if
    overbooked). ``bookable`` is what a booking spanning exactly this window could still take:
    the smallest ``remaining`` among the windows of the resource that overlap it, floored at 0.
    """

    window: CapacityWindow
    used: int
    remaining: int
    bookable: int


def remaining(windows: Sequence[CapacityWindow], bookings: Iterable[Booking]) -> list[WindowUsage]:
    """Return the usage of each window, in the order given."""
    booking_index = index_by_resource(bookings)
    window_index = index_by_resource(windows)
    left: dict[CapacityWindow, int] = {}
    used_by: dict[CapacityWindow, int] = {}
    for window in windows:
        own = booking_index.get(window.resource_id)
        used = sum(b.units for b in own.overlapping(window.start, window.end)) if own else 0
        used_by[window] = used
        left[window] = window.capacity - used
    usages: list[WindowUsage] = []
    for window in windows:
        neighbours = window_index[window.resource_id].overlapping(window.start, window.end)
        bookable = max(0, min(left[n] for n in neighbours))
        usages.append(WindowUsage(window, used_by[window], left[window], bookable))
    return usages


@dataclass(frozen=True)
class DayUtilisation:
    """Capacity and used units of the windows of one resource starting on one local day."""

    resource_id: str
    day: date
    capacity: int
    used: int

    @property
    def ratio(self) -> float:
        """Used / capacity; 0.0 for a day without capacity or use, inf when overbooked."""
        if self.capacity == 0:
            return 0.0 if self.used == 0 else float("inf")
        return self.used / self.capacity


def utilisation_by_local_day(
    windows: Sequence[CapacityWindow], bookings: Iterable[Booking], tz: str
) -> list[DayUtilisation]:
    """Sum capacity and use per resource and local day (a window counts on its start day)."""
    totals: dict[tuple[str, date], tuple[int, int]] = {}
    for usage in remaining(windows, bookings):
        key = (usage.window.resource_id, local_date(usage.window.start, tz))
        capacity, used = totals.get(key, (0, 0))
        totals[key] = (capacity + usage.window.capacity, used + usage.used)
    return [
        DayUtilisation(rid, day, capacity, used)
        for (rid, day), (capacity, used) in sorted(totals.items())
    ]
