"""Quality data for the demo: profile criteria and tests, and lots in several states.

The fresh profile runs the standard 9-day process with a 14-day culture sterility test; the
locally cryopreserved one a rapid 3-day process with a 3-day PCR sterility test. Demo patients
show a rejected starting material (re-collection), a lot still in manufacturing with results
coming in, standard releases and one exceptional release of an out-of-specification lot.
"""

from __future__ import annotations

from datetime import datetime
from datetime import timedelta
from typing import Any

from tracker.services import quality
from tracker.services.principals import Principal
from tracker.unit_of_work import UnitOfWork


def _criteria(*, fresh: bool) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = [
        {"code": "tnc", "name": "Total nucleated cells", "unit": "10^9 cells", "min": 2.0,
         "max": None, "on_fail": "reject"},
        {"code": "viability", "name": "Viability", "unit": "%", "min": 80.0, "max": None,
         "on_fail": "deviation"},
        {"code": "cd3_fraction", "name": "CD3+ fraction", "unit": "%", "min": 15.0,
         "max": None, "on_fail": "reject"},
        {"code": "volume", "name": "Volume", "unit": "mL", "min": 50.0, "max": 400.0,
         "on_fail": "deviation"},
    ]  # fmt: skip
    if fresh:
        out.append(
            {"code": "age", "name": "Age since collection", "unit": "h", "min": None,
             "max": 72.0, "on_fail": "reject"}
        )  # fmt: skip
    return out


def _tests(*, rapid: bool) -> list[dict[str, Any]]:
    sterility = ("rapid_pcr_3d", 72) if rapid else ("culture_14d", 336)
    negative = {"kind": "qualitative", "expected": "negative"}
    return [
        {"code": "sterility", "method": sterility[0], "turnaround_hours": sterility[1],
         "spec": negative},
        {"code": "endotoxin", "method": "lal_kinetic", "turnaround_hours": 24,
         "spec": {"kind": "range", "unit": "EU/mL", "min": None, "max": 5.0}},
        {"code": "mycoplasma", "method": "pcr", "turnaround_hours": 48, "spec": negative},
        {"code": "viability", "method": "flow_7aad", "turnaround_hours": 4,
         "spec": {"kind": "range", "unit": "%", "min": 70.0, "max": None}},
        {"code": "identity", "method": "flow_car", "turnaround_hours": 24,
         "spec": {"kind": "qualitative", "expected": "positive"}},
        {"code": "potency", "method": "ifng_release", "turnaround_hours": 72,
         "spec": {"kind": "range", "unit": "pg/mL", "min": 100.0, "max": None}},
        {"code": "vcn", "method": "ddpcr", "turnaround_hours": 48,
         "spec": {"kind": "range", "unit": "copies/cell", "min": 0.5, "max": 5.0}},
    ]  # fmt: skip


def profile_quality(*, fresh: bool, rapid: bool) -> dict[str, Any]:
    return {
        "acceptance": _criteria(fresh=fresh),
        "release_tests": _tests(rapid=rapid),
        "process": "rapid_3d" if rapid else "standard_9d",
        "manufacturing_days": 3 if rapid else 9,
        "late_result_grace_hours": 24,
        "recollection_lead_days": 7,
    }


GOOD = {
    "tnc": (3.4, "10^9 cells"),
    "viability": (0.93, "fraction"),
    "cd3_fraction": (41.0, "%"),
    "volume": (0.21, "L"),
}
LOW_CD3 = GOOD | {"cd3_fraction": (9.0, "%")}
PASSING = {
    "sterility": ("negative", None),
    "endotoxin": ("0.8", "EU/mL"),
    "mycoplasma": ("negative", None),
    "viability": ("91", "%"),
    "identity": ("positive", None),
    "potency": ("520", "pg/mL"),
    "vcn": ("2.1", "copies/cell"),
}
# Stage -> what the demo does at the quality gates for that patient.
REJECTED_STAGE = 6  # received, rejected for a low CD3+ fraction: re-collection
IN_PROGRESS_STAGE = 7  # manufacturing started; results come in later
EXCEPTIONAL_STAGE = 10  # released by exceptional release (viability OOS, physician agreed)


def accept(
    uow: UnitOfWork, p: dict[str, Principal], order_public_id: str, stage: int, at: datetime
) -> None:
    quality.record_acceptance(
        uow=uow,
        principal=p["operator"],
        order_public_id=order_public_id,
        measurements=LOW_CD3 if stage == REJECTED_STAGE else GOOD,
        now=at,
    )


def _result(
    uow: UnitOfWork,
    p: dict[str, Principal],
    lot: str,
    test: str,
    value: tuple[str, str | None],
    at: datetime,
    *,
    review: bool = True,
) -> None:
    row = quality.record_result(
        uow=uow,
        principal=p["operator"],
        lot_code=lot,
        test_code=test,
        value=value[0],
        unit=value[1],
        now=at,
    )
    if review:
        quality.review_result(
            uow=uow, principal=p["qa"], result_id=row.id, now=at + timedelta(minutes=30)
        )


def test_results(
    uow: UnitOfWork, p: dict[str, Principal], order_id: int, stage: int, at: datetime
) -> None:
    """Before QA release: every result recorded and reviewed (one OOS for the exceptional one)."""
    lot = quality.order_lot(uow.session, order_id)
    assert lot is not None
    results = dict(PASSING)
    if stage == EXCEPTIONAL_STAGE:
        results["viability"] = ("64", "%")
    for n, (test, value) in enumerate(results.items()):
        _result(uow, p, lot.code, test, value, at - timedelta(hours=20 - n))
    if stage == EXCEPTIONAL_STAGE:
        quality.acknowledge_oos(
            uow=uow,
            principal=p["qa"],
            lot_code=lot.code,
            physician_name="Dr. Demo Physician",
            statement="Viability 64 % reviewed; benefit outweighs risk; infuse as planned.",
            acknowledged_at=at - timedelta(hours=2),
            now=at - timedelta(hours=1),
        )


def partial_results(uow: UnitOfWork, p: dict[str, Principal], order_id: int, at: datetime) -> None:
    """A lot in progress: the quick tests reported, one awaiting review, the rest pending."""
    lot = quality.order_lot(uow.session, order_id)
    assert lot is not None
    _result(uow, p, lot.code, "viability", PASSING["viability"], at)
    _result(uow, p, lot.code, "endotoxin", PASSING["endotoxin"], at, review=False)
