"""Administration API (administrators only): sites, users and roles, devices, ladders.

The same services as the admin pages: a change to an existing record carries a ``reason``,
and every change is on the audit trail as old -> new. Printers and product profiles have
their own routes (``/printers``, ``/product-profiles``); devices are registered with
``POST /devices``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any
from typing import Literal

from flask import jsonify
from flask.typing import ResponseReturnValue
from pydantic import Field

from tracker import queries_admin
from tracker.domain.access import Role
from tracker.domain.access import SiteKind
from tracker.domain.alerting import LadderRole
from tracker.domain.errors import TrackerError
from tracker.services import admin
from tracker.web.api import Strict
from tracker.web.api import bp
from tracker.web.api import registry
from tracker.web.auth import current_principal
from tracker.web.openapi import DbId
from tracker.web.openapi import UtcDateTime
from tracker.web.runtime import runtime

Reason = Field(min_length=1, max_length=2000)
SiteCode = Field(min_length=1, max_length=32)


class SiteOut(Strict):
    code: str
    name: str
    kind: str
    timezone: str
    address: str
    created_at: UtcDateTime


class SiteList(Strict):
    sites: list[SiteOut]


class SiteIn(Strict):
    code: str = SiteCode
    name: str = Field(min_length=1, max_length=200)
    kind: SiteKind
    timezone: str = Field(min_length=1, max_length=64)
    address: str = Field(default="", max_length=500)


class SitePatch(Strict):
    name: str | None = Field(default=None, min_length=1, max_length=200)
    address: str | None = Field(default=None, max_length=500)
    timezone: str | None = Field(default=None, min_length=1, max_length=64)
    reason: str = Reason


class RoleOut(Strict):
    id: int
    role: str
    site: str | None


class UserOut(Strict):
    id: int
    username: str
    full_name: str
    phone: str | None
    active: bool
    locked_until: UtcDateTime | None
    failed_logins: int
    last_login_at: UtcDateTime | None
    roles: list[RoleOut]


class UserList(Strict):
    users: list[UserOut]


class UserIn(Strict):
    username: str = Field(min_length=1, max_length=80, pattern=r"^\S+$")
    full_name: str = Field(min_length=1, max_length=200)
    password: str = Field(min_length=10, max_length=200)
    phone: str | None = Field(default=None, max_length=32)
    role: Role
    site: str | None = Field(default=None, min_length=1, max_length=32)


class UserPatch(Strict):
    full_name: str | None = Field(default=None, min_length=1, max_length=200)
    phone: str | None = Field(default=None, max_length=32)
    reason: str = Reason


class GrantIn(Strict):
    role: Role
    site: str | None = Field(default=None, min_length=1, max_length=32)
    reason: str = Reason


class ReasonIn(Strict):
    reason: str = Reason


class ActivationIn(Strict):
    active: bool
    reason: str = Reason


class DeviceRowOut(Strict):
    public_id: str
    name: str
    kind: str
    site: str
    active: bool
    created_at: UtcDateTime
    last_seen_at: UtcDateTime | None
    logger: str | None


class DeviceList(Strict):
    devices: list[DeviceRowOut]


class RungIn(Strict):
    role: LadderRole
    user_id: DbId | None = None
    channel: Literal["sms", "in_app"]
    minutes: int = Field(ge=1, le=1440)


class LadderIn(Strict):
    rungs: list[RungIn] = Field(min_length=1, max_length=6)
    reason: str = Reason


class RungOut(Strict):
    position: int
    role: str
    user_id: int | None
    user: str | None
    channel: str
    minutes: int


class LadderOut(Strict):
    code: str
    name: str
    rungs: list[RungOut]


def _change(action: Callable[..., Any], **kwargs: Any) -> Any:
    """Run one admin service for the calling administrator and commit."""
    rt = runtime()
    with rt.uow() as uow:
        result = action(uow=uow, principal=current_principal(), now=rt.clock.now(), **kwargs)
        uow.commit()
    return result


def _require_admin() -> None:
    admin.require_admin(current_principal())


def _user_out(user_id: int) -> dict[str, Any]:
    with runtime().uow() as uow:
        row = queries_admin.user(uow.session, user_id)
    row.pop("history")
    return UserOut(
        **{
            **row,
            "roles": [RoleOut(**{k: r[k] for k in ("id", "role", "site")}) for r in row["roles"]],
        }
    ).model_dump(mode="json")


def _user_id(username: str) -> int:
    """The account named in the path (administrators only; others learn nothing)."""
    _require_admin()
    with runtime().uow() as uow:
        found = queries_admin.user_id_by_name(uow.session, username)
    if found is None:
        raise TrackerError("not_found", f"no user {username}")
    return found


def _site_out(code: str) -> dict[str, Any]:
    with runtime().uow() as uow:
        [row] = [s for s in queries_admin.sites(uow.session) if s["code"] == code]
    return SiteOut(**row).model_dump(mode="json")


@registry.route(bp, "/sites", "GET", summary="Every site", response=SiteList, tag="admin")
def list_sites() -> ResponseReturnValue:
    _require_admin()
    with runtime().uow() as uow:
        rows = queries_admin.sites(uow.session)
    return jsonify(SiteList(sites=[SiteOut(**s) for s in rows]).model_dump(mode="json"))


@registry.route(
    bp,
    "/sites",
    "POST",
    summary="Add a site (IANA time zone)",
    body=SiteIn,
    response=SiteOut,
    status=201,
    caller="person",
    tag="admin",
)
def create_site(payload: SiteIn) -> ResponseReturnValue:
    site = _change(
        admin.create_site,
        code=payload.code,
        name=payload.name,
        kind=payload.kind,
        timezone=payload.timezone,
        address=payload.address,
    )
    return jsonify(_site_out(site.code)), 201


@registry.route(
    bp,
    "/sites/<site_code>",
    "PATCH",
    summary="Change a site's name, address or time zone, with a reason",
    body=SitePatch,
    response=SiteOut,
    caller="person",
    tag="admin",
)
def update_site(site_code: str, payload: SitePatch) -> ResponseReturnValue:
    changes = {k: v for k, v in payload.model_dump(exclude={"reason"}).items() if v is not None}
    _change(admin.update_site, code=site_code, changes=changes, reason=payload.reason)
    return jsonify(_site_out(site_code))


@registry.route(bp, "/users", "GET", summary="Every account", response=UserList, tag="admin")
def list_users() -> ResponseReturnValue:
    _require_admin()
    with runtime().uow() as uow:
        rows = queries_admin.users(uow.session)
    users = [
        UserOut(
            **{
                **u,
                "roles": [RoleOut(**{k: r[k] for k in ("id", "role", "site")}) for r in u["roles"]],
            }
        )
        for u in rows
    ]
    return jsonify(UserList(users=users).model_dump(mode="json"))


@registry.route(
    bp,
    "/users",
    "POST",
    summary="Create an account with one role (at a site, or all sites for administrators)",
    body=UserIn,
    response=UserOut,
    status=201,
    caller="person",
    tag="admin",
)
def create_user(payload: UserIn) -> ResponseReturnValue:
    rt = runtime()
    with rt.uow() as uow:
        user = admin.create_user(
            uow=uow,
            hasher=rt.hasher,
            principal=current_principal(),
            username=payload.username,
            full_name=payload.full_name,
            password=payload.password,
            phone=payload.phone,
            grants=[(payload.role, payload.site)],
            now=rt.clock.now(),
        )
        uow.commit()
        user_id = user.id
    return jsonify(_user_out(user_id)), 201


@registry.route(
    bp, "/users/<username>", "GET", summary="One account, by login", response=UserOut, tag="admin"
)
def get_user(username: str) -> ResponseReturnValue:
    _require_admin()
    return jsonify(_user_out(_user_id(username)))


@registry.route(
    bp,
    "/users/<username>",
    "PATCH",
    summary="Change an account's printed name or phone, with a reason",
    body=UserPatch,
    response=UserOut,
    caller="person",
    tag="admin",
)
def update_user(username: str, payload: UserPatch) -> ResponseReturnValue:
    user_id = _user_id(username)
    changes = {k: v for k, v in payload.model_dump(exclude={"reason"}).items() if v is not None}
    _change(admin.update_user, user_id=user_id, changes=changes, reason=payload.reason)
    return jsonify(_user_out(user_id))


@registry.route(
    bp,
    "/users/<username>/roles",
    "POST",
    summary="Grant a role at a site (the account is signed out so it applies at once)",
    body=GrantIn,
    response=UserOut,
    status=201,
    caller="person",
    tag="admin",
)
def grant_role(username: str, payload: GrantIn) -> ResponseReturnValue:
    user_id = _user_id(username)
    _change(
        admin.grant_role,
        user_id=user_id,
        role=payload.role,
        site_code=payload.site,
        reason=payload.reason,
    )
    return jsonify(_user_out(user_id)), 201


@registry.route(
    bp,
    "/users/<username>/roles/<int:assignment_id>/revocation",
    "POST",
    summary="Take a role away, with a reason",
    body=ReasonIn,
    response=UserOut,
    caller="person",
    tag="admin",
)
def revoke_role(username: str, assignment_id: int, payload: ReasonIn) -> ResponseReturnValue:
    user_id = _user_id(username)
    with runtime().uow() as uow:
        owner = queries_admin.role_owner(uow.session, assignment_id)
    if owner != user_id:
        raise TrackerError("not_found", f"{username} has no role assignment {assignment_id}")
    _change(admin.revoke_role, assignment_id=assignment_id, reason=payload.reason)
    return jsonify(_user_out(user_id))


@registry.route(
    bp,
    "/users/<username>/activation",
    "POST",
    summary="Deactivate (ending every session) or reactivate an account, with a reason",
    body=ActivationIn,
    response=UserOut,
    caller="person",
    tag="admin",
)
def set_user_active(username: str, payload: ActivationIn) -> ResponseReturnValue:
    user_id = _user_id(username)
    _change(admin.set_user_active, user_id=user_id, active=payload.active, reason=payload.reason)
    return jsonify(_user_out(user_id))


@registry.route(
    bp,
    "/users/<username>/unlock",
    "POST",
    summary="Lift a lockout after failed logins or signatures, with a reason",
    body=ReasonIn,
    response=UserOut,
    caller="person",
    tag="admin",
)
def unlock_user(username: str, payload: ReasonIn) -> ResponseReturnValue:
    user_id = _user_id(username)
    _change(admin.unlock_user, user_id=user_id, reason=payload.reason)
    return jsonify(_user_out(user_id))


@registry.route(
    bp,
    "/users/<username>/session-revocation",
    "POST",
    summary="End every session of an account, with a reason",
    body=ReasonIn,
    response=UserOut,
    caller="person",
    tag="admin",
)
def sign_out_everywhere(username: str, payload: ReasonIn) -> ResponseReturnValue:
    user_id = _user_id(username)
    _change(admin.sign_out_everywhere, user_id=user_id, reason=payload.reason)
    return jsonify(_user_out(user_id))


@registry.route(
    bp, "/devices", "GET", summary="Scanners and loggers", response=DeviceList, tag="admin"
)
def list_devices() -> ResponseReturnValue:
    _require_admin()
    with runtime().uow() as uow:
        rows = queries_admin.devices(uow.session)
    return jsonify(DeviceList(devices=[DeviceRowOut(**d) for d in rows]).model_dump(mode="json"))


class DevicePatch(Strict):
    active: bool
    reason: str = Reason


@registry.route(
    bp,
    "/devices/<public_id>",
    "PATCH",
    summary="Revoke a device token (active false) or restore it, with a reason",
    body=DevicePatch,
    response=DeviceRowOut,
    caller="person",
    tag="admin",
)
def update_device(public_id: str, payload: DevicePatch) -> ResponseReturnValue:
    _change(
        admin.set_device_active,
        device_public_id=public_id,
        active=payload.active,
        reason=payload.reason,
    )
    with runtime().uow() as uow:
        [row] = [d for d in queries_admin.devices(uow.session) if d["public_id"] == public_id]
    return jsonify(DeviceRowOut(**row).model_dump(mode="json"))


def _ladder_out(code: str) -> dict[str, Any]:
    with runtime().uow() as uow:
        [row] = [lad for lad in queries_admin.ladders(uow.session) if lad["code"] == code]
    rungs = [RungOut(**{k: r[k] for k in RungOut.model_fields}) for r in row["rungs"]]
    return LadderOut(code=row["code"], name=row["name"], rungs=rungs).model_dump(mode="json")


@registry.route(
    bp,
    "/sites/<site_code>/ladder",
    "GET",
    summary="A site's escalation ladder (the default one until it is set)",
    response=LadderOut,
    tag="admin",
)
def get_ladder(site_code: str) -> ResponseReturnValue:
    _require_admin()
    with runtime().uow() as uow:
        admin.site_exists(uow.session, site_code)
    return jsonify(_ladder_out(site_code))


@registry.route(
    bp,
    "/sites/<site_code>/ladder",
    "PUT",
    summary="Replace a site's escalation ladder, with a reason",
    body=LadderIn,
    response=LadderOut,
    caller="person",
    tag="admin",
)
def set_ladder(site_code: str, payload: LadderIn) -> ResponseReturnValue:
    _change(
        admin.set_ladder,
        site_code=site_code,
        steps=[(r.role, r.user_id, r.channel, r.minutes) for r in payload.rungs],
        reason=payload.reason,
    )
    return jsonify(_ladder_out(site_code))
