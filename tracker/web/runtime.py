"""What a running app holds: settings, engine, session factory, hasher, clock."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from types import TracebackType

from argon2 import PasswordHasher
from flask import Flask
from flask import current_app
from flask import g
from flask import has_request_context
from sqlalchemy import Connection
from sqlalchemy import Engine
from sqlalchemy.orm import Session
from sqlalchemy.orm import sessionmaker

from tracker.clock import Clock
from tracker.config import Settings
from tracker.unit_of_work import UnitOfWork


@dataclass
class Runtime:
    settings: Settings
    engine: Engine
    session_factory: sessionmaker[Session]
    hasher: PasswordHasher
    clock: Clock

    def uow(self) -> UnitOfWork:
        """A unit of work; in a request, on the request's one database connection.

        A request's units of work run one after another (session check, idempotency claim,
        the use case, the stored response): they share one pooled connection, checked out
        (and pinged) once per request instead of once per unit. Each unit still has its own
        transaction, committed or rolled back as before. A unit entered while another one is
        open gets a connection of its own, so it stays independent of the outer one. (A
        session factory bound elsewhere, as in the tests' rolled-back transactions, is used
        as it is.)
        """
        if has_request_context() and self.session_factory.kw.get("bind") is self.engine:
            return _RequestUnitOfWork(self.session_factory, self)
        return UnitOfWork(self.session_factory)

    @contextmanager
    def reading(self) -> Iterator[Connection]:
        """A unit of work that only reads plain rows: a connection whose transaction is rolled
        back at the end, without an ORM session (in a request, its one connection)."""
        conn = _claim_request_connection(self) if has_request_context() else None
        if conn is None:
            with self.uow() as uow:
                yield uow.session.connection()
            return
        try:
            yield conn
        finally:
            try:
                conn.rollback()
            finally:
                g._tracker_db_busy = False


def _claim_request_connection(rt: Runtime) -> Connection | None:
    """The request's one connection, checked out on first use, if no unit of work holds it
    (and the app's sessions are bound to the engine, not to a test's outer transaction)."""
    if g.get("_tracker_db_busy") or rt.session_factory.kw.get("bind") is not rt.engine:
        return None
    conn: Connection | None = g.get("_tracker_db")
    if conn is None:
        conn = g._tracker_db = rt.engine.connect()
    g._tracker_db_busy = True
    return conn


class _RequestUnitOfWork(UnitOfWork):
    def __init__(self, factory: sessionmaker[Session], rt: Runtime) -> None:
        super().__init__(factory)
        self._rt = rt
        self._shares = False

    def __enter__(self) -> UnitOfWork:
        conn = _claim_request_connection(self._rt)
        if conn is not None:
            self._bind, self._shares = conn, True
        return super().__enter__()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        try:
            super().__exit__(exc_type, exc, tb)
        finally:
            if self._shares:
                g._tracker_db_busy = False
                self._bind, self._shares = None, False


def runtime() -> Runtime:
    rt: Runtime = current_app.extensions["tracker"]
    return rt


def _release_connection(_exc: BaseException | None) -> None:
    conn: Connection | None = g.pop("_tracker_db", None)
    if conn is not None:
        conn.close()  # back to the pool (rolled back if a unit of work left anything open)


def init_runtime(app: Flask, rt: Runtime) -> None:
    app.extensions["tracker"] = rt
    app.teardown_request(_release_connection)
