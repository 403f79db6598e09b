"""Where a scan's time goes: the bench's scans in-process (Flask test client, PostgreSQL), with
every statement listed per scan and a cProfile of the whole run.

Run: TRACKER_BENCH_DATABASE_URL=postgresql+psycopg://tracker:tracker@127.0.0.1:5432/tracker_bench \\
     .venv/bin/python bench/profile_scan.py [orders] [--sql] [--profile N]

It empties and seeds the bench database as bench_scans.py does, then plays ``orders`` orders
(7 scans each) of the first scanner. ``--sql`` prints each scan's statements; ``--profile N``
prints the N most expensive functions by cumulative and by own time.
"""

from __future__ import annotations

import cProfile
import pstats
import sys
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_scans import URL  # noqa: E402
from bench_scans import login_test_client  # noqa: E402
from bench_scans import plan  # noqa: E402
from bench_scans import reset  # noqa: E402
from bench_scans import scan_body  # noqa: E402
from bench_scans import seed  # noqa: E402
from sqlalchemy import event  # noqa: E402

from tracker.config import Settings  # noqa: E402
from tracker.web import create_app  # noqa: E402


def main() -> None:
    args = sys.argv[1:]
    orders = int(args[0]) if args and args[0].isdigit() else 5
    show_sql = "--sql" in args
    top = int(args[args.index("--profile") + 1]) if "--profile" in args else 0
    settings = Settings(env="development", database_url=URL)
    reset(settings)
    nurses, devices, work = seed(settings, orders, scanners=2)
    app = create_app(settings)
    engine = app.extensions["tracker"].engine
    statements: list[str] = []

    def note(conn, cursor, statement, parameters, context, executemany):  # type: ignore[no-untyped-def]
        statements.append(" ".join(statement.split()))

    event.listen(engine, "before_cursor_execute", note)
    client, csrf = login_test_client(app, nurses[0])

    per_scan: list[tuple[str, str, str, list[str], float, float]] = []
    profiler = cProfile.Profile()
    for w in work["app"][0][:orders]:
        run = {"collect_label_bags": str(uuid.uuid4()), "collect_bags": str(uuid.uuid4())}
        for step, raw, expected in plan(w):
            body = scan_body(devices[0], step, raw, run[step])
            statements.clear()
            start, cpu = time.perf_counter(), time.process_time()
            if top:
                profiler.enable()
            answer = client.post("/api/v1/scans", headers={"X-CSRFToken": csrf}, json=body)
            if top:
                profiler.disable()
            elapsed, cpu = time.perf_counter() - start, time.process_time() - cpu
            got = answer.get_json()["status"]
            if got != expected:
                raise SystemExit(f"{step} {raw}: expected {expected}, got {answer.get_json()}")
            per_scan.append((step, raw[:6], got, list(statements), elapsed, cpu))
    engine.dispose()

    n = len(per_scan)
    total = sum(len(s[3]) for s in per_scan)
    wall = sum(s[4] for s in per_scan) / n * 1000
    cpu = sum(s[5] for s in per_scan) / n * 1000
    print(
        f"{n} scans, {total / n:.1f} statements per scan, {wall:.2f} ms wall and {cpu:.2f} ms "
        f"CPU of this process per scan (in-process{', profiled' if top else ''})"
    )
    for i in range(7):
        same = per_scan[i::7]
        step, raw, got, sqls = same[0][:4]
        w = sorted(s[4] for s in same)[len(same) // 2] * 1000
        c = sorted(s[5] for s in same)[len(same) // 2] * 1000
        print(
            f"\n#{i} {step} {raw}… -> {got}: {len(sqls)} statements, "
            f"median {w:.1f} ms wall, {c:.1f} ms CPU"
        )
        if show_sql:
            for sql in sqls:
                print(f"    {sql[:220]}")
    if top:
        stats = pstats.Stats(profiler)
        calls = sum(v[1] for v in stats.stats.values())  # type: ignore[attr-defined]
        print(f"{calls / n:.0f} Python function calls per scan (deterministic CPU proxy)")
        own: dict[str, float] = {}
        for (filename, _, _), (_, _, tottime, _, _) in stats.stats.items():  # type: ignore[attr-defined]
            parts = filename.split("site-packages/")
            if len(parts) > 1:
                key = parts[1].split("/")[0]
            elif "/tracker/" in filename or "/schedules/" in filename:
                key = "ours: " + filename.rsplit("/", 2)[-2] + "/" + filename.rsplit("/", 1)[-1]
            else:
                key = "stdlib/builtins"
            own[key] = own.get(key, 0.0) + tottime
        whole = sum(own.values())
        print("\nown time by package (profiled):")
        for key, t in sorted(own.items(), key=lambda kv: -kv[1])[:25]:
            print(f"  {t / whole * 100:5.1f}%  {key}")
        stats.sort_stats("cumulative").print_stats(top)
        stats.sort_stats("tottime").print_stats(top)


if __name__ == "__main__":
    main()
