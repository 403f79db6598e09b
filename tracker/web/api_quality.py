"""JSON API of the quality gates (under /api/v1): acceptance, lots, results, acknowledgements.

Registered on the API blueprint, so authentication, CSRF for sessions, Idempotency-Key,
errors with reason codes and the OpenAPI document are those of every other endpoint. Release
itself has no endpoint here: it is the ``qa_release`` scan step (POST /api/v1/scans).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from flask import Response
from flask import jsonify
from flask.typing import ResponseReturnValue
from pydantic import Field

from tracker import exports
from tracker import queries_quality
from tracker.models_quality import ReleaseTest
from tracker.services import quality
from tracker.web.api import bp
from tracker.web.api import registry
from tracker.web.auth import current_principal
from tracker.web.openapi import DbId
from tracker.web.openapi import Strict
from tracker.web.openapi import UtcDateTime
from tracker.web.runtime import runtime

Code = Field(min_length=1, max_length=48)
Reason = Field(default=None, min_length=1, max_length=2000)


class MeasurementIn(Strict):
    value: float = Field(ge=-1e12, le=1e15, allow_inf_nan=False)
    unit: str = Field(min_length=1, max_length=32)


class AcceptanceIn(Strict):
    measurements: dict[str, MeasurementIn] = Field(max_length=50)
    item: str | None = Field(default=None, min_length=1, max_length=32)
    supersedes: DbId | None = None
    reason: str | None = Reason


class MeasurementOut(Strict):
    criterion: str
    name: str
    value: float
    unit: str
    converted: float
    criterion_unit: str
    limits: str
    outcome: str


class AcceptanceRowOut(Strict):
    id: int
    decision: str
    decided_at: datetime
    decided_by: str | None
    current: bool
    supersedes: int | None
    reason: str | None
    deviation: str | None
    deviation_status: str | None
    measurements: list[MeasurementOut]


class CriterionOutcomeOut(Strict):
    criterion: str
    outcome: str
    why: str


class AcceptanceOut(Strict):
    id: int
    decision: str
    failed: list[CriterionOutcomeOut]
    criteria: list[CriterionOutcomeOut]
    deviation: str | None
    knock_on: dict[str, Any] | None


class EstimateOut(Strict):
    expected_at: datetime | None
    slowest: str | None
    late: list[str]


class LotSummaryOut(Strict):
    code: str
    status: str
    process: str
    site: str
    started_at: datetime
    completed_at: datetime | None
    readiness: str
    pending: list[str]
    unreviewed: list[str]
    oos: list[str]
    expected_release: EstimateOut


class LotListItemOut(LotSummaryOut):
    order: str


class AwaitingOut(Strict):
    public_id: str
    coi: CoiOut
    patient: str
    decision: str | None


class LotListOut(Strict):
    lots: list[LotListItemOut]
    awaiting_acceptance: list[AwaitingOut]


class CoiOut(Strict):
    value: str
    eye_readable: str
    check: str


class RecollectionOut(Strict):
    alert: int
    why: str | None
    earliest_collection: str | None
    plan: str | None
    moves: list[dict[str, Any]]
    problems: list[str]


class QualityOrderOut(Strict):
    order: dict[str, Any]
    criteria: list[dict[str, Any]]
    process: str | None
    decision: str | None
    current_acceptance: int | None
    awaiting_acceptance: bool
    acceptances: list[AcceptanceRowOut]
    recollection: RecollectionOut | None
    lots: list[LotSummaryOut]
    expected_release: datetime | None
    ld_start: datetime | None
    release_after_ld: bool
    may_record: bool


class ResultOut(Strict):
    id: int
    value: str
    unit: str | None
    outcome: str
    recorded_at: datetime
    recorded_by: str | None
    recorded_by_id: int
    reviewed_at: datetime | None
    reviewed_by: str | None
    supersedes: int | None
    reason: str | None
    current: bool
    may_review: bool  # the caller may review this result now


class TestOut(Strict):
    code: str
    method: str
    spec: str
    spec_kind: str | None
    unit: str | None
    started_at: datetime
    turnaround_hours: float
    due_at: datetime
    status: str
    current: int | None
    results: list[ResultOut]


class ReleaseOut(Strict):
    kind: str
    released_at: datetime
    certificate: str
    signed_by: str
    meaning: str
    record_hash: str
    signature_matches_record: bool
    physician_name: str | None
    physician_statement: str | None
    physician_acknowledged_at: datetime | None


class AckOut(Strict):
    id: int
    physician_name: str
    statement: str
    acknowledged_at: datetime
    tests: list[str]
    covers_current: bool


class LotOut(LotSummaryOut):
    order: str
    coi: CoiOut
    patient: str
    acceptance: AcceptanceRowOut | None
    tests: list[TestOut]
    release: ReleaseOut | None
    acknowledgements: list[AckOut]
    ld_start: datetime | None
    release_after_ld: bool
    may_record: bool  # the caller may record results on this lot now (open lot, role)
    may_review: bool  # the caller is QA at the lot's site
    user_id: int | None


class ResultIn(Strict):
    test: str = Code
    value: str = Field(min_length=1, max_length=64)
    unit: str | None = Field(default=None, min_length=1, max_length=32)
    supersedes: DbId | None = None
    reason: str | None = Reason


class ResultRecordedOut(Strict):
    id: int
    test: str
    outcome: str
    supersedes: int | None


class AckIn(Strict):
    physician_name: str = Field(min_length=1, max_length=200)
    statement: str = Field(min_length=1, max_length=2000)
    acknowledged_at: UtcDateTime


class AckRecordedOut(Strict):
    id: int
    lot: str
    tests: list[str]


@registry.route(
    bp,
    "/orders/<public_id>/quality",
    "GET",
    summary="An order's quality gates: acceptance history, lots, expected release vs the plan",
    response=QualityOrderOut,
    tag="quality",
)
def order_quality(public_id: str) -> ResponseReturnValue:
    rt = runtime()
    with rt.uow() as uow:
        data = queries_quality.order_quality(
            uow.session, current_principal(), public_id, rt.clock.now()
        )
    return jsonify(QualityOrderOut.model_validate(data, strict=False).model_dump(mode="json"))


def acceptance_out(outcome: quality.AcceptanceOutcome) -> AcceptanceOut:
    def row(r: Any) -> CriterionOutcomeOut:
        return CriterionOutcomeOut(criterion=r.criterion.code, outcome=r.outcome, why=r.why)

    return AcceptanceOut(
        id=outcome.acceptance.id,
        decision=outcome.acceptance.decision,
        failed=[row(r) for r in outcome.decision.failed],
        criteria=[row(r) for r in outcome.decision.results],
        deviation=outcome.deviation,
        knock_on=outcome.knock_on,
    )


@registry.route(
    bp,
    "/orders/<public_id>/acceptances",
    "POST",
    summary="Record the starting material's measurements at receipt; the tracker decides",
    body=AcceptanceIn,
    response=AcceptanceOut,
    status=201,
    errors=(400, 401, 403, 404, 409),
    tag="quality",
)
def record_acceptance(public_id: str, payload: AcceptanceIn) -> ResponseReturnValue:
    rt = runtime()
    with rt.uow() as uow:
        outcome = quality.record_acceptance(
            uow=uow,
            principal=current_principal(),
            order_public_id=public_id,
            measurements={k: (m.value, m.unit) for k, m in payload.measurements.items()},
            item_public_id=payload.item,
            supersedes_id=payload.supersedes,
            reason=payload.reason,
            now=rt.clock.now(),
        )
        uow.commit()
        out = acceptance_out(outcome)
    return jsonify(out.model_dump(mode="json")), 201


@registry.route(
    bp,
    "/lots",
    "GET",
    summary="Manufacturing lots you can see, and material waiting for acceptance",
    response=LotListOut,
    tag="quality",
)
def list_lots() -> ResponseReturnValue:
    rt = runtime()
    with rt.uow() as uow:
        data = {
            "lots": queries_quality.lots(uow.session, current_principal(), rt.clock.now()),
            "awaiting_acceptance": queries_quality.awaiting_acceptance(
                uow.session, current_principal()
            ),
        }
    return jsonify(LotListOut.model_validate(data, strict=False).model_dump(mode="json"))


@registry.route(
    bp,
    "/lots/<code>",
    "GET",
    summary="One lot: release tests, every result and correction, readiness, release",
    response=LotOut,
    tag="quality",
)
def get_lot(code: str) -> ResponseReturnValue:
    rt = runtime()
    with rt.uow() as uow:
        data = queries_quality.lot_detail(uow.session, current_principal(), code, rt.clock.now())
    return jsonify(LotOut.model_validate(data, strict=False).model_dump(mode="json"))


@registry.route(
    bp,
    "/lots/<code>/results",
    "POST",
    summary="Record a release test result, or correct the current one (with a reason)",
    body=ResultIn,
    response=ResultRecordedOut,
    status=201,
    errors=(400, 401, 403, 404, 409),
    tag="quality",
)
def record_release_result(code: str, payload: ResultIn) -> ResponseReturnValue:
    rt = runtime()
    with rt.uow() as uow:
        row = quality.record_result(
            uow=uow,
            principal=current_principal(),
            lot_code=code,
            test_code=payload.test,
            value=payload.value,
            unit=payload.unit,
            supersedes_id=payload.supersedes,
            reason=payload.reason,
            now=rt.clock.now(),
        )
        uow.commit()
        out = ResultRecordedOut(
            id=row.id, test=payload.test, outcome=row.outcome, supersedes=row.supersedes_id
        )
    return jsonify(out.model_dump()), 201


@registry.route(
    bp,
    "/results/<int:result_id>/review",
    "POST",
    summary="QA reviews a result (not the person who recorded it)",
    response=ResultRecordedOut,
    errors=(400, 401, 403, 404, 409),
    tag="quality",
)
def review_release_result(result_id: int) -> ResponseReturnValue:
    rt = runtime()
    with rt.uow() as uow:
        row = quality.review_result(
            uow=uow, principal=current_principal(), result_id=result_id, now=rt.clock.now()
        )
        uow.commit()
        test = uow.session.get(ReleaseTest, row.test_id)
        assert test is not None
        out = ResultRecordedOut(
            id=row.id, test=test.code, outcome=row.outcome, supersedes=row.supersedes_id
        )
    return jsonify(out.model_dump())


@registry.route(
    bp,
    "/lots/<code>/physician-acknowledgements",
    "POST",
    summary="QA records the treating physician's acknowledgement of an OOS lot",
    body=AckIn,
    response=AckRecordedOut,
    status=201,
    errors=(400, 401, 403, 404, 409),
    tag="quality",
)
def acknowledge_oos(code: str, payload: AckIn) -> ResponseReturnValue:
    rt = runtime()
    with rt.uow() as uow:
        ack = quality.acknowledge_oos(
            uow=uow,
            principal=current_principal(),
            lot_code=code,
            physician_name=payload.physician_name,
            statement=payload.statement,
            acknowledged_at=payload.acknowledged_at,
            now=rt.clock.now(),
        )
        uow.commit()
        out = AckRecordedOut(id=ack.id, lot=code, tests=list(ack.oos_results.get("tests", [])))
    return jsonify(out.model_dump()), 201


def certificate_pdf_response(code: str) -> Response:
    with runtime().uow() as uow:
        data = queries_quality.release_certificate(uow.session, current_principal(), code)
    body = exports.release_certificate_pdf(data)
    return Response(
        body,
        mimetype="application/pdf",
        headers={"Content-Disposition": f'attachment; filename="release-{code}.pdf"'},
    )


@registry.route(
    bp,
    "/release-certificates/<code>.pdf",
    "GET",
    summary="The release-for-infusion certificate (PDF) with the lot's tests and results",
    produces=("application/pdf",),
    tag="quality",
)
def release_certificate_pdf(code: str) -> ResponseReturnValue:
    return certificate_pdf_response(code)
