"""Demo capacity, plans and a waitlist for the demo sites (called by tracker.demo.seed_demo).

Played through the same services as the API: the calendars, holds, deadlines, audit rows and
notifications it leaves are real. BCMA manufacturing is deliberately scarce (one Wednesday slot
a week) so the waitlist means something.
"""

from __future__ import annotations

from datetime import date
from datetime import datetime
from datetime import time
from datetime import timedelta

from sqlalchemy import select

from schedules import service
from schedules.service import HoursSpec
from schedules.slots import ResourceKind
from tracker.models import TherapyOrder
from tracker.services.principals import Principal
from tracker.unit_of_work import UnitOfWork

MON_FRI = range(5)

CAPACITY = [
    # site, kind, name, product, slot minutes, weekdays, opens, closes, capacity
    ("CC-PRO", ResourceKind.apheresis_chair, "Apheresis chairs", None, 240, MON_FRI, 8, 16, 2),
    ("MF-NLD", ResourceKind.manufacturing_slot, "CD19 line", "CD19-FRESH", None, MON_FRI, 9, 10, 1),
    ("MF-NLD", ResourceKind.manufacturing_slot, "BCMA line", "BCMA-CRYO", None, [2], 9, 10, 1),
    ("TC-BOS", ResourceKind.infusion_bed, "Infusion beds", None, None, range(6), 0, 0, 2),
]  # fmt: skip

HOLIDAYS = [
    ("CC-PRO", date(2026, 11, 26), date(2026, 11, 26), "Thanksgiving"),
    ("CC-PRO", date(2026, 12, 25), date(2026, 12, 25), "Christmas Day"),
    ("CC-PRO", date(2027, 1, 1), date(2027, 1, 1), "New Year's Day"),
    ("MF-NLD", date(2026, 12, 25), date(2026, 12, 26), "Christmas"),
    ("MF-NLD", date(2027, 4, 27), date(2027, 4, 27), "King's Day"),
]


def seed_schedules(*, uow: UnitOfWork, principals: dict[str, Principal], now: datetime) -> None:
    """Define capacity, book two demo journeys and put two orders on the MF-NLD waitlist."""
    admin, coordinator = principals["admin"], principals["coordinator"]
    for site, kind, name, product, minutes, days, opens, closes, capacity in CAPACITY:
        resource = service.define_resource(
            uow=uow,
            principal=admin,
            site_code=site,
            kind=kind,
            name=name,
            product_code=product,
            slot_minutes=minutes,
            now=now,
        )
        service.set_weekly_hours(
            uow=uow,
            principal=admin,
            resource_public_id=resource.public_id,
            hours=[HoursSpec(d, time(opens), time(closes), capacity) for d in days],
            reason="demo capacity",
            now=now,
        )
    for site, first_day, last_day, reason in HOLIDAYS:
        service.add_closure(
            uow=uow,
            principal=admin,
            site_code=site,
            first_day=first_day,
            last_day=last_day,
            kind="holiday",
            reason=reason,
            now=now,
        )
    # Demo journeys 0-2 have not been collected yet, so their plans start from today.
    orders = list(uow.session.scalars(select(TherapyOrder).order_by(TherapyOrder.id).limit(3)))
    first_order, bcma, third = (o.public_id for o in orders)
    service.book_plan(
        uow=uow,
        principal=coordinator,
        order_public_id=first_order,
        earliest_collection=now + timedelta(days=1),
        now=now,
        tentative=False,
    )
    service.book_plan(
        uow=uow,
        principal=coordinator,
        order_public_id=third,
        earliest_collection=now + timedelta(days=2),
        now=now,
        tentative=True,
    )
    service.join_waitlist(
        uow=uow,
        principal=coordinator,
        order_public_id=bcma,
        urgency_category="high",
        bridging_therapy_failing=True,
        note="committee review: bridging failing",
        now=now - timedelta(days=12),
    )
    service.join_waitlist(
        uow=uow,
        principal=coordinator,
        order_public_id=orders[0].public_id,
        urgency_category="routine",
        note="booked; would take an earlier slot",
        now=now - timedelta(days=30),
    )
