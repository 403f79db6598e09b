"""Rescheduling one step of a plan: knock-on effects, snapped to real capacity. Pure module.

``replan_step`` moves one step, lets ``knock_on`` push the dependents as the profile's rules
require, then walks the steps that hold capacity in journey order: a booked step whose span
moved needs a new window, the first free one starting at or after where the rules put it. When
that window is later, the step is moved there and knock_on runs again from it, so everything
after it follows. The result is the complete new plan (bookings and step deadlines refreshed),
one ``StepMove`` per step that moved or breaks a rule, and the problems that block the change.

Repeat lymphodepletion is never applied: knock_on proposes it as a clinical question and the
new plan keeps the lymphodepletion days it had unless the user moved them.
"""

from __future__ import annotations

from dataclasses import dataclass
from dataclasses import replace
from datetime import datetime
from datetime import timedelta

from schedules.planning import DAY_STEPS
from schedules.planning import STEP_ORDER
from schedules.planning import ApheresisMode
from schedules.planning import CapacityView
from schedules.planning import Change
from schedules.planning import Explanation
from schedules.planning import FreeWindow
from schedules.planning import JourneyProfile
from schedules.planning import Plan
from schedules.planning import SplitDose
from schedules.planning import StepKind
from schedules.planning import Violation
from schedules.planning import knock_on
from schedules.slots import Booking
from schedules.slots import ResourceKind
from schedules.slots import local_date
from schedules.slots import local_day_bounds
from schedules.slots import require_utc
from schedules.slots import zone

# Which capacity a step books, and which of the journey's sites it books it at.
STEP_RESOURCES: dict[StepKind, tuple[ResourceKind, str]] = {
    StepKind.collection: (ResourceKind.apheresis_chair, "collection"),
    StepKind.manufacturing: (ResourceKind.manufacturing_slot, "manufacturing"),
    StepKind.infusion: (ResourceKind.infusion_bed, "treatment"),
    StepKind.second_dose: (ResourceKind.infusion_bed, "treatment"),
}


@dataclass(frozen=True)
class StepMove:
    """Old -> new span of one step; ``snapped_from`` is where the rules alone would put it."""

    step: StepKind
    old_start: datetime
    old_end: datetime
    new_start: datetime
    new_end: datetime
    violations: tuple[Violation, ...] = ()
    old_resource: str | None = None
    new_resource: str | None = None
    snapped_from: datetime | None = None
    problem: str | None = None

    @property
    def moved(self) -> bool:
        """Whether the step's span changed."""
        return (self.old_start, self.old_end) != (self.new_start, self.new_end)

    @property
    def rebooked(self) -> bool:
        """Whether the step gives up its booking for another window."""
        return self.old_resource is not None and self.moved


@dataclass(frozen=True)
class Replan:
    """The plan after moving one step, and what changed."""

    plan: Plan
    moves: tuple[StepMove, ...]

    @property
    def problems(self) -> tuple[str, ...]:
        """Capacity problems that block the change (empty when it can be booked)."""
        return tuple(m.problem for m in self.moves if m.problem)

    def move(self, step: StepKind) -> StepMove | None:
        """The move of ``step``, if it is listed."""
        return next((m for m in self.moves if m.step is step), None)


def _spans(plan: Plan) -> dict[StepKind, tuple[datetime, datetime]]:
    return {s.kind: (s.start, s.end) for s in plan.steps}


def _with(
    plan: Plan,
    spans: dict[StepKind, tuple[datetime, datetime]],
    bookings: dict[StepKind, Booking] | None = None,
) -> Plan:
    bookings = bookings or {}
    steps = tuple(
        replace(
            s,
            start=spans[s.kind][0],
            end=spans[s.kind][1],
            booking=bookings.get(s.kind, s.booking),
        )
        for s in plan.steps
    )
    return replace(plan, steps=steps)


def _apply(plan: Plan, changes: list[Change], moved: StepKind) -> Plan:
    spans = _spans(plan)
    for change in changes:
        proposed_re_ld = change.step is StepKind.lymphodepletion and any(
            v.code == "re_ld_required" for v in change.violations
        )
        if proposed_re_ld and change.step is not moved:
            continue  # a proposal for a clinician, not applied
        spans[change.step] = (change.new_start, change.new_end)
    return _with(plan, spans)


def refresh_step_deadlines(plan: Plan, profile: JourneyProfile) -> Plan:
    """Recompute the hard deadlines the planner attaches to steps from the current spans."""
    steps = {s.kind: s for s in plan.steps}
    deadlines: dict[StepKind, datetime | None] = {k: s.deadline for k, s in steps.items()}
    collection = steps.get(StepKind.collection)
    if profile.apheresis is ApheresisMode.fresh and collection is not None:
        stable_until = collection.end + timedelta(hours=profile.fresh_stability_hours)
        transit = timedelta(hours=profile.transit_to_manufacturing_hours)
        if StepKind.outbound_shipping in steps:
            deadlines[StepKind.outbound_shipping] = stable_until - transit
        if StepKind.manufacturing in steps:
            deadlines[StepKind.manufacturing] = stable_until
    ld, infusion = steps.get(StepKind.lymphodepletion), steps.get(StepKind.infusion)
    if ld is not None and infusion is not None:
        ld_last = local_date(ld.start, ld.tz) + timedelta(days=profile.ld_regimen_days - 1)
        high = profile.infusion_window_after_ld_days[1]
        deadlines[StepKind.infusion] = local_day_bounds(ld_last + timedelta(days=high), ld.tz)[1]
    second = steps.get(StepKind.second_dose)
    if second is not None and infusion is not None:
        split = profile.split_dose or SplitDose()
        target = local_date(infusion.start, infusion.tz) + timedelta(days=split.second_dose_day - 1)
        last = target + timedelta(days=split.tolerance_days)
        deadlines[StepKind.second_dose] = local_day_bounds(last, second.tz)[1]
    return replace(plan, steps=tuple(replace(s, deadline=deadlines[s.kind]) for s in plan.steps))


def _fmt(instant: datetime, tz: str) -> str:
    return f"{instant.astimezone(zone(tz)):%Y-%m-%d %H:%M} {tz}"


def replan_step(
    plan: Plan,
    step: StepKind,
    new_start: datetime,
    profile: JourneyProfile,
    capacity: CapacityView,
    *,
    horizon_days: int = 365,
) -> Replan:
    """Move ``step`` to ``new_start`` (or the first free window after it) with knock-on effects.

    ``capacity`` should credit the plan's own bookings, which the change gives up.
    """
    new_start = require_utc(new_start, "new_start")
    horizon = timedelta(days=horizon_days)
    original = {s.kind: s for s in plan.steps}
    current = _apply(plan, knock_on(plan, step, new_start, profile), step)
    chosen: dict[StepKind, FreeWindow] = {}
    snapped: dict[StepKind, datetime] = {}
    problems: dict[StepKind, str] = {}
    for kind in STEP_ORDER:
        old = original.get(kind)
        if kind not in STEP_RESOURCES or old is None or old.booking is None:
            continue
        now_step = current.step(kind)
        if (now_step.start, now_step.end) == (old.start, old.end):
            continue
        resource_kind, role = STEP_RESOURCES[kind]
        site = getattr(plan.sites, role)
        product = profile.product if resource_kind is ResourceKind.manufacturing_slot else None
        want = now_step.start
        window = next(
            capacity.free_windows(
                resource_kind,
                site,
                not_before=want,
                until=want + horizon,
                product=product,
                units=old.booking.units,
            ),
            None,
        )
        if window is None:
            problems[kind] = (
                f"{kind}: no free {resource_kind.value.replace('_', ' ')} at site {site} within "
                f"{horizon_days} days after {_fmt(want, now_step.tz)}"
            )
            continue
        if window.start != want:
            snapped[kind] = want
            current = _apply(current, knock_on(current, kind, window.start, profile), kind)
        spans = _spans(current)
        if kind is StepKind.manufacturing:
            spans[kind] = (window.start, window.start + timedelta(days=profile.manufacturing_days))
        else:
            spans[kind] = (window.start, window.end)
        current = _with(current, spans)
        chosen[kind] = window
    bookings = {
        kind: Booking(w.resource_id, w.start, w.end, original[kind].booking.units)  # type: ignore[union-attr]
        for kind, w in chosen.items()
    }
    current = refresh_step_deadlines(_with(current, _spans(current), bookings), profile)
    # Judge the final spans: "moving" the last step onto itself pushes nothing and reports
    # every rule the plan breaks (and a repeat-LD proposal when the infusion slipped).
    last = current.steps[-1]
    verdict = {c.step: c for c in knock_on(current, last.kind, last.start, profile)}
    moves: list[StepMove] = []
    explanations = [e for e in plan.explanations if e.step not in snapped]
    for s in current.steps:
        old = original[s.kind]
        judged = verdict.get(s.kind)
        violations = judged.violations if judged is not None else ()
        move = StepMove(
            s.kind,
            old.start,
            old.end,
            s.start,
            s.end,
            violations,
            old_resource=old.resource_id,
            new_resource=s.resource_id,
            snapped_from=snapped.get(s.kind),
            problem=problems.get(s.kind),
        )
        if move.moved or move.violations or move.problem or s.kind is step:
            moves.append(move)
        if s.kind in snapped:
            label = "day" if s.kind in DAY_STEPS else "window"
            explanations.append(
                Explanation(
                    s.kind,
                    snapped[s.kind],
                    s.start,
                    f"{s.kind}: nothing free at {_fmt(snapped[s.kind], s.tz)}; first free "
                    f"{label} {_fmt(s.start, s.tz)}",
                )
            )
    current = replace(current, explanations=tuple(explanations))
    return Replan(current, tuple(moves))
