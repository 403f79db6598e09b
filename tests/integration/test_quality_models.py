"""The quality tables keep what was written: append-only rows, one review, one release per lot."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import select
from sqlalchemy import update
from sqlalchemy.exc import DBAPIError
from sqlalchemy.exc import IntegrityError

from tests import factories_quality as fq
from tests.factories import make_order
from tracker.models_quality import ManufacturingLot
from tracker.models_quality import MaterialAcceptance
from tracker.models_quality import ReleaseTestResult


@pytest.fixture
def lot_world(new_uow, world, clock):  # type: ignore[no-untyped-def]
    order = make_order(new_uow, world, clock.now())
    uow = new_uow().__enter__()
    s = uow.session
    mf1 = world.sites["MF1"].id
    acceptance = fq.make_acceptance(
        s,
        order=order,
        site_id=mf1,
        decided_by=world.users["operator"].id,
        decided_at=clock.now(),
        measurements={"tnc": (3.1, "10^9 cells", 3.1, "pass")},
    )
    lot = fq.make_lot(s, order=order, acceptance=acceptance, site_id=mf1, started_at=clock.now())
    tests = fq.make_release_tests(s, lot=lot, started_at=clock.now())
    yield uow, world, order, acceptance, lot, tests
    uow.__exit__(None, None, None)


def test_an_acceptance_cannot_be_changed_or_deleted(lot_world):  # type: ignore[no-untyped-def]
    uow, _world, _order, acceptance, _lot, _tests = lot_world
    with pytest.raises(DBAPIError), uow.session.begin_nested():
        uow.session.execute(
            update(MaterialAcceptance)
            .where(MaterialAcceptance.id == acceptance.id)
            .values(decision="rejected")
        )


def test_a_result_is_reviewed_once_by_someone_else_and_never_edited(lot_world, clock):  # type: ignore[no-untyped-def]
    uow, world, _order, _acc, _lot, tests = lot_world
    s = uow.session
    operator, qa = world.users["operator"].id, world.users["qa"].id
    result = fq.make_result(
        s,
        test=tests["sterility"],
        value="negative",
        outcome="pass",
        recorded_by=operator,
        recorded_at=clock.now(),
    )
    # The recorder may not review their own result (a CHECK on the row).
    with pytest.raises(IntegrityError), s.begin_nested():
        s.execute(
            update(ReleaseTestResult)
            .where(ReleaseTestResult.id == result.id)
            .values(reviewed_by=operator, reviewed_at=clock.now())
        )
    with s.begin_nested():
        s.execute(
            update(ReleaseTestResult)
            .where(ReleaseTestResult.id == result.id)
            .values(reviewed_by=qa, reviewed_at=clock.now())
        )
    assert (
        s.scalar(select(ReleaseTestResult.reviewed_by).where(ReleaseTestResult.id == result.id))
        == qa
    )
    # A second review, or any change of the value, is refused by the database.
    with pytest.raises(DBAPIError), s.begin_nested():
        s.execute(
            update(ReleaseTestResult)
            .where(ReleaseTestResult.id == result.id)
            .values(reviewed_by=world.users["admin"].id, reviewed_at=clock.now())
        )
    with pytest.raises(DBAPIError), s.begin_nested():
        s.execute(
            update(ReleaseTestResult).where(ReleaseTestResult.id == result.id).values(outcome="oos")
        )


def test_a_correction_needs_a_reason_and_supersedes_only_once(lot_world, clock):  # type: ignore[no-untyped-def]
    uow, world, _order, _acc, _lot, tests = lot_world
    s = uow.session
    operator = world.users["operator"].id
    first = fq.make_result(
        s,
        test=tests["endotoxin"],
        value="7.0",
        numeric_value=7.0,
        unit="EU/mL",
        outcome="oos",
        recorded_by=operator,
        recorded_at=clock.now(),
    )
    with pytest.raises(IntegrityError), s.begin_nested():
        fq.make_result(
            s,
            test=tests["endotoxin"],
            value="0.7",
            numeric_value=0.7,
            unit="EU/mL",
            outcome="pass",
            recorded_by=operator,
            recorded_at=clock.now(),
            supersedes_id=first.id,
        )
    fq.make_result(
        s,
        test=tests["endotoxin"],
        value="0.7",
        numeric_value=0.7,
        unit="EU/mL",
        outcome="pass",
        recorded_by=operator,
        recorded_at=clock.now(),
        supersedes_id=first.id,
        reason="transcription error: decimal point",
    )
    with pytest.raises(IntegrityError), s.begin_nested():
        fq.make_result(
            s,
            test=tests["endotoxin"],
            value="0.8",
            numeric_value=0.8,
            unit="EU/mL",
            outcome="pass",
            recorded_by=operator,
            recorded_at=clock.now(),
            supersedes_id=first.id,
            reason="second correction of the same row",
        )


def test_a_lot_is_released_once_and_an_exceptional_release_names_the_physician(lot_world, clock):  # type: ignore[no-untyped-def]
    uow, world, _order, _acc, lot, _tests = lot_world
    s = uow.session
    qa, mf1 = world.users["qa"].id, world.sites["MF1"].id
    with pytest.raises(IntegrityError), s.begin_nested():
        fq.make_lot_release(
            s, lot=lot, qa_user_id=qa, site_id=mf1, released_at=clock.now(), kind="exceptional"
        )
    fq.make_lot_release(s, lot=lot, qa_user_id=qa, site_id=mf1, released_at=clock.now())
    assert s.get(ManufacturingLot, lot.id).status == "released"
    with pytest.raises(IntegrityError), s.begin_nested():
        fq.make_lot_release(
            s,
            lot=lot,
            qa_user_id=qa,
            site_id=mf1,
            released_at=clock.now() + timedelta(minutes=1),
        )
