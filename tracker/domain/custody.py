"""The custody state machine: enumerated states, allowed transitions, one checking function.

No other code assigns an item's state; services call :func:`transition` and persist the
returned :class:`Transition` as an append-only custody event.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from tracker.domain.errors import TrackerError


class ItemKind(StrEnum):
    apheresis_bag = "apheresis_bag"
    final_product_bag = "final_product_bag"
    cryoshipper = "cryoshipper"
    shipment = "shipment"


class CustodyState(StrEnum):
    # bags
    registered = "registered"
    labelled = "labelled"
    collected = "collected"
    packed = "packed"
    in_transit = "in_transit"
    received = "received"
    stored = "stored"
    in_manufacturing = "in_manufacturing"
    consumed = "consumed"
    released = "released"
    thawed = "thawed"
    infusing = "infusing"
    infused = "infused"
    # exceptions
    quarantined = "quarantined"
    discarded = "discarded"
    returned_to_manufacturer = "returned_to_manufacturer"
    # cryoshippers (returnable assets)
    available = "available"
    charged = "charged"
    assigned = "assigned"
    returned = "returned"
    recharge_due = "recharge_due"
    out_of_service = "out_of_service"
    # shipments
    planned = "planned"
    picked_up = "picked_up"
    delivered = "delivered"
    cancelled = "cancelled"


S = CustodyState

_EXCEPTIONS = frozenset({S.quarantined, S.discarded})

# Each kind's map: state -> states it may move to. Exceptions (quarantine, discard) are
# reachable from every non-terminal bag state; quarantine is left only with a written reason.
ALLOWED: dict[ItemKind, dict[CustodyState, frozenset[CustodyState]]] = {
    ItemKind.apheresis_bag: {
        S.registered: frozenset({S.labelled}) | _EXCEPTIONS,
        S.labelled: frozenset({S.collected}) | _EXCEPTIONS,
        S.collected: frozenset({S.packed, S.stored}) | _EXCEPTIONS,
        S.stored: frozenset({S.packed, S.in_manufacturing}) | _EXCEPTIONS,
        S.packed: frozenset({S.in_transit, S.stored}) | _EXCEPTIONS,
        S.in_transit: frozenset({S.received}) | _EXCEPTIONS,
        S.received: frozenset({S.stored, S.in_manufacturing}) | _EXCEPTIONS,
        S.in_manufacturing: frozenset({S.consumed}) | _EXCEPTIONS,
        S.quarantined: frozenset({S.stored, S.discarded, S.returned_to_manufacturer}),
        S.consumed: frozenset(),
        S.discarded: frozenset(),
        S.returned_to_manufacturer: frozenset(),
    },
    ItemKind.final_product_bag: {
        S.registered: frozenset({S.labelled}) | _EXCEPTIONS,
        S.labelled: frozenset({S.stored}) | _EXCEPTIONS,
        S.stored: frozenset({S.released, S.packed, S.thawed}) | _EXCEPTIONS,
        S.released: frozenset({S.packed, S.stored}) | _EXCEPTIONS,
        S.packed: frozenset({S.in_transit, S.stored}) | _EXCEPTIONS,
        S.in_transit: frozenset({S.received}) | _EXCEPTIONS,
        S.received: frozenset({S.stored}) | _EXCEPTIONS,
        S.thawed: frozenset({S.infusing}) | _EXCEPTIONS,
        S.infusing: frozenset({S.infused}) | _EXCEPTIONS,
        S.quarantined: frozenset({S.stored, S.discarded, S.returned_to_manufacturer}),
        S.infused: frozenset(),
        S.discarded: frozenset(),
        S.returned_to_manufacturer: frozenset(),
    },
    ItemKind.cryoshipper: {
        S.available: frozenset({S.charged, S.out_of_service}),
        S.charged: frozenset({S.assigned, S.recharge_due, S.out_of_service}),
        S.assigned: frozenset({S.in_transit, S.charged, S.recharge_due}),
        S.in_transit: frozenset({S.delivered}),
        S.delivered: frozenset({S.returned, S.in_transit}),
        S.returned: frozenset({S.recharge_due, S.out_of_service}),
        S.recharge_due: frozenset({S.charged, S.out_of_service}),
        S.out_of_service: frozenset({S.available}),
    },
    ItemKind.shipment: {
        S.planned: frozenset({S.packed, S.cancelled}),
        S.packed: frozenset({S.picked_up, S.cancelled}),
        S.picked_up: frozenset({S.delivered}),
        S.delivered: frozenset({S.received}),
        S.received: frozenset(),
        S.cancelled: frozenset(),
    },
}

INITIAL_STATE: dict[ItemKind, CustodyState] = {
    ItemKind.apheresis_bag: S.registered,
    ItemKind.final_product_bag: S.registered,
    ItemKind.cryoshipper: S.available,
    ItemKind.shipment: S.planned,
}

# Leaving quarantine, or entering an exception path, needs a written reason.
REASON_REQUIRED_FROM = frozenset({S.quarantined})
REASON_REQUIRED_TO = frozenset(
    {S.quarantined, S.discarded, S.returned_to_manufacturer, S.cancelled}
)


@dataclass(frozen=True, slots=True)
class Transition:
    kind: ItemKind
    from_state: CustodyState
    to_state: CustodyState
    reason: str | None


def states_for(kind: ItemKind) -> frozenset[CustodyState]:
    """Every state an item of ``kind`` can be in."""
    return frozenset(ALLOWED[kind])


def all_states() -> frozenset[CustodyState]:
    """Every state of every kind (for the database CHECK constraint)."""
    return frozenset(s for kind in ItemKind for s in ALLOWED[kind])


def can_transition(kind: ItemKind, current: CustodyState, target: CustodyState) -> bool:
    """True when the map allows ``current -> target`` for this kind."""
    return target in ALLOWED[kind].get(current, frozenset())


def transition(
    kind: ItemKind, current: CustodyState, target: CustodyState, *, reason: str | None = None
) -> Transition:
    """Check a state change and return it, or raise a coded TrackerError."""
    if current not in ALLOWED[kind]:
        raise TrackerError("invalid_transition", f"{kind} cannot be in state {current}")
    if not can_transition(kind, current, target):
        allowed = ", ".join(sorted(ALLOWED[kind][current])) or "none (final state)"
        raise TrackerError(
            "invalid_transition",
            f"{kind} in state '{current}' cannot move to '{target}'; allowed: {allowed}",
        )
    cleaned = reason.strip() if reason else ""
    if (target in REASON_REQUIRED_TO or current in REASON_REQUIRED_FROM) and not cleaned:
        raise TrackerError("reason_required", f"moving to '{target}' needs a written reason")
    return Transition(kind, current, target, cleaned or None)
