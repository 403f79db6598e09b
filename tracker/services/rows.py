"""Append-only rows written with one Core INSERT and kept in the session as loaded objects.

An event, an audit row or a deadline is written once and never updated by the transaction
that adds it. Adding it to the session and flushing runs the ORM's whole unit-of-work cycle
for one INSERT (flushes were about a sixth of a scan's Python time, most of it on completing
steps); here the INSERT is one Core statement on the session's connection, and the object joins
the session as a persistent row, as if it had been read back, without being read back.
"""

from __future__ import annotations

from functools import cache
from typing import Any
from typing import TypeVar
from typing import cast

from sqlalchemy import Insert
from sqlalchemy import Table
from sqlalchemy import insert
from sqlalchemy import inspect
from sqlalchemy.orm import Mapper
from sqlalchemy.orm import Session
from sqlalchemy.orm import make_transient_to_detached

T = TypeVar("T")


def insert_attached(session: Session, obj: T) -> T:
    """INSERT ``obj`` (a new, transient mapped object) now and attach it as persistent.

    Every column the object was given is written as given; the columns it was not given take
    their defaults in the INSERT and come back through RETURNING, so nothing is lazily loaded
    later. Objects still pending in the session are flushed first (the new row may reference
    them); changes to rows already stored wait for the next flush as usual.
    """
    state = inspect(obj)
    if not state.transient:
        raise ValueError("insert_attached takes a new object that is not in a session")
    columns = _columns(state.mapper)
    values = state.dict
    missing = tuple(key for key, _ in columns if key not in values)
    stmt = _statement(state.mapper, missing)
    if session.new:
        session.flush()
    params = {column: values[key] for key, column in columns if key in values}
    result = session.connection().execute(stmt, params)
    if missing:
        for key, value in zip(missing, result.one(), strict=True):
            setattr(obj, key, value)
    make_transient_to_detached(obj)
    session.add(obj)
    return obj


@cache
def _columns(mapper: Mapper[Any]) -> tuple[tuple[str, str], ...]:
    """(attribute, column) of every column of a mapped class that can be inserted whole."""
    if mapper.version_id_col is not None:
        raise ValueError(f"{mapper.class_.__name__} is versioned: add it to the session instead")
    pairs = []
    for prop in mapper.column_attrs:
        (column,) = prop.columns
        pairs.append((prop.key, column.key))
    return tuple(pairs)


@cache
def _statement(mapper: Mapper[Any], missing: tuple[str, ...]) -> Insert:
    # One statement object per shape: SQLAlchemy then finds its compiled form by identity.
    stmt = insert(cast(Table, mapper.local_table))
    if missing:
        by_key = {prop.key: prop.columns[0] for prop in mapper.column_attrs}
        stmt = stmt.returning(*(by_key[key] for key in missing))
    return stmt
