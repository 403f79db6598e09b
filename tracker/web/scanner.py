"""The handheld scanner page (/scan/), its service worker, and QA's deviation close form.

The page is server-rendered; ``tracker/static/scan/`` holds its scripts (no inline script:
the CSP allows only our own files). The service worker is served from /scan/ so that its
scope covers the page, which then opens (and queues scans) without a connection.
"""

from __future__ import annotations

import io
from pathlib import Path

from flask import Blueprint
from flask import current_app
from flask import flash
from flask import jsonify
from flask import redirect
from flask import render_template
from flask import request
from flask import send_file
from flask import url_for
from flask.typing import ResponseReturnValue
from flask_login import current_user
from flask_login import login_required
from flask_wtf.csrf import generate_csrf

from tracker import scan_queries
from tracker.domain.errors import TrackerError
from tracker.services import scans
from tracker.web import scan_worker
from tracker.web.auth import current_principal
from tracker.web.runtime import runtime

bp = Blueprint("scanner", __name__, url_prefix="/scan")


def _show_codes() -> bool:
    # Clickable barcode data is a demo aid: in production every code must be scanned.
    return runtime().settings.env != "production"


@bp.get("/")
@login_required  # type: ignore[untyped-decorator]
def page() -> ResponseReturnValue:
    principal = current_principal()
    device = request.args.get("device")
    with runtime().uow() as uow:
        devices = scan_queries.scanner_devices(uow.session, principal)
        station = next((d for d in devices if d["public_id"] == device), None)
        steps = (
            scan_queries.station_steps(uow.session, principal, station["public_id"])
            if station
            else []
        )
        work = (
            scan_queries.station_worklist(
                uow.session, principal, station["public_id"], with_codes=_show_codes()
            )
            if station
            else []
        )
    config = {
        "user": current_user.full_name,
        "userId": principal.user_id,
        "device": station["public_id"] if station else None,
        "steps": steps,
        "gsSubstitute": runtime().settings.gs_substitute,
    }
    return render_template(
        "scan.html", devices=devices, station=station, steps=steps, work=work, config=config
    )


@bp.get("/worklist")
@login_required  # type: ignore[untyped-decorator]
def worklist() -> ResponseReturnValue:
    device = request.args.get("device", "")
    with runtime().uow() as uow:
        work = scan_queries.station_worklist(
            uow.session, current_principal(), device, with_codes=_show_codes()
        )
    return render_template("_worklist.html", work=work)


@bp.get("/session")
def session_state() -> ResponseReturnValue:
    """Who is logged in and a fresh CSRF token, for a page that was opened offline."""
    if not current_user.is_authenticated:
        return jsonify({"user_id": None}), 401
    return jsonify({"user_id": current_user.user_id, "csrf": generate_csrf()})


@bp.get("/sw.js")
def service_worker() -> ResponseReturnValue:
    worker = scan_worker.service_worker(Path(current_app.static_folder or ""))
    # The ETag and 304s must follow the served bytes: sw.js's own file date and size stay the
    # same when only a cached file (and so the cache name) changes.
    response = send_file(
        io.BytesIO(worker.body),
        mimetype="text/javascript",
        max_age=0,
        download_name="sw.js",
        etag=worker.etag,
        last_modified=None,
    )
    response.headers["Cache-Control"] = "no-cache"
    response.headers["Service-Worker-Allowed"] = "/scan/"
    return response


@bp.post("/deviations/<public_id>/close")
@login_required  # type: ignore[untyped-decorator]
def close_deviation(public_id: str) -> ResponseReturnValue:
    rt = runtime()
    back = request.form.get("order", "")
    try:
        with rt.uow() as uow:
            scans.close_deviation(
                uow=uow,
                hasher=rt.hasher,
                settings=rt.settings,
                principal=current_principal(),
                deviation_public_id=public_id,
                reason=request.form.get("reason", ""),
                password=request.form.get("password", ""),
                now=rt.clock.now(),
            )
            uow.commit()
        flash(f"Deviation {public_id} closed.", "info")
    except TrackerError as exc:
        flash(f"Deviation not closed: {exc.message}", "warning")
    if request.form.get("next") == "inbox":  # closed from the alerts and deviations inbox
        return redirect(url_for("alerts.alert_list") + "#deviations")
    return redirect(url_for("ui.order", public_id=back) if back else url_for("ui.orders"))
