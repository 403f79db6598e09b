from datetime import UTC
from datetime import date
from datetime import datetime
from datetime import timedelta

import pytest
from sqlalchemy import func
from sqlalchemy import select
from sqlalchemy import text
from sqlalchemy import update
from sqlalchemy.exc import IntegrityError

from schedules import service
from schedules.models import JourneyPlan
from schedules.models import Notification
from schedules.models import PlanDeadline
from schedules.models import PlanStepRow
from schedules.models import ScheduleResource
from schedules.models import SlotBooking
from schedules.models import WindowRow
from schedules.planning import StepKind
from tests.factories import make_order
from tests.factories_schedules import build_capacity
from tracker.domain.errors import TrackerError
from tracker.models import AuditEntry
from tracker.models import User


def utc(*args):
    return datetime(*args, tzinfo=UTC)


@pytest.fixture
def capacity(new_uow, world, clock):
    return build_capacity(new_uow, world, clock.now())


def windows_of(uow, resource_public_id, day_start, day_end):
    return list(
        uow.session.scalars(
            select(WindowRow)
            .join(ScheduleResource, ScheduleResource.id == WindowRow.resource_id)
            .where(
                ScheduleResource.public_id == resource_public_id,
                WindowRow.starts_at >= day_start,
                WindowRow.starts_at < day_end,
            )
            .order_by(WindowRow.starts_at)
        )
    )


def used_total(uow):
    return uow.session.scalar(select(func.coalesce(func.sum(WindowRow.used), 0)))


def book(new_uow, world, order, now, **kw):
    with new_uow() as uow:
        plan = service.book_plan(
            uow=uow,
            principal=world.principals["coord"],
            order_public_id=order.public_id,
            earliest_collection=now,
            now=now,
            **kw,
        )
        uow.commit()
        return plan


def test_weekly_hours_become_utc_windows_that_follow_new_york_summer_time(new_uow, capacity, clock):
    with new_uow() as uow:
        friday = windows_of(uow, capacity["apheresis_chair"], utc(2026, 3, 6), utc(2026, 3, 7))
        monday = windows_of(uow, capacity["apheresis_chair"], utc(2026, 3, 9), utc(2026, 3, 10))
        line = windows_of(uow, capacity["manufacturing_slot"], utc(2026, 3, 30), utc(2026, 3, 31))
        # 08:00 New York is 13:00 UTC in winter (EST) and 12:00 UTC after 2026-03-08 (EDT).
        assert [(w.starts_at.hour, w.ends_at.hour) for w in friday] == [(13, 17), (17, 21)]
        assert [(w.starts_at.hour, w.ends_at.hour) for w in monday] == [(12, 16), (16, 20)]
        # Amsterdam's 09:00 slot is 07:00 UTC once summer time starts there (2026-03-29).
        assert [(w.starts_at.hour, w.capacity, w.used) for w in line] == [(7, 1, 0)]


def test_booking_a_plan_reserves_all_three_steps_and_writes_its_deadlines(
    new_uow, world, capacity, clock
):
    order = make_order(new_uow, world, clock.now())
    plan = book(new_uow, world, order, clock.now())
    with new_uow() as uow:
        row = uow.session.get(JourneyPlan, plan.id)
        assert row.status == "held" and row.held_until == clock.now() + timedelta(hours=48)
        assert row.profile_version == "CD19-FRESH@v1"
        steps = {
            s.kind: s
            for s in uow.session.scalars(select(PlanStepRow).where(PlanStepRow.plan_id == row.id))
        }
        # Collection on Monday 12:00-16:00 New York (the 08:00 chair had begun at 09:00 local).
        assert steps["collection"].starts_at == utc(2026, 3, 2, 17)
        # Manufacturing: the first Amsterdam 09:00 slot after 24 h of transit.
        assert steps["manufacturing"].starts_at == utc(2026, 3, 4, 8)
        bookings = uow.session.scalars(select(SlotBooking).where(SlotBooking.plan_id == row.id))
        assert sorted(b.step_kind for b in bookings) == ["collection", "infusion", "manufacturing"]
        assert used_total(uow) == 3
        deadlines = list(
            uow.session.scalars(
                select(PlanDeadline)
                .where(PlanDeadline.plan_id == row.id)
                .order_by(PlanDeadline.due_at)
            )
        )
        kinds = [d.kind for d in deadlines]
        assert kinds[0] == "collection_start" and "product_delivery" in kinds
        assert {d.profile_version for d in deadlines} == {"CD19-FRESH@v1"}
        assert all(d.status == "open" for d in deadlines)
        audit = uow.session.scalar(select(AuditEntry).where(AuditEntry.entity_id == row.public_id))
        assert audit.action == "plan_hold"
        told = set(
            uow.session.scalars(
                select(User.username)
                .join(Notification, Notification.user_id == User.id)
                .where(Notification.plan_id == row.id)
            )
        )
    # Everyone with a role at the three sites, except the coordinator who booked.
    assert told == {"nurse", "operator", "qa", "infusion"}


def test_a_plan_is_booked_all_or_nothing_when_one_window_was_taken_meanwhile(
    new_uow, world, capacity, clock
):
    order = make_order(new_uow, world, clock.now())
    with new_uow() as uow:
        proposal = service.propose_journey(
            uow=uow,
            principal=world.principals["coord"],
            order_public_id=order.public_id,
            earliest_collection=clock.now(),
            now=clock.now(),
        )
    infusion = proposal.plan.step(StepKind.infusion)
    with new_uow() as uow:  # someone else takes the last bed of that day first
        uow.session.execute(
            update(WindowRow)
            .where(WindowRow.starts_at == infusion.start, WindowRow.ends_at == infusion.end)
            .values(used=WindowRow.capacity)
        )
        uow.commit()
    with new_uow() as uow, pytest.raises(TrackerError) as refused:
        order_row = service.lock_order(uow.session, order.public_id, world.principals["coord"])
        service._persist(
            uow.session,
            principal=world.principals["coord"],
            order=order_row,
            proposal=proposal,
            earliest=clock.now(),
            hold_until=None,
            now=clock.now(),
        )
    assert refused.value.reason == "capacity_taken"
    with new_uow() as uow:
        assert used_total(uow) == 1  # only the bed taken by the other booking
        assert uow.session.scalar(select(func.count(JourneyPlan.id))) == 0


def test_the_database_refuses_a_window_counter_past_its_capacity(new_uow, capacity, engine):
    with new_uow() as uow, pytest.raises(IntegrityError):
        uow.session.execute(text("UPDATE capacity_windows SET used = capacity + 1"))
        uow.session.flush()


def test_booking_again_with_a_stale_proposal_is_refused_as_changed(new_uow, world, capacity, clock):
    first = make_order(new_uow, world, clock.now(), mrn="A")
    second = make_order(new_uow, world, clock.now(), mrn="B")
    with new_uow() as uow:
        stale = service.propose_journey(
            uow=uow,
            principal=world.principals["coord"],
            order_public_id=second.public_id,
            earliest_collection=clock.now(),
            now=clock.now(),
        )
    book(new_uow, world, first, clock.now())
    with pytest.raises(TrackerError) as refused:
        book(new_uow, world, second, clock.now(), expected_fingerprint=stale.fingerprint)
    assert refused.value.reason == "plan_changed"
    with pytest.raises(TrackerError) as twice:
        book(new_uow, world, first, clock.now())
    assert twice.value.reason == "plan_exists"


def test_tentative_holds_expire_and_give_their_capacity_back(new_uow, world, capacity, clock):
    order = make_order(new_uow, world, clock.now())
    plan = book(new_uow, world, order, clock.now(), hold_for=timedelta(hours=1))
    with new_uow() as uow:
        assert service.expire_holds(uow=uow, now=clock.now() + timedelta(minutes=59)) == []
        expired = service.expire_holds(uow=uow, now=clock.now() + timedelta(hours=1))
        uow.commit()
    assert expired == [plan.public_id]
    with new_uow() as uow:
        row = uow.session.get(JourneyPlan, plan.id)
        assert row.status == "expired"
        assert used_total(uow) == 0
        statuses = set(
            uow.session.scalars(select(PlanDeadline.status).where(PlanDeadline.plan_id == row.id))
        )
        assert statuses == {"cancelled"}
        note = uow.session.scalar(
            select(Notification).where(
                Notification.plan_id == row.id, Notification.kind == "hold_expired"
            )
        )
        assert note.user_id == world.users["coord"].id
    with new_uow() as uow, pytest.raises(TrackerError) as late:
        service.confirm_plan(
            uow=uow,
            principal=world.principals["coord"],
            plan_public_id=plan.public_id,
            now=clock.now() + timedelta(hours=2),
        )
    assert late.value.reason == "plan_not_live"


def test_a_hold_confirmed_in_time_becomes_a_booking_and_stops_expiring(
    new_uow, world, capacity, clock
):
    order = make_order(new_uow, world, clock.now())
    plan = book(new_uow, world, order, clock.now(), hold_for=timedelta(hours=1))
    with new_uow() as uow:
        service.confirm_plan(
            uow=uow,
            principal=world.principals["coord"],
            plan_public_id=plan.public_id,
            now=clock.now() + timedelta(minutes=30),
        )
        uow.commit()
    with new_uow() as uow:
        assert service.expire_holds(uow=uow, now=clock.now() + timedelta(days=3)) == []
        row = uow.session.get(JourneyPlan, plan.id)
        assert row.status == "booked"
        assert set(
            uow.session.scalars(select(SlotBooking.status).where(SlotBooking.plan_id == row.id))
        ) == {"booked"}


def test_confirming_after_the_hold_lapsed_but_before_the_sweep_is_refused(
    new_uow, world, capacity, clock
):
    order = make_order(new_uow, world, clock.now())
    plan = book(new_uow, world, order, clock.now(), hold_for=timedelta(hours=1))
    with new_uow() as uow, pytest.raises(TrackerError) as late:
        service.confirm_plan(
            uow=uow,
            principal=world.principals["coord"],
            plan_public_id=plan.public_id,
            now=clock.now() + timedelta(hours=1, seconds=1),
        )
    assert late.value.reason == "hold_expired"


def test_cancelling_needs_a_reason_releases_capacity_and_offers_the_slot_to_the_waitlist(
    new_uow, world, capacity, clock
):
    booked = make_order(new_uow, world, clock.now(), mrn="A")
    waiting = make_order(new_uow, world, clock.now(), mrn="B")
    plan = book(new_uow, world, booked, clock.now(), tentative=False)
    with new_uow() as uow:
        service.join_waitlist(
            uow=uow,
            principal=world.principals["coord"],
            order_public_id=waiting.public_id,
            urgency_category="high",
            now=clock.now(),
        )
        uow.commit()
    with new_uow() as uow, pytest.raises(TrackerError) as no_reason:
        service.cancel_plan(
            uow=uow,
            principal=world.principals["coord"],
            plan_public_id=plan.public_id,
            reason=" ",
            now=clock.now(),
        )
    assert no_reason.value.reason == "reason_required"
    with new_uow() as uow:
        service.cancel_plan(
            uow=uow,
            principal=world.principals["coord"],
            plan_public_id=plan.public_id,
            reason="patient withdrew consent",
            now=clock.now(),
        )
        uow.commit()
    with new_uow() as uow:
        assert used_total(uow) == 0
        offer = uow.session.scalar(select(Notification).where(Notification.kind == "slot_freed"))
        assert offer.user_id == world.users["coord"].id
        assert waiting.public_id in offer.body
        assert uow.session.scalar(
            select(AuditEntry.reason).where(AuditEntry.action == "plan_cancel")
        ) == ("patient withdrew consent")


def test_closing_a_day_that_holds_bookings_is_refused_but_other_days_close(
    new_uow, world, capacity, clock
):
    order = make_order(new_uow, world, clock.now())
    book(new_uow, world, order, clock.now())
    with new_uow() as uow, pytest.raises(TrackerError) as refused:
        service.add_closure(
            uow=uow,
            principal=world.principals["coord"],
            site_code="CC1",
            first_day=date(2026, 3, 2),
            last_day=date(2026, 3, 2),
            kind="closure",
            reason="staff training",
            now=clock.now(),
        )
    assert refused.value.reason == "capacity_in_use"
    with new_uow() as uow:
        service.add_closure(
            uow=uow,
            principal=world.principals["coord"],
            site_code="CC1",
            first_day=date(2026, 3, 10),
            last_day=date(2026, 3, 11),
            kind="holiday",
            reason="local holiday",
            now=clock.now(),
        )
        uow.commit()
    with new_uow() as uow:
        chairs = capacity["apheresis_chair"]
        assert windows_of(uow, chairs, utc(2026, 3, 10), utc(2026, 3, 12)) == []
        assert len(windows_of(uow, chairs, utc(2026, 3, 12), utc(2026, 3, 13))) == 2
