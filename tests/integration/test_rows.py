"""Append-only rows written with one Core INSERT and attached to the session as loaded."""

from __future__ import annotations

import pytest
from sqlalchemy import inspect
from sqlalchemy import select

from tests.cockpit_helpers import counting_statements
from tracker.models import AuditEntry
from tracker.models import HandoffDeadline
from tracker.models import StepRun
from tracker.models import User
from tracker.services import alerts
from tracker.services.rows import insert_attached


def _entry(clock, **extra):  # type: ignore[no-untyped-def]
    return AuditEntry(
        at=clock.now(),
        actor_user_id=None,
        action="note",
        entity_type="item",
        entity_id="I-1",
        reason=None,
        site_id=None,
        **extra,
    )


def test_the_row_is_stored_at_once_and_joins_the_session_as_loaded(uow, connection, clock):  # type: ignore[no-untyped-def]
    entry = insert_attached(uow.session, _entry(clock, changes={"state": ["a", "b"]}))
    state = inspect(entry)
    assert state.persistent and entry in uow.session and entry.id is not None
    # Stored before any flush: another reader on the same connection sees it.
    stored = connection.execute(
        select(AuditEntry.action, AuditEntry.changes).where(AuditEntry.id == entry.id)
    ).one()
    assert tuple(stored) == ("note", {"state": ["a", "b"]})
    # Every attribute is loaded: reading them sends nothing, and a flush writes nothing.
    with counting_statements(connection) as statements:
        assert (entry.action, entry.entity_id, entry.changes) == (
            "note",
            "I-1",
            {"state": ["a", "b"]},
        )
        uow.session.flush()
    assert statements == []


def test_columns_not_given_take_their_defaults_and_come_back_without_a_read(uow, connection, clock):  # type: ignore[no-untyped-def]
    entry = _entry(clock)  # no ``changes``: the column's default (an empty object) applies
    with counting_statements(connection) as statements:
        insert_attached(uow.session, entry)
        assert entry.changes == {}
    assert len(statements) == 1 and statements[0].lstrip().upper().startswith("INSERT")
    assert connection.scalar(select(AuditEntry.changes).where(AuditEntry.id == entry.id)) == {}


def test_pending_rows_it_may_reference_are_flushed_first(uow, clock, world):  # type: ignore[no-untyped-def]
    user = User(
        username="pending",
        full_name="Pending Person",
        password_hash="x",
        created_at=clock.now(),
    )
    uow.session.add(user)
    assert user.id is None
    entry = insert_attached(uow.session, _entry(clock))
    assert user.id is not None and inspect(user).persistent
    assert entry.id is not None


def test_it_refuses_objects_already_in_a_session_and_versioned_classes(uow, clock, world):  # type: ignore[no-untyped-def]
    entry = insert_attached(uow.session, _entry(clock))
    with pytest.raises(ValueError, match="not in a session"):
        insert_attached(uow.session, entry)
    run = StepRun(order_id=1, step="x", site_id=world.sites["CC1"].id, started_at=clock.now())
    with pytest.raises(ValueError, match="versioned"):
        insert_attached(uow.session, run)


def test_insert_ignore_refuses_a_key_that_is_no_column(uow, clock, world):  # type: ignore[no-untyped-def]
    values = {
        "dedupe_key": "k-1",
        "kind": "fresh_stability",
        "label": "Fresh stability",
        "due_at": clock.now(),
        "warn_at": clock.now(),
        "site_id": world.sites["CC1"].id,
        "status": "open",
        "created_at": clock.now(),
        "updated_at": clock.now(),
    }
    first = alerts.insert_ignore(uow.session, HandoffDeadline, values)
    assert first is not None
    assert alerts.insert_ignore(uow.session, HandoffDeadline, values) is None  # the repeat
    with pytest.raises(ValueError, match="no column"):
        alerts.insert_ignore(uow.session, HandoffDeadline, {**values, "due": clock.now()})
