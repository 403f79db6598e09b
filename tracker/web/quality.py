"""Quality pages: acceptance at receipt, the lots overview, one lot with its tests and results.

Thin views over ``tracker.services.quality`` and ``tracker.queries_quality``: forms post,
the service decides, the page shows what was recorded (refusals as a flash with their reason).
"""

from __future__ import annotations

from datetime import UTC
from datetime import datetime

from flask import Blueprint
from flask import flash
from flask import redirect
from flask import render_template
from flask import request
from flask import url_for
from flask.typing import ResponseReturnValue
from flask_login import login_required

from tracker import queries_quality
from tracker.domain.errors import TrackerError
from tracker.services import quality
from tracker.web.api_quality import certificate_pdf_response
from tracker.web.auth import current_principal
from tracker.web.runtime import runtime

bp = Blueprint("quality", __name__)


def _optional_int(name: str) -> int | None:
    raw = request.form.get(name, "").strip()
    if not raw:
        return None
    if not raw.isdigit():
        raise TrackerError("invalid_request", f"{name} must be a number")
    return int(raw)


@bp.get("/quality")
@login_required  # type: ignore[untyped-decorator]
def index() -> ResponseReturnValue:
    rt = runtime()
    with rt.uow() as uow:
        lots = queries_quality.lots(uow.session, current_principal(), rt.clock.now())
        waiting = queries_quality.awaiting_acceptance(uow.session, current_principal())
    return render_template("quality/index.html", lots=lots, waiting=waiting)


@bp.get("/orders/<public_id>/acceptance")
@login_required  # type: ignore[untyped-decorator]
def acceptance(public_id: str) -> ResponseReturnValue:
    rt = runtime()
    with rt.uow() as uow:
        data = queries_quality.order_quality(
            uow.session, current_principal(), public_id, rt.clock.now()
        )
    return render_template("quality/acceptance.html", q=data)


@bp.post("/orders/<public_id>/acceptance")
@login_required  # type: ignore[untyped-decorator]
def record_acceptance(public_id: str) -> ResponseReturnValue:
    rt = runtime()
    form = request.form
    try:
        measurements: dict[str, tuple[float, str]] = {}
        for key in form:
            if not key.startswith("value_") or not form[key].strip():
                continue
            code = key.removeprefix("value_")
            try:
                value = float(form[key])
            except ValueError:
                raise TrackerError("invalid_request", f"{code}: enter a number") from None
            measurements[code] = (value, form.get(f"unit_{code}", ""))
        with rt.uow() as uow:
            outcome = quality.record_acceptance(
                uow=uow,
                principal=current_principal(),
                order_public_id=public_id,
                measurements=measurements,
                supersedes_id=_optional_int("supersedes"),
                reason=form.get("reason") or None,
                now=rt.clock.now(),
            )
            uow.commit()
            decision = outcome.acceptance.decision.replace("_", " ")
            flash(f"Decision: {decision}. {outcome.decision.summary()}", "info")
    except TrackerError as exc:
        flash(f"{exc.message} ({exc.reason})", "error")
    return redirect(url_for("quality.acceptance", public_id=public_id))


@bp.get("/lots/<code>")
@login_required  # type: ignore[untyped-decorator]
def lot(code: str) -> ResponseReturnValue:
    rt = runtime()
    with rt.uow() as uow:
        data = queries_quality.lot_detail(uow.session, current_principal(), code, rt.clock.now())
    return render_template("quality/lot.html", lot=data, now=rt.clock.now())


@bp.post("/lots/<code>/results")
@login_required  # type: ignore[untyped-decorator]
def record_result(code: str) -> ResponseReturnValue:
    rt = runtime()
    form = request.form
    try:
        with rt.uow() as uow:
            row = quality.record_result(
                uow=uow,
                principal=current_principal(),
                lot_code=code,
                test_code=form.get("test", ""),
                value=form.get("value", ""),
                unit=form.get("unit") or None,
                supersedes_id=_optional_int("supersedes"),
                reason=form.get("reason") or None,
                now=rt.clock.now(),
            )
            uow.commit()
            what = "Correction" if row.supersedes_id else "Result"
            flash(f"{what} recorded for {form.get('test')}: {row.outcome.upper()}.", "info")
    except TrackerError as exc:
        flash(f"{exc.message} ({exc.reason})", "error")
    return redirect(url_for("quality.lot", code=code) + "#tests-h")


@bp.post("/lots/<code>/results/<int:result_id>/review")
@login_required  # type: ignore[untyped-decorator]
def review_result(code: str, result_id: int) -> ResponseReturnValue:
    rt = runtime()
    try:
        with rt.uow() as uow:
            quality.review_result(
                uow=uow, principal=current_principal(), result_id=result_id, now=rt.clock.now()
            )
            uow.commit()
            flash("Result reviewed.", "info")
    except TrackerError as exc:
        flash(f"{exc.message} ({exc.reason})", "error")
    return redirect(url_for("quality.lot", code=code) + "#tests-h")


@bp.post("/lots/<code>/acknowledgements")
@login_required  # type: ignore[untyped-decorator]
def acknowledge(code: str) -> ResponseReturnValue:
    rt = runtime()
    form = request.form
    try:
        raw = form.get("acknowledged_at", "").strip()
        try:
            at = datetime.fromisoformat(raw)
        except ValueError:
            raise TrackerError("invalid_request", "give the time of the acknowledgement") from None
        # The form's datetime-local field is in UTC (the page says so).
        at = at.replace(tzinfo=UTC) if at.tzinfo is None else at
        with rt.uow() as uow:
            quality.acknowledge_oos(
                uow=uow,
                principal=current_principal(),
                lot_code=code,
                physician_name=form.get("physician_name", ""),
                statement=form.get("statement", ""),
                acknowledged_at=at,
                now=rt.clock.now(),
            )
            uow.commit()
            flash(
                "Physician's acknowledgement recorded: QA may now release this lot "
                "(exceptional release) at the qa_release scan step.",
                "info",
            )
    except TrackerError as exc:
        flash(f"{exc.message} ({exc.reason})", "error")
    return redirect(url_for("quality.lot", code=code) + "#release-h")


@bp.get("/release-certificates/<code>.pdf")
@login_required  # type: ignore[untyped-decorator]
def certificate_pdf(code: str) -> ResponseReturnValue:
    return certificate_pdf_response(code)
