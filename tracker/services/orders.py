"""Patients, product profiles and therapy orders (with their chain-of-identity identifier)."""

from __future__ import annotations

import secrets
from datetime import date
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from tracker.clock import require_aware
from tracker.domain.access import ORDER_ROLES
from tracker.domain.access import SiteKind
from tracker.domain.errors import TrackerError
from tracker.models import Patient
from tracker.models import PatientIdentity
from tracker.models import ProductProfile
from tracker.models import Site
from tracker.models import TherapyOrder
from tracker.services.audit import record_audit
from tracker.services.counters import next_value
from tracker.services.custody import new_public_id
from tracker.services.principals import Principal
from tracker.unit_of_work import UnitOfWork

_SEQ_ALPHABET = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ"


def _base36(value: int, width: int) -> str:
    out = ""
    while value:
        value, rest = divmod(value, 36)
        out = _SEQ_ALPHABET[rest] + out
    if len(out) > width:
        raise TrackerError("conflict", "identifier sequence exhausted")
    return out.rjust(width, "0")


def issue_coi(session: Session, *, fin: str, now: datetime) -> str:
    """Allocate the next DS040 identifier (15 characters, ``CH`` + FIN + yy + sequence)."""
    from tracker.domain.identifiers import make_coi

    year2 = require_aware(now).year % 100
    seq = next_value(session, f"coi:{fin}:{year2:02d}")
    return make_coi(fin, year2, _base36(seq, 6)).coi


def new_wristband_code() -> str:
    """Opaque token for the wristband barcode (internal ID format with check character)."""
    from tracker.domain.identifiers import new_internal_id

    return new_internal_id("PAT", secrets.token_bytes).value


def site_by_code(session: Session, code: str) -> Site:
    site = session.scalar(select(Site).where(Site.code == code))
    if site is None:
        raise TrackerError("not_found", f"no site {code}")
    return site


def create_site(
    *,
    uow: UnitOfWork,
    code: str,
    name: str,
    kind: SiteKind,
    timezone: str,
    address: str,
    now: datetime,
    actor_user_id: int | None = None,
) -> Site:
    """Create a site; its time zone must be a real IANA zone."""
    from zoneinfo import ZoneInfo
    from zoneinfo import ZoneInfoNotFoundError

    try:
        ZoneInfo(timezone)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise TrackerError("invalid_request", f"unknown time zone {timezone!r}") from exc
    site = Site(
        code=code,
        name=name,
        kind=SiteKind(kind).value,
        timezone=timezone,
        address=address,
        created_at=require_aware(now),
    )
    uow.session.add(site)
    uow.session.flush()
    record_audit(
        uow.session,
        now=now,
        actor_user_id=actor_user_id,
        action="create",
        entity_type="site",
        entity_id=code,
        changes={"name": [None, name]},
    )
    return site


def create_product_profile(
    *,
    uow: UnitOfWork,
    code: str,
    name: str,
    product_code: str,
    starting_material: str,
    data: dict[str, Any],
    now: datetime,
    actor_user_id: int | None = None,
) -> ProductProfile:
    """Create the next version of a product profile (earlier versions stay as they were)."""
    session = uow.session
    latest = session.scalar(
        select(ProductProfile)
        .where(ProductProfile.code == code)
        .order_by(ProductProfile.version.desc())
        .limit(1)
    )
    profile = ProductProfile(
        code=code,
        version=(latest.version + 1) if latest else 1,
        name=name,
        product_code=product_code,
        starting_material=starting_material,
        data=data,
        created_at=require_aware(now),
    )
    if latest:
        latest.active = False
    session.add(profile)
    session.flush()
    record_audit(
        session,
        now=now,
        actor_user_id=actor_user_id,
        action="create",
        entity_type="product_profile",
        entity_id=f"{code}@{profile.version}",
        changes={"data": [latest.data if latest else None, data]},
    )
    return profile


def register_patient(
    *,
    uow: UnitOfWork,
    principal: Principal,
    treatment_site_code: str,
    given_name: str,
    family_name: str,
    date_of_birth: date,
    mrn: str,
    now: datetime,
) -> Patient:
    """Register a pseudonymous patient; identity goes to its own restricted table."""
    session = uow.session
    now = require_aware(now)
    site = site_by_code(session, treatment_site_code)
    principal.require_role_at(ORDER_ROLES, site.id, "register patients")
    if site.kind != SiteKind.treatment_centre:
        raise TrackerError("invalid_request", "patients belong to a treatment centre")
    if not (given_name.strip() and family_name.strip() and mrn.strip()):
        raise TrackerError("invalid_request", "name and MRN are required")
    patient = Patient(
        public_id=new_public_id("PT"),
        wristband_code=new_wristband_code(),
        treatment_site_id=site.id,
        created_at=now,
    )
    session.add(patient)
    session.flush()
    session.add(
        PatientIdentity(
            patient_id=patient.id,
            given_name=given_name.strip(),
            family_name=family_name.strip(),
            date_of_birth=date_of_birth,
            mrn=mrn.strip(),
        )
    )
    # The audit row names the pseudonym only; identity data stays in its own table.
    record_audit(
        session,
        now=now,
        actor_user_id=principal.user_id,
        action="create",
        entity_type="patient",
        entity_id=patient.public_id,
        site_id=site.id,
    )
    return patient


def create_order(
    *,
    uow: UnitOfWork,
    principal: Principal,
    patient_public_id: str,
    product_code: str,
    collection_site_code: str,
    manufacturing_site_code: str,
    coi_fin: str,
    now: datetime,
) -> TherapyOrder:
    """Create a therapy order and issue its chain-of-identity identifier."""
    session = uow.session
    now = require_aware(now)
    patient = session.scalar(select(Patient).where(Patient.public_id == patient_public_id))
    if patient is None or not principal.can_see_site(patient.treatment_site_id):
        raise TrackerError("not_found", f"no patient {patient_public_id}")
    principal.require_role_at(ORDER_ROLES, patient.treatment_site_id, "create orders")
    if principal.user_id is None:
        raise TrackerError("forbidden", "a therapy order is created by a person, not a device")
    profile = session.scalar(
        select(ProductProfile).where(
            ProductProfile.code == product_code, ProductProfile.active.is_(True)
        )
    )
    if profile is None:
        raise TrackerError("not_found", f"no active product profile {product_code}")
    collection = site_by_code(session, collection_site_code)
    manufacturing = site_by_code(session, manufacturing_site_code)
    if manufacturing.kind != SiteKind.manufacturing_facility:
        raise TrackerError("invalid_request", f"{manufacturing.code} is not a manufacturing site")
    if collection.kind not in (SiteKind.collection_centre, SiteKind.treatment_centre):
        raise TrackerError("invalid_request", f"{collection.code} does not collect apheresis")
    order = TherapyOrder(
        public_id=new_public_id("ORD"),
        coi=issue_coi(session, fin=coi_fin, now=now),
        patient_id=patient.id,
        product_profile_id=profile.id,
        treatment_site_id=patient.treatment_site_id,
        collection_site_id=collection.id,
        manufacturing_site_id=manufacturing.id,
        created_at=now,
        created_by_id=principal.user_id,
    )
    session.add(order)
    session.flush()
    record_audit(
        session,
        now=now,
        actor_user_id=principal.user_id,
        action="create",
        entity_type="therapy_order",
        entity_id=order.public_id,
        changes={
            "coi": [None, order.coi],
            "product": [None, f"{profile.code}@{profile.version}"],
            "patient": [None, patient.public_id],
        },
        site_id=patient.treatment_site_id,
    )
    return order
