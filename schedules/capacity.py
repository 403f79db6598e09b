"""Capacity in the database: template rows expanded into window rows, the SQL-backed
``CapacityView`` the planner reads, and the locked counter updates that book and release.

Locking design (PostgreSQL, READ COMMITTED; SQLite serialises writers with BEGIN IMMEDIATE):

1. A booking transaction takes FOR SHARE locks on the ``schedule_resources`` rows it books,
   sorted by id. Changing a resource's hours or closures takes FOR UPDATE on the same row, so the
   set of windows cannot change under a booking, while bookings never block one another here.
2. It then locks every ``capacity_windows`` row it will touch (the windows of all the plan's new
   bookings and of the bookings it releases) with ONE ``SELECT ... ORDER BY id FOR UPDATE``.
   Every writer of window counters (booking, rescheduling, cancelling, the hold sweeper, template
   changes) locks through this one statement shape in primary-key order and takes no other
   window lock afterwards, so no two transactions can wait on each other in a cycle.
3. With the rows locked it re-checks coverage and every overlapping window (strictest wins)
   against the committed counters; the proposal came from an unlocked snapshot. Any full window
   refuses the whole plan (``capacity_taken``); the unit of work then rolls everything back, so
   booking is all or nothing. Only after the check does it run ``used = used + n``.
4. ``CHECK (used <= capacity)`` on the window row is the last line of defence: even a code path
   that skipped the lock could not commit an overbooking, its UPDATE fails instead.

Why counters on the window rows rather than counting bookings: the row lock and the CHECK then
guard exactly the quantity that must not exceed capacity, and a check costs one indexed row per
window instead of an aggregate over bookings.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Iterator
from collections.abc import Mapping
from collections.abc import Sequence
from dataclasses import dataclass
from dataclasses import field
from datetime import datetime
from datetime import timedelta

from sqlalchemy import Table
from sqlalchemy import bindparam
from sqlalchemy import delete
from sqlalchemy import or_
from sqlalchemy import select
from sqlalchemy import update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from schedules.models import BookingWindow
from schedules.models import Closure
from schedules.models import ScheduleResource
from schedules.models import SlotBooking
from schedules.models import WeeklyHours
from schedules.models import WindowRow
from schedules.planning import FreeWindow
from schedules.slots import FITS
from schedules.slots import Booking
from schedules.slots import CapacityTemplate
from schedules.slots import CapacityWindow
from schedules.slots import Fit
from schedules.slots import OpeningHours
from schedules.slots import Resource
from schedules.slots import ResourceKind
from schedules.slots import check_against
from schedules.slots import expand_capacity
from schedules.slots import require_utc
from schedules.slots import zone
from tracker.domain.errors import TrackerError
from tracker.models import Site

# A window is one opening period: at most 24 h of wall time, 25 h across a DST fold. Anything
# overlapping a window therefore starts less than this before it.
MAX_WINDOW = timedelta(hours=26)
HORIZON = timedelta(days=400)
CHUNK = timedelta(days=62)


# ---------------------------------------------------------------------------------------------
# Templates -> window rows


def template_for(session: Session, resource: ScheduleResource) -> CapacityTemplate:
    """Build the pure weekly template of ``resource`` from its hours and closure rows."""
    weekly: dict[int, list[OpeningHours]] = {}
    for row in session.scalars(
        select(WeeklyHours)
        .where(WeeklyHours.resource_id == resource.id)
        .order_by(WeeklyHours.weekday, WeeklyHours.opens_at)
    ):
        weekly.setdefault(row.weekday, []).append(
            OpeningHours(row.opens_at, row.closes_at, row.capacity)
        )
    closures = session.scalars(
        select(Closure).where(
            Closure.site_id == resource.site_id,
            or_(Closure.resource_id.is_(None), Closure.resource_id == resource.id),
        )
    ).all()
    holidays = frozenset(
        c.first_day + timedelta(days=n)
        for c in closures
        if c.kind == "holiday"
        for n in range((c.last_day - c.first_day).days + 1)
    )
    return CapacityTemplate(
        Resource(
            resource.public_id,
            ResourceKind(resource.kind),
            str(resource.site_id),
            resource.product_code,
        ),
        weekly,
        slot_length=None
        if resource.slot_minutes is None
        else timedelta(minutes=resource.slot_minutes),
        closures=tuple((c.first_day, c.last_day) for c in closures if c.kind == "closure"),
        holidays=holidays,
    )


@dataclass
class SyncResult:
    added: int = 0
    removed: int = 0
    changed: int = 0


def sync_windows(
    session: Session, resource: ScheduleResource, *, start: datetime, end: datetime
) -> SyncResult:
    """Make the windows of ``resource`` that start in [start, end) match its template.

    Windows that already started are history and stay. A change that would drop or shrink a
    window below the units already booked in it is refused whole (``capacity_in_use``).
    """
    start, end = require_utc(start, "start"), require_utc(end, "end")
    locked = session.scalar(
        select(ScheduleResource).where(ScheduleResource.id == resource.id).with_for_update()
    )
    assert locked is not None
    tz = session.scalar(select(Site.timezone).where(Site.id == resource.site_id))
    assert tz is not None
    expected = {
        w.start: w
        for w in expand_capacity(template_for(session, resource), tz, start, end)
        if start <= w.start < end
    }
    existing = {
        row.starts_at: row
        for row in session.scalars(
            select(WindowRow)
            .where(
                WindowRow.resource_id == resource.id,
                WindowRow.starts_at >= start,
                WindowRow.starts_at < end,
            )
            .order_by(WindowRow.id)
            .with_for_update()
        )
    }
    result = SyncResult()
    conflicts: list[str] = []
    for starts_at, row in existing.items():
        want = expected.get(starts_at)
        if want is not None and want.end == row.ends_at:
            if want.capacity != row.capacity:
                if row.used > want.capacity:
                    conflicts.append(_conflict(row, tz, want.capacity))
                else:
                    row.capacity = want.capacity
                    result.changed += 1
            continue
        if row.used > 0:
            conflicts.append(_conflict(row, tz, 0))
            continue
        session.execute(delete(BookingWindow).where(BookingWindow.window_id == row.id))
        session.delete(row)
        result.removed += 1
    if conflicts:
        shown = "; ".join(conflicts[:5]) + (
            f"; and {len(conflicts) - 5} more" if len(conflicts) > 5 else ""
        )
        raise TrackerError(
            "capacity_in_use",
            f"{resource.name}: the change would leave booked windows without room ({shown}); "
            "reschedule or cancel those bookings first",
        )
    session.flush()
    for starts_at, want in expected.items():
        current = existing.get(starts_at)
        if current is not None and current in session and current.ends_at == want.end:
            continue
        session.add(
            WindowRow(
                resource_id=resource.id,
                starts_at=want.start,
                ends_at=want.end,
                capacity=want.capacity,
                used=0,
            )
        )
        result.added += 1
    locked.expanded_until = max(end, locked.expanded_until or end)
    session.flush()
    return result


def _conflict(row: WindowRow, tz: str, capacity: int) -> str:
    local = row.starts_at.astimezone(zone(tz))
    return f"{local:%Y-%m-%d %H:%M} holds {row.used}, would allow {capacity}"


# ---------------------------------------------------------------------------------------------
# The planner's view of capacity


@dataclass
class _Win:
    id: int
    resource_pid: str
    start: datetime
    end: datetime
    capacity: int
    used: int


@dataclass
class _Pool:
    resources: dict[int, str]
    lo: datetime | None = None
    hi: datetime | None = None
    by_resource: dict[str, list[_Win]] = field(default_factory=dict)
    merged: list[_Win] = field(default_factory=list)
    starts: list[datetime] = field(default_factory=list)


class SqlCapacity:
    """CapacityView over ``capacity_windows``; free = min(capacity - used) of overlapping windows.

    Windows load lazily in chunks per (kind, site, product) pool, so planning one patient reads
    a few hundred rows, not a year of every site. ``credit`` gives units back per window id (a
    plan's own bookings while it is being rescheduled). Sites are site codes.
    """

    def __init__(self, session: Session, *, credit: Mapping[int, int] | None = None) -> None:
        self.session = session
        self.credit = dict(credit or {})
        self._zones: dict[str, str] = {}
        self._site_ids: dict[str, int] = {}
        self._pools: dict[tuple[ResourceKind, str, str | None], _Pool] = {}

    def zone(self, site: str) -> str:
        """Return the IANA zone of ``site``."""
        if site not in self._zones:
            row = self.session.execute(
                select(Site.id, Site.timezone).where(Site.code == site)
            ).first()
            if row is None:
                raise ValueError(f"unknown site {site!r}")
            self._site_ids[site], self._zones[site] = row[0], row[1]
        return self._zones[site]

    def _pool(self, kind: ResourceKind, site: str, product: str | None) -> _Pool:
        key = (kind, site, product)
        pool = self._pools.get(key)
        if pool is None:
            self.zone(site)
            stmt = select(ScheduleResource.id, ScheduleResource.public_id).where(
                ScheduleResource.site_id == self._site_ids[site],
                ScheduleResource.kind == kind.value,
                ScheduleResource.active.is_(True),
            )
            if product is None:
                stmt = stmt.where(ScheduleResource.product_code.is_(None))
            else:
                stmt = stmt.where(
                    or_(
                        ScheduleResource.product_code.is_(None),
                        ScheduleResource.product_code == product,
                    )
                )
            pool = self._pools[key] = _Pool(
                resources={rid: pid for rid, pid in self.session.execute(stmt)}
            )
        return pool

    def _load(self, pool: _Pool, lo: datetime, hi: datetime) -> None:
        if not pool.resources or lo >= hi:
            return
        rows = self.session.execute(
            select(
                WindowRow.id,
                WindowRow.resource_id,
                WindowRow.starts_at,
                WindowRow.ends_at,
                WindowRow.capacity,
                WindowRow.used,
            ).where(
                WindowRow.resource_id.in_(pool.resources),
                WindowRow.starts_at >= lo,
                WindowRow.starts_at < hi,
            )
        )
        for wid, rid, start, end, capacity, used in rows:
            pid = pool.resources[rid]
            win = _Win(wid, pid, start, end, capacity, used - self.credit.get(wid, 0))
            pool.by_resource.setdefault(pid, []).append(win)
        for wins in pool.by_resource.values():
            wins.sort(key=lambda w: (w.start, w.end))
        pool.merged = sorted(
            (w for wins in pool.by_resource.values() for w in wins),
            key=lambda w: (w.start, w.end, w.resource_pid),
        )
        pool.starts = [w.start for w in pool.merged]

    def _ensure(self, pool: _Pool, lo: datetime, hi: datetime) -> None:
        if pool.lo is None or pool.hi is None:
            self._load(pool, lo, hi)
            pool.lo, pool.hi = lo, hi
            return
        if lo < pool.lo:
            self._load(pool, lo, pool.lo)
            pool.lo = lo
        if hi > pool.hi:
            self._load(pool, pool.hi, hi)
            pool.hi = hi

    def _free(self, pool: _Pool, win: _Win) -> int:
        self._ensure(pool, win.start - MAX_WINDOW, win.end)
        wins = pool.by_resource[win.resource_pid]
        # Strictest wins: a booking spanning this window overlaps every window overlapping it.
        left = min(w.capacity - w.used for w in wins if w.start < win.end and w.end > win.start)
        return max(0, left)

    def _free_window(self, pool: _Pool, win: _Win) -> FreeWindow:
        return FreeWindow(win.resource_pid, win.start, win.end, win.capacity, self._free(pool, win))

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
        if not pool.resources:
            return
        lo = not_before
        while lo < until:
            hi = min(until, lo + CHUNK)
            self._ensure(pool, lo - MAX_WINDOW, hi + MAX_WINDOW)
            batch = pool.merged[bisect_left(pool.starts, lo) : bisect_left(pool.starts, hi)]
            for win in batch:
                free = self._free(pool, win)
                if free >= units:
                    yield FreeWindow(win.resource_pid, win.start, win.end, win.capacity, free)
            lo = hi

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
        start, end = require_utc(start, "start"), require_utc(end, "end")
        pool = self._pool(kind, site, product)
        if not pool.resources:
            return []
        self._ensure(pool, start - MAX_WINDOW, end + MAX_WINDOW)
        batch = pool.merged[bisect_left(pool.starts, start) : bisect_left(pool.starts, end)]
        return [self._free_window(pool, w) for w in batch]

    def fits_together(self, bookings: Sequence[Booking]) -> Fit:
        """Check that all ``bookings`` fit at once on top of the existing ones (fresh read)."""
        pending: dict[int, int] = {}
        for booking in bookings:
            rows = _overlapping_rows(self.session, booking)
            if rows is None:
                return Fit(False, "closed", f"unknown resource {booking.resource_id!r}")
            windows = [
                CapacityWindow(booking.resource_id, r.starts_at, r.ends_at, r.capacity)
                for r in rows
            ]
            used = [r.used - self.credit.get(r.id, 0) + pending.get(r.id, 0) for r in rows]
            fit = check_against(windows, used, booking)
            if not fit:
                return fit
            for row in rows:
                pending[row.id] = pending.get(row.id, 0) + booking.units
        return FITS


def _overlapping_rows(session: Session, booking: Booking) -> list[WindowRow] | None:
    resource_id = session.scalar(
        select(ScheduleResource.id).where(ScheduleResource.public_id == booking.resource_id)
    )
    if resource_id is None:
        return None
    return list(
        session.scalars(
            select(WindowRow)
            .where(
                WindowRow.resource_id == resource_id,
                WindowRow.starts_at > booking.start - MAX_WINDOW,
                WindowRow.starts_at < booking.end,
                WindowRow.ends_at > booking.start,
            )
            .order_by(WindowRow.starts_at, WindowRow.ends_at)
        )
    )


# ---------------------------------------------------------------------------------------------
# Booking and releasing under locks


@dataclass(frozen=True)
class Reserved:
    """A booking that now holds units in ``window_ids`` of resource row ``resource_id``."""

    booking: Booking
    resource_id: int
    window_ids: tuple[int, ...]


def change_capacity(
    session: Session,
    *,
    reserve: Sequence[Booking] = (),
    release: Sequence[SlotBooking] = (),
    now: datetime,
) -> list[Reserved]:
    """Release ``release`` and reserve ``reserve`` in one locked step (see the module docstring).

    Raises ``capacity_taken`` (nothing changed) when any reserved window lacks room or coverage.
    Released bookings are marked ``released``; the caller writes rows for the new ones.
    """
    pids = sorted({b.resource_id for b in reserve})
    resources = {
        pid: rid
        for rid, pid in session.execute(
            select(ScheduleResource.id, ScheduleResource.public_id)
            .where(ScheduleResource.public_id.in_(pids))
            .order_by(ScheduleResource.id)
            .with_for_update(read=True)
        )
    }
    missing = [pid for pid in pids if pid not in resources]
    if missing:
        raise TrackerError("not_found", f"no resource {missing[0]}")
    candidates: dict[int, list[int]] = {}
    for i, booking in enumerate(reserve):
        candidates[i] = list(
            session.scalars(
                select(WindowRow.id).where(
                    WindowRow.resource_id == resources[booking.resource_id],
                    WindowRow.starts_at > booking.start - MAX_WINDOW,
                    WindowRow.starts_at < booking.end,
                    WindowRow.ends_at > booking.start,
                )
            )
        )
    released = {
        b.id: list(
            session.scalars(select(BookingWindow.window_id).where(BookingWindow.booking_id == b.id))
        )
        for b in release
    }
    ids = sorted(
        {w for ws in candidates.values() for w in ws} | {w for ws in released.values() for w in ws}
    )
    locked = {
        row.id: (row.starts_at, row.ends_at, row.capacity, row.used)
        for row in session.execute(
            select(
                WindowRow.id,
                WindowRow.starts_at,
                WindowRow.ends_at,
                WindowRow.capacity,
                WindowRow.used,
            )
            .where(WindowRow.id.in_(ids))
            .order_by(WindowRow.id)
            .with_for_update()
        )
    }
    delta: dict[int, int] = {}
    for gone in release:
        if gone.status == "released":
            continue
        for wid in released[gone.id]:
            delta[wid] = delta.get(wid, 0) - gone.units
    out: list[Reserved] = []
    for i, booking in enumerate(reserve):
        # Windows may have vanished between the lookup and the lock (fail closed: not covered).
        wids = sorted((w for w in candidates[i] if w in locked), key=lambda w: locked[w][:2])
        windows = [CapacityWindow(booking.resource_id, *locked[w][:3]) for w in wids]
        used = [locked[w][3] + delta.get(w, 0) for w in wids]
        fit = check_against(windows, used, booking)
        if not fit:
            raise TrackerError(
                "capacity_taken",
                f"{fit.message}; another booking took it first, propose again"
                if fit.code == "full"
                else f"{fit.message}; the capacity changed, propose again",
            )
        for w in wids:
            delta[w] = delta.get(w, 0) + booking.units
        out.append(Reserved(booking, resources[booking.resource_id], tuple(wids)))
    changes = [{"wid": w, "d": d} for w, d in sorted(delta.items()) if d]
    try:
        if changes:
            table = WindowRow.__table__
            assert isinstance(table, Table)
            session.execute(
                update(table)
                .where(table.c.id == bindparam("wid"))
                .values(used=table.c.used + bindparam("d")),
                changes,
            )
        for gone in release:
            if gone.status != "released":
                gone.status = "released"
                gone.released_at = now
        if released:
            session.execute(delete(BookingWindow).where(BookingWindow.booking_id.in_(released)))
        session.flush()
    except IntegrityError as exc:  # the CHECK caught what the lock should have prevented
        raise TrackerError("capacity_taken", "a capacity window is full; propose again") from exc
    # The counters changed underneath any WindowRow objects this session holds.
    for obj in list(session.identity_map.values()):
        if isinstance(obj, WindowRow):
            session.expire(obj)
    return out
