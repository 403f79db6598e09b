"""Comparability on a seeded multi-site data set, checked against numbers computed here.

The expected values come straight from ``tests.comparability_seed.SPECS`` (what was seeded),
by the definitions on the page, with the standard library's quartiles, never through
``tracker.domain.comparability``.
"""

from __future__ import annotations

import statistics
from collections import defaultdict
from datetime import timedelta
from typing import Any

import pytest

from tests.comparability_seed import QUEUE_HOURS
from tests.comparability_seed import SPECS
from tests.comparability_seed import UNITS
from tests.comparability_seed import OrderSpec
from tests.comparability_seed import results_of
from tests.comparability_seed import seed_comparability
from tracker.domain.comparability import Milestone
from tracker.domain.errors import TrackerError
from tracker.queries_comparability import ComparabilityFilters
from tracker.queries_comparability import comparability

LEG_CODES = ["to_manufacturing", "manufacturing", "release", "to_treatment", "to_infusion"]


@pytest.fixture
def seeded(world, new_uow, clock):  # type: ignore[no-untyped-def]
    return seed_comparability(new_uow, world, clock.now())


def five(values: list[float]) -> tuple[int, float, float, float, float, float] | tuple[int]:
    if not values:
        return (0,)
    q = statistics.quantiles(values, n=4, method="inclusive") if len(values) > 1 else values * 3
    return (len(values), min(values), q[0], q[1], q[2], max(values))


def got(d: Any) -> tuple[Any, ...]:
    if d.n == 0:
        return (0,)
    return (d.n, d.minimum, d.q1, d.median, d.q3, d.maximum)


def expected_for(specs: list[OrderSpec]) -> dict[str, Any]:
    """Every measure of one group of orders, by the definitions, from the seeded inputs."""
    decisions = [chain[-1] for s in specs for chain in s.decisions]
    lots = [s for s in specs if s.lot is not None]
    decided = [s for s in lots if s.lot and s.lot.status != "testing"]
    first_pass = 0
    oos_lots = with_result = 0
    per_test: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    values: dict[tuple[str, str], list[float]] = defaultdict(list)
    for s in lots:
        history = results_of(s)
        current = {code: h[-1] for code, h in history.items() if h}
        if s in decided and s.lot and s.lot.status == "released":
            clean = all(o != "oos" for h in history.values() for _, _, o in h)
            if clean and all(len(h) <= 1 for h in history.values()):
                first_pass += 1
        if current:
            with_result += 1
            oos_lots += any(o == "oos" for _, _, o in current.values())
        for code, (_, number, outcome) in current.items():
            per_test[code][1] += 1
            per_test[code][0] += outcome == "oos"
            if number is not None:
                values[(code, UNITS[code])].append(number)
    legs = {code: [s.legs[k] for s in specs if len(s.legs) > k] for k, code in enumerate(LEG_CODES)}
    legs["vein_to_vein"] = [sum(s.legs) for s in specs if len(s.legs) == 5]
    return {
        "orders": len(specs),
        "lots": len(lots),
        "acceptance": (
            sum(d in ("accepted", "accepted_with_deviation") for d in decisions),
            len(decisions),
        ),
        "deviations": (sum(d == "accepted_with_deviation" for d in decisions), len(decisions)),
        "first_pass": (first_pass, len(decided)),
        "exceptional": sum(1 for s in lots if s.lot and s.lot.status == "exceptional_release"),
        "oos_lots": (oos_lots, with_result),
        "per_test": {code: tuple(v) for code, v in per_test.items()},
        "values": {k: five(v) for k, v in values.items()},
        "turnaround": five([s.legs[1] - QUEUE_HOURS for s in lots if len(s.legs) > 1]),
        "legs": {code: five(v) for code, v in legs.items()},
    }


def actual(group: Any) -> dict[str, Any]:
    def pair(rate: Any) -> tuple[int, int]:
        return (rate.numerator, rate.denominator)

    return {
        "orders": group.orders,
        "lots": group.lots,
        "acceptance": pair(group.acceptance),
        "deviations": pair(group.deviations),
        "first_pass": pair(group.first_pass),
        "exceptional": group.exceptional_releases,
        "oos_lots": pair(group.oos_lots),
        "per_test": {t.code: pair(t.oos) for t in group.tests},
        "values": {(t.code, unit): got(d) for t in group.tests for unit, d in t.values.items()},
        "turnaround": got(group.turnaround),
        "legs": {code: got(d) for code, d in group.legs.items()},
    }


def assert_same(found: dict[str, Any], expected: dict[str, Any]) -> None:
    assert found.keys() == expected.keys()
    for key, value in expected.items():
        if isinstance(value, dict):
            assert found[key].keys() == value.keys(), key
            for inner, v in value.items():
                assert found[key][inner] == pytest.approx(v, abs=1e-9), (key, inner)
        else:
            assert found[key] == pytest.approx(value, abs=1e-9), key


def test_every_site_process_and_the_total_match_numbers_computed_from_the_seed(seeded, uow, world):
    data = comparability(uow.session, world.principals["admin"], ComparabilityFilters())
    result = data.result
    assert {g.site for g in result.sites} == {"MF1", "MF2", "MF3"}
    for group in result.sites:
        assert_same(actual(group), expected_for([s for s in SPECS if s.site == group.site]))
    assert {(g.site, g.process) for g in result.site_processes} == {
        (s.site, s.process) for s in SPECS
    }
    for group in result.site_processes:
        specs = [s for s in SPECS if (s.site, s.process) == (group.site, group.process)]
        assert_same(actual(group), expected_for(specs))
    assert_same(actual(result.overall), expected_for(SPECS))


def test_the_seed_holds_what_the_comparison_needs(seeded, uow, world):
    # Guards the data set itself, so a smaller seed cannot make the check above trivial.
    overall = expected_for(SPECS)
    assert overall["acceptance"][0] < overall["acceptance"][1]  # some rejections
    assert 0 < overall["first_pass"][0] < overall["first_pass"][1]
    assert overall["exceptional"] == 1 and overall["oos_lots"][0] >= 2
    assert len({s.process for s in SPECS}) == 2 and len({s.site for s in SPECS}) == 3
    assert len(set(overall["legs"]["vein_to_vein"][1:])) > 1  # varied totals


def test_release_and_completion_times_come_from_the_lot_record(seeded, uow, world):
    data = comparability(uow.session, world.principals["admin"], ComparabilityFilters())
    by_order = {f.order: f for f in data.facts}
    spec = SPECS[0]
    facts = by_order[seeded.orders[spec.index].public_id]
    start = seeded.start + timedelta(days=spec.index)
    # Custody recorded the product bags' release later; the lot's release record counts.
    assert facts.milestones[Milestone.released] == start + timedelta(hours=sum(spec.legs[:3]))
    assert facts.milestones[Milestone.manufacturing_complete] == start + timedelta(
        hours=sum(spec.legs[:2])
    )
    assert facts.milestones[Milestone.infusion_started] == start + timedelta(hours=sum(spec.legs))


def test_filters_select_by_site_process_and_the_day_the_order_was_placed(seeded, uow, world, clock):
    admin = world.principals["admin"]
    mf2 = comparability(uow.session, admin, ComparabilityFilters(site="MF2"))
    assert [g.site for g in mf2.result.sites] == ["MF2"]
    assert_same(actual(mf2.result.overall), expected_for([s for s in SPECS if s.site == "MF2"]))
    rapid = comparability(uow.session, admin, ComparabilityFilters(process="rapid_3d"))
    assert_same(
        actual(rapid.result.overall), expected_for([s for s in SPECS if s.process == "rapid_3d"])
    )
    assert rapid.process_options == ["rapid_3d", "standard_9d"]
    today = clock.now().date()
    same_day = ComparabilityFilters(start=today.isoformat(), end=today.isoformat())
    assert len(comparability(uow.session, admin, same_day).facts) == len(SPECS)
    later = ComparabilityFilters(start=(today + timedelta(days=1)).isoformat())
    assert comparability(uow.session, admin, later).facts == []
    earlier = ComparabilityFilters(end=(today - timedelta(days=1)).isoformat())
    assert comparability(uow.session, admin, earlier).facts == []
    with pytest.raises(TrackerError) as bad:
        comparability(uow.session, admin, ComparabilityFilters(start="2026-02-30"))
    assert bad.value.reason == "invalid_request"
    with pytest.raises(TrackerError) as backwards:
        comparability(
            uow.session, admin, ComparabilityFilters(start="2026-03-02", end="2026-03-01")
        )
    assert backwards.value.reason == "invalid_request"


def test_people_compare_only_the_orders_of_their_sites(seeded, uow, world):
    qa_mf1 = comparability(uow.session, world.principals["qa"], ComparabilityFilters())
    assert {f.site for f in qa_mf1.facts} == {"MF1"}
    assert qa_mf1.site_options == [("MF1", "Manufacturing One")]
    assert_same(actual(qa_mf1.result.overall), expected_for([s for s in SPECS if s.site == "MF1"]))
    # The coordinator works at the treatment site of every seeded order.
    coord = comparability(uow.session, world.principals["coord"], ComparabilityFilters())
    assert len(coord.facts) == len(SPECS)
    with pytest.raises(TrackerError) as refused:
        comparability(uow.session, world.principals["courier"], ComparabilityFilters())
    assert refused.value.reason == "forbidden"
