"""Quality gates on a unit of work: acceptance at receipt, lots and release tests, lot release.

* Acceptance is recorded by the manufacturing site (operators or QA there) once the apheresis
  has been received; the decision comes from the product profile's criteria
  (``tracker.domain.quality``). Accepted-with-deviation opens a deviation (QA closes it before
  manufacturing may start); a rejection alerts the coordinator with the plan's knock-on effects
  of a re-collection.
* Custody asks :func:`require_material_accepted` before an apheresis bag enters manufacturing,
  and :func:`after_item_event` starts the lot (with the profile's release tests) and moves it
  to testing when manufacturing completes.
* Results are append-only; a correction supersedes the current result with a reason; a result
  is reviewed once, by someone other than the recorder.
* Release happens only through the journey's ``qa_release`` step: the scan service asks
  :func:`release_check` before it accepts the step and calls :func:`issue_release` (the one
  place a release certificate is created) when the QA signature completes it. The signature
  covers :func:`lot_record`, the lot's complete record including every result.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import datetime
from datetime import timedelta
from typing import Any

from sqlalchemy import func
from sqlalchemy import select
from sqlalchemy.orm import Session

from tracker.clock import require_aware
from tracker.domain import identifiers as ids
from tracker.domain import quality as q
from tracker.domain.access import Role
from tracker.domain.alerting import AlertKind
from tracker.domain.alerting import Notify
from tracker.domain.chain import canonical_json
from tracker.domain.custody import CustodyState
from tracker.domain.custody import ItemKind
from tracker.domain.errors import TrackerError
from tracker.models import CustodyEvent
from tracker.models import Item
from tracker.models import ProductProfile
from tracker.models import ReleaseCertificate
from tracker.models import Signature
from tracker.models import StepRun
from tracker.models import TherapyOrder
from tracker.models import User
from tracker.models_quality import AcceptanceMeasurement
from tracker.models_quality import LotRelease
from tracker.models_quality import ManufacturingLot
from tracker.models_quality import MaterialAcceptance
from tracker.models_quality import PhysicianAcknowledgement
from tracker.models_quality import ReleaseTest
from tracker.models_quality import ReleaseTestResult
from tracker.services import alerts
from tracker.services import custody
from tracker.services.audit import record_audit
from tracker.services.deviations import open_deviation
from tracker.services.principals import Principal
from tracker.services.principals import scope_orders
from tracker.unit_of_work import UnitOfWork

# Who records acceptance and results at the manufacturing site; QA reviews and releases.
QUALITY_ROLES = frozenset({Role.manufacturing_operator, Role.qa})
QA_ROLES = frozenset({Role.qa})
ACCEPTED = frozenset({q.Decision.accepted.value, q.Decision.accepted_with_deviation.value})
OPEN_LOT = ("manufacturing", "testing")
RELEASED_LOT = ("released", "exceptional_release")
DEFAULT_RECOLLECTION_LEAD_DAYS = 7
_RECEIVED = {CustodyState.received.value, CustodyState.stored.value}


def quality_block(profile_data: dict[str, Any]) -> dict[str, Any]:
    block = profile_data.get("quality")
    return dict(block) if isinstance(block, dict) else {}


def _profile(session: Session, order: TherapyOrder) -> ProductProfile:
    profile = session.get(ProductProfile, order.product_profile_id)
    assert profile is not None
    return profile


def _lock_order_by_id(session: Session, order_id: int) -> None:
    session.execute(
        select(TherapyOrder.id)
        .where(TherapyOrder.id == order_id)
        .with_for_update(of=TherapyOrder, key_share=True)
    )


# ---------------------------------------------------------------------------------------------
# Starting-material acceptance
# ---------------------------------------------------------------------------------------------


def current_acceptance(session: Session, order_id: int) -> MaterialAcceptance | None:
    """The order's latest acceptance that no correction superseded."""
    superseded = select(MaterialAcceptance.supersedes_id).where(
        MaterialAcceptance.supersedes_id.is_not(None)
    )
    return session.scalar(
        select(MaterialAcceptance)
        .where(MaterialAcceptance.order_id == order_id, MaterialAcceptance.id.not_in(superseded))
        .order_by(MaterialAcceptance.id.desc())
        .limit(1)
    )


def _collected_at(session: Session, item_ids: list[int]) -> datetime | None:
    return session.scalar(
        select(func.min(CustodyEvent.occurred_at)).where(
            CustodyEvent.item_id.in_(item_ids),
            CustodyEvent.to_state == CustodyState.collected.value,
        )
    )


@dataclass(frozen=True)
class AcceptanceOutcome:
    acceptance: MaterialAcceptance
    decision: q.AcceptanceDecision
    deviation: str | None
    knock_on: dict[str, Any] | None


def record_acceptance(
    *,
    uow: UnitOfWork,
    principal: Principal,
    order_public_id: str,
    measurements: dict[str, tuple[float, str]],
    now: datetime,
    item_public_id: str | None = None,
    supersedes_id: int | None = None,
    reason: str | None = None,
) -> AcceptanceOutcome:
    """Record the measured values at receipt and decide; a correction supersedes with a reason."""
    now = require_aware(now)
    session = uow.session
    order = custody.lock_order(session, order_public_id, principal)
    site_id = order.manufacturing_site_id
    principal.require_role_at(QUALITY_ROLES, site_id, "record starting-material acceptance")
    bags = list(
        session.scalars(
            select(Item).where(Item.order_id == order.id, Item.kind == ItemKind.apheresis_bag.value)
        )
    )
    if item_public_id is not None:
        bags = [b for b in bags if b.public_id == item_public_id]
        if not bags:
            raise TrackerError("not_found", f"no apheresis bag {item_public_id} on this order")
    received = [b for b in bags if b.state in _RECEIVED and b.site_id == site_id]
    if not received:
        raise TrackerError("out_of_order", "receive the apheresis at the manufacturing site first")
    current = current_acceptance(session, order.id)
    if supersedes_id is not None:
        if current is None or current.id != supersedes_id:
            raise TrackerError("superseded", "correct the order's current acceptance")
        if not (reason or "").strip():
            raise TrackerError("reason_required", "a corrected acceptance needs a reason")
        if _lot_of_acceptance(session, current.id) is not None:
            raise TrackerError("conflict", "manufacturing already started from that acceptance")
    elif current is not None and current.decision in ACCEPTED:
        raise TrackerError("conflict", "the material is already accepted; correct it instead")
    quality = quality_block(_profile(session, order).data)
    criteria = q.criteria_from_profile(quality)
    measured = {code: q.Measured(float(v), unit) for code, (v, unit) in measurements.items()}
    collected = _collected_at(session, [b.id for b in received])
    age = q.material_age(collected, now) if collected is not None else None
    decision = q.decide_acceptance(criteria, measured, age=age)
    deviation = None
    if decision.decision is q.Decision.accepted_with_deviation:
        deviation = open_deviation(
            session,
            order_id=order.id,
            kind="manual",
            description=f"Starting material accepted with a deviation: {decision.summary()}",
            now=now,
            user_id=principal.user_id,
            item_id=received[0].id if len(received) == 1 else None,
            site_id=site_id,
        )
    acceptance = MaterialAcceptance(
        order_id=order.id,
        item_id=received[0].id if item_public_id is not None else None,
        site_id=site_id,
        decision=decision.decision.value,
        criteria={
            "acceptance": quality.get("acceptance", []),
            "age_from_collection": collected and collected.isoformat(),
        },
        decided_at=now,
        decided_by=principal.user_id,
        deviation_id=deviation.id if deviation else None,
        supersedes_id=supersedes_id,
        reason=(reason or "").strip() or None,
    )
    session.add(acceptance)
    session.flush()
    for r in decision.results:
        session.add(
            AcceptanceMeasurement(
                acceptance_id=acceptance.id,
                criterion=r.criterion.code,
                value=r.value,
                unit=r.unit,
                value_in_criterion_unit=r.converted,
                outcome=r.outcome,
            )
        )
    record_audit(
        session,
        now=now,
        actor_user_id=principal.user_id,
        action="material_acceptance",
        entity_type="order",
        entity_id=order.public_id,
        changes={"decision": [current.decision if current else None, acceptance.decision]},
        reason=acceptance.reason,
        site_id=site_id,
    )
    knock_on = None
    if decision.decision is q.Decision.rejected:
        knock_on = _recollection(session, order, acceptance, decision, quality, now)
    session.flush()
    return AcceptanceOutcome(
        acceptance, decision, deviation.public_id if deviation else None, knock_on
    )


def _recollection(
    session: Session,
    order: TherapyOrder,
    acceptance: MaterialAcceptance,
    decision: q.AcceptanceDecision,
    quality: dict[str, Any],
    now: datetime,
) -> dict[str, Any]:
    """The re-collection path: what moving the collection would do to the plan, and an alert."""
    lead = timedelta(
        days=float(quality.get("recollection_lead_days", DEFAULT_RECOLLECTION_LEAD_DAYS))
    )
    knock_on: dict[str, Any] = {
        "recollection": True,
        "earliest_collection": (now + lead).isoformat(),
        "plan": None,
        "moves": [],
        "problems": [],
    }
    from schedules import service as plans  # schedules builds on tracker services

    row = plans.live_plan(session, order.id)
    if row is not None:
        knock_on["plan"] = row.public_id
        try:
            preview = plans.knock_on_preview(session, row, "collection", now + lead)
        except TrackerError as exc:
            knock_on["problems"] = [exc.message]
        else:
            knock_on["moves"] = [
                {
                    "step": m.step.value,
                    "old_start": m.old_start.isoformat(),
                    "new_start": m.new_start.isoformat(),
                    "problem": m.problem,
                }
                for m in preview.replan.moves
                if m.moved or m.problem
            ]
            knock_on["problems"] = list(preview.replan.problems)
    failed = ", ".join(r.criterion.name for r in decision.failed)
    alerts.raise_alert(
        session,
        dedupe_key=f"quality:rejected:{acceptance.id}",
        kind=AlertKind.material_rejected,
        severity="alarm",
        notify=Notify.in_app,
        title=f"Starting material rejected ({failed}): re-collection needed",
        site_id=order.treatment_site_id,
        now=now,
        subject=order.public_id,
        order_id=order.id,
        details={"why": decision.summary(), **knock_on},
    )
    return knock_on


def require_material_accepted(session: Session, item: Item) -> MaterialAcceptance:
    """Custody's gate: an apheresis bag enters manufacturing only from accepted material."""
    acceptance = current_acceptance(session, item.order_id) if item.order_id else None
    if acceptance is None:
        raise TrackerError(
            "material_not_accepted",
            "Record the starting-material acceptance before manufacturing starts.",
        )
    if acceptance.decision not in ACCEPTED:
        raise TrackerError(
            "material_not_accepted", "The starting material was rejected: re-collection needed."
        )
    if acceptance.item_id is not None and acceptance.item_id != item.id:
        raise TrackerError("material_not_accepted", "This bag is not the accepted material.")
    return acceptance


# ---------------------------------------------------------------------------------------------
# Lots and release tests
# ---------------------------------------------------------------------------------------------


def _lot_of_acceptance(session: Session, acceptance_id: int) -> ManufacturingLot | None:
    return session.scalar(
        select(ManufacturingLot).where(ManufacturingLot.acceptance_id == acceptance_id)
    )


def order_lot(session: Session, order_id: int) -> ManufacturingLot | None:
    """The order's latest lot that was not rejected."""
    return session.scalar(
        select(ManufacturingLot)
        .where(ManufacturingLot.order_id == order_id, ManufacturingLot.status != "rejected")
        .order_by(ManufacturingLot.id.desc())
        .limit(1)
    )


def start_lot(
    session: Session, *, order: TherapyOrder, acceptance: MaterialAcceptance, now: datetime
) -> ManufacturingLot:
    """Start the lot of an accepted material with the profile's release tests."""
    existing = _lot_of_acceptance(session, acceptance.id)
    if existing is not None:
        return existing
    quality = quality_block(_profile(session, order).data)
    specs = q.release_tests_from_profile(quality)
    days = float(quality.get("manufacturing_days", 0) or 0)
    lot = ManufacturingLot(
        code=f"LOT-{secrets.token_hex(5).upper()}",
        order_id=order.id,
        site_id=order.manufacturing_site_id,
        process=str(quality.get("process") or "unspecified"),
        acceptance_id=acceptance.id,
        started_at=now,
        status="manufacturing",
    )
    session.add(lot)
    session.flush()
    for spec, started, due in q.test_schedule(specs, lot_started_at=now, manufacturing_days=days):
        session.add(
            ReleaseTest(
                lot_id=lot.id,
                code=spec.code,
                method=spec.method,
                spec=dict(spec.spec),
                started_at=started,
                expected_turnaround_hours=spec.turnaround_hours,
                due_at=due,
            )
        )
    record_audit(
        session,
        now=now,
        actor_user_id=None,
        action="lot_started",
        entity_type="manufacturing_lot",
        entity_id=lot.code,
        changes={"order": [None, order.public_id], "tests": [None, [s.code for s in specs]]},
        site_id=lot.site_id,
    )
    session.flush()
    check_release_against_plan(session, lot, now)
    return lot


def _set_status(session: Session, lot: ManufacturingLot, status: str, now: datetime) -> None:
    old = lot.status
    if old == status:
        return
    lot.status = status  # the lot's one mutable column, written here only
    if status == "testing" and lot.completed_at is None:
        lot.completed_at = now
    record_audit(
        session,
        now=now,
        actor_user_id=None,
        action="lot_status",
        entity_type="manufacturing_lot",
        entity_id=lot.code,
        changes={"status": [old, status]},
        site_id=lot.site_id,
    )


def after_item_event(
    session: Session, *, item: Item, to_state: CustodyState, now: datetime
) -> None:
    """Custody hook: manufacturing start opens the lot; manufacturing complete starts testing."""
    if item.kind != ItemKind.apheresis_bag.value or item.order_id is None:
        return
    if to_state is CustodyState.in_manufacturing:
        acceptance = require_material_accepted(session, item)
        order = session.get(TherapyOrder, item.order_id)
        assert order is not None
        start_lot(session, order=order, acceptance=acceptance, now=now)
    elif to_state is CustodyState.consumed:
        lot = order_lot(session, item.order_id)
        if lot is not None and lot.status == "manufacturing":
            _set_status(session, lot, "testing", now)


def _lock_lot(session: Session, principal: Principal, code: str) -> ManufacturingLot:
    lot = session.scalar(select(ManufacturingLot).where(ManufacturingLot.code == code))
    if lot is None or not _visible(session, principal, lot.order_id):
        raise TrackerError("not_found", f"no lot {code}")
    _lock_order_by_id(session, lot.order_id)
    session.refresh(lot)
    return lot


def _visible(session: Session, principal: Principal, order_id: int) -> bool:
    return (
        session.scalar(
            scope_orders(select(TherapyOrder.id), principal).where(TherapyOrder.id == order_id)
        )
        is not None
    )


def lot_tests(session: Session, lot_id: int) -> list[ReleaseTest]:
    return list(
        session.scalars(
            select(ReleaseTest).where(ReleaseTest.lot_id == lot_id).order_by(ReleaseTest.id)
        )
    )


def results_by_test(session: Session, lot_id: int) -> dict[int, list[ReleaseTestResult]]:
    """Every result of the lot's tests, oldest first, per test id."""
    rows = session.scalars(
        select(ReleaseTestResult)
        .join(ReleaseTest, ReleaseTest.id == ReleaseTestResult.test_id)
        .where(ReleaseTest.lot_id == lot_id)
        .order_by(ReleaseTestResult.id)
    )
    out: dict[int, list[ReleaseTestResult]] = {}
    for row in rows:
        out.setdefault(row.test_id, []).append(row)
    return out


def current_result(results: list[ReleaseTestResult]) -> ReleaseTestResult | None:
    superseded = {r.supersedes_id for r in results if r.supersedes_id is not None}
    live = [r for r in results if r.id not in superseded]
    return live[-1] if live else None


def test_states(session: Session, lot: ManufacturingLot) -> list[q.TestState]:
    return test_states_of(session, [lot.id]).get(lot.id, [])


def test_states_of(session: Session, lot_ids: list[int]) -> dict[int, list[q.TestState]]:
    """Each lot's tests with their current results, per lot id, in two statements."""
    if not lot_ids:
        return {}
    results: dict[int, list[ReleaseTestResult]] = {}
    for row in session.scalars(
        select(ReleaseTestResult)
        .join(ReleaseTest, ReleaseTest.id == ReleaseTestResult.test_id)
        .where(ReleaseTest.lot_id.in_(lot_ids))
        .order_by(ReleaseTestResult.id)
    ):
        results.setdefault(row.test_id, []).append(row)
    out: dict[int, list[q.TestState]] = {lot_id: [] for lot_id in lot_ids}
    for test in session.scalars(
        select(ReleaseTest).where(ReleaseTest.lot_id.in_(lot_ids)).order_by(ReleaseTest.id)
    ):
        cur = current_result(results.get(test.id, []))
        out[test.lot_id].append(
            q.TestState(
                test.code,
                test.due_at,
                cur.outcome if cur else None,
                reviewed=bool(cur and cur.reviewed_by is not None),
                recorded_at=cur.recorded_at if cur else None,
            )
        )
    return out


def record_result(
    *,
    uow: UnitOfWork,
    principal: Principal,
    lot_code: str,
    test_code: str,
    value: str,
    unit: str | None,
    now: datetime,
    supersedes_id: int | None = None,
    reason: str | None = None,
) -> ReleaseTestResult:
    """Record a release test result; a correction supersedes the current one, with a reason."""
    now = require_aware(now)
    session = uow.session
    lot = _lock_lot(session, principal, lot_code)
    principal.require_role_at(QUALITY_ROLES, lot.site_id, "record release test results")
    if lot.status not in OPEN_LOT:
        raise TrackerError("conflict", f"lot {lot.code} is {lot.status.replace('_', ' ')}")
    test = session.scalar(
        select(ReleaseTest).where(ReleaseTest.lot_id == lot.id, ReleaseTest.code == test_code)
    )
    if test is None:
        raise TrackerError("not_found", f"lot {lot.code} has no {test_code} test")
    current = current_result(results_by_test(session, lot.id).get(test.id, []))
    if supersedes_id is None and current is not None:
        raise TrackerError("conflict", "this test has a result: correct it, with a reason")
    if supersedes_id is not None:
        if current is None or current.id != supersedes_id:
            raise TrackerError("superseded", "correct the test's current result")
        if not (reason or "").strip():
            raise TrackerError("reason_required", "a corrected result needs a reason")
    evaluated = q.evaluate_result(test.spec, value, unit)
    result = ReleaseTestResult(
        test_id=test.id,
        value=value.strip()[:64],
        numeric_value=evaluated.numeric,
        unit=(unit or test.spec.get("unit") or None) if test.spec.get("kind") == "range" else unit,
        outcome=evaluated.outcome,
        recorded_at=now,
        recorded_by=principal.user_id,
        supersedes_id=supersedes_id,
        reason=(reason or "").strip() or None,
    )
    session.add(result)
    session.flush()
    record_audit(
        session,
        now=now,
        actor_user_id=principal.user_id,
        action="release_result" if supersedes_id is None else "release_result_corrected",
        entity_type="manufacturing_lot",
        entity_id=lot.code,
        changes={test.code: [current.value if current else None, result.value]},
        reason=result.reason,
        site_id=lot.site_id,
    )
    check_release_against_plan(session, lot, now)
    return result


def review_result(
    *, uow: UnitOfWork, principal: Principal, result_id: int, now: datetime
) -> ReleaseTestResult:
    """QA's review of a result, once, by someone other than who recorded it."""
    now = require_aware(now)
    session = uow.session
    row = session.get(ReleaseTestResult, result_id)
    test = session.get(ReleaseTest, row.test_id) if row else None
    lot = session.get(ManufacturingLot, test.lot_id) if test else None
    if row is None or lot is None or not _visible(session, principal, lot.order_id):
        raise TrackerError("not_found", f"no result {result_id}")
    lot = _lock_lot(session, principal, lot.code)
    principal.require_role_at(QA_ROLES, lot.site_id, "review release test results")
    session.refresh(row)
    if current_result(results_by_test(session, lot.id).get(row.test_id, [])) is not row:
        raise TrackerError("superseded", "this result was corrected; review the current one")
    if row.reviewed_by is not None:
        raise TrackerError("conflict", "this result is already reviewed")
    if row.recorded_by == principal.user_id:
        raise TrackerError("reviewer_is_recorder")
    row.reviewed_by, row.reviewed_at = principal.user_id, now
    record_audit(
        session,
        now=now,
        actor_user_id=principal.user_id,
        action="release_result_reviewed",
        entity_type="manufacturing_lot",
        entity_id=lot.code,
        changes={"result": [None, row.id]},
        site_id=lot.site_id,
    )
    session.flush()
    return row


# ---------------------------------------------------------------------------------------------
# Expected release against the plan
# ---------------------------------------------------------------------------------------------


def estimate(
    session: Session,
    lot: ManufacturingLot,
    now: datetime,
    states: list[q.TestState] | None = None,
) -> q.ReleaseEstimate:
    order = session.get(TherapyOrder, lot.order_id)
    assert order is not None
    grace = q.grace_from_profile(quality_block(_profile(session, order).data))
    if states is None:
        states = test_states(session, lot)
    return q.expected_release(states, now, grace=grace)


def planned_ld_start(session: Session, order_id: int) -> datetime | None:
    from schedules import service as plans

    row = plans.live_plan(session, order_id)
    if row is None:
        return None
    return plans.step_start(session, row, "lymphodepletion")


def check_release_against_plan(session: Session, lot: ManufacturingLot, now: datetime) -> bool:
    """Alert the coordinator when the expected release falls after the planned LD start.

    Only before lymphodepletion has started; one alert per lot, LD start and expected day,
    so a release that keeps slipping alerts again on each new day.
    """
    if lot.status not in OPEN_LOT:
        return False
    ld = planned_ld_start(session, lot.order_id)
    if ld is None or ld <= now:
        return False
    est = estimate(session, lot, now)
    if est.expected_at is None or est.expected_at <= ld:
        return False
    order = session.get(TherapyOrder, lot.order_id)
    assert order is not None
    late = f" ({', '.join(est.late)} late)" if est.late else ""
    alerts.raise_alert(
        session,
        dedupe_key=f"quality:after_ld:{lot.code}:{ld:%Y%m%d%H%M}:{est.expected_at:%Y%m%d}",
        kind=AlertKind.release_after_ld,
        severity="alarm",
        notify=Notify.in_app,
        title=(
            f"Lot {lot.code}: expected release {est.expected_at:%Y-%m-%d %H:%M} UTC is after "
            f"the planned lymphodepletion {ld:%Y-%m-%d %H:%M} UTC{late}"
        ),
        site_id=order.treatment_site_id,
        now=now,
        subject=lot.code,
        order_id=order.id,
        details={
            "lot": lot.code,
            "expected_release": est.expected_at.isoformat(),
            "ld_start": ld.isoformat(),
            "slowest": est.slowest,
            "late": list(est.late),
        },
    )
    return True


def sweep_release_estimates(*, uow: UnitOfWork, now: datetime, limit: int = 200) -> int:
    """Worker job: re-estimate open lots (a late result moves the date) and alert if needed."""
    session = uow.session
    lots = list(
        session.scalars(
            select(ManufacturingLot)
            .where(ManufacturingLot.status.in_(OPEN_LOT))
            .order_by(ManufacturingLot.id)
            .limit(limit)
        )
    )
    raised = sum(1 for lot in lots if check_release_against_plan(session, lot, now))
    uow.commit()
    return raised


# ---------------------------------------------------------------------------------------------
# Exceptional release: the physician's acknowledgement
# ---------------------------------------------------------------------------------------------


def _current_oos_ids(session: Session, lot: ManufacturingLot) -> list[int]:
    results = results_by_test(session, lot.id)
    ids_: list[int] = []
    for test in lot_tests(session, lot.id):
        cur = current_result(results.get(test.id, []))
        if cur is not None and cur.outcome == "oos":
            ids_.append(cur.id)
    return ids_


def acknowledge_oos(
    *,
    uow: UnitOfWork,
    principal: Principal,
    lot_code: str,
    physician_name: str,
    statement: str,
    acknowledged_at: datetime,
    now: datetime,
) -> PhysicianAcknowledgement:
    """QA records the treating physician's acknowledgement of the lot's OOS results."""
    now = require_aware(now)
    acknowledged_at = require_aware(acknowledged_at)
    session = uow.session
    lot = _lock_lot(session, principal, lot_code)
    principal.require_role_at(QA_ROLES, lot.site_id, "record a physician's acknowledgement")
    if not physician_name.strip() or not statement.strip():
        raise TrackerError("invalid_request", "name the physician and record their statement")
    if acknowledged_at > now:
        raise TrackerError("invalid_request", "the acknowledgement cannot be in the future")
    state = q.lot_state(test_states(session, lot))
    if state.readiness is not q.Readiness.failed:
        raise TrackerError("invalid_request", "only an out-of-specification lot needs this")
    if state.pending or state.unreviewed:
        raise TrackerError(
            "release_tests_incomplete",
            f"first every result and its review: {', '.join(state.pending + state.unreviewed)}",
        )
    ack = PhysicianAcknowledgement(
        lot_id=lot.id,
        physician_name=physician_name.strip()[:200],
        statement=statement.strip(),
        acknowledged_at=acknowledged_at,
        oos_results={"ids": _current_oos_ids(session, lot), "tests": list(state.oos)},
        recorded_by=principal.user_id,
        recorded_at=now,
    )
    session.add(ack)
    session.flush()
    record_audit(
        session,
        now=now,
        actor_user_id=principal.user_id,
        action="physician_acknowledgement",
        entity_type="manufacturing_lot",
        entity_id=lot.code,
        changes={"oos": [None, list(state.oos)]},
        site_id=lot.site_id,
    )
    return ack


def covering_acknowledgement(
    session: Session, lot: ManufacturingLot
) -> PhysicianAcknowledgement | None:
    """The latest acknowledgement that names exactly the lot's current OOS results."""
    ack = session.scalar(
        select(PhysicianAcknowledgement)
        .where(PhysicianAcknowledgement.lot_id == lot.id)
        .order_by(PhysicianAcknowledgement.id.desc())
        .limit(1)
    )
    if ack is None or sorted(ack.oos_results.get("ids", [])) != sorted(
        _current_oos_ids(session, lot)
    ):
        return None
    return ack


# ---------------------------------------------------------------------------------------------
# Release (through the qa_release step only)
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ReleaseGate:
    lot: ManufacturingLot
    kind: str  # "standard" | "exceptional" | "re-release"
    acknowledgement: PhysicianAcknowledgement | None


def release_check(session: Session, order_id: int) -> ReleaseGate:
    """May QA release this order's lot now? Refuses with the reason a scanner shows."""
    lot = order_lot(session, order_id)
    if lot is None:
        raise TrackerError("no_lot", "No manufacturing lot of this order: nothing to release.")
    if lot.status in RELEASED_LOT:
        return ReleaseGate(lot, "re-release", None)
    state = q.lot_state(test_states(session, lot))
    if state.pending or state.unreviewed:
        waiting = [f"{c} (no result)" for c in state.pending]
        waiting += [f"{c} (not reviewed)" for c in state.unreviewed]
        raise TrackerError(
            "release_tests_incomplete",
            f"Lot {lot.code} is not ready: {', '.join(waiting)}.",
        )
    if state.readiness is q.Readiness.failed:
        ack = covering_acknowledgement(session, lot)
        if ack is None:
            raise TrackerError(
                "lot_out_of_specification",
                f"Lot {lot.code} is out of specification ({', '.join(state.oos)}): only an "
                "exceptional release with the treating physician's acknowledgement.",
            )
        return ReleaseGate(lot, "exceptional", ack)
    return ReleaseGate(lot, "standard", None)


def lot_record(session: Session, lot: ManufacturingLot) -> dict[str, Any]:
    """The lot's complete record, as QA signs it: acceptance, every test and every result."""
    acceptance = session.get(MaterialAcceptance, lot.acceptance_id)
    assert acceptance is not None
    measurements = session.scalars(
        select(AcceptanceMeasurement)
        .where(AcceptanceMeasurement.acceptance_id == acceptance.id)
        .order_by(AcceptanceMeasurement.id)
    )
    results = results_by_test(session, lot.id)
    tests = []
    for test in lot_tests(session, lot.id):
        tests.append(
            {
                "code": test.code,
                "method": test.method,
                "spec": test.spec,
                "due_at": test.due_at.isoformat(),
                "results": [
                    {
                        "id": r.id,
                        "value": r.value,
                        "unit": r.unit,
                        "outcome": r.outcome,
                        "recorded_by": r.recorded_by,
                        "reviewed_by": r.reviewed_by,
                        "supersedes": r.supersedes_id,
                        "reason": r.reason,
                    }
                    for r in results.get(test.id, [])
                ],
            }
        )
    ack = covering_acknowledgement(session, lot)
    return {
        "lot": lot.code,
        "process": lot.process,
        "site": lot.site_id,
        "acceptance": {
            "id": acceptance.id,
            "decision": acceptance.decision,
            "measurements": {m.criterion: [m.value, m.unit, m.outcome] for m in measurements},
        },
        "tests": tests,
        "physician_acknowledgement": (
            {
                "id": ack.id,
                "physician": ack.physician_name,
                "statement": ack.statement,
                "at": ack.acknowledged_at.isoformat(),
            }
            if ack
            else None
        ),
    }


def lot_record_hash(session: Session, lot: ManufacturingLot) -> str:
    """SHA-256 of the lot's record in canonical JSON (frozen on the certificate at release)."""
    return hashlib.sha256(canonical_json(lot_record(session, lot)).encode()).hexdigest()


def issue_release(
    session: Session,
    *,
    order_id: int,
    run: StepRun,
    signature: Signature,
    bags: list[str],
    now: datetime,
) -> ReleaseCertificate:
    """The one place a release certificate is issued: QA release of the order's lot.

    The signature must cover the lot's record as it is now (``lot_record``); the first release
    of a lot writes its ``lot_releases`` row (standard, or exceptional with the physician's
    acknowledgement); a later release (a bag back from quarantine) issues a new certificate.
    """
    gate = release_check(session, order_id)
    lot = gate.lot
    certificate = ReleaseCertificate(
        code=ids.new_internal_id(ids.InternalKind.certificate, secrets.token_bytes).value,
        order_id=order_id,
        run_id=run.id,
        signature_id=signature.id,
        issued_at=now,
        items={
            "bags": bags,
            "lot": lot.code,
            "kind": gate.kind,
            "lot_record_hash": lot_record_hash(session, lot),
        },
    )
    session.add(certificate)
    session.flush()
    if gate.kind != "re-release":
        ack = gate.acknowledgement
        session.add(
            LotRelease(
                lot_id=lot.id,
                kind=gate.kind,
                signature_id=signature.id,
                physician_name=ack.physician_name if ack else None,
                physician_acknowledged_at=ack.acknowledged_at if ack else None,
                physician_statement=ack.statement if ack else None,
                certificate_id=certificate.id,
                released_at=now,
            )
        )
        _set_status(
            session, lot, "released" if gate.kind == "standard" else "exceptional_release", now
        )
        session.flush()
    return certificate


def require_release_allowed(session: Session, item: Item) -> None:
    """Custody's gate for a product bag moving to released: the lot must be releasable."""
    if item.kind == ItemKind.final_product_bag.value and item.order_id is not None:
        release_check(session, item.order_id)


def user_name(session: Session, user_id: int | None) -> str | None:
    if user_id is None:
        return None
    return session.scalar(select(User.full_name).where(User.id == user_id))
