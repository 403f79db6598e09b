"""Schedules benchmark on PostgreSQL: 50 sites, a year of capacity, 2,000 active patients.

Measures, each next to a baseline from the same run:

1. planning: ``propose_journey`` over SQL-backed capacity for every patient, against the pure
   planner over the same windows held in memory (``InMemoryCapacity``);
2. booking: ``book_plan`` for every patient, one transaction each (plan, lock, check, reserve,
   steps, deadlines, audit, notifications), against raw SQL inserts of exactly the same rows,
   one transaction per plan, with no planning, locking or checks;
3. 100 concurrent booking requests for the last 10 places of a manufacturing line: exactly 10
   must succeed and no window may exceed its capacity.

The benchmark works in its own schema (``bench_schedules``) of ``TRACKER_BENCH_DATABASE_URL``
(default the local tracker_bench), dropped and rebuilt on each run. Results are printed and
written to bench/results/schedules.json.
"""

from __future__ import annotations

import json
import os
import statistics
import sys
import threading
import time as clock
from collections import Counter
from datetime import UTC
from datetime import date
from datetime import datetime
from datetime import time
from datetime import timedelta
from pathlib import Path
from typing import Any

from alembic import command
from sqlalchemy import Engine
from sqlalchemy import event
from sqlalchemy import func
from sqlalchemy import select
from sqlalchemy import text
from sqlalchemy import update

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from schedules import service  # noqa: E402
from schedules.models import ScheduleResource  # noqa: E402
from schedules.models import WindowRow  # noqa: E402
from schedules.planning import InMemoryCapacity  # noqa: E402
from schedules.planning import JourneySites  # noqa: E402
from schedules.planning import propose_plan  # noqa: E402
from schedules.service import HoursSpec  # noqa: E402
from schedules.slots import CapacityWindow  # noqa: E402
from schedules.slots import Resource  # noqa: E402
from schedules.slots import ResourceKind  # noqa: E402
from tracker import migrate  # noqa: E402
from tracker.config import Settings  # noqa: E402
from tracker.db import make_engine  # noqa: E402
from tracker.db import make_session_factory  # noqa: E402
from tracker.domain.access import Role  # noqa: E402
from tracker.domain.access import SiteKind  # noqa: E402
from tracker.models import Site  # noqa: E402
from tracker.models import TherapyOrder  # noqa: E402
from tracker.services import auth  # noqa: E402
from tracker.services import orders as order_service  # noqa: E402
from tracker.services.principals import principal_for_user  # noqa: E402
from tracker.unit_of_work import UnitOfWork  # noqa: E402

URL = os.environ.get(
    "TRACKER_BENCH_DATABASE_URL",
    "postgresql+psycopg://tracker:tracker@127.0.0.1:5432/tracker_bench",
)
NOW = datetime(2026, 3, 2, 14, tzinfo=UTC)  # a Monday; US and EU summer time start ahead
SCHEMA = "bench_schedules"
PATIENTS = int(os.environ.get("BENCH_SCHEDULES_PATIENTS", "2000"))
CONCURRENT = 100
LAST_PLACES = 10
ZONES = [
    "America/New_York",
    "America/Chicago",
    "America/Los_Angeles",
    "Europe/London",
    "Europe/Berlin",
    "Europe/Amsterdam",
    "Australia/Sydney",
    "Asia/Tokyo",
]
TREATMENT, COLLECTION, MANUFACTURING = 20, 20, 10  # 50 sites
# In foreign-key order, for the raw replay.
PLAN_TABLES = [
    "journey_plans",
    "slot_bookings",
    "booking_windows",
    "plan_steps",
    "plan_deadlines",
]


def timed(fn: Any) -> tuple[Any, float]:
    start = clock.perf_counter()
    result = fn()
    return result, clock.perf_counter() - start


def summary(samples: list[float]) -> dict[str, float]:
    ordered = sorted(samples)
    return {
        "total_s": round(sum(samples), 3),
        "mean_ms": round(1000 * statistics.mean(samples), 2),
        "p50_ms": round(1000 * ordered[len(ordered) // 2], 2),
        "p95_ms": round(1000 * ordered[int(len(ordered) * 0.95)], 2),
    }


def bench_engine(url: str, **kwargs: Any) -> Engine:
    """An engine whose sessions work in the benchmark's own schema.

    Other benchmarks share the database and rebuild ``public``; this one keeps to SCHEMA, so
    two benchmarks running at once do not drop each other's tables.
    """
    engine = make_engine(url, **kwargs)

    @event.listens_for(engine, "connect")
    def _search_path(dbapi_conn: Any, _record: Any) -> None:
        # Outside a transaction, or the rollback that follows would undo the SET.
        dbapi_conn.autocommit = True
        dbapi_conn.execute(f"SET search_path TO {SCHEMA}")
        dbapi_conn.autocommit = False

    return engine


def rebuild(settings: Settings) -> None:
    engine = bench_engine(settings.database_url)
    with engine.begin() as conn:
        conn.execute(text(f"DROP SCHEMA IF EXISTS {SCHEMA} CASCADE"))
        conn.execute(text(f"CREATE SCHEMA {SCHEMA}"))
    engine.dispose()
    engine = bench_engine(settings.database_url)
    config = migrate.alembic_config(settings.database_url)
    with engine.begin() as conn:
        config.attributes["connection"] = conn
        command.upgrade(config, "head")
    engine.dispose()


def setup(factory: Any, settings: Settings) -> dict[str, Any]:
    """50 sites, capacity expanded for 400 days, 2,000 orders; returns what later steps need."""
    with UnitOfWork(factory) as uow:
        sites: dict[str, Site] = {}
        for kind, count, prefix in (
            (SiteKind.treatment_centre, TREATMENT, "T"),
            (SiteKind.collection_centre, COLLECTION, "C"),
            (SiteKind.manufacturing_facility, MANUFACTURING, "M"),
        ):
            for n in range(count):
                code = f"{prefix}{n:02d}"
                sites[code] = order_service.create_site(
                    uow=uow,
                    code=code,
                    name=f"Bench site {code}",
                    kind=kind,
                    timezone=ZONES[n % len(ZONES)],
                    address="",
                    now=NOW,
                )
        admin = auth.create_user(
            uow=uow,
            hasher=auth.make_hasher(settings),
            username="bench-admin",
            full_name="Bench Admin",
            password="bench-password-2026",
            grants=[(Role.admin, None)],
            now=NOW,
        )
        for code, name in (("CD19-FRESH", "Bench CD19"), ("LAST", "Bench last places")):
            order_service.create_product_profile(
                uow=uow,
                code=code,
                name=name,
                product_code="S1001100",
                starting_material="fresh",
                data={},
                now=NOW,
            )
        uow.commit()
        principal = principal_for_user(admin)

    def capacity() -> int:
        with UnitOfWork(factory) as uow:
            specs: list[tuple[str, ResourceKind, str, str | None, int | None, list[HoursSpec]]] = []
            for n in range(COLLECTION):
                hours = [HoursSpec(d, time(8), time(16), 3) for d in range(5)]
                specs.append(
                    (f"C{n:02d}", ResourceKind.apheresis_chair, "Chairs", None, 240, hours)
                )
            for n in range(MANUFACTURING):
                hours = [HoursSpec(d, time(9), time(10), 4) for d in range(5)]
                specs.append(
                    (
                        f"M{n:02d}",
                        ResourceKind.manufacturing_slot,
                        "Line",
                        "CD19-FRESH",
                        None,
                        hours,
                    )
                )
            for n in range(TREATMENT):
                hours = [HoursSpec(d, time(0), time(0), 3) for d in range(6)]
                specs.append((f"T{n:02d}", ResourceKind.infusion_bed, "Beds", None, None, hours))
            added = 0
            for site, kind, name, product, minutes, hours in specs:
                resource = service.define_resource(
                    uow=uow,
                    principal=principal,
                    site_code=site,
                    kind=kind,
                    name=name,
                    product_code=product,
                    slot_minutes=minutes,
                    now=NOW,
                )
                added += service.set_weekly_hours(
                    uow=uow,
                    principal=principal,
                    resource_public_id=resource.public_id,
                    hours=hours,
                    reason="bench capacity",
                    now=NOW,
                ).added
            uow.commit()
            return added

    windows, expand_s = timed(capacity)

    def make_orders() -> list[str]:
        ids: list[str] = []
        for batch in range(0, PATIENTS, 250):
            with UnitOfWork(factory) as uow:
                for i in range(batch, min(PATIENTS, batch + 250)):
                    ids.append(new_order(uow, principal, settings, i, "CD19-FRESH"))
                uow.commit()
        return ids

    order_ids, orders_s = timed(make_orders)
    return {
        "principal": principal,
        "orders": order_ids,
        "windows": windows,
        "expand_s": expand_s,
        "orders_s": orders_s,
    }


def new_order(
    uow: UnitOfWork,
    principal: Any,
    settings: Settings,
    i: int,
    product: str,
    site: int | None = None,
) -> str:
    """Order ``i``; its sites rotate through the 50 unless ``site`` pins them (T, C, M)."""
    t, c, m = (i % TREATMENT, i % COLLECTION, i % MANUFACTURING) if site is None else (site,) * 3
    patient = order_service.register_patient(
        uow=uow,
        principal=principal,
        treatment_site_code=f"T{t:02d}",
        given_name="Bench",
        family_name=f"Patient{i}",
        date_of_birth=date(1970, 1, 1),
        mrn=f"BENCH-{product}-{i}",
        now=NOW,
    )
    order = order_service.create_order(
        uow=uow,
        principal=principal,
        patient_public_id=patient.public_id,
        product_code=product,
        collection_site_code=f"C{c:02d}",
        manufacturing_site_code=f"M{m:02d}",
        coi_fin=settings.coi_issuer_fin,
        now=NOW,
    )
    return order.public_id


def in_memory_capacity(factory: Any) -> InMemoryCapacity:
    """The same windows and counters as the database, held in memory for the pure planner."""
    with UnitOfWork(factory) as uow:
        session = uow.session
        rows = session.execute(
            select(ScheduleResource, Site.code, Site.timezone).join(
                Site, Site.id == ScheduleResource.site_id
            )
        ).all()
        resources = [
            Resource(r.public_id, ResourceKind(r.kind), code, r.product_code) for r, code, _ in rows
        ]
        zones = {code: tz for _, code, tz in rows}
        zones.update(dict(session.execute(select(Site.code, Site.timezone)).all()))
        pid = {r.id: r.public_id for r, _, _ in rows}
        windows = [
            CapacityWindow(pid[rid], start, end, cap)
            for rid, start, end, cap in session.execute(
                select(
                    WindowRow.resource_id,
                    WindowRow.starts_at,
                    WindowRow.ends_at,
                    WindowRow.capacity,
                )
            )
        ]
    return InMemoryCapacity(resources=resources, windows=windows, zones=zones)


def bench_planning(factory: Any, principal: Any, order_ids: list[str]) -> dict[str, Any]:
    sql_times: list[float] = []
    fingerprints: dict[str, str] = {}
    sites: dict[str, tuple[JourneySites, Any]] = {}
    for public_id in order_ids:
        with UnitOfWork(factory) as uow:
            proposal, spent = timed(
                lambda uow=uow, public_id=public_id: service.propose_journey(
                    uow=uow,
                    principal=principal,
                    order_public_id=public_id,
                    earliest_collection=NOW,
                    now=NOW,
                )
            )
            sql_times.append(spent)
            fingerprints[public_id] = proposal.fingerprint
            order = uow.session.scalar(
                select(TherapyOrder).where(TherapyOrder.public_id == public_id)
            )
            profile = service.profile_for(service.current_profile(uow.session, order))
            sites[public_id] = (service._journey_sites(order), profile)
    memory = in_memory_capacity(factory)
    memory_times: list[float] = []
    same = 0
    for public_id in order_ids:
        journey_sites, profile = sites[public_id]
        plan, spent = timed(
            lambda journey_sites=journey_sites, profile=profile: propose_plan(
                profile,
                sites=journey_sites,
                earliest_collection=NOW,
                capacity=memory,
                now=NOW,
            )
        )
        memory_times.append(spent)
        same += service.fingerprint(plan) == fingerprints[public_id]
    sql, mem = summary(sql_times), summary(memory_times)
    return {
        "sql_capacity": sql,
        "in_memory_baseline": mem,
        "ratio": round(sql["total_s"] / mem["total_s"], 2),
        "identical_plans": f"{same}/{len(order_ids)}",
    }


def bench_booking(
    factory: Any, engine: Any, principal: Any, order_ids: list[str]
) -> dict[str, Any]:
    times: list[float] = []
    for public_id in order_ids:
        with UnitOfWork(factory) as uow:

            def book(uow: UnitOfWork = uow, public_id: str = public_id) -> None:
                service.book_plan(
                    uow=uow,
                    principal=principal,
                    order_public_id=public_id,
                    earliest_collection=NOW,
                    now=NOW,
                    tentative=False,
                )
                uow.commit()

            _, spent = timed(book)
            times.append(spent)
    with engine.connect() as conn:
        snapshot = {
            t: [dict(r._mapping) for r in conn.execute(text(f"SELECT * FROM {t} ORDER BY 1"))]
            for t in PLAN_TABLES
        }
        counters = dict(
            conn.execute(text("SELECT id, used FROM capacity_windows WHERE used > 0")).all()
        )
        last_infusion = conn.scalar(
            text("SELECT max(starts_at) FROM plan_steps WHERE kind = 'infusion'")
        )
    baseline = replay_raw(engine, snapshot)
    with engine.connect() as conn:
        replayed = dict(
            conn.execute(text("SELECT id, used FROM capacity_windows WHERE used > 0")).all()
        )
    service_summary, raw = summary(times), summary(baseline)
    return {
        "service": service_summary,
        "raw_insert_baseline": raw,
        "ratio": round(service_summary["total_s"] / raw["total_s"], 2),
        "rows_per_plan": {t: round(len(rows) / len(order_ids), 2) for t, rows in snapshot.items()},
        "baseline_counters_match": replayed == counters,
        "last_infusion": last_infusion.isoformat() if last_infusion else None,
    }


def replay_raw(engine: Any, snapshot: dict[str, list[dict[str, Any]]]) -> list[float]:
    """Insert the service's rows again with plain SQL, one transaction per plan."""
    with engine.begin() as conn:
        conn.execute(text(f"TRUNCATE {', '.join(PLAN_TABLES)} RESTART IDENTITY CASCADE"))
        conn.execute(text("UPDATE capacity_windows SET used = 0 WHERE used > 0"))
    by_plan: dict[int, dict[str, list[dict[str, Any]]]] = {}
    bookings_plan = {b["id"]: b["plan_id"] for b in snapshot["slot_bookings"]}
    for table, rows in snapshot.items():
        for row in rows:
            plan = (
                row["id"]
                if table == "journey_plans"
                else (
                    bookings_plan[row["booking_id"]]
                    if table == "booking_windows"
                    else row["plan_id"]
                )
            )
            by_plan.setdefault(plan, {}).setdefault(table, []).append(row)
    statements = {}
    for table, rows in snapshot.items():
        columns = list(rows[0])
        statements[table] = text(
            f"INSERT INTO {table} ({', '.join(columns)}) "
            f"VALUES ({', '.join(':' + c for c in columns)})"
        )
    bump = text("UPDATE capacity_windows SET used = used + :units WHERE id = :id")
    times: list[float] = []
    units = {b["id"]: b["units"] for b in snapshot["slot_bookings"]}
    for plan_rows in by_plan.values():
        start = clock.perf_counter()
        with engine.begin() as conn:
            for table in PLAN_TABLES:
                rows = plan_rows.get(table, [])
                if not rows:
                    continue
                if table in ("journey_plans",):
                    rows = [{**r, "explanations": json.dumps(r["explanations"])} for r in rows]
                conn.execute(statements[table], rows)
            conn.execute(
                bump,
                [
                    {"id": r["window_id"], "units": units[r["booking_id"]]}
                    for r in plan_rows.get("booking_windows", [])
                ],
            )
        times.append(clock.perf_counter() - start)
    with engine.begin() as conn:  # explicit ids were inserted: move the sequences past them
        for table in PLAN_TABLES:
            if table != "booking_windows":
                conn.execute(
                    text(
                        f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), "
                        f"(SELECT coalesce(max(id), 1) FROM {table}))"
                    )
                )
    return times


def bench_last_places(
    factory: Any, engine: Any, settings: Settings, principal: Any
) -> dict[str, Any]:
    """100 concurrent requests for the last 10 places of a dedicated manufacturing line."""
    with UnitOfWork(factory) as uow:
        line = service.define_resource(
            uow=uow,
            principal=principal,
            site_code="M00",
            kind=ResourceKind.manufacturing_slot,
            name="Last places line",
            product_code="LAST",
            now=NOW,
        )
        service.set_weekly_hours(
            uow=uow,
            principal=principal,
            resource_public_id=line.public_id,
            hours=[HoursSpec(2, time(9), time(10), 12)],  # Wednesdays
            reason="bench last places",
            now=NOW,
        )
        order_ids = [
            new_order(uow, principal, settings, 10_000 + i, "LAST", site=0)
            for i in range(CONCURRENT)
        ]
        uow.commit()
        line_id = line.id
    with UnitOfWork(factory) as uow:
        # One Wednesday keeps room, 10 of its 12 places; every other one of the year is full.
        # It lies past the weeks the 2,000 booked plans filled, so chairs and beds are free.
        first = uow.session.scalar(
            select(func.min(WindowRow.id)).where(
                WindowRow.resource_id == line_id, WindowRow.starts_at > NOW + timedelta(days=70)
            )
        )
        uow.session.execute(
            update(WindowRow).where(WindowRow.resource_id == line_id).values(capacity=0)
        )
        uow.session.execute(
            update(WindowRow)
            .where(WindowRow.id == first)
            .values(capacity=12, used=12 - LAST_PLACES)
        )
        # Chairs at C00 and beds at T00 get room for every request, so that the manufacturing
        # line's last places are the only thing the requests compete for.
        spare = list(
            uow.session.scalars(
                select(ScheduleResource.id)
                .join(Site, Site.id == ScheduleResource.site_id)
                .where(Site.code.in_(["C00", "T00"]))
            )
        )
        uow.session.execute(
            update(WindowRow)
            .where(
                WindowRow.resource_id.in_(spare),
                WindowRow.starts_at > NOW + timedelta(days=50),
                WindowRow.starts_at < NOW + timedelta(days=150),
            )
            .values(capacity=WindowRow.capacity + 2 * CONCURRENT)
        )
        uow.commit()
    pool = bench_engine(settings.database_url, pool_size=40, max_overflow=0)
    threaded = make_session_factory(pool)
    barrier = threading.Barrier(CONCURRENT)
    results: list[Any] = [None] * CONCURRENT

    def request(i: int) -> None:
        barrier.wait()
        try:
            with UnitOfWork(threaded) as uow:
                plan = service.book_plan(
                    uow=uow,
                    principal=principal,
                    order_public_id=order_ids[i],
                    earliest_collection=NOW,
                    now=NOW,
                    tentative=False,
                )
                uow.commit()
                results[i] = plan.public_id
        except service.TrackerError as exc:
            results[i] = exc.reason
        except Exception as exc:  # reported, and fails the run below
            results[i] = f"unexpected {type(exc).__name__}: {exc}"

    threads = [threading.Thread(target=request, args=(i,)) for i in range(CONCURRENT)]
    start = clock.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = clock.perf_counter() - start
    pool.dispose()
    outcomes = Counter("booked" if str(r).startswith("PLN-") else r for r in results)
    with engine.connect() as conn:
        used, capacity = conn.execute(
            text("SELECT used, capacity FROM capacity_windows WHERE id = :id"), {"id": first}
        ).one()
        over = conn.scalar(text("SELECT count(*) FROM capacity_windows WHERE used > capacity"))
    return {
        "requests": CONCURRENT,
        "places": LAST_PLACES,
        "outcomes": dict(outcomes),
        "window_used_of_capacity": f"{used}/{capacity}",
        "windows_over_capacity": over,
        "wall_s": round(wall, 3),
        "ok": outcomes["booked"] == LAST_PLACES and over == 0 and used == capacity,
    }


def main() -> int:
    settings = Settings(
        env="test",
        database_url=URL,
        secret_key="bench-secret-key",  # type: ignore[arg-type]
        argon2_time_cost=1,
        argon2_memory_cost=1024,
    )
    rebuild(settings)
    engine = bench_engine(settings.database_url)
    factory = make_session_factory(engine)
    world, setup_s = timed(lambda: setup(factory, settings))
    print(
        f"setup: 50 sites, {world['windows']} capacity windows for 400 days "
        f"(expanded in {world['expand_s']:.1f} s), {PATIENTS} orders in {world['orders_s']:.1f} s",
        flush=True,
    )
    planning = bench_planning(factory, world["principal"], world["orders"])
    print("planning", json.dumps(planning), flush=True)
    booking = bench_booking(factory, engine, world["principal"], world["orders"])
    print("booking", json.dumps(booking), flush=True)
    last = bench_last_places(factory, engine, settings, world["principal"])
    print("last places", json.dumps(last), flush=True)
    with engine.connect() as conn:
        over = conn.scalar(select(func.count()).where(WindowRow.used > WindowRow.capacity))
    engine.dispose()
    results = {
        "sites": 50,
        "capacity_windows": world["windows"],
        "patients": PATIENTS,
        "planning": planning,
        "booking": booking,
        "last_places": last,
        "windows_over_capacity": over,
    }
    out = ROOT / "bench" / "results"
    out.mkdir(parents=True, exist_ok=True)
    (out / "schedules.json").write_text(json.dumps(results, indent=2, default=str))
    print(
        "\nschedules benchmark\n"
        f"  planning  {planning['sql_capacity']['mean_ms']:>8} ms/plan (SQL capacity)   "
        f"baseline {planning['in_memory_baseline']['mean_ms']} ms/plan (in memory)   "
        f"ratio {planning['ratio']}x   identical plans {planning['identical_plans']}\n"
        f"  booking   {booking['service']['mean_ms']:>8} ms/plan (service, p95 "
        f"{booking['service']['p95_ms']})   baseline {booking['raw_insert_baseline']['mean_ms']} "
        f"ms/plan (raw inserts)   ratio {booking['ratio']}x\n"
        f"  last {LAST_PLACES} places, {CONCURRENT} concurrent requests: {last['outcomes']} "
        f"in {last['wall_s']} s; window {last['window_used_of_capacity']}"
    )
    ok = last["ok"] and over == 0 and booking["baseline_counters_match"]
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
