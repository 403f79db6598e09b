"""Pure schedules rules: handoff deadlines, ICS rendering, profile data, rescheduling."""

from dataclasses import fields
from datetime import UTC
from datetime import datetime
from datetime import time
from datetime import timedelta

import icalendar
import pytest
from hypothesis import given
from hypothesis import strategies as st

from schedules.deadlines import DeadlineKind
from schedules.deadlines import plan_deadlines
from schedules.ics import IcsEvent
from schedules.ics import escape_text
from schedules.ics import fold
from schedules.ics import render_calendar
from schedules.planning import ApheresisMode
from schedules.planning import InMemoryCapacity
from schedules.planning import JourneyProfile
from schedules.planning import JourneySites
from schedules.planning import SplitDose
from schedules.planning import StepKind
from schedules.planning import propose_plan
from schedules.profiles import FIELD_NAMES
from schedules.profiles import build_profile
from schedules.profiles import journey_profile
from schedules.profiles import unconfirmed_fields
from schedules.rescheduling import replan_step
from schedules.slots import CapacityTemplate
from schedules.slots import OpeningHours
from schedules.slots import Resource
from schedules.slots import ResourceKind

ZONES = {"C": "America/New_York", "M": "Europe/Amsterdam", "T": "America/New_York"}
SITES = JourneySites(collection="C", manufacturing="M", treatment="T")
NOW = datetime(2026, 3, 2, 14, tzinfo=UTC)
PROFILE = JourneyProfile(product="demo", version="demo@v1")


def utc(*args):
    return datetime(*args, tzinfo=UTC)


def capacity(*, lines_on=range(5), split=False):
    templates = [
        CapacityTemplate(
            Resource("chair", ResourceKind.apheresis_chair, "C"),
            {d: [OpeningHours(time(8), time(16), 1)] for d in range(5)},
            slot_length=timedelta(hours=4),
        ),
        CapacityTemplate(
            Resource("line", ResourceKind.manufacturing_slot, "M", product="demo"),
            {d: [OpeningHours(time(9), time(10), 1)] for d in lines_on},
        ),
        CapacityTemplate(
            Resource("bed", ResourceKind.infusion_bed, "T"),
            {d: [OpeningHours(time(0), time(0), 1)] for d in range(6)},
        ),
    ]
    return InMemoryCapacity.from_templates(
        templates, zones=ZONES, start=utc(2026, 3, 1), end=utc(2027, 4, 1)
    )


def plan(profile=PROFILE, cap=None):
    return propose_plan(
        profile, sites=SITES, earliest_collection=NOW, capacity=cap or capacity(), now=NOW
    )


# --- deadlines ------------------------------------------------------------------------------


def test_a_fresh_plan_yields_every_handoff_deadline_in_due_order():
    deadlines = plan_deadlines(plan())
    kinds = [d.kind for d in deadlines]
    assert kinds[0] is DeadlineKind.collection_start
    assert DeadlineKind.cryopreservation_complete not in kinds
    assert DeadlineKind.second_dose not in kinds
    expected = {
        DeadlineKind.outbound_pickup,
        DeadlineKind.fresh_stability_limit,
        DeadlineKind.manufacturing_receipt,
        DeadlineKind.manufacturing_start,
        DeadlineKind.release_decision,
        DeadlineKind.product_delivery,
        DeadlineKind.ld_start,
        DeadlineKind.infusion,
        DeadlineKind.infusion_window_end,
    }
    assert expected <= set(kinds)
    assert [d.due_at for d in deadlines] == sorted(d.due_at for d in deadlines)
    assert all(d.due_at.utcoffset() == timedelta(0) for d in deadlines)


def test_deadlines_name_the_site_that_acts_and_say_what_is_due_in_its_local_time():
    p = plan()
    by_kind = {d.kind: d for d in plan_deadlines(p)}
    pickup = by_kind[DeadlineKind.outbound_pickup]
    assert pickup.site == "C" and pickup.due_at == p.step(StepKind.outbound_shipping).start
    stability = by_kind[DeadlineKind.fresh_stability_limit]
    assert stability.site == "M"
    assert stability.due_at == p.step(StepKind.collection).end + timedelta(hours=72)
    delivery = by_kind[DeadlineKind.product_delivery]
    assert delivery.site == "T" and delivery.description.endswith("America/New_York")
    assert by_kind[DeadlineKind.infusion_window_end].due_at == p.step(StepKind.infusion).deadline


def test_cryopreserved_and_split_dose_plans_add_their_own_deadlines():
    profile = JourneyProfile(
        product="demo",
        version="demo@v2",
        apheresis=ApheresisMode.cryopreserved,
        split_dose=SplitDose(10, 2),
    )
    kinds = {d.kind for d in plan_deadlines(plan(profile))}
    assert DeadlineKind.cryopreservation_complete in kinds
    assert DeadlineKind.fresh_stability_limit not in kinds
    assert {DeadlineKind.second_dose, DeadlineKind.second_dose_window_end} <= kinds


# --- ICS ------------------------------------------------------------------------------------


def test_text_values_escape_backslash_semicolon_comma_and_newlines():
    assert escape_text("a\\b;c,d\ne\r\nf") == "a\\\\b\\;c\\,d\\ne\\nf"


@given(st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=400))
def test_folding_keeps_lines_within_75_octets_and_unfolds_to_the_original(line):
    line = line.replace("\r", "").replace("\n", "")
    folded = fold("SUMMARY:" + line)
    for part in folded.split("\r\n"):
        assert len(part.encode("utf-8")) <= 75
    assert folded.replace("\r\n ", "") == "SUMMARY:" + line


def test_a_calendar_renders_crlf_utc_events_that_a_real_parser_reads_back():
    event = IcsEvent(
        uid="BKG-1@coi-tracker",
        start=utc(2026, 3, 9, 12),
        end=utc(2026, 3, 9, 16),
        summary="Apheresis collection · PLN-ABC; chair, 2",
        description="Plan PLN-ABC, order ORD-1; " + "long text " * 20,
        status="TENTATIVE",
        sequence=3,
        categories=("Apheresis collection",),
    )
    body = render_calendar(name="Site North", events=[event], now=NOW)
    assert body.endswith(b"END:VCALENDAR\r\n")
    assert b"\n" not in body.replace(b"\r\n", b"")
    assert b"DTSTART:20260309T120000Z\r\n" in body
    assert b"DTSTAMP:20260302T140000Z\r\n" in body
    parsed = icalendar.Calendar.from_ical(body)
    assert str(parsed["X-WR-CALNAME"]) == "Site North"
    (vevent,) = parsed.walk("VEVENT")
    assert vevent.decoded("DTSTART") == utc(2026, 3, 9, 12)
    assert str(vevent["SUMMARY"]) == "Apheresis collection · PLN-ABC; chair, 2"
    assert str(vevent["DESCRIPTION"]).endswith("long text ")
    assert (str(vevent["STATUS"]), int(vevent["SEQUENCE"])) == ("TENTATIVE", 3)


def test_events_refuse_naive_times_and_unknown_statuses():
    with pytest.raises(ValueError):
        IcsEvent(uid="x", start=datetime(2026, 3, 9, 12), end=utc(2026, 3, 9, 13), summary="s")  # noqa: DTZ001
    with pytest.raises(ValueError):
        IcsEvent(uid="x", start=utc(2026, 3, 9), end=utc(2026, 3, 10), summary="s", status="MAYBE")


# --- profile data ---------------------------------------------------------------------------


def test_the_form_lists_every_journey_profile_field():
    names = {f.name for f in fields(JourneyProfile)} - {"product", "version", "apheresis"}
    assert set(FIELD_NAMES) == names


def test_stored_journey_numbers_override_defaults_and_the_rest_stay_to_confirm():
    data = {
        "journey": {
            "manufacturing_days": 3,
            "split_dose": {"second_dose_day": 10, "tolerance_days": 2},
        },
        "journey_confirmed": ["manufacturing_days"],
        "fresh_stability_hours": 48,  # an early top-level number is still honoured
    }
    profile = journey_profile(code="X", version=4, starting_material="fresh", data=data)
    assert (profile.product, profile.version) == ("X", "X@v4")
    assert profile.manufacturing_days == 3 and profile.fresh_stability_hours == 48
    assert profile.split_dose == SplitDose(10, 2)
    assert "manufacturing_days" not in unconfirmed_fields(data)
    assert "release_testing_days" in unconfirmed_fields(data)


@pytest.mark.parametrize(
    "values",
    [
        {"ld_start_day": 3},
        {"manufacturing_days": "9"},
        {"manufacturing_days": True},
        {"infusion_window_after_ld_days": [5, 1]},
        {"nonsense": 1},
    ],
)
def test_invalid_journey_numbers_are_refused(values):
    with pytest.raises(ValueError):
        build_profile(code="X", version=1, starting_material="fresh", values=values)


# --- rescheduling ---------------------------------------------------------------------------


def test_moving_collection_pushes_manufacturing_to_the_next_free_slot_and_the_rest_follows():
    cap = capacity()
    original = plan(cap=cap)
    cap.book(original.bookings())
    moved = replan_step(
        original,
        StepKind.collection,
        original.step(StepKind.collection).start + timedelta(days=1),
        PROFILE,
        cap,
    )
    manufacturing = moved.move(StepKind.manufacturing)
    assert manufacturing is not None and manufacturing.rebooked
    assert manufacturing.snapped_from is not None
    assert manufacturing.new_start > manufacturing.snapped_from
    assert moved.plan.step(StepKind.manufacturing).booking.start == manufacturing.new_start
    infusion = moved.plan.step(StepKind.infusion)
    assert infusion.start > original.step(StepKind.infusion).start
    assert moved.problems == ()


def test_a_later_infusion_keeps_lymphodepletion_and_flags_the_re_ld_question():
    cap = capacity()
    original = plan(cap=cap)
    later = original.step(StepKind.infusion).start + timedelta(days=16)
    moved = replan_step(original, StepKind.infusion, later, PROFILE, cap)
    ld = moved.move(StepKind.lymphodepletion)
    assert ld is not None and not ld.moved
    assert any(v.code == "re_ld_required" for v in ld.violations)
    codes = {v.code for v in moved.move(StepKind.infusion).violations}
    assert "re_ld_required" in codes
    # The infusion deadline still counts from the unchanged LD days.
    assert moved.plan.step(StepKind.infusion).deadline == original.step(StepKind.infusion).deadline


def test_a_move_with_no_free_capacity_left_is_reported_as_a_problem():
    cap = capacity(lines_on=[0])  # one manufacturing slot a week, on Mondays
    original = plan(cap=cap)
    moved = replan_step(
        original,
        StepKind.manufacturing,
        original.step(StepKind.manufacturing).start + timedelta(days=1),
        PROFILE,
        cap,
        horizon_days=3,
    )
    assert moved.problems and "no free manufacturing slot" in moved.problems[0]


def test_the_pure_schedules_modules_import_no_framework_database_or_tracker_code():
    import ast
    from pathlib import Path

    package = Path(__file__).resolve().parents[2] / "schedules"
    pure = ["slots", "planning", "deadlines", "ics", "profiles", "rescheduling"]
    offenders = []
    for name in pure:
        tree = ast.parse((package / f"{name}.py").read_text())
        for node in ast.walk(tree):
            modules = []
            if isinstance(node, ast.Import):
                modules = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                modules = [node.module]
            offenders += [
                f"{name}: {m}" for m in modules if m.startswith(("flask", "sqlalchemy", "tracker"))
            ]
    assert offenders == []
