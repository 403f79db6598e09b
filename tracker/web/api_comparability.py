"""API for the comparability view: the measures per site and process, and the CSV exports."""

from __future__ import annotations

from typing import Literal

from flask import jsonify
from flask.typing import ResponseReturnValue
from pydantic import Field

from tracker.domain.comparability import LEGS
from tracker.domain.comparability import TOTAL_LEG
from tracker.domain.comparability import Distribution
from tracker.domain.comparability import GroupSummary
from tracker.domain.comparability import Rate
from tracker.domain.comparability import order_table
from tracker.queries_comparability import ComparabilityFilters
from tracker.web import comparability as pages
from tracker.web.api import Strict
from tracker.web.api import bp
from tracker.web.api import registry
from tracker.web.openapi import Query

Day = Field(default="", pattern=r"^([0-9]{4}-[0-9]{2}-[0-9]{2})?$")
Name = Field(default="", max_length=64)


class ComparabilityQuery(Query):
    from_: str = Field(default="", alias="from", pattern=r"^([0-9]{4}-[0-9]{2}-[0-9]{2})?$")
    to: str = Day
    site: str = Name
    process: str = Name
    group: Literal["site", "process"] = "site"

    def filters(self) -> ComparabilityFilters:
        return ComparabilityFilters(
            start=self.from_, end=self.to, site=self.site, process=self.process, group=self.group
        )


class ComparabilityCsvQuery(ComparabilityQuery):
    part: Literal["orders", "summary"] = "orders"


class RateOut(Strict):
    numerator: int
    denominator: int
    value: float | None


class DistributionOut(Strict):
    n: int
    min: float | None
    q1: float | None
    median: float | None
    q3: float | None
    max: float | None


class ResultValuesOut(Strict):
    unit: str
    distribution: DistributionOut


class ReleaseTestOut(Strict):
    code: str
    oos: RateOut
    values: list[ResultValuesOut]


class GroupOut(Strict):
    site: str | None
    process: str | None
    orders: int
    lots: int
    acceptance: RateOut
    accepted_with_deviation: RateOut
    first_pass_release: RateOut
    exceptional_releases: int
    oos_lots: RateOut
    release_tests: list[ReleaseTestOut]
    manufacturing_turnaround_hours: DistributionOut
    # Leg code ("to_manufacturing", ..., "vein_to_vein") -> hours.
    leg_hours: dict[str, DistributionOut]


class ComparabilityOut(Strict):
    filters: str
    legs: dict[str, str]  # leg code -> what it measures
    sites: list[GroupOut]
    site_processes: list[GroupOut]
    overall: GroupOut
    # One object per order: the columns of the per-order CSV.
    orders: list[dict[str, str | int | float | None]]


def _rate(rate: Rate) -> RateOut:
    return RateOut(numerator=rate.numerator, denominator=rate.denominator, value=rate.value)


def _dist(d: Distribution) -> DistributionOut:
    return DistributionOut(n=d.n, min=d.minimum, q1=d.q1, median=d.median, q3=d.q3, max=d.maximum)


def group_out(g: GroupSummary) -> GroupOut:
    return GroupOut(
        site=g.site,
        process=g.process,
        orders=g.orders,
        lots=g.lots,
        acceptance=_rate(g.acceptance),
        accepted_with_deviation=_rate(g.deviations),
        first_pass_release=_rate(g.first_pass),
        exceptional_releases=g.exceptional_releases,
        oos_lots=_rate(g.oos_lots),
        release_tests=[
            ReleaseTestOut(
                code=t.code,
                oos=_rate(t.oos),
                values=[
                    ResultValuesOut(unit=unit, distribution=_dist(d))
                    for unit, d in t.values.items()
                ],
            )
            for t in g.tests
        ],
        manufacturing_turnaround_hours=_dist(g.turnaround),
        leg_hours={code: _dist(d) for code, d in g.legs.items()},
    )


@registry.route(
    bp,
    "/comparability",
    "GET",
    summary="Sites and processes compared: acceptance, first-pass release, OOS, result "
    "distributions, manufacturing turnaround and vein-to-vein legs",
    response=ComparabilityOut,
    query=ComparabilityQuery,
    tag="quality",
)
def comparability(params: ComparabilityQuery) -> ResponseReturnValue:
    filters = params.filters()
    data = pages.load(filters)
    header, rows = order_table(data.facts, data.result.test_codes)
    out = ComparabilityOut(
        filters=filters.described(),
        legs={leg.code: leg.label for leg in (*LEGS, TOTAL_LEG)},
        sites=[group_out(g) for g in data.result.sites],
        site_processes=[group_out(g) for g in data.result.site_processes],
        overall=group_out(data.result.overall),
        orders=[dict(zip(header, row, strict=True)) for row in rows],
    )
    return jsonify(out.model_dump(mode="json"))


@registry.route(
    bp,
    "/comparability.csv",
    "GET",
    summary="The comparability numbers as CSV: per order (part=orders) or the aggregates "
    "(part=summary); recorded in the audit trail",
    produces=("text/csv",),
    query=ComparabilityCsvQuery,
    tag="quality",
)
def comparability_csv(params: ComparabilityCsvQuery) -> ResponseReturnValue:
    return pages.export_csv(params.filters(), params.part)
