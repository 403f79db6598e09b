"""What a running app holds: settings, engine, session factory, hasher, clock."""

from __future__ import annotations

from dataclasses import dataclass

from argon2 import PasswordHasher
from flask import current_app
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
        return UnitOfWork(self.session_factory)


def runtime() -> Runtime:
    rt: Runtime = current_app.extensions["tracker"]
    return rt
