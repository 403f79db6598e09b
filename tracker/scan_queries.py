"""Read-only views of scanning for pages and the API: plain dicts, scoped to the principal.

What a coordinator sees on an order (its journey position, open deviations, refused scans
including wrong-patient attempts), and what a scanner station needs (its steps, its worklist).
"""

from __future__ import annotations

import random
from datetime import datetime
from typing import Any

from sqlalchemy import or_
from sqlalchemy import select
from sqlalchemy.orm import Session
from sqlalchemy.orm import aliased

from tracker.domain import identifiers
from tracker.domain import scans as rules
from tracker.domain.access import Role
from tracker.domain.access import SiteKind
from tracker.domain.errors import TrackerError
from tracker.domain.journey import Journey
from tracker.domain.journey import SiteRole
from tracker.domain.journey import Step
from tracker.domain.journey import journey_for_profile
from tracker.models import Deviation
from tracker.models import Device
from tracker.models import Item
from tracker.models import Patient
from tracker.models import ProductProfile
from tracker.models import ReleaseCertificate
from tracker.models import Scan
from tracker.models import Site
from tracker.models import StepRun
from tracker.models import TherapyOrder
from tracker.models import User
from tracker.services.principals import Principal
from tracker.services.principals import scope_orders
from tracker.services.scans import DEFAULT_THAW_MINUTES

# Which kinds of site each step's place can be (a collection may happen at a treatment site).
_SITE_KINDS: dict[SiteRole, frozenset[SiteKind]] = {
    SiteRole.collection: frozenset({SiteKind.collection_centre, SiteKind.treatment_centre}),
    SiteRole.manufacturing: frozenset({SiteKind.manufacturing_facility, SiteKind.processing_lab}),
    SiteRole.treatment: frozenset({SiteKind.treatment_centre}),
    SiteRole.courier: frozenset({SiteKind.courier_depot}),
    SiteRole.item: frozenset(SiteKind),
}


def _order(session: Session, principal: Principal, public_id: str) -> TherapyOrder:
    order = session.scalar(
        scope_orders(select(TherapyOrder), principal).where(TherapyOrder.public_id == public_id)
    )
    if order is None:
        raise TrackerError("not_found", f"no order {public_id}")
    return order


def _journey(order: TherapyOrder) -> Journey:
    profile = order.product_profile
    return journey_for_profile(profile.starting_material, profile.data)


def order_scans(
    session: Session, principal: Principal, public_id: str, *, result: str = "accepted"
) -> list[dict[str, Any]]:
    """An order's scans, newest first: accepted ones by default, ``error`` or ``all``.

    Refused scans include other orders' attempts that named this order's codes (a
    wrong-patient scan shows on both orders).
    """
    order = _order(session, principal, public_id)
    other = aliased(TherapyOrder)
    stmt = (
        select(Scan, User.full_name, Device.name, Site.name, other.public_id)
        .join(User, User.id == Scan.user_id)
        .outerjoin(Device, Device.id == Scan.device_id)
        .outerjoin(Site, Site.id == Scan.site_id)
        .outerjoin(other, other.id == Scan.scanned_order_id)
        .where(or_(Scan.order_id == order.id, Scan.scanned_order_id == order.id))
        .order_by(Scan.id.desc())
        .limit(500)
    )
    if result == "accepted":
        stmt = stmt.where(Scan.result != "error")
    elif result == "error":
        stmt = stmt.where(Scan.result == "error")
    rows = []
    for scan, user, device, site, scanned_order in session.execute(stmt):
        rows.append(
            {
                "id": scan.id,
                "server_at": scan.server_at,
                "client_at": scan.client_at,
                "late": rules.is_late(scan.client_at, scan.server_at),
                "offline": scan.offline,
                "forced": scan.forced,
                "step": scan.step,
                "result": scan.result,
                "reason": scan.reason,
                "message": scan.message,
                "raw": scan.raw,
                "kind": scan.kind,
                "user": user,
                "device": device or scan.device_ref,
                "site": site,
                # Named from the other side: this order's code scanned in another's step.
                "wrong_patient": scan.reason == "coi_mismatch",
                "other_order": scanned_order if scan.order_id == order.id else None,
            }
        )
    return rows


def order_journey(
    session: Session, principal: Principal, public_id: str, now: datetime
) -> dict[str, Any]:
    """Where the order's journey stands: steps done, in progress and next; deviations; clock."""
    order = _order(session, principal, public_id)
    journey = _journey(order)
    runs = list(
        session.scalars(select(StepRun).where(StepRun.order_id == order.id).order_by(StepRun.id))
    )
    completed = [r for r in runs if r.status == "completed"]
    last = next((r.step for r in reversed(completed) if not r.exception), None)
    following = set(journey.following(last))
    open_steps = {r.step for r in runs if r.status == "open"}
    done_at = {r.step: r.completed_at for r in completed}
    steps = []
    for step in journey.steps:
        if step.exception and step.code not in done_at and step.code not in open_steps:
            continue
        if step.code in open_steps:
            status = "in progress"
        elif step.code in following:
            status = "next"
        elif step.code in done_at:
            status = "done"
        else:
            status = "later"
        steps.append(
            {
                "code": step.code,
                "title": step.title,
                "status": status,
                "completed_at": done_at.get(step.code),
                "exception": step.exception,
            }
        )
    deviations = [
        {
            "public_id": d.public_id,
            "kind": d.kind,
            "status": d.status,
            "description": d.description,
            "opened_at": d.opened_at,
            "closed_at": d.closed_at,
            "close_reason": d.close_reason,
        }
        for d in session.scalars(
            select(Deviation).where(Deviation.order_id == order.id).order_by(Deviation.id.desc())
        )
    ]
    countdown = None
    thaws = [r for r in completed if (s := journey.step(r.step)) and s.countdown == "start"]
    if thaws and thaws[-1].completed_at is not None:
        minutes = int(
            order.product_profile.data.get("thaw_to_infusion_minutes", DEFAULT_THAW_MINUTES)
        )
        deadline = rules.countdown_deadline(thaws[-1].completed_at, minutes)
        infused = any(
            r.step == "infusion_start"
            and r.completed_at
            and r.completed_at >= thaws[-1].completed_at
            for r in completed
        )
        countdown = {
            "started_at": thaws[-1].completed_at,
            "deadline": deadline,
            "minutes": minutes,
            "expired": now > deadline and not infused,
            "met": infused,
        }
    sites = (order.collection_site_id, order.manufacturing_site_id, order.treatment_site_id)
    return {
        "variant": journey.variant,
        "can_close": any(principal.has_role_at(frozenset({Role.qa}), s) for s in sites),
        "steps": steps,
        "following": [
            {"code": c, "title": s.title} for c in journey.following(last) if (s := journey.step(c))
        ],
        "deviations": deviations,
        "open_deviations": sum(1 for d in deviations if d["status"] == "open"),
        "countdown": countdown,
    }


# ---------------------------------------------------------------------------------------------
# Scanner stations
# ---------------------------------------------------------------------------------------------


def scanner_devices(session: Session, principal: Principal) -> list[dict[str, Any]]:
    """Active scanners at the sites where the person holds a role."""
    stmt = (
        select(Device.public_id, Device.name, Site.id, Site.code, Site.name, Site.kind)
        .join(Site, Site.id == Device.site_id)
        .where(Device.kind == "scanner", Device.active.is_(True))
        .order_by(Site.name, Device.name)
    )
    return [
        {
            "public_id": row[0],
            "name": row[1],
            "site_id": row[2],
            "site_code": row[3],
            "site_name": row[4],
            "site_kind": row[5],
        }
        for row in session.execute(stmt)
        if principal.roles_at(row[2]) - {Role.admin}
    ]


def _station(session: Session, principal: Principal, device_public_id: str) -> dict[str, Any]:
    for device in scanner_devices(session, principal):
        if device["public_id"] == device_public_id:
            return device
    raise TrackerError("unknown_device", f"no scanner {device_public_id} at your sites")


def _active_journeys(session: Session) -> list[Journey]:
    profiles = session.execute(
        select(ProductProfile.starting_material, ProductProfile.data).where(
            ProductProfile.active.is_(True)
        )
    )
    return [journey_for_profile(material, data) for material, data in profiles]


def _performable(step: Step, roles: frozenset[Role], site_kind: SiteKind) -> bool:
    return bool(step.roles & roles) and site_kind in _SITE_KINDS[step.site]


def station_steps(
    session: Session, principal: Principal, device_public_id: str
) -> list[dict[str, Any]]:
    """The steps this person may perform at this scanner, in journey order, exceptions last."""
    station = _station(session, principal, device_public_id)
    roles = principal.roles_at(station["site_id"])
    seen: dict[str, dict[str, Any]] = {}
    for journey in _active_journeys(session):
        for step in journey.steps:
            if step.code not in seen and _performable(step, roles, SiteKind(station["site_kind"])):
                seen[step.code] = {
                    "code": step.code,
                    "title": step.title,
                    "exception": step.exception,
                    "persons": step.persons,
                    "first": step.requirements[0].prompt,
                }
    return sorted(seen.values(), key=lambda s: s["exception"])


def _codes(session: Session, order: TherapyOrder, step: Step, site_id: int) -> list[dict[str, str]]:
    """Barcode data a demo user may click instead of scanning (never in production)."""
    wristband = session.scalar(select(Patient.wristband_code).where(Patient.id == order.patient_id))
    codes = [
        {"label": "Wristband", "data": wristband or ""},
        {"label": "COI label", "data": identifiers.coi_barcode_data(order.coi)},
    ]
    for item in order.items:
        if item.din:
            what = "Apheresis bag" if item.kind == "apheresis_bag" else "Product bag"
            codes.append(
                {
                    "label": f"{what} ({item.state.replace('_', ' ')})",
                    "data": identifiers.din_barcode_data(item.din, "00"),
                }
            )
    for shipment in order.shipments:
        if shipment.state in ("received", "cancelled"):
            continue
        if shipment.shipper is not None and shipment.shipper.serial:
            codes.append({"label": "Shipper", "data": shipment.shipper.serial})
        if shipment.logger_serial:
            codes.append({"label": "Logger", "data": shipment.logger_serial})
        if shipment.tamper_seal:
            codes.append({"label": "Tamper seal", "data": shipment.tamper_seal})
    if step.shipment is not None and step.code.startswith("pack"):
        shippers = session.scalars(
            select(Item.serial)
            .where(Item.kind == "cryoshipper", Item.state == "charged", Item.site_id == site_id)
            .limit(2)
        )
        codes += [{"label": "Charged shipper", "data": s or ""} for s in shippers]
        codes.append({"label": "New logger", "data": _demo_id("LOG", order.public_id)})
        codes.append({"label": "New tamper seal", "data": f"SEAL-{order.public_id[-6:]}"})
    certificates = session.scalars(
        select(ReleaseCertificate.code).where(ReleaseCertificate.order_id == order.id)
    )
    codes += [{"label": "Release certificate", "data": c} for c in certificates]
    return codes


def _demo_id(kind: str, seed: str) -> str:
    return identifiers.new_internal_id(kind, random.Random(seed)).value


def station_worklist(
    session: Session, principal: Principal, device_public_id: str, *, with_codes: bool
) -> list[dict[str, Any]]:
    """Orders whose next step (or a step in progress) can be done at this scanner now."""
    station = _station(session, principal, device_public_id)
    roles = principal.roles_at(station["site_id"])
    site_kind = SiteKind(station["site_kind"])
    orders = session.scalars(
        scope_orders(select(TherapyOrder), principal)
        .where(TherapyOrder.status == "active")
        .order_by(TherapyOrder.id.desc())
        .limit(200)
    )
    work = []
    for order in orders:
        journey = _journey(order)
        runs = session.execute(
            select(StepRun.step, StepRun.status, StepRun.exception)
            .where(StepRun.order_id == order.id)
            .order_by(StepRun.completed_at.desc().nulls_last(), StepRun.id.desc())
        ).all()
        last = next((r.step for r in runs if r.status == "completed" and not r.exception), None)
        candidates = [*(r.step for r in runs if r.status == "open"), *journey.following(last)]
        sites = {
            SiteRole.collection: order.collection_site_id,
            SiteRole.manufacturing: order.manufacturing_site_id,
            SiteRole.treatment: order.treatment_site_id,
        }
        for code in dict.fromkeys(candidates):
            step = journey.step(code)
            if step is None or not _performable(step, roles, site_kind):
                continue
            here = sites.get(step.site)
            if here is not None and here != station["site_id"]:
                continue
            if step.site is SiteRole.courier and not any(
                s.courier_user_id == principal.user_id and s.state == "packed"
                for s in order.shipments
            ):
                continue
            work.append(
                {
                    "order": order.public_id,
                    "coi": order.coi,
                    "step": step.code,
                    "title": step.title,
                    "codes": _codes(session, order, step, station["site_id"]) if with_codes else [],
                }
            )
    return work
