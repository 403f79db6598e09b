"""Atomic counters for identifier sequences, safe across processes and app servers."""

from __future__ import annotations

from sqlalchemy import update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session

from tracker.models import IdentifierCounter


def next_value(session: Session, name: str) -> int:
    """Increment and return counter ``name`` (the row is created at 0 on first use).

    The UPDATE takes the row lock, so two transactions never receive the same value.
    """
    dialect = session.get_bind().dialect.name
    insert = pg_insert if dialect == "postgresql" else sqlite_insert
    session.execute(insert(IdentifierCounter).values(name=name, value=0).on_conflict_do_nothing())
    value = session.scalar(
        update(IdentifierCounter)
        .where(IdentifierCounter.name == name)
        .values(value=IdentifierCounter.value + 1)
        .returning(IdentifierCounter.value)
    )
    assert value is not None
    return int(value)
