from collections.abc import Iterable
from dataclasses import replace
from datetime import UTC
from datetime import date
from datetime import datetime
from datetime import time
from datetime import timedelta

import pytest
from hypothesis import HealthCheck
from hypothesis import event
from hypothesis import given
from hypothesis import settings
from hypothesis import strategies as st

from schedules.planning import ApheresisMode
from schedules.planning import Change
from schedules.planning import InMemoryCapacity
from schedules.planning import JourneyProfile
from schedules.planning import JourneySites
from schedules.planning import Plan
from schedules.planning import PlanningError
from schedules.planning import PriorityInputs
from schedules.planning import PriorityPolicy
from schedules.planning import SplitDose
from schedules.planning import StepKind
from schedules.planning import knock_on
from schedules.planning import priority_score
from schedules.planning import propose_plan
from schedules.planning import rank_waitlist
from schedules.slots import Booking
from schedules.slots import CapacityTemplate
from schedules.slots import CapacityWindow
from schedules.slots import OpeningHours
from schedules.slots import Resource
from schedules.slots import ResourceKind
from schedules.slots import expand_capacity
from schedules.slots import first_day_starting_at_or_after
from schedules.slots import fits
from schedules.slots import local_date
from schedules.slots import local_day_bounds

# Collection and treatment in Berlin, manufacturing in New York: both switch to summer time in
# March 2026 (New York on 03-08, Berlin on 03-29), inside the journeys planned below.
ZONES = {"C": "Europe/Berlin", "M": "America/New_York", "T": "Europe/Berlin"}
SITES = JourneySites(collection="C", manufacturing="M", treatment="T")
CHAIR = Resource("chair-C", ResourceKind.apheresis_chair, "C")
LINE = Resource("line-M", ResourceKind.manufacturing_slot, "M", product="demo")
BED = Resource("bed-T", ResourceKind.infusion_bed, "T")
WEEKDAYS = range(5)
NOT_SUNDAY = range(6)
NOW = datetime(2026, 2, 1, tzinfo=UTC)
MONDAY = datetime(2026, 3, 2, tzinfo=UTC)
PROFILE = JourneyProfile(product="demo", version="demo-1")


def utc(year: int, month: int, day: int, hour: int = 0, minute: int = 0) -> datetime:
    return datetime(year, month, day, hour, minute, tzinfo=UTC)


def berlin_day(day: date) -> tuple[datetime, datetime]:
    return local_day_bounds(day, "Europe/Berlin")


def templates(
    *,
    chairs: int = 1,
    lines: int = 1,
    beds: int = 1,
    chair_days: Iterable[int] = WEEKDAYS,
    line_days: Iterable[int] = WEEKDAYS,
    bed_days: Iterable[int] = NOT_SUNDAY,
    bed_closures: tuple[tuple[date, date], ...] = (),
) -> list[CapacityTemplate]:
    return [
        CapacityTemplate(
            CHAIR,
            {d: [OpeningHours(time(8), time(16), chairs)] for d in chair_days},
            slot_length=timedelta(hours=4),
        ),
        CapacityTemplate(LINE, {d: [OpeningHours(time(9), time(10), lines)] for d in line_days}),
        CapacityTemplate(
            BED,
            {d: [OpeningHours(time(0), time(0), beds)] for d in bed_days},
            closures=bed_closures,
        ),
    ]


def make_capacity(bookings: Iterable[Booking] = (), **template_options) -> InMemoryCapacity:
    return InMemoryCapacity.from_templates(
        templates(**template_options),
        zones=ZONES,
        start=utc(2026, 2, 1),
        end=utc(2027, 6, 1),
        bookings=bookings,
    )


def line_booking(day: int) -> Booking:
    # The 09:00-10:00 New York start slot, before US summer time (14:00 UTC).
    return Booking("line-M", utc(2026, 3, day, 14), utc(2026, 3, day, 15))


def bed_booking(day: date) -> Booking:
    return Booking("bed-T", *berlin_day(day))


def plan_for(
    capacity: InMemoryCapacity | None = None,
    profile: JourneyProfile = PROFILE,
    earliest: datetime = MONDAY,
    horizon_days: int = 365,
) -> Plan:
    return propose_plan(
        profile,
        sites=SITES,
        earliest_collection=earliest,
        capacity=capacity or make_capacity(),
        now=NOW,
        horizon_days=horizon_days,
    )


def explanation(plan: Plan, kind: StepKind) -> str:
    [found] = [e.message for e in plan.explanations if e.step is kind]
    return found


# --- propose_plan ---------------------------------------------------------------------------


def test_proposes_the_earliest_chain_across_three_sites_when_everything_is_free() -> None:
    plan = plan_for()
    spans = {s.kind: (s.start, s.end) for s in plan.steps}
    assert list(spans) == [
        StepKind.collection,
        StepKind.outbound_shipping,
        StepKind.manufacturing,
        StepKind.release_testing,
        StepKind.return_shipping,
        StepKind.lymphodepletion,
        StepKind.infusion,
    ]
    assert spans[StepKind.collection] == (utc(2026, 3, 2, 7), utc(2026, 3, 2, 11))  # 08-12 CET
    assert spans[StepKind.outbound_shipping] == (utc(2026, 3, 2, 11), utc(2026, 3, 3, 11))
    assert spans[StepKind.manufacturing] == (utc(2026, 3, 3, 14), utc(2026, 3, 12, 14))  # 09 EST
    assert spans[StepKind.release_testing] == (utc(2026, 3, 12, 14), utc(2026, 3, 26, 14))
    assert spans[StepKind.return_shipping] == (utc(2026, 3, 26, 14), utc(2026, 3, 28, 14))
    # LD on days -5..-3 starts the first Berlin day after release, across the 23-hour day.
    assert spans[StepKind.lymphodepletion] == (utc(2026, 3, 26, 23), utc(2026, 3, 29, 22))
    assert spans[StepKind.infusion] == berlin_day(date(2026, 4, 1))
    assert plan.explanations == ()
    assert (plan.product, plan.profile_version, plan.created_at) == ("demo", "demo-1", NOW)


def test_plan_steps_carry_their_deadlines_and_bookings() -> None:
    plan = plan_for()
    assert plan.step(StepKind.outbound_shipping).deadline == utc(2026, 3, 4, 11)  # 72 h - 24 h
    assert plan.step(StepKind.manufacturing).deadline == utc(2026, 3, 5, 11)  # collection + 72 h
    # Infusion at the latest 7 days after the last LD day (2026-03-29).
    assert plan.step(StepKind.infusion).deadline == berlin_day(date(2026, 4, 5))[1]
    assert [b.resource_id for b in plan.bookings()] == ["chair-C", "line-M", "bed-T"]


def test_never_plans_collection_before_now() -> None:
    plan = propose_plan(
        PROFILE,
        sites=SITES,
        earliest_collection=utc(2026, 1, 1),
        capacity=make_capacity(),
        now=utc(2026, 3, 3, 12),
    )
    assert plan.step(StepKind.collection).start == utc(2026, 3, 4, 7)


def test_explains_a_later_collection_window_on_the_same_day() -> None:
    capacity = make_capacity([Booking("chair-C", utc(2026, 3, 2, 7), utc(2026, 3, 2, 11))])
    plan = plan_for(capacity)
    assert plan.step(StepKind.collection).start == utc(2026, 3, 2, 11)
    assert explanation(plan, StepKind.collection) == (
        "apheresis chairs at site C: earlier windows full on 2026-03-02; "
        "first free 2026-03-02 12:00 Europe/Berlin"
    )


def test_explains_a_manufacturing_delay_caused_by_full_slots() -> None:
    capacity = make_capacity([line_booking(3), line_booking(4)])
    plan = plan_for(capacity, replace(PROFILE, fresh_stability_hours=120))
    assert plan.step(StepKind.manufacturing).start == utc(2026, 3, 5, 14)
    assert explanation(plan, StepKind.manufacturing) == (
        "manufacturing slots at site M: full on 2026-03-03..2026-03-04; "
        "first free 2026-03-05 09:00 America/New_York"
    )
    assert [e.step for e in plan.explanations] == [StepKind.manufacturing]


def test_explains_an_infusion_site_closed_until_after_sunday() -> None:
    capacity = make_capacity(bed_closures=((date(2026, 4, 1), date(2026, 4, 4)),))
    plan = plan_for(capacity)
    assert plan.step(StepKind.infusion).local_day == date(2026, 4, 6)
    assert plan.step(StepKind.lymphodepletion).local_day == date(2026, 4, 1)
    assert explanation(plan, StepKind.infusion) == (
        "infusion beds at site T: closed on 2026-04-01..2026-04-05 (Wednesday-Sunday); "
        "first free 2026-04-06 00:00 Europe/Berlin"
    )


def test_fresh_stability_window_forces_a_later_collection_that_reaches_a_free_slot() -> None:
    # Lines full 03-03..03-05: collections on 03-02 and the 03-03 morning cannot reach a
    # manufacturing start within 72 h; the 03-03 afternoon collection reaches 03-06.
    capacity = make_capacity([line_booking(3), line_booking(4), line_booking(5)])
    plan = plan_for(capacity)
    collection = plan.step(StepKind.collection)
    manufacturing = plan.step(StepKind.manufacturing)
    assert collection.start == utc(2026, 3, 3, 11)
    assert manufacturing.start == utc(2026, 3, 6, 14)
    assert manufacturing.deadline is not None
    assert manufacturing.start <= manufacturing.deadline == collection.end + timedelta(hours=72)
    assert explanation(plan, StepKind.collection) == (
        "apheresis chairs at site C: 2026-03-02..2026-03-03 rejected: no manufacturing slot at "
        "site M within the 72 h fresh stability window; first free 2026-03-03 12:00 Europe/Berlin"
    )


def test_fails_with_a_clear_reason_when_fresh_material_can_never_reach_manufacturing() -> None:
    # Collection only on Fridays, manufacturing only on Mondays, material stable for 48 h.
    capacity = make_capacity(chair_days=[4], line_days=[0])
    with pytest.raises(PlanningError) as caught:
        plan_for(capacity, replace(PROFILE, fresh_stability_hours=48), horizon_days=60)
    assert caught.value.code == "fresh_stability_unreachable"
    assert "within the 48 h fresh stability window (24 h transit)" in caught.value.message


def test_fails_when_transit_alone_exceeds_fresh_stability() -> None:
    profile = replace(PROFILE, transit_to_manufacturing_hours=80)
    with pytest.raises(PlanningError) as caught:
        plan_for(profile=profile)
    assert caught.value.code == "stability_shorter_than_transit"
    assert "stable 72 h but transit to site M takes 80 h" in caught.value.message


def test_fails_when_no_chair_is_free_within_the_horizon() -> None:
    with pytest.raises(PlanningError) as caught:
        plan_for(make_capacity(chairs=0), horizon_days=30)
    assert caught.value.code == "no_collection_capacity"


def test_cryopreserved_apheresis_may_wait_for_any_later_manufacturing_slot() -> None:
    capacity = make_capacity(chair_days=[4], line_days=[0])
    profile = replace(PROFILE, apheresis=ApheresisMode.cryopreserved)
    plan = plan_for(capacity, profile)
    assert plan.step(StepKind.collection).start == utc(2026, 3, 6, 7)
    assert plan.step(StepKind.cryopreservation).end == utc(2026, 3, 7, 11)
    assert plan.step(StepKind.outbound_shipping).end == utc(2026, 3, 8, 11)
    manufacturing = plan.step(StepKind.manufacturing)
    assert manufacturing.start == utc(2026, 3, 9, 13)  # 09:00 EDT, the day after the US switch
    assert manufacturing.deadline is None
    assert plan.step(StepKind.outbound_shipping).deadline is None


def test_split_dose_books_the_second_bed_on_day_10() -> None:
    plan = plan_for(profile=replace(PROFILE, split_dose=SplitDose()))
    second = plan.step(StepKind.second_dose)
    assert second.local_day == date(2026, 4, 10)  # day 1 = 04-01
    assert second.deadline == berlin_day(date(2026, 4, 12))[1]
    assert plan.explanations == ()
    assert [b.resource_id for b in plan.bookings()] == ["chair-C", "line-M", "bed-T", "bed-T"]


def test_second_dose_moves_to_the_closest_tolerated_day_when_day_10_is_full() -> None:
    capacity = make_capacity([bed_booking(date(2026, 4, 10))])
    plan = plan_for(capacity, replace(PROFILE, split_dose=SplitDose()))
    assert plan.step(StepKind.second_dose).local_day == date(2026, 4, 9)
    message = explanation(plan, StepKind.second_dose)
    assert "day 10 (2026-04-10) full" in message
    assert "scheduled on day 9 (2026-04-09)" in message


def test_first_infusion_moves_when_no_second_dose_bed_fits_the_tolerance() -> None:
    busy = [bed_booking(date(2026, 4, d)) for d in range(8, 12)]  # 04-12 is a Sunday
    plan = plan_for(make_capacity(busy), replace(PROFILE, split_dose=SplitDose()))
    assert plan.step(StepKind.infusion).local_day == date(2026, 4, 2)
    assert plan.step(StepKind.second_dose).local_day == date(2026, 4, 13)
    assert explanation(plan, StepKind.infusion) == (
        "infusion beds at site T: 2026-04-01 rejected: no bed for the second dose on "
        "day 10 +- 2; first free 2026-04-02 00:00 Europe/Berlin"
    )


def test_second_dose_never_shares_a_full_multi_week_cap_with_the_first_dose() -> None:
    # Beds allow 1 patient a day, but only 1 dose in all from 03-30 to 04-19 (strictest wins):
    # the first dose may fall inside that cap only if the second dose falls after it.
    cap = CapacityWindow(
        "bed-T", berlin_day(date(2026, 3, 30))[0], berlin_day(date(2026, 4, 20))[0], 1
    )
    windows = [*make_capacity().all_windows, cap]
    capacity = InMemoryCapacity(resources=[CHAIR, LINE, BED], windows=windows, zones=ZONES)
    plan = plan_for(capacity, replace(PROFILE, split_dose=SplitDose()))
    assert plan.step(StepKind.infusion).local_day == date(2026, 4, 9)
    assert plan.step(StepKind.second_dose).local_day == date(2026, 4, 20)  # day 12
    first, second = plan.bookings()[2:]
    assert fits(windows, [first], second)
    assert "2026-04-01..2026-04-04 rejected: no bed for the second dose" in explanation(
        plan, StepKind.infusion
    )


# --- knock_on -------------------------------------------------------------------------------


def by_step(changes: Iterable[Change]) -> dict[StepKind, Change]:
    return {c.step: c for c in changes}


def test_delaying_manufacturing_pushes_every_later_step_and_flags_fresh_stability() -> None:
    plan = plan_for()
    changes = knock_on(plan, StepKind.manufacturing, utc(2026, 3, 6, 14), PROFILE)
    assert [c.step for c in changes] == [
        StepKind.manufacturing,
        StepKind.release_testing,
        StepKind.return_shipping,
        StepKind.lymphodepletion,
        StepKind.infusion,
    ]
    manufacturing, release, shipping, ld, infusion = changes
    assert [v.code for v in manufacturing.violations] == ["fresh_stability_exceeded"]
    assert (release.new_start, release.new_end) == (utc(2026, 3, 15, 14), utc(2026, 3, 29, 14))
    assert shipping.new_end == utc(2026, 3, 31, 14)
    assert local_date(ld.new_start, "Europe/Berlin") == date(2026, 3, 30)
    assert (infusion.new_start, infusion.new_end) == berlin_day(date(2026, 4, 4))
    assert infusion.violations == ()
    assert [c.needs_rebooking for c in changes] == [True, False, False, False, True]


def test_short_infusion_delay_inside_the_window_keeps_ld_without_violations() -> None:
    plan = plan_for()
    changes = knock_on(plan, StepKind.infusion, utc(2026, 4, 3, 12), PROFILE)
    [infusion] = changes
    assert (infusion.new_start, infusion.new_end) == berlin_day(date(2026, 4, 3))
    assert infusion.violations == ()


def test_infusion_delay_past_the_window_is_flagged_without_re_ld_below_threshold() -> None:
    plan = plan_for()
    [infusion] = knock_on(plan, StepKind.infusion, utc(2026, 4, 7, 12), PROFILE)
    assert [v.code for v in infusion.violations] == ["infusion_window_exceeded"]


def test_infusion_delay_beyond_the_re_ld_threshold_proposes_a_repeat_ld() -> None:
    plan = plan_for()
    changes = by_step(knock_on(plan, StepKind.infusion, utc(2026, 4, 16, 12), PROFILE))
    infusion, ld = changes[StepKind.infusion], changes[StepKind.lymphodepletion]
    assert [v.code for v in infusion.violations] == [
        "infusion_window_exceeded",
        "re_ld_required",
    ]
    assert local_date(ld.new_start, "Europe/Berlin") == date(2026, 4, 11)
    assert [v.code for v in ld.violations] == ["re_ld_required"]


def test_moving_ld_later_pushes_infusion_back_to_day_0() -> None:
    plan = plan_for()
    changes = by_step(knock_on(plan, StepKind.lymphodepletion, utc(2026, 3, 30, 9), PROFILE))
    infusion = changes[StepKind.infusion]
    assert (infusion.new_start, infusion.new_end) == berlin_day(date(2026, 4, 4))
    assert all(not c.violations for c in changes.values())


def test_moving_ld_before_release_is_flagged() -> None:
    plan = plan_for()
    [ld, *_] = knock_on(plan, StepKind.lymphodepletion, utc(2026, 3, 25, 9), PROFILE)
    assert "ld_before_release" in [v.code for v in ld.violations]


def test_moving_a_step_before_its_predecessor_is_flagged() -> None:
    plan = plan_for()
    [manufacturing] = knock_on(plan, StepKind.manufacturing, utc(2026, 3, 3, 10), PROFILE)
    assert [v.code for v in manufacturing.violations] == ["before_predecessor"]
    assert manufacturing.moved


def test_split_dose_follows_a_delayed_first_infusion_back_to_day_10() -> None:
    profile = replace(PROFILE, split_dose=SplitDose())
    plan = plan_for(profile=profile)
    changes = by_step(knock_on(plan, StepKind.infusion, utc(2026, 4, 4, 12), profile))
    second = changes[StepKind.second_dose]
    assert local_date(second.new_start, "Europe/Berlin") == date(2026, 4, 13)


def test_knock_on_refuses_a_plan_made_with_another_profile_version() -> None:
    plan = plan_for()
    with pytest.raises(ValueError, match="demo-1"):
        knock_on(plan, StepKind.infusion, utc(2026, 4, 3), replace(PROFILE, version="demo-2"))


# --- profile --------------------------------------------------------------------------------


def test_profile_refuses_a_day_0_outside_its_own_infusion_window() -> None:
    with pytest.raises(ValueError, match="infusion window"):
        JourneyProfile(ld_start_day=-12)


# --- priority -------------------------------------------------------------------------------


def test_priority_components_sum_to_the_total_and_name_their_inputs() -> None:
    score = priority_score(
        PriorityInputs(
            days_waiting=40,
            urgency_category="high",
            bridging_therapy_failing=True,
            prior_slot_cancellations=1,
        )
    )
    assert score.total == sum(c.contribution for c in score.components)
    assert [(c.name, c.value, c.weight, c.contribution) for c in score.components] == [
        ("days_waiting", 40.0, 1.0, 40.0),
        ("disease_urgency", 2.0, 30.0, 60.0),
        ("bridging_therapy_failing", 1.0, 40.0, 40.0),
        ("prior_slot_cancellations", 1.0, 15.0, 15.0),
    ]
    assert score.total == 155.0


def test_priority_weights_and_caps_are_data() -> None:
    policy = PriorityPolicy(
        version="committee-2026-05",
        weights={
            "days_waiting": 0.5,
            "disease_urgency": 10.0,
            "bridging_therapy_failing": 0.0,
            "prior_slot_cancellations": 5.0,
        },
        caps={"days_waiting": 30, "prior_slot_cancellations": 2},
    )
    score = priority_score(PriorityInputs(90, "critical", True, 5), policy)
    assert [c.contribution for c in score.components] == [15.0, 30.0, 0.0, 10.0]
    assert (score.total, score.policy_version) == (55.0, "committee-2026-05")


def test_unknown_urgency_category_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown urgency category"):
        priority_score(PriorityInputs(1, "whenever"))


def test_waitlist_is_ranked_by_score_then_days_waiting() -> None:
    ranked = rank_waitlist(
        [
            ("p1", PriorityInputs(10, "routine")),
            ("p2", PriorityInputs(0, "elevated", prior_slot_cancellations=0)),
            ("p3", PriorityInputs(30, "routine")),
            ("p4", PriorityInputs(20, "routine", prior_slot_cancellations=1)),
        ]
    )
    # p2 and p3 tie on 30 points; p3 has waited longer.
    assert [pid for pid, _ in ranked] == ["p4", "p3", "p2", "p1"]


# --- property: never more than free -------------------------------------------------------


def week_windows(capacity: int) -> list[CapacityWindow]:
    # A weekly cap on beds that overlaps the daily windows: strictest wins.
    windows = []
    monday = date(2026, 2, 23)
    while monday < date(2026, 10, 1):
        start = berlin_day(monday)[0]
        end = berlin_day(monday + timedelta(days=7))[0]
        windows.append(CapacityWindow("bed-T", start, end, capacity))
        monday += timedelta(days=7)
    return windows


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    chairs=st.integers(1, 2),
    lines=st.integers(1, 2),
    beds=st.integers(0, 2),
    weekly_beds=st.none() | st.integers(0, 4),
    chair_days=st.sets(st.integers(0, 6), min_size=2),
    line_days=st.sets(st.integers(0, 6), min_size=2),
    bed_days=st.sets(st.integers(0, 6), min_size=2),
    cryopreserved=st.booleans(),
    split=st.booleans(),
    stability=st.integers(24, 120),
    taken=st.lists(st.integers(0, 10_000), max_size=60),
    earliest_hours=st.integers(0, 24 * 20),
)
def test_proposed_plans_never_use_capacity_beyond_what_is_free(
    chairs: int,
    lines: int,
    beds: int,
    weekly_beds: int | None,
    chair_days: set[int],
    line_days: set[int],
    bed_days: set[int],
    cryopreserved: bool,
    split: bool,
    stability: int,
    taken: list[int],
    earliest_hours: int,
) -> None:
    start, end = utc(2026, 3, 1), utc(2026, 10, 1)
    windows = [
        w
        for t in templates(
            chairs=chairs,
            lines=lines,
            beds=beds,
            chair_days=chair_days,
            line_days=line_days,
            bed_days=bed_days,
        )
        for w in expand_capacity(t, ZONES[t.resource.site], start, end)
    ]
    if weekly_beds is not None:
        windows += week_windows(weekly_beds)
    existing = [
        Booking(w.resource_id, w.start, w.end) for w in (windows[i % len(windows)] for i in taken)
    ]
    capacity = InMemoryCapacity(
        resources=[CHAIR, LINE, BED], windows=windows, zones=ZONES, bookings=existing
    )
    profile = replace(
        PROFILE,
        apheresis=ApheresisMode.cryopreserved if cryopreserved else ApheresisMode.fresh,
        fresh_stability_hours=stability,
        split_dose=SplitDose() if split else None,
    )
    booked = list(existing)
    for patient in range(3):
        try:
            plan = plan_for(
                capacity,
                profile,
                earliest=MONDAY + timedelta(hours=earliest_hours + patient),
                horizon_days=90,
            )
        except PlanningError as error:
            event(error.code)
            break
        event("planned")
        for booking in plan.bookings():
            # Independent oracle: slots.fits over every window and every booking so far.
            assert fits(windows, booked, booking), booking
            booked.append(booking)
        assert_plan_respects_its_rules(plan, profile)
        capacity.book(plan.bookings())


def assert_plan_respects_its_rules(plan: Plan, profile: JourneyProfile) -> None:
    chain = [s for s in plan.steps if s.kind not in {StepKind.lymphodepletion, StepKind.infusion}]
    chain = [s for s in chain if s.kind is not StepKind.second_dose]
    for before, after in zip(chain, chain[1:], strict=False):
        assert after.start >= before.end
    collection, manufacturing = plan.step(StepKind.collection), plan.step(StepKind.manufacturing)
    if profile.apheresis is ApheresisMode.fresh:
        assert manufacturing.start <= collection.end + timedelta(
            hours=profile.fresh_stability_hours
        )
    infusion, ld = plan.step(StepKind.infusion), plan.step(StepKind.lymphodepletion)
    assert infusion.start >= plan.step(StepKind.return_shipping).end
    release_end = plan.step(StepKind.release_testing).end
    assert ld.local_day >= first_day_starting_at_or_after(release_end, ld.tz)
    assert (infusion.local_day - ld.local_day).days == profile.ld_lead_days
    if profile.split_dose is not None:
        number = (plan.step(StepKind.second_dose).local_day - infusion.local_day).days + 1
        assert abs(number - profile.split_dose.second_dose_day) <= profile.split_dose.tolerance_days
