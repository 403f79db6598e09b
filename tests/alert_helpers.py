"""Builders for alert scenarios: a fresh apheresis bag on the road with a logger in its shipper."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from datetime import timedelta
from typing import Any

from sqlalchemy import select

from tests.conftest import World
from tests.factories import make_bag
from tests.factories import make_label_print
from tests.factories import make_order
from tracker.domain.custody import CustodyState as S
from tracker.domain.loggers import Reading
from tracker.models import TemperatureLogger
from tracker.models import User
from tracker.services import auth
from tracker.services import custody
from tracker.services import readings

COURIER_PHONE = "+15550001111"
BACKUP_PHONE = "+15550002222"
MANAGER_PHONE = "+15550003333"


@dataclass
class Trip:
    order: Any
    bag: Any
    shipment: Any
    logger_id: int
    logger_serial: str
    token: str
    packed_at: datetime


def give_phone(new_uow: Any, world: World, username: str, phone: str) -> None:
    with new_uow() as uow:
        user = uow.session.get(User, world.users[username].id)
        user.phone = phone
        uow.commit()


def on_the_road(
    new_uow: Any,
    world: World,
    now: datetime,
    *,
    serial: str = "LOG-T1",
    interval: timedelta = timedelta(minutes=5),
    shipper: bool = False,
    planned_pickup_at: datetime | None = None,
    planned_delivery_at: datetime | None = None,
    mrn: str = "MRN-1",
) -> Trip:
    """A collected fresh bag packed into a shipment picked up by the courier, logger inside."""
    give_phone(new_uow, world, "courier", COURIER_PHONE)
    order = make_order(new_uow, world, now - timedelta(hours=3), mrn=mrn)
    bag = make_bag(new_uow, world, order, now - timedelta(hours=3))
    make_label_print(new_uow, world, bag, now - timedelta(hours=3))
    p = world.principals
    with new_uow() as uow:
        for to in (S.labelled, S.collected):
            custody.change_item_state(
                uow=uow,
                principal=p["nurse"],
                item_public_id=bag.public_id,
                to_state=to,
                now=now - timedelta(hours=2),
            )
        shipper_id = None
        if shipper:
            box = custody.register_shipper(
                uow=uow,
                principal=p["admin"],
                serial=f"EVO-IS-{serial}-0042",
                site_code="CC1",
                validated_hold_hours=48,
                now=now - timedelta(hours=30),
            )
            custody.change_item_state(
                uow=uow,
                principal=p["admin"],
                item_public_id=box.public_id,
                to_state=S.charged,
                now=now - timedelta(hours=30),
            )
            shipper_id = box.public_id
        shipment = custody.create_shipment(
            uow=uow,
            principal=p["nurse"],
            order_public_id=order.public_id,
            origin_code="CC1",
            destination_code="MF1",
            item_public_ids=[bag.public_id],
            shipper_public_id=shipper_id,
            courier_user_id=world.users["courier"].id,
            tamper_seal="SEAL-00098765",
            logger_serial=serial,
            planned_pickup_at=planned_pickup_at,
            planned_delivery_at=planned_delivery_at,
            now=now - timedelta(hours=2),
        )
        packed_at = now - timedelta(hours=2)
        custody.change_item_state(
            uow=uow,
            principal=p["nurse"],
            item_public_id=bag.public_id,
            to_state=S.packed,
            now=packed_at,
        )
        for to in (S.packed, S.picked_up):
            custody.change_shipment_state(
                uow=uow,
                principal=p["nurse"],
                shipment_public_id=shipment.public_id,
                to_state=to,
                now=packed_at,
            )
        issued = auth.register_device(
            uow=uow,
            name=f"Logger {serial}",
            kind="logger",
            site_id=world.sites["CC1"].id,
            now=now,
            actor_user_id=world.users["admin"].id,
        )
        logger = readings.register_logger(
            uow=uow,
            principal=p["admin"],
            serial=serial,
            site_code="CC1",
            placement="shipment",
            profile="fresh",
            expected_interval=interval,
            device_public_id=issued.device.public_id,
            now=now,
        )
        uow.commit()
        return Trip(order, bag, shipment, logger.id, serial, issued.token, packed_at)


def series(start: datetime, values: list[float], step: timedelta = timedelta(minutes=5)) -> list:
    return [Reading(start + i * step, v) for i, v in enumerate(values)]


def ingest(new_uow: Any, trip: Trip, values: list[Reading], now: datetime) -> Any:
    with new_uow() as uow:
        result = readings.ingest_readings(
            uow=uow, logger_id=trip.logger_id, readings=values, now=now
        )
        uow.commit()
        return result


def logger_row(new_uow: Any, trip: Trip) -> TemperatureLogger:
    with new_uow() as uow:
        row = uow.session.scalar(
            select(TemperatureLogger).where(TemperatureLogger.id == trip.logger_id)
        )
        uow.session.expunge(row)  # keep its loaded values after the unit of work rolls back
        return row
