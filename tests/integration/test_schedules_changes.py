from datetime import UTC
from datetime import datetime
from datetime import timedelta

import pytest
from sqlalchemy import func
from sqlalchemy import select

from schedules import service
from schedules.models import JourneyPlan
from schedules.models import Notification
from schedules.models import PlanDeadline
from schedules.models import PlanStepRow
from schedules.models import SlotBooking
from schedules.models import WaitlistEntry
from schedules.models import WindowRow
from schedules.planning import StepKind
from tests.factories import make_order
from tests.factories_schedules import build_capacity
from tracker.domain.errors import TrackerError
from tracker.models import AuditEntry
from tracker.models import ProductProfile
from tracker.models import User


def utc(*args):
    return datetime(*args, tzinfo=UTC)


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
            tentative=False,
        )
        uow.commit()
    return plan


def preview(new_uow, world, plan, step, new_start, now):
    with new_uow() as uow:
        return service.preview_reschedule(
            uow=uow,
            principal=world.principals["coord"],
            plan_public_id=plan.public_id,
            step=step,
            new_start=new_start,
            now=now,
        )


def reschedule(new_uow, world, plan, step, new_start, now, *, reason, confirm):
    with new_uow() as uow:
        done = service.reschedule_step(
            uow=uow,
            principal=world.principals["coord"],
            plan_public_id=plan.public_id,
            step=step,
            new_start=new_start,
            reason=reason,
            confirm=confirm,
            now=now,
        )
        uow.commit()
        return done


def test_moving_collection_a_day_shows_the_knock_on_down_to_infusion(new_uow, world, booked, clock):
    # Tuesday 08:00 New York (13:00 UTC) instead of Monday 12:00.
    shown = preview(new_uow, world, booked, StepKind.collection, utc(2026, 3, 3, 13), clock.now())
    moves = {m.step: m for m in shown.replan.moves}
    assert moves[StepKind.collection].new_start == utc(2026, 3, 3, 13)
    manufacturing = moves[StepKind.manufacturing]
    # Arrival Wednesday 17:00 UTC misses Wednesday's 09:00 Amsterdam slot: Thursday's is next.
    assert manufacturing.snapped_from == utc(2026, 3, 4, 17)
    assert manufacturing.new_start == utc(2026, 3, 5, 8)
    assert manufacturing.rebooked
    assert moves[StepKind.infusion].new_start > moves[StepKind.infusion].old_start
    assert shown.replan.problems == ()
    assert any("first free window" in e.message for e in shown.replan.plan.explanations)


def test_a_reschedule_needs_a_reason_and_the_confirmation_of_exactly_what_was_shown(
    new_uow, world, booked, clock
):
    new_start = utc(2026, 3, 3, 13)
    shown = preview(new_uow, world, booked, StepKind.collection, new_start, clock.now())
    with pytest.raises(TrackerError) as no_reason:
        reschedule(
            new_uow, world, booked, StepKind.collection, new_start, clock.now(),
            reason="", confirm=shown.fingerprint,
        )  # fmt: skip
    assert no_reason.value.reason == "reason_required"
    with pytest.raises(TrackerError) as unconfirmed:
        reschedule(
            new_uow, world, booked, StepKind.collection, new_start, clock.now(),
            reason="patient has a fever", confirm="",
        )  # fmt: skip
    assert unconfirmed.value.reason == "plan_changed"
    # Someone else takes Thursday's manufacturing slot after the preview: the change is refused.
    with new_uow() as uow:
        other = make_order(new_uow, world, clock.now(), mrn="OTHER")
        service.book_plan(
            uow=uow,
            principal=world.principals["coord"],
            order_public_id=other.public_id,
            earliest_collection=utc(2026, 3, 3, 13),
            now=clock.now(),
        )
        uow.commit()
    with pytest.raises(TrackerError) as changed:
        reschedule(
            new_uow, world, booked, StepKind.collection, new_start, clock.now(),
            reason="patient has a fever", confirm=shown.fingerprint,
        )  # fmt: skip
    assert changed.value.reason == "plan_changed"


def test_a_confirmed_reschedule_rebooks_refreshes_deadlines_audits_and_notifies(
    new_uow, world, booked, clock
):
    new_start = utc(2026, 3, 3, 13)
    shown = preview(new_uow, world, booked, StepKind.collection, new_start, clock.now())
    reschedule(
        new_uow, world, booked, StepKind.collection, new_start, clock.now(),
        reason="patient has a fever", confirm=shown.fingerprint,
    )  # fmt: skip
    with new_uow() as uow:
        steps = {
            s.kind: s
            for s in uow.session.scalars(
                select(PlanStepRow).where(PlanStepRow.plan_id == booked.id)
            )
        }
        assert steps["collection"].starts_at == new_start
        assert steps["manufacturing"].starts_at == utc(2026, 3, 5, 8)
        statuses = sorted(
            uow.session.scalars(select(SlotBooking.status).where(SlotBooking.plan_id == booked.id))
        )
        assert statuses == ["booked"] * 3 + ["released"] * 3
        assert uow.session.scalar(select(func.sum(WindowRow.used))) == 3
        live = {
            b.id
            for b in uow.session.scalars(select(SlotBooking).where(SlotBooking.status == "booked"))
        }
        assert {s.booking_id for s in steps.values() if s.booking_id} == live
        by_status = dict(
            uow.session.execute(
                select(PlanDeadline.status, func.count())
                .where(PlanDeadline.plan_id == booked.id)
                .group_by(PlanDeadline.status)
            ).all()
        )
        assert by_status["superseded"] == by_status["open"]
        start = uow.session.scalar(
            select(PlanDeadline.due_at).where(
                PlanDeadline.plan_id == booked.id,
                PlanDeadline.status == "open",
                PlanDeadline.kind == "collection_start",
            )
        )
        assert start == new_start
        audit = uow.session.scalar(select(AuditEntry).where(AuditEntry.action == "plan_reschedule"))
        assert audit.reason == "patient has a fever"
        assert audit.changes["collection"][1].startswith(new_start.isoformat())
        told = set(
            uow.session.scalars(
                select(User.username)
                .join(Notification, Notification.user_id == User.id)
                .where(Notification.kind == "plan_rescheduled")
            )
        )
        assert told == {"nurse", "operator", "qa", "infusion"}
        assert uow.session.get(JourneyPlan, booked.id).version_id > booked.version_id


def test_delaying_infusion_past_the_re_ld_limit_flags_it_but_never_moves_ld(
    new_uow, world, booked, clock
):
    with new_uow() as uow:
        infusion = uow.session.scalar(
            select(PlanStepRow).where(
                PlanStepRow.plan_id == booked.id, PlanStepRow.kind == "infusion"
            )
        )
        ld = uow.session.scalar(
            select(PlanStepRow).where(
                PlanStepRow.plan_id == booked.id, PlanStepRow.kind == "lymphodepletion"
            )
        )
        old_infusion, old_ld = infusion.starts_at, ld.starts_at
    shown = preview(
        new_uow, world, booked, StepKind.infusion, old_infusion + timedelta(days=20), clock.now()
    )
    moves = {m.step: m for m in shown.replan.moves}
    codes = {v.code for v in moves[StepKind.infusion].violations}
    assert {"re_ld_required", "infusion_window_exceeded"} <= codes
    assert not moves[StepKind.lymphodepletion].moved
    assert moves[StepKind.lymphodepletion].new_start == old_ld
    assert "clinical decision" in moves[StepKind.lymphodepletion].violations[0].message


def test_editing_journey_numbers_creates_a_new_profile_version_used_by_new_plans(
    new_uow, world, clock
):
    build_capacity(new_uow, world, clock.now())
    with new_uow() as uow, pytest.raises(TrackerError) as not_admin:
        service.update_journey_profile(
            uow=uow,
            principal=world.principals["coord"],
            code="CD19-FRESH",
            values={"manufacturing_days": 3},
            confirmed=["manufacturing_days"],
            reason="rapid process",
            now=clock.now(),
        )
    assert not_admin.value.reason == "forbidden"
    with new_uow() as uow, pytest.raises(TrackerError) as invalid:
        service.update_journey_profile(
            uow=uow,
            principal=world.principals["admin"],
            code="CD19-FRESH",
            values={"ld_start_day": 2},
            confirmed=[],
            reason="typo",
            now=clock.now(),
        )
    assert invalid.value.reason == "invalid_request"
    with new_uow() as uow:
        service.update_journey_profile(
            uow=uow,
            principal=world.principals["admin"],
            code="CD19-FRESH",
            values={"manufacturing_days": 3, "release_testing_days": 3},
            confirmed=["manufacturing_days", "release_testing_days"],
            reason="rapid process and rapid sterility test per the current label",
            now=clock.now(),
        )
        uow.commit()
    order = make_order(new_uow, world, clock.now())
    with new_uow() as uow:
        versions = list(
            uow.session.execute(
                select(ProductProfile.version, ProductProfile.active)
                .where(ProductProfile.code == "CD19-FRESH")
                .order_by(ProductProfile.version)
            )
        )
        assert versions == [(1, False), (2, True)]
        proposal = service.propose_journey(
            uow=uow,
            principal=world.principals["coord"],
            order_public_id=order.public_id,
            earliest_collection=clock.now(),
            now=clock.now(),
        )
        manufacturing = proposal.plan.step(StepKind.manufacturing)
        assert manufacturing.end - manufacturing.start == timedelta(days=3)
        assert proposal.plan.profile_version == "CD19-FRESH@v2"
        assert "manufacturing_days" not in proposal.unconfirmed
        assert "fresh_stability_hours" in proposal.unconfirmed
        audit = uow.session.scalar(select(AuditEntry).where(AuditEntry.action == "update_journey"))
        assert audit.changes["manufacturing_days"] == [9, 3]


def test_the_waitlist_ranks_by_a_transparent_score_and_audits_committee_changes(
    new_uow, world, clock
):
    first = make_order(new_uow, world, clock.now(), mrn="A")
    second = make_order(new_uow, world, clock.now(), mrn="B")
    with new_uow() as uow:
        early = service.join_waitlist(
            uow=uow,
            principal=world.principals["coord"],
            order_public_id=first.public_id,
            urgency_category="routine",
            now=clock.now() - timedelta(days=40),
        )
        late = service.join_waitlist(
            uow=uow,
            principal=world.principals["coord"],
            order_public_id=second.public_id,
            urgency_category="high",
            bridging_therapy_failing=True,
            now=clock.now(),
        )
        uow.commit()
    with new_uow() as uow:
        ranked = service.rank_entries(uow.session, site_id=world.sites["MF1"].id, now=clock.now())
        # 40 days waiting (40) loses to high urgency (60) plus failing bridging therapy (40).
        assert [e.public_id for e, _ in ranked] == [late.public_id, early.public_id]
        assert [c.contribution for c in ranked[1][1].components] == [40.0, 0.0, 0.0, 0.0]
    with new_uow() as uow, pytest.raises(TrackerError) as no_reason:
        service.update_waitlist_entry(
            uow=uow,
            principal=world.principals["coord"],
            entry_public_id=early.public_id,
            urgency_category="critical",
            reason="",
            now=clock.now(),
        )
    assert no_reason.value.reason == "reason_required"
    with new_uow() as uow:
        service.update_waitlist_entry(
            uow=uow,
            principal=world.principals["coord"],
            entry_public_id=early.public_id,
            urgency_category="critical",
            prior_slot_cancellations=1,
            reason="committee meeting 2026-03-02",
            now=clock.now(),
        )
        uow.commit()
    with new_uow() as uow:
        ranked = service.rank_entries(uow.session, site_id=world.sites["MF1"].id, now=clock.now())
        assert ranked[0][0].public_id == early.public_id  # 40 + 90 + 15 = 145 > 100
        audit = uow.session.scalar(select(AuditEntry).where(AuditEntry.action == "waitlist_update"))
        assert audit.changes == {
            "prior_slot_cancellations": [0, 1],
            "urgency_category": ["routine", "critical"],
        }
        with pytest.raises(TrackerError) as twice:
            service.join_waitlist(
                uow=uow,
                principal=world.principals["coord"],
                order_public_id=first.public_id,
                urgency_category="routine",
                now=clock.now(),
            )
        assert twice.value.reason == "conflict"


def test_booking_a_plan_takes_the_order_off_the_waitlist(new_uow, world, clock):
    build_capacity(new_uow, world, clock.now())
    order = make_order(new_uow, world, clock.now())
    with new_uow() as uow:
        service.join_waitlist(
            uow=uow,
            principal=world.principals["coord"],
            order_public_id=order.public_id,
            urgency_category="elevated",
            now=clock.now(),
        )
        service.book_plan(
            uow=uow,
            principal=world.principals["coord"],
            order_public_id=order.public_id,
            earliest_collection=clock.now(),
            now=clock.now(),
        )
        uow.commit()
    with new_uow() as uow:
        assert uow.session.scalar(select(WaitlistEntry.status)) == "placed"


def test_staff_of_other_sites_cannot_plan_an_order(new_uow, world, clock):
    build_capacity(new_uow, world, clock.now())
    order = make_order(new_uow, world, clock.now())
    for who in ("coord2", "operator"):
        with new_uow() as uow, pytest.raises(TrackerError) as refused:
            service.book_plan(
                uow=uow,
                principal=world.principals[who],
                order_public_id=order.public_id,
                earliest_collection=clock.now(),
                now=clock.now(),
            )
        assert refused.value.reason in {"not_found", "forbidden"}
