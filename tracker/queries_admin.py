"""Read views for the administration pages (administrators see every site)."""

from __future__ import annotations

from typing import Any

from sqlalchemy import func
from sqlalchemy import select
from sqlalchemy.orm import Session

from tracker.domain.errors import TrackerError
from tracker.models import AuditEntry
from tracker.models import Device
from tracker.models import Printer
from tracker.models import ProductProfile
from tracker.models import RoleAssignment
from tracker.models import Site
from tracker.models import TemperatureLogger
from tracker.models import User
from tracker.queries_alerts import RUNG_LABELS
from tracker.services import alerts


def sites(session: Session) -> list[dict[str, Any]]:
    return [
        {
            "code": s.code,
            "name": s.name,
            "kind": s.kind,
            "timezone": s.timezone,
            "address": s.address,
            "created_at": s.created_at,
        }
        for s in session.scalars(select(Site).order_by(Site.name))
    ]


def _user_dict(u: User) -> dict[str, Any]:
    return {
        "id": u.id,
        "username": u.username,
        "full_name": u.full_name,
        "phone": u.phone,
        "active": u.active,
        "locked_until": u.locked_until,
        "failed_logins": u.failed_logins,
        "last_login_at": u.last_login_at,
        "roles": sorted(
            (
                {
                    "id": a.id,
                    "role": a.role,
                    "site": a.site.code if a.site else None,
                    "site_name": a.site.name if a.site else "all sites",
                }
                for a in u.roles
            ),
            key=lambda r: (r["role"], r["site"] or ""),
        ),
    }


def users(session: Session) -> list[dict[str, Any]]:
    return [_user_dict(u) for u in session.scalars(select(User).order_by(User.username))]


def user(session: Session, user_id: int) -> dict[str, Any]:
    row = session.get(User, user_id)
    if row is None:
        raise TrackerError("not_found", f"no user {user_id}")
    out = _user_dict(row)
    out["history"] = [
        {"at": a.at, "action": a.action, "changes": a.changes, "reason": a.reason}
        for a in session.scalars(
            select(AuditEntry)
            .where(AuditEntry.entity_type == "user", AuditEntry.entity_id == str(user_id))
            .order_by(AuditEntry.at.desc())
            .limit(30)
        )
    ]
    return out


def devices(session: Session) -> list[dict[str, Any]]:
    loggers = {
        device_id: serial
        for device_id, serial in session.execute(
            select(TemperatureLogger.device_id, TemperatureLogger.serial).where(
                TemperatureLogger.device_id.is_not(None)
            )
        )
    }
    return [
        {
            "public_id": d.public_id,
            "name": d.name,
            "kind": d.kind,
            "site": d.site.name,
            "active": d.active,
            "created_at": d.created_at,
            "last_seen_at": d.last_seen_at,
            "logger": loggers.get(d.id),
        }
        for d in session.scalars(select(Device).order_by(Device.site_id, Device.name))
    ]


def printer_rows(session: Session) -> list[dict[str, Any]]:
    return [
        {
            "public_id": p.public_id,
            "site": p.site.code,
            "site_name": p.site.name,
            "name": p.name,
            "host": p.host,
            "port": p.port,
            "dpi": p.dpi,
            "default_size": p.default_size,
            "active": p.active,
        }
        for p in session.scalars(select(Printer).order_by(Printer.site_id, Printer.name))
    ]


def user_id_by_name(session: Session, username: str) -> int | None:
    return session.scalar(select(User.id).where(User.username == username))


def role_owner(session: Session, assignment_id: int) -> int | None:
    """The user holding a role assignment (None when there is no such assignment)."""
    return session.scalar(select(RoleAssignment.user_id).where(RoleAssignment.id == assignment_id))


def ladders(session: Session) -> list[dict[str, Any]]:
    out = []
    for site in session.scalars(select(Site).order_by(Site.name)):
        rungs = alerts.ladder_for(session, site.id)
        out.append(
            {
                "code": site.code,
                "name": site.name,
                "rungs": [
                    {
                        "position": r.position,
                        "role": r.role.value,
                        "role_label": RUNG_LABELS[r.role.value],
                        "user_id": r.user.id if r.user else None,
                        "user": r.user.full_name if r.user else None,
                        "channel": r.channel,
                        "minutes": int(r.timeout.total_seconds() // 60),
                    }
                    for r in rungs
                ],
            }
        )
    return out


def profiles(session: Session) -> list[dict[str, Any]]:
    latest = (
        select(ProductProfile.code, func.max(ProductProfile.version).label("version"))
        .group_by(ProductProfile.code)
        .subquery()
    )
    rows = session.scalars(
        select(ProductProfile)
        .join(
            latest,
            (latest.c.code == ProductProfile.code) & (latest.c.version == ProductProfile.version),
        )
        .order_by(ProductProfile.code)
    )
    return [
        {
            "code": p.code,
            "name": p.name,
            "version": p.version,
            "starting_material": p.starting_material,
            "product_code": p.product_code,
            "active": p.active,
            "storage_max_c": (p.data or {}).get("storage_max_c"),
        }
        for p in rows
    ]
