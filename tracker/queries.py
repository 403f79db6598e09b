"""Read-only views for pages and the API: plain dicts, scoped to the principal in SQL."""

from __future__ import annotations

from typing import Any

from sqlalchemy import func
from sqlalchemy import select
from sqlalchemy.orm import Session

from tracker.domain import identifiers
from tracker.domain.access import may_read_phi
from tracker.domain.errors import TrackerError
from tracker.models import CustodyEvent
from tracker.models import Item
from tracker.models import PatientIdentity
from tracker.models import Site
from tracker.models import TherapyOrder
from tracker.services.custody import chain_report
from tracker.services.custody import order_chain_key
from tracker.services.principals import Principal
from tracker.services.principals import scope_orders

# Journey stage from the furthest state any of the order's bags has reached.
_STAGE_ORDER = [
    ("ordered", set()),
    ("collection", {"registered", "labelled", "collected"}),
    ("shipping to manufacturing", {"packed", "in_transit"}),
    ("manufacturing", {"received", "in_manufacturing", "consumed"}),
    ("release and return", {"released"}),
    ("at treatment site", {"stored"}),
    ("infusion", {"thawed", "infusing"}),
    ("infused", {"infused"}),
]


def journey_stage(items: list[dict[str, Any]]) -> str:
    """A coordinator's label for where the journey stands."""
    products = [i for i in items if i["kind"] == "final_product_bag"]
    if products:
        states = {i["state"] for i in products}
        if "infused" in states:
            return "infused"
        if states & {"thawed", "infusing"}:
            return "infusion"
        if states & {"in_transit", "packed"}:
            return "shipping to treatment site"
        if "received" in states or any(
            i["state"] == "stored" and i["site_kind"] == "treatment_centre" for i in products
        ):
            return "at treatment site"
        return "release and return"
    bags = [i for i in items if i["kind"] == "apheresis_bag"]
    if not bags:
        return "ordered"
    states = {i["state"] for i in bags}
    if states & {"received", "in_manufacturing", "consumed"}:
        return "manufacturing"
    if states & {"packed", "in_transit"}:
        return "shipping to manufacturing"
    if states & {"quarantined"}:
        return "quarantined"
    return "collection"


def coi_display(coi: str) -> dict[str, str]:
    grouped, check = identifiers.coi_eye_readable(coi)
    return {"value": coi, "eye_readable": grouped, "check": check}


def _item_dict(item: Item, site: Site | None) -> dict[str, Any]:
    out: dict[str, Any] = {
        "public_id": item.public_id,
        "kind": item.kind,
        "state": item.state,
        "site": site.code if site else None,
        "site_name": site.name if site else None,
        "site_kind": site.kind if site else None,
        "container": item.container,
        "lot": item.lot,
        "parent": item.parent.public_id if item.parent_id and item.parent else None,
        "din": None,
        "din_eye_readable": None,
        "din_check": None,
    }
    if item.din:
        grouped, check = identifiers.format_din_eye_readable(item.din)
        out.update(din=item.din, din_eye_readable=grouped, din_check=check)
    return out


def list_orders(
    session: Session, principal: Principal, *, limit: int = 500
) -> list[dict[str, Any]]:
    """Orders visible to the principal, newest first, with stage and item counts."""
    stmt = scope_orders(select(TherapyOrder), principal).order_by(TherapyOrder.id.desc())
    orders = list(session.scalars(stmt.limit(limit)))
    last_event = {
        order_id: at
        for order_id, at in session.execute(
            select(CustodyEvent.order_id, func.max(CustodyEvent.occurred_at))
            .where(CustodyEvent.order_id.in_([o.id for o in orders]))
            .group_by(CustodyEvent.order_id)
        )
    }
    result = []
    for order in orders:
        items = [_item_dict(i, i.site) for i in order.items]
        result.append(
            {
                "public_id": order.public_id,
                "coi": coi_display(order.coi),
                "patient": order.patient.public_id,
                "product": order.product_profile.name,
                "product_code": order.product_profile.code,
                "treatment_site": order.treatment_site.name,
                "manufacturing_site": order.manufacturing_site.name,
                "status": order.status,
                "stage": journey_stage(items),
                "bags": sum(1 for i in items if i["kind"] != "cryoshipper"),
                "created_at": order.created_at,
                "last_event_at": last_event.get(order.id),
            }
        )
    return result


def order_detail(session: Session, principal: Principal, public_id: str) -> dict[str, Any]:
    """One order with identifiers, linked items both ways, shipments and custody timeline."""
    order = session.scalar(
        scope_orders(select(TherapyOrder), principal).where(TherapyOrder.public_id == public_id)
    )
    if order is None:
        raise TrackerError("not_found", f"no order {public_id}")
    items = [_item_dict(i, i.site) for i in order.items]
    identity = None
    if may_read_phi(principal.roles_at(order.treatment_site_id)):
        row = session.get(PatientIdentity, order.patient_id)
        if row is not None:
            identity = {
                "given_name": row.given_name,
                "family_name": row.family_name,
                "date_of_birth": row.date_of_birth.isoformat(),
                "mrn": row.mrn,
            }
    shipments = [
        {
            "public_id": s.public_id,
            "state": s.state,
            "origin": s.origin_site.name,
            "destination": s.destination_site.name,
            "shipper": s.shipper.serial if s.shipper else None,
            "tamper_seal": s.tamper_seal,
            "air_waybill": s.air_waybill,
            "logger_serial": s.logger_serial,
            "items": [i.public_id for i in s.items],
            "planned_pickup_at": s.planned_pickup_at,
            "planned_delivery_at": s.planned_delivery_at,
        }
        for s in order.shipments
    ]
    item_ids = {i.id: i.public_id for i in order.items}
    ship_ids = {s.id: s.public_id for s in order.shipments}
    events = session.scalars(
        select(CustodyEvent).where(CustodyEvent.order_id == order.id).order_by(CustodyEvent.seq)
    )
    timeline = [
        {
            "id": e.id,
            "seq": e.seq,
            "type": e.event_type,
            "item": item_ids.get(e.item_id) if e.item_id else None,
            "shipment": ship_ids.get(e.shipment_id) if e.shipment_id else None,
            "from_state": e.from_state,
            "to_state": e.to_state,
            "site": e.site.name if e.site else None,
            "site_timezone": e.site.timezone if e.site else "UTC",
            "actor": e.actor.full_name if e.actor else ("device" if e.device_id else None),
            "occurred_at": e.occurred_at,
            "recorded_at": e.recorded_at,
            "reason": e.reason,
            "corrects": e.corrects_event_id,
            "details": e.details,
            "hash": e.hash,
        }
        for e in events
    ]
    report = chain_report(session, order_chain_key(order))
    return {
        "public_id": order.public_id,
        "coi": coi_display(order.coi),
        "status": order.status,
        "patient": {
            "public_id": order.patient.public_id,
            "wristband_code": order.patient.wristband_code,
            "identity": identity,
        },
        "product": {
            "code": order.product_profile.code,
            "version": order.product_profile.version,
            "name": order.product_profile.name,
            "starting_material": order.product_profile.starting_material,
        },
        "sites": {
            "treatment": order.treatment_site.name,
            "collection": order.collection_site.name,
            "manufacturing": order.manufacturing_site.name,
        },
        "stage": journey_stage(items),
        "items": items,
        "shipments": shipments,
        "timeline": timeline,
        "chain": {
            "intact": not report.breaks,
            # The order's own chain (asset chains are verified on their own): its length
            # and head are what the certificate bundle's manifest names too.
            "events": report.events,
            "head_hash": report.head_hash,
            "breaks": [{"seq": b.seq, "problem": b.problem} for b in report.breaks],
        },
        "created_at": order.created_at,
    }
