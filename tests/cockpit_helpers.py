"""Builders for cockpit tests: many journeys at once (bulk inserts), and statement counting."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from datetime import timedelta
from typing import Any

from sqlalchemy import Connection
from sqlalchemy import event
from sqlalchemy import insert
from sqlalchemy import select

from tests.conftest import World
from tracker.domain.chain import GENESIS
from tracker.models import Alert
from tracker.models import CustodyEvent
from tracker.models import HandoffDeadline
from tracker.models import Item
from tracker.models import Patient
from tracker.models import ProductProfile
from tracker.models import TherapyOrder


def bulk_journeys(
    new_uow: Any, world: World, now: datetime, *, start: int, count: int
) -> list[int]:
    """``count`` active journeys at TC1 (collected at CC1, made at MF1), each with a bag, a
    registration event, an open deadline, and an open alarm on every tenth one.

    Plain INSERT ... VALUES batches, not the services: a realistic shape, thousands a second.
    The rows are not a real hash chain (the dashboard does not verify chains).
    """
    sites = {code: site.id for code, site in world.sites.items()}  # type: ignore[attr-defined]
    coord = world.users["coord"].id  # type: ignore[attr-defined]
    with new_uow() as uow:
        session = uow.session
        profile_id = session.scalar(
            select(ProductProfile.id).where(ProductProfile.code == "CD19-FRESH")
        )
        numbers = range(start, start + count)
        session.execute(
            insert(Patient),
            [
                {
                    "public_id": f"PT-BULK{n:06d}",
                    "wristband_code": f"WB-BULK{n:06d}",
                    "treatment_site_id": sites["TC1"],
                    "created_at": now,
                }
                for n in numbers
            ],
        )
        patients = {
            public_id: pk
            for public_id, pk in session.execute(
                select(Patient.public_id, Patient.id).where(Patient.public_id.like("PT-BULK%"))
            )
        }
        session.execute(
            insert(TherapyOrder),
            [
                {
                    "public_id": f"ORD-BULK{n:06d}",
                    "coi": f"CHW999926{n:06d}",
                    "patient_id": patients[f"PT-BULK{n:06d}"],
                    "product_profile_id": profile_id,
                    "treatment_site_id": sites["TC1"],
                    "collection_site_id": sites["CC1"],
                    "manufacturing_site_id": sites["MF1"],
                    "status": "active",
                    "created_at": now,
                    "created_by_id": coord,
                }
                for n in numbers
            ],
        )
        orders = {
            public_id: pk
            for public_id, pk in session.execute(
                select(TherapyOrder.public_id, TherapyOrder.id).where(
                    TherapyOrder.public_id.like("ORD-BULK%")
                )
            )
        }
        ids = [orders[f"ORD-BULK{n:06d}"] for n in numbers]
        session.execute(
            insert(Item),
            [
                {
                    "public_id": f"BAG-BULK{n:06d}",
                    "kind": "apheresis_bag",
                    "state": "collected" if n % 3 else "registered",
                    "order_id": order_id,
                    "site_id": sites["CC1"],
                    "din": f"W999926{n:06d}",
                    "container": 1,
                    "created_at": now,
                }
                for n, order_id in zip(numbers, ids, strict=True)
            ],
        )
        session.execute(
            insert(CustodyEvent),
            [
                {
                    "chain_key": f"coi:CHW999926{n:06d}",
                    "seq": 1,
                    "order_id": order_id,
                    "event_type": "registered",
                    "to_state": "registered",
                    "site_id": sites["CC1"],
                    "occurred_at": now - timedelta(days=3),
                    "recorded_at": now - timedelta(days=3),
                    "details": {},
                    "prev_hash": GENESIS,
                    "hash": f"{n:064x}",
                }
                for n, order_id in zip(numbers, ids, strict=True)
            ],
        )
        session.execute(
            insert(HandoffDeadline),
            [
                {
                    "dedupe_key": f"bulk:{n}",
                    "kind": "pickup_by",
                    "label": "Pickup by",
                    # Spread over -1 h .. +N h, so every risk colour appears.
                    "due_at": now + timedelta(minutes=30 * ((n % 40) - 2)),
                    "warn_at": now + timedelta(minutes=30 * ((n % 40) - 6)),
                    "order_id": order_id,
                    "site_id": sites["CC1"],
                    "status": "open",
                    "created_at": now,
                    "updated_at": now,
                }
                for n, order_id in zip(numbers, ids, strict=True)
            ],
        )
        session.execute(
            insert(Alert),
            [
                {
                    "dedupe_key": f"bulk-alert:{n}",
                    "kind": "deadline_breach",
                    "severity": "alarm",
                    "notify": "in_app",
                    "title": f"Pickup overdue (bulk {n})",
                    "details": {},
                    "site_id": sites["CC1"],
                    "order_id": order_id,
                    "job_code": f"J{n:06d}",
                    "ack_code": f"{n % 9000 + 1000}",
                    "status": "open",
                    "raised_at": now,
                }
                for n, order_id in zip(numbers, ids, strict=True)
                if n % 10 == 0
            ],
        )
        uow.commit()
    return ids


@contextmanager
def counting_statements(connection: Connection) -> Iterator[list[str]]:
    """Collect every SQL statement sent on the test connection while the block runs."""
    statements: list[str] = []

    def _count(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        if not statement.lstrip().upper().startswith(("SAVEPOINT", "RELEASE", "ROLLBACK")):
            statements.append(statement)

    event.listen(connection, "before_cursor_execute", _count)
    try:
        yield statements
    finally:
        event.remove(connection, "before_cursor_execute", _count)
