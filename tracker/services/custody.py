"""Custody use cases: register items, change state, link shipments, correct events, verify.

Every state change goes through :func:`tracker.domain.custody.transition` and is written as an
append-only, hash-chained custody event in the same transaction. The chain's anchor row (the
order, or the reusable asset) is locked first so sequence numbers and hash links never race.
"""

from __future__ import annotations

import secrets
from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement
from sqlalchemy import bindparam
from sqlalchemy import select
from sqlalchemy.orm import Session
from sqlalchemy.orm import joinedload
from sqlalchemy.orm import lazyload

from tracker.clock import require_aware
from tracker.domain import chain
from tracker.domain.access import CUSTODY_ROLES
from tracker.domain.access import ORDER_ROLES
from tracker.domain.custody import INITIAL_STATE
from tracker.domain.custody import CustodyState
from tracker.domain.custody import ItemKind
from tracker.domain.custody import transition
from tracker.domain.errors import TrackerError
from tracker.models import CustodyEvent
from tracker.models import Item
from tracker.models import Shipment
from tracker.models import Site
from tracker.models import TherapyOrder
from tracker.services import alerts
from tracker.services import deadlines
from tracker.services import quality
from tracker.services.audit import record_audit
from tracker.services.counters import next_value
from tracker.services.labels import require_label_printed
from tracker.services.principals import Principal
from tracker.services.principals import scope_orders
from tracker.services.rows import insert_attached
from tracker.unit_of_work import UnitOfWork


def new_public_id(prefix: str) -> str:
    """An opaque, random reference (no patient data, no sequence to guess)."""
    return f"{prefix}-{secrets.token_hex(5).upper()}"


def order_chain_key(order: TherapyOrder) -> str:
    return f"coi:{order.coi}"


def asset_chain_key(item: Item) -> str:
    return f"asset:{item.public_id}"


def event_fields(event: CustodyEvent) -> dict[str, Any]:
    """The fields covered by an event's hash; used both to write and to verify."""
    return {
        "chain_key": event.chain_key,
        "seq": event.seq,
        "order_id": event.order_id,
        "item_id": event.item_id,
        "shipment_id": event.shipment_id,
        "event_type": event.event_type,
        "from_state": event.from_state,
        "to_state": event.to_state,
        "site_id": event.site_id,
        "actor_user_id": event.actor_user_id,
        "device_id": event.device_id,
        "occurred_at": event.occurred_at,
        "recorded_at": event.recorded_at,
        "details": event.details or {},
        "corrects_event_id": event.corrects_event_id,
        "reason": event.reason,
    }


_Q_CHAIN_HEAD = (
    select(CustodyEvent.seq, CustodyEvent.hash)
    .where(CustodyEvent.chain_key == bindparam("key"))
    .order_by(CustodyEvent.seq.desc())
    .limit(1)
)


def _append_event(
    session: Session, event: CustodyEvent, head: CustodyEvent | None = None
) -> CustodyEvent:
    """Give ``event`` its place in the chain. The caller holds the chain anchor's row lock.

    ``head`` is the event the caller itself appended last to this chain, under the same
    lock; with it the chain's head need not be read back.
    """
    if head is not None and head.chain_key == event.chain_key:
        last: Any = head
    else:
        last = session.execute(_Q_CHAIN_HEAD, {"key": event.chain_key}).first()
    event.seq = last.seq + 1 if last else 1
    event.prev_hash = last.hash if last else chain.GENESIS
    event.details = event.details or {}
    event.hash = chain.event_hash(event.prev_hash, event_fields(event))
    return insert_attached(session, event)


def _lock_order_where(
    session: Session,
    principal: Principal,
    condition: ColumnElement[bool],
    name: str,
    *,
    with_profile: bool = False,
) -> TherapyOrder:
    # Visibility is the same SQL scope the read views use, so the two can never disagree.
    # The lock query loads the order row alone (``with_profile``: and its product profile,
    # which a custody change's deadlines read); other relationships load if and when used.
    options = [lazyload("*")]
    if with_profile:
        options.append(joinedload(TherapyOrder.product_profile, innerjoin=True))
    order = session.scalar(
        scope_orders(select(TherapyOrder), principal)
        .options(*options)
        .where(condition)
        # NO KEY UPDATE serialises custody writers of one order without blocking inserts
        # elsewhere that only reference it (their foreign key checks take KEY SHARE).
        .with_for_update(of=TherapyOrder, key_share=True)
    )
    if order is None:
        raise TrackerError("not_found", f"no order {name}")
    return order


def lock_order(session: Session, public_id: str, principal: Principal) -> TherapyOrder:
    """Load an order visible to the principal, holding its row lock for this transaction."""
    return _lock_order_where(session, principal, TherapyOrder.public_id == public_id, public_id)


def _site_by_code(session: Session, code: str) -> Site:
    site = session.scalar(select(Site).where(Site.code == code))
    if site is None:
        raise TrackerError("not_found", f"no site {code}")
    return site


def _when(now: datetime, occurred_at: datetime | None) -> tuple[datetime, datetime]:
    now = require_aware(now)
    return (require_aware(occurred_at) if occurred_at else now), now


def allocate_din(session: Session, fin: str, year2: int) -> str:
    """Next 13-character DIN for a facility and year (sequence per FIN per year)."""
    from tracker.domain.identifiers import make_din

    seq = next_value(session, f"din:{fin}:{year2:02d}")
    if seq > 999_999:
        raise TrackerError("conflict", f"DIN sequence exhausted for {fin} in {year2:02d}")
    return make_din(fin, year2, seq).din


def register_bag(
    *,
    uow: UnitOfWork,
    principal: Principal,
    order_public_id: str,
    kind: ItemKind,
    now: datetime,
    din: str | None = None,
    din_fin: str = "W9999",
    container: int = 1,
    parent_public_id: str | None = None,
    lot: str | None = None,
    site_code: str | None = None,
    occurred_at: datetime | None = None,
) -> Item:
    """Register an apheresis or final product bag under an order, with a DIN."""
    if kind not in (ItemKind.apheresis_bag, ItemKind.final_product_bag):
        raise TrackerError("invalid_request", "only bags are registered this way")
    occurred, recorded = _when(now, occurred_at)
    session = uow.session
    order = lock_order(session, order_public_id, principal)
    site = (
        _site_by_code(session, site_code)
        if site_code
        else (order.collection_site if kind == ItemKind.apheresis_bag else order.manufacturing_site)
    )
    principal.require_role_at(CUSTODY_ROLES | ORDER_ROLES, site.id, "register bags")
    parent = None
    if kind == ItemKind.final_product_bag:
        if parent_public_id is None:
            raise TrackerError("invalid_request", "a final product bag names its apheresis bag")
        parent = session.scalar(select(Item).where(Item.public_id == parent_public_id))
        if parent is None or parent.kind != ItemKind.apheresis_bag:
            raise TrackerError("not_found", f"no apheresis bag {parent_public_id}")
        if parent.order_id != order.id:
            # A product made from another patient's cells: the hard stop of this system.
            raise TrackerError("coi_mismatch", "that apheresis bag belongs to another order")
    if din is None:
        din = allocate_din(session, din_fin, occurred.year % 100)
    elif session.scalar(select(Item.id).where(Item.din == din, Item.container == container)):
        raise TrackerError("duplicate_identifier", f"DIN {din} container {container} exists")
    item = Item(
        public_id=new_public_id("BAG"),
        kind=kind.value,
        state=INITIAL_STATE[kind].value,
        order_id=order.id,
        site_id=site.id,
        parent_id=parent.id if parent else None,
        din=din,
        container=container,
        product_code=order.product_profile.product_code,
        lot=lot,
        created_at=recorded,
    )
    session.add(item)
    session.flush()
    _append_event(
        session,
        CustodyEvent(
            chain_key=order_chain_key(order),
            order_id=order.id,
            item_id=item.id,
            event_type="registered",
            to_state=item.state,
            site_id=site.id,
            actor_user_id=principal.user_id,
            device_id=principal.device_id,
            occurred_at=occurred,
            recorded_at=recorded,
            details={"kind": kind.value, "din": din, "container": container},
        ),
    )
    record_audit(
        session,
        now=recorded,
        actor_user_id=principal.user_id,
        action="create",
        entity_type="item",
        entity_id=item.public_id,
        changes={"kind": [None, kind.value], "din": [None, din], "order": [None, order.public_id]},
        site_id=site.id,
    )
    return item


def register_shipper(
    *,
    uow: UnitOfWork,
    principal: Principal,
    serial: str,
    site_code: str,
    validated_hold_hours: int,
    now: datetime,
) -> Item:
    """Register a reusable cryoshipper (its own asset chain, not tied to any patient)."""
    recorded = require_aware(now)
    session = uow.session
    site = _site_by_code(session, site_code)
    principal.require_role_at(CUSTODY_ROLES | ORDER_ROLES, site.id, "register shippers")
    if session.scalar(select(Item.id).where(Item.serial == serial)):
        raise TrackerError("duplicate_identifier", f"shipper {serial} is already registered")
    shipper = Item(
        public_id=new_public_id("SHP"),
        kind=ItemKind.cryoshipper.value,
        state=INITIAL_STATE[ItemKind.cryoshipper].value,
        site_id=site.id,
        serial=serial,
        validated_hold_hours=validated_hold_hours,
        created_at=recorded,
    )
    session.add(shipper)
    session.flush()
    _append_event(
        session,
        CustodyEvent(
            chain_key=asset_chain_key(shipper),
            item_id=shipper.id,
            event_type="registered",
            to_state=shipper.state,
            site_id=site.id,
            actor_user_id=principal.user_id,
            occurred_at=recorded,
            recorded_at=recorded,
            details={"serial": serial, "validated_hold_hours": validated_hold_hours},
        ),
    )
    record_audit(
        session,
        now=recorded,
        actor_user_id=principal.user_id,
        action="create",
        entity_type="item",
        entity_id=shipper.public_id,
        changes={"serial": [None, serial]},
        site_id=site.id,
    )
    return shipper


def _lock_item(session: Session, public_id: str) -> Item:
    item = session.scalar(
        select(Item)
        .where(Item.public_id == public_id)
        .with_for_update(of=Item, key_share=True)
        # Read under the lock: a copy loaded earlier in this transaction may be stale.
        .execution_options(populate_existing=True)
    )
    if item is None:
        raise TrackerError("not_found", f"no item {public_id}")
    return item


def change_item_state(
    *,
    uow: UnitOfWork,
    principal: Principal,
    item_public_id: str,
    to_state: CustodyState,
    now: datetime,
    reason: str | None = None,
    occurred_at: datetime | None = None,
    site_code: str | None = None,
    details: dict[str, Any] | None = None,
) -> CustodyEvent:
    """Move an item through the custody state machine and record the event."""
    occurred, recorded = _when(now, occurred_at)
    session = uow.session
    # Lock order: chain anchor first, then the item, always in this order (no deadlocks).
    probe = session.execute(
        select(Item.id, Item.order_id).where(Item.public_id == item_public_id)
    ).first()
    if probe is None:
        raise TrackerError("not_found", f"no item {item_public_id}")
    order = None
    if probe.order_id is not None:
        order = _lock_order_where(
            session,
            principal,
            TherapyOrder.id == probe.order_id,
            f"of item {item_public_id}",
            with_profile=True,
        )
    item = _lock_item(session, item_public_id)
    site = _site_by_code(session, site_code) if site_code else item.site
    if site is None:
        raise TrackerError("invalid_request", "name the site where this happens")
    if order is None and not principal.can_see_site(site.id):
        raise TrackerError("not_found", f"no item {item_public_id}")
    return _move_item(
        session, principal, order, item, site.id, to_state, reason, occurred, recorded, details
    )


def change_items_state(
    *,
    uow: UnitOfWork,
    principal: Principal,
    order_id: int,
    item_ids: list[int],
    to_state: CustodyState,
    now: datetime,
    site_id: int,
    reason: str | None = None,
    occurred_at: datetime | None = None,
    details: dict[str, Any] | None = None,
) -> list[CustodyEvent]:
    """Move several items of one order to the same state, in the order given (a step that
    moves every bag it scanned): each item gets exactly the checks and records
    :func:`change_item_state` gives it (the same code does both), with the order and the
    items locked once and the chain's head read once. All or nothing: the first refusal
    raises and the caller's transaction (or savepoint) undoes the rest.

    ``site_id`` is where it happens: the caller's device's site, a row it already read (so no
    lookup by code here; the role check at that site is made per item as always)."""
    occurred, recorded = _when(now, occurred_at)
    session = uow.session
    order = _lock_order_where(
        session, principal, TherapyOrder.id == order_id, str(order_id), with_profile=True
    )
    locked = {
        item.id: item
        for item in session.scalars(
            select(Item)
            .where(Item.id.in_(item_ids))
            .order_by(Item.id)
            .with_for_update(of=Item, key_share=True)
            # The items' current sites are not needed (each moves to ``site_id``): no join.
            .options(lazyload(Item.site))
            .execution_options(populate_existing=True)
        )
    }
    events: list[CustodyEvent] = []
    for item_id in item_ids:
        item = locked.get(item_id)
        if item is None or item.order_id != order.id:
            raise TrackerError("not_found", f"no item {item_id} on this order")
        events.append(
            _move_item(
                session,
                principal,
                order,
                item,
                site_id,
                to_state,
                reason,
                occurred,
                recorded,
                details,
                head=events[-1] if events else None,
            )
        )
    return events


def _move_item(
    session: Session,
    principal: Principal,
    order: TherapyOrder | None,
    item: Item,
    site_id: int,
    to_state: CustodyState,
    reason: str | None,
    occurred: datetime,
    recorded: datetime,
    details: dict[str, Any] | None,
    head: CustodyEvent | None = None,
) -> CustodyEvent:
    """One item's state change, its anchor and row locked by the caller: every check, the
    hash-chained event, the audit row and the deadlines it starts or ends."""
    principal.require_role_at(CUSTODY_ROLES, site_id, "record custody changes")
    step = transition(ItemKind(item.kind), CustodyState(item.state), to_state, reason=reason)
    if step.to_state is CustodyState.labelled:
        require_label_printed(session, item)  # "label applied" needs a successful print
    # QA gate: an undecided excursion, or a quarantine/discard decision, holds the bag.
    alerts.require_custody_step_allowed(session, item, step.to_state)
    # Quality gates: only accepted material enters manufacturing; only a releasable lot's
    # product is released.
    if step.to_state is CustodyState.in_manufacturing:
        quality.require_material_accepted(session, item)
    elif step.to_state is CustodyState.released:
        quality.require_release_allowed(session, item)
    old_state = item.state
    item.state = step.to_state.value  # the one place an item's state is written
    item.site_id = site_id
    if item.kind == ItemKind.cryoshipper and step.to_state == CustodyState.charged:
        item.charged_at = occurred  # starts the hold-time clock
    event = _append_event(
        session,
        CustodyEvent(
            chain_key=order_chain_key(order) if order else asset_chain_key(item),
            order_id=order.id if order else None,
            item_id=item.id,
            event_type="transition",
            from_state=step.from_state.value,
            to_state=step.to_state.value,
            site_id=site_id,
            actor_user_id=principal.user_id,
            device_id=principal.device_id,
            occurred_at=occurred,
            recorded_at=recorded,
            details=dict(details or {}),
            reason=step.reason,
        ),
        head=head,
    )
    record_audit(
        session,
        now=recorded,
        actor_user_id=principal.user_id,
        action="custody_transition",
        entity_type="item",
        entity_id=item.public_id,
        changes={"state": [old_state, item.state]},
        reason=step.reason,
        site_id=site_id,
    )
    deadlines.after_item_event(session, item=item, event=event, now=recorded)
    quality.after_item_event(session, item=item, to_state=step.to_state, now=recorded)
    return event


def create_shipment(
    *,
    uow: UnitOfWork,
    principal: Principal,
    order_public_id: str,
    origin_code: str,
    destination_code: str,
    item_public_ids: list[str],
    now: datetime,
    shipper_public_id: str | None = None,
    courier_user_id: int | None = None,
    tamper_seal: str | None = None,
    air_waybill: str | None = None,
    logger_serial: str | None = None,
    planned_pickup_at: datetime | None = None,
    planned_delivery_at: datetime | None = None,
) -> Shipment:
    """Plan a shipment leg for one order's bags; every bag must share the order's COI."""
    recorded = require_aware(now)
    session = uow.session
    order = lock_order(session, order_public_id, principal)
    origin = _site_by_code(session, origin_code)
    destination = _site_by_code(session, destination_code)
    principal.require_role_at(CUSTODY_ROLES | ORDER_ROLES, origin.id, "plan shipments")
    if not item_public_ids:
        raise TrackerError("invalid_request", "a shipment carries at least one bag")
    items = list(session.scalars(select(Item).where(Item.public_id.in_(item_public_ids))))
    if len(items) != len(set(item_public_ids)):
        raise TrackerError("not_found", "one or more bags are unknown")
    for item in items:
        if item.order_id != order.id:
            raise TrackerError(
                "coi_mismatch", f"bag {item.public_id} belongs to another chain of identity"
            )
    shipper = None
    if shipper_public_id:
        shipper = session.scalar(select(Item).where(Item.public_id == shipper_public_id))
        if shipper is None or shipper.kind != ItemKind.cryoshipper:
            raise TrackerError("not_found", f"no cryoshipper {shipper_public_id}")
    shipment = Shipment(
        public_id=new_public_id("SHIP"),
        order_id=order.id,
        shipper_id=shipper.id if shipper else None,
        courier_user_id=courier_user_id,
        origin_site_id=origin.id,
        destination_site_id=destination.id,
        state=INITIAL_STATE[ItemKind.shipment].value,
        tamper_seal=tamper_seal,
        air_waybill=air_waybill,
        logger_serial=logger_serial,
        planned_pickup_at=require_aware(planned_pickup_at) if planned_pickup_at else None,
        planned_delivery_at=require_aware(planned_delivery_at) if planned_delivery_at else None,
        created_at=recorded,
    )
    shipment.items = items
    session.add(shipment)
    session.flush()
    _append_event(
        session,
        CustodyEvent(
            chain_key=order_chain_key(order),
            order_id=order.id,
            shipment_id=shipment.id,
            event_type="linked",
            to_state=shipment.state,
            site_id=origin.id,
            actor_user_id=principal.user_id,
            occurred_at=recorded,
            recorded_at=recorded,
            details={
                "items": sorted(i.public_id for i in items),
                "shipper": shipper.public_id if shipper else None,
                "destination": destination.code,
            },
        ),
    )
    record_audit(
        session,
        now=recorded,
        actor_user_id=principal.user_id,
        action="create",
        entity_type="shipment",
        entity_id=shipment.public_id,
        changes={"items": [None, sorted(i.public_id for i in items)]},
        site_id=origin.id,
    )
    deadlines.derive_shipment_deadlines(session, shipment=shipment, now=recorded)
    return shipment


def change_shipment_state(
    *,
    uow: UnitOfWork,
    principal: Principal,
    shipment_public_id: str,
    to_state: CustodyState,
    now: datetime,
    reason: str | None = None,
    occurred_at: datetime | None = None,
    site_code: str | None = None,
) -> CustodyEvent:
    """Move a shipment through its states (planned, packed, picked up, delivered, received).

    The event happens at the origin (or, for delivery and receipt, the destination) unless
    ``site_code`` names where it was recorded, e.g. the courier depot of a pickup scan.
    """
    occurred, recorded = _when(now, occurred_at)
    session = uow.session
    probe = session.scalar(select(Shipment).where(Shipment.public_id == shipment_public_id))
    if probe is None:
        raise TrackerError("not_found", f"no shipment {shipment_public_id}")
    order = lock_order(session, probe.order.public_id, principal)
    shipment = session.scalar(
        select(Shipment).where(Shipment.id == probe.id).with_for_update(of=Shipment)
    )
    assert shipment is not None
    site_id = (
        _site_by_code(session, site_code).id
        if site_code
        else shipment.destination_site_id
        if to_state in (CustodyState.delivered, CustodyState.received)
        else shipment.origin_site_id
    )
    principal.require_role_at(CUSTODY_ROLES, site_id, "record shipment custody")
    step = transition(ItemKind.shipment, CustodyState(shipment.state), to_state, reason=reason)
    old = shipment.state
    shipment.state = step.to_state.value  # the one place a shipment's state is written
    event = _append_event(
        session,
        CustodyEvent(
            chain_key=order_chain_key(order),
            order_id=order.id,
            shipment_id=shipment.id,
            event_type="transition",
            from_state=step.from_state.value,
            to_state=step.to_state.value,
            site_id=site_id,
            actor_user_id=principal.user_id,
            device_id=principal.device_id,
            occurred_at=occurred,
            recorded_at=recorded,
            reason=step.reason,
        ),
    )
    record_audit(
        session,
        now=recorded,
        actor_user_id=principal.user_id,
        action="custody_transition",
        entity_type="shipment",
        entity_id=shipment.public_id,
        changes={"state": [old, shipment.state]},
        reason=step.reason,
        site_id=site_id,
    )
    deadlines.after_shipment_event(session, shipment=shipment, event=event, now=recorded)
    return event


def correct_event(
    *,
    uow: UnitOfWork,
    principal: Principal,
    event_id: int,
    reason: str,
    correction: dict[str, Any],
    now: datetime,
) -> CustodyEvent:
    """Record a correction as a new event pointing at the one it corrects; nothing is edited."""
    recorded = require_aware(now)
    if not reason or not reason.strip():
        raise TrackerError("reason_required", "a correction needs a reason")
    session = uow.session
    target = session.get(CustodyEvent, event_id)
    if target is None or target.event_type == "correction":
        raise TrackerError("correction_target_invalid")
    if target.order_id is not None:
        order_public_id = session.scalar(
            select(TherapyOrder.public_id).where(TherapyOrder.id == target.order_id)
        )
        lock_order(session, str(order_public_id), principal)
    elif target.item_id is not None:
        shipper = session.get(Item, target.item_id)
        assert shipper is not None
        _lock_item(session, shipper.public_id)
    if target.site_id is not None:
        principal.require_role_at(CUSTODY_ROLES | ORDER_ROLES, target.site_id, "correct records")
    event = _append_event(
        session,
        CustodyEvent(
            chain_key=target.chain_key,
            order_id=target.order_id,
            item_id=target.item_id,
            shipment_id=target.shipment_id,
            event_type="correction",
            site_id=target.site_id,
            actor_user_id=principal.user_id,
            occurred_at=recorded,
            recorded_at=recorded,
            details={"corrected_fields": correction},
            corrects_event_id=target.id,
            reason=reason.strip(),
        ),
    )
    record_audit(
        session,
        now=recorded,
        actor_user_id=principal.user_id,
        action="correct",
        entity_type="custody_event",
        entity_id=str(target.id),
        changes={k: [target.details.get(k), v] for k, v in correction.items()},
        reason=reason.strip(),
    )
    return event


def record_note(
    session: Session,
    *,
    order_id: int | None,
    item_id: int | None,
    shipment_id: int | None,
    site_id: int | None,
    actor_user_id: int | None,
    occurred_at: datetime,
    now: datetime,
    details: dict[str, Any],
) -> CustodyEvent | None:
    """Append evidence that changes no state (an SMS acknowledgement, a completed
    verification) to the order's chain, or to a reusable asset's own chain; None when the
    subject belongs to no chain. The caller has checked who may do this."""
    occurred, recorded = _when(now, occurred_at)
    if order_id is not None:
        order = session.scalar(
            select(TherapyOrder).where(TherapyOrder.id == order_id).with_for_update(of=TherapyOrder)
        )
        assert order is not None
        key = order_chain_key(order)
    elif item_id is not None:
        asset = session.get(Item, item_id)
        if asset is None or asset.order_id is not None:
            return None
        asset = _lock_item(session, asset.public_id)
        key = asset_chain_key(asset)
    else:
        return None
    return _append_event(
        session,
        CustodyEvent(
            chain_key=key,
            order_id=order_id,
            item_id=item_id,
            shipment_id=shipment_id,
            event_type="note",
            site_id=site_id,
            actor_user_id=actor_user_id,
            occurred_at=occurred,
            recorded_at=recorded,
            details=details,
        ),
    )


def verify_chain_for(session: Session, chain_key: str) -> list[chain.ChainBreak]:
    """Recompute one chain (an order's or an asset's) and return its breaks."""
    return chain_report(session, chain_key).breaks


@dataclass(frozen=True)
class ChainReport:
    """One chain recomputed: its breaks, its length and the hash of its last event."""

    breaks: list[chain.ChainBreak]
    events: int
    head_hash: str  # GENESIS for an empty chain; a client pins this value


def chain_report(session: Session, chain_key: str) -> ChainReport:
    """Recompute one chain and report its head, so a caller can pin what it verified."""
    stmt = select(CustodyEvent).where(CustodyEvent.chain_key == chain_key)
    rows = list(session.scalars(stmt.order_by(CustodyEvent.seq)))
    chained = [chain.ChainedEvent(r.seq, r.prev_hash, r.hash, event_fields(r)) for r in rows]
    return ChainReport(
        breaks=chain.verify(chained),
        events=len(rows),
        head_hash=rows[-1].hash if rows else chain.GENESIS,
    )


def verify_chains(
    session: Session, *, chain_key: str | None = None
) -> dict[str, list[chain.ChainBreak]]:
    """Recompute every chain; return the breaks found per chain key (empty lists if intact)."""
    by_chain: dict[str, list[chain.ChainedEvent]] = defaultdict(list)
    stmt = select(CustodyEvent).order_by(CustodyEvent.chain_key, CustodyEvent.seq)
    if chain_key is not None:
        stmt = stmt.where(CustodyEvent.chain_key == chain_key)
    for row in session.scalars(stmt):
        by_chain[row.chain_key].append(
            chain.ChainedEvent(row.seq, row.prev_hash, row.hash, event_fields(row))
        )
    return {key: chain.verify(events) for key, events in by_chain.items()}
