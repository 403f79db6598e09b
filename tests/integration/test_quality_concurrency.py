"""Two QA users release the same lot at the same moment on PostgreSQL: only one wins.

Committed data (other connections must see it), so the test builds its own world and
truncates every table afterwards, like the scan concurrency tests.
"""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

import pytest
from sqlalchemy import func
from sqlalchemy import select
from sqlalchemy import text

from tests import scanning as sc
from tests.conftest import T0
from tests.conftest import WORLD_PASSWORD
from tests.factories import build_world
from tests.integration.test_scan_concurrency import _blocked_on_a_lock
from tracker.clock import FixedClock
from tracker.db import Base
from tracker.db import make_session_factory
from tracker.domain.access import Role
from tracker.domain.errors import TrackerError
from tracker.models import ReleaseCertificate
from tracker.models_quality import LotRelease
from tracker.models_quality import ManufacturingLot
from tracker.services import auth
from tracker.services import scans
from tracker.services.principals import principal_for_user
from tracker.unit_of_work import UnitOfWork


@pytest.fixture
def committed(engine, settings, pg_only):  # type: ignore[no-untyped-def]
    factory = make_session_factory(engine)

    def new_uow():  # type: ignore[no-untyped-def]
        return UnitOfWork(factory)

    clock = FixedClock(T0)
    world = build_world(new_uow, settings, clock.now())
    with new_uow() as uow:
        second = auth.create_user(
            uow=uow,
            hasher=auth.make_hasher(settings),
            username="qa2",
            full_name="Second QA",
            password=WORLD_PASSWORD,
            grants=[(Role.qa, world.sites["MF1"].id)],
            now=clock.now(),
        )
        uow.commit()
        world.principals["qa2"] = principal_for_user(second)
    driver = sc.Driver(new_uow, world, clock, settings, sc.make_scanners(new_uow, world, T0))
    yield driver
    tables = ", ".join(t.name for t in Base.metadata.sorted_tables)
    with engine.begin() as conn:
        conn.execute(text(f"TRUNCATE {tables} CASCADE"))


def test_two_qa_users_releasing_one_lot_at_once_cannot_both_win(committed, engine, settings):
    d = committed
    j = sc.new_journey(d, bags=1)
    sc.walk(d, j, "manufacture")
    sc.pass_release_tests(d, j)
    # Both QA users are at the release step for the same order: one run, joined by the second.
    step = "qa_release"
    sc.ok(d.scan("qa", step, sc.coi_code(j.order), site="MF1", run="qa-a"))
    sc.ok(d.scan("qa", step, sc.din_code(j.products[0]), site="MF1", run="qa-a"))
    sc.ok(d.scan("qa2", step, sc.coi_code(j.order), site="MF1", run="qa-b"))
    hasher = auth.make_hasher(settings)
    a_signed, b_pid, results = threading.Event(), {}, {}

    def sign(who, run):  # type: ignore[no-untyped-def]
        return scans.sign_step(
            uow=uow_of[who],
            hasher=hasher,
            settings=settings,
            principal=d.world.principals[who],
            run_key=run,
            password=WORLD_PASSWORD,
            meaning="approval",
            now=d.clock.now(),
        )

    uow_of: dict[str, UnitOfWork] = {}

    def b_pid_ready() -> int:
        for _ in range(500):
            if "pid" in b_pid:
                return int(b_pid["pid"])
            threading.Event().wait(0.01)
        raise AssertionError("QA user B never started")

    def qa_a() -> None:
        with d.new_uow() as uow:
            uow_of["qa"] = uow
            results["a"] = sign("qa", "qa-a")
            a_signed.set()
            # Hold the release open until B is provably waiting for A's lock on the order.
            assert _blocked_on_a_lock(engine, b_pid_ready())
            uow.commit()

    def qa_b() -> None:
        a_signed.wait(10)
        with d.new_uow() as uow:
            uow_of["qa2"] = uow
            b_pid["pid"] = uow.session.scalar(text("SELECT pg_backend_pid()"))
            try:
                results["b"] = sign("qa2", "qa-b")
                uow.commit()
            except TrackerError as exc:
                results["b"] = exc

    with ThreadPoolExecutor(2) as pool:
        for future in [pool.submit(qa_a), pool.submit(qa_b)]:
            future.result(timeout=60)
    assert results["a"].body["status"] == "ok" and results["a"].body["certificate"]
    assert isinstance(results["b"], TrackerError) and results["b"].reason == "wrong_step"
    with d.new_uow() as uow:
        certificates = uow.session.scalar(select(func.count(ReleaseCertificate.id)))
        releases = uow.session.scalars(select(LotRelease)).all()
        status = uow.session.scalar(select(ManufacturingLot.status))
        assert certificates == 1 and len(releases) == 1 and status == "released"
        assert releases[0].kind == "standard"
