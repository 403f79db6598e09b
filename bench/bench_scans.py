"""Scan throughput: 16 concurrent scanners against gunicorn on PostgreSQL, next to the same
database work issued directly with psycopg in the same run.

Run: TRACKER_BENCH_DATABASE_URL=postgresql+psycopg://tracker:tracker@127.0.0.1:5432/tracker_bench \\
     .venv/bin/python bench/bench_scans.py [orders_per_scanner]

The database is emptied and migrated first (it is the bench database, nothing else). Each
scanner works through its own orders, each with two registered bags whose labels were printed,
the way a collection nurse does: "confirm labels applied" (wristband, bag, bag: the last scan
completes the step and labels both bags), one wrong-patient bag (refused, stored), then
"collection complete" (wristband, bag, bag). That is 7 scans per order: 2 start a step, 2
complete one (four custody transitions with hash-chained events, audit rows and deadlines),
1 is refused, 2 are plain accepts. Every answer is checked against the expected one.

The baseline (``Direct``) issues, scan for scan, the statements the app issues (listed
in-process for one order through the Flask test client and compared by verb and table; the
bench prints any difference), with psycopg and 16 threads, each on its own connection. The
app adds HTTP, Flask, session cookies, validation and the ORM on top.

CPU per scan is printed for the load generator (this process: 16 threads of http.client),
gunicorn, and the whole machine (PostgreSQL and anything else running): on a small shared
machine the load generator and the database compete with the app for the same cores.
``bench/profile_scan.py`` shows where a scan's time goes.
"""

from __future__ import annotations

import http.client
import json
import os
import re
import signal
import socket
import statistics
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter
from dataclasses import dataclass
from datetime import UTC
from datetime import date
from datetime import datetime
from datetime import timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import psycopg  # noqa: E402
from sqlalchemy import event  # noqa: E402
from sqlalchemy import text  # noqa: E402

from tracker import migrate  # noqa: E402
from tracker.config import Settings  # noqa: E402
from tracker.db import make_engine  # noqa: E402
from tracker.db import make_session_factory  # noqa: E402
from tracker.domain import chain  # noqa: E402
from tracker.domain.access import Role  # noqa: E402
from tracker.domain.access import SiteKind  # noqa: E402
from tracker.domain.custody import ItemKind  # noqa: E402
from tracker.domain.identifiers import din_barcode_data  # noqa: E402
from tracker.domain.journey import default_journey  # noqa: E402
from tracker.domain.journey import journey_to_data  # noqa: E402
from tracker.services import auth  # noqa: E402
from tracker.services import custody  # noqa: E402
from tracker.services import labels  # noqa: E402
from tracker.services import orders  # noqa: E402
from tracker.services.principals import principal_for_user  # noqa: E402
from tracker.unit_of_work import UnitOfWork  # noqa: E402

SCANNERS = 16
PASSWORD = "bench-password-2026"
URL = os.environ.get(
    "TRACKER_BENCH_DATABASE_URL",
    "postgresql+psycopg://tracker:tracker@127.0.0.1:5432/tracker_bench",
)
GUNICORN_WORKERS = int(os.environ.get("BENCH_GUNICORN_WORKERS", "2"))
GUNICORN_THREADS = int(os.environ.get("BENCH_GUNICORN_THREADS", "4"))
# A person scans every few seconds; 250 ms per scanner is ten times faster than that.
PACE = float(os.environ.get("BENCH_PACE_SECONDS", "0.25"))
# The closed-loop measurement alternates app and baseline this many times.
ROUNDS = int(os.environ.get("BENCH_ROUNDS", "3"))


@dataclass
class Work:
    """One order a scanner works through: its wristband, its bags, and someone else's bag."""

    order_id: int
    coi: str
    wristband: str
    bags: list[str]  # barcode data
    bag_ids: list[int]
    intruder: str = ""


def reset(settings: Settings) -> None:
    engine = make_engine(settings.database_url)
    with engine.begin() as conn:
        conn.execute(text("DROP SCHEMA public CASCADE"))
        conn.execute(text("CREATE SCHEMA public"))
    engine.dispose()
    migrate.upgrade(settings.database_url)


def seed(
    settings: Settings, per_scanner: int, scanners: int = SCANNERS
) -> tuple[list[str], list[str], dict]:
    """Sites, nurses with a scanner each, a profile whose journey starts at labelling."""
    engine = make_engine(settings.database_url)
    factory = make_session_factory(engine)
    now = datetime.now(UTC)
    hasher = auth.make_hasher(settings)
    journey = journey_to_data(default_journey("fresh"))
    journey["start"] = ["collect_label_bags"]  # the bench skips the identity question
    work: dict[str, dict[int, list[Work]]] = {"app": {}, "paced": {}, "direct": {}}
    with UnitOfWork(factory) as uow:
        sites = {
            code: orders.create_site(
                uow=uow, code=code, name=code, kind=kind, timezone="UTC", address="", now=now
            )
            for code, kind in [
                ("CC", SiteKind.collection_centre),
                ("TC", SiteKind.treatment_centre),
                ("MF", SiteKind.manufacturing_facility),
            ]
        }
        coordinator = auth.create_user(
            uow=uow,
            hasher=hasher,
            username="coordinator",
            full_name="Coordinator",
            password=PASSWORD,
            grants=[(Role.coordinator, sites["TC"].id), (Role.collection_nurse, sites["CC"].id)],
            now=now,
        )
        nurses, devices = [], []
        for n in range(scanners):
            auth.create_user(
                uow=uow,
                hasher=hasher,
                username=f"nurse{n:02d}",
                full_name=f"Nurse {n}",
                password=PASSWORD,
                grants=[(Role.collection_nurse, sites["CC"].id)],
                now=now,
            )
            nurses.append(f"nurse{n:02d}")
            devices.append(
                auth.register_device(
                    uow=uow,
                    name=f"Scanner {n}",
                    kind="scanner",
                    site_id=sites["CC"].id,
                    now=now,
                    actor_user_id=None,
                ).device.public_id
            )
        orders.create_product_profile(
            uow=uow,
            code="BENCH",
            name="Bench",
            product_code="S1001100",
            starting_material="fresh",
            data={"journey": journey},
            now=now,
        )
        uow.commit()
        principal = principal_for_user(coordinator)
        label_ctx = labels.LabelContext.from_settings(settings)
        for phase in ("app", "paced", "direct"):
            for n in range(scanners):
                work[phase][n] = []
                for i in range(per_scanner if phase != "paced" else max(2, per_scanner // 2)):
                    patient = orders.register_patient(
                        uow=uow,
                        principal=principal,
                        treatment_site_code="TC",
                        given_name="Bench",
                        family_name=f"P{n}-{i}",
                        date_of_birth=date(1970, 1, 1),
                        mrn=f"{phase}-{n}-{i}",
                        now=now,
                    )
                    order = orders.create_order(
                        uow=uow,
                        principal=principal,
                        patient_public_id=patient.public_id,
                        product_code="BENCH",
                        collection_site_code="CC",
                        manufacturing_site_code="MF",
                        coi_fin="W9999",
                        now=now,
                    )
                    bags = [
                        custody.register_bag(
                            uow=uow,
                            principal=principal,
                            order_public_id=order.public_id,
                            kind=ItemKind.apheresis_bag,
                            now=now,
                        )
                        for _ in range(2)
                    ]
                    for bag in bags:
                        # "Label applied" needs a successful print (custody refuses it
                        # otherwise): print each bag's label, as ZPL text (cheap to render).
                        labels.print_label(
                            uow=uow,
                            principal=principal,
                            ctx=label_ctx,
                            kind=labels.label_kinds_for(bag.kind)[0],
                            target_public_id=bag.public_id,
                            now=now,
                            output="zpl",
                        )
                    work[phase][n].append(
                        Work(
                            order.id,
                            order.coi,
                            patient.wristband_code,
                            [din_barcode_data(b.din, "00") for b in bags],
                            [b.id for b in bags],
                        )
                    )
                uow.commit()
            # Each scanner's wrong-patient attempt uses the next scanner's bag.
            for n in range(scanners):
                for i, w in enumerate(work[phase][n]):
                    w.intruder = work[phase][(n + 1) % scanners][i].bags[0]
    engine.dispose()
    return nurses, devices, work


def plan(w: Work) -> list[tuple[str, str, str]]:
    """(step, raw, expected status) for one order, in order."""
    return [
        ("collect_label_bags", w.wristband, "incomplete"),
        ("collect_label_bags", w.bags[0], "incomplete"),
        ("collect_label_bags", w.intruder, "error"),
        ("collect_label_bags", w.bags[1], "ok"),
        ("collect_bags", w.wristband, "incomplete"),
        ("collect_bags", w.bags[0], "incomplete"),
        ("collect_bags", w.bags[1], "ok"),
    ]


# ---------------------------------------------------------------------------------------------
# The app under gunicorn
# ---------------------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_gunicorn(port: int) -> subprocess.Popen[bytes]:
    env = {
        **os.environ,
        "TRACKER_DATABASE_URL": URL,
        "TRACKER_SECRET_KEY": "bench-secret-key-not-for-production",
        "GUNICORN_BIND": f"127.0.0.1:{port}",
        "GUNICORN_WORKERS": str(GUNICORN_WORKERS),
        "GUNICORN_THREADS": str(GUNICORN_THREADS),
        "PYTHONPATH": str(ROOT),
    }
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "gunicorn",
            "-c",
            "gunicorn.conf.py",
            "--access-logfile",
            "/dev/null",
            "--error-logfile",
            "-",
            "--log-level",
            "warning",
            # No worker recycling in the middle of a measurement.
            "--max-requests",
            "0",
            "wsgi:app",
        ],
        cwd=ROOT,
        env=env,
        start_new_session=True,
    )
    for _ in range(200):
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return proc
        except OSError:
            time.sleep(0.05)
    raise RuntimeError("gunicorn did not start")


class Client:
    """One scanner: a logged-in session on a kept-alive connection."""

    def __init__(self, port: int, username: str) -> None:
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        self.cookies: dict[str, str] = {}
        self.reconnects = 0
        page = self.request("GET", "/login")
        token = re.search(r'name="csrf_token" value="([^"]+)"', page).group(1)
        form = f"username={username}&password={PASSWORD}&csrf_token={token}&next="
        self.request("POST", "/login", form, "application/x-www-form-urlencoded")
        page = self.request("GET", "/scan/")
        self.csrf = re.search(r'"X-CSRFToken": "([^"]+)"', page).group(1)

    def request(
        self,
        method: str,
        path: str,
        body: str | None = None,
        content_type: str = "application/json",
    ) -> str:
        headers = {"Cookie": "; ".join(f"{k}={v}" for k, v in self.cookies.items())}
        if body is not None:
            headers["Content-Type"] = content_type
        if hasattr(self, "csrf"):
            headers["X-CSRFToken"] = self.csrf
        for attempt in range(3):
            try:
                self.conn.request(method, path, body=body, headers=headers)
                response = self.conn.getresponse()
                data = response.read().decode()
                break
            except (ConnectionError, http.client.HTTPException):
                # The server closed an idle kept-alive connection: reconnect and resend (a
                # scan resent with its nonce is answered once, as the handhelds rely on).
                self.conn.close()
                self.reconnects += 1
                if attempt == 2:
                    raise
        for header in response.headers.get_all("Set-Cookie") or []:
            name, _, rest = header.partition("=")
            self.cookies[name] = rest.split(";", 1)[0]
        self.status = response.status
        return data


def run_app(
    port: int,
    nurses: list[str],
    devices: list[str],
    work: dict,
    pace: float | None = None,
    server_pgid: int | None = None,
) -> dict:
    """Every scanner scans as fast as answers come (closed loop), or one scan every ``pace``
    seconds (a paced load: the answer time is then latency, not queueing)."""
    clients = [Client(port, nurses[n]) for n in range(SCANNERS)]
    latencies: list[list[float]] = [[] for _ in range(SCANNERS)]
    surprises: list[str] = []
    barrier = threading.Barrier(SCANNERS + 1)

    def scanner(n: int) -> None:
        client = clients[n]
        barrier.wait()
        next_at = time.perf_counter() + (pace or 0) * n / SCANNERS  # spread the scanners
        for w in work[n]:
            run = {"collect_label_bags": str(uuid.uuid4()), "collect_bags": str(uuid.uuid4())}
            for step, raw, expected in plan(w):
                body = json.dumps(
                    {
                        "raw": raw,
                        "device": devices[n],
                        "step": step,
                        "client_at": datetime.now(UTC).isoformat(),
                        "nonce": str(uuid.uuid4()),
                        "run": run[step],
                    }
                )
                if pace:
                    time.sleep(max(0.0, next_at - time.perf_counter()))
                    next_at += pace
                start = time.perf_counter()
                answer = client.request("POST", "/api/v1/scans", body)
                latencies[n].append(time.perf_counter() - start)
                status = json.loads(answer)["status"]
                if status != expected:
                    surprises.append(f"{step} {expected} -> {answer[:160]}")

    return _timed(scanner, barrier, latencies, surprises, server_pgid)


TICK = os.sysconf("SC_CLK_TCK")


def _cpu_of_group(pgid: int | None) -> float:
    """CPU seconds (user + system) used so far by the processes of one process group."""
    if pgid is None:
        return 0.0
    total = 0
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[2]) == pgid:  # pgrp
            total += int(fields[11]) + int(fields[12])  # utime, stime
    return total / TICK


def _machine_busy() -> tuple[float, float]:
    """(busy, all) CPU seconds of the whole machine so far, every core together."""
    values = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = values[3] + values[4]
    return (sum(values) - idle) / TICK, sum(values) / TICK


def _timed(scanner, barrier, latencies, surprises, server_pgid=None) -> dict:  # type: ignore[no-untyped-def]
    threads = [threading.Thread(target=scanner, args=(n,)) for n in range(SCANNERS)]
    for t in threads:
        t.start()
    barrier.wait()
    start = time.perf_counter()
    client0, server0, (busy0, all0) = (
        time.process_time(),
        _cpu_of_group(server_pgid),
        _machine_busy(),
    )
    for t in threads:
        t.join()
    elapsed = time.perf_counter() - start
    client = time.process_time() - client0
    server = _cpu_of_group(server_pgid) - server0
    busy1, all1 = _machine_busy()
    flat = sorted(x for per in latencies for x in per)
    return _summary(flat, elapsed, surprises, client, server, busy1 - busy0, max(all1 - all0, 1e-9))


def _summary(  # type: ignore[no-untyped-def]
    flat, elapsed, surprises, client, server, busy, wall_cpu
) -> dict:
    return {
        "scans": len(flat),
        "seconds": elapsed,
        "rate": len(flat) / elapsed,
        "p50": statistics.quantiles(flat, n=100)[49] * 1000,
        "p99": statistics.quantiles(flat, n=100)[98] * 1000,
        "surprises": surprises,
        # CPU milliseconds per scan: the load generator (this process), the app server, and
        # everything on the machine (PostgreSQL and whatever else runs) together.
        "client_ms": client / len(flat) * 1000,
        "server_ms": server / len(flat) * 1000,
        "machine_ms": busy / len(flat) * 1000,
        "machine_busy": busy / wall_cpu,
        # Raw figures, so that rounds can be added up.
        "_raw": (flat, elapsed, client, server, busy, wall_cpu),
    }


def combined(rounds: list[dict]) -> dict:
    """Several rounds of one side as one measurement (their scans, times and CPU added)."""
    raws = [r["_raw"] for r in rounds]
    return _summary(
        sorted(x for raw in raws for x in raw[0]),
        *(sum(raw[i] for raw in raws) for i in (1,)),
        [s for r in rounds for s in r["surprises"]],
        *(sum(raw[i] for raw in raws) for i in (2, 3, 4, 5)),
    )


# ---------------------------------------------------------------------------------------------
# The same database work, issued directly
# ---------------------------------------------------------------------------------------------


_ITEM_ROW = (
    "items.id, items.public_id, items.kind, items.state, items.order_id, items.site_id, "
    "items.parent_id, items.din, items.container, items.product_code, items.lot, items.serial, "
    "items.charged_at, items.validated_hold_hours, items.created_at, items.version_id"
)


class Direct:
    """The statements the app issues for one scan, hand-written, on one psycopg connection.

    Statement for statement what ``bench/profile_scan.py --sql`` lists for the app (the same
    tables, joins, row locks, savepoint, inserts and updates, in the same transactions: the
    session check, then the scan), minus what only Python needs: no ORM, no HTTP, and the
    verdict is known in advance. ``main`` compares the two lists and prints any difference.
    The app's pool pings a connection when a request checks it out; a dedicated connection
    needs no ping, so the baseline sends none.
    """

    def __init__(self, dsn: str, user_id: int, device: str) -> None:
        self.conn = psycopg.connect(dsn, options="-c timezone=UTC")
        self.user_id, self.device = user_id, device
        self.statements = 0
        self.log: list[str] | None = None

    def q(self, sql: str, params: tuple = ()) -> list[tuple]:  # type: ignore[type-arg]
        self.statements += 1
        if self.log is not None:
            self.log.append(sql)
        cur = self.conn.execute(sql, params)
        return cur.fetchall() if cur.description else []

    def scan(self, w: Work, step: str, raw: str, client_run: str, expected: str) -> str:
        now = datetime.now(UTC)
        nonce = str(uuid.uuid4())
        q = self.q
        # The session check: the user and every role, then the transaction ends.
        q(
            "SELECT u.username, u.full_name, u.active, u.session_version, r.role, r.site_id "
            "FROM users u LEFT OUTER JOIN role_assignments r ON r.user_id = u.id WHERE u.id = %s",
            (self.user_id,),
        )
        self.conn.rollback()
        device_id, site_id, _, _, _, _ = q(
            "SELECT d.id, d.site_id, d.kind, d.active, s.kind, s.code FROM devices d "
            "JOIN sites s ON s.id = d.site_id WHERE d.public_id = %s",
            (self.device,),
        )[0]
        context = q(
            "SELECT r.id, r.order_id FROM step_runs r JOIN scans s ON s.run_id = r.id "
            "WHERE s.client_run = %s ORDER BY s.id LIMIT 1",
            (client_run,),
        )
        item_id = None
        if raw.startswith("TRK"):
            (patient,) = q("SELECT id FROM patients WHERE wristband_code = %s", (raw,))[0]
            q(
                "SELECT id FROM therapy_orders WHERE patient_id = %s AND status = 'active'",
                (patient,),
            )
            scanned_order = w.order_id
        else:
            row = q(
                "SELECT id, kind, order_id, state, site_id, serial, container, charged_at, "
                "validated_hold_hours FROM items "
                "WHERE items.din = %s AND items.kind IN ('apheresis_bag', 'final_product_bag')",
                (raw[1:14],),
            )[0]
            item_id, scanned_order = row[0], row[2]
        order_id = context[0][1] if context else scanned_order
        q(
            "SELECT o.id, o.public_id, o.coi, o.patient_id, o.collection_site_id, "
            "o.manufacturing_site_id, o.treatment_site_id, p.starting_material, "
            "CAST(p.data AS TEXT) FROM therapy_orders o "
            "JOIN product_profiles p ON p.id = o.product_profile_id "
            "WHERE o.id = %s FOR NO KEY UPDATE OF o",
            (order_id,),
        )
        run_id = context[0][0] if context else None
        position = q(
            "SELECT (SELECT r.step FROM step_runs r WHERE r.order_id = %(o)s "
            "AND r.status = 'completed' AND r.exception IS false "
            "ORDER BY r.completed_at DESC, r.id DESC LIMIT 1), "
            "(SELECT r.id FROM step_runs r WHERE r.order_id = %(o)s AND r.step = %(s)s "
            "AND r.status = 'open'), "
            "EXISTS (SELECT * FROM deviations d WHERE d.order_id = %(o)s AND d.status = 'open' "
            "AND d.run_id IS DISTINCT FROM coalesce(%(r)s, (SELECT r.id FROM step_runs r "
            "WHERE r.order_id = %(o)s AND r.step = %(s)s AND r.status = 'open')))",
            {"o": order_id, "s": step, "r": run_id},  # type: ignore[arg-type]
        )
        run_id = run_id or position[0][1]
        if run_id is not None:
            q(
                "SELECT id, order_id, step, exception, site_id, shipment_id, status, "
                "started_by_id, started_at, completed_at, answers, version_id "
                "FROM step_runs WHERE id = %s",
                (run_id,),
            )
        q(
            "SELECT id, public_id, kind, state, site_id FROM items WHERE order_id = %s "
            "ORDER BY id FOR NO KEY UPDATE",
            (order_id,),
        )
        if run_id is not None:
            q(
                "SELECT requirement, token, user_id FROM scans WHERE run_id = %s "
                "AND result <> 'error'",
                (run_id,),
            )
        result = expected  # the verdict itself is the app's pure function; known here
        if result != "error" and run_id is None:
            run_id = q(
                "INSERT INTO step_runs (order_id, step, exception, site_id, shipment_id, status, "
                "started_by_id, started_at, completed_at, answers, version_id) VALUES "
                "(%s, %s, false, %s, NULL, 'open', %s, %s, NULL, '{}', 1) RETURNING id",
                (order_id, step, site_id, self.user_id, now),
            )[0][0]
        if result == "ok":
            q("SAVEPOINT sa_savepoint_1")
            self._complete(w, step, site_id, device_id, run_id, now)
            q(
                "UPDATE step_runs SET status = 'completed', completed_at = %s, version_id = %s "
                "WHERE id = %s AND version_id = %s",
                (now, 2, run_id, 1),
            )
            q("RELEASE SAVEPOINT sa_savepoint_1")
        body = json.dumps({"status": result, "step": step, "message": "m" * 60})
        q(
            "INSERT INTO scans (nonce, device_ref, device_id, user_id, site_id, step, "
            "client_run, run_id, raw, manual, parsed, kind, order_id, scanned_order_id, item_id, "
            "requirement, token, client_at, server_at, offline, forced, result, reason, message, "
            "http_status, response, deviation_id) VALUES (%s,%s,%s,%s,%s,%s,%s,%s,%s,false,%s,"
            "%s,%s,NULL,%s,%s,%s,%s,%s,false,false,%s,%s,%s,%s,%s,NULL) RETURNING id",
            (
                nonce,
                self.device,
                device_id,
                self.user_id,
                site_id,
                step,
                client_run,
                None if result == "error" else run_id,
                raw,
                json.dumps({"type": "Din", "value": {"din": raw[1:14]}}),
                "apheresis_bag",
                order_id,
                item_id,
                "apheresis_bag",
                str(item_id),
                now,
                now,
                result,
                "coi_mismatch" if result == "error" else None,
                "m" * 60,
                400 if result == "error" else 201,
                body,
            ),
        )
        self.conn.commit()
        return result

    def _complete(
        self, w: Work, step: str, site_id: int, device_id: int, run_id: int, now: datetime
    ) -> None:
        """custody.change_items_state for the step's bags, statement for statement."""
        q = self.q
        labelling = step == "collect_label_bags"
        to, was = ("labelled", "registered") if labelling else ("collected", "labelled")
        q(  # the order, locked, with the product profile the deadlines read
            "SELECT o.*, p.* FROM therapy_orders o JOIN product_profiles p "
            "ON p.id = o.product_profile_id WHERE (o.treatment_site_id IN (%s) OR "
            "o.collection_site_id IN (%s) OR o.manufacturing_site_id IN (%s) OR EXISTS "
            "(SELECT * FROM shipments sh WHERE sh.order_id = o.id AND sh.courier_user_id = %s)) "
            "AND o.id = %s FOR NO KEY UPDATE OF o",
            (1, 1, 1, self.user_id, w.order_id),
        )
        q(
            f"SELECT {_ITEM_ROW} FROM items "
            "WHERE items.id = ANY(%s) ORDER BY items.id FOR NO KEY UPDATE OF items",
            (w.bag_ids,),
        )
        key = f"coi:{w.coi}"
        head: tuple[int, str] | None = None
        for bag in w.bag_ids:
            if labelling:
                q(
                    "SELECT barcode_data FROM label_prints WHERE item_id = %s AND label_kind = "
                    "'apheresis_bag' AND status = 'done' ORDER BY requested_at DESC, id DESC",
                    (bag,),
                )
            q(
                "SELECT EXISTS (SELECT * FROM qa_dispositions WHERE item_id = %(i)s) OR EXISTS "
                "(SELECT * FROM excursion_items ei, excursions e WHERE ei.item_id = %(i)s "
                "AND e.id = ei.excursion_id AND e.level IN ('alarm', 'critical'))",
                {"i": bag},  # type: ignore[arg-type]
            )
            q(
                "UPDATE items SET state = %s, version_id = %s WHERE id = %s AND version_id = %s",
                (to, 2 if labelling else 3, bag, 1 if labelling else 2),  # the app's counters
            )
            if head is None:
                last = q(
                    "SELECT seq, hash FROM custody_events WHERE chain_key = %s "
                    "ORDER BY seq DESC LIMIT 1",
                    (key,),
                )
                head = last[0] if last else (0, chain.GENESIS)
            seq, prev = head[0] + 1, head[1]
            details = {"step": step, "run": run_id}
            fields = {
                "chain_key": key,
                "seq": seq,
                "order_id": w.order_id,
                "item_id": bag,
                "shipment_id": None,
                "event_type": "transition",
                "from_state": was,
                "to_state": to,
                "site_id": site_id,
                "actor_user_id": self.user_id,
                "device_id": device_id,
                "occurred_at": now,
                "recorded_at": now,
                "details": details,
                "corrects_event_id": None,
                "reason": None,
            }
            digest = chain.event_hash(prev, fields)
            (event_id,) = q(
                "INSERT INTO custody_events (chain_key, seq, order_id, item_id, shipment_id, "
                "event_type, from_state, to_state, site_id, actor_user_id, device_id, "
                "occurred_at, recorded_at, details, corrects_event_id, reason, prev_hash, hash) "
                "VALUES (%s,%s,%s,%s,NULL,'transition',%s,%s,%s,%s,%s,%s,%s,%s,NULL,NULL,%s,%s) "
                "RETURNING id",
                (
                    key,
                    seq,
                    w.order_id,
                    bag,
                    was,
                    to,
                    site_id,
                    self.user_id,
                    device_id,
                    now,
                    now,
                    json.dumps(details),
                    prev,
                    digest,
                ),
            )[0]
            head = (seq, digest)
            q(
                "INSERT INTO audit_log (at, actor_user_id, action, entity_type, entity_id, "
                "changes, reason, site_id) VALUES (%s, %s, 'custody_transition', 'item', %s, "
                "%s, NULL, %s) RETURNING id",
                (now, self.user_id, str(bag), json.dumps({"state": [was, to]}), site_id),
            )
            if not labelling:  # collected: the bag's ambient exposure clock starts
                q(
                    "SELECT to_state, occurred_at FROM custody_events WHERE item_id = %s AND "
                    "event_type = 'transition' ORDER BY occurred_at, seq",
                    (bag,),
                )
                dedupe = f"ambient_exposure:{bag}:{event_id}"
                q(
                    "INSERT INTO handoff_deadlines (dedupe_key, kind, label, due_at, warn_at, "
                    "order_id, item_id, shipment_id, site_id, profile_id, profile_version, "
                    "status, created_at, updated_at) VALUES (%s, 'ambient_exposure', %s, %s, "
                    "%s, %s, %s, NULL, %s, NULL, NULL, 'open', %s, %s) ON CONFLICT DO NOTHING "
                    "RETURNING id",
                    (
                        dedupe,
                        "Ambient exposure limit",
                        now + timedelta(hours=1),
                        now + timedelta(minutes=59),
                        w.order_id,
                        bag,
                        site_id,
                        now,
                        now,
                    ),
                )


def run_direct(users: list[int], devices: list[str], work: dict) -> dict:
    dsn = URL.replace("postgresql+psycopg://", "postgresql://")
    directs = [Direct(dsn, users[n], devices[n]) for n in range(SCANNERS)]
    latencies: list[list[float]] = [[] for _ in range(SCANNERS)]
    barrier = threading.Barrier(SCANNERS + 1)

    def scanner(n: int) -> None:
        direct = directs[n]
        barrier.wait()
        for w in work[n]:
            run = {"collect_label_bags": str(uuid.uuid4()), "collect_bags": str(uuid.uuid4())}
            for step, raw, expected in plan(w):
                start = time.perf_counter()
                direct.scan(w, step, raw, run[step], expected)
                latencies[n].append(time.perf_counter() - start)

    result = _timed(scanner, barrier, latencies, [])
    result["statements"] = sum(d.statements for d in directs) / result["scans"]
    for d in directs:
        d.conn.close()
    return result


def login_test_client(app: Any, username: str) -> tuple[Any, str]:
    """A Flask test client logged in as ``username``, and its CSRF token for the API."""
    client = app.test_client()
    page = client.get("/login").get_data(as_text=True)
    token = re.search(r'name="csrf_token" value="([^"]+)"', page).group(1)  # type: ignore[union-attr]
    client.post("/login", data={"username": username, "password": PASSWORD, "csrf_token": token})
    page = client.get("/scan/").get_data(as_text=True)
    return client, re.search(r'"X-CSRFToken": "([^"]+)"', page).group(1)  # type: ignore[union-attr]


def scan_body(device: str, step: str, raw: str, run: str) -> dict[str, str]:
    return {
        "raw": raw,
        "device": device,
        "step": step,
        "client_at": datetime.now(UTC).isoformat(),
        "nonce": str(uuid.uuid4()),
        "run": run,
    }


def app_statements(settings: Settings, nurse: str, device: str, w: Work) -> list[list[str]]:
    """One order's scans in-process through the Flask test client: each scan's statements."""
    from tracker.web import create_app

    app = create_app(settings)
    engine = app.extensions["tracker"].engine
    log: list[str] = []
    event.listen(engine, "before_cursor_execute", lambda _c, _cur, sql, *_: log.append(sql))
    client, csrf = login_test_client(app, nurse)
    run = {"collect_label_bags": str(uuid.uuid4()), "collect_bags": str(uuid.uuid4())}
    out = []
    for step, raw, _ in plan(w):
        log.clear()
        client.post(
            "/api/v1/scans",
            headers={"X-CSRFToken": csrf},
            json=scan_body(device, step, raw, run[step]),
        )
        out.append(list(log))
    engine.dispose()
    return out


def direct_statements(user: int, device: str, w: Work) -> list[list[str]]:
    """The same order's scans through the baseline: each scan's statements."""
    direct = Direct(URL.replace("postgresql+psycopg://", "postgresql://"), user, device)
    run = {"collect_label_bags": str(uuid.uuid4()), "collect_bags": str(uuid.uuid4())}
    out = []
    for step, raw, expected in plan(w):
        direct.log = []
        direct.scan(w, step, raw, run[step], expected)
        out.append(direct.log)
    direct.conn.close()
    return out


def signature(sql: str) -> str:
    """What a statement does to which table: "SELECT items", "INSERT custody_events"."""
    flat = " ".join(sql.split()).upper()
    verb = flat.split(" ", 1)[0]
    table = re.search(r"\b(?:FROM|INTO|UPDATE)\s+([A-Z_]+)", flat)
    return f"{verb} {table.group(1).lower()}" if table and verb != "RELEASE" else verb


def compare_statements(app: list[list[str]], direct: list[list[str]]) -> list[str]:
    """Differences between the app's and the baseline's statements, scan by scan."""
    differences = []
    for n, (a, d) in enumerate(zip(app, direct, strict=True)):
        extra = Counter(map(signature, a)) - Counter(map(signature, d))
        missing = Counter(map(signature, d)) - Counter(map(signature, a))
        if extra or missing:
            differences.append(f"scan {n}: app only {dict(extra)}, baseline only {dict(missing)}")
    return differences


def main() -> None:
    per_scanner = int(sys.argv[1]) if len(sys.argv) > 1 else 25
    settings = Settings(env="development", database_url=URL)
    print(
        f"database: {URL.rsplit('@', 1)[-1]}; {SCANNERS} scanners x {per_scanner} orders x 7 scans"
        f", in {ROUNDS} rounds of app then direct"
    )
    reset(settings)
    t0 = time.perf_counter()
    nurses, devices, work = seed(settings, per_scanner + 1)
    print(f"seeded in {time.perf_counter() - t0:.1f} s")
    # The extra order per scanner is for listing the app's and the baseline's statements.
    spare = work["app"][0].pop(), work["direct"][0].pop()
    for n in range(1, SCANNERS):
        work["app"][n].pop()
        work["direct"][n].pop()
    app_sql = app_statements(settings, nurses[0], devices[0], spare[0])
    engine = make_engine(URL)
    with engine.connect() as conn:
        users = [
            conn.scalar(text("SELECT id FROM users WHERE username = :u"), {"u": u}) for u in nurses
        ]
    engine.dispose()
    port = free_port()
    server = start_gunicorn(port)
    app_rounds: list[dict] = []
    direct_rounds: list[dict] = []
    try:
        # App and baseline take turns, so a slow spell of a shared machine hits both sides.
        for i in range(ROUNDS):
            part = {n: orders[i::ROUNDS] for n, orders in work["app"].items()}
            app_rounds.append(run_app(port, nurses, devices, part, server_pgid=server.pid))
            part = {n: orders[i::ROUNDS] for n, orders in work["direct"].items()}
            direct_rounds.append(run_direct(users, devices, part))
        paced = run_app(port, nurses, devices, work["paced"], pace=PACE, server_pgid=server.pid)
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=30)
    app, direct = combined(app_rounds), combined(direct_rounds)
    direct_sql = direct_statements(users[0], devices[0], spare[1])
    print(
        f"\ngunicorn {GUNICORN_WORKERS} workers x {GUNICORN_THREADS} threads (gthread), "
        f"{os.cpu_count()} CPUs, PostgreSQL on the same machine\n"
    )
    for name, r in (("app over HTTP (gunicorn)", app), ("direct SQL (psycopg)", direct)):
        print(
            f"{name:<28} {r['scans']:6d} scans {r['seconds']:7.2f} s {r['rate']:8.1f} scans/s"
            f"   p50 {r['p50']:6.1f} ms   p99 {r['p99']:6.1f} ms"
        )
    ratios = [a["rate"] / d["rate"] for a, d in zip(app_rounds, direct_rounds, strict=True)]
    print(
        "rounds (app / direct scans/s): "
        + ", ".join(
            f"{a['rate']:.0f}/{d['rate']:.0f} = {a['rate'] / d['rate']:.2f}"
            for a, d in zip(app_rounds, direct_rounds, strict=True)
        )
    )
    print("\nCPU per scan (ms): client = the load generator, server = gunicorn, machine = all")
    for name, r in (("app over HTTP (gunicorn)", app), ("direct SQL (psycopg)", direct)):
        print(
            f"{name:<28} client {r['client_ms']:5.2f}   server {r['server_ms']:5.2f}   "
            f"machine {r['machine_ms']:5.2f}   (machine {r['machine_busy'] * 100:.0f}% busy)"
        )
    per_scan = [len(x) for x in app_sql], [len(x) for x in direct_sql]
    print(
        f"\nstatements per scan (the order's 7 scans): app {per_scan[0]}, "
        f"direct {per_scan[1]}; mean {statistics.mean(per_scan[0]):.1f} vs "
        f"{statistics.mean(per_scan[1]):.1f}"
    )
    differences = compare_statements(app_sql, direct_sql)
    print("same statements (verb and table) in both: " + ("yes" if not differences else "NO"))
    for line in differences:
        print(f"  {line}")
    print(
        f"app / direct rate: {app['rate'] / direct['rate']:.2f} over all rounds "
        f"(median of rounds {statistics.median(ratios):.2f})"
    )
    print(
        f"\npaced: {SCANNERS} scanners, one scan each every {PACE * 1000:.0f} ms "
        f"({SCANNERS / PACE:.0f} scans/s offered): {paced['rate']:.1f} scans/s, "
        f"p50 {paced['p50']:.1f} ms, p99 {paced['p99']:.1f} ms"
    )
    surprises = app["surprises"] + paced["surprises"]
    if surprises:
        print(f"\n{len(surprises)} unexpected answers, e.g. {surprises[:3]}")
        sys.exit(1)


if __name__ == "__main__":
    main()
