"""Alembic environment: URL from tracker.config Settings, metadata from tracker.models."""

from __future__ import annotations

from typing import Any

from alembic import context

from tracker import models  # noqa: F401  (registers every table on Base.metadata)
from tracker.config import Settings
from tracker.db import Base
from tracker.db import UTCDateTime
from tracker.db import make_engine

config = context.config


def _render_item(type_: str, obj: Any, autogen_context: Any) -> str | bool:
    # Revisions must not depend on our TypeDecorator: write it as the plain column type.
    if type_ == "type" and isinstance(obj, UTCDateTime):
        return "sa.DateTime(timezone=True)"
    return False


def _url() -> str:
    return config.attributes.get("database_url") or Settings().database_url


def run_migrations_offline() -> None:
    context.configure(
        url=_url(),
        target_metadata=Base.metadata,
        literal_binds=True,
        render_as_batch=_url().startswith("sqlite"),
        render_item=_render_item,
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    connection = config.attributes.get("connection")
    if connection is not None:
        _run(connection)
        return
    engine = make_engine(_url())
    with engine.connect() as conn:
        _run(conn)
    engine.dispose()


def _run(connection: Any) -> None:
    sqlite = connection.dialect.name == "sqlite"
    if sqlite:
        # Batch mode rebuilds a SQLite table by copy, drop and rename; with foreign keys on,
        # dropping a table other rows point at fails (or cascades). Off for the migration, and
        # every reference is checked before they are switched back on.
        _sqlite_pragma(connection, "foreign_keys=OFF")
    try:
        _configure_and_run(connection)
    finally:
        if sqlite:
            _sqlite_pragma(connection, "foreign_keys=ON")
    if sqlite:
        broken = connection.exec_driver_sql("PRAGMA foreign_key_check").fetchall()
        if broken:
            raise RuntimeError(f"migration left broken foreign keys: {broken[:5]}")


def _sqlite_pragma(connection: Any, pragma: str) -> None:
    # The foreign_keys pragma is ignored inside a transaction: issue it on the driver's
    # connection only when none is open (a caller's own transaction keeps its setting).
    raw = connection.connection.driver_connection
    if not raw.in_transaction:
        raw.execute(f"PRAGMA {pragma}")


def _configure_and_run(connection: Any) -> None:
    context.configure(
        connection=connection,
        target_metadata=Base.metadata,
        compare_type=True,
        render_as_batch=connection.dialect.name == "sqlite",
        render_item=_render_item,
    )
    with context.begin_transaction():
        context.run_migrations()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
