"""Run Alembic from code (CLI, tests, readiness) with the URL from Settings."""

from __future__ import annotations

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection
from sqlalchemy import Engine

from tracker.config import PROJECT_ROOT


def alembic_config(database_url: str) -> Config:
    cfg = Config(toml_file=str(PROJECT_ROOT / "pyproject.toml"))
    cfg.attributes["database_url"] = database_url
    return cfg


def upgrade(database_url: str, revision: str = "head") -> None:
    command.upgrade(alembic_config(database_url), revision)


def head_revisions(database_url: str) -> tuple[str, ...]:
    return tuple(ScriptDirectory.from_config(alembic_config(database_url)).get_heads())


def current_revisions(bind: Engine | Connection) -> tuple[str, ...]:
    if isinstance(bind, Connection):
        return tuple(MigrationContext.configure(bind).get_current_heads())
    with bind.connect() as conn:
        return tuple(MigrationContext.configure(conn).get_current_heads())
