"""Quality gates: starting-material acceptance, manufacturing lots, release tests, lot release.

Every table here is append-only (database triggers, see migration b3a0c0de0008) except
``manufacturing_lots``, whose ``status`` (and ``completed_at``) only the quality service changes.
A correction is a new row that names the row it supersedes and says why; the current row of a
chain is the one nobody supersedes (each row can be superseded at most once: unique
``supersedes_id``).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import CheckConstraint
from sqlalchemy import Float
from sqlalchemy import ForeignKey
from sqlalchemy import Index
from sqlalchemy import String
from sqlalchemy import Text
from sqlalchemy import UniqueConstraint
from sqlalchemy.orm import Mapped
from sqlalchemy.orm import mapped_column

from tracker.db import Base

ACCEPTANCE_DECISIONS = ["accepted", "rejected", "accepted_with_deviation"]
MEASUREMENT_OUTCOMES = ["pass", "fail"]
LOT_STATUSES = ["manufacturing", "testing", "released", "exceptional_release", "rejected"]
RESULT_OUTCOMES = ["pass", "oos"]
RELEASE_KINDS = ["standard", "exceptional"]


def _in(column: str, values: list[str], name: str) -> CheckConstraint:
    allowed = ", ".join(f"'{v}'" for v in sorted(values))
    return CheckConstraint(f"{column} IN ({allowed})", name=name)


class MaterialAcceptance(Base):
    """The receiving site's decision on one apheresis product, with the criteria it used."""

    __tablename__ = "material_acceptances"
    __table_args__ = (
        _in("decision", ACCEPTANCE_DECISIONS, "decision"),
        UniqueConstraint("supersedes_id"),
        CheckConstraint("supersedes_id IS NULL OR reason IS NOT NULL", name="correction_reason"),
        CheckConstraint(
            "decision <> 'accepted_with_deviation' OR deviation_id IS NOT NULL",
            name="deviation_decision_has_deviation",
        ),
        Index("ix_material_acceptances_order_id", "order_id"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    order_id: Mapped[int] = mapped_column(ForeignKey("therapy_orders.id"))
    item_id: Mapped[int | None] = mapped_column(ForeignKey("items.id"))
    site_id: Mapped[int] = mapped_column(ForeignKey("sites.id"))
    decision: Mapped[str] = mapped_column(String(32))
    # The product profile's criteria as they were when the decision was made.
    criteria: Mapped[dict[str, Any]]
    decided_at: Mapped[datetime]
    decided_by: Mapped[int] = mapped_column(ForeignKey("users.id"))
    deviation_id: Mapped[int | None] = mapped_column(ForeignKey("deviations.id"))
    supersedes_id: Mapped[int | None] = mapped_column(ForeignKey("material_acceptances.id"))
    reason: Mapped[str | None] = mapped_column(Text)


class AcceptanceMeasurement(Base):
    """One measured value as entered, its value in the criterion's unit, and pass or fail."""

    __tablename__ = "acceptance_measurements"
    __table_args__ = (
        _in("outcome", MEASUREMENT_OUTCOMES, "outcome"),
        UniqueConstraint("acceptance_id", "criterion"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    acceptance_id: Mapped[int] = mapped_column(ForeignKey("material_acceptances.id"))
    criterion: Mapped[str] = mapped_column(String(48))
    value: Mapped[float] = mapped_column(Float)
    unit: Mapped[str] = mapped_column(String(32))
    value_in_criterion_unit: Mapped[float] = mapped_column(Float)
    outcome: Mapped[str] = mapped_column(String(8))


class ManufacturingLot(Base):
    """A lot made from accepted starting material at a manufacturing site."""

    __tablename__ = "manufacturing_lots"
    __table_args__ = (
        _in("status", LOT_STATUSES, "status"),
        Index("ix_manufacturing_lots_order_id", "order_id"),
        Index("ix_manufacturing_lots_site_id_status", "site_id", "status"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    code: Mapped[str] = mapped_column(String(32), unique=True)
    order_id: Mapped[int] = mapped_column(ForeignKey("therapy_orders.id"))
    site_id: Mapped[int] = mapped_column(ForeignKey("sites.id"))
    process: Mapped[str] = mapped_column(String(48))
    acceptance_id: Mapped[int] = mapped_column(ForeignKey("material_acceptances.id"))
    started_at: Mapped[datetime]
    completed_at: Mapped[datetime | None]
    status: Mapped[str] = mapped_column(String(32), default="manufacturing")
    version_id: Mapped[int] = mapped_column(default=1)

    __mapper_args__ = {"version_id_col": version_id}


class ReleaseTest(Base):
    """One release test of a lot: what, how, against which specification, and when it is due."""

    __tablename__ = "release_tests"
    __table_args__ = (
        UniqueConstraint("lot_id", "code"),
        CheckConstraint("expected_turnaround_hours >= 0", name="turnaround_not_negative"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    lot_id: Mapped[int] = mapped_column(ForeignKey("manufacturing_lots.id"))
    code: Mapped[str] = mapped_column(String(32))
    method: Mapped[str] = mapped_column(String(48))
    # {"kind": "qualitative", "expected": "negative"} or {"kind": "range", "unit", "min", "max"}.
    spec: Mapped[dict[str, Any]]
    started_at: Mapped[datetime]
    expected_turnaround_hours: Mapped[float] = mapped_column(Float)
    due_at: Mapped[datetime]


class ReleaseTestResult(Base):
    """A result as recorded; a correction is a new row superseding it, with a reason."""

    __tablename__ = "release_test_results"
    __table_args__ = (
        _in("outcome", RESULT_OUTCOMES, "outcome"),
        UniqueConstraint("supersedes_id"),
        CheckConstraint("supersedes_id IS NULL OR reason IS NOT NULL", name="correction_reason"),
        CheckConstraint(
            "reviewed_by IS NULL OR reviewed_by <> recorded_by", name="reviewer_not_recorder"
        ),
        CheckConstraint("(reviewed_by IS NULL) = (reviewed_at IS NULL)", name="review_has_time"),
        Index("ix_release_test_results_test_id", "test_id"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    test_id: Mapped[int] = mapped_column(ForeignKey("release_tests.id"))
    # As entered ("negative", "87.5"); numeric_value is the number when the spec is a range.
    value: Mapped[str] = mapped_column(String(64))
    numeric_value: Mapped[float | None] = mapped_column(Float)
    unit: Mapped[str | None] = mapped_column(String(32))
    outcome: Mapped[str] = mapped_column(String(8))
    recorded_at: Mapped[datetime]
    recorded_by: Mapped[int] = mapped_column(ForeignKey("users.id"))
    reviewed_by: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    reviewed_at: Mapped[datetime | None]
    supersedes_id: Mapped[int | None] = mapped_column(ForeignKey("release_test_results.id"))
    reason: Mapped[str | None] = mapped_column(Text)


class LotRelease(Base):
    """QA's release of a lot: the signature over its complete record and the certificate."""

    __tablename__ = "lot_releases"
    __table_args__ = (
        _in("kind", RELEASE_KINDS, "kind"),
        # One release per lot: two QA users releasing at once cannot both win.
        UniqueConstraint("lot_id"),
        CheckConstraint(
            "kind <> 'exceptional' OR (physician_name IS NOT NULL "
            "AND physician_acknowledged_at IS NOT NULL AND physician_statement IS NOT NULL)",
            name="exceptional_has_physician_acknowledgement",
        ),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    lot_id: Mapped[int] = mapped_column(ForeignKey("manufacturing_lots.id"))
    kind: Mapped[str] = mapped_column(String(16))
    signature_id: Mapped[int] = mapped_column(ForeignKey("signatures.id"))
    physician_name: Mapped[str | None] = mapped_column(String(200))
    physician_acknowledged_at: Mapped[datetime | None]
    physician_statement: Mapped[str | None] = mapped_column(Text)
    certificate_id: Mapped[int] = mapped_column(ForeignKey("release_certificates.id"))
    released_at: Mapped[datetime]


class PhysicianAcknowledgement(Base):
    """The treating physician's acknowledgement of an out-of-specification lot, recorded by QA.

    It covers the OOS results it names (``oos_results``: result ids); a later OOS result needs
    a new acknowledgement. Exceptional release copies it onto the ``lot_releases`` row.
    """

    __tablename__ = "physician_acknowledgements"
    __table_args__ = (Index("ix_physician_acknowledgements_lot_id", "lot_id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    lot_id: Mapped[int] = mapped_column(ForeignKey("manufacturing_lots.id"))
    physician_name: Mapped[str] = mapped_column(String(200))
    statement: Mapped[str] = mapped_column(Text)
    acknowledged_at: Mapped[datetime]
    oos_results: Mapped[dict[str, Any]]
    recorded_by: Mapped[int] = mapped_column(ForeignKey("users.id"))
    recorded_at: Mapped[datetime]


APPEND_ONLY_TABLES = (
    "material_acceptances",
    "acceptance_measurements",
    "release_tests",
    "release_test_results",
    "lot_releases",
    "physician_acknowledgements",
)
