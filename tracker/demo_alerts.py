"""Demo data for alerts: ladders, a shipment logger whose readings hold an excursion, and a
storage logger in the treatment centre's LN2 freezer. Played through the same services.

Also the demo's pace (``Pace``): when its people perform each journey step, so the deadlines
the custody services derive are met the way a well-run programme meets them, and the
dashboard shows a realistic picture: a few open alerts and one or two overdue bags, not
weeks-old breaches on every journey.
"""

from __future__ import annotations

import math
import random
from collections.abc import Sequence
from datetime import datetime
from datetime import timedelta

from sqlalchemy import func
from sqlalchemy import select
from sqlalchemy.orm import Session

from tracker.domain.alerting import LadderRole
from tracker.domain.alerting import material_for
from tracker.domain.journey import Journey
from tracker.domain.loggers import Reading
from tracker.models import CustodyEvent
from tracker.models import HandoffDeadline
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
        # In range with a daily swing, and one 40-minute warm excursion a third of the way
        # into the trip (it ended well before now: QA may decide on it).
        warm_from = start + (now - start) / 3
        warm_to = warm_from + timedelta(minutes=40)
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


# --- pace ----------------------------------------------------------------------------------

# Waits while nothing of the order is on a clock (hours), and what a step's own scans,
# answers and signatures may take (tracker.demo spends 40 s a scan).
UNTIMED_PAUSE = (timedelta(hours=2), timedelta(hours=12))
STEP_ALLOWANCE = timedelta(minutes=10)
# From the start of manufacturing to labelling the product (tracker.demo jumps this far).
MANUFACTURING = timedelta(days=9)
# A running deadline is met with room to spare: the next step starts within this share of
# the time left (a cryopreserved bag's 3-minute ambient budget leaves 30-70 s).
DEADLINE_SHARE = (0.15, 0.4)
MIN_PAUSE = timedelta(seconds=20)


class Pace:
    """When the demo's people perform each step of one journey.

    Before each step the order's open deadlines are read (the custody services derive them:
    ambient exposure, fresh stability, cryoshipper hold, thaw to infusion), and the step
    follows well within the nearest one, so each is met by the real custody event that
    ends it. While nothing is on a clock the wait is hours, stretched so the journey's last
    step lands shortly before ``finish_at``: a journey in progress is live today, not
    stuck weeks ago with its deadlines long overdue. The stretch keeps enough time for the
    steps still to come at their longest, so every event stays before ``finish_at``.
    """

    def __init__(self, steps: Sequence[str], finish_at: datetime, rng: random.Random) -> None:
        self.remaining = list(steps)
        self.finish_at = finish_at
        self.rng = rng

    @classmethod
    def for_journey(
        cls, journey: Journey, depth: str, finish_at: datetime, rng: random.Random
    ) -> Pace:
        """The pace of a journey played step by step (exception paths skipped) to ``depth``."""
        codes = [s.code for s in journey.steps if not s.exception]
        return cls(codes[: codes.index(depth) + 1], finish_at, rng)

    def _reserve(self, later: Sequence[str]) -> timedelta:
        """The longest the steps after this one can take."""
        longest = (UNTIMED_PAUSE[1] + STEP_ALLOWANCE) * len(later)
        return longest + (MANUFACTURING if "label_product" in later else timedelta(0))

    def pause(self, session: Session, *, order_id: int, step: str, at: datetime) -> timedelta:
        """How long after ``at`` the people perform ``step`` (the next of the journey)."""
        if step in self.remaining:
            later = self.remaining[self.remaining.index(step) + 1 :]
            self.remaining = later
        else:  # a step this pace was not told about: no stretching
            later = list(self.remaining)
        low, high = UNTIMED_PAUSE
        drawn = low + (high - low) * self.rng.random()
        stretched = self.finish_at - at - STEP_ALLOWANCE - self._reserve(later)
        pause = max(drawn, stretched)
        due = session.scalar(
            select(func.min(HandoffDeadline.due_at)).where(
                HandoffDeadline.order_id == order_id, HandoffDeadline.status == "open"
            )
        )
        if due is not None:
            share = self.rng.uniform(*DEADLINE_SHARE)
            pause = min(pause, max(MIN_PAUSE, (due - at) * share))
        return pause
