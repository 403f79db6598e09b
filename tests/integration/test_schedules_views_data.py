from datetime import date
from datetime import timedelta

from schedules import queries
from schedules import service
from schedules.jobs import sweep_expired_holds
from schedules.models import JourneyPlan
from tests.factories import make_order
from tests.factories_schedules import build_capacity
from tracker.jobs import JobContext
from tracker.scheduler import jobs


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


def test_the_week_calendar_groups_windows_by_local_day_across_the_dst_switch(new_uow, world, clock):
    build_capacity(new_uow, world, clock.now())
    with new_uow() as uow:
        week = queries.site_calendar(
            uow.session, world.principals["coord"], site_code="TC1", day=date(2026, 3, 2), days=7
        )
        switch = queries.site_calendar(
            uow.session, world.principals["coord"], site_code="TC1", day=date(2026, 3, 7), days=3
        )
    (beds,) = week["resources"]
    # Monday's bed window had begun (00:00 New York) before the capacity was defined at T0.
    assert [c["capacity"] for c in beds["cells"]] == [0, 1, 1, 1, 1, 1, 0]
    saturday, sunday, monday = switch["resources"][0]["cells"]
    # Each window is the whole local day in New York; the clocks go forward on Sunday 03-08.
    assert [w["start"] for w in saturday["windows"] + monday["windows"]] == ["00:00", "00:00"]
    assert saturday["windows"][0]["starts_at"].hour == 5  # EST, UTC-5
    assert monday["windows"][0]["starts_at"].hour == 4  # EDT, UTC-4
    assert sunday["capacity"] == 0


def test_calendar_order_plan_and_feed_show_bookings_by_opaque_reference_only(new_uow, world, clock):
    build_capacity(new_uow, world, clock.now())
    order = make_order(new_uow, world, clock.now(), mrn="MRN-SECRET")
    plan = book(new_uow, world, order, clock.now())
    with new_uow() as uow:
        cal = queries.site_calendar(
            uow.session, world.principals["nurse"], site_code="CC1", day=date(2026, 3, 2), days=1
        )
        chips = [
            b for c in cal["resources"][0]["cells"] for w in c["windows"] for b in w["bookings"]
        ]
        assert [(b["plan"], b["tentative"]) for b in chips] == [(plan.public_id, True)]
        detail = queries.order_plan(
            uow.session, world.principals["coord"], order.public_id, clock.now()
        )
        assert detail["plan"]["public_id"] == plan.public_id
        assert len(detail["plan"]["timeline"]["bars"]) == 7
        assert detail["plan"]["deadlines"][0]["kind"] == "collection_start"
        site = queries.visible_site(uow.session, world.principals["infusion"], "TC1")
        events = queries.feed_events(uow.session, site, now=clock.now(), base_url="https://x")
        text = " ".join(e.summary + e.description for e in events)
        assert {e.status for e in events} == {"TENTATIVE"}
        assert "MRN-SECRET" not in text and order.coi not in text and "Patient" not in text
        assert any("Lymphodepletion" in e.summary for e in events)


def test_the_worker_registry_sweeps_expired_holds_with_a_stable_job_id(
    new_uow, session_factory, world, clock, settings
):
    build_capacity(new_uow, world, clock.now())
    plan = book(new_uow, world, make_order(new_uow, world, clock.now()), clock.now(),
                hold_for=timedelta(hours=1))  # fmt: skip
    ids = {job.id: job for job in jobs(settings)}
    assert {"schedules-expire-holds", "schedules-extend-capacity"} <= set(ids)
    assert ids["schedules-expire-holds"].func is sweep_expired_holds
    clock.advance(timedelta(hours=2))
    ctx = JobContext(session_factory, clock, settings, name="test")
    sweep_expired_holds(ctx)
    sweep_expired_holds(ctx)  # idempotent: nothing left to expire
    with new_uow() as uow:
        assert uow.session.get(JourneyPlan, plan.id).status == "expired"


def test_the_capacity_horizon_job_only_adds_the_days_that_came_into_range(new_uow, world, clock):
    build_capacity(new_uow, world, clock.now())
    with new_uow() as uow:
        assert service.extend_capacity(uow=uow, now=clock.now()) == 0
        added = service.extend_capacity(uow=uow, now=clock.now() + timedelta(days=7))
        uow.commit()
    # One more week: 10 chair windows, 5 line windows and 6 bed windows.
    assert added == 21
