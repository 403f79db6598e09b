"""Truly concurrent bookings on PostgreSQL: committed data, one connection per thread.

Each test builds its world in committed transactions (the rolled-back test transaction would
hide it from the other connections) and truncates every table afterwards.
"""

from __future__ import annotations

import threading
from collections import Counter
from datetime import UTC
from datetime import datetime
from datetime import timedelta

import pytest
from sqlalchemy import func
from sqlalchemy import select
from sqlalchemy import text
from sqlalchemy import update
from sqlalchemy.exc import IntegrityError

from schedules import service
from schedules.models import BookingWindow
from schedules.models import JourneyPlan
from schedules.models import ScheduleResource
from schedules.models import SlotBooking
from schedules.models import WindowRow
from tests.factories import build_world
from tests.factories import make_order
from tests.factories_schedules import build_capacity
from tracker.db import Base
from tracker.db import make_engine
from tracker.db import make_session_factory
from tracker.domain.errors import TrackerError
from tracker.models import AuditEntry
from tracker.unit_of_work import UnitOfWork

pytestmark = pytest.mark.postgres_only
THREADS = 24
PLACES = 5
# Amsterdam 09:00 on Wednesday 2026-03-04: 24 h after Monday's collection ends.
WEDNESDAY_SLOT = datetime(2026, 3, 4, 8, tzinfo=UTC)


def _truncate(engine):
    tables = ", ".join(t.name for t in Base.metadata.sorted_tables)
    with engine.begin() as conn:
        conn.execute(text(f"TRUNCATE {tables} RESTART IDENTITY CASCADE"))


@pytest.fixture
def committed(pg_only, settings, clock):
    engine = make_engine(settings.database_url, pool_size=THREADS + 2, max_overflow=0)
    _truncate(engine)
    factory = make_session_factory(engine)

    def new_uow():
        return UnitOfWork(factory)

    world = build_world(new_uow, settings, clock.now())
    ids = build_capacity(new_uow, world, clock.now(), chairs=THREADS * 2, beds=THREADS * 2)
    yield new_uow, world, ids
    _truncate(engine)
    engine.dispose()


def _leave_last_places(new_uow, line_public_id, places):
    """Only Wednesday's manufacturing window (the first a Monday collection reaches) keeps
    room: ``places`` of 12."""
    with new_uow() as uow:
        line = uow.session.scalar(
            select(ScheduleResource.id).where(ScheduleResource.public_id == line_public_id)
        )
        first = uow.session.scalar(
            select(WindowRow.id).where(
                WindowRow.resource_id == line, WindowRow.starts_at == WEDNESDAY_SLOT
            )
        )
        uow.session.execute(
            update(WindowRow).where(WindowRow.resource_id == line).values(capacity=0, used=0)
        )
        uow.session.execute(
            update(WindowRow).where(WindowRow.id == first).values(capacity=12, used=12 - places)
        )
        uow.commit()
    return first


def _run_together(count, work):
    """Start ``count`` threads at one barrier; return what each returned or raised."""
    barrier = threading.Barrier(count)
    results: list[object] = [None] * count

    def run(i):
        try:
            barrier.wait(timeout=30)
            results[i] = work(i)
        except BaseException as exc:  # recorded and asserted on by the caller
            results[i] = exc

    threads = [threading.Thread(target=run, args=(i,)) for i in range(count)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not any(t.is_alive() for t in threads)
    return results


def _assert_counters_match_bookings(new_uow, seeded):
    """No window is over capacity and each counter is its live bookings plus ``seeded``."""
    with new_uow() as uow:
        over = uow.session.scalar(select(func.count()).where(WindowRow.used > WindowRow.capacity))
        assert over == 0
        held = dict(
            uow.session.execute(
                select(BookingWindow.window_id, func.sum(SlotBooking.units))
                .join(SlotBooking, SlotBooking.id == BookingWindow.booking_id)
                .where(SlotBooking.status.in_(["held", "booked"]))
                .group_by(BookingWindow.window_id)
            ).all()
        )
        counters = dict(
            uow.session.execute(
                select(WindowRow.id, WindowRow.used).where(WindowRow.used > 0)
            ).all()
        )
        for window_id, units in seeded.items():
            held[window_id] = held.get(window_id, 0) + units
        assert counters == held


def test_concurrent_bookings_for_the_last_places_book_exactly_that_many(committed, clock):
    new_uow, world, ids = committed
    orders = [make_order(new_uow, world, clock.now(), mrn=f"C{i}") for i in range(THREADS)]
    window_id = _leave_last_places(new_uow, ids["manufacturing_slot"], PLACES)

    def book(i):
        with new_uow() as uow:
            plan = service.book_plan(
                uow=uow,
                principal=world.principals["coord"],
                order_public_id=orders[i].public_id,
                earliest_collection=clock.now(),
                now=clock.now(),
            )
            uow.commit()
            return plan.public_id

    results = _run_together(THREADS, book)
    booked = [r for r in results if isinstance(r, str)]
    refused = Counter(r.reason for r in results if isinstance(r, TrackerError))
    unexpected = [r for r in results if not isinstance(r, str | TrackerError)]
    assert unexpected == []
    assert len(booked) == PLACES
    # Late planners see the full window and find no slot; early ones lose the race under lock.
    assert set(refused) <= {"capacity_taken", "no_manufacturing_capacity"}
    assert refused["capacity_taken"] >= 1  # the race was real: losers queued on the row lock
    assert sum(refused.values()) == THREADS - PLACES
    with new_uow() as uow:
        window = uow.session.get(WindowRow, window_id)
        assert (window.used, window.capacity) == (12, 12)
        assert uow.session.scalar(select(func.count(JourneyPlan.id))) == PLACES
        # All or nothing: no refused booking left a chair or a bed behind.
        assert uow.session.scalar(select(func.count(SlotBooking.id))) == 3 * PLACES
    _assert_counters_match_bookings(new_uow, {window_id: 12 - PLACES})


def test_the_check_constraint_alone_stops_unlocked_concurrent_increments(committed, clock):
    new_uow, _, ids = committed
    window_id = _leave_last_places(new_uow, ids["manufacturing_slot"], PLACES)

    def bump(_):
        # Deliberately no SELECT ... FOR UPDATE and no check: only the CHECK stands in the way.
        with new_uow() as uow:
            uow.session.execute(
                update(WindowRow).where(WindowRow.id == window_id).values(used=WindowRow.used + 1)
            )
            uow.commit()
            return "ok"

    results = _run_together(THREADS, bump)
    assert results.count("ok") == PLACES
    assert all(isinstance(r, IntegrityError) for r in results if r != "ok")
    with new_uow() as uow:
        assert uow.session.get(WindowRow, window_id).used == 12


def test_sweepers_and_bookers_racing_neither_deadlock_nor_double_release(committed, clock):
    new_uow, world, ids = committed
    window_id = _leave_last_places(new_uow, ids["manufacturing_slot"], PLACES)
    holders = [make_order(new_uow, world, clock.now(), mrn=f"H{i}") for i in range(PLACES)]
    for order in holders:  # every last place is held by a hold that lapses in an hour
        with new_uow() as uow:
            service.book_plan(
                uow=uow,
                principal=world.principals["coord"],
                order_public_id=order.public_id,
                earliest_collection=clock.now(),
                now=clock.now(),
                hold_for=timedelta(hours=1),
            )
            uow.commit()
    later = clock.now() + timedelta(hours=2)
    bookers = [make_order(new_uow, world, clock.now(), mrn=f"B{i}") for i in range(THREADS - 6)]

    def work(i):
        with new_uow() as uow:
            if i < 6:
                expired = service.expire_holds(uow=uow, now=later, limit=2)
                uow.commit()
                return ("swept", len(expired))
            plan = service.book_plan(
                uow=uow,
                principal=world.principals["coord"],
                order_public_id=bookers[i - 6].public_id,
                earliest_collection=clock.now(),
                now=later,
            )
            uow.commit()
            return ("booked", plan.public_id)

    results = _run_together(THREADS, work)
    errors = [r for r in results if isinstance(r, Exception) and not isinstance(r, TrackerError)]
    assert errors == []  # in particular no deadlock_detected
    # Whatever the sweepers did not reach yet, one more sweep finishes (idempotent).
    with new_uow() as uow:
        service.expire_holds(uow=uow, now=later)
        uow.commit()
    with new_uow() as uow:
        expiries = uow.session.scalar(
            select(func.count()).where(AuditEntry.action == "plan_expire")
        )
        assert expiries == PLACES  # each hold expired exactly once
        booked = [r for r in results if isinstance(r, tuple) and r[0] == "booked"]
        live = uow.session.scalar(
            select(func.count()).where(JourneyPlan.status.in_(["held", "booked"]))
        )
        assert live == len(booked) <= PLACES
    _assert_counters_match_bookings(new_uow, {window_id: 12 - PLACES})
