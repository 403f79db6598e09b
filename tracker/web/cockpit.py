"""The dashboard (landing page after login) and its live partials, polled by htmx."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from flask import Blueprint
from flask import render_template
from flask import request
from flask.typing import ResponseReturnValue
from flask_login import login_required

from tracker import queries_cockpit
from tracker import queries_journey
from tracker.clock import to_local
from tracker.queries_cockpit import Filters
from tracker.unit_of_work import UnitOfWork
from tracker.web.auth import current_principal
from tracker.web.runtime import runtime

bp = Blueprint("cockpit", __name__)

# How often the dashboard's partials refresh themselves (seconds).
POLL_SECONDS = 10


def _journeys(uow: UnitOfWork, filters: Filters) -> dict[str, Any]:
    rows = queries_cockpit.active_journeys(
        uow.session, current_principal(), now=runtime().clock.now()
    )
    return queries_cockpit.summarize(rows, filters)


def _side(uow: UnitOfWork) -> dict[str, Any]:
    rt = runtime()
    session = uow.session
    principal = current_principal()
    return {
        "today": queries_cockpit.today_board(session, principal, now=rt.clock.now()),
        "inbox": queries_cockpit.inbox(session, principal),
        "activity": queries_cockpit.recent_activity(session, principal),
    }


def _context(filters: Filters) -> dict[str, Any]:
    return {
        "filters": filters,
        "risks": queries_cockpit.RISKS,
        "risk_labels": queries_cockpit.RISK_LABELS,
        "poll": POLL_SECONDS,
        "now": runtime().clock.now(),
    }


@bp.get("/dashboard")
@login_required  # type: ignore[untyped-decorator]
def dashboard() -> ResponseReturnValue:
    filters = Filters.from_args(request.args)
    with runtime().uow() as uow:
        journeys = _journeys(uow, filters)
        side = _side(uow)
    return render_template("cockpit/dashboard.html", journeys=journeys, **side, **_context(filters))


@bp.get("/dashboard/journeys")
@login_required  # type: ignore[untyped-decorator]
def journeys_partial() -> ResponseReturnValue:
    filters = Filters.from_args(request.args)
    with runtime().uow() as uow:
        journeys = _journeys(uow, filters)
    return render_template("cockpit/_journeys.html", journeys=journeys, **_context(filters))


@bp.get("/dashboard/side")
@login_required  # type: ignore[untyped-decorator]
def side_partial() -> ResponseReturnValue:
    with runtime().uow() as uow:
        side = _side(uow)
    return render_template("cockpit/_side.html", **side, **_context(Filters()))


@bp.app_template_filter("hhmm")
def _hhmm(value: object, tz: str = "UTC") -> str:
    """A time of day at a site, with its zone abbreviation ('14:05 EST')."""
    if not isinstance(value, datetime):
        return "" if value is None else str(value)
    return to_local(value, tz).strftime("%H:%M %Z")


@bp.app_template_filter("masked_phones")
def _masked_phones(value: object) -> str:
    """Free text with phone numbers cut to their last digits ('…1111')."""
    return queries_journey.masked(str(value)) or "" if value is not None else ""
