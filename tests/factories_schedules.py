"""Capacity for the test world: chairs at CC1 (New York), a line at MF1 (Amsterdam), beds at TC1.

T0 (2026-03-02 14:00 UTC) is a Monday in winter time: New York moves to summer time on
2026-03-08 and Amsterdam on 2026-03-29, so plans made at T0 cross both switches.
"""

from __future__ import annotations

from datetime import datetime
from datetime import time
from typing import Any

from schedules import service
from schedules.service import HoursSpec
from schedules.slots import ResourceKind

WEEKDAYS = range(5)
NOT_SUNDAY = range(6)


def hours(days: Any, opens: time, closes: time, capacity: int) -> list[HoursSpec]:
    return [HoursSpec(d, opens, closes, capacity) for d in days]


def build_capacity(
    new_uow: Any,
    world: Any,
    now: datetime,
    *,
    chairs: int = 1,
    lines: int = 1,
    beds: int = 1,
) -> dict[str, str]:
    """Define and expand the three resources; returns their public ids by kind."""
    admin = world.principals["admin"]
    chair_hours = hours(WEEKDAYS, time(8), time(16), chairs)
    line_hours = hours(WEEKDAYS, time(9), time(10), lines)
    bed_hours = hours(NOT_SUNDAY, time(0), time(0), beds)
    specs = [
        ("CC1", ResourceKind.apheresis_chair, "Chairs", None, 240, chair_hours),
        ("MF1", ResourceKind.manufacturing_slot, "Line A", "CD19-FRESH", None, line_hours),
        ("TC1", ResourceKind.infusion_bed, "Beds", None, None, bed_hours),
    ]
    ids: dict[str, str] = {}
    with new_uow() as uow:
        for site, kind, name, product, minutes, weekly in specs:
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
                hours=weekly,
                reason="initial capacity",
                now=now,
            )
            ids[kind.value] = resource.public_id
        uow.commit()
    return ids
