"""Comparability measures from plain facts: denominators, first pass, OOS, legs, quartiles."""

from __future__ import annotations

import statistics
from datetime import UTC
from datetime import datetime
from datetime import timedelta

import pytest

from tracker.domain.comparability import LEGS
from tracker.domain.comparability import AcceptanceFact
from tracker.domain.comparability import LotFact
from tracker.domain.comparability import Milestone
from tracker.domain.comparability import OrderFacts
from tracker.domain.comparability import ReleaseTestFact
from tracker.domain.comparability import compare
from tracker.domain.comparability import distribution
from tracker.domain.comparability import first_reached
from tracker.domain.comparability import hours_between

T0 = datetime(2026, 3, 2, 8, 0, tzinfo=UTC)


def _h(hours: float) -> datetime:
    return T0 + timedelta(hours=hours)


def _lot(
    site: str, status: str, *tests: ReleaseTestFact, process: str = "std", **kw: object
) -> LotFact:
    return LotFact(
        code=f"LOT-{site}-{status}", site=site, process=process, status=status, tests=tests, **kw
    )  # type: ignore[arg-type]


def test_quartiles_interpolate_between_order_statistics_like_the_inclusive_method() -> None:
    for values in ([1.0, 2.0, 3.0, 4.0], [7.5], [3.0, 1.0, 10.0], [2.0, 9.0, 4.0, 4.0, 11.0, 6.0]):
        d = distribution(values)
        expected = (
            statistics.quantiles(values, n=4, method="inclusive")
            if len(values) > 1
            else [values[0]] * 3
        )
        assert d.n == len(values)
        assert (d.q1, d.median, d.q3) == pytest.approx(expected)
        assert (d.minimum, d.maximum) == (min(values), max(values))


def test_distribution_of_nothing_has_n_zero_and_no_numbers() -> None:
    d = distribution([None, None])
    assert d.n == 0
    assert d.median is None


def test_a_leg_whose_end_comes_before_its_start_is_left_out() -> None:
    assert hours_between(_h(0), _h(30)) == 30
    assert hours_between(_h(5), _h(4)) is None
    assert hours_between(None, _h(4)) is None


def test_acceptance_rate_counts_deviations_as_accepted_and_each_decision_at_its_own_site() -> None:
    orders = [
        OrderFacts("O1", "A", "std", acceptances=(AcceptanceFact("A", "std", "accepted"),)),
        OrderFacts(
            "O2",
            "A",
            "std",
            acceptances=(
                AcceptanceFact("A", "std", "rejected"),
                AcceptanceFact("A", "std", "accepted_with_deviation"),
            ),
        ),
        # Decided at processing lab P although the order is made at A.
        OrderFacts("O3", "A", "std", acceptances=(AcceptanceFact("P", "std", "rejected"),)),
    ]
    result = compare(orders)
    by_site = {g.site: g for g in result.sites}
    assert (by_site["A"].acceptance.numerator, by_site["A"].acceptance.denominator) == (2, 3)
    assert (by_site["A"].deviations.numerator, by_site["A"].deviations.denominator) == (1, 3)
    assert (by_site["P"].acceptance.numerator, by_site["P"].acceptance.denominator) == (0, 1)
    assert by_site["P"].orders == 0
    assert (result.overall.acceptance.numerator, result.overall.acceptance.denominator) == (2, 4)
    assert result.overall.acceptance.percent == "50%"


def test_first_pass_needs_a_standard_release_without_any_oos_or_corrected_result() -> None:
    clean = _lot("A", "released", ReleaseTestFact("sterility", "pass"), release_kind="standard")
    corrected = _lot(
        "A",
        "released",
        ReleaseTestFact("viability", "pass", 85.0, "%", corrected=True),
        release_kind="standard",
    )
    retested = _lot(
        "A",
        "released",
        ReleaseTestFact("viability", "pass", 82.0, "%", ever_oos=True),
        release_kind="standard",
    )
    exceptional = _lot(
        "A",
        "exceptional_release",
        ReleaseTestFact("viability", "oos", 70.0, "%", ever_oos=True),
        release_kind="exceptional",
    )
    rejected = _lot("A", "rejected", ReleaseTestFact("sterility", "oos", ever_oos=True))
    testing = _lot("A", "testing", ReleaseTestFact("sterility", None))
    assert [lot.first_pass for lot in (clean, corrected, retested, exceptional, rejected)] == [
        True,
        False,
        False,
        False,
        False,
    ]
    assert testing.first_pass is None
    order = OrderFacts(
        "O1", "A", "std", lots=(clean, corrected, retested, exceptional, rejected, testing)
    )
    group = compare([order]).sites[0]
    # Five decided lots (the one in testing is not in the denominator); one passed first time.
    assert (group.first_pass.numerator, group.first_pass.denominator) == (1, 5)
    assert group.exceptional_releases == 1
    # OOS now: exceptional and rejected, of the lots with any current result (testing has none).
    assert (group.oos_lots.numerator, group.oos_lots.denominator) == (2, 5)
    tests = {t.code: t for t in group.tests}
    assert (tests["viability"].oos.numerator, tests["viability"].oos.denominator) == (1, 3)
    assert (tests["sterility"].oos.numerator, tests["sterility"].oos.denominator) == (1, 2)
    assert tests["viability"].values["%"].median == 82.0
    assert "sterility" not in {c for c, t in tests.items() if t.values}


def test_numeric_results_in_different_units_are_never_mixed() -> None:
    lots = (
        _lot("A", "released", ReleaseTestFact("potency", "pass", 40.0, "pg/mL")),
        _lot("A", "released", ReleaseTestFact("potency", "pass", 2.0, "IU/mL")),
        _lot("A", "released", ReleaseTestFact("potency", "pass", 60.0, "pg/mL")),
    )
    potency = compare([OrderFacts("O", "A", "std", lots=lots)]).overall.tests[0]
    assert potency.values["pg/mL"].n == 2
    assert potency.values["pg/mL"].median == 50.0
    assert potency.values["IU/mL"].n == 1


def test_measures_are_split_per_site_process_and_together() -> None:
    def order(name: str, site: str, process: str, total_hours: float) -> OrderFacts:
        lot = _lot(
            site,
            "released",
            process=process,
            started_at=_h(0),
            completed_at=_h(total_hours / 2),
            release_kind="standard",
        )
        return OrderFacts(
            name,
            site,
            process,
            lots=(lot,),
            milestones={Milestone.collected: _h(0), Milestone.infusion_started: _h(total_hours)},
        )

    result = compare(
        [order("1", "A", "std", 100), order("2", "A", "rapid", 40), order("3", "B", "std", 200)]
    )
    assert [(g.site, g.process) for g in result.sites] == [("A", None), ("B", None)]
    assert [(g.site, g.process) for g in result.site_processes] == [
        ("A", "rapid"),
        ("A", "std"),
        ("B", "std"),
    ]
    site_a = result.sites[0]
    assert site_a.orders == 2
    assert site_a.legs["vein_to_vein"].median == 70
    assert site_a.turnaround.maximum == 50
    assert result.site_processes[0].legs["vein_to_vein"].n == 1
    assert result.overall.legs["vein_to_vein"].median == 100
    # No leg between the two known milestones can be computed.
    assert all(result.overall.legs[leg.code].n == 0 for leg in LEGS)


def test_each_leg_runs_between_consecutive_milestones() -> None:
    marks = dict(
        zip(list(Milestone), [_h(0), _h(20), _h(230), _h(300), _h(330), _h(400)], strict=True)
    )
    facts = OrderFacts("O", "A", "std", milestones=marks)
    assert [facts.leg_hours(leg) for leg in LEGS] == [20, 210, 70, 30, 70]


def test_first_reached_keeps_the_earliest_time_of_each_milestone() -> None:
    reached = first_reached(
        [
            (Milestone.collected, _h(5)),
            (Milestone.collected, _h(1)),
            (Milestone.released, _h(9)),
        ]
    )
    assert reached == {Milestone.collected: _h(1), Milestone.released: _h(9)}
