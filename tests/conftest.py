"""Test harness: schema built once per run by Alembic; each test in a rolled-back transaction.

The database comes from ``TRACKER_TEST_DATABASE_URL`` (``make test`` runs the suite once on
PostgreSQL and once on SQLite); without it, a temporary SQLite file is used.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC
from datetime import datetime

import pytest
from sqlalchemy import Connection
from sqlalchemy import Engine
from sqlalchemy import text
from sqlalchemy.orm import Session
from sqlalchemy.orm import sessionmaker

from tracker import migrate
from tracker.clock import FixedClock
from tracker.config import Settings
from tracker.db import make_engine
from tracker.unit_of_work import UnitOfWork

T0 = datetime(2026, 3, 2, 14, 0, tzinfo=UTC)


def _database_url(tmp_path_factory: pytest.TempPathFactory) -> str:
    url = os.environ.get("TRACKER_TEST_DATABASE_URL")
    if url:
        return url
    return f"sqlite:///{tmp_path_factory.mktemp('db') / 'test.db'}"


@pytest.fixture(scope="session")
def settings(tmp_path_factory: pytest.TempPathFactory) -> Settings:
    return Settings(
        env="test",
        database_url=_database_url(tmp_path_factory),
        secret_key="test-secret-key-not-for-production",  # type: ignore[arg-type]
        argon2_time_cost=1,
        argon2_memory_cost=1024,
        lockout_threshold=3,
        lockout_minutes=15,
        idle_timeout_minutes=30,
    )


def reset_database(engine: Engine) -> None:
    """Drop everything so the run starts from an empty schema."""
    with engine.begin() as conn:
        if conn.dialect.name == "postgresql":
            conn.execute(text("DROP SCHEMA public CASCADE"))
            conn.execute(text("CREATE SCHEMA public"))
        else:
            tables = conn.execute(
                text("SELECT name FROM sqlite_master WHERE type = 'table'")
            ).scalars()
            for name in list(tables):
                conn.execute(text(f'DROP TABLE IF EXISTS "{name}"'))


@pytest.fixture(scope="session")
def engine(settings: Settings) -> Iterator[Engine]:
    eng = make_engine(settings.database_url)
    reset_database(eng)
    migrate.upgrade(settings.database_url)
    yield eng
    eng.dispose()


@pytest.fixture
def is_postgres(engine: Engine) -> bool:
    return engine.dialect.name == "postgresql"


@pytest.fixture
def pg_only(engine: Engine) -> None:
    if engine.dialect.name != "postgresql":
        pytest.skip("needs PostgreSQL (row locks and concurrent transactions)")


@pytest.fixture
def connection(engine: Engine) -> Iterator[Connection]:
    conn = engine.connect()
    outer = conn.begin()
    yield conn
    if outer.is_active:
        outer.rollback()
    conn.close()


@pytest.fixture
def session_factory(connection: Connection) -> sessionmaker[Session]:
    # SQLAlchemy's "join an external transaction" recipe: code under test may commit freely;
    # its commits become savepoint releases and the outer transaction is rolled back.
    return sessionmaker(
        bind=connection, join_transaction_mode="create_savepoint", expire_on_commit=False
    )


@pytest.fixture
def clock() -> FixedClock:
    return FixedClock(T0)


@pytest.fixture
def uow(session_factory: sessionmaker[Session]) -> Iterator[UnitOfWork]:
    with UnitOfWork(session_factory) as unit:
        yield unit


@pytest.fixture
def new_uow(session_factory: sessionmaker[Session]):  # type: ignore[no-untyped-def]
    """A factory of fresh units of work on the test transaction."""
    return lambda: UnitOfWork(session_factory)


@pytest.fixture(scope="session")
def base_app(settings: Settings, engine: Engine):  # type: ignore[no-untyped-def]
    from tracker.web import create_app

    return create_app(settings, clock=FixedClock(T0))


@pytest.fixture
def app(base_app, session_factory, clock):  # type: ignore[no-untyped-def]
    rt = base_app.extensions["tracker"]
    saved = (rt.session_factory, rt.clock)
    rt.session_factory, rt.clock = session_factory, clock
    yield base_app
    rt.session_factory, rt.clock = saved


@pytest.fixture
def client(app):  # type: ignore[no-untyped-def]
    return app.test_client()


@dataclass
class World:
    """A small set of sites, users (one per role) and product profiles."""

    sites: dict[str, object]
    users: dict[str, object]
    principals: dict[str, object]
    password: str


WORLD_PASSWORD = "correct-horse-battery"


@pytest.fixture
def world(new_uow, settings, clock) -> World:  # type: ignore[no-untyped-def]
    from tests.factories import build_world

    return build_world(new_uow, settings, clock.now())
