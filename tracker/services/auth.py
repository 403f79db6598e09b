"""Users, passwords, lockout, device tokens and electronic signatures."""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Iterable
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from datetime import timedelta

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError
from argon2.exceptions import VerificationError
from sqlalchemy import select
from sqlalchemy import update

from tracker.clock import require_aware
from tracker.config import Settings
from tracker.domain.access import Role
from tracker.domain.errors import TrackerError
from tracker.domain.signatures import SIGNATURE_MEANINGS
from tracker.domain.signatures import record_hash
from tracker.models import Device
from tracker.models import RoleAssignment
from tracker.models import Signature
from tracker.models import User
from tracker.services.audit import record_audit
from tracker.unit_of_work import UnitOfWork


def make_hasher(settings: Settings) -> PasswordHasher:
    return PasswordHasher(
        time_cost=settings.argon2_time_cost, memory_cost=settings.argon2_memory_cost
    )


def create_user(
    *,
    uow: UnitOfWork,
    hasher: PasswordHasher,
    username: str,
    full_name: str,
    password: str,
    grants: Iterable[tuple[Role, int | None]],
    now: datetime,
    actor_user_id: int | None = None,
    phone: str | None = None,
) -> User:
    """Create a user with roles scoped to sites (not committed: the caller commits)."""
    if len(password) < 10:
        raise TrackerError("invalid_request", "passwords need at least 10 characters")
    now = require_aware(now)
    user = User(
        username=username,
        full_name=full_name,
        password_hash=hasher.hash(password),
        created_at=now,
        phone=phone,
    )
    for role, site_id in grants:
        user.roles.append(RoleAssignment(role=Role(role).value, site_id=site_id))
    uow.session.add(user)
    uow.session.flush()
    record_audit(
        uow.session,
        now=now,
        actor_user_id=actor_user_id,
        action="create",
        entity_type="user",
        entity_id=str(user.id),
        changes={
            "username": [None, username],
            "roles": [None, sorted(f"{r}@{s}" for r, s in grants)],
        },
    )
    return user


# A hash of a throwaway password, so unknown users cost as much time as wrong passwords.
_DUMMY_PASSWORD = "not-a-real-password-0000"


def _verify(hasher: PasswordHasher, stored: str, password: str) -> bool:
    try:
        return hasher.verify(stored, password)
    except (VerificationError, InvalidHashError):
        return False


def _register_failure(uow: UnitOfWork, user: User, settings: Settings, now: datetime) -> bool:
    """Count a failed attempt in SQL (safe under concurrency); lock at the threshold."""
    failures = uow.session.scalar(
        update(User)
        .where(User.id == user.id)
        .values(failed_logins=User.failed_logins + 1)
        .returning(User.failed_logins)
    )
    locked = failures is not None and failures >= settings.lockout_threshold
    if locked:
        uow.session.execute(
            update(User)
            .where(User.id == user.id)
            .values(locked_until=now + timedelta(minutes=settings.lockout_minutes), failed_logins=0)
        )
    uow.session.expire(user)
    return locked


def authenticate(
    *,
    uow: UnitOfWork,
    hasher: PasswordHasher,
    settings: Settings,
    username: str,
    password: str,
    now: datetime,
) -> User:
    """Check a login; failures are counted and committed even though the call refuses."""
    now = require_aware(now)
    user = uow.session.scalar(select(User).where(User.username == username))
    if user is None:
        _verify(hasher, hasher.hash(_DUMMY_PASSWORD), password)
        record_audit(
            uow.session,
            now=now,
            actor_user_id=None,
            action="login_failed",
            entity_type="user",
            entity_id=f"unknown:{username[:40]}",
        )
        uow.commit()
        raise TrackerError("bad_credentials")
    if user.locked_until is not None and user.locked_until > now:
        record_audit(
            uow.session,
            now=now,
            actor_user_id=user.id,
            action="login_refused_locked",
            entity_type="user",
            entity_id=str(user.id),
        )
        uow.commit()
        raise TrackerError("account_locked", f"account locked until {user.locked_until:%H:%M} UTC")
    if not _verify(hasher, user.password_hash, password):
        locked = _register_failure(uow, user, settings, now)
        record_audit(
            uow.session,
            now=now,
            actor_user_id=user.id,
            action="account_locked" if locked else "login_failed",
            entity_type="user",
            entity_id=str(user.id),
        )
        uow.commit()
        raise TrackerError("account_locked" if locked else "bad_credentials")
    if not user.active:
        raise TrackerError("account_inactive")
    user.failed_logins = 0
    user.locked_until = None
    user.last_login_at = now
    if hasher.check_needs_rehash(user.password_hash):
        user.password_hash = hasher.hash(password)
    record_audit(
        uow.session,
        now=now,
        actor_user_id=user.id,
        action="login",
        entity_type="user",
        entity_id=str(user.id),
    )
    uow.commit()
    return user


def token_digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


@dataclass(frozen=True)
class IssuedDevice:
    device: Device
    token: str  # shown once; only its digest is stored


def register_device(
    *,
    uow: UnitOfWork,
    name: str,
    kind: str,
    site_id: int,
    now: datetime,
    actor_user_id: int | None,
) -> IssuedDevice:
    """Register a scanner or logger and issue its bearer token."""
    if kind not in ("scanner", "logger"):
        raise TrackerError("invalid_request", "device kind must be 'scanner' or 'logger'")
    now = require_aware(now)
    token = "dev_" + secrets.token_urlsafe(32)
    device = Device(
        public_id="DEV-" + secrets.token_hex(5).upper(),
        name=name,
        kind=kind,
        site_id=site_id,
        token_hash=token_digest(token),
        created_at=now,
        created_by_id=actor_user_id,
    )
    uow.session.add(device)
    uow.session.flush()
    record_audit(
        uow.session,
        now=now,
        actor_user_id=actor_user_id,
        action="create",
        entity_type="device",
        entity_id=device.public_id,
        changes={"name": [None, name], "kind": [None, kind], "site_id": [None, site_id]},
        site_id=site_id,
    )
    return IssuedDevice(device, token)


def authenticate_device(*, uow: UnitOfWork, token: str, now: datetime) -> Device:
    """Resolve a bearer token to an active device, or refuse."""
    device = uow.session.scalar(select(Device).where(Device.token_hash == token_digest(token)))
    if device is None or not device.active:
        raise TrackerError("unauthenticated", "unknown or revoked device token")
    device.last_seen_at = require_aware(now)
    return device


def sign_record(
    *,
    uow: UnitOfWork,
    hasher: PasswordHasher,
    settings: Settings,
    user_id: int,
    password: str,
    meaning: str,
    record_type: str,
    record_id: str,
    content: Mapping[str, object],
    now: datetime,
) -> Signature:
    """Apply an e-signature: re-enter the password; store name, meaning, UTC time, record hash.

    Every signing re-collects the password (11.200(a)); failures count toward lockout like
    login failures and are committed even though the call refuses.
    """
    now = require_aware(now)
    if meaning not in SIGNATURE_MEANINGS:
        raise TrackerError("invalid_request", f"unknown signature meaning {meaning!r}")
    user = uow.session.get(User, user_id)
    if user is None or not user.active:
        raise TrackerError("account_inactive")
    if user.locked_until is not None and user.locked_until > now:
        raise TrackerError("account_locked")
    if not _verify(hasher, user.password_hash, password):
        locked = _register_failure(uow, user, settings, now)
        record_audit(
            uow.session,
            now=now,
            actor_user_id=user.id,
            action="signature_failed",
            entity_type=record_type,
            entity_id=record_id,
        )
        uow.commit()
        raise TrackerError("account_locked" if locked else "signature_failed")
    signature = Signature(
        user_id=user.id,
        printed_name=user.full_name,
        meaning=meaning,
        signed_at=now,
        record_type=record_type,
        record_id=record_id,
        record_hash=record_hash(record_type, record_id, content),
    )
    uow.session.add(signature)
    uow.session.flush()
    record_audit(
        uow.session,
        now=now,
        actor_user_id=user.id,
        action="sign",
        entity_type=record_type,
        entity_id=record_id,
        changes={"meaning": [None, meaning], "signature_id": [None, signature.id]},
    )
    return signature


def signature_matches(signature: Signature, content: Mapping[str, object]) -> bool:
    """True when the signed record still has exactly the content that was signed."""
    return signature.record_hash == record_hash(signature.record_type, signature.record_id, content)
