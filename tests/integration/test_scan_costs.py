"""What a scan costs the database, and that the cheaper paths keep every record and check.

A step that completes moves all its bags through ``custody.change_items_state``: one lock of
the order and its bags, one read of the chain's head, then per bag the same checks and
records as ``change_item_state``. A web request's units of work share one pooled connection.
"""

from __future__ import annotations

import pytest
from sqlalchemy import event
from sqlalchemy import func
from sqlalchemy import select

from tests import scanning as sc
from tests.factories import make_bag
from tests.factories import make_label_print
from tests.factories import make_order
from tracker.models import AuditEntry
from tracker.models import CustodyEvent
from tracker.models import Item
from tracker.models import Patient
from tracker.models import Scan
from tracker.models import WorkerHeartbeat
from tracker.services import custody
from tracker.web import create_app
from tracker.web.runtime import runtime


@pytest.fixture
def driver(new_uow, world, clock, settings):
    return sc.Driver(new_uow, world, clock, settings, sc.make_scanners(new_uow, world, clock.now()))


def _label_step_until_last_bag(d, j):
    for step in ("collect_verify_patient", "collect_label_bags"):
        d.new_run("nurse", step)  # each journey on fresh runs of the scanner
    sc.collect(d, j, upto="collect_verify_patient")
    sc.ok(d.scan("nurse", "collect_label_bags", j.wristband, site="CC1"))
    for bag in j.bags[:-1]:
        sc.ok(d.scan("nurse", "collect_label_bags", sc.din_code(bag), site="CC1"))


def _statements_of_last_scan(d, j, connection):
    count = {"n": 0}

    def note(*_args):
        count["n"] += 1

    event.listen(connection, "before_cursor_execute", note)
    try:
        outcome = d.scan("nurse", "collect_label_bags", sc.din_code(j.bags[-1]), site="CC1")
    finally:
        event.remove(connection, "before_cursor_execute", note)
    sc.ok(outcome, "ok")
    return count["n"]


def test_completing_a_step_moves_every_bag_on_one_unbroken_chain(driver, new_uow):
    d = driver
    j = sc.new_journey(d, bags=3)
    _label_step_until_last_bag(d, j)
    sc.ok(d.scan("nurse", "collect_label_bags", sc.din_code(j.bags[-1]), site="CC1"), "ok")
    with new_uow() as uow:
        s = uow.session
        key = f"coi:{j.order.coi}"
        assert custody.verify_chain_for(s, key) == []
        moves = s.execute(
            select(CustodyEvent.seq, CustodyEvent.item_id, CustodyEvent.to_state)
            .where(CustodyEvent.chain_key == key, CustodyEvent.to_state == "labelled")
            .order_by(CustodyEvent.seq)
        ).all()
        bag_ids = sorted(b.id for b in j.bags)
        assert [m.item_id for m in moves] == bag_ids
        assert [m.seq for m in moves] == list(range(moves[0].seq, moves[0].seq + 3))
        states = s.scalars(select(Item.state).where(Item.id.in_(bag_ids))).all()
        assert states == ["labelled"] * 3
        audited = s.scalar(
            select(func.count())
            .select_from(AuditEntry)
            .where(
                AuditEntry.action == "custody_transition",
                AuditEntry.entity_id.in_([b.public_id for b in j.bags]),
                AuditEntry.changes["state"][1].as_string() == "labelled",
            )
        )
        assert audited == 3


def test_each_bag_costs_a_few_statements_and_the_rest_is_paid_once(driver, connection):
    d = driver
    small, large = sc.new_journey(d, bags=2), sc.new_journey(d, bags=4)
    _label_step_until_last_bag(d, small)
    two = _statements_of_last_scan(d, small, connection)
    _label_step_until_last_bag(d, large)
    four = _statements_of_last_scan(d, large, connection)
    # Per bag: its label print, the QA gate (one look when nothing holds it), its row
    # update, its custody event and its audit row. The order, its bags, the site and the
    # chain head: once per step.
    assert (four - two) / 2 <= 5
    assert two <= 28


def test_one_refused_bag_moves_none_of_the_step_s_bags(driver, new_uow, world, clock):
    d = driver
    now = clock.now()
    order = make_order(d.new_uow, world, now, mrn="MRN-UNPRINTED")
    bags = [make_bag(d.new_uow, world, order, now) for _ in range(2)]
    make_label_print(d.new_uow, world, bags[0], now)  # the second bag's label never printed
    with new_uow() as uow:
        wristband = uow.session.get(Patient, order.patient_id).wristband_code
    j = sc.Journey(order=order, bags=bags, wristband=wristband)
    _label_step_until_last_bag(d, j)
    last = d.scan("nurse", "collect_label_bags", sc.din_code(bags[1]), site="CC1")
    assert (last.body["status"], last.body["reason"]) == ("error", "label_not_printed")
    with new_uow() as uow:
        s = uow.session
        states = s.scalars(select(Item.state).where(Item.id.in_([b.id for b in bags]))).all()
        assert set(states) == {"registered"}  # the first bag, which passed, did not move
        moved = s.scalar(
            select(func.count())
            .select_from(CustodyEvent)
            .where(CustodyEvent.order_id == order.id, CustodyEvent.event_type == "transition")
        )
        assert moved == 0
        stored = s.scalar(select(Scan.result).where(Scan.id == last.body["scan"]))
        assert stored == "error"


def test_a_request_checks_out_one_connection_for_all_its_units_of_work(settings, engine):
    app = create_app(settings)  # bound to the real engine, as in production
    rt = app.extensions["tracker"]
    checkouts: list[object] = []
    event.listen(rt.engine, "checkout", lambda dbapi, *_: checkouts.append(dbapi))
    try:
        with app.test_request_context("/"):
            with runtime().uow() as first:
                first_conn = first.session.connection().connection.driver_connection
            with runtime().uow() as second:
                second_conn = second.session.connection().connection.driver_connection
            assert first_conn is second_conn
            app.do_teardown_request()
        assert len(checkouts) == 1
    finally:
        rt.engine.dispose()


def test_a_unit_of_work_inside_another_commits_on_its_own(settings, engine, clock):
    app = create_app(settings)
    rt = app.extensions["tracker"]
    name = "request-connection-test"
    try:
        with app.test_request_context("/"):
            with runtime().uow() as outer:
                with runtime().uow() as inner:
                    inner_conn = inner.session.connection().connection.driver_connection
                    inner.session.add(
                        WorkerHeartbeat(name=name, beat_at=clock.now(), host="test", pid=1)
                    )
                    inner.commit()
                outer_conn = outer.session.connection().connection.driver_connection
                assert outer.session.get(WorkerHeartbeat, name) is not None
                # The outer unit ends without committing; the inner one's commit stands.
            with runtime().uow() as after:
                after_conn = after.session.connection().connection.driver_connection
            app.do_teardown_request()
        assert inner_conn is not outer_conn
        assert after_conn is outer_conn  # the request's connection again, once it is free
        with rt.uow() as check:
            beat = check.session.get(WorkerHeartbeat, name)
            assert beat is not None
            check.session.delete(beat)
            check.commit()
    finally:
        rt.engine.dispose()
