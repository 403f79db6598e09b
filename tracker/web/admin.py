"""Administration pages: sites, users and roles, product profiles, ladders, printers, devices.

Administrators only (everyone else gets 403). Forms post, the service audits the change
(with the reason the form asks for), and the page redirects back with a message.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from flask import Blueprint
from flask import flash
from flask import make_response
from flask import redirect
from flask import render_template
from flask import request
from flask import url_for
from flask.typing import ResponseReturnValue
from flask_login import current_user

from tracker import queries_admin
from tracker.domain.access import Role
from tracker.domain.access import SiteKind
from tracker.domain.alerting import LadderRole
from tracker.domain.errors import TrackerError
from tracker.domain.label_rules import LABEL_SIZES
from tracker.services import admin
from tracker.services import printers
from tracker.web.auth import current_principal
from tracker.web.runtime import runtime

bp = Blueprint("admin", __name__, url_prefix="/admin")
MAX_RUNGS = 6


@bp.before_request
def _administrators_only() -> ResponseReturnValue | None:
    if not current_user.is_authenticated:
        return redirect(url_for("auth.login", next=request.path))
    admin.require_admin(current_principal())
    return None


def _apply(
    action: Callable[..., Any], success: str, back: str, **kwargs: Any
) -> ResponseReturnValue:
    """Run one admin service in a unit of work, flash the outcome, and go back."""
    rt = runtime()
    try:
        with rt.uow() as uow:
            action(uow=uow, principal=current_principal(), now=rt.clock.now(), **kwargs)
            uow.commit()
    except TrackerError as exc:
        flash(exc.message, "error")
    else:
        flash(success, "info")
    return redirect(back)


def _page(template: str, **context: Any) -> ResponseReturnValue:
    return render_template(f"cockpit/admin/{template}", section=template.split(".")[0], **context)


@bp.get("/")
def index() -> ResponseReturnValue:
    return redirect(url_for("admin.site_list"))


# --- sites -----------------------------------------------------------------------------------


@bp.get("/sites")
def site_list() -> ResponseReturnValue:
    with runtime().uow() as uow:
        rows = queries_admin.sites(uow.session)
    return _page("sites.html", sites=rows, kinds=[k.value for k in SiteKind])


@bp.post("/sites")
def site_create() -> ResponseReturnValue:
    f = request.form
    return _apply(
        admin.create_site,
        f"Site {f.get('code', '').upper()} created.",
        url_for("admin.site_list"),
        code=f.get("code", ""),
        name=f.get("name", ""),
        kind=f.get("kind", ""),
        timezone=f.get("timezone", ""),
        address=f.get("address", ""),
    )


@bp.post("/sites/<code>")
def site_update(code: str) -> ResponseReturnValue:
    f = request.form
    return _apply(
        admin.update_site,
        f"Site {code} updated.",
        url_for("admin.site_list"),
        code=code,
        changes={k: f[k] for k in admin.SITE_FIELDS if k in f},
        reason=f.get("reason", ""),
    )


# --- users -----------------------------------------------------------------------------------


@bp.get("/users")
def user_list() -> ResponseReturnValue:
    with runtime().uow() as uow:
        rows = queries_admin.users(uow.session)
        sites = queries_admin.sites(uow.session)
    return _page("users.html", users=rows, sites=sites, roles=[r.value for r in Role])


@bp.post("/users")
def user_create() -> ResponseReturnValue:
    f = request.form
    rt = runtime()
    back = url_for("admin.user_list")
    try:
        with rt.uow() as uow:
            user = admin.create_user(
                uow=uow,
                hasher=rt.hasher,
                principal=current_principal(),
                username=f.get("username", ""),
                full_name=f.get("full_name", ""),
                password=f.get("password", ""),
                phone=f.get("phone"),
                grants=[(f.get("role", ""), f.get("site") or None)],
                now=rt.clock.now(),
            )
            uow.commit()
            user_id = user.id
    except TrackerError as exc:
        flash(exc.message, "error")
        return redirect(back)
    flash(f"User {f.get('username')} created.", "info")
    return redirect(url_for("admin.user_page", user_id=user_id))


@bp.get("/users/<int:user_id>")
def user_page(user_id: int) -> ResponseReturnValue:
    with runtime().uow() as uow:
        row = queries_admin.user(uow.session, user_id)
        sites = queries_admin.sites(uow.session)
    return _page("user.html", user=row, sites=sites, roles=[r.value for r in Role])


def _user_action(
    target: int, action: Callable[..., Any], success: str, **kwargs: Any
) -> ResponseReturnValue:
    back = url_for("admin.user_page", user_id=target)
    return _apply(action, success, back, reason=request.form.get("reason", ""), **kwargs)


@bp.post("/users/<int:user_id>")
def user_update(user_id: int) -> ResponseReturnValue:
    f = request.form
    return _user_action(
        user_id,
        admin.update_user,
        "User updated.",
        user_id=user_id,
        changes={k: f[k] for k in admin.USER_FIELDS if k in f},
    )


@bp.post("/users/<int:user_id>/roles")
def role_grant(user_id: int) -> ResponseReturnValue:
    f = request.form
    return _user_action(
        user_id,
        admin.grant_role,
        "Role granted; the user must log in again.",
        user_id=user_id,
        role=f.get("role", ""),
        site_code=f.get("site") or None,
    )


@bp.post("/users/<int:user_id>/roles/<int:assignment_id>/revoke")
def role_revoke(user_id: int, assignment_id: int) -> ResponseReturnValue:
    return _user_action(user_id, admin.revoke_role, "Role removed.", assignment_id=assignment_id)


@bp.post("/users/<int:user_id>/active")
def user_active(user_id: int) -> ResponseReturnValue:
    active = request.form.get("active") == "true"
    return _user_action(
        user_id,
        admin.set_user_active,
        "Account reactivated." if active else "Account deactivated; its sessions ended.",
        user_id=user_id,
        active=active,
    )


@bp.post("/users/<int:user_id>/unlock")
def user_unlock(user_id: int) -> ResponseReturnValue:
    return _user_action(user_id, admin.unlock_user, "Account unlocked.", user_id=user_id)


@bp.post("/users/<int:user_id>/sessions")
def user_sign_out(user_id: int) -> ResponseReturnValue:
    return _user_action(
        user_id, admin.sign_out_everywhere, "Every session of the user ended.", user_id=user_id
    )


# --- product profiles, ladders -----------------------------------------------------------------


@bp.get("/profiles")
def profile_list() -> ResponseReturnValue:
    with runtime().uow() as uow:
        rows = queries_admin.profiles(uow.session)
    return _page("profiles.html", profiles=rows)


@bp.get("/ladders")
def ladder_list() -> ResponseReturnValue:
    with runtime().uow() as uow:
        rows = queries_admin.ladders(uow.session)
        people = [u for u in queries_admin.users(uow.session) if u["active"]]
    return _page(
        "ladders.html",
        ladders=rows,
        people=people,
        ladder_roles=[r.value for r in LadderRole],
        max_rungs=MAX_RUNGS,
    )


@bp.post("/ladders/<code>")
def ladder_update(code: str) -> ResponseReturnValue:
    f = request.form
    steps: list[tuple[str, int | None, str, int]] = []
    for n in range(MAX_RUNGS):
        role = f.get(f"role-{n}", "")
        if not role:
            continue
        user = f.get(f"user-{n}", "")
        minutes = f.get(f"minutes-{n}", "")
        steps.append(
            (
                role,
                int(user) if user.isdigit() else None,
                f.get(f"channel-{n}", "sms"),
                int(minutes) if minutes.isdigit() else 0,
            )
        )
    return _apply(
        admin.set_ladder,
        f"Ladder of {code} saved.",
        url_for("admin.ladder_list"),
        site_code=code,
        steps=steps,
        reason=f.get("reason", ""),
    )


# --- printers, devices -------------------------------------------------------------------------


@bp.get("/printers")
def printer_list() -> ResponseReturnValue:
    with runtime().uow() as uow:
        rows = queries_admin.printer_rows(uow.session)
        sites = queries_admin.sites(uow.session)
    return _page("printers.html", printers=rows, sites=sites, sizes=LABEL_SIZES)


def _int(value: str | None, default: int) -> int:
    return int(value) if value and value.isdigit() else default


@bp.post("/printers")
def printer_create() -> ResponseReturnValue:
    f = request.form
    return _apply(
        printers.create_printer,
        f"Printer {f.get('name')} added.",
        url_for("admin.printer_list"),
        site_code=f.get("site", ""),
        name=f.get("name", ""),
        host=f.get("host", ""),
        port=_int(f.get("port"), 9100),
        dpi=_int(f.get("dpi"), 203),
        default_size=f.get("default_size", "4x2"),
    )


@bp.post("/printers/<public_id>")
def printer_update(public_id: str) -> ResponseReturnValue:
    f = request.form
    changes: dict[str, Any] = {}
    for key in ("name", "host", "default_size"):
        if key in f:
            changes[key] = f[key]
    for key in ("port", "dpi"):
        if key in f:
            changes[key] = _int(f[key], 0)
    if "active" in f:
        changes["active"] = f["active"] == "true"
    return _apply(
        admin.update_printer,
        f"Printer {public_id} updated.",
        url_for("admin.printer_list"),
        printer_public_id=public_id,
        changes=changes,
        reason=f.get("reason", ""),
    )


@bp.get("/devices")
def device_list() -> ResponseReturnValue:
    with runtime().uow() as uow:
        rows = queries_admin.devices(uow.session)
        sites = queries_admin.sites(uow.session)
    return _page("devices.html", devices=rows, sites=sites, issued=None)


@bp.post("/devices")
def device_create() -> ResponseReturnValue:
    f = request.form
    rt = runtime()
    try:
        with rt.uow() as uow:
            issued = admin.register_device(
                uow=uow,
                principal=current_principal(),
                name=f.get("name", ""),
                kind=f.get("kind", ""),
                site_code=f.get("site", ""),
                now=rt.clock.now(),
            )
            uow.commit()
            shown = {"public_id": issued.device.public_id, "name": issued.device.name}
            token = issued.token
    except TrackerError as exc:
        flash(exc.message, "error")
        return redirect(url_for("admin.device_list"))
    with rt.uow() as uow:
        rows = queries_admin.devices(uow.session)
        sites = queries_admin.sites(uow.session)
    # The token is rendered into this one response and never stored or shown again.
    response = make_response(
        _page("devices.html", devices=rows, sites=sites, issued={**shown, "token": token})
    )
    response.status_code = 201
    response.headers["Cache-Control"] = "no-store"
    return response


@bp.post("/devices/<public_id>/active")
def device_active(public_id: str) -> ResponseReturnValue:
    f = request.form
    active = f.get("active") == "true"
    return _apply(
        admin.set_device_active,
        f"Device {public_id} {'restored' if active else 'revoked'}.",
        url_for("admin.device_list"),
        device_public_id=public_id,
        active=active,
        reason=f.get("reason", ""),
    )
