"""Handoff deadlines derived from a journey plan. Pure: standard library and schedules only.

Each deadline names the site that must act and what must have happened by ``due_at`` (aware
UTC). The alerting worker watches the stored rows; this module only computes them, so the same
plan always yields the same list, in due order.

Deadlines per step (a step the plan does not have yields nothing):

* collection_start: the booked apheresis chair window starts (collection site).
* cryopreservation_complete: cryopreserved path, material frozen and ready to ship.
* outbound_pickup: the courier collects the starting material (planned departure).
* fresh_stability_limit: fresh path, the latest manufacturing start before the material's
  stability window closes (manufacturing site).
* manufacturing_receipt: the material arrives at the manufacturer.
* manufacturing_start: the booked manufacturing slot starts.
* release_decision: release testing ends; QA decides and the product ships.
* product_delivery: the final product arrives at the treatment site.
* ld_start: lymphodepletion starts; product availability must be confirmed before it.
* infusion: the booked infusion bed; infusion_window_end: the last day the profile allows
  after lymphodepletion (the step's deadline).
* second_dose / second_dose_window_end: the same for a split dose.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

from schedules.planning import Plan
from schedules.planning import PlanStep
from schedules.planning import StepKind
from schedules.slots import require_utc
from schedules.slots import zone


class DeadlineKind(StrEnum):
    collection_start = "collection_start"
    cryopreservation_complete = "cryopreservation_complete"
    outbound_pickup = "outbound_pickup"
    fresh_stability_limit = "fresh_stability_limit"
    manufacturing_receipt = "manufacturing_receipt"
    manufacturing_start = "manufacturing_start"
    release_decision = "release_decision"
    product_delivery = "product_delivery"
    ld_start = "ld_start"
    infusion = "infusion"
    infusion_window_end = "infusion_window_end"
    second_dose = "second_dose"
    second_dose_window_end = "second_dose_window_end"


KIND_ORDER: tuple[DeadlineKind, ...] = tuple(DeadlineKind)


@dataclass(frozen=True)
class DeadlineSpec:
    """What must have happened at ``site`` by ``due_at`` (aware UTC)."""

    kind: DeadlineKind
    due_at: datetime
    site: str
    description: str

    def __post_init__(self) -> None:
        object.__setattr__(self, "due_at", require_utc(self.due_at, "due_at"))


def _local(instant: datetime, tz: str) -> str:
    return f"{instant.astimezone(zone(tz)):%Y-%m-%d %H:%M} {tz}"


def plan_deadlines(plan: Plan) -> list[DeadlineSpec]:
    """Return the handoff deadlines of ``plan``, sorted by due time then journey order."""
    steps: dict[StepKind, PlanStep] = {step.kind: step for step in plan.steps}
    out: list[DeadlineSpec] = []

    def add(kind: DeadlineKind, due: datetime, step: PlanStep, text: str) -> None:
        out.append(DeadlineSpec(kind, due, step.site, f"{text} by {_local(due, step.tz)}"))

    collection = steps.get(StepKind.collection)
    if collection is not None:
        add(
            DeadlineKind.collection_start,
            collection.start,
            collection,
            f"Apheresis collection starts at site {collection.site}",
        )
    cryo = steps.get(StepKind.cryopreservation)
    if cryo is not None:
        add(
            DeadlineKind.cryopreservation_complete,
            cryo.end,
            cryo,
            f"Apheresis material cryopreserved at site {cryo.site} and ready to ship",
        )
    outbound = steps.get(StepKind.outbound_shipping)
    manufacturing = steps.get(StepKind.manufacturing)
    if outbound is not None:
        add(
            DeadlineKind.outbound_pickup,
            outbound.start,
            outbound,
            f"Courier picks up the starting material at site {outbound.site}",
        )
        if manufacturing is not None:
            add(
                DeadlineKind.manufacturing_receipt,
                outbound.end,
                manufacturing,
                f"Starting material received at site {manufacturing.site}",
            )
    if manufacturing is not None:
        if manufacturing.deadline is not None:
            add(
                DeadlineKind.fresh_stability_limit,
                manufacturing.deadline,
                manufacturing,
                f"Fresh material must enter manufacturing at site {manufacturing.site} "
                "(stability window closes)",
            )
        add(
            DeadlineKind.manufacturing_start,
            manufacturing.start,
            manufacturing,
            f"Manufacturing slot starts at site {manufacturing.site}",
        )
    release = steps.get(StepKind.release_testing)
    if release is not None:
        add(
            DeadlineKind.release_decision,
            release.end,
            release,
            f"Release testing complete and QA decision at site {release.site}",
        )
    ret = steps.get(StepKind.return_shipping)
    infusion = steps.get(StepKind.infusion)
    if ret is not None and infusion is not None:
        add(
            DeadlineKind.product_delivery,
            ret.end,
            infusion,
            f"Final product delivered to site {infusion.site}",
        )
    ld = steps.get(StepKind.lymphodepletion)
    if ld is not None:
        add(
            DeadlineKind.ld_start,
            ld.start,
            ld,
            f"Product availability confirmed and lymphodepletion started at site {ld.site}",
        )
    if infusion is not None:
        add(DeadlineKind.infusion, infusion.start, infusion, f"Infusion at site {infusion.site}")
        if infusion.deadline is not None:
            add(
                DeadlineKind.infusion_window_end,
                infusion.deadline,
                infusion,
                f"Last infusion day after lymphodepletion at site {infusion.site} ends",
            )
    second = steps.get(StepKind.second_dose)
    if second is not None:
        add(
            DeadlineKind.second_dose,
            second.start,
            second,
            f"Second dose infusion at site {second.site}",
        )
        if second.deadline is not None:
            add(
                DeadlineKind.second_dose_window_end,
                second.deadline,
                second,
                f"Tolerated window for the second dose at site {second.site} ends",
            )
    out.sort(key=lambda d: (d.due_at, KIND_ORDER.index(d.kind)))
    return out
