"""Coordinator pages (server-rendered, htmx for partial refreshes)."""

from __future__ import annotations

from flask import Blueprint
from flask import redirect
from flask import render_template
from flask import url_for
from flask.typing import ResponseReturnValue
from flask_login import login_required

from tracker import queries
from tracker import scan_queries
from tracker.web.auth import current_principal
from tracker.web.runtime import runtime

bp = Blueprint("ui", __name__)


@bp.get("/")
def index() -> ResponseReturnValue:
    return redirect(url_for("cockpit.dashboard"))


@bp.get("/orders")
@login_required  # type: ignore[untyped-decorator]
def orders() -> ResponseReturnValue:
    with runtime().uow() as uow:
        rows = queries.list_orders(uow.session, current_principal())
    return render_template("orders.html", orders=rows)


@bp.get("/orders/<public_id>")
@login_required  # type: ignore[untyped-decorator]
def order(public_id: str) -> ResponseReturnValue:
    principal = current_principal()
    with runtime().uow() as uow:
        detail = queries.order_detail(uow.session, principal, public_id)
        scanning = scan_queries.order_journey(
            uow.session, principal, public_id, runtime().clock.now()
        )
        refused = scan_queries.order_scans(uow.session, principal, public_id, result="error")
    return render_template("order.html", order=detail, scanning=scanning, refused=refused)


@bp.get("/orders/<public_id>/timeline")
@login_required  # type: ignore[untyped-decorator]
def order_timeline(public_id: str) -> ResponseReturnValue:
    with runtime().uow() as uow:
        detail = queries.order_detail(uow.session, current_principal(), public_id)
    return render_template("_timeline.html", order=detail)
