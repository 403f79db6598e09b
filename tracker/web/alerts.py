"""Staff pages: alerts (acknowledge, QA disposition), SMS opt-outs, loggers and file imports,
and a bag's exposure ledger."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from flask import Blueprint
from flask import flash
from flask import redirect
from flask import render_template
from flask import request
from flask import url_for
from flask.typing import ResponseReturnValue
from flask_login import login_required

from tracker import queries_alerts
from tracker import queries_cockpit
from tracker.domain.alerting import Decision
from tracker.domain.alerting import format_duration
from tracker.domain.errors import TrackerError
from tracker.services import alerts
from tracker.services import readings
from tracker.services import signoffs
from tracker.web.auth import current_principal
from tracker.web.runtime import runtime

bp = Blueprint("alerts", __name__)


@bp.app_template_filter("duration")
def _duration(value: object) -> str:
    """A timedelta as '2 h 05 min' (or '45 s')."""
    if not isinstance(value, timedelta):
        return "" if value is None else str(value)
    return format_duration(value)


@bp.get("/alerts")
@login_required  # type: ignore[untyped-decorator]
def alert_list() -> ResponseReturnValue:
    principal = current_principal()
    show = request.args.get("show", "open")
    with runtime().uow() as uow:
        rows = queries_alerts.list_alerts(uow.session, principal, open_only=show != "all")
        stops = queries_alerts.opt_outs(uow.session, principal)
        extra = inbox_extras(uow.session, principal)
    return render_template("alerts.html", alerts=rows, opt_outs=stops, show=show, **extra)


def inbox_extras(session: Any, principal: Any) -> dict[str, Any]:
    """Deviations beside the alerts: QA closes them here with a reason and e-signature."""
    show = request.args.get("show", "open")
    return {
        "deviations": queries_cockpit.deviation_list(session, principal, open_only=show != "all")
    }


@bp.get("/alerts/<int:alert_id>")
@login_required  # type: ignore[untyped-decorator]
def alert_page(alert_id: int) -> ResponseReturnValue:
    principal = current_principal()
    with runtime().uow() as uow:
        detail = queries_alerts.alert_detail(uow.session, principal, alert_id)
        signed = signoffs.disposition_signatures(uow.session, detail)
    return render_template(
        "alert.html", alert=detail, decisions=[d.value for d in Decision], signed=signed
    )


@bp.post("/alerts/<int:alert_id>/acknowledge")
@login_required  # type: ignore[untyped-decorator]
def acknowledge(alert_id: int) -> ResponseReturnValue:
    rt = runtime()
    try:
        with rt.uow() as uow:
            alerts.acknowledge_alert(
                uow=uow,
                principal=current_principal(),
                alert_id=alert_id,
                comment=request.form.get("comment", ""),
                now=rt.clock.now(),
            )
            uow.commit()
        flash(f"Alert {alert_id} acknowledged; escalation stopped.", "info")
    except TrackerError as exc:
        flash(exc.message, "error")
    if request.form.get("next") == "list":  # acknowledged from the inbox
        show = request.form.get("show", "open")
        show = show if show in ("open", "all") else "open"
        return redirect(url_for("alerts.alert_list", show=show) + f"#alert-{alert_id}")
    return redirect(url_for("alerts.alert_page", alert_id=alert_id))


@bp.post("/alerts/<int:alert_id>/dispositions")
@login_required  # type: ignore[untyped-decorator]
def dispose(alert_id: int) -> ResponseReturnValue:
    rt = runtime()
    item = request.form.get("item", "")
    try:
        with rt.uow() as uow:
            # QA's decision is an e-signature (meaning "approval"): the password is re-entered.
            signoffs.record_signed_disposition(
                uow=uow,
                hasher=rt.hasher,
                settings=rt.settings,
                principal=current_principal(),
                item_public_id=item,
                decision=Decision(request.form.get("decision", "")),
                comment=request.form.get("comment", ""),
                password=request.form.get("password", ""),
                excursion_id=request.form.get("excursion_id", type=int),
                now=rt.clock.now(),
            )
            uow.commit()
        flash(f"QA disposition recorded and signed for {item}.", "info")
    except ValueError:
        flash("Choose accept, quarantine or discard.", "error")
    except TrackerError as exc:
        flash(exc.message, "error")
    return redirect(url_for("alerts.alert_page", alert_id=alert_id))


@bp.get("/loggers")
@login_required  # type: ignore[untyped-decorator]
def logger_list() -> ResponseReturnValue:
    rt = runtime()
    principal = current_principal()
    with rt.uow() as uow:
        rows = queries_alerts.loggers(uow.session, principal, now=rt.clock.now())
        runs = queries_alerts.imports(uow.session, principal)
        sites = queries_alerts.visible_sites(uow.session, principal)
    return render_template("loggers.html", loggers=rows, imports=runs, sites=sites)


@bp.post("/loggers/imports")
@login_required  # type: ignore[untyped-decorator]
def upload() -> ResponseReturnValue:
    rt = runtime()
    upload = request.files.get("file")
    if upload is None or not upload.filename:
        flash("Choose a logger file to import.", "error")
        return redirect(url_for("alerts.logger_list"))
    try:
        content = upload.read().decode("utf-8-sig", errors="replace")
        with rt.uow() as uow:
            run = readings.queue_import(
                uow=uow,
                principal=current_principal(),
                filename=upload.filename,
                content=content,
                site_code=request.form.get("site", ""),
                serial=request.form.get("serial") or None,
                profile=request.form.get("profile", "cryogenic"),
                now=rt.clock.now(),
            )
            uow.commit()
            run_id = run.id
    except TrackerError as exc:
        flash(exc.message, "error")
        return redirect(url_for("alerts.logger_list"))
    return redirect(url_for("alerts.import_page", import_id=run_id))


@bp.get("/loggers/imports/<int:import_id>")
@login_required  # type: ignore[untyped-decorator]
def import_page(import_id: int) -> ResponseReturnValue:
    with runtime().uow() as uow:
        run = queries_alerts.import_status(uow.session, current_principal(), import_id)
    return render_template("import.html", run=run)


@bp.get("/loggers/imports/<int:import_id>/progress")
@login_required  # type: ignore[untyped-decorator]
def import_progress(import_id: int) -> ResponseReturnValue:
    with runtime().uow() as uow:
        run = queries_alerts.import_status(uow.session, current_principal(), import_id)
    return render_template("_import_progress.html", run=run)


@bp.get("/items/<public_id>/exposure")
@login_required  # type: ignore[untyped-decorator]
def exposure(public_id: str) -> ResponseReturnValue:
    rt = runtime()
    with rt.uow() as uow:
        ledger = queries_alerts.item_exposure(
            uow.session, current_principal(), public_id, now=rt.clock.now()
        )
    return render_template("exposure.html", ledger=ledger)
