"""Scan throughput: 16 concurrent scanners against gunicorn on PostgreSQL, next to the same
database work issued directly with psycopg in the same run.

Run: TRACKER_BENCH_DATABASE_URL=postgresql+psycopg://tracker:tracker@127.0.0.1:5432/tracker_bench \\
     .venv/bin/python bench/bench_scans.py [orders_per_scanner]

The database is emptied and migrated first (it is the bench database, nothing else). Each
scanner works through its own orders, each with two registered bags, the way a collection
nurse does: "confirm labels applied" (wristband, bag, bag: the last scan completes the step
and labels both bags), one wrong-patient bag (refused, stored), then "collection complete"
(wristband, bag, bag). That is 7 scans per order: 2 start a step, 2 complete one (four custody
transitions with hash-chained events and audit rows), 1 is refused, 2 are plain accepts.

The baseline issues, per scan, the statements a lean hand-written implementation of the same
decision needs against the same schema (user and roles, nonce, device, run context, code
lookup, order row lock, item row lock, run, progress, journey position, deviations, and the
same inserts and updates), with psycopg and 16 threads, each on its own connection. The app
adds HTTP, Flask, session cookies, validation and the ORM on top; its statement count per
scan is measured in-process and printed beside the baseline's.
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
from dataclasses import dataclass
from datetime import UTC
from datetime import date
from datetime import datetime
from pathlib import Path

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
        "machine_ms": (busy1 - busy0) / len(flat) * 1000,
        "machine_busy": (busy1 - busy0) / max(all1 - all0, 1e-9),
    }


# ---------------------------------------------------------------------------------------------
# The same database work, issued directly
# ---------------------------------------------------------------------------------------------


class Direct:
    """The statements of one scan, hand-written, on one psycopg connection."""

    def __init__(self, dsn: str, user_id: int, device: str) -> None:
        self.conn = psycopg.connect(dsn, options="-c timezone=UTC")
        self.user_id, self.device = user_id, device
        self.run_ids: dict[str, int] = {}
        self.statements = 0

    def q(self, sql: str, params: tuple = ()) -> list[tuple]:  # type: ignore[type-arg]
        self.statements += 1
        cur = self.conn.execute(sql, params)
        return cur.fetchall() if cur.description else []

    def scan(self, w: Work, step: str, raw: str, client_run: str, expected: str) -> str:
        now = datetime.now(UTC)
        nonce = str(uuid.uuid4())
        q = self.q
        with self.conn.transaction():
            # the session's user and roles
            q("SELECT id, full_name, session_version FROM users WHERE id = %s", (self.user_id,))
            q("SELECT role, site_id FROM role_assignments WHERE user_id = %s", (self.user_id,))
        with self.conn.transaction():
            q(
                "SELECT id, http_status, response FROM scans WHERE device_ref = %s AND nonce = %s",
                (self.device, nonce),
            )
            device_id, site_id = q(
                "SELECT d.id, d.site_id FROM devices d JOIN sites s ON s.id = d.site_id "
                "WHERE d.public_id = %s",
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
                item_id, scanned_order, state = q(
                    "SELECT id, order_id, state FROM items WHERE din = %s AND kind IN "
                    "('apheresis_bag', 'final_product_bag')",
                    (raw[1:14],),
                )[0]
            order_id = context[0][1] if context else scanned_order
            q(
                "SELECT o.id, o.public_id, o.coi, p.data FROM therapy_orders o "
                "JOIN product_profiles p ON p.id = o.product_profile_id "
                "WHERE o.id = %s FOR UPDATE OF o",
                (order_id,),
            )
            if item_id is not None and scanned_order == order_id:
                q("SELECT state, site_id FROM items WHERE id = %s FOR UPDATE", (item_id,))
            run = (
                q("SELECT id, status FROM step_runs WHERE id = %s", (context[0][0],))
                if context
                else q(
                    "SELECT id, status FROM step_runs WHERE order_id = %s AND step = %s "
                    "AND status = 'open'",
                    (order_id, step),
                )
            )
            q("SELECT id, public_id, kind, state FROM items WHERE order_id = %s", (order_id,))
            if run:
                q(
                    "SELECT requirement, token, user_id FROM scans WHERE run_id = %s "
                    "AND result <> 'error'",
                    (run[0][0],),
                )
            q(
                "SELECT step FROM step_runs WHERE order_id = %s AND status = 'completed' AND NOT "
                "exception ORDER BY completed_at DESC LIMIT 1",
                (order_id,),
            )
            q(
                "SELECT id FROM deviations WHERE order_id = %s AND status = 'open' LIMIT 1",
                (order_id,),
            )
            result = expected  # the decision itself is the same pure function in both
            run_id = run[0][0] if run else None
            if result != "error" and run_id is None:
                run_id = q(
                    "INSERT INTO step_runs (order_id, step, exception, site_id, status, "
                    "started_by_id, started_at, answers, version_id) VALUES "
                    "(%s, %s, false, %s, 'open', %s, %s, '{}', 1) RETURNING id",
                    (order_id, step, site_id, self.user_id, now),
                )[0][0]
            if result == "ok":
                for bag in w.bag_ids:
                    self._transition(w, bag, step, site_id, device_id, now)
                q(
                    "UPDATE step_runs SET status = 'completed', completed_at = %s, version_id = "
                    "version_id + 1 WHERE id = %s",
                    (now, run_id),
                )
            body = json.dumps({"status": result, "step": step})
            q(
                "INSERT INTO scans (nonce, device_ref, device_id, user_id, site_id, step, "
                "client_run, run_id, raw, manual, kind, order_id, item_id, requirement, token, "
                "client_at, server_at, offline, forced, result, reason, message, http_status, "
                "response) VALUES (%s,%s,%s,%s,%s,%s,%s,%s,%s,false,%s,%s,%s,%s,%s,%s,%s,false,"
                "false,%s,%s,%s,%s,%s)",
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
                    "bag",
                    order_id,
                    item_id,
                    "x",
                    str(item_id),
                    now,
                    now,
                    result,
                    "coi_mismatch" if result == "error" else None,
                    "m",
                    400 if result == "error" else 201,
                    body,
                ),
            )
        return result

    def _transition(
        self, w: Work, bag: int, step: str, site_id: int, device_id: int, now: datetime
    ) -> None:
        q = self.q
        to = "labelled" if step == "collect_label_bags" else "collected"
        q(
            "UPDATE items SET state = %s, site_id = %s, version_id = version_id + 1 WHERE id = %s",
            (to, site_id, bag),
        )
        key = f"coi:{w.coi}"
        last = q(
            "SELECT seq, hash FROM custody_events WHERE chain_key = %s ORDER BY seq DESC LIMIT 1",
            (key,),
        )
        seq, prev = (last[0][0] + 1, last[0][1]) if last else (1, chain.GENESIS)
        fields = {"chain_key": key, "seq": seq, "item_id": bag, "to_state": to, "at": now}
        digest = chain.event_hash(prev, fields)
        q(
            "INSERT INTO custody_events (chain_key, seq, order_id, item_id, event_type, "
            "from_state, to_state, site_id, actor_user_id, device_id, occurred_at, recorded_at, "
            "details, prev_hash, hash) VALUES (%s,%s,%s,%s,'transition',%s,%s,%s,%s,%s,%s,%s,"
            "%s,%s,%s)",
            (
                key,
                seq,
                w.order_id,
                bag,
                "x",
                to,
                site_id,
                self.user_id,
                device_id,
                now,
                now,
                json.dumps({"step": step}),
                prev,
                digest,
            ),
        )
        q(
            "INSERT INTO audit_log (at, actor_user_id, action, entity_type, entity_id, changes, "
            "site_id) VALUES (%s, %s, 'custody_transition', 'item', %s, %s, %s)",
            (now, self.user_id, str(bag), json.dumps({"state": ["x", to]}), site_id),
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


def app_statements_per_scan(
    settings: Settings, nurses: list[str], devices: list[str], w: Work
) -> float:
    """Run one order's scans in-process through the Flask test client and count statements."""
    from tracker.web import create_app

    app = create_app(settings)
    engine = app.extensions["tracker"].engine
    count = {"n": 0}
    event.listen(engine, "before_cursor_execute", lambda *a: count.__setitem__("n", count["n"] + 1))
    client = app.test_client()
    page = client.get("/login").get_data(as_text=True)
    token = re.search(r'name="csrf_token" value="([^"]+)"', page).group(1)
    client.post("/login", data={"username": nurses[0], "password": PASSWORD, "csrf_token": token})
    token = re.search(r'"X-CSRFToken": "([^"]+)"', client.get("/scan/").get_data(as_text=True))
    run = {"collect_label_bags": str(uuid.uuid4()), "collect_bags": str(uuid.uuid4())}
    count["n"] = 0
    scans = plan(w)
    for step, raw, _ in scans:
        client.post(
            "/api/v1/scans",
            headers={"X-CSRFToken": token.group(1)},
            json={
                "raw": raw,
                "device": devices[0],
                "step": step,
                "nonce": str(uuid.uuid4()),
                "client_at": datetime.now(UTC).isoformat(),
                "run": run[step],
            },
        )
    engine.dispose()
    return count["n"] / len(scans)


def main() -> None:
    per_scanner = int(sys.argv[1]) if len(sys.argv) > 1 else 25
    settings = Settings(env="development", database_url=URL)
    print(
        f"database: {URL.rsplit('@', 1)[-1]}; {SCANNERS} scanners x {per_scanner} orders x 7 scans"
    )
    reset(settings)
    t0 = time.perf_counter()
    nurses, devices, work = seed(settings, per_scanner + 1)
    print(f"seeded in {time.perf_counter() - t0:.1f} s")
    # The extra order per scanner is for counting the app's statements in-process.
    spare = [work["app"][n].pop() for n in range(SCANNERS)]
    statements = app_statements_per_scan(settings, nurses, devices, spare[0])
    port = free_port()
    server = start_gunicorn(port)
    try:
        app = run_app(port, nurses, devices, work["app"], server_pgid=server.pid)
        paced = run_app(port, nurses, devices, work["paced"], pace=PACE, server_pgid=server.pid)
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=30)
    engine = make_engine(URL)
    with engine.connect() as conn:
        users = [
            conn.scalar(text("SELECT id FROM users WHERE username = :u"), {"u": u}) for u in nurses
        ]
    engine.dispose()
    direct = run_direct(users, devices, work["direct"])
    print(
        f"\ngunicorn {GUNICORN_WORKERS} workers x {GUNICORN_THREADS} threads (gthread), "
        f"{os.cpu_count()} CPUs, PostgreSQL on the same machine\n"
    )
    for name, r in (("app over HTTP (gunicorn)", app), ("direct SQL (psycopg)", direct)):
        print(
            f"{name:<28} {r['scans']:6d} scans {r['seconds']:7.2f} s {r['rate']:8.1f} scans/s"
            f"   p50 {r['p50']:6.1f} ms   p99 {r['p99']:6.1f} ms"
        )
    print("\nCPU per scan (ms): client = the load generator, server = gunicorn, machine = all")
    for name, r in (("app over HTTP (gunicorn)", app), ("direct SQL (psycopg)", direct)):
        print(
            f"{name:<28} client {r['client_ms']:5.2f}   server {r['server_ms']:5.2f}   "
            f"machine {r['machine_ms']:5.2f}   (machine {r['machine_busy'] * 100:.0f}% busy)"
        )
    print(f"\nstatements per scan: app {statements:.1f}, direct {direct['statements']:.1f}")
    print(f"app / direct rate: {app['rate'] / direct['rate']:.2f}")
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
