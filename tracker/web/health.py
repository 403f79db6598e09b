"""/healthz (the process answers) and /readyz (database reachable, migrations at head)."""

from __future__ import annotations

from datetime import timedelta

from flask import Blueprint
from flask import jsonify
from flask.typing import ResponseReturnValue
from sqlalchemy import func
from sqlalchemy import select
from sqlalchemy import text

from tracker import migrate
from tracker.models import WorkerHeartbeat
from tracker.web.runtime import runtime

bp = Blueprint("health", __name__)


@bp.get("/healthz")
def healthz() -> ResponseReturnValue:
    return jsonify({"status": "ok"})


@bp.get("/readyz")
def readyz() -> ResponseReturnValue:
    rt = runtime()
    checks: dict[str, object] = {}
    ready = True
    try:
        with rt.uow() as uow:
            conn = uow.session.connection()
            if conn.dialect.name == "postgresql":
                conn.execute(text("SET LOCAL statement_timeout = 2000"))
            conn.execute(text("SELECT 1"))
            checks["database"] = "ok"
            current = set(migrate.current_revisions(conn))
            heads = set(migrate.head_revisions(rt.settings.database_url))
            checks["migrations"] = "at head" if current == heads else "behind"
            ready = current == heads
            beat_at = uow.session.scalar(select(func.max(WorkerHeartbeat.beat_at)))
        # Reported, not required: web nodes can serve while the worker restarts.
        stale = beat_at is None or rt.clock.now() - beat_at > timedelta(minutes=1)
        checks["worker"] = "no recent heartbeat" if stale else "ok"
    except Exception as exc:  # noqa: BLE001 - readiness reports any failure as not ready
        checks["database"] = f"unreachable: {type(exc).__name__}"
        ready = False
    return jsonify({"status": "ok" if ready else "unavailable", "checks": checks}), (
        200 if ready else 503
    )
