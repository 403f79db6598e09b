"""Scanning: scans (append-only), step runs, deviations, release certificates, idempotency keys.

Hand-edited after autogenerate: append-only triggers for scans and release certificates
(the trigger function comes from the initial revision), and the JSON column types.

Revision ID: b3a0c0de0003
Revises: b3a0c0de0005
Create Date: 2026-11-27 06:35:21.794179
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "b3a0c0de0003"
down_revision: str | Sequence[str] | None = "b3a0c0de0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "idempotency_keys",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("caller", sa.String(length=64), nullable=False),
        sa.Column("key", sa.String(length=255), nullable=False),
        sa.Column("fingerprint", sa.String(length=64), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("status_code", sa.Integer(), nullable=True),
        sa.Column("content_type", sa.String(length=128), nullable=True),
        sa.Column("body", sa.Text(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint(
            "state IN ('done', 'in_flight')", name=op.f("ck_idempotency_keys_state")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_idempotency_keys")),
        sa.UniqueConstraint("caller", "key", name=op.f("uq_idempotency_keys_caller_key")),
    )
    with op.batch_alter_table("idempotency_keys", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_idempotency_keys_expires_at"), ["expires_at"], unique=False
        )

    op.create_table(
        "step_runs",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("order_id", sa.Integer(), nullable=False),
        sa.Column("step", sa.String(length=48), nullable=False),
        sa.Column("exception", sa.Boolean(), nullable=False),
        sa.Column("site_id", sa.Integer(), nullable=False),
        sa.Column("shipment_id", sa.Integer(), nullable=True),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("started_by_id", sa.Integer(), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("completed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column(
            "answers",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=False,
        ),
        sa.Column("version_id", sa.Integer(), nullable=False),
        sa.CheckConstraint(
            "status <> 'completed' OR completed_at IS NOT NULL",
            name=op.f("ck_step_runs_completed_has_time"),
        ),
        sa.CheckConstraint("status IN ('completed', 'open')", name=op.f("ck_step_runs_status")),
        sa.ForeignKeyConstraint(
            ["order_id"], ["therapy_orders.id"], name=op.f("fk_step_runs_order_id_therapy_orders")
        ),
        sa.ForeignKeyConstraint(
            ["shipment_id"], ["shipments.id"], name=op.f("fk_step_runs_shipment_id_shipments")
        ),
        sa.ForeignKeyConstraint(["site_id"], ["sites.id"], name=op.f("fk_step_runs_site_id_sites")),
        sa.ForeignKeyConstraint(
            ["started_by_id"], ["users.id"], name=op.f("fk_step_runs_started_by_id_users")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_step_runs")),
    )
    with op.batch_alter_table("step_runs", schema=None) as batch_op:
        batch_op.create_index(
            "ix_step_runs_order_id_completed_at", ["order_id", "completed_at"], unique=False
        )
        batch_op.create_index(
            "uq_step_runs_open_order_id_step",
            ["order_id", "step"],
            unique=True,
            postgresql_where=sa.text("status = 'open'"),
            sqlite_where=sa.text("status = 'open'"),
        )

    op.create_table(
        "deviations",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("public_id", sa.String(length=32), nullable=False),
        sa.Column("order_id", sa.Integer(), nullable=False),
        sa.Column("item_id", sa.Integer(), nullable=True),
        sa.Column("run_id", sa.Integer(), nullable=True),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("description", sa.Text(), nullable=False),
        sa.Column("opened_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("opened_by_id", sa.Integer(), nullable=True),
        sa.Column("closed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("closed_by_id", sa.Integer(), nullable=True),
        sa.Column("close_reason", sa.Text(), nullable=True),
        sa.Column("close_signature_id", sa.Integer(), nullable=True),
        sa.Column("version_id", sa.Integer(), nullable=False),
        sa.CheckConstraint(
            "kind IN ('checklist', 'forced_scan', 'manual')", name=op.f("ck_deviations_kind")
        ),
        sa.CheckConstraint(
            "status <> 'closed' OR (closed_at IS NOT NULL AND closed_by_id IS NOT NULL AND close_reason IS NOT NULL)",
            name=op.f("ck_deviations_closed_has_reason"),
        ),
        sa.CheckConstraint("status IN ('closed', 'open')", name=op.f("ck_deviations_status")),
        sa.ForeignKeyConstraint(
            ["close_signature_id"],
            ["signatures.id"],
            name=op.f("fk_deviations_close_signature_id_signatures"),
        ),
        sa.ForeignKeyConstraint(
            ["closed_by_id"], ["users.id"], name=op.f("fk_deviations_closed_by_id_users")
        ),
        sa.ForeignKeyConstraint(
            ["item_id"], ["items.id"], name=op.f("fk_deviations_item_id_items")
        ),
        sa.ForeignKeyConstraint(
            ["opened_by_id"], ["users.id"], name=op.f("fk_deviations_opened_by_id_users")
        ),
        sa.ForeignKeyConstraint(
            ["order_id"], ["therapy_orders.id"], name=op.f("fk_deviations_order_id_therapy_orders")
        ),
        sa.ForeignKeyConstraint(
            ["run_id"], ["step_runs.id"], name=op.f("fk_deviations_run_id_step_runs")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_deviations")),
        sa.UniqueConstraint("public_id", name=op.f("uq_deviations_public_id")),
    )
    with op.batch_alter_table("deviations", schema=None) as batch_op:
        batch_op.create_index("ix_deviations_order_id_status", ["order_id", "status"], unique=False)

    op.create_table(
        "release_certificates",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("code", sa.String(length=17), nullable=False),
        sa.Column("order_id", sa.Integer(), nullable=False),
        sa.Column("run_id", sa.Integer(), nullable=False),
        sa.Column("signature_id", sa.Integer(), nullable=False),
        sa.Column("issued_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column(
            "items",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=False,
        ),
        sa.ForeignKeyConstraint(
            ["order_id"],
            ["therapy_orders.id"],
            name=op.f("fk_release_certificates_order_id_therapy_orders"),
        ),
        sa.ForeignKeyConstraint(
            ["run_id"], ["step_runs.id"], name=op.f("fk_release_certificates_run_id_step_runs")
        ),
        sa.ForeignKeyConstraint(
            ["signature_id"],
            ["signatures.id"],
            name=op.f("fk_release_certificates_signature_id_signatures"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_release_certificates")),
        sa.UniqueConstraint("code", name=op.f("uq_release_certificates_code")),
    )
    with op.batch_alter_table("release_certificates", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_release_certificates_order_id"), ["order_id"], unique=False
        )

    op.create_table(
        "scans",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("nonce", sa.String(length=64), nullable=False),
        sa.Column("device_ref", sa.String(length=64), nullable=False),
        sa.Column("device_id", sa.Integer(), nullable=True),
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("site_id", sa.Integer(), nullable=True),
        sa.Column("step", sa.String(length=48), nullable=False),
        sa.Column("client_run", sa.String(length=64), nullable=True),
        sa.Column("run_id", sa.Integer(), nullable=True),
        sa.Column("raw", sa.Text(), nullable=False),
        sa.Column("manual", sa.Boolean(), nullable=False),
        sa.Column(
            "parsed",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=True,
        ),
        sa.Column("kind", sa.String(length=32), nullable=True),
        sa.Column("order_id", sa.Integer(), nullable=True),
        sa.Column("scanned_order_id", sa.Integer(), nullable=True),
        sa.Column("item_id", sa.Integer(), nullable=True),
        sa.Column("requirement", sa.String(length=48), nullable=True),
        sa.Column("token", sa.String(length=64), nullable=True),
        sa.Column("client_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("server_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("offline", sa.Boolean(), nullable=False),
        sa.Column("forced", sa.Boolean(), nullable=False),
        sa.Column("result", sa.String(length=16), nullable=False),
        sa.Column("reason", sa.String(length=48), nullable=True),
        sa.Column("message", sa.Text(), nullable=False),
        sa.Column("http_status", sa.Integer(), nullable=False),
        sa.Column(
            "response",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=False,
        ),
        sa.Column("deviation_id", sa.Integer(), nullable=True),
        sa.CheckConstraint(
            "NOT forced OR (offline AND result = 'error')", name=op.f("ck_scans_forced_is_offline")
        ),
        sa.CheckConstraint(
            "result = 'error' OR reason IS NULL", name=op.f("ck_scans_only_errors_have_reasons")
        ),
        sa.CheckConstraint("result IN ('error', 'incomplete', 'ok')", name=op.f("ck_scans_result")),
        sa.ForeignKeyConstraint(
            ["deviation_id"], ["deviations.id"], name=op.f("fk_scans_deviation_id_deviations")
        ),
        sa.ForeignKeyConstraint(
            ["device_id"], ["devices.id"], name=op.f("fk_scans_device_id_devices")
        ),
        sa.ForeignKeyConstraint(["item_id"], ["items.id"], name=op.f("fk_scans_item_id_items")),
        sa.ForeignKeyConstraint(
            ["order_id"], ["therapy_orders.id"], name=op.f("fk_scans_order_id_therapy_orders")
        ),
        sa.ForeignKeyConstraint(
            ["run_id"], ["step_runs.id"], name=op.f("fk_scans_run_id_step_runs")
        ),
        sa.ForeignKeyConstraint(
            ["scanned_order_id"],
            ["therapy_orders.id"],
            name=op.f("fk_scans_scanned_order_id_therapy_orders"),
        ),
        sa.ForeignKeyConstraint(["site_id"], ["sites.id"], name=op.f("fk_scans_site_id_sites")),
        sa.ForeignKeyConstraint(["user_id"], ["users.id"], name=op.f("fk_scans_user_id_users")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_scans")),
        sa.UniqueConstraint("device_ref", "nonce", name=op.f("uq_scans_device_ref_nonce")),
    )
    with op.batch_alter_table("scans", schema=None) as batch_op:
        batch_op.create_index("ix_scans_client_run", ["client_run"], unique=False)
        batch_op.create_index(
            "ix_scans_order_id_server_at", ["order_id", "server_at"], unique=False
        )
        batch_op.create_index("ix_scans_run_id", ["run_id"], unique=False)
        batch_op.create_index("ix_scans_scanned_order_id", ["scanned_order_id"], unique=False)

    _create_append_only_triggers()


APPEND_ONLY_TABLES = ("scans", "release_certificates")


def _create_append_only_triggers() -> None:
    """Every scan and certificate is kept as it was written: inserts only."""
    if op.get_bind().dialect.name == "postgresql":
        # forbid_append_only_change() was created by the initial revision.
        for table in APPEND_ONLY_TABLES:
            op.execute(
                f"CREATE TRIGGER {table}_append_only BEFORE UPDATE OR DELETE ON {table} "
                "FOR EACH ROW EXECUTE FUNCTION forbid_append_only_change()"
            )
    else:
        for table in APPEND_ONLY_TABLES:
            for verb in ("UPDATE", "DELETE"):
                op.execute(
                    f"CREATE TRIGGER {table}_no_{verb.lower()} BEFORE {verb} ON {table} "
                    f"BEGIN SELECT RAISE(ABORT, '{table} is append-only'); END"
                )


def _drop_append_only_triggers() -> None:
    for table in APPEND_ONLY_TABLES:
        if op.get_bind().dialect.name == "postgresql":
            op.execute(f"DROP TRIGGER IF EXISTS {table}_append_only ON {table}")
        else:
            for verb in ("update", "delete"):
                op.execute(f"DROP TRIGGER IF EXISTS {table}_no_{verb}")


def downgrade() -> None:
    _drop_append_only_triggers()
    with op.batch_alter_table("scans", schema=None) as batch_op:
        batch_op.drop_index("ix_scans_scanned_order_id")
        batch_op.drop_index("ix_scans_run_id")
        batch_op.drop_index("ix_scans_order_id_server_at")
        batch_op.drop_index("ix_scans_client_run")

    op.drop_table("scans")
    with op.batch_alter_table("release_certificates", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_release_certificates_order_id"))

    op.drop_table("release_certificates")
    with op.batch_alter_table("deviations", schema=None) as batch_op:
        batch_op.drop_index("ix_deviations_order_id_status")

    op.drop_table("deviations")
    with op.batch_alter_table("step_runs", schema=None) as batch_op:
        batch_op.drop_index(
            "uq_step_runs_open_order_id_step",
            postgresql_where=sa.text("status = 'open'"),
            sqlite_where=sa.text("status = 'open'"),
        )
        batch_op.drop_index("ix_step_runs_order_id_completed_at")

    op.drop_table("step_runs")
    with op.batch_alter_table("idempotency_keys", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_idempotency_keys_expires_at"))

    op.drop_table("idempotency_keys")
