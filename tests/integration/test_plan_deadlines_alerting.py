"""A booked plan's dates are watched by the alerting side, and custody events meet them."""

from datetime import timedelta

import pytest
from sqlalchemy import select

from schedules import service
from tests.factories import make_bag
from tests.factories import make_label_print
from tests.factories import make_order
from tests.factories_schedules import build_capacity
from tracker.domain.alerting import PLAN_MILESTONES_MET_BY
from tracker.domain.custody import CustodyState as S
from tracker.models import HandoffDeadline
from tracker.services import custody


@pytest.fixture
def booked(new_uow, world, clock):
    build_capacity(new_uow, world, clock.now())
    order = make_order(new_uow, world, clock.now())
    with new_uow() as uow:
        plan = service.book_plan(
            uow=uow,
            principal=world.principals["coord"],
            order_public_id=order.public_id,
            earliest_collection=clock.now(),
            now=clock.now(),
        )
        uow.commit()
    return order, plan


def milestones(new_uow, order):
    with new_uow() as uow:
        rows = uow.session.scalars(
            select(HandoffDeadline).where(
                HandoffDeadline.order_id == order.id, HandoffDeadline.kind == "plan_milestone"
            )
        )
        return {r.dedupe_key.rsplit(":", 1)[-1]: (r.status, r.due_at) for r in rows}


def test_booking_a_plan_opens_a_watched_deadline_for_each_trackable_milestone(new_uow, booked):
    order, _ = booked
    watched = milestones(new_uow, order)
    assert set(watched) <= set(PLAN_MILESTONES_MET_BY)
    assert {"manufacturing_receipt", "release_decision", "infusion"} <= set(watched)
    assert all(status == "open" for status, _ in watched.values())
    assert "ld_start" not in watched  # no custody event can show it: never watched


def test_the_custody_event_that_fulfils_a_milestone_marks_it_met(new_uow, world, clock, booked):
    order, _ = booked
    bag = make_bag(new_uow, world, order, clock.now())
    make_label_print(new_uow, world, bag, clock.now())
    with new_uow() as uow:
        for to, site in (
            (S.labelled, None),
            (S.collected, None),
            (S.packed, None),
            (S.in_transit, None),
            (S.received, "MF1"),
        ):
            who = "operator" if site == "MF1" else "nurse"
            clock.advance(timedelta(minutes=30))
            custody.change_item_state(
                uow=uow,
                principal=world.principals[who],
                item_public_id=bag.public_id,
                to_state=to,
                now=clock.now(),
                site_code=site,
            )
        uow.commit()
    watched = milestones(new_uow, order)
    assert watched["outbound_pickup"][0] == "met"
    assert watched["manufacturing_receipt"][0] == "met"
    assert watched["release_decision"][0] == "open"


def test_cancelling_the_plan_cancels_its_watched_deadlines(new_uow, world, clock, booked):
    order, plan = booked
    with new_uow() as uow:
        service.cancel_plan(
            uow=uow,
            principal=world.principals["coord"],
            plan_public_id=plan.public_id,
            reason="patient withdrew",
            now=clock.now(),
        )
        uow.commit()
    assert {status for status, _ in milestones(new_uow, order).values()} == {"cancelled"}
