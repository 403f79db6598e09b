"""One order at every interesting point, for tests that walk the whole API (schemathesis, FHIR).

The seed is played through the same services the API uses: bags with DINs and a parent link,
a shipment on the road with a logger that recorded an excursion (so an alert and an exposure
exist), a booked journey plan with capacity behind it, a printer, a label print and an
e-signature on the order.
"""

from __future__ import annotations

from dataclasses import dataclass
from dataclasses import field
from datetime import timedelta
from typing import Any

from sqlalchemy import select

from schedules import service as schedules_service
from tests.alert_helpers import ingest
from tests.alert_helpers import on_the_road
from tests.alert_helpers import series
from tests.conftest import World
from tests.factories import make_bag
from tests.factories import make_order
from tests.factories_schedules import build_capacity
from tracker.domain.custody import ItemKind
from tracker.models import Alert
from tracker.models import CustodyEvent
from tracker.services import auth
from tracker.services import printers

# Path segments whose following parameter names a seeded record.
SOURCES = (
    "orders",
    "items",
    "shipments",
    "events",
    "alerts",
    "printers",
    "plans",
    "resources",
    "sites",
    "product-profiles",
)


@dataclass
class Seeded:
    """Public ids of the seeded records, by the path segment that names them in the API."""

    ids: dict[str, list[Any]] = field(default_factory=dict)
    order: Any = None
    planned_order: Any = None
    apheresis: Any = None
    final: Any = None
    shipment: Any = None
    plan_id: str = ""
    alert_id: int = 0


def seed_api_world(new_uow: Any, world: World, settings: Any, now: Any) -> Seeded:
    """Seed one order through collection, shipment, excursion, manufacture and signature."""
    p = world.principals
    resources = build_capacity(new_uow, world, now)
    trip = on_the_road(new_uow, world, now, shipper=True)
    ingest(new_uow, trip, series(trip.packed_at, [9.0] * 8 + [5.0]), now)
    final = make_bag(
        new_uow,
        world,
        trip.order,
        now,
        kind=ItemKind.final_product_bag,
        who="operator",
        parent_public_id=trip.bag.public_id,
        lot="LOT-0001",
        site_code="MF1",
    )
    planned = make_order(new_uow, world, now, mrn="MRN-PLAN")
    with new_uow() as uow:
        plan = schedules_service.book_plan(
            uow=uow,
            principal=p["coord"],
            order_public_id=planned.public_id,
            earliest_collection=now,
            tentative=False,
            now=now,
        )
        printer = printers.create_printer(
            uow=uow,
            principal=p["admin"],
            site_code="CC1",
            name="Collection printer",
            host="127.0.0.1",
            port=9,
            now=now,
        )
        auth.sign_record(
            uow=uow,
            hasher=auth.make_hasher(settings),
            settings=settings,
            user_id=world.users["coord"].id,
            password=world.password,
            meaning="review",
            record_type="therapy_order",
            record_id=trip.order.public_id,
            content={"coi": trip.order.coi},
            now=now + timedelta(minutes=1),
        )
        uow.commit()
        alert_ids = list(uow.session.scalars(select(Alert.id).order_by(Alert.id)))
        event_ids = list(uow.session.scalars(select(CustodyEvent.id).order_by(CustodyEvent.id)))
        plan_id = plan.public_id
        printer_id = printer.public_id
    return Seeded(
        ids={
            "orders": [trip.order.public_id, planned.public_id],
            "items": [trip.bag.public_id, final.public_id],
            "shipments": [trip.shipment.public_id],
            "events": event_ids,
            "alerts": alert_ids,
            "printers": [printer_id],
            "plans": [plan_id],
            "resources": list(resources.values()),
            "sites": ["CC1", "MF1", "TC1"],
            "product-profiles": ["CD19-FRESH"],
        },
        order=trip.order,
        planned_order=planned,
        apheresis=trip.bag,
        final=final,
        shipment=trip.shipment,
        plan_id=plan_id,
        alert_id=alert_ids[0] if alert_ids else 0,
    )
