"""Schedules pages: calendars, plan timelines, waitlists, profiles, notifications, ICS feeds.

Views parse the form, call one service or query, and render; refusals come back as a flash
message naming the reason code, except htmx partials, which render the refusal in place.
"""

from __future__ import annotations

from datetime import date
from datetime import datetime
from datetime import time
from datetime import timedelta
from typing import Any

from flask import Blueprint
from flask import Response
from flask import flash
from flask import redirect
from flask import render_template
from flask import request
from flask import url_for
from flask.typing import ResponseReturnValue
from flask_login import current_user
from flask_login import login_required
from sqlalchemy import select

from schedules import queries
from schedules import service
from schedules.deadlines import plan_deadlines
from schedules.ics import render_calendar
from schedules.models import JourneyPlan
from schedules.models import PlanStepRow
from schedules.models import WaitlistEntry
from schedules.planning import StepKind
from schedules.profiles import FIELD_NAMES
from schedules.slots import local_date
from schedules.slots import local_to_utc
from tracker.domain.errors import TrackerError
from tracker.models import Site
from tracker.models import TherapyOrder
from tracker.web.auth import current_principal
from tracker.web.runtime import runtime

bp = Blueprint(
    "schedules",
    __name__,
    url_prefix="/schedules",
    template_folder="templates",
    static_folder="static",
)


def _now() -> datetime:
    return runtime().clock.now()


def _refused(exc: TrackerError) -> None:
    flash(f"{exc.message} [{exc.reason}]", "error")


@bp.app_context_processor
def _unread() -> dict[str, Any]:
    """The unread count for the nav link (pages only; one indexed count per page)."""
    if not getattr(current_user, "is_authenticated", False):
        return {"schedules_unread": 0}
    try:
        with runtime().uow() as uow:
            return {"schedules_unread": queries.unread_count(uow.session, current_user.user_id)}
    except Exception:  # an error page must render even when the database is the problem
        return {"schedules_unread": 0}


@bp.get("/")
@login_required  # type: ignore[untyped-decorator]
def index() -> ResponseReturnValue:
    with runtime().uow() as uow:
        data = queries.overview(uow.session, current_principal())
    return render_template("schedules/index.html", **data)


# ---------------------------------------------------------------------------------------------
# Calendars and feeds


@bp.get("/sites/<code>")
@login_required  # type: ignore[untyped-decorator]
def calendar(code: str) -> ResponseReturnValue:
    view = "day" if request.args.get("view") == "day" else "week"
    with runtime().uow() as uow:
        site = queries.visible_site(uow.session, current_principal(), code)
        today = local_date(_now(), site.timezone)
        try:
            day = date.fromisoformat(request.args["date"]) if "date" in request.args else today
        except ValueError:
            day = today
        first = day if view == "day" else day - timedelta(days=day.weekday())
        days = 1 if view == "day" else 7
        data = queries.site_calendar(
            uow.session, current_principal(), site_code=code, day=first, days=days
        )
    step = timedelta(days=days)
    return render_template(
        "schedules/calendar.html",
        view=view,
        first=first,
        today=today,
        prev=first - step,
        next=first + step,
        **data,
    )


@bp.post("/sites/<code>/feeds")
@login_required  # type: ignore[untyped-decorator]
def issue_feed(code: str) -> ResponseReturnValue:
    rt = runtime()
    try:
        with rt.uow() as uow:
            token = service.issue_calendar_feed(
                uow=uow, principal=current_principal(), site_code=code, now=_now()
            )
            uow.commit()
    except TrackerError as exc:
        _refused(exc)
        return redirect(url_for("schedules.calendar", code=code))
    url = f"{rt.settings.public_base_url.rstrip('/')}{url_for('schedules.feed', token=token)}"
    return render_template("schedules/feed_issued.html", code=code, url=url)


def _ics(site: Site, uow: Any) -> Response:
    rt = runtime()
    events = queries.feed_events(
        uow.session, site, now=_now(), base_url=rt.settings.public_base_url
    )
    body = render_calendar(name=f"{site.name} schedule", events=events, now=_now())
    return Response(
        body,
        mimetype="text/calendar",
        headers={
            "Content-Type": "text/calendar; charset=utf-8",
            "Content-Disposition": f'inline; filename="{site.code}.ics"',
            "Cache-Control": "no-store",
        },
    )


@bp.get("/sites/<code>/calendar.ics")
@login_required  # type: ignore[untyped-decorator]
def site_ics(code: str) -> ResponseReturnValue:
    with runtime().uow() as uow:
        site = queries.visible_site(uow.session, current_principal(), code)
        return _ics(site, uow)


@bp.get("/feeds/<token>.ics")
def feed(token: str) -> ResponseReturnValue:
    # The secret URL is the credential, as calendar apps cannot log in.
    with runtime().uow() as uow:
        site = service.feed_site(uow=uow, token=token, now=_now())
        response = _ics(site, uow)
        uow.commit()
    return response


@bp.get("/sites/<code>/waitlist")
@login_required  # type: ignore[untyped-decorator]
def waitlist(code: str) -> ResponseReturnValue:
    with runtime().uow() as uow:
        data = queries.waitlist(uow.session, current_principal(), site_code=code, now=_now())
    return render_template("schedules/waitlist.html", **data)


# ---------------------------------------------------------------------------------------------
# A patient's plan


def _earliest(order: dict[str, Any], raw: str | None) -> datetime:
    day = date.fromisoformat(raw) if raw else local_date(_now(), order["collection_timezone"])
    return max(local_to_utc(day, time(0), order["collection_timezone"]), _now())


@bp.get("/orders/<public_id>")
@login_required  # type: ignore[untyped-decorator]
def order_plan(public_id: str) -> ResponseReturnValue:
    principal = current_principal()
    proposal = proposal_error = None
    with runtime().uow() as uow:
        data = queries.order_plan(uow.session, principal, public_id, _now())
        raw = request.args.get("earliest")
        if raw is not None and data["plan"] is None:
            try:
                earliest = _earliest(data["order"], raw)
                found = service.propose_journey(
                    uow=uow,
                    principal=principal,
                    order_public_id=public_id,
                    earliest_collection=earliest,
                    now=_now(),
                )
                steps = [
                    {
                        "label": queries.STEP_LABELS[s.kind],
                        "site": s.site,
                        "start_local": queries.local(s.start, s.tz),
                        "end_local": queries.local(s.end, s.tz),
                        "timezone": s.tz,
                        "booked": s.booking is not None,
                    }
                    for s in found.plan.steps
                ]
                proposal = {
                    "earliest": raw,
                    "fingerprint": found.fingerprint,
                    "profile_version": found.plan.profile_version,
                    "unconfirmed": found.unconfirmed,
                    "steps": steps,
                    "explanations": [e.message for e in found.plan.explanations],
                    "deadlines": [
                        (d.kind.value, d.description) for d in plan_deadlines(found.plan)
                    ],
                }
            except TrackerError as exc:
                proposal_error = exc
            except ValueError:
                proposal_error = TrackerError("invalid_request", "earliest is a date, YYYY-MM-DD")
    return render_template(
        "schedules/plan.html",
        proposal=proposal,
        proposal_error=proposal_error,
        steps=[k.value for k in StepKind],
        **data,
    )


@bp.post("/orders/<public_id>/plans")
@login_required  # type: ignore[untyped-decorator]
def book(public_id: str) -> ResponseReturnValue:
    principal = current_principal()
    form = request.form
    try:
        with runtime().uow() as uow:
            data = queries.order_plan(uow.session, principal, public_id, _now())
            row = service.book_plan(
                uow=uow,
                principal=principal,
                order_public_id=public_id,
                earliest_collection=_earliest(data["order"], form.get("earliest")),
                tentative=form.get("mode", "hold") == "hold",
                expected_fingerprint=form.get("fingerprint") or None,
                now=_now(),
            )
            uow.commit()
            flash(
                f"Plan {row.public_id} "
                + ("held for 48 hours: confirm it to book." if row.status == "held" else "booked."),
                "info",
            )
    except TrackerError as exc:
        _refused(exc)
    return redirect(url_for("schedules.order_plan", public_id=public_id))


def _order_of_plan(plan_id: str) -> str:
    with runtime().uow() as uow:
        order = uow.session.scalar(
            select(TherapyOrder.public_id)
            .join(JourneyPlan, JourneyPlan.order_id == TherapyOrder.id)
            .where(JourneyPlan.public_id == plan_id)
        )
        if order is None:
            raise TrackerError("not_found", f"no plan {plan_id}")
        queries.visible_order(uow.session, current_principal(), order)
        return order


@bp.post("/plans/<plan_id>/confirm")
@login_required  # type: ignore[untyped-decorator]
def confirm(plan_id: str) -> ResponseReturnValue:
    order = _order_of_plan(plan_id)
    try:
        with runtime().uow() as uow:
            service.confirm_plan(
                uow=uow, principal=current_principal(), plan_public_id=plan_id, now=_now()
            )
            uow.commit()
        flash(f"Plan {plan_id} booked.", "info")
    except TrackerError as exc:
        _refused(exc)
    return redirect(url_for("schedules.order_plan", public_id=order))


@bp.post("/plans/<plan_id>/cancel")
@login_required  # type: ignore[untyped-decorator]
def cancel(plan_id: str) -> ResponseReturnValue:
    order = _order_of_plan(plan_id)
    try:
        with runtime().uow() as uow:
            service.cancel_plan(
                uow=uow,
                principal=current_principal(),
                plan_public_id=plan_id,
                reason=request.form.get("reason", ""),
                now=_now(),
            )
            uow.commit()
        flash(f"Plan {plan_id} cancelled; its capacity is free again.", "info")
    except TrackerError as exc:
        _refused(exc)
    return redirect(url_for("schedules.order_plan", public_id=order))


def _move_from_form(plan_id: str) -> tuple[StepKind, datetime]:
    form = request.form
    try:
        step = StepKind(form.get("step", ""))
    except ValueError as exc:
        raise TrackerError("invalid_request", "choose a step to move") from exc
    if form.get("new_start"):
        try:
            return step, datetime.fromisoformat(form["new_start"])
        except ValueError as exc:
            raise TrackerError("invalid_request", "new_start is an ISO date-time") from exc
    with runtime().uow() as uow:
        tz = uow.session.scalar(
            select(Site.timezone)
            .join(PlanStepRow, PlanStepRow.site_id == Site.id)
            .join(JourneyPlan, JourneyPlan.id == PlanStepRow.plan_id)
            .where(JourneyPlan.public_id == plan_id, PlanStepRow.kind == step.value)
        )
    if tz is None:
        raise TrackerError("invalid_request", f"the plan has no {step.value} step")
    try:
        day = date.fromisoformat(form.get("date", ""))
        wall = time.fromisoformat(form.get("time") or "00:00")
    except ValueError as exc:
        raise TrackerError("invalid_request", "give the new local date (and time)") from exc
    return step, local_to_utc(day, wall, tz)


@bp.post("/plans/<plan_id>/reschedule-preview")
@login_required  # type: ignore[untyped-decorator]
def reschedule_preview(plan_id: str) -> ResponseReturnValue:
    try:
        step, new_start = _move_from_form(plan_id)
        with runtime().uow() as uow:
            preview = service.preview_reschedule(
                uow=uow,
                principal=current_principal(),
                plan_public_id=plan_id,
                step=step,
                new_start=new_start,
                now=_now(),
            )
            tz = {s.kind: s.tz for s in preview.replan.plan.steps}
            moves = [
                {
                    "step": m.step.value,
                    "label": queries.STEP_LABELS[m.step],
                    "timezone": tz[m.step],
                    "old": queries.local(m.old_start, tz[m.step]),
                    "new": queries.local(m.new_start, tz[m.step]),
                    "moved": m.moved,
                    "rebooked": m.rebooked,
                    "snapped_from": queries.local(m.snapped_from, tz[m.step]),
                    "violations": [(v.code, v.message) for v in m.violations],
                    "problem": m.problem,
                }
                for m in preview.replan.moves
            ]
    except TrackerError as exc:
        return render_template("schedules/_reschedule_preview.html", error=exc)
    return render_template(
        "schedules/_reschedule_preview.html",
        error=None,
        plan_id=plan_id,
        step=step.value,
        new_start=new_start.isoformat(),
        fingerprint=preview.fingerprint,
        moves=moves,
        problems=preview.replan.problems,
    )


@bp.post("/plans/<plan_id>/reschedule")
@login_required  # type: ignore[untyped-decorator]
def reschedule(plan_id: str) -> ResponseReturnValue:
    order = _order_of_plan(plan_id)
    form = request.form
    try:
        if form.get("reviewed") != "yes":
            raise TrackerError(
                "invalid_request", "tick the box to confirm you reviewed the knock-on effects"
            )
        step, new_start = _move_from_form(plan_id)
        with runtime().uow() as uow:
            service.reschedule_step(
                uow=uow,
                principal=current_principal(),
                plan_public_id=plan_id,
                step=step,
                new_start=new_start,
                reason=form.get("reason", ""),
                confirm=form.get("confirm", ""),
                now=_now(),
            )
            uow.commit()
        flash(f"Plan {plan_id} rescheduled; the affected sites were notified.", "info")
    except TrackerError as exc:
        _refused(exc)
    return redirect(url_for("schedules.order_plan", public_id=order))


# ---------------------------------------------------------------------------------------------
# Waitlist


@bp.post("/orders/<public_id>/waitlist")
@login_required  # type: ignore[untyped-decorator]
def join_waitlist(public_id: str) -> ResponseReturnValue:
    form = request.form
    try:
        with runtime().uow() as uow:
            service.join_waitlist(
                uow=uow,
                principal=current_principal(),
                order_public_id=public_id,
                urgency_category=form.get("urgency_category", ""),
                bridging_therapy_failing=form.get("bridging_therapy_failing") == "yes",
                prior_slot_cancellations=int(form.get("prior_slot_cancellations") or 0),
                note=form.get("note", ""),
                now=_now(),
            )
            uow.commit()
        flash("Added to the manufacturing waitlist.", "info")
    except TrackerError as exc:
        _refused(exc)
    except ValueError:
        flash("Cancellations must be a whole number. [invalid_request]", "error")
    return redirect(url_for("schedules.order_plan", public_id=public_id))


def _entry_site(entry_id: str) -> str:
    with runtime().uow() as uow:
        code = uow.session.scalar(
            select(Site.code)
            .join(WaitlistEntry, WaitlistEntry.site_id == Site.id)
            .where(WaitlistEntry.public_id == entry_id)
        )
    if code is None:
        raise TrackerError("not_found", f"no waitlist entry {entry_id}")
    return code


@bp.post("/waitlist/<entry_id>")
@login_required  # type: ignore[untyped-decorator]
def update_entry(entry_id: str) -> ResponseReturnValue:
    code = _entry_site(entry_id)
    form = request.form
    try:
        with runtime().uow() as uow:
            if form.get("action") == "leave":
                service.leave_waitlist(
                    uow=uow,
                    principal=current_principal(),
                    entry_public_id=entry_id,
                    reason=form.get("reason", ""),
                    now=_now(),
                )
            else:
                service.update_waitlist_entry(
                    uow=uow,
                    principal=current_principal(),
                    entry_public_id=entry_id,
                    urgency_category=form.get("urgency_category") or None,
                    bridging_therapy_failing=form.get("bridging_therapy_failing") == "yes",
                    prior_slot_cancellations=int(form.get("prior_slot_cancellations") or 0),
                    reason=form.get("reason", ""),
                    now=_now(),
                )
            uow.commit()
        flash(f"Waitlist entry {entry_id} updated.", "info")
    except TrackerError as exc:
        _refused(exc)
    except ValueError:
        flash("Cancellations must be a whole number. [invalid_request]", "error")
    return redirect(url_for("schedules.waitlist", code=code))


# ---------------------------------------------------------------------------------------------
# Notifications and profiles


@bp.get("/notifications")
@login_required  # type: ignore[untyped-decorator]
def notifications() -> ResponseReturnValue:
    with runtime().uow() as uow:
        rows = queries.notifications(uow.session, current_principal().user_id)
    return render_template("schedules/notifications.html", notifications=rows)


@bp.post("/notifications/<int:notification_id>/read")
@login_required  # type: ignore[untyped-decorator]
def read_notification(notification_id: int) -> ResponseReturnValue:
    with runtime().uow() as uow:
        service.mark_notification_read(
            uow=uow, principal=current_principal(), notification_id=notification_id, now=_now()
        )
        uow.commit()
    return redirect(url_for("schedules.notifications"))


@bp.get("/profiles")
@login_required  # type: ignore[untyped-decorator]
def profiles() -> ResponseReturnValue:
    with runtime().uow() as uow:
        rows = queries.profiles(uow.session)
    return render_template("schedules/profiles.html", profiles=rows)


@bp.get("/profiles/<code>")
@login_required  # type: ignore[untyped-decorator]
def profile(code: str) -> ResponseReturnValue:
    with runtime().uow() as uow:
        data = queries.profile_journey(uow.session, code)
    return render_template(
        "schedules/profile.html", profile=data, can_edit=current_principal().is_admin
    )


def _value_from_form(name: str, form: Any) -> Any:
    if name == "infusion_window_after_ld_days":
        return [int(form.get(f"{name}_min", "")), int(form.get(f"{name}_max", ""))]
    if name == "split_dose":
        day, tolerance = form.get(f"{name}_day", ""), form.get(f"{name}_tolerance", "")
        if not day.strip():
            return None
        return {"second_dose_day": int(day), "tolerance_days": int(tolerance or 0)}
    raw = form.get(name, "").strip()
    if name == "re_ld_after_delay_days" and not raw:
        return None
    return int(raw)


@bp.post("/profiles/<code>")
@login_required  # type: ignore[untyped-decorator]
def save_profile(code: str) -> ResponseReturnValue:
    form = request.form
    try:
        values = {name: _value_from_form(name, form) for name in FIELD_NAMES}
    except ValueError:
        flash("Every number must be a whole number. [invalid_request]", "error")
        return redirect(url_for("schedules.profile", code=code))
    try:
        with runtime().uow() as uow:
            saved = service.update_journey_profile(
                uow=uow,
                principal=current_principal(),
                code=code,
                values=values,
                confirmed=form.getlist("confirmed"),
                reason=form.get("reason", ""),
                now=_now(),
            )
            uow.commit()
            flash(f"Saved as version {saved.version} of {code}.", "info")
    except TrackerError as exc:
        _refused(exc)
    return redirect(url_for("schedules.profile", code=code))
