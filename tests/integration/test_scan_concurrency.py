"""Scanners racing on PostgreSQL: real threads, their own connections, committed data.

These tests commit (other connections must see the data), so they build their own world and
truncate every table afterwards; the schema itself is built once per run and stays.
"""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
from sqlalchemy import func
from sqlalchemy import select
from sqlalchemy import text

from tests import scanning as sc
from tests.conftest import T0
from tests.factories import build_world
from tracker.clock import FixedClock
from tracker.db import Base
from tracker.db import make_session_factory
from tracker.models import CustodyEvent
from tracker.models import Scan
from tracker.models import StepRun
from tracker.services import scans
from tracker.unit_of_work import UnitOfWork


@pytest.fixture
def committed(engine, settings, pg_only):
    factory = make_session_factory(engine)

    def new_uow():
        return UnitOfWork(factory)

    clock = FixedClock(T0)
    world = build_world(new_uow, settings, clock.now())
    driver = sc.Driver(new_uow, world, clock, settings, sc.make_scanners(new_uow, world, T0))
    yield driver
    tables = ", ".join(t.name for t in Base.metadata.sorted_tables)
    with engine.begin() as conn:
        conn.execute(text(f"TRUNCATE {tables} CASCADE"))


def _scan_input(driver, raw, run, nonce, step="collect_label_bags"):
    return scans.ScanInput(
        raw=raw,
        device=driver.scanners["CC1"],
        step=step,
        client_at=driver.clock.now(),
        nonce=nonce,
        client_run=run,
    )


def _blocked_on_a_lock(engine, pid, timeout=10.0):
    deadline = time.monotonic() + timeout
    with engine.connect() as conn:
        while time.monotonic() < deadline:
            waiting = conn.scalar(
                text("SELECT wait_event_type FROM pg_stat_activity WHERE pid = :pid"),
                {"pid": pid},
            )
            conn.rollback()
            if waiting == "Lock":
                return True
            time.sleep(0.02)
    return False


def test_two_scanners_racing_for_one_bag_cannot_both_win(committed, engine):
    d = committed
    j = sc.new_journey(d, bags=1)
    sc.collect(d, j, upto="collect_verify_patient")
    sc.ok(d.scan("nurse", "collect_label_bags", j.wristband, site="CC1", run="scanner-a"))
    sc.ok(d.scan("nurse", "collect_label_bags", j.wristband, site="CC1", run="scanner-b"))
    nurse = d.world.principals["nurse"]
    a_decided, b_pid, results = threading.Event(), {}, {}

    def scanner_a():
        with d.new_uow() as uow:
            results["a"] = scans.record_scan(
                uow=uow,
                principal=nurse,
                now=d.clock.now(),
                scan=_scan_input(d, sc.din_code(j.bags[0]), "scanner-a", "a-1"),
            )
            a_decided.set()
            # Hold the transaction open until B is provably waiting for A's lock.
            assert _blocked_on_a_lock(engine, b_pid_ready())
            uow.commit()

    def b_pid_ready():
        for _ in range(500):
            if "pid" in b_pid:
                return b_pid["pid"]
            time.sleep(0.01)
        raise AssertionError("scanner B never started")

    def scanner_b():
        a_decided.wait(10)
        with d.new_uow() as uow:
            b_pid["pid"] = uow.session.scalar(text("SELECT pg_backend_pid()"))
            results["b"] = scans.record_scan(
                uow=uow,
                principal=nurse,
                now=d.clock.now(),
                scan=_scan_input(d, sc.din_code(j.bags[0]), "scanner-b", "b-1"),
            )
            uow.commit()

    with ThreadPoolExecutor(2) as pool:
        for future in [pool.submit(scanner_a), pool.submit(scanner_b)]:
            future.result(timeout=30)
    assert results["a"].body["status"] == "ok"
    assert results["b"].body["reason"] == "already_scanned"
    with d.new_uow() as uow:
        labelled = uow.session.scalar(
            select(func.count(CustodyEvent.id)).where(CustodyEvent.to_state == "labelled")
        )
        stored = uow.session.scalar(
            select(func.count(Scan.id)).where(Scan.nonce.in_(["a-1", "b-1"]))
        )
    assert (labelled, stored) == (1, 2)


def test_many_scanners_at_once_start_one_run_and_move_the_bag_once(committed):
    d = committed
    j = sc.new_journey(d, bags=1)
    sc.collect(d, j, upto="collect_verify_patient")
    nurse = d.world.principals["nurse"]
    n = 8
    barrier = threading.Barrier(n)

    def scanner(i, raw, nonce_prefix):
        barrier.wait(10)
        with d.new_uow() as uow:
            outcome = scans.record_scan(
                uow=uow,
                principal=nurse,
                now=d.clock.now(),
                scan=_scan_input(d, raw, f"scanner-{i}", f"{nonce_prefix}-{i}"),
            )
            uow.commit()
        return outcome

    with ThreadPoolExecutor(n) as pool:
        anchors = list(pool.map(lambda i: scanner(i, j.wristband, "anchor"), range(n)))
        bags = list(pool.map(lambda i: scanner(i, sc.din_code(j.bags[0]), "bag"), range(n)))
    assert [a.body["status"] for a in anchors] == ["incomplete"] * n
    assert sum(a.body["message"].startswith("Joined") for a in anchors) == n - 1
    assert sorted(b.body["status"] for b in bags) == ["error"] * (n - 1) + ["ok"]
    assert {b.body["reason"] for b in bags if b.body["status"] == "error"} == {"already_scanned"}
    with d.new_uow() as uow:
        runs = uow.session.scalar(
            select(func.count(StepRun.id)).where(StepRun.step == "collect_label_bags")
        )
        labelled = uow.session.scalar(
            select(func.count(CustodyEvent.id)).where(CustodyEvent.to_state == "labelled")
        )
    assert (runs, labelled) == (1, 1)


def test_the_same_nonce_sent_twice_at_once_is_stored_once(committed):
    d = committed
    j = sc.new_journey(d, bags=1)
    nurse = d.world.principals["nurse"]
    barrier = threading.Barrier(2)

    def send(_):
        barrier.wait(10)
        with d.new_uow() as uow:
            outcome = scans.record_scan(
                uow=uow,
                principal=nurse,
                now=d.clock.now(),
                scan=_scan_input(
                    d, j.wristband, "one-scanner", "same-nonce", step="collect_verify_patient"
                ),
            )
            uow.commit()
        return outcome

    with ThreadPoolExecutor(2) as pool:
        first, second = pool.map(send, range(2))
    assert first.body == second.body
    assert sorted([first.replayed, second.replayed]) == [False, True]
    with d.new_uow() as uow:
        assert uow.session.scalar(select(func.count(Scan.id))) == 1


def test_two_wrong_patient_scans_crossing_each_others_orders_do_not_block(committed):
    """A scans B's bag and keeps its transaction open; B scanning A's bag must get through.

    The refused scan's row references the other order: its foreign key check takes KEY SHARE
    on that order, which a FOR UPDATE lock would block (a deadlock once both wait).
    """
    d = committed
    a, b = sc.new_journey(d, bags=1), sc.new_journey(d, bags=1, mrn="B")
    for j, run in ((a, "scanner-a"), (b, "scanner-b")):
        d.runs[("nurse", "collect_verify_patient")] = f"verify-{run}"
        sc.ok(d.scan("nurse", "collect_verify_patient", j.wristband, site="CC1"))
        sc.ok(d.answer("nurse", "collect_verify_patient", {"identity_confirmed": True}), "ok")
        sc.ok(d.scan("nurse", "collect_label_bags", j.wristband, site="CC1", run=run))
    nurse = d.world.principals["nurse"]
    a_holding, b_done = threading.Event(), threading.Event()

    def scanner_a():
        with d.new_uow() as uow:
            outcome = scans.record_scan(
                uow=uow,
                principal=nurse,
                now=d.clock.now(),
                scan=_scan_input(d, sc.din_code(b.bags[0]), "scanner-a", "cross-a"),
            )
            a_holding.set()
            b_done.wait(10)
            uow.commit()
        return outcome

    def scanner_b():
        a_holding.wait(10)
        with d.new_uow() as uow:
            outcome = scans.record_scan(
                uow=uow,
                principal=nurse,
                now=d.clock.now(),
                scan=_scan_input(d, sc.din_code(a.bags[0]), "scanner-b", "cross-b"),
            )
            uow.commit()
        b_done.set()
        return outcome

    with ThreadPoolExecutor(2) as pool:
        first, second = pool.submit(scanner_a), pool.submit(scanner_b)
        assert second.result(timeout=8).body["reason"] == "coi_mismatch"
        assert first.result(timeout=8).body["reason"] == "coi_mismatch"
