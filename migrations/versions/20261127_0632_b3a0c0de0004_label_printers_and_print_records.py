"""Label printers per site, and the append-only record of every label print and reprint.

Revision ID: b3a0c0de0004
Revises: e3abb7af8915
Create Date: 2026-11-27 06:32:29.542808
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "b3a0c0de0004"
down_revision: str | Sequence[str] | None = "e3abb7af8915"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "printers",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("public_id", sa.String(length=32), nullable=False),
        sa.Column("site_id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=120), nullable=False),
        sa.Column("host", sa.String(length=255), nullable=False),
        sa.Column("port", sa.Integer(), nullable=False),
        sa.Column("dpi", sa.Integer(), nullable=False),
        sa.Column("default_size", sa.String(length=8), nullable=False),
        sa.Column("active", sa.Boolean(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("version_id", sa.Integer(), nullable=False),
        sa.CheckConstraint(
            "default_size IN ('2x1', '4x2', '4x6')", name=op.f("ck_printers_default_size")
        ),
        sa.CheckConstraint("dpi IN (203, 300)", name=op.f("ck_printers_dpi")),
        sa.CheckConstraint("port BETWEEN 1 AND 65535", name=op.f("ck_printers_port_range")),
        sa.ForeignKeyConstraint(["site_id"], ["sites.id"], name=op.f("fk_printers_site_id_sites")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_printers")),
        sa.UniqueConstraint("public_id", name=op.f("uq_printers_public_id")),
        sa.UniqueConstraint("site_id", "name", name=op.f("uq_printers_site_id_name")),
    )
    with op.batch_alter_table("printers", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_printers_site_id"), ["site_id"], unique=False)

    op.create_table(
        "label_prints",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("public_id", sa.String(length=32), nullable=False),
        sa.Column("label_kind", sa.String(length=16), nullable=False),
        sa.Column("item_id", sa.Integer(), nullable=True),
        sa.Column("shipment_id", sa.Integer(), nullable=True),
        sa.Column("order_id", sa.Integer(), nullable=True),
        sa.Column("site_id", sa.Integer(), nullable=False),
        sa.Column("printer_id", sa.Integer(), nullable=True),
        sa.Column("output", sa.String(length=8), nullable=False),
        sa.Column("size", sa.String(length=8), nullable=False),
        sa.Column("dpi", sa.Integer(), nullable=False),
        sa.Column("copies", sa.Integer(), nullable=False),
        sa.Column("template_version", sa.String(length=32), nullable=False),
        sa.Column("reprint", sa.Boolean(), nullable=False),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.Column("barcode_data", sa.String(length=120), nullable=False),
        sa.Column("din_flags", sa.String(length=2), nullable=True),
        sa.Column("job_code", sa.String(length=32), nullable=True),
        sa.Column("payload_sha256", sa.String(length=64), nullable=False),
        sa.Column("status", sa.String(length=8), nullable=False),
        sa.Column("error_reason", sa.String(length=32), nullable=True),
        sa.Column("error_message", sa.Text(), nullable=True),
        sa.Column("actor_user_id", sa.Integer(), nullable=True),
        sa.Column("device_id", sa.Integer(), nullable=True),
        sa.Column("requested_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint(
            "(label_kind = 'courier_job' AND shipment_id IS NOT NULL AND item_id IS NULL AND job_code IS NOT NULL) OR (label_kind <> 'courier_job' AND item_id IS NOT NULL AND shipment_id IS NULL)",
            name=op.f("ck_label_prints_one_target"),
        ),
        sa.CheckConstraint(
            "(status = 'done' AND error_reason IS NULL) OR (status = 'failed' AND error_reason IS NOT NULL)",
            name=op.f("ck_label_prints_failure_has_reason"),
        ),
        sa.CheckConstraint(
            "label_kind IN ('apheresis_bag', 'courier_job', 'cryoshipper', 'final_product', 'processing')",
            name=op.f("ck_label_prints_label_kind"),
        ),
        sa.CheckConstraint(
            "output IN ('pdf', 'png', 'svg', 'zpl')", name=op.f("ck_label_prints_output")
        ),
        sa.CheckConstraint(
            "printer_id IS NOT NULL OR status = 'done'",
            name=op.f("ck_label_prints_downloads_succeed"),
        ),
        sa.CheckConstraint(
            "printer_id IS NULL OR output = 'zpl'", name=op.f("ck_label_prints_printers_take_zpl")
        ),
        sa.CheckConstraint(
            "size IN ('2x1', '4x2', '4x6', 'a4', 'letter')", name=op.f("ck_label_prints_size")
        ),
        sa.CheckConstraint("status IN ('done', 'failed')", name=op.f("ck_label_prints_status")),
        sa.CheckConstraint(
            "NOT reprint OR reason IS NOT NULL", name=op.f("ck_label_prints_reprint_has_reason")
        ),
        sa.CheckConstraint("copies BETWEEN 1 AND 10", name=op.f("ck_label_prints_copies_range")),
        sa.CheckConstraint("dpi IN (203, 300)", name=op.f("ck_label_prints_dpi")),
        sa.ForeignKeyConstraint(
            ["actor_user_id"], ["users.id"], name=op.f("fk_label_prints_actor_user_id_users")
        ),
        sa.ForeignKeyConstraint(
            ["device_id"], ["devices.id"], name=op.f("fk_label_prints_device_id_devices")
        ),
        sa.ForeignKeyConstraint(
            ["item_id"], ["items.id"], name=op.f("fk_label_prints_item_id_items")
        ),
        sa.ForeignKeyConstraint(
            ["order_id"],
            ["therapy_orders.id"],
            name=op.f("fk_label_prints_order_id_therapy_orders"),
        ),
        sa.ForeignKeyConstraint(
            ["printer_id"], ["printers.id"], name=op.f("fk_label_prints_printer_id_printers")
        ),
        sa.ForeignKeyConstraint(
            ["shipment_id"], ["shipments.id"], name=op.f("fk_label_prints_shipment_id_shipments")
        ),
        sa.ForeignKeyConstraint(
            ["site_id"], ["sites.id"], name=op.f("fk_label_prints_site_id_sites")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_label_prints")),
        sa.UniqueConstraint("public_id", name=op.f("uq_label_prints_public_id")),
    )
    with op.batch_alter_table("label_prints", schema=None) as batch_op:
        batch_op.create_index(
            "ix_label_prints_item_id_label_kind", ["item_id", "label_kind"], unique=False
        )
        batch_op.create_index(batch_op.f("ix_label_prints_order_id"), ["order_id"], unique=False)
        batch_op.create_index(
            batch_op.f("ix_label_prints_shipment_id"), ["shipment_id"], unique=False
        )

    # Print records are evidence (who printed which label, when, why again): like custody
    # events they can be inserted, never changed or removed.
    if op.get_bind().dialect.name == "postgresql":
        # forbid_append_only_change() comes with the initial revision.
        op.execute(
            "CREATE TRIGGER label_prints_append_only BEFORE UPDATE OR DELETE ON label_prints "
            "FOR EACH ROW EXECUTE FUNCTION forbid_append_only_change()"
        )
    else:
        for verb in ("UPDATE", "DELETE"):
            op.execute(
                f"CREATE TRIGGER label_prints_no_{verb.lower()} BEFORE {verb} ON label_prints "
                "BEGIN SELECT RAISE(ABORT, 'label_prints is append-only'); END"
            )


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP TRIGGER IF EXISTS label_prints_append_only ON label_prints")
    else:
        for verb in ("update", "delete"):
            op.execute(f"DROP TRIGGER IF EXISTS label_prints_no_{verb}")
    with op.batch_alter_table("label_prints", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_label_prints_shipment_id"))
        batch_op.drop_index(batch_op.f("ix_label_prints_order_id"))
        batch_op.drop_index("ix_label_prints_item_id_label_kind")

    op.drop_table("label_prints")
    with op.batch_alter_table("printers", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_printers_site_id"))

    op.drop_table("printers")
