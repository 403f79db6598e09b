"""Label printers per site: administrators add and change them; everyone lists their sites'."""

from __future__ import annotations

import secrets
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from tracker.clock import require_aware
from tracker.domain import label_rules as rules
from tracker.domain.errors import TrackerError
from tracker.models import Printer
from tracker.models import Site
from tracker.services.audit import diff
from tracker.services.audit import record_audit
from tracker.services.principals import Principal
from tracker.unit_of_work import UnitOfWork


def _site(session: Session, code: str) -> Site:
    # Not orders.site_by_code: orders imports custody, which imports this (via labels).
    site = session.scalar(select(Site).where(Site.code == code))
    if site is None:
        raise TrackerError("not_found", f"no site {code}")
    return site


def _require_admin(principal: Principal) -> None:
    if not principal.is_admin:
        raise TrackerError("forbidden", "only administrators manage printers")


def _check_printer_fields(dpi: int, default_size: str, port: int, host: str) -> None:
    if dpi not in rules.PRINTER_DPIS:
        raise TrackerError("invalid_request", "printers print at 203 or 300 dpi")
    if default_size not in rules.LABEL_SIZES:
        raise TrackerError("invalid_request", f"label sizes are {', '.join(rules.LABEL_SIZES)}")
    if not 1 <= port <= 65535:
        raise TrackerError("invalid_request", "port must be 1-65535")
    if not host.strip() or any(c.isspace() for c in host):
        raise TrackerError("invalid_request", "give the printer's host name or address")


def create_printer(
    *,
    uow: UnitOfWork,
    principal: Principal,
    site_code: str,
    name: str,
    host: str,
    now: datetime,
    port: int = 9100,
    dpi: int = 203,
    default_size: str = "4x2",
) -> Printer:
    """Add a network label printer at a site (administrators only)."""
    _require_admin(principal)
    _check_printer_fields(dpi, default_size, port, host)
    session = uow.session
    site = _site(session, site_code)
    if session.scalar(select(Printer.id).where(Printer.site_id == site.id, Printer.name == name)):
        raise TrackerError("duplicate_identifier", f"{site.code} already has a printer {name!r}")
    printer = Printer(
        public_id=f"PRN-{secrets.token_hex(4).upper()}",
        site_id=site.id,
        name=name.strip(),
        host=host.strip(),
        port=port,
        dpi=dpi,
        default_size=default_size,
        active=True,
        created_at=require_aware(now),
    )
    session.add(printer)
    session.flush()
    record_audit(
        session,
        now=now,
        actor_user_id=principal.user_id,
        action="create",
        entity_type="printer",
        entity_id=printer.public_id,
        changes=diff({}, _printer_fields(printer)),
        site_id=site.id,
    )
    return printer


def _printer_fields(printer: Printer) -> dict[str, Any]:
    return {
        "name": printer.name,
        "host": printer.host,
        "port": printer.port,
        "dpi": printer.dpi,
        "default_size": printer.default_size,
        "active": printer.active,
    }


def update_printer(
    *,
    uow: UnitOfWork,
    principal: Principal,
    printer_public_id: str,
    changes: dict[str, Any],
    now: datetime,
    reason: str | None = None,
) -> Printer:
    """Change a printer's name, address, resolution, default size or active flag (admins)."""
    _require_admin(principal)
    unknown = set(changes) - {"name", "host", "port", "dpi", "default_size", "active"}
    if unknown:
        raise TrackerError("invalid_request", f"unknown printer fields: {sorted(unknown)}")
    session = uow.session
    printer = session.scalar(
        select(Printer).where(Printer.public_id == printer_public_id).with_for_update(of=Printer)
    )
    if printer is None:
        raise TrackerError("not_found", f"no printer {printer_public_id}")
    before = _printer_fields(printer)
    after = {**before, **changes}
    _check_printer_fields(after["dpi"], after["default_size"], after["port"], after["host"])
    for key, value in changes.items():
        setattr(printer, key, value.strip() if isinstance(value, str) else value)
    session.flush()
    record_audit(
        session,
        now=now,
        actor_user_id=principal.user_id,
        action="update",
        entity_type="printer",
        entity_id=printer.public_id,
        changes=diff(before, _printer_fields(printer)),
        site_id=printer.site_id,
        reason=reason,
    )
    return printer


def list_printers(
    session: Session, principal: Principal, *, site_id: int | None = None
) -> list[Printer]:
    """Printers at the sites the principal works at (administrators: all)."""
    stmt = select(Printer).order_by(Printer.site_id, Printer.name)
    sites = principal.site_ids
    if sites is not None:
        stmt = stmt.where(Printer.site_id.in_(sites))
    if site_id is not None:
        stmt = stmt.where(Printer.site_id == site_id)
    return list(session.scalars(stmt))
