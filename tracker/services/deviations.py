"""Opening a deviation: one place, used by scans (forced scans, checklist answers, reports)
and by the quality gates (material accepted with a deviation)."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy.orm import Session

from tracker.models import Deviation
from tracker.services import custody
from tracker.services.audit import record_audit


def open_deviation(
    session: Session,
    *,
    order_id: int,
    kind: str,
    description: str,
    now: datetime,
    user_id: int | None,
    item_id: int | None = None,
    run_id: int | None = None,
    site_id: int | None = None,
) -> Deviation:
    """Open a deviation on the order; while open it blocks the order's next custody step."""
    deviation = Deviation(
        public_id=custody.new_public_id("DVN"),
        order_id=order_id,
        item_id=item_id,
        run_id=run_id,
        kind=kind,
        description=description,
        opened_at=now,
        opened_by_id=user_id,
    )
    session.add(deviation)
    session.flush()
    record_audit(
        session,
        now=now,
        actor_user_id=user_id,
        action="deviation_opened",
        entity_type="deviation",
        entity_id=deviation.public_id,
        changes={"kind": [None, kind], "description": [None, description]},
        site_id=site_id,
    )
    return deviation
