"""Comparability across manufacturing sites and processes: the measures, from plain facts.

Scale-out to regional or point-of-care hubs must show that a dose made at one hub is
comparable to one made at another. This module turns per-order facts (what the query layer
reads from acceptances, lots, release tests and custody events) into the same measures for
every site, every (site, process) pair and all sites together. Nothing here reads the
database or the clock.

How each measure is defined (the page and the CSV repeat these in words):

* **Acceptance rate**: current starting-material decisions (a corrected decision counts once,
  as its latest correction) that are *accepted* or *accepted with deviation*, over all current
  decisions. Each decision counts at the site that made it; an order that was re-collected
  after a rejection contributes both decisions. Deviations are also counted on their own.
* **First-pass release rate**: lots released through the standard path with no test ever out
  of specification (a superseded OOS result still counts: it had to be investigated) and no
  corrected result, over lots with a final decision (released, released exceptionally or
  rejected). Lots still manufacturing or in testing are not in the denominator.
* **Out-of-specification rate (lots)**: lots whose current result of at least one test is OOS,
  over lots with at least one current result. **Per test**: tests whose current result is OOS,
  over tests of that code with a current result. Pending tests are excluded.
* **Release test results**: distributions of the current numeric results per test code and
  unit (results in different units are never mixed); qualitative results appear only in the
  per-test OOS rate.
* **Manufacturing turnaround**: lot completion minus lot start, in hours, for completed lots.
* **Vein-to-vein legs**: hours between the first time each milestone was reached for the order
  (collection, receipt at manufacturing, manufacturing complete, release, receipt at the
  treatment site, infusion start), and in total from collection to infusion start. A leg counts
  only when both its ends are known and the end is not before the start (a clock error is
  left out, not shown as a negative time). Order-level measures count at the order's
  manufacturing site (its latest lot's site, else the site on the order).

Distributions report n, minimum, first quartile, median, third quartile and maximum, with
quartiles by linear interpolation between order statistics (the "inclusive" method: the
quartiles of 1, 2, 3, 4 are 1.75, 2.5 and 3.25).
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Callable
from collections.abc import Iterable
from collections.abc import Mapping
from collections.abc import Sequence
from dataclasses import dataclass
from dataclasses import field
from datetime import datetime
from enum import StrEnum
from typing import TypeVar

T = TypeVar("T")


class Milestone(StrEnum):
    """A point on the vein-to-vein path, reached when its custody event (or lot record) says so."""

    collected = "collected"
    received_at_manufacturing = "received_at_manufacturing"
    manufacturing_complete = "manufacturing_complete"
    released = "released"
    received_at_treatment = "received_at_treatment"
    infusion_started = "infusion_started"


MILESTONE_LABELS: Mapping[Milestone, str] = {
    Milestone.collected: "collection",
    Milestone.received_at_manufacturing: "receipt at manufacturing",
    Milestone.manufacturing_complete: "manufacturing complete",
    Milestone.released: "release",
    Milestone.received_at_treatment: "receipt at treatment site",
    Milestone.infusion_started: "infusion start",
}


@dataclass(frozen=True, slots=True)
class Leg:
    code: str
    label: str
    start: Milestone
    end: Milestone


LEGS: tuple[Leg, ...] = (
    Leg(
        "to_manufacturing",
        "Collection to receipt at manufacturing",
        Milestone.collected,
        Milestone.received_at_manufacturing,
    ),
    Leg(
        "manufacturing",
        "Receipt to manufacturing complete",
        Milestone.received_at_manufacturing,
        Milestone.manufacturing_complete,
    ),
    Leg(
        "release",
        "Manufacturing complete to release",
        Milestone.manufacturing_complete,
        Milestone.released,
    ),
    Leg(
        "to_treatment",
        "Release to receipt at treatment site",
        Milestone.released,
        Milestone.received_at_treatment,
    ),
    Leg(
        "to_infusion",
        "Receipt at treatment site to infusion start",
        Milestone.received_at_treatment,
        Milestone.infusion_started,
    ),
)
TOTAL_LEG = Leg("vein_to_vein", "Vein to vein", Milestone.collected, Milestone.infusion_started)

ACCEPTED_DECISIONS = frozenset({"accepted", "accepted_with_deviation"})
DECIDED_LOT_STATUSES = frozenset({"released", "exceptional_release", "rejected"})

# A summary's group: (site code, process); None stands for "all".
GroupKey = tuple[str | None, str | None]


# ---------------------------------------------------------------------------------------------
# Facts in
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class AcceptanceFact:
    """One current starting-material decision (the latest of its correction chain)."""

    site: str
    process: str
    decision: str  # accepted | rejected | accepted_with_deviation


@dataclass(frozen=True, slots=True)
class ReleaseTestFact:
    """One release test of a lot: its current result and its history in two flags."""

    code: str
    outcome: str | None  # pass | oos, None while pending
    value: float | None = None  # the current result when it is a number
    unit: str | None = None
    ever_oos: bool = False  # any result of this test, superseded or not, was OOS
    corrected: bool = False  # the current result supersedes an earlier one


@dataclass(frozen=True, slots=True)
class LotFact:
    code: str
    site: str
    process: str
    status: str  # manufacturing | testing | released | exceptional_release | rejected
    started_at: datetime | None = None
    completed_at: datetime | None = None
    release_kind: str | None = None  # standard | exceptional
    tests: tuple[ReleaseTestFact, ...] = ()

    @property
    def decided(self) -> bool:
        return self.status in DECIDED_LOT_STATUSES

    @property
    def first_pass(self) -> bool | None:
        """Released the standard way with no OOS and no correction; None while undecided."""
        if not self.decided:
            return None
        return (
            self.status == "released"
            and self.release_kind != "exceptional"
            and not any(t.ever_oos or t.corrected for t in self.tests)
        )

    @property
    def has_result(self) -> bool:
        return any(t.outcome is not None for t in self.tests)

    @property
    def oos(self) -> bool:
        """At least one test's current result is out of specification."""
        return any(t.outcome == "oos" for t in self.tests)

    @property
    def turnaround_hours(self) -> float | None:
        return hours_between(self.started_at, self.completed_at)


@dataclass(frozen=True, slots=True)
class OrderFacts:
    """Everything the comparability measures need to know about one therapy order."""

    order: str  # the order's public id (opaque)
    site: str  # manufacturing site code
    process: str
    acceptances: tuple[AcceptanceFact, ...] = ()
    lots: tuple[LotFact, ...] = ()
    milestones: Mapping[Milestone, datetime] = field(default_factory=dict)

    def leg_hours(self, leg: Leg) -> float | None:
        return hours_between(self.milestones.get(leg.start), self.milestones.get(leg.end))


# ---------------------------------------------------------------------------------------------
# Numbers out
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Rate:
    numerator: int
    denominator: int

    @property
    def value(self) -> float | None:
        return self.numerator / self.denominator if self.denominator else None

    @property
    def percent(self) -> str:
        value = self.value
        return "–" if value is None else f"{value * 100:.0f}%"


@dataclass(frozen=True, slots=True)
class Distribution:
    n: int
    minimum: float | None = None
    q1: float | None = None
    median: float | None = None
    q3: float | None = None
    maximum: float | None = None

    def scaled(self, factor: float) -> Distribution:
        """The same distribution in another unit (hours to days: ``factor=1 / 24``)."""

        def s(v: float | None) -> float | None:
            return None if v is None else v * factor

        return Distribution(
            self.n, s(self.minimum), s(self.q1), s(self.median), s(self.q3), s(self.maximum)
        )


@dataclass(frozen=True, slots=True)
class ReleaseTestSummary:
    code: str
    oos: Rate  # current OOS results over current results of this test code
    values: Mapping[str, Distribution]  # unit -> distribution of current numeric results


@dataclass(frozen=True, slots=True)
class GroupSummary:
    site: str | None
    process: str | None
    orders: int
    lots: int
    acceptance: Rate
    deviations: Rate  # accepted with deviation, over current decisions
    first_pass: Rate
    exceptional_releases: int
    oos_lots: Rate
    tests: tuple[ReleaseTestSummary, ...]
    turnaround: Distribution
    legs: Mapping[str, Distribution]  # leg code (and "vein_to_vein") -> hours

    @property
    def key(self) -> GroupKey:
        return (self.site, self.process)


@dataclass(frozen=True, slots=True)
class Comparability:
    sites: tuple[GroupSummary, ...]  # one per site, every process together
    site_processes: tuple[GroupSummary, ...]  # one per (site, process)
    overall: GroupSummary  # every site and process together

    @property
    def test_codes(self) -> tuple[str, ...]:
        return tuple(t.code for t in self.overall.tests)


# ---------------------------------------------------------------------------------------------
# Arithmetic
# ---------------------------------------------------------------------------------------------


def hours_between(start: datetime | None, end: datetime | None) -> float | None:
    """Hours from ``start`` to ``end``; None when either is missing or the end comes first."""
    if start is None or end is None or end < start:
        return None
    return (end - start).total_seconds() / 3600


def quantile(ordered: Sequence[float], q: float) -> float:
    """The q-quantile of sorted values, interpolating linearly between order statistics."""
    if not ordered:
        raise ValueError("no values")
    position = (len(ordered) - 1) * q
    low = math.floor(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def distribution(values: Iterable[float | None]) -> Distribution:
    """Five-number summary of the known values (None is left out)."""
    ordered = sorted(v for v in values if v is not None)
    if not ordered:
        return Distribution(n=0)
    return Distribution(
        n=len(ordered),
        minimum=ordered[0],
        q1=quantile(ordered, 0.25),
        median=quantile(ordered, 0.5),
        q3=quantile(ordered, 0.75),
        maximum=ordered[-1],
    )


def _rate(items: Iterable[T], counts: Callable[[T], bool]) -> Rate:
    listed = list(items)
    return Rate(sum(1 for i in listed if counts(i)), len(listed))


def _test_summaries(lots: Sequence[LotFact]) -> tuple[ReleaseTestSummary, ...]:
    by_code: dict[str, list[ReleaseTestFact]] = defaultdict(list)
    for lot in lots:
        for test in lot.tests:
            by_code[test.code].append(test)
    summaries = []
    for code in sorted(by_code):
        tests = by_code[code]
        with_result = [t for t in tests if t.outcome is not None]
        units: dict[str, list[float]] = defaultdict(list)
        for t in with_result:
            if t.value is not None:
                units[t.unit or ""].append(t.value)
        summaries.append(
            ReleaseTestSummary(
                code=code,
                oos=Rate(sum(1 for t in with_result if t.outcome == "oos"), len(with_result)),
                values={unit: distribution(units[unit]) for unit in sorted(units)},
            )
        )
    return tuple(summaries)


def summarise(
    site: str | None,
    process: str | None,
    orders: Sequence[OrderFacts],
    acceptances: Sequence[AcceptanceFact],
    lots: Sequence[LotFact],
) -> GroupSummary:
    """The measures of one group, from the orders, decisions and lots that belong to it."""
    decided = [lot for lot in lots if lot.decided]
    legs = {leg.code: distribution(o.leg_hours(leg) for o in orders) for leg in LEGS}
    legs[TOTAL_LEG.code] = distribution(o.leg_hours(TOTAL_LEG) for o in orders)
    return GroupSummary(
        site=site,
        process=process,
        orders=len(orders),
        lots=len(lots),
        acceptance=_rate(acceptances, lambda a: a.decision in ACCEPTED_DECISIONS),
        deviations=_rate(acceptances, lambda a: a.decision == "accepted_with_deviation"),
        first_pass=Rate(sum(1 for lot in decided if lot.first_pass), len(decided)),
        exceptional_releases=sum(1 for lot in lots if lot.status == "exceptional_release"),
        oos_lots=_rate([lot for lot in lots if lot.has_result], lambda lot: lot.oos),
        tests=_test_summaries(lots),
        turnaround=distribution(lot.turnaround_hours for lot in lots),
        legs=legs,
    )


def compare(orders: Iterable[OrderFacts]) -> Comparability:
    """Every measure per site, per (site, process) and overall."""
    listed = list(orders)
    order_groups: dict[GroupKey, list[OrderFacts]] = defaultdict(list)
    acceptance_groups: dict[GroupKey, list[AcceptanceFact]] = defaultdict(list)
    lot_groups: dict[GroupKey, list[LotFact]] = defaultdict(list)
    for order in listed:
        for key in ((order.site, None), (order.site, order.process)):
            order_groups[key].append(order)
        for acceptance in order.acceptances:
            for key in ((acceptance.site, None), (acceptance.site, acceptance.process)):
                acceptance_groups[key].append(acceptance)
        for lot in order.lots:
            for key in ((lot.site, None), (lot.site, lot.process)):
                lot_groups[key].append(lot)
    keys = set(order_groups) | set(acceptance_groups) | set(lot_groups)

    def group(key: GroupKey) -> GroupSummary:
        return summarise(key[0], key[1], order_groups[key], acceptance_groups[key], lot_groups[key])

    def sort_key(key: GroupKey) -> tuple[str, str]:
        return (key[0] or "", key[1] or "")

    return Comparability(
        sites=tuple(group(k) for k in sorted(keys, key=sort_key) if k[1] is None),
        site_processes=tuple(group(k) for k in sorted(keys, key=sort_key) if k[1] is not None),
        overall=summarise(
            None,
            None,
            listed,
            [a for o in listed for a in o.acceptances],
            [lot for o in listed for lot in o.lots],
        ),
    )


def first_reached(
    events: Iterable[tuple[Milestone, datetime]],
) -> dict[Milestone, datetime]:
    """The first time each milestone was reached, from (milestone, when) pairs in any order."""
    reached: dict[Milestone, datetime] = {}
    for milestone, at in events:
        if milestone not in reached or at < reached[milestone]:
            reached[milestone] = at
    return reached


# Which custody change marks a milestone: (item kind, state it moved to). Manufacturing
# completion and release prefer the lot's own record when there is one (see the query layer).
CUSTODY_MILESTONES: Mapping[tuple[str, str], Milestone] = {
    ("apheresis_bag", "collected"): Milestone.collected,
    ("apheresis_bag", "received"): Milestone.received_at_manufacturing,
    ("apheresis_bag", "consumed"): Milestone.manufacturing_complete,
    ("final_product_bag", "released"): Milestone.released,
    ("final_product_bag", "received"): Milestone.received_at_treatment,
    ("final_product_bag", "infusing"): Milestone.infusion_started,
}


# ---------------------------------------------------------------------------------------------
# Tables (the CSV export and the API use the same rows)
# ---------------------------------------------------------------------------------------------

Cell = str | int | float | None


def _hours(value: float | None) -> float | None:
    return None if value is None else round(value, 3)


def order_table(
    facts: Sequence[OrderFacts], test_codes: Sequence[str]
) -> tuple[list[str], list[list[Cell]]]:
    """One row per order: its decisions, its latest lot, its milestones and its legs."""
    header = [
        "order",
        "manufacturing_site",
        "process",
        "acceptance_decisions",
        "lots",
        "lot",
        "lot_status",
        "release_kind",
        "first_pass",
        "oos_tests",
        "corrected_tests",
        "manufacturing_hours",
        *(f"{m.value}_at" for m in Milestone),
        *(f"{leg.code}_hours" for leg in (*LEGS, TOTAL_LEG)),
    ]
    for code in test_codes:
        header += [f"{code}_outcome", f"{code}_value", f"{code}_unit"]
    rows: list[list[Cell]] = []
    for f in facts:
        lot = f.lots[-1] if f.lots else None
        first_pass = None if lot is None else lot.first_pass
        tests = {t.code: t for t in lot.tests} if lot else {}
        row: list[Cell] = [
            f.order,
            f.site,
            f.process,
            ";".join(a.decision for a in f.acceptances),
            len(f.lots),
            lot.code if lot else None,
            lot.status if lot else None,
            lot.release_kind if lot else None,
            None if first_pass is None else ("yes" if first_pass else "no"),
            ";".join(t.code for t in lot.tests if t.outcome == "oos") if lot else None,
            ";".join(t.code for t in lot.tests if t.corrected) if lot else None,
            _hours(lot.turnaround_hours) if lot else None,
            *(
                f.milestones[m].isoformat().replace("+00:00", "Z") if m in f.milestones else None
                for m in Milestone
            ),
            *(_hours(f.leg_hours(leg)) for leg in (*LEGS, TOTAL_LEG)),
        ]
        for code in test_codes:
            test = tests.get(code)
            row += [
                test.outcome if test else None,
                test.value if test else None,
                test.unit if test else None,
            ]
        rows.append(row)
    return header, rows


SUMMARY_HEADER = [
    "site",
    "process",
    "measure",
    "numerator",
    "denominator",
    "value",
    "unit",
    "n",
    "min",
    "q1",
    "median",
    "q3",
    "max",
]


def _rate_row(group: GroupSummary, measure: str, rate: Rate) -> list[Cell]:
    value = rate.value
    return [
        group.site,
        group.process,
        measure,
        rate.numerator,
        rate.denominator,
        None if value is None else round(value, 6),
        "fraction",
        rate.denominator,
        None,
        None,
        None,
        None,
        None,
    ]


def _distribution_row(group: GroupSummary, measure: str, unit: str, d: Distribution) -> list[Cell]:
    def r(v: float | None) -> float | None:
        return None if v is None else round(v, 6)

    return [
        group.site,
        group.process,
        measure,
        None,
        None,
        r(d.median),
        unit,
        d.n,
        r(d.minimum),
        r(d.q1),
        r(d.median),
        r(d.q3),
        r(d.maximum),
    ]


def summary_rows(group: GroupSummary) -> list[list[Cell]]:
    """Every measure of one group, one row each (long format: easy to pivot)."""
    rows: list[list[Cell]] = [
        _rate_row(group, "acceptance_rate", group.acceptance),
        _rate_row(group, "accepted_with_deviation_rate", group.deviations),
        _rate_row(group, "first_pass_release_rate", group.first_pass),
        _rate_row(group, "oos_lot_rate", group.oos_lots),
        [
            group.site,
            group.process,
            "exceptional_releases",
            None,
            None,
            group.exceptional_releases,
            "lots",
            group.lots,
            None,
            None,
            None,
            None,
            None,
        ],
    ]
    for test in group.tests:
        rows.append(_rate_row(group, f"oos_rate:{test.code}", test.oos))
        for unit, d in test.values.items():
            rows.append(_distribution_row(group, f"result:{test.code}", unit, d))
    rows.append(_distribution_row(group, "manufacturing_turnaround", "h", group.turnaround))
    for leg in (*LEGS, TOTAL_LEG):
        rows.append(_distribution_row(group, f"leg:{leg.code}", "h", group.legs[leg.code]))
    return rows


def summary_table(result: Comparability) -> tuple[list[str], list[list[Cell]]]:
    """Every group's measures: per site, per (site, process), then all together."""
    rows: list[list[Cell]] = []
    for group in (*result.sites, *result.site_processes, result.overall):
        rows += summary_rows(group)
    return list(SUMMARY_HEADER), rows
