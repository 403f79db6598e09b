"""Read-only FHIR R5 export of one order: a Bundle of type ``collection`` (DOMAIN.md §7).

Two halves: ``load_order`` reads the order into plain facts (the only part that touches the
database), and the ``*_resource`` functions map facts to FHIR resources as plain dicts, with no
I/O, so each mapping is testable on hand-made facts. FHIR never drives our model: this is export
only.

Decisions (DOMAIN.md §7 leaves them open):
- The DIN (without flags) is both ``identifier`` and ``biologicalSourceEvent``; the COI is an
  extra ``identifier``. Identifier systems are URIs under our public base URL.
- The patient is referenced by the opaque pseudonym. A Patient resource with name, birth date
  and MRN is added only when the caller's role may read identity data at the treatment site.
- Logger data becomes one Observation per excursion (focus: the exposed bags) and one per bag
  summarising its exposure ledger; single readings stay in the tracker.
- Each custody event is a Provenance (target the bag, or the bags a shipment carried); each
  e-signature of the order is a Provenance whose ``signature`` names signer, time and meaning.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from dataclasses import field
from datetime import date
from datetime import datetime
from datetime import timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from schedules.models import JourneyPlan
from schedules.models import PlanStepRow
from schedules.models import ScheduleResource
from schedules.models import SlotBooking
from tracker.domain import alerting
from tracker.domain.access import may_read_phi
from tracker.domain.custody import ItemKind
from tracker.domain.errors import TrackerError
from tracker.models import CustodyEvent
from tracker.models import Device
from tracker.models import ExcursionItem
from tracker.models import ExcursionRecord
from tracker.models import Item
from tracker.models import PatientIdentity
from tracker.models import Signature
from tracker.models import Site
from tracker.models import TherapyOrder
from tracker.services import alerts
from tracker.services import readings
from tracker.services.principals import Principal
from tracker.services.principals import scope_orders

BAGS = (ItemKind.apheresis_bag.value, ItemKind.final_product_bag.value)
# Bags in these states can no longer be used (R5 productStatus "unavailable").
USED_UP = frozenset({"consumed", "infused", "discarded", "quarantined", "destroyed"})
UCUM = "http://unitsofmeasure.org"
STATUS_SYSTEM = "http://hl7.org/fhir/biologicallyderived-product-status"
CATEGORY_SYSTEM = "http://hl7.org/fhir/product-category"
INTERPRETATION = "http://terminology.hl7.org/CodeSystem/v3-ObservationInterpretation"
OBSERVATION_CATEGORY = "http://terminology.hl7.org/CodeSystem/observation-category"
ASTM_SIGNATURE = "urn:iso-astm:E1762-95:2013"
# Our signature meanings (tracker.domain.signatures) as ASTM E1762 signature types.
SIGNATURE_TYPES = {
    "authorship": ("1.2.840.10065.1.12.1.1", "Author's Signature"),
    "review": ("1.2.840.10065.1.12.1.13", "Review Signature"),
    "approval": ("1.2.840.10065.1.12.1.6", "Validation Signature"),
    "responsibility": ("1.2.840.10065.1.12.1.1", "Author's Signature"),
    "verification": ("1.2.840.10065.1.12.1.5", "Verification Signature"),
    "witness": ("1.2.840.10065.1.12.1.8", "Signature Witness Signature"),
}
# Journey plan and booking states as R5 Appointment and Slot states.
APPOINTMENT_STATUS = {"held": "pending", "booked": "booked"}
SLOT_STATUS = {"held": "busy-tentative", "booked": "busy"}


@dataclass(frozen=True)
class Systems:
    """Identifier and code systems, all under the tracker's public base URL."""

    base: str

    def sid(self, name: str) -> str:
        return f"{self.base.rstrip('/')}/fhir/sid/{name}"

    def cs(self, name: str) -> str:
        return f"{self.base.rstrip('/')}/fhir/CodeSystem/{name}"


@dataclass(frozen=True)
class BagFacts:
    public_id: str
    kind: str
    state: str
    din: str | None
    product_code: str | None
    parent: str | None
    lot: str | None
    container: int
    site: str | None
    registered_at: datetime
    expires: date | datetime | None
    temperature_low_c: float | None
    temperature_high_c: float | None
    on_hold: bool
    exposure: ExposureFacts | None = None


@dataclass(frozen=True)
class ExposureFacts:
    out_of_range_seconds: float
    monitored_seconds: float
    max_c: float | None
    min_c: float | None
    loggers: tuple[str, ...]


@dataclass(frozen=True)
class EventFacts:
    id: int
    seq: int
    event_type: str
    item: str | None
    shipment_items: tuple[str, ...]
    from_state: str | None
    to_state: str | None
    site: str | None
    actor: str | None
    device: str | None
    occurred_at: datetime
    recorded_at: datetime
    reason: str | None
    hash: str


@dataclass(frozen=True)
class SignatureFacts:
    id: int
    printed_name: str
    meaning: str
    signed_at: datetime
    record_hash: str


@dataclass(frozen=True)
class StepFacts:
    plan: str
    plan_status: str
    kind: str
    site: str
    starts_at: datetime
    ends_at: datetime
    booking: str | None
    booking_status: str | None
    resource: str | None
    resource_name: str | None


@dataclass(frozen=True)
class ExcursionFacts:
    id: int
    logger: str
    level: str
    kind: str
    threshold_c: float
    start_at: datetime
    end_at: datetime | None
    duration_seconds: int
    worst_c: float
    worst_at: datetime
    bags: tuple[str, ...]


@dataclass(frozen=True)
class IdentityFacts:
    given_name: str
    family_name: str
    date_of_birth: date
    mrn: str


@dataclass(frozen=True)
class OrderFacts:
    public_id: str
    coi: str
    patient: str
    product_code: str
    product_name: str
    manufacturing_site: str
    collection_site: str
    treatment_site: str
    bags: list[BagFacts] = field(default_factory=list)
    events: list[EventFacts] = field(default_factory=list)
    signatures: list[SignatureFacts] = field(default_factory=list)
    steps: list[StepFacts] = field(default_factory=list)
    excursions: list[ExcursionFacts] = field(default_factory=list)
    identity: IdentityFacts | None = None


# ---------------------------------------------------------------------------------------------
# Reading


def export_order_bundle(
    *, session: Session, principal: Principal, order_public_id: str, now: datetime, base_url: str
) -> dict[str, Any]:
    """The order's products, bookings, temperature findings and custody as a FHIR Bundle."""
    facts = load_order(
        session=session, principal=principal, order_public_id=order_public_id, now=now
    )
    return bundle(facts, Systems(base_url), now=now)


def load_order(
    *, session: Session, principal: Principal, order_public_id: str, now: datetime
) -> OrderFacts:
    """Read one visible order into plain facts (404 when the caller may not see it)."""
    order = session.scalar(
        scope_orders(select(TherapyOrder), principal).where(
            TherapyOrder.public_id == order_public_id
        )
    )
    if order is None:
        raise TrackerError("not_found", f"no order {order_public_id}")
    profile = order.product_profile
    items = {i.id: i for i in order.items}
    bags = [i for i in order.items if i.kind in BAGS]
    registered = dict(
        session.execute(
            select(CustodyEvent.item_id, CustodyEvent.occurred_at).where(
                CustodyEvent.item_id.in_([b.id for b in bags]),
                CustodyEvent.event_type == "registered",
            )
        ).all()
    )
    facts = OrderFacts(
        public_id=order.public_id,
        coi=order.coi,
        patient=order.patient.public_id,
        product_code=profile.product_code,
        product_name=profile.name,
        manufacturing_site=order.manufacturing_site.code,
        collection_site=order.collection_site.code,
        treatment_site=order.treatment_site.code,
    )
    for bag in bags:
        facts.bags.append(_bag_facts(session, bag, profile, registered.get(bag.id), now))
    shipment_items = {s.id: tuple(i.public_id for i in s.items) for s in order.shipments}
    events = list(
        session.scalars(
            select(CustodyEvent).where(CustodyEvent.order_id == order.id).order_by(CustodyEvent.seq)
        )
    )
    devices = dict(
        session.execute(
            select(Device.id, Device.public_id).where(
                Device.id.in_({e.device_id for e in events if e.device_id})
            )
        ).all()
    )
    for e in events:
        facts.events.append(
            EventFacts(
                id=e.id,
                seq=e.seq,
                event_type=e.event_type,
                item=items[e.item_id].public_id if e.item_id in items else None,
                shipment_items=shipment_items.get(e.shipment_id, ()) if e.shipment_id else (),
                from_state=e.from_state,
                to_state=e.to_state,
                site=e.site.code if e.site else None,
                actor=e.actor.full_name if e.actor else None,
                device=devices.get(e.device_id) if e.device_id else None,
                occurred_at=e.occurred_at,
                recorded_at=e.recorded_at,
                reason=e.reason,
                hash=e.hash,
            )
        )
    for s in session.scalars(
        select(Signature)
        .where(Signature.record_type == "therapy_order", Signature.record_id == order.public_id)
        .order_by(Signature.id)
    ):
        facts.signatures.append(
            SignatureFacts(s.id, s.printed_name, s.meaning, s.signed_at, s.record_hash)
        )
    facts.steps.extend(_step_facts(session, order.id))
    facts.excursions.extend(_excursion_facts(session, items))
    if may_read_phi(principal.roles_at(order.treatment_site_id)):
        row = session.get(PatientIdentity, order.patient_id)
        if row is not None:
            facts = _with_identity(facts, row)
    return facts


def _with_identity(facts: OrderFacts, row: PatientIdentity) -> OrderFacts:
    identity = IdentityFacts(row.given_name, row.family_name, row.date_of_birth, row.mrn)
    return OrderFacts(**{**facts.__dict__, "identity": identity})


def _bag_facts(
    session: Session, bag: Item, profile: Any, registered: datetime | None, now: datetime
) -> BagFacts:
    data = profile.data or {}
    material = alerting.material_for(bag.kind, profile.starting_material)
    low = high = None
    if material == "fresh":
        low, high = float(data.get("fresh_min_c", 2.0)), float(data.get("fresh_max_c", 8.0))
    elif data.get("storage_max_c") is not None:
        high = float(data["storage_max_c"])
    start = registered or bag.created_at
    # The same expiry rules the labels print (tracker.services.label_data).
    expires: date | datetime | None = None
    hours = data.get("fresh_stability_hours")
    days = data.get("shelf_life_days")
    if material == "fresh" and isinstance(hours, int | float) and hours > 0:
        expires = start + timedelta(hours=float(hours))
    elif bag.kind == ItemKind.final_product_bag.value and isinstance(days, int) and days > 0:
        expires = (start + timedelta(days=days)).date()
    ledger = readings.exposure_for_item(session, bag, now=now)
    exposure = None
    if ledger.exposure is not None and ledger.loggers:
        exposure = ExposureFacts(
            out_of_range_seconds=ledger.exposure.out_of_range.total_seconds(),
            monitored_seconds=ledger.exposure.monitored.total_seconds(),
            max_c=ledger.exposure.max_c,
            min_c=ledger.exposure.min_c,
            loggers=tuple(ledger.loggers),
        )
    return BagFacts(
        public_id=bag.public_id,
        kind=bag.kind,
        state=bag.state,
        din=bag.din,
        product_code=bag.product_code,
        parent=bag.parent.public_id if bag.parent is not None else None,
        lot=bag.lot,
        container=bag.container,
        site=bag.site.code if bag.site else None,
        registered_at=start,
        expires=expires,
        temperature_low_c=low,
        temperature_high_c=high,
        on_hold=alerts.is_blocked(session, bag) is not None,
        exposure=exposure,
    )


def _step_facts(session: Session, order_id: int) -> list[StepFacts]:
    rows = session.execute(
        select(PlanStepRow, JourneyPlan, Site, SlotBooking, ScheduleResource)
        .join(JourneyPlan, JourneyPlan.id == PlanStepRow.plan_id)
        .join(Site, Site.id == PlanStepRow.site_id)
        .join(SlotBooking, SlotBooking.id == PlanStepRow.booking_id)
        .join(ScheduleResource, ScheduleResource.id == SlotBooking.resource_id)
        .where(JourneyPlan.order_id == order_id, JourneyPlan.status.in_(APPOINTMENT_STATUS))
        .order_by(PlanStepRow.starts_at, PlanStepRow.id)
    ).all()
    return [
        StepFacts(
            plan=plan.public_id,
            plan_status=plan.status,
            kind=step.kind,
            site=site.code,
            starts_at=step.starts_at,
            ends_at=step.ends_at,
            booking=booking.public_id,
            booking_status=booking.status,
            resource=resource.public_id,
            resource_name=resource.name,
        )
        for step, plan, site, booking, resource in rows
    ]


def _excursion_facts(session: Session, items: dict[int, Item]) -> list[ExcursionFacts]:
    exposed: dict[int, list[str]] = {}
    for excursion_id, item_id in session.execute(
        select(ExcursionItem.excursion_id, ExcursionItem.item_id).where(
            ExcursionItem.item_id.in_(list(items))
        )
    ):
        exposed.setdefault(excursion_id, []).append(items[item_id].public_id)
    records = session.scalars(
        select(ExcursionRecord)
        .where(ExcursionRecord.id.in_(list(exposed)))
        .order_by(ExcursionRecord.start_at, ExcursionRecord.id)
    )
    return [
        ExcursionFacts(
            id=r.id,
            logger=r.logger.serial,
            level=r.level,
            kind=r.kind,
            threshold_c=r.threshold_c,
            start_at=r.start_at,
            end_at=r.end_at,
            duration_seconds=r.duration_seconds,
            worst_c=r.worst_c,
            worst_at=r.worst_at,
            bags=tuple(sorted(exposed[r.id])),
        )
        for r in records
    ]


# ---------------------------------------------------------------------------------------------
# Mapping (pure)


def bundle(facts: OrderFacts, systems: Systems, *, now: datetime) -> dict[str, Any]:
    """All resources of one order in a ``collection`` Bundle; references are urn:uuid links."""
    refs = _References(facts.public_id)
    resources: list[dict[str, Any]] = []
    if facts.identity is not None:
        resources.append(patient_resource(facts, systems, refs))
    resources += [product_resource(b, facts, systems, refs) for b in facts.bags]
    resources += [schedule_resource(s, systems, refs) for s in _distinct_resources(facts.steps)]
    for step in facts.steps:
        resources.append(slot_resource(step, systems, refs))
        resources.append(appointment_resource(step, facts, systems, refs))
    resources += [excursion_observation(e, systems, refs) for e in facts.excursions]
    resources += [
        exposure_observation(b, systems, refs) for b in facts.bags if b.exposure is not None
    ]
    resources += [provenance_resource(e, systems, refs) for e in facts.events]
    resources += [signature_provenance(s, facts, systems, refs) for s in facts.signatures]
    return {
        "resourceType": "Bundle",
        "id": f"order-{facts.public_id}",
        "identifier": {"system": systems.sid("order"), "value": facts.public_id},
        "type": "collection",
        "timestamp": _instant(now),
        "entry": [{"fullUrl": refs.url_of(r), "resource": r} for r in resources],
    }


class _References:
    """Stable urn:uuid full URLs per resource, so a re-export links the same way."""

    def __init__(self, order: str) -> None:
        self._namespace = uuid.uuid5(uuid.NAMESPACE_URL, f"coi-tracker:order:{order}")

    def url(self, resource_type: str, resource_id: str) -> str:
        return f"urn:uuid:{uuid.uuid5(self._namespace, f'{resource_type}/{resource_id}')}"

    def url_of(self, resource: dict[str, Any]) -> str:
        return self.url(resource["resourceType"], resource["id"])

    def ref(self, resource_type: str, resource_id: str) -> dict[str, str]:
        return {"reference": self.url(resource_type, resource_id)}


def _patient_ref(facts: OrderFacts, systems: Systems, refs: _References) -> dict[str, Any]:
    if facts.identity is not None:
        return refs.ref("Patient", _fhir_id(facts.patient))
    # The pseudonym only: no identity data leaves without the right to read it.
    return {
        "identifier": {"system": systems.sid("patient-pseudonym"), "value": facts.patient},
        "display": f"Patient {facts.patient}",
    }


def patient_resource(facts: OrderFacts, systems: Systems, refs: _References) -> dict[str, Any]:
    """The patient's identity; only built when the caller may read it."""
    identity = facts.identity
    assert identity is not None
    return {
        "resourceType": "Patient",
        "id": _fhir_id(facts.patient),
        "identifier": [
            {"system": systems.sid("patient-pseudonym"), "value": facts.patient},
            {
                "use": "usual",
                "system": systems.sid(f"mrn/{facts.treatment_site}"),
                "value": identity.mrn,
            },
        ],
        "name": [{"family": identity.family_name, "given": [identity.given_name]}],
        "birthDate": identity.date_of_birth.isoformat(),
    }


def product_resource(
    bag: BagFacts, facts: OrderFacts, systems: Systems, refs: _References
) -> dict[str, Any]:
    """A bag as a BiologicallyDerivedProduct: DIN, COI, parent, product code, status, expiry."""
    identifiers = [{"system": systems.sid("bag"), "value": bag.public_id}]
    resource: dict[str, Any] = {
        "resourceType": "BiologicallyDerivedProduct",
        "id": _fhir_id(bag.public_id),
        "productCategory": {"system": CATEGORY_SYSTEM, "code": "cells", "display": "Cells"},
        "identifier": identifiers,
        "productStatus": {
            "system": STATUS_SYSTEM,
            "code": "unavailable" if bag.on_hold or bag.state in USED_UP else "available",
        },
        "request": [
            {
                "identifier": {"system": systems.sid("order"), "value": facts.public_id},
                "display": f"Therapy order {facts.public_id}",
            }
        ],
        "collection": {"source": _patient_ref(facts, systems, refs)},
        "property": [
            {
                "type": {"coding": [{"system": systems.cs("bag-property"), "code": "state"}]},
                "valueCodeableConcept": {
                    "coding": [{"system": systems.cs("custody-state"), "code": bag.state}]
                },
            },
            {
                "type": {"coding": [{"system": systems.cs("bag-property"), "code": "container"}]},
                "valueInteger": bag.container,
            },
        ],
    }
    if bag.din:
        din = {"system": systems.sid("isbt128-din"), "value": bag.din}
        identifiers.append(din)
        resource["biologicalSourceEvent"] = din
    identifiers.append({"system": systems.sid("coi"), "value": facts.coi})
    code = bag.product_code or facts.product_code
    resource["productCode"] = {
        "coding": [{"system": systems.cs("isbt128-product-code"), "code": code}],
        "text": facts.product_name,
    }
    if bag.parent:
        resource["parent"] = [refs.ref("BiologicallyDerivedProduct", _fhir_id(bag.parent))]
    if bag.kind == ItemKind.apheresis_bag.value:
        resource["collection"]["collectedDateTime"] = _instant(bag.registered_at)
    else:
        resource["processingFacility"] = [
            {
                "identifier": {"system": systems.sid("site"), "value": facts.manufacturing_site},
            }
        ]
    if bag.lot:
        resource["division"] = bag.lot
    if isinstance(bag.expires, datetime):
        resource["expirationDate"] = _instant(bag.expires)
    elif isinstance(bag.expires, date):
        resource["expirationDate"] = bag.expires.isoformat()
    if bag.temperature_high_c is not None or bag.temperature_low_c is not None:
        span: dict[str, Any] = {}
        if bag.temperature_low_c is not None:
            span["low"] = _celsius(bag.temperature_low_c)
        if bag.temperature_high_c is not None:
            span["high"] = _celsius(bag.temperature_high_c)
        resource["storageTempRequirements"] = span
    return resource


def _distinct_resources(steps: list[StepFacts]) -> list[StepFacts]:
    seen: dict[str, StepFacts] = {}
    for step in steps:
        if step.resource is not None:
            seen.setdefault(step.resource, step)
    return list(seen.values())


def schedule_resource(step: StepFacts, systems: Systems, refs: _References) -> dict[str, Any]:
    """The bookable resource (chair, line, bed) a slot belongs to."""
    assert step.resource is not None
    return {
        "resourceType": "Schedule",
        "id": _fhir_id(step.resource),
        "identifier": [{"system": systems.sid("schedule-resource"), "value": step.resource}],
        "active": True,
        "name": step.resource_name,
        "actor": [
            {
                "identifier": {"system": systems.sid("site"), "value": step.site},
                "display": f"{step.resource_name} at {step.site}",
            }
        ],
    }


def slot_resource(step: StepFacts, systems: Systems, refs: _References) -> dict[str, Any]:
    """The capacity a booked or held plan step occupies."""
    assert step.booking is not None and step.resource is not None
    return {
        "resourceType": "Slot",
        "id": _fhir_id(f"slot-{step.booking}"),
        "identifier": [{"system": systems.sid("booking"), "value": step.booking}],
        "schedule": refs.ref("Schedule", _fhir_id(step.resource)),
        "status": SLOT_STATUS.get(step.booking_status or "", "busy"),
        "start": _instant(step.starts_at),
        "end": _instant(step.ends_at),
    }


def appointment_resource(
    step: StepFacts, facts: OrderFacts, systems: Systems, refs: _References
) -> dict[str, Any]:
    """A plan step (collection, manufacturing, infusion) as an Appointment in its slot."""
    assert step.booking is not None
    return {
        "resourceType": "Appointment",
        "id": _fhir_id(f"appt-{step.booking}"),
        "identifier": [
            {"system": systems.sid("booking"), "value": step.booking},
            {"system": systems.sid("plan"), "value": step.plan},
        ],
        "status": APPOINTMENT_STATUS.get(step.plan_status, "proposed"),
        "serviceType": [
            {"concept": {"coding": [{"system": systems.cs("journey-step"), "code": step.kind}]}}
        ],
        "description": f"{step.kind} for order {facts.public_id}",
        "start": _instant(step.starts_at),
        "end": _instant(step.ends_at),
        "slot": [refs.ref("Slot", _fhir_id(f"slot-{step.booking}"))],
        "subject": _patient_ref(facts, systems, refs),
        "participant": [
            {"actor": _patient_ref(facts, systems, refs), "status": "accepted"},
            {
                "actor": {
                    "identifier": {"system": systems.sid("site"), "value": step.site},
                    "display": step.resource_name or step.site,
                },
                "status": "accepted",
            },
        ],
    }


def excursion_observation(
    excursion: ExcursionFacts, systems: Systems, refs: _References
) -> dict[str, Any]:
    """A temperature excursion as an Observation focused on the bags it exposed."""
    high = excursion.kind == "hot"
    resource: dict[str, Any] = {
        "resourceType": "Observation",
        "id": _fhir_id(f"excursion-{excursion.id}"),
        "identifier": [{"system": systems.sid("excursion"), "value": str(excursion.id)}],
        "status": "final" if excursion.end_at is not None else "preliminary",
        "category": [_category("laboratory")],
        "code": {
            "coding": [
                {
                    "system": systems.cs("observation"),
                    "code": f"temperature-excursion-{excursion.level}",
                }
            ],
            "text": f"Temperature excursion ({excursion.level})",
        },
        "focus": [refs.ref("BiologicallyDerivedProduct", _fhir_id(b)) for b in excursion.bags],
        "effectivePeriod": {"start": _instant(excursion.start_at)}
        | ({"end": _instant(excursion.end_at)} if excursion.end_at is not None else {}),
        "device": {
            "identifier": {"system": systems.sid("logger"), "value": excursion.logger},
            "display": f"Logger {excursion.logger}",
        },
        "valueQuantity": _celsius(excursion.worst_c),
        "interpretation": [{"coding": [{"system": INTERPRETATION, "code": "H" if high else "L"}]}],
        "referenceRange": [
            {"high": _celsius(excursion.threshold_c)}
            if high
            else {"low": _celsius(excursion.threshold_c)}
        ],
        "component": [
            {
                "code": {"coding": [{"system": systems.cs("observation"), "code": "duration"}]},
                "valueQuantity": {
                    "value": excursion.duration_seconds,
                    "unit": "s",
                    "system": UCUM,
                    "code": "s",
                },
            },
            {
                "code": {"coding": [{"system": systems.cs("observation"), "code": "worst-at"}]},
                "valueDateTime": _instant(excursion.worst_at),
            },
        ],
    }
    return resource


def exposure_observation(bag: BagFacts, systems: Systems, refs: _References) -> dict[str, Any]:
    """A bag's temperature ledger over its loggers' readings: extremes and time out of range."""
    exposure = bag.exposure
    assert exposure is not None
    components: list[dict[str, Any]] = [
        {
            "code": {"coding": [{"system": systems.cs("observation"), "code": "out-of-range"}]},
            "valueQuantity": _seconds(exposure.out_of_range_seconds),
        },
        {
            "code": {"coding": [{"system": systems.cs("observation"), "code": "monitored"}]},
            "valueQuantity": _seconds(exposure.monitored_seconds),
        },
    ]
    for code, value in (("max", exposure.max_c), ("min", exposure.min_c)):
        if value is not None:
            components.append(
                {
                    "code": {"coding": [{"system": systems.cs("observation"), "code": code}]},
                    "valueQuantity": _celsius(value),
                }
            )
    return {
        "resourceType": "Observation",
        "id": _fhir_id(f"exposure-{bag.public_id}"),
        "status": "preliminary",
        "category": [_category("laboratory")],
        "code": {
            "coding": [{"system": systems.cs("observation"), "code": "temperature-exposure"}],
            "text": "Temperature exposure while in custody",
        },
        "focus": [refs.ref("BiologicallyDerivedProduct", _fhir_id(bag.public_id))],
        "effectiveDateTime": _instant(bag.registered_at),
        "interpretation": [
            {
                "coding": [
                    {
                        "system": INTERPRETATION,
                        "code": "A" if exposure.out_of_range_seconds > 0 else "N",
                    }
                ]
            }
        ],
        "note": [{"text": "Loggers: " + ", ".join(exposure.loggers)}],
        "component": components,
    }


def provenance_resource(event: EventFacts, systems: Systems, refs: _References) -> dict[str, Any]:
    """A custody event: what it touched, when it happened and was recorded, who did it."""
    targets = [event.item] if event.item else list(event.shipment_items)
    agent_who: dict[str, Any]
    if event.actor is not None:
        agent_who = {"display": event.actor}
    elif event.device is not None:
        agent_who = {"identifier": {"system": systems.sid("device"), "value": event.device}}
    else:
        agent_who = {"display": "tracker"}
    resource: dict[str, Any] = {
        "resourceType": "Provenance",
        "id": _fhir_id(f"custody-{event.id}"),
        "target": [refs.ref("BiologicallyDerivedProduct", _fhir_id(t)) for t in targets]
        or [{"display": f"custody event {event.seq}"}],
        "occurredDateTime": _instant(event.occurred_at),
        "recorded": _instant(event.recorded_at),
        "activity": {
            "coding": [{"system": systems.cs("custody-event"), "code": event.event_type}],
            "text": _activity_text(event),
        },
        "agent": [{"who": agent_who}],
        "entity": [
            {
                "role": "source",
                "what": {
                    "identifier": {"system": systems.sid("custody-hash"), "value": event.hash}
                },
            }
        ],
    }
    if event.site is not None:
        resource["location"] = {
            "identifier": {"system": systems.sid("site"), "value": event.site},
            "display": event.site,
        }
    if event.reason:
        resource["why"] = event.reason
    return resource


def signature_provenance(
    sig: SignatureFacts, facts: OrderFacts, systems: Systems, refs: _References
) -> dict[str, Any]:
    """An e-signature of the order record: signer, time and meaning (21 CFR 11.50)."""
    code, display = SIGNATURE_TYPES.get(sig.meaning, SIGNATURE_TYPES["authorship"])
    targets = [refs.ref("BiologicallyDerivedProduct", _fhir_id(b.public_id)) for b in facts.bags]
    return {
        "resourceType": "Provenance",
        "id": _fhir_id(f"signature-{sig.id}"),
        "target": targets
        or [{"identifier": {"system": systems.sid("order"), "value": facts.public_id}}],
        "recorded": _instant(sig.signed_at),
        "activity": {
            "coding": [{"system": systems.cs("signature-meaning"), "code": sig.meaning}],
        },
        "agent": [{"who": {"display": sig.printed_name}}],
        "entity": [
            {
                "role": "source",
                "what": {
                    "identifier": {"system": systems.sid("record-hash"), "value": sig.record_hash}
                },
            }
        ],
        "signature": [
            {
                "type": [{"system": ASTM_SIGNATURE, "code": code, "display": display}],
                "when": _instant(sig.signed_at),
                "who": {"display": sig.printed_name},
            }
        ],
    }


def _activity_text(event: EventFacts) -> str:
    if event.from_state or event.to_state:
        return f"{event.event_type}: {event.from_state or '-'} -> {event.to_state or '-'}"
    return event.event_type


def _category(code: str) -> dict[str, Any]:
    return {"coding": [{"system": OBSERVATION_CATEGORY, "code": code}]}


def _celsius(value: float) -> dict[str, Any]:
    return {"value": value, "unit": "°C", "system": UCUM, "code": "Cel"}


def _seconds(value: float) -> dict[str, Any]:
    return {"value": value, "unit": "s", "system": UCUM, "code": "s"}


def _instant(value: datetime) -> str:
    """FHIR instant/dateTime text: aware UTC, seconds precision at least."""
    return value.isoformat().replace("+00:00", "Z")


def _fhir_id(value: str) -> str:
    """A FHIR logical id ([A-Za-z0-9.-]{1,64}) from one of our public ids."""
    cleaned = "".join(c if c.isalnum() or c in ".-" else "-" for c in value)
    return cleaned[:64]
