"""Logger readings through the API, next to a PostgreSQL COPY of the same rows; and the time
from a reading to its SMS reaching a (fake) Twilio endpoint.

Run: .venv/bin/python bench/bench_alerts.py [readings_per_logger]

Uses its own database, tracker_bench_alerts (created if missing, schema rebuilt each run), on
the server named by TRACKER_BENCH_ALERTS_DATABASE_URL or TRACKER_BENCH_DATABASE_URL. The app
runs under gunicorn (2 workers x 4 threads) and the worker process sends SMS to a loopback
fake Twilio, as in production with TRACKER_TWILIO_API_BASE_URL pointing elsewhere.

- Throughput: batches of BATCH readings POSTed with logger device tokens (in range, so the
  fast path: insert + rule check, no evaluation), by 1 client and by CLIENTS clients at once;
  baseline: a binary COPY of the same number of rows into the same table (same indexes,
  foreign key and trigger), from one connection. ROUNDS rounds interleave the three so a
  noisy machine hurts them alike; medians are reported.
- Latency: a batch whose readings breach the alarm rule; from just before the POST (and from
  the committed response) until the fake Twilio receives the courier's text.
"""

from __future__ import annotations

import http.client
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import threading
import time
from datetime import UTC
from datetime import date
from datetime import datetime
from datetime import timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import psycopg  # noqa: E402
from sqlalchemy.engine import make_url  # noqa: E402

from tests.fake_twilio import ACCOUNT  # noqa: E402
from tests.fake_twilio import SERVICE  # noqa: E402
from tests.fake_twilio import FakeTwilioServer  # noqa: E402

BATCH = 5000
CLIENTS = 4
LOGGERS = 4  # per measurement
ROUNDS = 3
TRIALS = 40
DEFAULT_URL = "postgresql+psycopg://tracker:tracker@127.0.0.1:5432/tracker_bench_alerts"
BIN = Path(sys.executable).parent


def database_url() -> str:
    url = os.environ.get("TRACKER_BENCH_ALERTS_DATABASE_URL")
    if url:
        return url
    shared = os.environ.get("TRACKER_BENCH_DATABASE_URL")
    if shared:
        # Another benchmark owns that database; ours sits next to it on the same server.
        return make_url(shared).set(database="tracker_bench_alerts").render_as_string(False)
    return DEFAULT_URL


def libpq(url: str, database: str | None = None) -> str:
    u = make_url(url).set(drivername="postgresql")
    if database:
        u = u.set(database=database)
    return u.render_as_string(hide_password=False)


def fresh_database(url: str) -> None:
    name = make_url(url).database
    with psycopg.connect(libpq(url, "postgres"), autocommit=True) as conn:
        if conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone() is None:
            conn.execute(f'CREATE DATABASE "{name}"')
    with psycopg.connect(libpq(url), autocommit=True) as conn:
        conn.execute("DROP SCHEMA public CASCADE")
        conn.execute("CREATE SCHEMA public")
    from tracker import migrate

    migrate.upgrade(url)


def seed(url: str, now: datetime) -> dict[str, Any]:
    """Sites, people, loggers with device tokens, and one shipment per latency trial."""
    from tracker.config import Settings
    from tracker.db import make_engine
    from tracker.db import make_session_factory
    from tracker.domain.access import Role
    from tracker.domain.access import SiteKind
    from tracker.domain.custody import CustodyState as S
    from tracker.domain.custody import ItemKind
    from tracker.services import auth
    from tracker.services import custody
    from tracker.services import orders
    from tracker.services import readings
    from tracker.services.principals import principal_for_user
    from tracker.unit_of_work import UnitOfWork

    settings = Settings(database_url=url, argon2_time_cost=1, argon2_memory_cost=1024)
    engine = make_engine(url)
    factory = make_session_factory(engine)
    hasher = auth.make_hasher(settings)
    out: dict[str, Any] = {"sets": [], "trials": []}
    with UnitOfWork(factory) as uow:
        sites = {
            code: orders.create_site(
                uow=uow,
                code=code,
                name=name,
                kind=kind,
                timezone="UTC",
                address="1 Bench Rd",
                now=now,
            )
            for code, name, kind in (
                ("CC", "Bench Collection", SiteKind.collection_centre),
                ("MF", "Bench Manufacturing", SiteKind.manufacturing_facility),
                ("TC", "Bench Treatment", SiteKind.treatment_centre),
            )
        }
        admin = principal_for_user(
            auth.create_user(
                uow=uow,
                hasher=hasher,
                username="admin",
                full_name="Bench Admin",
                password="bench-password",
                grants=[(Role.admin, None)],
                now=now,
            )
        )
        coord = principal_for_user(
            auth.create_user(
                uow=uow,
                hasher=hasher,
                username="coord",
                full_name="Bench Coordinator",
                password="bench-password",
                grants=[(Role.coordinator, sites["CC"].id), (Role.coordinator, sites["TC"].id)],
                now=now,
            )
        )
        orders.create_product_profile(
            uow=uow,
            code="BENCH",
            name="Bench product",
            product_code="S1000000",
            starting_material="cryopreserved",
            data={"storage_max_c": -150},
            now=now,
        )

        def logger(serial: str, placement: str) -> str:
            issued = auth.register_device(
                uow=uow,
                name=serial,
                kind="logger",
                site_id=sites["MF"].id,
                now=now,
                actor_user_id=admin.user_id,
            )
            readings.register_logger(
                uow=uow,
                principal=admin,
                serial=serial,
                site_code="MF",
                placement=placement,
                profile="cryogenic",
                expected_interval=timedelta(minutes=5),
                limit_c=-150.0,
                device_public_id=issued.device.public_id,
                now=now,
            )
            return issued.token

        # One set of loggers per measurement, so no measurement meets another's rows.
        for s in range(ROUNDS * 3):
            out["sets"].append(
                [
                    (f"BENCH-{s:02d}-{n}", logger(f"BENCH-{s:02d}-{n}", "storage"))
                    for n in range(LOGGERS)
                ]
            )
        for n in range(TRIALS):
            courier = auth.create_user(
                uow=uow,
                hasher=hasher,
                username=f"courier{n}",
                full_name=f"Courier {n}",
                password="bench-password",
                grants=[(Role.courier, sites["CC"].id)],
                now=now,
                phone=f"+1555200{n:04d}",
            )
            patient = orders.register_patient(
                uow=uow,
                principal=coord,
                treatment_site_code="TC",
                given_name="Bench",
                family_name=f"Patient{n}",
                date_of_birth=date(1970, 1, 1),
                mrn=f"MRN-B{n}",
                now=now,
            )
            order = orders.create_order(
                uow=uow,
                principal=coord,
                patient_public_id=patient.public_id,
                product_code="BENCH",
                collection_site_code="CC",
                manufacturing_site_code="MF",
                coi_fin="W9999",
                now=now,
            )
            bag = custody.register_bag(
                uow=uow,
                principal=coord,
                order_public_id=order.public_id,
                kind=ItemKind.apheresis_bag,
                now=now,
            )
            serial = f"TRIP-{n:03d}"
            shipment = custody.create_shipment(
                uow=uow,
                principal=coord,
                order_public_id=order.public_id,
                origin_code="CC",
                destination_code="MF",
                item_public_ids=[bag.public_id],
                courier_user_id=courier.id,
                logger_serial=serial,
                now=now,
            )
            for to in (S.packed, S.picked_up):
                custody.change_shipment_state(
                    uow=uow,
                    principal=coord,
                    shipment_public_id=shipment.public_id,
                    to_state=to,
                    now=now - timedelta(hours=2),
                )
            token = logger(serial, "shipment")
            out["trials"].append((serial, token, courier.phone))
        uow.commit()
    with psycopg.connect(libpq(url)) as conn:
        ids = dict(conn.execute("SELECT serial, id FROM loggers").fetchall())
    out["ids"] = ids
    engine.dispose()
    return out


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_http(port: int, path: str = "/healthz", timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=1)
            conn.request("GET", path)
            if conn.getresponse().status == 200:
                return
        except OSError:
            time.sleep(0.2)
    raise RuntimeError("the app did not start")


def bodies_for(
    serials: list[tuple[str, str]], per_logger: int, start: datetime
) -> list[list[tuple[str, bytes]]]:
    """Per logger, its batches in time order as (token, JSON body): in-range, 5 min apart."""
    out = []
    for serial, token in serials:
        mine = []
        out.append(mine)
        for first in range(0, per_logger, BATCH):
            batch = [
                {
                    "at": (start + timedelta(minutes=5 * i)).isoformat(),
                    "celsius": -185.0 + (i % 7) * 0.5,
                }
                for i in range(first, min(first + BATCH, per_logger))
            ]
            mine.append((token, json.dumps({"serial": serial, "readings": batch}).encode()))
    return out


def post(conn: http.client.HTTPConnection, token: str, body: bytes) -> dict[str, Any]:
    conn.request(
        "POST",
        "/api/v1/logger-readings",
        body=body,
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
    )
    resp = conn.getresponse()
    data = json.loads(resp.read())
    if resp.status != 200:
        raise RuntimeError(f"{resp.status}: {data}")
    return data


def run_clients(
    port: int, per_logger: list[list[tuple[str, bytes]]], clients: int
) -> tuple[float, int]:
    """Each client posts whole loggers, each logger's batches in time order (as loggers do)."""
    queue = list(per_logger)
    lock = threading.Lock()
    accepted = [0]

    def client() -> None:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
        while True:
            with lock:
                if not queue:
                    return
                batches = queue.pop(0)
            for token, body in batches:
                result = post(conn, token, body)
                with lock:
                    accepted[0] += result["accepted"]

    threads = [threading.Thread(target=client) for _ in range(clients)]
    start = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return time.perf_counter() - start, accepted[0]


def copy_rows(
    url: str, ids: dict[str, int], serials: list[str], per_logger: int, start: datetime
) -> float:
    received = datetime.now(UTC)
    with psycopg.connect(libpq(url)) as conn:
        began = time.perf_counter()
        with (
            conn.cursor() as cur,
            cur.copy(
                "COPY logger_readings (logger_id, at, celsius, received_at)"
                " FROM STDIN (FORMAT BINARY)"
            ) as copy,
        ):
            copy.set_types(["int4", "timestamptz", "float8", "timestamptz"])
            for serial in serials:
                lid = ids[serial]
                for i in range(per_logger):
                    copy.write_row(
                        (lid, start + timedelta(minutes=5 * i), -185.0 + (i % 7) * 0.5, received)
                    )
        conn.commit()
        return time.perf_counter() - began


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(p / 100 * len(ordered) + 0.5) - 1))]


def main() -> int:
    per_logger = int(sys.argv[1]) if len(sys.argv) > 1 else 25_000
    url = database_url()
    print(f"database: {make_url(url).render_as_string(hide_password=True)}")
    fresh_database(url)
    now = datetime.now(UTC).replace(microsecond=0)
    seeded = seed(url, now)
    port = free_port()
    procs: list[subprocess.Popen[bytes]] = []
    with FakeTwilioServer() as twilio:
        env = {
            **os.environ,
            "PYTHONPATH": str(ROOT),
            "TRACKER_DATABASE_URL": url,
            "TRACKER_TWILIO_ACCOUNT_SID": ACCOUNT,
            "TRACKER_TWILIO_AUTH_TOKEN": "bench-token",
            "TRACKER_TWILIO_MESSAGING_SERVICE_SID": SERVICE,
            "TRACKER_TWILIO_API_BASE_URL": twilio.url,
            "GUNICORN_BIND": f"127.0.0.1:{port}",
            "GUNICORN_WORKERS": "2",
            "GUNICORN_THREADS": "4",
        }
        try:
            procs.append(
                subprocess.Popen(
                    [
                        str(BIN / "gunicorn"),
                        "-c",
                        "gunicorn.conf.py",
                        "--access-logfile",
                        "/dev/null",
                        "wsgi:app",
                    ],
                    cwd=ROOT,
                    env=env,
                    stderr=subprocess.DEVNULL,
                    start_new_session=True,
                )
            )
            procs.append(
                subprocess.Popen(
                    [sys.executable, "-m", "flask", "--app", "wsgi", "tracker", "worker"],
                    cwd=ROOT,
                    env=env,
                    stderr=subprocess.DEVNULL,
                    start_new_session=True,
                )
            )
            wait_http(port)
            time.sleep(2)  # let the worker become leader and start listening

            total = per_logger * LOGGERS
            start = now - timedelta(minutes=5 * per_logger)
            rates: dict[str, list[float]] = {"copy": [], "one": [], "many": []}
            sets = iter(seeded["sets"])
            for _ in range(ROUNDS):
                copy_s = copy_rows(
                    url, seeded["ids"], [s for s, _ in next(sets)], per_logger, start
                )
                rates["copy"].append(total / copy_s)
                for name, clients in (("one", 1), ("many", CLIENTS)):
                    jobs = bodies_for(next(sets), per_logger, start)
                    took, accepted = run_clients(port, jobs, clients)
                    assert accepted == total, (accepted, total)
                    rates[name].append(total / took)
            copy_rate = statistics.median(rates["copy"])
            print(
                f"\nreadings ingested ({total:,} rows per measurement, batches of {BATCH:,}, "
                f"median of {ROUNDS} interleaved rounds):"
            )
            rows = (
                ("PostgreSQL binary COPY, 1 connection", "copy"),
                ("API, 1 client", "one"),
                (f"API, {CLIENTS} clients", "many"),
            )
            for label, key in rows:
                rate = statistics.median(rates[key])
                spread = ", ".join(f"{r:,.0f}" for r in rates[key])
                share = "baseline" if key == "copy" else f"{rate / copy_rate:.0%} of COPY"
                print(f"  {label:<38}{rate:>10,.0f} rows/s  ({share}; rounds: {spread})")

            from_send: list[float] = []
            from_commit: list[float] = []
            for serial, token, phone in seeded["trials"]:
                t0 = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=30)
                batch = [
                    {"at": (t0 + timedelta(minutes=5 * i)).isoformat(), "celsius": -120.0}
                    for i in range(5)
                ]
                body = json.dumps({"serial": serial, "readings": batch}).encode()
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
                sent = time.time()
                result = post(conn, token, body)
                committed = time.time()
                if not result["alerts"]:
                    raise RuntimeError(f"no alert raised for {serial}")
                deadline = time.monotonic() + 15
                while time.monotonic() < deadline:
                    with twilio.lock:
                        arrived = [a for a, to, _ in twilio.arrivals if to == phone]
                    if arrived:
                        break
                    time.sleep(0.002)
                else:
                    raise RuntimeError(f"no SMS for {serial} within 15 s")
                from_send.append(arrived[0] - sent)
                from_commit.append(arrived[0] - committed)
            print(f"\nreading -> SMS handed to (fake) Twilio, {TRIALS} alarms:")
            for name, values in (("from POST sent", from_send), ("from response", from_commit)):
                print(
                    f"  {name:<16} p50 {statistics.median(values) * 1000:7.1f} ms"
                    f"   p99 {percentile(values, 99) * 1000:7.1f} ms"
                    f"   max {max(values) * 1000:7.1f} ms"
                )
        finally:
            for proc in procs:
                if proc.poll() is None:
                    os.killpg(proc.pid, signal.SIGTERM)
            for proc in procs:
                try:
                    proc.wait(15)
                except subprocess.TimeoutExpired:
                    os.killpg(proc.pid, signal.SIGKILL)
    return 0


if __name__ == "__main__":
    sys.exit(main())
