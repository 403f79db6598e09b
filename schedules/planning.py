"""Journey planning: the earliest feasible vein-to-vein chain across sites, the knock-on effects
of moving one step, and a transparent waitlist priority score.

Pure module: standard library, zoneinfo and ``schedules.slots`` only. Datetimes are aware UTC;
day steps (lymphodepletion, infusion, second dose) use local days of the treatment site.

Rules ``propose_plan`` applies, in chain order (every number comes from ``JourneyProfile``):

1. collection: a free apheresis-chair window at the collection site starting at or after
   max(earliest_collection, now).
2. cryopreservation (cryopreserved path only): collection end + ``cryopreservation_hours``.
3. outbound_shipping: leaves when the material is ready, arrives ``transit`` hours later.
4. manufacturing: the first free slot for the product whose window starts at or after arrival.
   Fresh apheresis must also start within ``fresh_stability_hours`` of collection end; when it
   cannot, the next collection window is tried (so a later collection can reach a free slot).
5. release_testing: manufacturing end + ``release_testing_days``.
6. return_shipping: release end + ``return_shipping_days`` (arrival at the treatment site).
7. lymphodepletion: day ``ld_start_day`` (e.g. -5) relative to infusion day 0, for
   ``ld_regimen_days``; it starts on a local day beginning at or after release, because product
   availability is confirmed before LD starts.
8. infusion: a free bed window starting at or after arrival, on day 0.
9. second_dose (split dose): a free bed on day ``second_dose_day`` (first dose = day 1), else the
   closest day within the tolerance (earlier on ties); if none, the next infusion day is tried.

Hours and days of the profile are elapsed time (a day is 24 h, even across a DST change).
Any step later than its theoretical earliest (given its predecessors) gets an Explanation.
Couriers are a resource kind in ``slots`` but transit is planned as a duration here, and LD days
need no capacity.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Iterable
from collections.abc import Iterator
from collections.abc import Mapping
from collections.abc import Sequence
from dataclasses import dataclass
from dataclasses import field
from datetime import date
from datetime import datetime
from datetime import timedelta
from enum import StrEnum
from types import MappingProxyType
from typing import Protocol

from schedules.slots import FITS
from schedules.slots import ONE_DAY
from schedules.slots import Booking
from schedules.slots import CapacityTemplate
from schedules.slots import CapacityWindow
from schedules.slots import Fit
from schedules.slots import Resource
from schedules.slots import ResourceKind
from schedules.slots import SpanIndex
from schedules.slots import check_against
from schedules.slots import expand_capacity
from schedules.slots import first_day_starting_at_or_after
from schedules.slots import local_date
from schedules.slots import local_day_bounds
from schedules.slots import require_utc
from schedules.slots import shift_local_days
from schedules.slots import window_order
from schedules.slots import zone

# ---------------------------------------------------------------------------------------------
# Product profile


class ApheresisMode(StrEnum):
    fresh = "fresh"
    cryopreserved = "cryopreserved"


class StepKind(StrEnum):
    collection = "collection"
    cryopreservation = "cryopreservation"
    outbound_shipping = "outbound_shipping"
    manufacturing = "manufacturing"
    release_testing = "release_testing"
    return_shipping = "return_shipping"
    lymphodepletion = "lymphodepletion"
    infusion = "infusion"
    second_dose = "second_dose"


STEP_ORDER: tuple[StepKind, ...] = tuple(StepKind)
DAY_STEPS = frozenset({StepKind.lymphodepletion, StepKind.infusion, StepKind.second_dose})


@dataclass(frozen=True)
class SplitDose:
    """Second dose on ``second_dose_day`` +- ``tolerance_days``; the first dose is day 1."""

    second_dose_day: int = 10  # default to confirm (obe-cel label: Day 1 and Day 10 +- 2)
    tolerance_days: int = 2  # default to confirm

    def __post_init__(self) -> None:
        if self.tolerance_days < 0 or self.second_dose_day - self.tolerance_days < 2:
            raise ValueError("the second dose must fall after day 1 for every tolerated day")


# Fields whose defaults are placeholders: confirm each against the product's current label
# (DOMAIN.md section 4) before a profile is used for patients.
DEFAULTS_TO_CONFIRM: tuple[str, ...] = (
    "fresh_stability_hours",
    "transit_to_manufacturing_hours",
    "cryopreservation_hours",
    "manufacturing_days",
    "release_testing_days",
    "return_shipping_days",
    "ld_start_day",
    "ld_regimen_days",
    "infusion_window_after_ld_days",
    "re_ld_after_delay_days",
    "split_dose",
)


@dataclass(frozen=True)
class JourneyProfile:
    """Versioned product-profile data for planning; every default is a default to confirm.

    ``infusion_window_after_ld_days`` counts days from the LAST LD day to the infusion day.
    ``re_ld_after_delay_days``: infusion later than planned day 0 by more than this -> repeat LD.
    """

    product: str = "generic-car-t"
    version: str = "defaults-to-confirm"
    apheresis: ApheresisMode = ApheresisMode.fresh
    fresh_stability_hours: int = 72  # default to confirm
    transit_to_manufacturing_hours: int = 24  # default to confirm
    cryopreservation_hours: int = 24  # default to confirm (cryopreserved path only)
    manufacturing_days: int = 9  # default to confirm (2-3 rapid .. 9-12)
    release_testing_days: int = 14  # default to confirm (14-day culture vs 3-day rapid)
    return_shipping_days: int = 2  # default to confirm
    ld_start_day: int = -5  # default to confirm (LD on days -5, -4, -3)
    ld_regimen_days: int = 3  # default to confirm
    infusion_window_after_ld_days: tuple[int, int] = (2, 7)  # default to confirm
    re_ld_after_delay_days: int | None = 14  # default to confirm
    split_dose: SplitDose | None = None  # default to confirm

    def __post_init__(self) -> None:
        if not self.product or not self.version:
            raise ValueError("profile product and version must not be empty")
        counts = (
            self.fresh_stability_hours,
            self.transit_to_manufacturing_hours,
            self.cryopreservation_hours,
            self.release_testing_days,
            self.return_shipping_days,
        )
        if min(counts) < 0 or self.manufacturing_days < 1 or self.ld_regimen_days < 1:
            raise ValueError("profile durations must be >= 0 (manufacturing and LD >= 1 day)")
        low, high = self.infusion_window_after_ld_days
        if not 1 <= low <= high:
            raise ValueError("infusion window after LD must satisfy 1 <= min <= max")
        if self.ld_start_day >= 0 or not low <= self.infusion_gap_days <= high:
            raise ValueError("planned day 0 must fall inside the infusion window after LD")
        if self.re_ld_after_delay_days is not None and self.re_ld_after_delay_days < 0:
            raise ValueError("re_ld_after_delay_days must be >= 0")

    @property
    def ld_lead_days(self) -> int:
        """Days from LD start to infusion day 0."""
        return -self.ld_start_day

    @property
    def infusion_gap_days(self) -> int:
        """Days from the last LD day to the planned infusion day 0."""
        return self.ld_lead_days - (self.ld_regimen_days - 1)


# ---------------------------------------------------------------------------------------------
# Capacity view


@dataclass(frozen=True)
class FreeWindow:
    """A capacity window with what a booking spanning exactly it could still take."""

    resource_id: str
    start: datetime
    end: datetime
    capacity: int
    free: int

    def booking(self, units: int = 1) -> Booking:
        """Return a booking of ``units`` spanning this window."""
        return Booking(self.resource_id, self.start, self.end, units)


class CapacityView(Protocol):
    """Free capacity per resource kind and site over time (in memory here, SQL later)."""

    def zone(self, site: str) -> str:
        """Return the IANA zone of ``site``."""
        ...

    def free_windows(
        self,
        kind: ResourceKind,
        site: str,
        *,
        not_before: datetime,
        until: datetime,
        product: str | None = None,
        units: int = 1,
    ) -> Iterator[FreeWindow]:
        """Yield windows starting in [not_before, until) with free >= units, by start."""
        ...

    def windows(
        self,
        kind: ResourceKind,
        site: str,
        *,
        start: datetime,
        end: datetime,
        product: str | None = None,
    ) -> Sequence[FreeWindow]:
        """Return every window (full ones too) starting in [start, end), by start."""
        ...

    def fits_together(self, bookings: Sequence[Booking]) -> Fit:
        """Check that all ``bookings`` fit at once on top of the existing ones."""
        ...


class _ResourceState:
    """Windows of one resource, sorted, with the units used in each."""

    def __init__(self, resource: Resource, windows: Iterable[CapacityWindow]) -> None:
        self.resource = resource
        self.index = SpanIndex(windows)
        self.used = [0] * len(self.index.items)

    def overlapping(self, start: datetime, end: datetime) -> list[int]:
        items = self.index.items
        return [i for i in self.index.overlapping_indices(start, end) if items[i].end > start]

    def free(self, i: int) -> int:
        # Strictest wins: a booking spanning window i overlaps every window overlapping it.
        window = self.index.items[i]
        items = self.index.items
        left = min(
            items[j].capacity - self.used[j] for j in self.overlapping(window.start, window.end)
        )
        return max(0, left)

    def free_window(self, i: int) -> FreeWindow:
        w = self.index.items[i]
        return FreeWindow(w.resource_id, w.start, w.end, w.capacity, self.free(i))


class _Pool:
    """All windows of one (kind, site, product) query, merged by start, with skip pointers.

    Bookings only ever add, so a full window stays full: ``skip`` is a union-find "next
    candidate" array that jumps over known-full windows in near-constant amortised time.
    """

    def __init__(self, states: Sequence[_ResourceState]) -> None:
        entries = [(s, i) for s in states for i in range(len(s.index.items))]
        entries.sort(key=lambda e: window_order(e[0].index.items[e[1]]))
        self.entries = entries
        self.starts = [s.index.items[i].start for s, i in entries]
        self.skip = list(range(len(entries) + 1))

    def find(self, i: int) -> int:
        root = i
        while self.skip[root] != root:
            root = self.skip[root]
        while self.skip[i] != root:
            self.skip[i], i = root, self.skip[i]
        return root


class InMemoryCapacity:
    """CapacityView over windows held in memory; bookings accumulate (no cancellation)."""

    def __init__(
        self,
        *,
        resources: Iterable[Resource],
        windows: Iterable[CapacityWindow],
        zones: Mapping[str, str],
        bookings: Iterable[Booking] = (),
    ) -> None:
        grouped: dict[str, tuple[Resource, list[CapacityWindow]]] = {}
        for resource in resources:
            if resource.id in grouped:
                raise ValueError(f"duplicate resource id {resource.id!r}")
            zone(zones[resource.site])  # every site needs a valid zone
            grouped[resource.id] = (resource, [])
        for window in windows:
            if window.resource_id not in grouped:
                raise ValueError(f"window for unknown resource {window.resource_id!r}")
            grouped[window.resource_id][1].append(window)
        self._states = {rid: _ResourceState(r, ws) for rid, (r, ws) in grouped.items()}
        self._zones = dict(zones)
        self._pools: dict[tuple[ResourceKind, str, str | None], _Pool] = {}
        self._bookings: list[Booking] = []
        for booking in bookings:
            self._record(booking)  # existing facts: recorded even when already overbooked

    @classmethod
    def from_templates(
        cls,
        templates: Iterable[CapacityTemplate],
        *,
        zones: Mapping[str, str],
        start: datetime,
        end: datetime,
        bookings: Iterable[Booking] = (),
    ) -> InMemoryCapacity:
        """Expand each template in its site's zone over [start, end)."""
        templates = list(templates)
        windows = [
            window
            for t in templates
            for window in expand_capacity(t, zones[t.resource.site], start, end)
        ]
        return cls(
            resources=[t.resource for t in templates],
            windows=windows,
            zones=zones,
            bookings=bookings,
        )

    @property
    def all_windows(self) -> list[CapacityWindow]:
        """Every window of every resource."""
        return [w for state in self._states.values() for w in state.index.items]

    @property
    def bookings(self) -> list[Booking]:
        """Every booking recorded so far."""
        return list(self._bookings)

    def zone(self, site: str) -> str:
        """Return the IANA zone of ``site``."""
        return self._zones[site]

    def _pool(self, kind: ResourceKind, site: str, product: str | None) -> _Pool:
        key = (kind, site, product)
        pool = self._pools.get(key)
        if pool is None:
            states = [
                s
                for s in self._states.values()
                if s.resource.kind is kind
                and s.resource.site == site
                and s.resource.product in (None, product)
            ]
            pool = self._pools[key] = _Pool(states)
        return pool

    def free_windows(
        self,
        kind: ResourceKind,
        site: str,
        *,
        not_before: datetime,
        until: datetime,
        product: str | None = None,
        units: int = 1,
    ) -> Iterator[FreeWindow]:
        """Yield windows starting in [not_before, until) with free >= units, by start."""
        not_before = require_utc(not_before, "not_before")
        until = require_utc(until, "until")
        pool = self._pool(kind, site, product)
        i = bisect_left(pool.starts, not_before)
        while True:
            i = pool.find(i)
            if i >= len(pool.entries) or pool.starts[i] >= until:
                return
            state, j = pool.entries[i]
            free = state.free(j)
            if free == 0:
                pool.skip[i] = i + 1
            elif free >= units:
                yield state.free_window(j)
            i += 1

    def windows(
        self,
        kind: ResourceKind,
        site: str,
        *,
        start: datetime,
        end: datetime,
        product: str | None = None,
    ) -> list[FreeWindow]:
        """Return every window (full ones too) starting in [start, end), by start."""
        pool = self._pool(kind, site, product)
        low = bisect_left(pool.starts, require_utc(start, "start"))
        high = bisect_left(pool.starts, require_utc(end, "end"))
        return [state.free_window(j) for state, j in pool.entries[low:high]]

    def fits_together(self, bookings: Sequence[Booking]) -> Fit:
        """Check that all ``bookings`` fit at once on top of the existing ones."""
        pending: dict[tuple[str, int], int] = {}
        for booking in bookings:
            state = self._states.get(booking.resource_id)
            if state is None:
                return Fit(False, "closed", f"unknown resource {booking.resource_id!r}")
            indices = state.overlapping(booking.start, booking.end)
            used = [state.used[j] + pending.get((booking.resource_id, j), 0) for j in indices]
            fit = check_against([state.index.items[j] for j in indices], used, booking)
            if not fit:
                return fit
            for j in indices:
                key = (booking.resource_id, j)
                pending[key] = pending.get(key, 0) + booking.units
        return FITS

    def book(self, bookings: Sequence[Booking]) -> None:
        """Record ``bookings`` atomically; ValueError (nothing recorded) if they do not fit."""
        fit = self.fits_together(bookings)
        if not fit:
            raise ValueError(f"booking refused ({fit.code}): {fit.message}")
        for booking in bookings:
            self._record(booking)

    def _record(self, booking: Booking) -> None:
        state = self._states.get(booking.resource_id)
        if state is None:
            raise ValueError(f"booking for unknown resource {booking.resource_id!r}")
        for j in state.overlapping(booking.start, booking.end):
            state.used[j] += booking.units
        self._bookings.append(booking)


# ---------------------------------------------------------------------------------------------
# Plans


class PlanningError(Exception):
    """No feasible plan; ``code`` is stable, ``message`` says why in words."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message


@dataclass(frozen=True)
class JourneySites:
    """The sites one patient's journey involves (opaque site ids)."""

    collection: str
    manufacturing: str
    treatment: str


@dataclass(frozen=True)
class PlanStep:
    """One step; shipping steps belong to the sending site. ``booking`` holds capacity."""

    kind: StepKind
    site: str
    tz: str
    start: datetime
    end: datetime
    deadline: datetime | None = None
    booking: Booking | None = None

    @property
    def resource_id(self) -> str | None:
        """The booked resource, if the step holds capacity."""
        return None if self.booking is None else self.booking.resource_id

    @property
    def local_day(self) -> date:
        """The local date the step starts on at its site."""
        return local_date(self.start, self.tz)


@dataclass(frozen=True)
class Explanation:
    """Why ``step`` starts at ``chosen`` rather than its theoretical ``earliest``."""

    step: StepKind
    earliest: datetime
    chosen: datetime
    message: str


@dataclass(frozen=True)
class Plan:
    """A proposed journey; nothing is booked until the caller books ``bookings()``."""

    product: str
    profile_version: str
    sites: JourneySites
    steps: tuple[PlanStep, ...]
    explanations: tuple[Explanation, ...]
    created_at: datetime

    def step(self, kind: StepKind) -> PlanStep:
        """Return the step of ``kind``; KeyError if the plan has none."""
        for step in self.steps:
            if step.kind is kind:
                return step
        raise KeyError(kind)

    def has_step(self, kind: StepKind) -> bool:
        """Whether the plan has a step of ``kind``."""
        return any(step.kind is kind for step in self.steps)

    def bookings(self) -> list[Booking]:
        """The capacity this plan needs, in step order."""
        return [step.booking for step in self.steps if step.booking is not None]


_LABELS = {
    ResourceKind.apheresis_chair: "apheresis chairs",
    ResourceKind.manufacturing_slot: "manufacturing slots",
    ResourceKind.infusion_bed: "infusion beds",
    ResourceKind.courier: "couriers",
}
_WEEKDAYS = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")
_MAX_SEGMENTS = 8
_EXPLAIN_DAYS = 62


def _hours(n: int) -> timedelta:
    return timedelta(hours=n)


def _fmt_local(instant: datetime, tz: str) -> str:
    return f"{instant.astimezone(zone(tz)):%Y-%m-%d %H:%M} {tz}"


def _day_range(first: date, last: date) -> str:
    return first.isoformat() if first == last else f"{first.isoformat()}..{last.isoformat()}"


def _segment_text(reason: str, first: date, last: date) -> str:
    if reason == "closed":
        names = ""
        if first == last:
            names = f" ({_WEEKDAYS[first.weekday()]})"
        elif (last - first).days < 7:
            names = f" ({_WEEKDAYS[first.weekday()]}-{_WEEKDAYS[last.weekday()]})"
        return f"closed on {_day_range(first, last)}{names}"
    if reason.startswith("rejected:"):
        return f"{_day_range(first, last)} {reason}"
    return f"{reason} on {_day_range(first, last)}"


@dataclass(frozen=True)
class _SecondDose:
    window: FreeWindow | None
    target: date
    tried: tuple[tuple[date, str], ...]


class _Planner:
    def __init__(
        self,
        profile: JourneyProfile,
        sites: JourneySites,
        capacity: CapacityView,
        horizon: timedelta,
    ) -> None:
        self.profile = profile
        self.sites = sites
        self.capacity = capacity
        self.horizon = horizon
        self.tz_collection = capacity.zone(sites.collection)
        self.tz_manufacturing = capacity.zone(sites.manufacturing)
        self.tz_treatment = capacity.zone(sites.treatment)
        self.explanations: list[Explanation] = []

    def plan(self, earliest: datetime, now: datetime) -> Plan:
        p, sites = self.profile, self.sites
        fresh = p.apheresis is ApheresisMode.fresh
        collection, manufacturing, rejected = self._collection_and_manufacturing(earliest)
        self._explain(
            StepKind.collection,
            ResourceKind.apheresis_chair,
            sites.collection,
            self.tz_collection,
            earliest,
            collection,
            rejected,
        )
        steps = [
            PlanStep(
                StepKind.collection,
                sites.collection,
                self.tz_collection,
                collection.start,
                collection.end,
                booking=collection.booking(),
            )
        ]
        ready = collection.end
        if not fresh:
            cryo_end = ready + _hours(p.cryopreservation_hours)
            steps.append(
                PlanStep(
                    StepKind.cryopreservation,
                    sites.collection,
                    self.tz_collection,
                    ready,
                    cryo_end,
                )
            )
            ready = cryo_end
        transit = _hours(p.transit_to_manufacturing_hours)
        arrival = ready + transit
        stable_until = collection.end + _hours(p.fresh_stability_hours) if fresh else None
        steps.append(
            PlanStep(
                StepKind.outbound_shipping,
                sites.collection,
                self.tz_collection,
                ready,
                arrival,
                deadline=None if stable_until is None else stable_until - transit,
            )
        )
        manufacturing_end = manufacturing.start + timedelta(days=p.manufacturing_days)
        steps.append(
            PlanStep(
                StepKind.manufacturing,
                sites.manufacturing,
                self.tz_manufacturing,
                manufacturing.start,
                manufacturing_end,
                deadline=stable_until,
                booking=manufacturing.booking(),
            )
        )
        self._explain(
            StepKind.manufacturing,
            ResourceKind.manufacturing_slot,
            sites.manufacturing,
            self.tz_manufacturing,
            arrival,
            manufacturing,
            {},
        )
        release_end = manufacturing_end + timedelta(days=p.release_testing_days)
        delivered = release_end + timedelta(days=p.return_shipping_days)
        steps.append(
            PlanStep(
                StepKind.release_testing,
                sites.manufacturing,
                self.tz_manufacturing,
                manufacturing_end,
                release_end,
            )
        )
        steps.append(
            PlanStep(
                StepKind.return_shipping,
                sites.manufacturing,
                self.tz_manufacturing,
                release_end,
                delivered,
            )
        )
        steps.extend(self._treatment_steps(release_end, delivered))
        return Plan(
            product=p.product,
            profile_version=p.version,
            sites=sites,
            steps=tuple(steps),
            explanations=tuple(self.explanations),
            created_at=now,
        )

    def _collection_and_manufacturing(
        self, earliest: datetime
    ) -> tuple[FreeWindow, FreeWindow, dict[date, str]]:
        p, sites = self.profile, self.sites
        fresh = p.apheresis is ApheresisMode.fresh
        transit = _hours(p.transit_to_manufacturing_hours)
        stability = _hours(p.fresh_stability_hours)
        preparation = timedelta(0) if fresh else _hours(p.cryopreservation_hours)
        if fresh and transit > stability:
            raise PlanningError(
                "stability_shorter_than_transit",
                f"fresh apheresis is stable {p.fresh_stability_hours} h but transit to site "
                f"{sites.manufacturing} takes {p.transit_to_manufacturing_hours} h "
                f"(profile {p.product} {p.version})",
            )
        reason = (
            f"rejected: no manufacturing slot at site {sites.manufacturing} within the "
            f"{p.fresh_stability_hours} h fresh stability window"
        )
        rejected: dict[date, str] = {}
        # (collection end, first free manufacturing start) of the last rejected collection: a
        # collection ending no earlier arrives no earlier, so it cannot reach an earlier slot.
        blocked: tuple[datetime, datetime] | None = None
        until = earliest + self.horizon
        for window in self.capacity.free_windows(
            ResourceKind.apheresis_chair, sites.collection, not_before=earliest, until=until
        ):
            latest = window.end + stability
            if fresh and blocked and window.end >= blocked[0] and latest < blocked[1]:
                rejected.setdefault(local_date(window.start, self.tz_collection), reason)
                continue
            arrival = window.end + preparation + transit
            manufacturing = next(
                self.capacity.free_windows(
                    ResourceKind.manufacturing_slot,
                    sites.manufacturing,
                    not_before=arrival,
                    until=arrival + self.horizon,
                    product=p.product,
                ),
                None,
            )
            if manufacturing is None:
                raise PlanningError(
                    "no_manufacturing_capacity",
                    f"no free manufacturing slot for {p.product} at site {sites.manufacturing} "
                    f"within {self.horizon.days} days after "
                    f"{_fmt_local(arrival, self.tz_manufacturing)}",
                )
            if not fresh or manufacturing.start <= latest:
                return window, manufacturing, rejected
            blocked = (window.end, manufacturing.start)
            rejected.setdefault(local_date(window.start, self.tz_collection), reason)
        span = (
            f"between {_fmt_local(earliest, self.tz_collection)} and "
            f"{_fmt_local(until, self.tz_collection)}"
        )
        if rejected:
            raise PlanningError(
                "fresh_stability_unreachable",
                f"no free apheresis slot at site {sites.collection} {span} is followed by a free "
                f"manufacturing slot at site {sites.manufacturing} within the "
                f"{p.fresh_stability_hours} h fresh stability window "
                f"({p.transit_to_manufacturing_hours} h transit)",
            )
        raise PlanningError(
            "no_collection_capacity", f"no free apheresis chair at site {sites.collection} {span}"
        )

    def _treatment_steps(self, release_end: datetime, delivered: datetime) -> list[PlanStep]:
        p, site, tz = self.profile, self.sites.treatment, self.tz_treatment
        release_day = first_day_starting_at_or_after(release_end, tz)
        day0_start, _ = local_day_bounds(release_day + timedelta(days=p.ld_lead_days), tz)
        earliest = max(delivered, day0_start)
        rejected: dict[date, str] = {}
        chosen: tuple[FreeWindow, _SecondDose | None] | None = None
        for window in self.capacity.free_windows(
            ResourceKind.infusion_bed, site, not_before=earliest, until=earliest + self.horizon
        ):
            if p.split_dose is None:
                chosen = (window, None)
                break
            candidate = self._second_dose(p.split_dose, window)
            if candidate.window is not None:
                chosen = (window, candidate)
                break
            rejected.setdefault(
                local_date(window.start, tz),
                f"rejected: no bed for the second dose on day {p.split_dose.second_dose_day} "
                f"+- {p.split_dose.tolerance_days}",
            )
        if chosen is None:
            raise PlanningError(
                "no_infusion_capacity",
                f"no free infusion bed at site {site} within {self.horizon.days} days after "
                f"{_fmt_local(earliest, tz)}"
                + (" that also leaves a bed for the second dose" if rejected else ""),
            )
        infusion, second = chosen
        self._explain(
            StepKind.infusion, ResourceKind.infusion_bed, site, tz, earliest, infusion, rejected
        )
        day0 = local_date(infusion.start, tz)
        ld_first = day0 - timedelta(days=p.ld_lead_days)
        ld_last = ld_first + timedelta(days=p.ld_regimen_days - 1)
        low, high = p.infusion_window_after_ld_days
        steps = [
            PlanStep(
                StepKind.lymphodepletion,
                site,
                tz,
                local_day_bounds(ld_first, tz)[0],
                local_day_bounds(ld_last, tz)[1],
            ),
            PlanStep(
                StepKind.infusion,
                site,
                tz,
                infusion.start,
                infusion.end,
                deadline=local_day_bounds(ld_last + timedelta(days=high), tz)[1],
                booking=infusion.booking(),
            ),
        ]
        if second is not None and second.window is not None and p.split_dose is not None:
            last_day = second.target + timedelta(days=p.split_dose.tolerance_days)
            steps.append(
                PlanStep(
                    StepKind.second_dose,
                    site,
                    tz,
                    second.window.start,
                    second.window.end,
                    deadline=local_day_bounds(last_day, tz)[1],
                    booking=second.window.booking(),
                )
            )
            self._explain_second_dose(second, day0)
        return steps

    def _second_dose(self, split: SplitDose, first: FreeWindow) -> _SecondDose:
        tz, site = self.tz_treatment, self.sites.treatment
        target = local_date(first.start, tz) + timedelta(days=split.second_dose_day - 1)
        offsets = [0]
        for k in range(1, split.tolerance_days + 1):
            offsets += [-k, k]
        tried: list[tuple[date, str]] = []
        for offset in offsets:
            day = target + timedelta(days=offset)
            start, end = local_day_bounds(day, tz)
            conflict = False
            for window in self.capacity.free_windows(
                ResourceKind.infusion_bed, site, not_before=max(start, first.end), until=end
            ):
                if self.capacity.fits_together([first.booking(), window.booking()]):
                    return _SecondDose(window, target, tuple(tried))
                conflict = True
            if conflict:
                tried.append((day, "shares its capacity with the first dose"))
            elif self.capacity.windows(ResourceKind.infusion_bed, site, start=start, end=end):
                tried.append((day, "full"))
            else:
                tried.append((day, f"closed ({_WEEKDAYS[day.weekday()]})"))
        return _SecondDose(None, target, tuple(tried))

    def _explain_second_dose(self, second: _SecondDose, day0: date) -> None:
        if not second.tried or second.window is None:
            return
        tz = self.tz_treatment

        def day_number(day: date) -> int:
            return (day - day0).days + 1

        tried = "; ".join(f"day {day_number(d)} ({d.isoformat()}) {why}" for d, why in second.tried)
        chosen_day = local_date(second.window.start, tz)
        target_start, _ = local_day_bounds(second.target, tz)
        self.explanations.append(
            Explanation(
                StepKind.second_dose,
                target_start,
                second.window.start,
                f"second dose: infusion beds at site {self.sites.treatment}: {tried}; "
                f"scheduled on day {day_number(chosen_day)} ({chosen_day.isoformat()}), "
                f"first free {_fmt_local(second.window.start, tz)}",
            )
        )

    def _explain(
        self,
        step: StepKind,
        kind: ResourceKind,
        site: str,
        tz: str,
        earliest: datetime,
        chosen: FreeWindow,
        rejected: Mapping[date, str],
    ) -> None:
        """Explain, day by day, why ``chosen`` starts later than ``earliest`` (if it does).

        The search yielded every window with room, so a window between ``earliest`` and
        ``chosen`` was either full or rejected (``rejected`` says why, per local day). The
        scan stops after _MAX_SEGMENTS periods or _EXPLAIN_DAYS days, which keeps planning
        linear when a waitlist stretches for months.
        """
        first_day = local_date(earliest, tz)
        chosen_day = local_date(chosen.start, tz)
        last_day = min(chosen_day, first_day + timedelta(days=_EXPLAIN_DAYS))
        scan_end = chosen.start if last_day == chosen_day else local_day_bounds(last_day, tz)[0]
        product = self.profile.product if kind is ResourceKind.manufacturing_slot else None
        by_day: dict[date, list[FreeWindow]] = {}
        for window in self.capacity.windows(
            kind, site, start=local_day_bounds(first_day, tz)[0], end=scan_end, product=product
        ):
            by_day.setdefault(local_date(window.start, tz), []).append(window)
        segments: list[tuple[str, date, date]] = []
        truncated = False
        day = first_day
        while day <= chosen_day:
            if day == last_day and last_day != chosen_day:
                truncated = True
                break
            windows = by_day.get(day, [])
            candidates = [w for w in windows if w.start >= earliest]
            if day == chosen_day and not candidates:
                break
            if day == chosen_day:
                reason = rejected.get(day, "earlier windows full")
            elif not windows:
                reason = "closed"
            elif not candidates:
                reason = f"no window after {earliest.astimezone(zone(tz)):%H:%M}"
            else:
                reason = rejected.get(day, "full")
            if segments and segments[-1][0] == reason and segments[-1][2] == day - ONE_DAY:
                segments[-1] = (reason, segments[-1][1], day)
            elif len(segments) == _MAX_SEGMENTS:
                truncated = True
                break
            else:
                segments.append((reason, day, day))
            day += ONE_DAY
        if not segments:
            return
        parts = [_segment_text(*segment) for segment in segments]
        if truncated:
            parts.append(f"then full, closed or rejected until {chosen_day.isoformat()}")
        self.explanations.append(
            Explanation(
                step,
                earliest,
                chosen.start,
                f"{_LABELS[kind]} at site {site}: {'; '.join(parts)}; "
                f"first free {_fmt_local(chosen.start, tz)}",
            )
        )


def propose_plan(
    profile: JourneyProfile,
    *,
    sites: JourneySites,
    earliest_collection: datetime,
    capacity: CapacityView,
    now: datetime,
    horizon_days: int = 365,
) -> Plan:
    """Propose the earliest feasible journey; PlanningError(code, message) when none exists.

    Each capacity search looks ``horizon_days`` past that step's earliest start. The plan is
    a proposal: book ``plan.bookings()`` (e.g. ``InMemoryCapacity.book``) to hold capacity.
    """
    now = require_utc(now, "now")
    earliest = max(require_utc(earliest_collection, "earliest_collection"), now)
    if horizon_days < 1:
        raise ValueError("horizon_days must be >= 1")
    planner = _Planner(profile, sites, capacity, timedelta(days=horizon_days))
    return planner.plan(earliest, now)


# ---------------------------------------------------------------------------------------------
# Knock-on effects


@dataclass(frozen=True)
class Violation:
    """A rule the changed plan breaks; ``code`` is stable, the tracker never decides clinically.

    Codes: before_predecessor, fresh_stability_exceeded, ld_before_release,
    infusion_too_soon_after_ld, infusion_window_exceeded, re_ld_required,
    second_dose_out_of_window.
    """

    code: str
    message: str


@dataclass(frozen=True)
class Change:
    """Old -> new span of one step, with the rules the new plan breaks at that step."""

    step: StepKind
    old_start: datetime
    old_end: datetime
    new_start: datetime
    new_end: datetime
    violations: tuple[Violation, ...] = ()
    needs_rebooking: bool = False

    @property
    def moved(self) -> bool:
        """Whether the step's span changed (a Change may only carry violations)."""
        return (self.old_start, self.old_end) != (self.new_start, self.new_end)


_Spans = dict[StepKind, tuple[datetime, datetime]]


def _shift_step(
    step: PlanStep, start: datetime, end: datetime, days: int
) -> tuple[datetime, datetime]:
    return shift_local_days(start, days, step.tz), shift_local_days(end, days, step.tz)


def _day_of(spans: _Spans, kind: StepKind, steps: Mapping[StepKind, PlanStep]) -> date:
    return local_date(spans[kind][0], steps[kind].tz)


def _push(
    kind: StepKind,
    spans: _Spans,
    steps: Mapping[StepKind, PlanStep],
    predecessor: StepKind,
    profile: JourneyProfile,
) -> tuple[datetime, datetime]:
    """Return the span of ``kind`` after pushing it just far enough to respect predecessors."""
    start, end = spans[kind]
    step = steps[kind]
    if kind not in DAY_STEPS:
        ready = spans[predecessor][1]
        return (start, end) if start >= ready else (ready, end + (ready - start))
    day = local_date(start, step.tz)
    if kind is StepKind.lymphodepletion:
        need = first_day_starting_at_or_after(spans[StepKind.release_testing][1], step.tz)
        days = max(0, (need - day).days)
    elif kind is StepKind.infusion:
        ld_day = _day_of(spans, StepKind.lymphodepletion, steps)
        days = max(0, (ld_day + timedelta(days=profile.ld_lead_days) - day).days)
        delivered = spans[StepKind.return_shipping][1]
        while shift_local_days(start, days, step.tz) < delivered:
            days += 1
    else:  # second dose: back to the target day once it leaves the tolerated days
        split = profile.split_dose or SplitDose()
        target = _day_of(spans, StepKind.infusion, steps) + timedelta(
            days=split.second_dose_day - 1
        )
        days = 0
        if abs((day - target).days) > split.tolerance_days:
            days = (target - day).days
    return _shift_step(step, start, end, days)


def _violations(
    spans: _Spans,
    steps: Mapping[StepKind, PlanStep],
    kinds: Sequence[StepKind],
    profile: JourneyProfile,
) -> dict[StepKind, list[Violation]]:
    found: dict[StepKind, list[Violation]] = {}

    def add(kind: StepKind, code: str, message: str) -> None:
        found.setdefault(kind, []).append(Violation(code, message))

    chain = [k for k in kinds if k not in DAY_STEPS]
    for before, after in zip(chain, chain[1:], strict=False):
        if spans[after][0] < spans[before][1]:
            add(
                after,
                "before_predecessor",
                f"{after} would start {spans[after][0].isoformat()}, before {before} ends "
                f"{spans[before][1].isoformat()}",
            )
    if profile.apheresis is ApheresisMode.fresh:
        stable_until = spans[StepKind.collection][1] + _hours(profile.fresh_stability_hours)
        if spans[StepKind.manufacturing][0] > stable_until:
            add(
                StepKind.manufacturing,
                "fresh_stability_exceeded",
                f"manufacturing would start after the {profile.fresh_stability_hours} h fresh "
                f"stability window closes at {stable_until.isoformat()}",
            )
    tz = steps[StepKind.infusion].tz
    ld_day = _day_of(spans, StepKind.lymphodepletion, steps)
    release_day = first_day_starting_at_or_after(spans[StepKind.release_testing][1], tz)
    if ld_day < release_day:
        add(
            StepKind.lymphodepletion,
            "ld_before_release",
            f"LD would start {ld_day.isoformat()}, before product availability is confirmed "
            f"(release {spans[StepKind.release_testing][1].isoformat()})",
        )
    infusion_day = _day_of(spans, StepKind.infusion, steps)
    if spans[StepKind.infusion][0] < spans[StepKind.return_shipping][1]:
        add(
            StepKind.infusion,
            "before_predecessor",
            f"infusion on {infusion_day.isoformat()} would precede product arrival "
            f"{spans[StepKind.return_shipping][1].isoformat()}",
        )
    ld_last = ld_day + timedelta(days=profile.ld_regimen_days - 1)
    gap = (infusion_day - ld_last).days
    low, high = profile.infusion_window_after_ld_days
    if gap < low:
        add(
            StepKind.infusion,
            "infusion_too_soon_after_ld",
            f"infusion {gap} days after the last LD day ({ld_last.isoformat()}); "
            f"the profile allows {low}-{high}",
        )
    elif gap > high:
        add(
            StepKind.infusion,
            "infusion_window_exceeded",
            f"infusion {gap} days after the last LD day ({ld_last.isoformat()}); "
            f"the profile allows {low}-{high}",
        )
    delay = (infusion_day - (ld_day + timedelta(days=profile.ld_lead_days))).days
    if profile.re_ld_after_delay_days is not None and delay > profile.re_ld_after_delay_days:
        add(
            StepKind.infusion,
            "re_ld_required",
            f"infusion delayed {delay} days past day 0 (> {profile.re_ld_after_delay_days}): "
            "repeat lymphodepletion needed (clinical decision)",
        )
    if StepKind.second_dose in spans and profile.split_dose is not None:
        split = profile.split_dose
        number = (_day_of(spans, StepKind.second_dose, steps) - infusion_day).days + 1
        if abs(number - split.second_dose_day) > split.tolerance_days:
            add(
                StepKind.second_dose,
                "second_dose_out_of_window",
                f"second dose on day {number}; the profile allows day "
                f"{split.second_dose_day} +- {split.tolerance_days}",
            )
    return found


def knock_on(
    plan: Plan, step_kind: StepKind, new_start: datetime, profile: JourneyProfile
) -> list[Change]:
    """Move one step and push its dependents as far as needed; report every change.

    Non-day steps move by the exact time difference. Day steps (LD, infusion, second dose)
    move to the local date of ``new_start`` at their site, keeping their wall-clock times.
    Dependents are pushed later only when a rule requires it, never pulled earlier (except a
    second dose leaving its tolerated days, which returns to its target day); LD is
    pushed only by release (availability), so an infusion moved on its own keeps its LD and
    may need a repeat LD, reported as a proposed LD Change carrying ``re_ld_required``.
    Capacity is not checked: Changes with ``needs_rebooking`` must be re-booked.
    """
    if (plan.product, plan.profile_version) != (profile.product, profile.version):
        raise ValueError(
            f"plan was made with profile {plan.product} {plan.profile_version}, "
            f"not {profile.product} {profile.version}"
        )
    new_start = require_utc(new_start, "new_start")
    steps = {step.kind: step for step in plan.steps}
    if step_kind not in steps:
        raise ValueError(f"plan has no {step_kind} step")
    kinds = [k for k in STEP_ORDER if k in steps]
    spans: _Spans = {k: (s.start, s.end) for k, s in steps.items()}
    moved = steps[step_kind]
    if step_kind in DAY_STEPS:
        days = (local_date(new_start, moved.tz) - moved.local_day).days
        spans[step_kind] = _shift_step(moved, moved.start, moved.end, days)
    else:
        spans[step_kind] = (new_start, moved.end + (new_start - moved.start))
    position = kinds.index(step_kind)
    for previous, kind in zip(kinds[position:], kinds[position + 1 :], strict=False):
        spans[kind] = _push(kind, spans, steps, previous, profile)
    violations = _violations(spans, steps, kinds, profile)
    if any(v.code == "re_ld_required" for v in violations.get(StepKind.infusion, [])):
        ld = steps[StepKind.lymphodepletion]
        proposed = _day_of(spans, StepKind.infusion, steps) - timedelta(days=profile.ld_lead_days)
        days = (proposed - _day_of(spans, StepKind.lymphodepletion, steps)).days
        spans[StepKind.lymphodepletion] = _shift_step(ld, *spans[StepKind.lymphodepletion], days)
        violations.setdefault(StepKind.lymphodepletion, []).append(
            Violation(
                "re_ld_required",
                f"proposed repeat lymphodepletion from {proposed.isoformat()} "
                "(not applied: needs a clinical decision)",
            )
        )
    changes: list[Change] = []
    for kind in kinds:
        old, new = steps[kind], spans[kind]
        found = tuple(violations.get(kind, ()))
        if (old.start, old.end) != new or found or kind is step_kind:
            changes.append(
                Change(
                    kind,
                    old.start,
                    old.end,
                    new[0],
                    new[1],
                    found,
                    needs_rebooking=old.booking is not None and (old.start, old.end) != new,
                )
            )
    return changes


# ---------------------------------------------------------------------------------------------
# Waitlist priority


@dataclass(frozen=True)
class PriorityInputs:
    """Documented inputs of the waitlist score.

    days_waiting: whole days since the patient joined the waitlist.
    urgency_category: assigned by the centre's committee; a key of the policy's urgency levels.
    bridging_therapy_failing: the treating physician reports bridging therapy is failing.
    prior_slot_cancellations: slots this patient lost to cancellations the patient did not ask for.
    """

    days_waiting: int
    urgency_category: str
    bridging_therapy_failing: bool = False
    prior_slot_cancellations: int = 0

    def __post_init__(self) -> None:
        if self.days_waiting < 0 or self.prior_slot_cancellations < 0:
            raise ValueError("days waiting and cancellations must be >= 0")


COMPONENTS: tuple[str, ...] = (
    "days_waiting",
    "disease_urgency",
    "bridging_therapy_failing",
    "prior_slot_cancellations",
)


def _frozen(mapping: Mapping[str, float]) -> Mapping[str, float]:
    return MappingProxyType(dict(mapping))


@dataclass(frozen=True)
class PriorityPolicy:
    """Weights, urgency levels and value caps as data, versioned like a product profile.

    Each component contributes ``min(value, cap) * weight``; disease_urgency's value is the
    committee category's level.
    """

    version: str = "priority-defaults-to-confirm"
    weights: Mapping[str, float] = field(
        default_factory=lambda: _frozen(
            {
                "days_waiting": 1.0,
                "disease_urgency": 30.0,
                "bridging_therapy_failing": 40.0,
                "prior_slot_cancellations": 15.0,
            }
        )
    )
    urgency_levels: Mapping[str, float] = field(
        default_factory=lambda: _frozen({"routine": 0, "elevated": 1, "high": 2, "critical": 3})
    )
    caps: Mapping[str, float] = field(
        default_factory=lambda: _frozen({"days_waiting": 365, "prior_slot_cancellations": 3})
    )

    def __post_init__(self) -> None:
        if set(self.weights) != set(COMPONENTS):
            raise ValueError(f"weights must name exactly {', '.join(COMPONENTS)}")
        if not set(self.caps) <= set(COMPONENTS):
            raise ValueError("caps may only name score components")
        if not self.urgency_levels:
            raise ValueError("at least one urgency category is needed")


DEFAULT_PRIORITY_POLICY = PriorityPolicy()


@dataclass(frozen=True)
class ScoreComponent:
    name: str
    value: float
    weight: float
    contribution: float


@dataclass(frozen=True)
class Score:
    """``total`` is the sum of the components' contributions, in order."""

    total: float
    components: tuple[ScoreComponent, ...]
    policy_version: str


def priority_score(
    inputs: PriorityInputs, policy: PriorityPolicy = DEFAULT_PRIORITY_POLICY
) -> Score:
    """Return the transparent waitlist score of ``inputs`` under ``policy``."""
    if inputs.urgency_category not in policy.urgency_levels:
        known = ", ".join(sorted(policy.urgency_levels))
        raise ValueError(f"unknown urgency category {inputs.urgency_category!r} (known: {known})")
    raw = {
        "days_waiting": float(inputs.days_waiting),
        "disease_urgency": float(policy.urgency_levels[inputs.urgency_category]),
        "bridging_therapy_failing": 1.0 if inputs.bridging_therapy_failing else 0.0,
        "prior_slot_cancellations": float(inputs.prior_slot_cancellations),
    }
    components: list[ScoreComponent] = []
    for name in COMPONENTS:
        value = min(raw[name], policy.caps.get(name, raw[name]))
        weight = policy.weights[name]
        components.append(ScoreComponent(name, value, weight, value * weight))
    total = sum(c.contribution for c in components)
    return Score(total, tuple(components), policy.version)


def rank_waitlist(
    entries: Iterable[tuple[str, PriorityInputs]],
    policy: PriorityPolicy = DEFAULT_PRIORITY_POLICY,
) -> list[tuple[str, Score]]:
    """Order patients by score, then days waiting, then id (a stable, explainable order)."""
    scored = [(pid, inputs, priority_score(inputs, policy)) for pid, inputs in entries]
    scored.sort(key=lambda e: (-e[2].total, -e[1].days_waiting, e[0]))
    return [(pid, score) for pid, _, score in scored]
