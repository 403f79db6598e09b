"""Builders for quality-gate rows (acceptances, lots, release tests, results, releases).

They write rows directly (flushing, never committing) so a test can seed any mix of sites,
processes and outcomes; the quality service is what applies the rules in production. Every
builder takes the session, the rows it hangs off, and keyword overrides.
"""

from __future__ import annotations

import hashlib
import itertools
from datetime import datetime
from datetime import timedelta
from typing import Any

from sqlalchemy.orm import Session

from tracker.models import ReleaseCertificate
from tracker.models import Signature
from tracker.models import StepRun
from tracker.models_quality import AcceptanceMeasurement
from tracker.models_quality import LotRelease
from tracker.models_quality import ManufacturingLot
from tracker.models_quality import MaterialAcceptance
from tracker.models_quality import ReleaseTest
from tracker.models_quality import ReleaseTestResult

_seq = itertools.count(1)


def acceptance_criteria() -> list[dict[str, Any]]:
    """A profile's starting-material acceptance criteria (units as the lab reports them)."""
    return [
        {
            "code": "tnc",
            "name": "Total nucleated cells",
            "unit": "10^9 cells",
            "min": 2.0,
            "max": None,
            "on_fail": "reject",
        },
        {
            "code": "viability",
            "name": "Viability",
            "unit": "%",
            "min": 80.0,
            "max": None,
            "on_fail": "deviation",
        },
        {
            "code": "cd3_fraction",
            "name": "CD3+ fraction",
            "unit": "%",
            "min": 15.0,
            "max": None,
            "on_fail": "reject",
        },
        {
            "code": "volume",
            "name": "Volume",
            "unit": "mL",
            "min": 50.0,
            "max": 400.0,
            "on_fail": "deviation",
        },
        {
            "code": "age",
            "name": "Age since collection",
            "unit": "h",
            "min": None,
            "max": 48.0,
            "on_fail": "reject",
        },
    ]


def release_test_specs(*, rapid: bool = False) -> list[dict[str, Any]]:
    """A profile's release tests; ``rapid`` swaps the 14-day culture for a 3-day PCR."""
    sterility = (
        {"code": "sterility", "method": "rapid_pcr_3d", "turnaround_hours": 72}
        if rapid
        else {"code": "sterility", "method": "culture_14d", "turnaround_hours": 336}
    )
    return [
        {**sterility, "spec": {"kind": "qualitative", "expected": "negative"}},
        {
            "code": "endotoxin",
            "method": "lal_kinetic",
            "turnaround_hours": 24,
            "spec": {"kind": "range", "unit": "EU/mL", "min": None, "max": 5.0},
        },
        {
            "code": "mycoplasma",
            "method": "pcr",
            "turnaround_hours": 48,
            "spec": {"kind": "qualitative", "expected": "negative"},
        },
        {
            "code": "viability",
            "method": "flow_7aad",
            "turnaround_hours": 4,
            "spec": {"kind": "range", "unit": "%", "min": 70.0, "max": None},
        },
        {
            "code": "identity",
            "method": "flow_car",
            "turnaround_hours": 24,
            "spec": {"kind": "qualitative", "expected": "positive"},
        },
        {
            "code": "potency",
            "method": "ifng_release",
            "turnaround_hours": 72,
            "spec": {"kind": "range", "unit": "pg/mL", "min": 100.0, "max": None},
        },
        {
            "code": "vcn",
            "method": "ddpcr",
            "turnaround_hours": 48,
            "spec": {"kind": "range", "unit": "copies/cell", "min": 0.5, "max": 5.0},
        },
    ]


def quality_profile_data(*, rapid: bool = False) -> dict[str, Any]:
    """The ``data["quality"]`` block of a product profile."""
    return {
        "acceptance": acceptance_criteria(),
        "release_tests": release_test_specs(rapid=rapid),
        "process": "rapid_3d" if rapid else "standard_9d",
        "manufacturing_days": 3 if rapid else 9,
    }


def make_acceptance(
    session: Session,
    *,
    order: Any,
    site_id: int,
    decided_by: int,
    decided_at: datetime,
    decision: str = "accepted",
    item_id: int | None = None,
    measurements: dict[str, tuple[float, str, float, str]] | None = None,
    deviation_id: int | None = None,
    supersedes_id: int | None = None,
    reason: str | None = None,
) -> MaterialAcceptance:
    """``measurements``: criterion -> (value, unit, value in criterion unit, outcome)."""
    acceptance = MaterialAcceptance(
        order_id=order.id,
        item_id=item_id,
        site_id=site_id,
        decision=decision,
        criteria={"acceptance": acceptance_criteria()},
        decided_at=decided_at,
        decided_by=decided_by,
        deviation_id=deviation_id,
        supersedes_id=supersedes_id,
        reason=reason,
    )
    session.add(acceptance)
    session.flush()
    for code, (value, unit, converted, outcome) in (measurements or {}).items():
        session.add(
            AcceptanceMeasurement(
                acceptance_id=acceptance.id,
                criterion=code,
                value=value,
                unit=unit,
                value_in_criterion_unit=converted,
                outcome=outcome,
            )
        )
    session.flush()
    return acceptance


def make_lot(
    session: Session,
    *,
    order: Any,
    acceptance: MaterialAcceptance,
    site_id: int,
    started_at: datetime,
    process: str = "standard_9d",
    status: str = "testing",
    completed_at: datetime | None = None,
    code: str | None = None,
) -> ManufacturingLot:
    lot = ManufacturingLot(
        code=code or f"LOT-T{next(_seq):06d}",
        order_id=order.id,
        site_id=site_id,
        process=process,
        acceptance_id=acceptance.id,
        started_at=started_at,
        completed_at=completed_at,
        status=status,
    )
    session.add(lot)
    session.flush()
    return lot


def make_release_tests(
    session: Session, *, lot: ManufacturingLot, started_at: datetime, rapid: bool = False
) -> dict[str, ReleaseTest]:
    tests: dict[str, ReleaseTest] = {}
    for spec in release_test_specs(rapid=rapid):
        test = ReleaseTest(
            lot_id=lot.id,
            code=spec["code"],
            method=spec["method"],
            spec=spec["spec"],
            started_at=started_at,
            expected_turnaround_hours=spec["turnaround_hours"],
            due_at=started_at + timedelta(hours=spec["turnaround_hours"]),
        )
        session.add(test)
        tests[spec["code"]] = test
    session.flush()
    return tests


def make_result(
    session: Session,
    *,
    test: ReleaseTest,
    value: str,
    outcome: str,
    recorded_by: int,
    recorded_at: datetime,
    numeric_value: float | None = None,
    unit: str | None = None,
    reviewed_by: int | None = None,
    supersedes_id: int | None = None,
    reason: str | None = None,
) -> ReleaseTestResult:
    result = ReleaseTestResult(
        test_id=test.id,
        value=value,
        numeric_value=numeric_value,
        unit=unit,
        outcome=outcome,
        recorded_at=recorded_at,
        recorded_by=recorded_by,
        reviewed_by=reviewed_by,
        reviewed_at=recorded_at if reviewed_by is not None else None,
        supersedes_id=supersedes_id,
        reason=reason,
    )
    session.add(result)
    session.flush()
    return result


def make_lot_release(
    session: Session,
    *,
    lot: ManufacturingLot,
    qa_user_id: int,
    site_id: int,
    released_at: datetime,
    kind: str = "standard",
    physician_name: str | None = None,
    physician_statement: str | None = None,
) -> LotRelease:
    """A release with its own step run, signature and certificate (no custody moves)."""
    run = StepRun(
        order_id=lot.order_id,
        step="qa_release",
        site_id=site_id,
        status="completed",
        started_by_id=qa_user_id,
        started_at=released_at,
        completed_at=released_at,
        answers={},
    )
    session.add(run)
    signature = Signature(
        user_id=qa_user_id,
        printed_name="Factory QA",
        meaning="approval",
        signed_at=released_at,
        record_type="manufacturing_lot",
        record_id=lot.code,
        record_hash=hashlib.sha256(lot.code.encode()).hexdigest(),
    )
    session.add(signature)
    session.flush()
    certificate = ReleaseCertificate(
        code=f"CRTF{next(_seq):013d}"[:17],
        order_id=lot.order_id,
        run_id=run.id,
        signature_id=signature.id,
        issued_at=released_at,
        items={"bags": [], "lot": lot.code},
    )
    session.add(certificate)
    session.flush()
    release = LotRelease(
        lot_id=lot.id,
        kind=kind,
        signature_id=signature.id,
        physician_name=physician_name,
        physician_acknowledged_at=released_at if kind == "exceptional" else None,
        physician_statement=physician_statement,
        certificate_id=certificate.id,
        released_at=released_at,
    )
    session.add(release)
    lot.status = "exceptional_release" if kind == "exceptional" else "released"
    session.flush()
    return release
