"""Administration: sites, users and roles, devices, printers and escalation ladders.

Administrators only. Every change is written to the audit trail as old -> new; a change to
an existing record needs a reason (21 CFR 11.10(e), Annex 11 §9), creating one does not.
Deactivating a user or asking for it signs them out everywhere (their session version moves).
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo
from zoneinfo import ZoneInfoNotFoundError

from argon2 import PasswordHasher
from sqlalchemy import select
from sqlalchemy.orm import Session

from tracker.clock import require_aware
from tracker.domain.access import Role
from tracker.domain.access import SiteKind
from tracker.domain.alerting import LadderRole
from tracker.domain.errors import TrackerError
from tracker.models import Device
from tracker.models import Printer
from tracker.models import RoleAssignment
from tracker.models import Site
from tracker.models import User
from tracker.services import alerts
from tracker.services import auth
from tracker.services import orders
from tracker.services import printers
from tracker.services.audit import diff
from tracker.services.audit import record_audit
from tracker.services.principals import Principal
from tracker.unit_of_work import UnitOfWork

SITE_FIELDS = ("name", "address", "timezone")
USER_FIELDS = ("full_name", "phone")


def require_admin(principal: Principal) -> None:
    if not principal.is_admin or principal.user_id is None:
        raise TrackerError("forbidden", "only administrators manage sites, users and devices")


def _reason(reason: str | None) -> str:
    cleaned = (reason or "").strip()
    if not cleaned:
        raise TrackerError("reason_required", "a change to an existing record needs a reason")
    return cleaned[:2000]


def _site(session: Session, code: str) -> Site:
    return orders.site_by_code(session, code)


def site_exists(session: Session, code: str) -> None:
    """Refuse (not_found) unless the site exists."""
    _site(session, code)


def _user(session: Session, user_id: int, *, lock: bool = False) -> User:
    stmt = select(User).where(User.id == user_id)
    if lock:
        stmt = stmt.with_for_update(of=User)
    user = session.scalar(stmt)
    if user is None:
        raise TrackerError("not_found", f"no user {user_id}")
    return user


# --- sites ---------------------------------------------------------------------------------


def create_site(
    *,
    uow: UnitOfWork,
    principal: Principal,
    code: str,
    name: str,
    kind: str,
    timezone: str,
    address: str,
    now: datetime,
) -> Site:
    """Add a site (its time zone must be a real IANA zone)."""
    require_admin(principal)
    code = code.strip().upper()
    if not code or len(code) > 32 or not code.replace("-", "").isalnum():
        raise TrackerError("invalid_request", "site codes are letters, digits and dashes")
    if uow.session.scalar(select(Site.id).where(Site.code == code)):
        raise TrackerError("duplicate_identifier", f"site {code} exists")
    try:
        site_kind = SiteKind(kind)
    except ValueError as exc:
        raise TrackerError("invalid_request", f"unknown site kind {kind!r}") from exc
    if not name.strip():
        raise TrackerError("invalid_request", "a site needs a name")
    return orders.create_site(
        uow=uow,
        code=code,
        name=name.strip(),
        kind=site_kind,
        timezone=timezone.strip(),
        address=address.strip(),
        now=now,
        actor_user_id=principal.user_id,
    )


def update_site(
    *,
    uow: UnitOfWork,
    principal: Principal,
    code: str,
    changes: dict[str, str],
    reason: str,
    now: datetime,
) -> Site:
    """Change a site's name, address or time zone, with a reason."""
    require_admin(principal)
    why = _reason(reason)
    unknown = set(changes) - set(SITE_FIELDS)
    if unknown:
        raise TrackerError("invalid_request", f"unknown site fields: {sorted(unknown)}")
    site = _site(uow.session, code)
    if "timezone" in changes:
        try:
            ZoneInfo(changes["timezone"])
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise TrackerError(
                "invalid_request", f"unknown time zone {changes['timezone']!r}"
            ) from exc
    before = {f: getattr(site, f) for f in SITE_FIELDS}
    for key, value in changes.items():
        setattr(site, key, value.strip())
    after = {f: getattr(site, f) for f in SITE_FIELDS}
    if before == after:
        raise TrackerError("invalid_request", "nothing changed")
    record_audit(
        uow.session,
        now=require_aware(now),
        actor_user_id=principal.user_id,
        action="update",
        entity_type="site",
        entity_id=site.code,
        changes=diff(before, after),
        reason=why,
        site_id=site.id,
    )
    return site


# --- users and roles -----------------------------------------------------------------------


def create_user(
    *,
    uow: UnitOfWork,
    hasher: PasswordHasher,
    principal: Principal,
    username: str,
    full_name: str,
    password: str,
    phone: str | None,
    grants: Iterable[tuple[str, str | None]],
    now: datetime,
) -> User:
    """Create an account with roles at sites (administrators have no site)."""
    require_admin(principal)
    username = username.strip()
    if not username or len(username) > 80 or any(c.isspace() for c in username):
        raise TrackerError("invalid_request", "user names have no spaces (at most 80 characters)")
    if uow.session.scalar(select(User.id).where(User.username == username)):
        # 11.100: an identity is never reused or reassigned.
        raise TrackerError("duplicate_identifier", f"user name {username!r} is taken")
    resolved = [_grant(uow.session, role, site) for role, site in grants]
    if not resolved:
        raise TrackerError("invalid_request", "give the user at least one role")
    return auth.create_user(
        uow=uow,
        hasher=hasher,
        username=username,
        full_name=full_name.strip() or username,
        password=password,
        grants=resolved,
        now=now,
        actor_user_id=principal.user_id,
        phone=(phone or "").strip() or None,
    )


def _grant(session: Session, role: str, site_code: str | None) -> tuple[Role, int | None]:
    try:
        parsed = Role(role)
    except ValueError as exc:
        raise TrackerError("invalid_request", f"unknown role {role!r}") from exc
    if parsed is Role.admin:
        return parsed, None
    if not site_code:
        raise TrackerError("invalid_request", f"the {parsed.value} role is held at a site")
    return parsed, _site(session, site_code).id


def update_user(
    *,
    uow: UnitOfWork,
    principal: Principal,
    user_id: int,
    changes: dict[str, str],
    reason: str,
    now: datetime,
) -> User:
    """Change a user's printed name or phone (SMS) with a reason; the login never changes."""
    require_admin(principal)
    why = _reason(reason)
    unknown = set(changes) - set(USER_FIELDS)
    if unknown:
        raise TrackerError("invalid_request", f"unknown user fields: {sorted(unknown)}")
    user = _user(uow.session, user_id, lock=True)
    before = {f: getattr(user, f) for f in USER_FIELDS}
    for key, value in changes.items():
        setattr(user, key, value.strip() or (None if key == "phone" else getattr(user, key)))
    after = {f: getattr(user, f) for f in USER_FIELDS}
    if before == after:
        raise TrackerError("invalid_request", "nothing changed")
    record_audit(
        uow.session,
        now=require_aware(now),
        actor_user_id=principal.user_id,
        action="update",
        entity_type="user",
        entity_id=str(user.id),
        changes=diff(before, after),
        reason=why,
    )
    return user


def grant_role(
    *,
    uow: UnitOfWork,
    principal: Principal,
    user_id: int,
    role: str,
    site_code: str | None,
    reason: str,
    now: datetime,
) -> RoleAssignment:
    """Give a user a role at a site."""
    require_admin(principal)
    why = _reason(reason)
    user = _user(uow.session, user_id, lock=True)
    parsed, site_id = _grant(uow.session, role, site_code)
    if any(a.role == parsed.value and a.site_id == site_id for a in user.roles):
        raise TrackerError("duplicate_identifier", "the user already holds that role there")
    assignment = RoleAssignment(role=parsed.value, site_id=site_id)
    user.roles.append(assignment)
    # Roles are read at login: sign the user out so the new role applies now.
    user.session_version += 1
    uow.session.flush()
    record_audit(
        uow.session,
        now=require_aware(now),
        actor_user_id=principal.user_id,
        action="grant_role",
        entity_type="user",
        entity_id=str(user.id),
        changes={"role": [None, f"{parsed.value}@{site_code or '*'}"]},
        reason=why,
        site_id=site_id,
    )
    return assignment


def revoke_role(
    *,
    uow: UnitOfWork,
    principal: Principal,
    assignment_id: int,
    reason: str,
    now: datetime,
) -> None:
    """Take a role away; the user is signed out so it stops at once."""
    require_admin(principal)
    why = _reason(reason)
    assignment = uow.session.get(RoleAssignment, assignment_id)
    if assignment is None:
        raise TrackerError("not_found", f"no role assignment {assignment_id}")
    user = _user(uow.session, assignment.user_id, lock=True)
    if user.id == principal.user_id and assignment.role == Role.admin.value:
        raise TrackerError("forbidden", "you cannot take away your own administrator role")
    if len(user.roles) == 1 and user.active:
        raise TrackerError("invalid_request", "deactivate the user instead of removing every role")
    label = f"{assignment.role}@{assignment.site.code if assignment.site else '*'}"
    site_id = assignment.site_id
    user.roles.remove(assignment)
    user.session_version += 1
    uow.session.flush()
    record_audit(
        uow.session,
        now=require_aware(now),
        actor_user_id=principal.user_id,
        action="revoke_role",
        entity_type="user",
        entity_id=str(user.id),
        changes={"role": [label, None]},
        reason=why,
        site_id=site_id,
    )


def set_user_active(
    *,
    uow: UnitOfWork,
    principal: Principal,
    user_id: int,
    active: bool,
    reason: str,
    now: datetime,
) -> User:
    """Deactivate (signing out every session) or reactivate an account."""
    require_admin(principal)
    why = _reason(reason)
    user = _user(uow.session, user_id, lock=True)
    if user.id == principal.user_id and not active:
        raise TrackerError("forbidden", "you cannot deactivate your own account")
    if user.active == active:
        raise TrackerError("invalid_request", f"the account is already {'in' * (not active)}active")
    user.active = active
    user.session_version += 1
    record_audit(
        uow.session,
        now=require_aware(now),
        actor_user_id=principal.user_id,
        action="activate" if active else "deactivate",
        entity_type="user",
        entity_id=str(user.id),
        changes={"active": [not active, active]},
        reason=why,
    )
    return user


def unlock_user(
    *, uow: UnitOfWork, principal: Principal, user_id: int, reason: str, now: datetime
) -> User:
    """Lift a lockout after failed logins or signatures (11.300(d): someone looked at it)."""
    require_admin(principal)
    why = _reason(reason)
    user = _user(uow.session, user_id, lock=True)
    before = {"locked_until": user.locked_until, "failed_logins": user.failed_logins}
    user.locked_until = None
    user.failed_logins = 0
    record_audit(
        uow.session,
        now=require_aware(now),
        actor_user_id=principal.user_id,
        action="unlock",
        entity_type="user",
        entity_id=str(user.id),
        changes=diff(before, {"locked_until": None, "failed_logins": 0}),
        reason=why,
    )
    return user


def sign_out_everywhere(
    *, uow: UnitOfWork, principal: Principal, user_id: int, reason: str, now: datetime
) -> User:
    """End every session of a user (lost device, shared screen)."""
    require_admin(principal)
    why = _reason(reason)
    user = _user(uow.session, user_id, lock=True)
    user.session_version += 1
    record_audit(
        uow.session,
        now=require_aware(now),
        actor_user_id=principal.user_id,
        action="revoke_sessions",
        entity_type="user",
        entity_id=str(user.id),
        changes={"session_version": [user.session_version - 1, user.session_version]},
        reason=why,
    )
    return user


# --- devices, printers, ladders --------------------------------------------------------------


def register_device(
    *,
    uow: UnitOfWork,
    principal: Principal,
    name: str,
    kind: str,
    site_code: str,
    now: datetime,
) -> auth.IssuedDevice:
    """Register a scanner or logger; its bearer token is returned once and never stored."""
    require_admin(principal)
    if not name.strip():
        raise TrackerError("invalid_request", "a device needs a name")
    return auth.register_device(
        uow=uow,
        name=name.strip(),
        kind=kind,
        site_id=_site(uow.session, site_code).id,
        now=now,
        actor_user_id=principal.user_id,
    )


def set_device_active(
    *,
    uow: UnitOfWork,
    principal: Principal,
    device_public_id: str,
    active: bool,
    reason: str,
    now: datetime,
) -> Device:
    """Revoke a device token (or restore it), with a reason."""
    require_admin(principal)
    why = _reason(reason)
    device = uow.session.scalar(
        select(Device).where(Device.public_id == device_public_id).with_for_update(of=Device)
    )
    if device is None:
        raise TrackerError("not_found", f"no device {device_public_id}")
    if device.active == active:
        raise TrackerError("invalid_request", "nothing changed")
    device.active = active
    record_audit(
        uow.session,
        now=require_aware(now),
        actor_user_id=principal.user_id,
        action="activate" if active else "revoke",
        entity_type="device",
        entity_id=device.public_id,
        changes={"active": [not active, active]},
        reason=why,
        site_id=device.site_id,
    )
    return device


def update_printer(
    *,
    uow: UnitOfWork,
    principal: Principal,
    printer_public_id: str,
    changes: dict[str, Any],
    reason: str,
    now: datetime,
) -> Printer:
    """Change a printer (address, resolution, size, active) with a reason."""
    require_admin(principal)
    return printers.update_printer(
        uow=uow,
        principal=principal,
        printer_public_id=printer_public_id,
        changes=changes,
        now=now,
        reason=_reason(reason),
    )


def set_ladder(
    *,
    uow: UnitOfWork,
    principal: Principal,
    site_code: str,
    steps: list[tuple[str, int | None, str, int]],
    reason: str,
    now: datetime,
) -> None:
    """Replace a site's escalation ladder: (rung role, user id, channel, minutes to answer)."""
    require_admin(principal)
    why = _reason(reason)
    site = _site(uow.session, site_code)
    if not steps:
        raise TrackerError("invalid_request", "a ladder needs at least one rung")
    checked: list[tuple[LadderRole, int | None, str, int]] = []
    for role, user_id, channel, minutes in steps:
        try:
            rung = LadderRole(role)
        except ValueError as exc:
            raise TrackerError("invalid_request", f"unknown ladder role {role!r}") from exc
        if channel not in ("sms", "in_app"):
            raise TrackerError("invalid_request", "a rung is reached by sms or in_app")
        if minutes <= 0:
            raise TrackerError("invalid_request", "a rung needs a positive time to answer")
        if rung is LadderRole.courier:
            user_id = None  # the courier rung means "the courier of the shipment"
        elif user_id is None:
            raise TrackerError("invalid_request", f"the {rung.value} rung names a person")
        else:
            _user(uow.session, user_id)
        checked.append((rung, user_id, channel, minutes))
    alerts.set_ladder(
        uow=uow,
        site_id=site.id,
        steps=checked,
        now=require_aware(now),
        actor_user_id=principal.user_id,
        reason=why,
    )
