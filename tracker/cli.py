"""Flask CLI commands: ``flask --app wsgi tracker <command>``. Thin wrappers over services."""

from __future__ import annotations

import signal
import sys
import threading

import click
from flask import Flask
from flask.cli import AppGroup

from tracker import migrate
from tracker.web.runtime import runtime

cli = AppGroup("tracker", help="Chain-of-identity tracker commands.")


@cli.command("migrate")
def migrate_command() -> None:
    """Upgrade the database to the newest migration."""
    migrate.upgrade(runtime().settings.database_url)
    click.echo("database at head")


@cli.command("seed-demo")
def seed_demo_command() -> None:
    """Load demo sites, users and journeys (idempotent) and print the demo logins."""
    from tracker.demo import DEMO_PASSWORD
    from tracker.demo import demo_logins
    from tracker.demo import seed_demo

    rt = runtime()
    with rt.uow() as uow:
        created = seed_demo(uow=uow, hasher=rt.hasher, settings=rt.settings, now=rt.clock.now())
        uow.commit()
    click.echo("demo data loaded" if created else "demo data already present")
    click.echo(f"demo logins (password for all: {DEMO_PASSWORD}):")
    for login in demo_logins():
        click.echo(f"  {login.username:<12} {login.role:<24} {login.site}")


@cli.command("verify-chain")
def verify_chain_command() -> None:
    """Recompute every custody hash chain; exit 1 and list the breaks if any."""
    from tracker.services.custody import verify_chains

    with runtime().uow() as uow:
        report = verify_chains(uow.session)
    broken = {key: breaks for key, breaks in report.items() if breaks}
    for key, breaks in broken.items():
        for b in breaks:
            click.echo(f"BROKEN {key} event #{b.seq}: {b.problem}")
    click.echo(f"{len(report)} chains checked, {len(broken)} broken")
    if broken:
        sys.exit(1)


@cli.command("worker")
def worker_command() -> None:
    """Run the scheduler worker (leader-elected on PostgreSQL) until interrupted."""
    import logging

    from tracker import scheduler

    logging.basicConfig(level=logging.INFO, format="%(asctime)s worker %(levelname)s %(message)s")
    # Sweepers run every second or two; their "running job" lines would drown everything else.
    logging.getLogger("apscheduler").setLevel(logging.WARNING)
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    scheduler.run(runtime().settings, stop)


def init_cli(app: Flask) -> None:
    app.cli.add_command(cli)
