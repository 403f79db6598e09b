"""Initial schema: sites, users, patients, orders, items, shipments, custody chain, audit.

Revision ID: e3abb7af8915
Revises:
Create Date: 2026-11-27 06:12:39.627259
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "e3abb7af8915"
down_revision: str | Sequence[str] | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "identifier_counters",
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("value", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("name", name=op.f("pk_identifier_counters")),
    )
    op.create_table(
        "product_profiles",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("code", sa.String(length=32), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("product_code", sa.String(length=16), nullable=False),
        sa.Column("starting_material", sa.String(length=16), nullable=False),
        sa.Column(
            "data",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=False,
        ),
        sa.Column("active", sa.Boolean(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint(
            "starting_material IN ('cryopreserved', 'fresh')",
            name=op.f("ck_product_profiles_starting_material"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_product_profiles")),
        sa.UniqueConstraint("code", "version", name=op.f("uq_product_profiles_code_version")),
    )
    op.create_table(
        "sites",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("code", sa.String(length=32), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("kind", sa.String(length=32), nullable=False),
        sa.Column("timezone", sa.String(length=64), nullable=False),
        sa.Column("address", sa.Text(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint(
            "kind IN ('collection_centre', 'courier_depot', 'manufacturing_facility', 'processing_lab', 'treatment_centre')",
            name=op.f("ck_sites_kind"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_sites")),
        sa.UniqueConstraint("code", name=op.f("uq_sites_code")),
    )
    op.create_table(
        "users",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("username", sa.String(length=80), nullable=False),
        sa.Column("full_name", sa.String(length=200), nullable=False),
        sa.Column("password_hash", sa.String(length=255), nullable=False),
        sa.Column("active", sa.Boolean(), nullable=False),
        sa.Column("failed_logins", sa.Integer(), nullable=False),
        sa.Column("locked_until", sa.DateTime(timezone=True), nullable=True),
        sa.Column("session_version", sa.Integer(), nullable=False),
        sa.Column("phone", sa.String(length=32), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_login_at", sa.DateTime(timezone=True), nullable=True),
        sa.CheckConstraint("failed_logins >= 0", name=op.f("ck_users_failed_logins_non_negative")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_users")),
        sa.UniqueConstraint("username", name=op.f("uq_users_username")),
    )
    op.create_table(
        "worker_heartbeats",
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("beat_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("host", sa.String(length=120), nullable=False),
        sa.Column("pid", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("name", name=op.f("pk_worker_heartbeats")),
    )
    op.create_table(
        "audit_log",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("actor_user_id", sa.Integer(), nullable=True),
        sa.Column("action", sa.String(length=48), nullable=False),
        sa.Column("entity_type", sa.String(length=48), nullable=False),
        sa.Column("entity_id", sa.String(length=64), nullable=False),
        sa.Column(
            "changes",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=False,
        ),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.Column("site_id", sa.Integer(), nullable=True),
        sa.ForeignKeyConstraint(
            ["actor_user_id"], ["users.id"], name=op.f("fk_audit_log_actor_user_id_users")
        ),
        sa.ForeignKeyConstraint(["site_id"], ["sites.id"], name=op.f("fk_audit_log_site_id_sites")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_audit_log")),
    )
    with op.batch_alter_table("audit_log", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_audit_log_at"), ["at"], unique=False)
        batch_op.create_index("ix_audit_log_entity", ["entity_type", "entity_id"], unique=False)

    op.create_table(
        "devices",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("public_id", sa.String(length=32), nullable=False),
        sa.Column("name", sa.String(length=120), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("site_id", sa.Integer(), nullable=False),
        sa.Column("token_hash", sa.String(length=64), nullable=False),
        sa.Column("active", sa.Boolean(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("created_by_id", sa.Integer(), nullable=True),
        sa.Column("last_seen_at", sa.DateTime(timezone=True), nullable=True),
        sa.CheckConstraint("kind IN ('logger', 'scanner')", name=op.f("ck_devices_kind")),
        sa.ForeignKeyConstraint(
            ["created_by_id"], ["users.id"], name=op.f("fk_devices_created_by_id_users")
        ),
        sa.ForeignKeyConstraint(["site_id"], ["sites.id"], name=op.f("fk_devices_site_id_sites")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_devices")),
        sa.UniqueConstraint("public_id", name=op.f("uq_devices_public_id")),
        sa.UniqueConstraint("token_hash", name=op.f("uq_devices_token_hash")),
    )
    op.create_table(
        "patients",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("public_id", sa.String(length=32), nullable=False),
        sa.Column("wristband_code", sa.String(length=32), nullable=False),
        sa.Column("treatment_site_id", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["treatment_site_id"], ["sites.id"], name=op.f("fk_patients_treatment_site_id_sites")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_patients")),
        sa.UniqueConstraint("public_id", name=op.f("uq_patients_public_id")),
        sa.UniqueConstraint("wristband_code", name=op.f("uq_patients_wristband_code")),
    )
    with op.batch_alter_table("patients", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_patients_treatment_site_id"), ["treatment_site_id"], unique=False
        )

    op.create_table(
        "role_assignments",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("role", sa.String(length=32), nullable=False),
        sa.Column("site_id", sa.Integer(), nullable=True),
        sa.CheckConstraint(
            "role IN ('admin', 'collection_nurse', 'coordinator', 'courier', 'infusion_nurse', 'manufacturing_operator', 'qa')",
            name=op.f("ck_role_assignments_role"),
        ),
        sa.CheckConstraint(
            "site_id IS NOT NULL OR role = 'admin'",
            name=op.f("ck_role_assignments_site_scoped_unless_admin"),
        ),
        sa.ForeignKeyConstraint(
            ["site_id"], ["sites.id"], name=op.f("fk_role_assignments_site_id_sites")
        ),
        sa.ForeignKeyConstraint(
            ["user_id"], ["users.id"], name=op.f("fk_role_assignments_user_id_users")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_role_assignments")),
        sa.UniqueConstraint(
            "user_id", "role", "site_id", name=op.f("uq_role_assignments_user_id_role_site_id")
        ),
    )
    with op.batch_alter_table("role_assignments", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_role_assignments_user_id"), ["user_id"], unique=False)

    op.create_table(
        "signatures",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("printed_name", sa.String(length=200), nullable=False),
        sa.Column("meaning", sa.String(length=32), nullable=False),
        sa.Column("signed_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("record_type", sa.String(length=48), nullable=False),
        sa.Column("record_id", sa.String(length=64), nullable=False),
        sa.Column("record_hash", sa.String(length=64), nullable=False),
        sa.CheckConstraint(
            "meaning IN ('approval', 'authorship', 'responsibility', 'review', 'verification', 'witness')",
            name=op.f("ck_signatures_meaning"),
        ),
        sa.ForeignKeyConstraint(
            ["user_id"], ["users.id"], name=op.f("fk_signatures_user_id_users")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_signatures")),
    )
    with op.batch_alter_table("signatures", schema=None) as batch_op:
        batch_op.create_index("ix_signatures_record", ["record_type", "record_id"], unique=False)

    op.create_table(
        "patient_identities",
        sa.Column("patient_id", sa.Integer(), nullable=False),
        sa.Column("given_name", sa.String(length=120), nullable=False),
        sa.Column("family_name", sa.String(length=120), nullable=False),
        sa.Column("date_of_birth", sa.Date(), nullable=False),
        sa.Column("mrn", sa.String(length=64), nullable=False),
        sa.ForeignKeyConstraint(
            ["patient_id"], ["patients.id"], name=op.f("fk_patient_identities_patient_id_patients")
        ),
        sa.PrimaryKeyConstraint("patient_id", name=op.f("pk_patient_identities")),
    )
    op.create_table(
        "therapy_orders",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("public_id", sa.String(length=32), nullable=False),
        sa.Column("coi", sa.String(length=15), nullable=False),
        sa.Column("patient_id", sa.Integer(), nullable=False),
        sa.Column("product_profile_id", sa.Integer(), nullable=False),
        sa.Column("treatment_site_id", sa.Integer(), nullable=False),
        sa.Column("collection_site_id", sa.Integer(), nullable=False),
        sa.Column("manufacturing_site_id", sa.Integer(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("created_by_id", sa.Integer(), nullable=False),
        sa.Column("version_id", sa.Integer(), nullable=False),
        sa.CheckConstraint(
            "status IN ('active', 'cancelled', 'completed')", name=op.f("ck_therapy_orders_status")
        ),
        sa.ForeignKeyConstraint(
            ["collection_site_id"],
            ["sites.id"],
            name=op.f("fk_therapy_orders_collection_site_id_sites"),
        ),
        sa.ForeignKeyConstraint(
            ["created_by_id"], ["users.id"], name=op.f("fk_therapy_orders_created_by_id_users")
        ),
        sa.ForeignKeyConstraint(
            ["manufacturing_site_id"],
            ["sites.id"],
            name=op.f("fk_therapy_orders_manufacturing_site_id_sites"),
        ),
        sa.ForeignKeyConstraint(
            ["patient_id"], ["patients.id"], name=op.f("fk_therapy_orders_patient_id_patients")
        ),
        sa.ForeignKeyConstraint(
            ["product_profile_id"],
            ["product_profiles.id"],
            name=op.f("fk_therapy_orders_product_profile_id_product_profiles"),
        ),
        sa.ForeignKeyConstraint(
            ["treatment_site_id"],
            ["sites.id"],
            name=op.f("fk_therapy_orders_treatment_site_id_sites"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_therapy_orders")),
        sa.UniqueConstraint("coi", name=op.f("uq_therapy_orders_coi")),
        sa.UniqueConstraint("public_id", name=op.f("uq_therapy_orders_public_id")),
    )
    with op.batch_alter_table("therapy_orders", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_therapy_orders_collection_site_id"), ["collection_site_id"], unique=False
        )
        batch_op.create_index(
            batch_op.f("ix_therapy_orders_manufacturing_site_id"),
            ["manufacturing_site_id"],
            unique=False,
        )
        batch_op.create_index(
            batch_op.f("ix_therapy_orders_patient_id"), ["patient_id"], unique=False
        )
        batch_op.create_index(
            batch_op.f("ix_therapy_orders_treatment_site_id"), ["treatment_site_id"], unique=False
        )

    op.create_table(
        "items",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("public_id", sa.String(length=32), nullable=False),
        sa.Column("kind", sa.String(length=32), nullable=False),
        sa.Column("state", sa.String(length=32), nullable=False),
        sa.Column("order_id", sa.Integer(), nullable=True),
        sa.Column("site_id", sa.Integer(), nullable=True),
        sa.Column("parent_id", sa.Integer(), nullable=True),
        sa.Column("din", sa.String(length=13), nullable=True),
        sa.Column("container", sa.Integer(), nullable=False),
        sa.Column("product_code", sa.String(length=16), nullable=True),
        sa.Column("lot", sa.String(length=32), nullable=True),
        sa.Column("serial", sa.String(length=40), nullable=True),
        sa.Column("charged_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("validated_hold_hours", sa.Integer(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("version_id", sa.Integer(), nullable=False),
        sa.CheckConstraint(
            "kind <> 'cryoshipper' OR serial IS NOT NULL", name=op.f("ck_items_shipper_has_serial")
        ),
        sa.CheckConstraint(
            "kind = 'cryoshipper' OR (order_id IS NOT NULL AND din IS NOT NULL)",
            name=op.f("ck_items_bag_has_order_and_din"),
        ),
        sa.CheckConstraint(
            "kind IN ('apheresis_bag', 'cryoshipper', 'final_product_bag')",
            name=op.f("ck_items_kind"),
        ),
        sa.CheckConstraint(
            "state IN ('assigned', 'available', 'cancelled', 'charged', 'collected', 'consumed', 'delivered', 'discarded', 'in_manufacturing', 'in_transit', 'infused', 'infusing', 'labelled', 'out_of_service', 'packed', 'picked_up', 'planned', 'quarantined', 'received', 'recharge_due', 'registered', 'released', 'returned', 'returned_to_manufacturer', 'stored', 'thawed')",
            name=op.f("ck_items_state"),
        ),
        sa.CheckConstraint("container BETWEEN 1 AND 9", name=op.f("ck_items_container_1_to_9")),
        sa.ForeignKeyConstraint(
            ["order_id"], ["therapy_orders.id"], name=op.f("fk_items_order_id_therapy_orders")
        ),
        sa.ForeignKeyConstraint(["parent_id"], ["items.id"], name=op.f("fk_items_parent_id_items")),
        sa.ForeignKeyConstraint(["site_id"], ["sites.id"], name=op.f("fk_items_site_id_sites")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_items")),
        sa.UniqueConstraint("din", "container", name=op.f("uq_items_din_container")),
        sa.UniqueConstraint("public_id", name=op.f("uq_items_public_id")),
        sa.UniqueConstraint("serial", name=op.f("uq_items_serial")),
    )
    with op.batch_alter_table("items", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_items_order_id"), ["order_id"], unique=False)

    op.create_table(
        "shipments",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("public_id", sa.String(length=32), nullable=False),
        sa.Column("order_id", sa.Integer(), nullable=False),
        sa.Column("shipper_id", sa.Integer(), nullable=True),
        sa.Column("origin_site_id", sa.Integer(), nullable=False),
        sa.Column("destination_site_id", sa.Integer(), nullable=False),
        sa.Column("courier_user_id", sa.Integer(), nullable=True),
        sa.Column("state", sa.String(length=32), nullable=False),
        sa.Column("tamper_seal", sa.String(length=64), nullable=True),
        sa.Column("air_waybill", sa.String(length=64), nullable=True),
        sa.Column("logger_serial", sa.String(length=64), nullable=True),
        sa.Column("planned_pickup_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("planned_delivery_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("version_id", sa.Integer(), nullable=False),
        sa.CheckConstraint(
            "state IN ('assigned', 'available', 'cancelled', 'charged', 'collected', 'consumed', 'delivered', 'discarded', 'in_manufacturing', 'in_transit', 'infused', 'infusing', 'labelled', 'out_of_service', 'packed', 'picked_up', 'planned', 'quarantined', 'received', 'recharge_due', 'registered', 'released', 'returned', 'returned_to_manufacturer', 'stored', 'thawed')",
            name=op.f("ck_shipments_state"),
        ),
        sa.CheckConstraint(
            "origin_site_id <> destination_site_id", name=op.f("ck_shipments_origin_differs")
        ),
        sa.ForeignKeyConstraint(
            ["courier_user_id"], ["users.id"], name=op.f("fk_shipments_courier_user_id_users")
        ),
        sa.ForeignKeyConstraint(
            ["destination_site_id"],
            ["sites.id"],
            name=op.f("fk_shipments_destination_site_id_sites"),
        ),
        sa.ForeignKeyConstraint(
            ["order_id"], ["therapy_orders.id"], name=op.f("fk_shipments_order_id_therapy_orders")
        ),
        sa.ForeignKeyConstraint(
            ["origin_site_id"], ["sites.id"], name=op.f("fk_shipments_origin_site_id_sites")
        ),
        sa.ForeignKeyConstraint(
            ["shipper_id"], ["items.id"], name=op.f("fk_shipments_shipper_id_items")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_shipments")),
        sa.UniqueConstraint("public_id", name=op.f("uq_shipments_public_id")),
    )
    with op.batch_alter_table("shipments", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_shipments_order_id"), ["order_id"], unique=False)

    op.create_table(
        "custody_events",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("chain_key", sa.String(length=48), nullable=False),
        sa.Column("seq", sa.Integer(), nullable=False),
        sa.Column("order_id", sa.Integer(), nullable=True),
        sa.Column("item_id", sa.Integer(), nullable=True),
        sa.Column("shipment_id", sa.Integer(), nullable=True),
        sa.Column("event_type", sa.String(length=16), nullable=False),
        sa.Column("from_state", sa.String(length=32), nullable=True),
        sa.Column("to_state", sa.String(length=32), nullable=True),
        sa.Column("site_id", sa.Integer(), nullable=True),
        sa.Column("actor_user_id", sa.Integer(), nullable=True),
        sa.Column("device_id", sa.Integer(), nullable=True),
        sa.Column("occurred_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("recorded_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column(
            "details",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=False,
        ),
        sa.Column("corrects_event_id", sa.Integer(), nullable=True),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.Column("prev_hash", sa.String(length=64), nullable=False),
        sa.Column("hash", sa.String(length=64), nullable=False),
        sa.CheckConstraint(
            "event_type <> 'correction' OR (corrects_event_id IS NOT NULL AND reason IS NOT NULL)",
            name=op.f("ck_custody_events_correction_has_target_and_reason"),
        ),
        sa.CheckConstraint(
            "event_type IN ('correction', 'linked', 'note', 'registered', 'transition')",
            name=op.f("ck_custody_events_event_type"),
        ),
        sa.ForeignKeyConstraint(
            ["actor_user_id"], ["users.id"], name=op.f("fk_custody_events_actor_user_id_users")
        ),
        sa.ForeignKeyConstraint(
            ["corrects_event_id"],
            ["custody_events.id"],
            name=op.f("fk_custody_events_corrects_event_id_custody_events"),
        ),
        sa.ForeignKeyConstraint(
            ["device_id"], ["devices.id"], name=op.f("fk_custody_events_device_id_devices")
        ),
        sa.ForeignKeyConstraint(
            ["item_id"], ["items.id"], name=op.f("fk_custody_events_item_id_items")
        ),
        sa.ForeignKeyConstraint(
            ["order_id"],
            ["therapy_orders.id"],
            name=op.f("fk_custody_events_order_id_therapy_orders"),
        ),
        sa.ForeignKeyConstraint(
            ["shipment_id"], ["shipments.id"], name=op.f("fk_custody_events_shipment_id_shipments")
        ),
        sa.ForeignKeyConstraint(
            ["site_id"], ["sites.id"], name=op.f("fk_custody_events_site_id_sites")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_custody_events")),
        sa.UniqueConstraint("chain_key", "seq", name=op.f("uq_custody_events_chain_key_seq")),
        sa.UniqueConstraint("hash", name=op.f("uq_custody_events_hash")),
    )
    with op.batch_alter_table("custody_events", schema=None) as batch_op:
        batch_op.create_index(
            "ix_custody_events_item_id_occurred_at", ["item_id", "occurred_at"], unique=False
        )
        batch_op.create_index(batch_op.f("ix_custody_events_order_id"), ["order_id"], unique=False)

    op.create_table(
        "shipment_items",
        sa.Column("shipment_id", sa.Integer(), nullable=False),
        sa.Column("item_id", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(
            ["item_id"], ["items.id"], name=op.f("fk_shipment_items_item_id_items")
        ),
        sa.ForeignKeyConstraint(
            ["shipment_id"], ["shipments.id"], name=op.f("fk_shipment_items_shipment_id_shipments")
        ),
        sa.PrimaryKeyConstraint("shipment_id", "item_id", name=op.f("pk_shipment_items")),
    )

    _create_append_only_triggers()


APPEND_ONLY_TABLES = ("custody_events", "audit_log", "signatures")


def _create_append_only_triggers() -> None:
    """Custody events, audit rows and signatures can be inserted, never changed or removed."""
    if op.get_bind().dialect.name == "postgresql":
        op.execute(
            """
            CREATE FUNCTION forbid_append_only_change() RETURNS trigger AS $$
            BEGIN
                RAISE EXCEPTION 'table % is append-only', TG_TABLE_NAME
                    USING ERRCODE = 'integrity_constraint_violation';
            END;
            $$ LANGUAGE plpgsql
            """
        )
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
    if op.get_bind().dialect.name == "postgresql":
        for table in APPEND_ONLY_TABLES:
            op.execute(f"DROP TRIGGER IF EXISTS {table}_append_only ON {table}")
        op.execute("DROP FUNCTION IF EXISTS forbid_append_only_change()")
    else:
        for table in APPEND_ONLY_TABLES:
            for verb in ("update", "delete"):
                op.execute(f"DROP TRIGGER IF EXISTS {table}_no_{verb}")


def downgrade() -> None:
    _drop_append_only_triggers()
    op.drop_table("shipment_items")
    with op.batch_alter_table("custody_events", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_custody_events_order_id"))
        batch_op.drop_index("ix_custody_events_item_id_occurred_at")

    op.drop_table("custody_events")
    with op.batch_alter_table("shipments", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_shipments_order_id"))

    op.drop_table("shipments")
    with op.batch_alter_table("items", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_items_order_id"))

    op.drop_table("items")
    with op.batch_alter_table("therapy_orders", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_therapy_orders_treatment_site_id"))
        batch_op.drop_index(batch_op.f("ix_therapy_orders_patient_id"))
        batch_op.drop_index(batch_op.f("ix_therapy_orders_manufacturing_site_id"))
        batch_op.drop_index(batch_op.f("ix_therapy_orders_collection_site_id"))

    op.drop_table("therapy_orders")
    op.drop_table("patient_identities")
    with op.batch_alter_table("signatures", schema=None) as batch_op:
        batch_op.drop_index("ix_signatures_record")

    op.drop_table("signatures")
    with op.batch_alter_table("role_assignments", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_role_assignments_user_id"))

    op.drop_table("role_assignments")
    with op.batch_alter_table("patients", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_patients_treatment_site_id"))

    op.drop_table("patients")
    op.drop_table("devices")
    with op.batch_alter_table("audit_log", schema=None) as batch_op:
        batch_op.drop_index("ix_audit_log_entity")
        batch_op.drop_index(batch_op.f("ix_audit_log_at"))

    op.drop_table("audit_log")
    op.drop_table("worker_heartbeats")
    op.drop_table("users")
    op.drop_table("sites")
    op.drop_table("product_profiles")
    op.drop_table("identifier_counters")
