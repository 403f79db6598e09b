"""Quality gates: material acceptance, manufacturing lots, release tests and results, lot releases.

Hand-edited after autogenerate: append-only triggers (PostgreSQL reuses the initial revision's
forbid_append_only_change()). A release test result may be reviewed once (reviewed_by and
reviewed_at go from NULL to a value); every other change to these tables is refused.

Revision ID: b3a0c0de0008
Revises: b3a0c0de0003
Create Date: 2026-11-27 09:50:25.073057
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "b3a0c0de0008"
down_revision: str | Sequence[str] | None = "b3a0c0de0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "material_acceptances",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("order_id", sa.Integer(), nullable=False),
        sa.Column("item_id", sa.Integer(), nullable=True),
        sa.Column("site_id", sa.Integer(), nullable=False),
        sa.Column("decision", sa.String(length=32), nullable=False),
        sa.Column(
            "criteria",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=False,
        ),
        sa.Column("decided_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("decided_by", sa.Integer(), nullable=False),
        sa.Column("deviation_id", sa.Integer(), nullable=True),
        sa.Column("supersedes_id", sa.Integer(), nullable=True),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.CheckConstraint(
            "decision <> 'accepted_with_deviation' OR deviation_id IS NOT NULL",
            name=op.f("ck_material_acceptances_deviation_decision_has_deviation"),
        ),
        sa.CheckConstraint(
            "decision IN ('accepted', 'accepted_with_deviation', 'rejected')",
            name=op.f("ck_material_acceptances_decision"),
        ),
        sa.CheckConstraint(
            "supersedes_id IS NULL OR reason IS NOT NULL",
            name=op.f("ck_material_acceptances_correction_reason"),
        ),
        sa.ForeignKeyConstraint(
            ["decided_by"], ["users.id"], name=op.f("fk_material_acceptances_decided_by_users")
        ),
        sa.ForeignKeyConstraint(
            ["deviation_id"],
            ["deviations.id"],
            name=op.f("fk_material_acceptances_deviation_id_deviations"),
        ),
        sa.ForeignKeyConstraint(
            ["item_id"], ["items.id"], name=op.f("fk_material_acceptances_item_id_items")
        ),
        sa.ForeignKeyConstraint(
            ["order_id"],
            ["therapy_orders.id"],
            name=op.f("fk_material_acceptances_order_id_therapy_orders"),
        ),
        sa.ForeignKeyConstraint(
            ["site_id"], ["sites.id"], name=op.f("fk_material_acceptances_site_id_sites")
        ),
        sa.ForeignKeyConstraint(
            ["supersedes_id"],
            ["material_acceptances.id"],
            name=op.f("fk_material_acceptances_supersedes_id_material_acceptances"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_material_acceptances")),
        sa.UniqueConstraint("supersedes_id", name=op.f("uq_material_acceptances_supersedes_id")),
    )
    with op.batch_alter_table("material_acceptances", schema=None) as batch_op:
        batch_op.create_index("ix_material_acceptances_order_id", ["order_id"], unique=False)

    op.create_table(
        "acceptance_measurements",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("acceptance_id", sa.Integer(), nullable=False),
        sa.Column("criterion", sa.String(length=48), nullable=False),
        sa.Column("value", sa.Float(), nullable=False),
        sa.Column("unit", sa.String(length=32), nullable=False),
        sa.Column("value_in_criterion_unit", sa.Float(), nullable=False),
        sa.Column("outcome", sa.String(length=8), nullable=False),
        sa.CheckConstraint(
            "outcome IN ('fail', 'pass')", name=op.f("ck_acceptance_measurements_outcome")
        ),
        sa.ForeignKeyConstraint(
            ["acceptance_id"],
            ["material_acceptances.id"],
            name=op.f("fk_acceptance_measurements_acceptance_id_material_acceptances"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_acceptance_measurements")),
        sa.UniqueConstraint(
            "acceptance_id",
            "criterion",
            name=op.f("uq_acceptance_measurements_acceptance_id_criterion"),
        ),
    )
    op.create_table(
        "manufacturing_lots",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("code", sa.String(length=32), nullable=False),
        sa.Column("order_id", sa.Integer(), nullable=False),
        sa.Column("site_id", sa.Integer(), nullable=False),
        sa.Column("process", sa.String(length=48), nullable=False),
        sa.Column("acceptance_id", sa.Integer(), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("completed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("status", sa.String(length=32), nullable=False),
        sa.Column("version_id", sa.Integer(), nullable=False),
        sa.CheckConstraint(
            "status IN ('exceptional_release', 'manufacturing', 'rejected', 'released', 'testing')",
            name=op.f("ck_manufacturing_lots_status"),
        ),
        sa.ForeignKeyConstraint(
            ["acceptance_id"],
            ["material_acceptances.id"],
            name=op.f("fk_manufacturing_lots_acceptance_id_material_acceptances"),
        ),
        sa.ForeignKeyConstraint(
            ["order_id"],
            ["therapy_orders.id"],
            name=op.f("fk_manufacturing_lots_order_id_therapy_orders"),
        ),
        sa.ForeignKeyConstraint(
            ["site_id"], ["sites.id"], name=op.f("fk_manufacturing_lots_site_id_sites")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_manufacturing_lots")),
        sa.UniqueConstraint("code", name=op.f("uq_manufacturing_lots_code")),
    )
    with op.batch_alter_table("manufacturing_lots", schema=None) as batch_op:
        batch_op.create_index("ix_manufacturing_lots_order_id", ["order_id"], unique=False)
        batch_op.create_index(
            "ix_manufacturing_lots_site_id_status", ["site_id", "status"], unique=False
        )

    op.create_table(
        "lot_releases",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("lot_id", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("signature_id", sa.Integer(), nullable=False),
        sa.Column("physician_name", sa.String(length=200), nullable=True),
        sa.Column("physician_acknowledged_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("physician_statement", sa.Text(), nullable=True),
        sa.Column("certificate_id", sa.Integer(), nullable=False),
        sa.Column("released_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint(
            "kind <> 'exceptional' OR (physician_name IS NOT NULL AND physician_acknowledged_at IS NOT NULL AND physician_statement IS NOT NULL)",
            name=op.f("ck_lot_releases_exceptional_has_physician_acknowledgement"),
        ),
        sa.CheckConstraint(
            "kind IN ('exceptional', 'standard')", name=op.f("ck_lot_releases_kind")
        ),
        sa.ForeignKeyConstraint(
            ["certificate_id"],
            ["release_certificates.id"],
            name=op.f("fk_lot_releases_certificate_id_release_certificates"),
        ),
        sa.ForeignKeyConstraint(
            ["lot_id"],
            ["manufacturing_lots.id"],
            name=op.f("fk_lot_releases_lot_id_manufacturing_lots"),
        ),
        sa.ForeignKeyConstraint(
            ["signature_id"],
            ["signatures.id"],
            name=op.f("fk_lot_releases_signature_id_signatures"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_lot_releases")),
        sa.UniqueConstraint("lot_id", name=op.f("uq_lot_releases_lot_id")),
    )
    op.create_table(
        "release_tests",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("lot_id", sa.Integer(), nullable=False),
        sa.Column("code", sa.String(length=32), nullable=False),
        sa.Column("method", sa.String(length=48), nullable=False),
        sa.Column(
            "spec",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=False,
        ),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expected_turnaround_hours", sa.Float(), nullable=False),
        sa.Column("due_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint(
            "expected_turnaround_hours >= 0", name=op.f("ck_release_tests_turnaround_not_negative")
        ),
        sa.ForeignKeyConstraint(
            ["lot_id"],
            ["manufacturing_lots.id"],
            name=op.f("fk_release_tests_lot_id_manufacturing_lots"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_release_tests")),
        sa.UniqueConstraint("lot_id", "code", name=op.f("uq_release_tests_lot_id_code")),
    )
    op.create_table(
        "release_test_results",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("test_id", sa.Integer(), nullable=False),
        sa.Column("value", sa.String(length=64), nullable=False),
        sa.Column("numeric_value", sa.Float(), nullable=True),
        sa.Column("unit", sa.String(length=32), nullable=True),
        sa.Column("outcome", sa.String(length=8), nullable=False),
        sa.Column("recorded_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("recorded_by", sa.Integer(), nullable=False),
        sa.Column("reviewed_by", sa.Integer(), nullable=True),
        sa.Column("reviewed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("supersedes_id", sa.Integer(), nullable=True),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.CheckConstraint(
            "outcome IN ('oos', 'pass')", name=op.f("ck_release_test_results_outcome")
        ),
        sa.CheckConstraint(
            "(reviewed_by IS NULL) = (reviewed_at IS NULL)",
            name=op.f("ck_release_test_results_review_has_time"),
        ),
        sa.CheckConstraint(
            "reviewed_by IS NULL OR reviewed_by <> recorded_by",
            name=op.f("ck_release_test_results_reviewer_not_recorder"),
        ),
        sa.CheckConstraint(
            "supersedes_id IS NULL OR reason IS NOT NULL",
            name=op.f("ck_release_test_results_correction_reason"),
        ),
        sa.ForeignKeyConstraint(
            ["recorded_by"], ["users.id"], name=op.f("fk_release_test_results_recorded_by_users")
        ),
        sa.ForeignKeyConstraint(
            ["reviewed_by"], ["users.id"], name=op.f("fk_release_test_results_reviewed_by_users")
        ),
        sa.ForeignKeyConstraint(
            ["supersedes_id"],
            ["release_test_results.id"],
            name=op.f("fk_release_test_results_supersedes_id_release_test_results"),
        ),
        sa.ForeignKeyConstraint(
            ["test_id"],
            ["release_tests.id"],
            name=op.f("fk_release_test_results_test_id_release_tests"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_release_test_results")),
        sa.UniqueConstraint("supersedes_id", name=op.f("uq_release_test_results_supersedes_id")),
    )
    with op.batch_alter_table("release_test_results", schema=None) as batch_op:
        batch_op.create_index("ix_release_test_results_test_id", ["test_id"], unique=False)

    op.create_table(
        "physician_acknowledgements",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("lot_id", sa.Integer(), nullable=False),
        sa.Column("physician_name", sa.String(length=200), nullable=False),
        sa.Column("statement", sa.Text(), nullable=False),
        sa.Column("acknowledged_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column(
            "oos_results",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=False,
        ),
        sa.Column("recorded_by", sa.Integer(), nullable=False),
        sa.Column("recorded_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["lot_id"],
            ["manufacturing_lots.id"],
            name=op.f("fk_physician_acknowledgements_lot_id_manufacturing_lots"),
        ),
        sa.ForeignKeyConstraint(
            ["recorded_by"],
            ["users.id"],
            name=op.f("fk_physician_acknowledgements_recorded_by_users"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_physician_acknowledgements")),
    )
    with op.batch_alter_table("physician_acknowledgements", schema=None) as batch_op:
        batch_op.create_index("ix_physician_acknowledgements_lot_id", ["lot_id"], unique=False)

    _create_append_only_triggers()


APPEND_ONLY_TABLES = (
    "material_acceptances",
    "acceptance_measurements",
    "release_tests",
    "lot_releases",
    "physician_acknowledgements",
)
# Everything on a result except its one-time review.
RESULT_FIXED_COLUMNS = (
    "id, test_id, value, numeric_value, unit, outcome, recorded_at, recorded_by, "
    "supersedes_id, reason"
)


def _create_append_only_triggers() -> None:
    """Acceptances, tests and releases are kept as written; a result is reviewed at most once."""
    if op.get_bind().dialect.name == "postgresql":
        fn = "EXECUTE FUNCTION forbid_append_only_change()"
        for table in APPEND_ONLY_TABLES:
            op.execute(
                f"CREATE TRIGGER {table}_append_only BEFORE UPDATE OR DELETE ON {table} "
                f"FOR EACH ROW {fn}"
            )
        op.execute(
            "CREATE TRIGGER release_test_results_append_only BEFORE DELETE "
            f"OR UPDATE OF {RESULT_FIXED_COLUMNS} ON release_test_results FOR EACH ROW {fn}"
        )
        op.execute(
            "CREATE TRIGGER release_test_results_reviewed_once BEFORE UPDATE OF reviewed_by, "
            "reviewed_at ON release_test_results FOR EACH ROW "
            f"WHEN (OLD.reviewed_by IS NOT NULL) {fn}"
        )
    else:
        for table in APPEND_ONLY_TABLES:
            for verb in ("UPDATE", "DELETE"):
                op.execute(
                    f"CREATE TRIGGER {table}_no_{verb.lower()} BEFORE {verb} ON {table} "
                    f"BEGIN SELECT RAISE(ABORT, '{table} is append-only'); END"
                )
        abort = "BEGIN SELECT RAISE(ABORT, 'release_test_results is append-only'); END"
        op.execute(
            f"CREATE TRIGGER release_test_results_no_delete BEFORE DELETE ON release_test_results {abort}"
        )
        op.execute(
            f"CREATE TRIGGER release_test_results_no_update BEFORE UPDATE OF {RESULT_FIXED_COLUMNS} "
            f"ON release_test_results {abort}"
        )
        op.execute(
            "CREATE TRIGGER release_test_results_reviewed_once BEFORE UPDATE OF reviewed_by, "
            f"reviewed_at ON release_test_results WHEN OLD.reviewed_by IS NOT NULL {abort}"
        )


def _drop_append_only_triggers() -> None:
    postgresql_ = op.get_bind().dialect.name == "postgresql"
    for table in APPEND_ONLY_TABLES:
        if postgresql_:
            op.execute(f"DROP TRIGGER IF EXISTS {table}_append_only ON {table}")
        else:
            for verb in ("update", "delete"):
                op.execute(f"DROP TRIGGER IF EXISTS {table}_no_{verb}")
    if postgresql_:
        for name in ("append_only", "reviewed_once"):
            op.execute(
                f"DROP TRIGGER IF EXISTS release_test_results_{name} ON release_test_results"
            )
    else:
        for name in ("no_delete", "no_update", "reviewed_once"):
            op.execute(f"DROP TRIGGER IF EXISTS release_test_results_{name}")


def downgrade() -> None:
    _drop_append_only_triggers()
    with op.batch_alter_table("physician_acknowledgements", schema=None) as batch_op:
        batch_op.drop_index("ix_physician_acknowledgements_lot_id")

    op.drop_table("physician_acknowledgements")
    with op.batch_alter_table("release_test_results", schema=None) as batch_op:
        batch_op.drop_index("ix_release_test_results_test_id")

    op.drop_table("release_test_results")
    op.drop_table("release_tests")
    op.drop_table("lot_releases")
    with op.batch_alter_table("manufacturing_lots", schema=None) as batch_op:
        batch_op.drop_index("ix_manufacturing_lots_site_id_status")
        batch_op.drop_index("ix_manufacturing_lots_order_id")

    op.drop_table("manufacturing_lots")
    op.drop_table("acceptance_measurements")
    with op.batch_alter_table("material_acceptances", schema=None) as batch_op:
        batch_op.drop_index("ix_material_acceptances_order_id")

    op.drop_table("material_acceptances")
