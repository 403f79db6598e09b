"""Demo data for alerts: ladders, a shipment logger whose readings hold an excursion, and a
storage logger in the treatment centre's LN2 freezer. Played through the same services."""

from __future__ import annotations

import math
import random
from datetime import datetime
from datetime import timedelta

from sqlalchemy import select

from tracker.domain.alerting import LadderRole
from tracker.domain.alerting import material_for
from tracker.domain.loggers import Reading
from tracker.models import CustodyEvent
from tracker.models import Shipment
from tracker.models import Site
from tracker.models import TemperatureLogger
from tracker.models import User
from tracker.services import alerts
from tracker.services import auth
from tracker.services import readings
from tracker.services.principals import Principal
from tracker.unit_of_work import UnitOfWork

ON_CALL_PHONE = "+15550100999"
SHIPMENT_LOGGER = "LOG-0005"  # used when the shipment on the road has no scanned logger
STORAGE_LOGGER = "LN2-TC-BOS-1"


def seed(*, uow: UnitOfWork, admin: Principal, users: dict[str, User], now: datetime) -> None:
    """Ladders for every demo site, then two loggers with a day or more of readings."""
    session = uow.session
    rng = random.Random(5)
    users["admin"].phone = ON_CALL_PHONE  # the demo's on-call manager
    for site in session.scalars(select(Site)):
        alerts.set_ladder(
            uow=uow,
            site_id=site.id,
            steps=[
                (LadderRole.courier, None, "sms", 10),
                (LadderRole.coordinator, users["coordinator"].id, "in_app", 15),
                (LadderRole.on_call_manager, users["admin"].id, "sms", 15),
            ],
            now=now,
        )
    # The first demo shipment on the road (journey 5's apheresis leg, see tracker.demo); its
    # logger serial is the code scanned into the shipper when it was packed.
    shipment = session.scalar(
        select(Shipment).where(Shipment.state == "picked_up").order_by(Shipment.id).limit(1)
    )
    if shipment is not None:
        serial = shipment.logger_serial or SHIPMENT_LOGGER
        picked_up = session.scalar(
            select(CustodyEvent.occurred_at).where(
                CustodyEvent.shipment_id == shipment.id, CustodyEvent.to_state == "picked_up"
            )
        )
        profile = shipment.order.product_profile
        fresh = any(
            material_for(item.kind, profile.starting_material) == "fresh" for item in shipment.items
        )
        kind = "fresh" if fresh else "cryogenic"
        logger = _logger(uow, admin, serial, "CC-PRO", "shipment", kind, 10, now)
        start = picked_up or now - timedelta(days=1)
        # In range with a daily swing, and one 40-minute warm excursion six hours ago.
        warm_from, warm_to = now - timedelta(hours=6), now - timedelta(hours=5, minutes=20)
        base, swing, warm = (5.0, 1.2, 9.4) if fresh else (-186.0, 2.0, -126.0)
        values = []
        at = start
        while at <= now:
            c = base + swing * math.sin(at.timestamp() / 86400 * 2 * math.pi)
            c += rng.uniform(-0.3, 0.3)
            if warm_from <= at < warm_to:
                c = warm + rng.uniform(0, 1.8)
            values.append(Reading(at, round(c, 1)))
            at += timedelta(minutes=10)
        readings.ingest_readings(uow=uow, logger_id=logger.id, readings=values, now=now)
    storage = _logger(uow, admin, STORAGE_LOGGER, "TC-BOS", "storage", "cryogenic", 15, now)
    day = [
        Reading(now - timedelta(minutes=15 * n), round(-186.0 + rng.uniform(-1.5, 1.5), 1))
        for n in range(96, -1, -1)
    ]
    readings.ingest_readings(uow=uow, logger_id=storage.id, readings=day, now=now)


def _logger(
    uow: UnitOfWork,
    admin: Principal,
    serial: str,
    site_code: str,
    placement: str,
    profile: str,
    minutes: int,
    now: datetime,
) -> TemperatureLogger:
    site = uow.session.scalar(select(Site).where(Site.code == site_code))
    assert site is not None
    device = auth.register_device(
        uow=uow,
        name=f"Logger {serial}",
        kind="logger",
        site_id=site.id,
        now=now,
        actor_user_id=admin.user_id,
    )
    return readings.register_logger(
        uow=uow,
        principal=admin,
        serial=serial,
        site_code=site_code,
        placement=placement,
        profile=profile,
        expected_interval=timedelta(minutes=minutes),
        device_public_id=device.device.public_id,
        limit_c=-150.0 if profile == "cryogenic" else None,
        now=now,
    )
