"""Scanning API under /api/v1: the scan RPC, answers and signatures on a step, deviations.

``POST /scans`` answers with a closed vocabulary (``ok`` | ``incomplete`` | ``error``) and a
``reason`` from the documented list; HTTP 201 for accepted scans, 404 for an unknown code or
scanner, 400 for every other refusal. A repeated nonce gets the first answer again. Every other
write here (and in ``tracker.web.api``) accepts an ``Idempotency-Key``.
"""

from __future__ import annotations

from typing import Any
from typing import Literal

from flask import Blueprint
from flask import jsonify
from flask.typing import ResponseReturnValue
from pydantic import Field

from tracker import scan_queries
from tracker.services import scans
from tracker.web import idempotency
from tracker.web.api import guard
from tracker.web.api import registry
from tracker.web.auth import current_principal
from tracker.web.openapi import Query
from tracker.web.openapi import Strict
from tracker.web.openapi import UtcDateTime
from tracker.web.runtime import runtime

bp = Blueprint("scans", __name__, url_prefix="/api/v1")
# The same authentication and CSRF rule as the rest of the API (one definition, in api.py).
guard(bp)
# Scans de-duplicate on their nonce instead of an Idempotency-Key.
idempotency.protect(bp, exempt={"scans.record_scan"})

ClientKey = Field(min_length=8, max_length=64, pattern=r"^[A-Za-z0-9_.:-]+$")


class ScanIn(Strict):
    raw: str = Field(max_length=4000, description="The scanned string exactly as received.")
    device: str = Field(min_length=1, max_length=64, description="The scanner's public id.")
    step: str = Field(min_length=1, max_length=48, pattern=r"^[a-z][a-z0-9_]*$")
    client_at: UtcDateTime = Field(description="When the device says the scan happened.")
    nonce: str = ClientKey
    run: str | None = Field(
        default=None,
        min_length=8,
        max_length=64,
        pattern=r"^[A-Za-z0-9_.:-]+$",
        description="The scanner's key for this performance of the step.",
    )
    offline: bool = Field(default=False, description="Queued offline and uploaded later.")
    manual: bool = Field(default=False, description="Typed by hand: needs its check character.")


class StepRef(Strict):
    code: str
    title: str | None


class OrderRef(Strict):
    public_id: str
    coi: str


class NextOut(Strict):
    type: Literal["scan", "question", "signature"]
    key: str
    prompt: str
    kinds: list[str] | None = None
    each: bool | None = None
    done: int | None = None
    of: int | None = None
    answer_type: str | None = None
    meaning: str | None = None


class StepOut(Strict):
    status: Literal["ok", "incomplete", "error"]
    reason: str | None
    message: str
    suggestion: str | None
    step: StepRef
    run: str | None
    order: OrderRef | None
    next: NextOut | None
    complete: bool
    waiting_for_second_person: bool
    following: list[dict[str, str]]
    countdown: dict[str, str] | None
    certificate: str | None = None


class ScanOut(StepOut):
    scan: int
    offline: bool
    forced: bool
    deviation: str | None


class AnswersIn(Strict):
    answers: dict[str, bool | str] = Field(min_length=1, max_length=20)


class SignStepIn(Strict):
    password: str = Field(min_length=1, max_length=200)
    meaning: str = Field(min_length=1, max_length=32)


class DeviationIn(Strict):
    description: str = Field(min_length=3, max_length=2000)


class CloseDeviationIn(Strict):
    reason: str = Field(min_length=3, max_length=2000)
    password: str = Field(min_length=1, max_length=200)


class DeviationOut(Strict):
    public_id: str
    status: str
    kind: str
    description: str
    close_reason: str | None = None


def _answer(outcome: scans.Outcome) -> ResponseReturnValue:
    response = jsonify(outcome.body)
    response.status_code = outcome.http_status
    if outcome.replayed:
        response.headers["Idempotent-Replayed"] = "true"
    return response


@registry.route(
    bp,
    "/scans",
    "POST",
    summary="Record one scan (every scan is stored; a repeated nonce replays its answer)",
    body=ScanIn,
    response=ScanOut,
    status=201,
    tag="scanning",
)
def record_scan(payload: ScanIn) -> ResponseReturnValue:
    rt = runtime()
    with rt.uow() as uow:
        outcome = scans.record_scan(
            uow=uow,
            principal=current_principal(),
            scan=scans.ScanInput(
                raw=payload.raw,
                device=payload.device,
                step=payload.step,
                client_at=payload.client_at,
                nonce=payload.nonce,
                client_run=payload.run,
                offline=payload.offline,
                manual=payload.manual,
            ),
            now=rt.clock.now(),
            options=scans.ParseOptions(
                gs_substitute=rt.settings.gs_substitute,
                coi_check_scope=rt.settings.coi_check_scope,
            ),
        )
        uow.commit()
    return _answer(outcome)


@registry.route(
    bp,
    "/runs/<run>/answers",
    "POST",
    summary="Answer checklist questions of the step this scanner is performing",
    body=AnswersIn,
    response=StepOut,
    status=201,
    tag="scanning",
)
def answer_step(run: str, payload: AnswersIn) -> ResponseReturnValue:
    rt = runtime()
    with rt.uow() as uow:
        outcome = scans.answer_step(
            uow=uow,
            principal=current_principal(),
            run_key=run,
            answers=payload.answers,
            now=rt.clock.now(),
        )
        uow.commit()
    return _answer(outcome)


@registry.route(
    bp,
    "/runs/<run>/signatures",
    "POST",
    summary="E-sign the step this scanner is performing (password re-entered)",
    body=SignStepIn,
    response=StepOut,
    status=201,
    tag="scanning",
    errors=(400, 401, 403, 404, 423),
)
def sign_step(run: str, payload: SignStepIn) -> ResponseReturnValue:
    rt = runtime()
    with rt.uow() as uow:
        outcome = scans.sign_step(
            uow=uow,
            hasher=rt.hasher,
            settings=rt.settings,
            principal=current_principal(),
            run_key=run,
            password=payload.password,
            meaning=payload.meaning,
            now=rt.clock.now(),
        )
        uow.commit()
    return _answer(outcome)


class ScansQuery(Query):
    result: Literal["accepted", "error", "all"] = "accepted"


class ScanRowOut(Strict):
    id: int
    server_at: UtcDateTime
    client_at: UtcDateTime | None
    late: bool
    offline: bool
    forced: bool
    step: str | None
    result: str
    reason: str | None
    message: str | None
    raw: str
    kind: str | None
    user: str
    device: str | None
    site: str | None
    wrong_patient: bool
    other_order: str | None


class ScanList(Strict):
    scans: list[ScanRowOut]


class JourneyViewOut(Strict):
    variant: str
    can_close: bool
    steps: list[dict[str, Any]]
    following: list[StepRef]
    deviations: list[dict[str, Any]]
    open_deviations: int
    countdown: dict[str, Any] | None


class WorkOut(Strict):
    order: str
    coi: str
    step: str
    title: str
    codes: list[Any]


class Worklist(Strict):
    work: list[WorkOut]


@registry.route(
    bp,
    "/orders/<public_id>/scans",
    "GET",
    summary="An order's scans: accepted by default, or only errors, or all",
    response=ScanList,
    query=ScansQuery,
    tag="scanning",
)
def order_scans(public_id: str, params: ScansQuery) -> ResponseReturnValue:
    with runtime().uow() as uow:
        rows = scan_queries.order_scans(
            uow.session, current_principal(), public_id, result=params.result
        )
    return jsonify(ScanList.model_validate({"scans": rows}, strict=False).model_dump(mode="json"))


@registry.route(
    bp,
    "/orders/<public_id>/journey",
    "GET",
    summary="Where the order's journey stands: steps, deviations, thaw countdown",
    response=JourneyViewOut,
    tag="scanning",
)
def order_journey(public_id: str) -> ResponseReturnValue:
    rt = runtime()
    with rt.uow() as uow:
        view = scan_queries.order_journey(
            uow.session, current_principal(), public_id, rt.clock.now()
        )
    return jsonify(JourneyViewOut.model_validate(_jsonable(view), strict=False).model_dump())


@registry.route(
    bp,
    "/scanners/<device>/worklist",
    "GET",
    summary="Orders whose next step (or a step in progress) this scanner's station can do now",
    response=Worklist,
    tag="scanning",
)
def scanner_worklist(device: str) -> ResponseReturnValue:
    with runtime().uow() as uow:
        rows = scan_queries.station_worklist(
            uow.session, current_principal(), device, with_codes=False
        )
    return jsonify(Worklist.model_validate({"work": rows}, strict=False).model_dump())


@registry.route(
    bp,
    "/orders/<public_id>/deviations",
    "POST",
    summary="Report a deviation by hand (it blocks the next custody step)",
    body=DeviationIn,
    response=DeviationOut,
    status=201,
    tag="scanning",
)
def report_deviation(public_id: str, payload: DeviationIn) -> ResponseReturnValue:
    rt = runtime()
    with rt.uow() as uow:
        deviation = scans.report_deviation(
            uow=uow,
            principal=current_principal(),
            order_public_id=public_id,
            description=payload.description,
            now=rt.clock.now(),
        )
        uow.commit()
        out = _deviation_out(deviation)
    return jsonify(out), 201


@registry.route(
    bp,
    "/deviations/<public_id>/close",
    "POST",
    summary="QA closes a deviation with a reason and an e-signature",
    body=CloseDeviationIn,
    response=DeviationOut,
    tag="scanning",
    errors=(400, 401, 403, 404, 409, 423),
)
def close_deviation(public_id: str, payload: CloseDeviationIn) -> ResponseReturnValue:
    rt = runtime()
    with rt.uow() as uow:
        deviation = scans.close_deviation(
            uow=uow,
            hasher=rt.hasher,
            settings=rt.settings,
            principal=current_principal(),
            deviation_public_id=public_id,
            reason=payload.reason,
            password=payload.password,
            now=rt.clock.now(),
        )
        uow.commit()
        out = _deviation_out(deviation)
    return jsonify(out)


def _deviation_out(deviation: Any) -> dict[str, Any]:
    return DeviationOut(
        public_id=deviation.public_id,
        status=deviation.status,
        kind=deviation.kind,
        description=deviation.description,
        close_reason=deviation.close_reason,
    ).model_dump()


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_jsonable(v) for v in value]
    if hasattr(value, "isoformat"):
        return value.isoformat()
    return value
