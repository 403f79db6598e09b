"""Alerts: loggers and readings, excursions, QA dispositions, handoff deadlines, escalation
ladders, alerts, and the SMS outbox with Twilio's status callbacks and inbound replies.

Readings, QA dispositions, inbound texts and status callbacks are evidence: triggers make them
append-only (PostgreSQL reuses the initial revision's forbid_append_only_change()).

Revision ID: b3a0c0de0006
Revises: b3a0c0de0004
Create Date: 2026-11-27 06:38:56.064693
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "b3a0c0de0006"
down_revision: str | Sequence[str] | None = "b3a0c0de0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "sms_opt_outs",
        sa.Column("phone", sa.String(length=32), nullable=False),
        sa.Column("opted_out", sa.Boolean(), nullable=False),
        sa.Column("source", sa.String(length=16), nullable=False),
        sa.Column("changed_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint(
            "source IN ('admin', 'carrier_error', 'keyword')", name=op.f("ck_sms_opt_outs_source")
        ),
        sa.PrimaryKeyConstraint("phone", name=op.f("pk_sms_opt_outs")),
    )
    op.create_table(
        "escalation_steps",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("site_id", sa.Integer(), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("role", sa.String(length=24), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=True),
        sa.Column("channel", sa.String(length=8), nullable=False),
        sa.Column("ack_timeout_minutes", sa.Integer(), nullable=False),
        sa.CheckConstraint(
            "channel IN ('in_app', 'sms')", name=op.f("ck_escalation_steps_channel")
        ),
        sa.CheckConstraint(
            "role = 'courier' OR user_id IS NOT NULL",
            name=op.f("ck_escalation_steps_named_unless_courier"),
        ),
        sa.CheckConstraint(
            "role IN ('backup_courier', 'coordinator', 'courier', 'on_call_manager')",
            name=op.f("ck_escalation_steps_role"),
        ),
        sa.CheckConstraint(
            "ack_timeout_minutes > 0", name=op.f("ck_escalation_steps_timeout_positive")
        ),
        sa.ForeignKeyConstraint(
            ["site_id"], ["sites.id"], name=op.f("fk_escalation_steps_site_id_sites")
        ),
        sa.ForeignKeyConstraint(
            ["user_id"], ["users.id"], name=op.f("fk_escalation_steps_user_id_users")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_escalation_steps")),
        sa.UniqueConstraint(
            "site_id", "position", name=op.f("uq_escalation_steps_site_id_position")
        ),
    )
    op.create_table(
        "loggers",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("serial", sa.String(length=64), nullable=False),
        sa.Column("device_id", sa.Integer(), nullable=True),
        sa.Column("site_id", sa.Integer(), nullable=False),
        sa.Column("placement", sa.String(length=16), nullable=False),
        sa.Column("location", sa.String(length=120), nullable=False),
        sa.Column("shipper_item_id", sa.Integer(), nullable=True),
        sa.Column("profile", sa.String(length=16), nullable=False),
        sa.Column("limit_c", sa.Float(), nullable=True),
        sa.Column("expected_interval_seconds", sa.Integer(), nullable=False),
        sa.Column("silence_factor", sa.Float(), nullable=False),
        sa.Column("series_started_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_reading_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("excursion_open", sa.Boolean(), nullable=False),
        sa.Column(
            "device_alarms",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=False,
        ),
        sa.Column("active", sa.Boolean(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint(
            "placement IN ('shipment', 'storage')", name=op.f("ck_loggers_placement")
        ),
        sa.CheckConstraint(
            "profile IN ('cryogenic', 'device', 'fresh')", name=op.f("ck_loggers_profile")
        ),
        sa.CheckConstraint(
            "expected_interval_seconds > 0", name=op.f("ck_loggers_interval_positive")
        ),
        sa.CheckConstraint("silence_factor > 0", name=op.f("ck_loggers_silence_factor_positive")),
        sa.ForeignKeyConstraint(
            ["device_id"], ["devices.id"], name=op.f("fk_loggers_device_id_devices")
        ),
        sa.ForeignKeyConstraint(
            ["shipper_item_id"], ["items.id"], name=op.f("fk_loggers_shipper_item_id_items")
        ),
        sa.ForeignKeyConstraint(["site_id"], ["sites.id"], name=op.f("fk_loggers_site_id_sites")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_loggers")),
        sa.UniqueConstraint("device_id", name=op.f("uq_loggers_device_id")),
        sa.UniqueConstraint("serial", name=op.f("uq_loggers_serial")),
    )
    with op.batch_alter_table("loggers", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_loggers_site_id"), ["site_id"], unique=False)

    op.create_table(
        "excursions",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("dedupe_key", sa.String(length=200), nullable=False),
        sa.Column("logger_id", sa.Integer(), nullable=False),
        sa.Column("shipment_id", sa.Integer(), nullable=True),
        sa.Column("site_id", sa.Integer(), nullable=False),
        sa.Column("level", sa.String(length=16), nullable=False),
        sa.Column("kind", sa.String(length=8), nullable=False),
        sa.Column("mode", sa.String(length=16), nullable=False),
        sa.Column("threshold_c", sa.Float(), nullable=False),
        sa.Column("inclusive", sa.Boolean(), nullable=False),
        sa.Column("min_duration_seconds", sa.Integer(), nullable=False),
        sa.Column("rule_source", sa.String(length=160), nullable=False),
        sa.Column("profile_id", sa.Integer(), nullable=True),
        sa.Column("profile_version", sa.Integer(), nullable=True),
        sa.Column("start_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("end_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("duration_seconds", sa.Integer(), nullable=False),
        sa.Column("triggered_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("worst_c", sa.Float(), nullable=False),
        sa.Column("worst_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column(
            "spans",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=False,
        ),
        sa.Column("detected_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint("kind IN ('cold', 'hot')", name=op.f("ck_excursions_kind")),
        sa.CheckConstraint(
            "level IN ('alarm', 'critical', 'warning')", name=op.f("ck_excursions_level")
        ),
        sa.CheckConstraint(
            "mode IN ('consecutive', 'cumulative')", name=op.f("ck_excursions_mode")
        ),
        sa.CheckConstraint(
            "end_at IS NULL OR end_at >= start_at", name=op.f("ck_excursions_ends_after_start")
        ),
        sa.ForeignKeyConstraint(
            ["logger_id"], ["loggers.id"], name=op.f("fk_excursions_logger_id_loggers")
        ),
        sa.ForeignKeyConstraint(
            ["profile_id"],
            ["product_profiles.id"],
            name=op.f("fk_excursions_profile_id_product_profiles"),
        ),
        sa.ForeignKeyConstraint(
            ["shipment_id"], ["shipments.id"], name=op.f("fk_excursions_shipment_id_shipments")
        ),
        sa.ForeignKeyConstraint(
            ["site_id"], ["sites.id"], name=op.f("fk_excursions_site_id_sites")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_excursions")),
        sa.UniqueConstraint("dedupe_key", name=op.f("uq_excursions_dedupe_key")),
    )
    with op.batch_alter_table("excursions", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_excursions_logger_id"), ["logger_id"], unique=False)

    op.create_table(
        "handoff_deadlines",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("dedupe_key", sa.String(length=160), nullable=False),
        sa.Column("kind", sa.String(length=24), nullable=False),
        sa.Column("label", sa.String(length=200), nullable=False),
        sa.Column("due_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("warn_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("order_id", sa.Integer(), nullable=True),
        sa.Column("item_id", sa.Integer(), nullable=True),
        sa.Column("shipment_id", sa.Integer(), nullable=True),
        sa.Column("site_id", sa.Integer(), nullable=False),
        sa.Column("profile_id", sa.Integer(), nullable=True),
        sa.Column("profile_version", sa.Integer(), nullable=True),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("warned_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("breached_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("closed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint(
            "kind IN ('ambient_exposure', 'delivery_by', 'fresh_stability', 'pickup_by', 'plan_milestone', 'shipper_expiry', 'thaw_to_infusion')",
            name=op.f("ck_handoff_deadlines_kind"),
        ),
        sa.CheckConstraint(
            "status IN ('cancelled', 'met', 'open')", name=op.f("ck_handoff_deadlines_status")
        ),
        sa.CheckConstraint(
            "warn_at IS NULL OR warn_at <= due_at",
            name=op.f("ck_handoff_deadlines_warns_before_due"),
        ),
        sa.ForeignKeyConstraint(
            ["item_id"], ["items.id"], name=op.f("fk_handoff_deadlines_item_id_items")
        ),
        sa.ForeignKeyConstraint(
            ["order_id"],
            ["therapy_orders.id"],
            name=op.f("fk_handoff_deadlines_order_id_therapy_orders"),
        ),
        sa.ForeignKeyConstraint(
            ["profile_id"],
            ["product_profiles.id"],
            name=op.f("fk_handoff_deadlines_profile_id_product_profiles"),
        ),
        sa.ForeignKeyConstraint(
            ["shipment_id"],
            ["shipments.id"],
            name=op.f("fk_handoff_deadlines_shipment_id_shipments"),
        ),
        sa.ForeignKeyConstraint(
            ["site_id"], ["sites.id"], name=op.f("fk_handoff_deadlines_site_id_sites")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_handoff_deadlines")),
        sa.UniqueConstraint("dedupe_key", name=op.f("uq_handoff_deadlines_dedupe_key")),
    )
    with op.batch_alter_table("handoff_deadlines", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_handoff_deadlines_item_id"), ["item_id"], unique=False)
        batch_op.create_index(
            batch_op.f("ix_handoff_deadlines_order_id"), ["order_id"], unique=False
        )
        batch_op.create_index(
            batch_op.f("ix_handoff_deadlines_shipment_id"), ["shipment_id"], unique=False
        )
        batch_op.create_index(
            "ix_handoff_deadlines_status_due_at", ["status", "due_at"], unique=False
        )
        batch_op.create_index(
            "ix_handoff_deadlines_status_warn_at", ["status", "warn_at"], unique=False
        )

    op.create_table(
        "logger_imports",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("logger_id", sa.Integer(), nullable=True),
        sa.Column("site_id", sa.Integer(), nullable=False),
        sa.Column("filename", sa.String(length=255), nullable=False),
        sa.Column("serial_hint", sa.String(length=64), nullable=True),
        sa.Column("profile_hint", sa.String(length=16), nullable=False),
        sa.Column("content", sa.Text(), nullable=False),
        sa.Column("format", sa.String(length=32), nullable=True),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("total", sa.Integer(), nullable=False),
        sa.Column("done", sa.Integer(), nullable=False),
        sa.Column("readings_new", sa.Integer(), nullable=False),
        sa.Column("readings_duplicate", sa.Integer(), nullable=False),
        sa.Column("readings_conflicting", sa.Integer(), nullable=False),
        sa.Column("excursions", sa.Integer(), nullable=False),
        sa.Column(
            "summary",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=False,
        ),
        sa.Column("uploaded_by_user_id", sa.Integer(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.CheckConstraint(
            "status IN ('done', 'evaluating', 'failed', 'parsing', 'queued', 'storing')",
            name=op.f("ck_logger_imports_status"),
        ),
        sa.ForeignKeyConstraint(
            ["logger_id"], ["loggers.id"], name=op.f("fk_logger_imports_logger_id_loggers")
        ),
        sa.ForeignKeyConstraint(
            ["site_id"], ["sites.id"], name=op.f("fk_logger_imports_site_id_sites")
        ),
        sa.ForeignKeyConstraint(
            ["uploaded_by_user_id"],
            ["users.id"],
            name=op.f("fk_logger_imports_uploaded_by_user_id_users"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_logger_imports")),
    )
    with op.batch_alter_table("logger_imports", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_logger_imports_logger_id"), ["logger_id"], unique=False
        )

    op.create_table(
        "alerts",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("dedupe_key", sa.String(length=200), nullable=False),
        sa.Column("kind", sa.String(length=32), nullable=False),
        sa.Column("severity", sa.String(length=16), nullable=False),
        sa.Column("notify", sa.String(length=16), nullable=False),
        sa.Column("title", sa.String(length=300), nullable=False),
        sa.Column(
            "details",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=False,
        ),
        sa.Column("site_id", sa.Integer(), nullable=False),
        sa.Column("order_id", sa.Integer(), nullable=True),
        sa.Column("item_id", sa.Integer(), nullable=True),
        sa.Column("shipment_id", sa.Integer(), nullable=True),
        sa.Column("logger_id", sa.Integer(), nullable=True),
        sa.Column("excursion_id", sa.Integer(), nullable=True),
        sa.Column("deadline_id", sa.Integer(), nullable=True),
        sa.Column("job_code", sa.String(length=16), nullable=False),
        sa.Column("ack_code", sa.String(length=8), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("raised_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("escalation_level", sa.Integer(), nullable=False),
        sa.Column("next_escalation_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("ladder_exhausted", sa.Boolean(), nullable=False),
        sa.Column("acknowledged_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("acknowledged_by_user_id", sa.Integer(), nullable=True),
        sa.Column("ack_channel", sa.String(length=8), nullable=True),
        sa.Column("ack_comment", sa.Text(), nullable=True),
        sa.Column("ack_phone", sa.String(length=32), nullable=True),
        sa.Column("resolved_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("resolution", sa.String(length=200), nullable=True),
        sa.Column("version_id", sa.Integer(), nullable=False),
        sa.CheckConstraint(
            "ack_channel IS NULL OR ack_channel IN ('web', 'sms')",
            name=op.f("ck_alerts_ack_channel"),
        ),
        sa.CheckConstraint(
            "kind IN ('deadline_breach', 'deadline_warning', 'logger_silent', 'shipper_hold', 'temperature_excursion')",
            name=op.f("ck_alerts_kind"),
        ),
        sa.CheckConstraint(
            "notify IN ('first', 'in_app', 'ladder')", name=op.f("ck_alerts_notify")
        ),
        sa.CheckConstraint(
            "severity IN ('alarm', 'critical', 'info', 'warning')", name=op.f("ck_alerts_severity")
        ),
        sa.CheckConstraint(
            "status <> 'acknowledged' OR acknowledged_at IS NOT NULL",
            name=op.f("ck_alerts_ack_has_time"),
        ),
        sa.CheckConstraint(
            "status IN ('acknowledged', 'open', 'resolved')", name=op.f("ck_alerts_status")
        ),
        sa.ForeignKeyConstraint(
            ["acknowledged_by_user_id"],
            ["users.id"],
            name=op.f("fk_alerts_acknowledged_by_user_id_users"),
        ),
        sa.ForeignKeyConstraint(
            ["deadline_id"],
            ["handoff_deadlines.id"],
            name=op.f("fk_alerts_deadline_id_handoff_deadlines"),
        ),
        sa.ForeignKeyConstraint(
            ["excursion_id"], ["excursions.id"], name=op.f("fk_alerts_excursion_id_excursions")
        ),
        sa.ForeignKeyConstraint(["item_id"], ["items.id"], name=op.f("fk_alerts_item_id_items")),
        sa.ForeignKeyConstraint(
            ["logger_id"], ["loggers.id"], name=op.f("fk_alerts_logger_id_loggers")
        ),
        sa.ForeignKeyConstraint(
            ["order_id"], ["therapy_orders.id"], name=op.f("fk_alerts_order_id_therapy_orders")
        ),
        sa.ForeignKeyConstraint(
            ["shipment_id"], ["shipments.id"], name=op.f("fk_alerts_shipment_id_shipments")
        ),
        sa.ForeignKeyConstraint(["site_id"], ["sites.id"], name=op.f("fk_alerts_site_id_sites")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_alerts")),
        sa.UniqueConstraint("dedupe_key", name=op.f("uq_alerts_dedupe_key")),
    )
    with op.batch_alter_table("alerts", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_alerts_ack_code"), ["ack_code"], unique=False)
        batch_op.create_index(batch_op.f("ix_alerts_order_id"), ["order_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_alerts_site_id"), ["site_id"], unique=False)
        batch_op.create_index(
            "ix_alerts_status_next_escalation_at", ["status", "next_escalation_at"], unique=False
        )

    op.create_table(
        "excursion_items",
        sa.Column("excursion_id", sa.Integer(), nullable=False),
        sa.Column("item_id", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(
            ["excursion_id"],
            ["excursions.id"],
            name=op.f("fk_excursion_items_excursion_id_excursions"),
        ),
        sa.ForeignKeyConstraint(
            ["item_id"], ["items.id"], name=op.f("fk_excursion_items_item_id_items")
        ),
        sa.PrimaryKeyConstraint("excursion_id", "item_id", name=op.f("pk_excursion_items")),
    )
    op.create_table(
        "logger_readings",
        sa.Column("logger_id", sa.Integer(), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("celsius", sa.Float(), nullable=False),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("import_id", sa.Integer(), nullable=True),
        sa.ForeignKeyConstraint(
            ["import_id"],
            ["logger_imports.id"],
            name=op.f("fk_logger_readings_import_id_logger_imports"),
        ),
        sa.ForeignKeyConstraint(
            ["logger_id"], ["loggers.id"], name=op.f("fk_logger_readings_logger_id_loggers")
        ),
        sa.PrimaryKeyConstraint("logger_id", "at", name=op.f("pk_logger_readings")),
    )
    op.create_table(
        "qa_dispositions",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("item_id", sa.Integer(), nullable=False),
        sa.Column("excursion_id", sa.Integer(), nullable=True),
        sa.Column("alert_id", sa.Integer(), nullable=True),
        sa.Column("decision", sa.String(length=16), nullable=False),
        sa.Column("comment", sa.Text(), nullable=False),
        sa.Column("decided_by_user_id", sa.Integer(), nullable=False),
        sa.Column("decided_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint(
            "decision IN ('accept', 'discard', 'quarantine')",
            name=op.f("ck_qa_dispositions_decision"),
        ),
        sa.ForeignKeyConstraint(
            ["alert_id"], ["alerts.id"], name=op.f("fk_qa_dispositions_alert_id_alerts")
        ),
        sa.ForeignKeyConstraint(
            ["decided_by_user_id"],
            ["users.id"],
            name=op.f("fk_qa_dispositions_decided_by_user_id_users"),
        ),
        sa.ForeignKeyConstraint(
            ["excursion_id"],
            ["excursions.id"],
            name=op.f("fk_qa_dispositions_excursion_id_excursions"),
        ),
        sa.ForeignKeyConstraint(
            ["item_id"], ["items.id"], name=op.f("fk_qa_dispositions_item_id_items")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_qa_dispositions")),
    )
    with op.batch_alter_table("qa_dispositions", schema=None) as batch_op:
        batch_op.create_index("ix_qa_dispositions_item_id_id", ["item_id", "id"], unique=False)

    op.create_table(
        "sms_inbound",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("message_sid", sa.String(length=64), nullable=False),
        sa.Column("from_phone", sa.String(length=32), nullable=False),
        sa.Column("to_phone", sa.String(length=32), nullable=False),
        sa.Column("body", sa.Text(), nullable=False),
        sa.Column("action", sa.String(length=8), nullable=False),
        sa.Column("outcome", sa.String(length=200), nullable=False),
        sa.Column("alert_id", sa.Integer(), nullable=True),
        sa.Column("user_id", sa.Integer(), nullable=True),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint(
            "action IN ('ack', 'help', 'start', 'stop', 'unknown')",
            name=op.f("ck_sms_inbound_action"),
        ),
        sa.ForeignKeyConstraint(
            ["alert_id"], ["alerts.id"], name=op.f("fk_sms_inbound_alert_id_alerts")
        ),
        sa.ForeignKeyConstraint(
            ["user_id"], ["users.id"], name=op.f("fk_sms_inbound_user_id_users")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_sms_inbound")),
        sa.UniqueConstraint("message_sid", name=op.f("uq_sms_inbound_message_sid")),
    )
    with op.batch_alter_table("sms_inbound", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_sms_inbound_from_phone"), ["from_phone"], unique=False)

    op.create_table(
        "sms_outbox",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("dedupe_key", sa.String(length=200), nullable=False),
        sa.Column("alert_id", sa.Integer(), nullable=True),
        sa.Column("user_id", sa.Integer(), nullable=True),
        sa.Column("to_phone", sa.String(length=32), nullable=False),
        sa.Column("template", sa.String(length=32), nullable=False),
        sa.Column("body", sa.Text(), nullable=False),
        sa.Column("escalation_level", sa.Integer(), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("verify_attempts", sa.Integer(), nullable=False),
        sa.Column("next_attempt_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("claimed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("claimed_by", sa.String(length=120), nullable=True),
        sa.Column("sent_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("sid", sa.String(length=64), nullable=True),
        sa.Column("twilio_status", sa.String(length=16), nullable=True),
        sa.Column("error_code", sa.Integer(), nullable=True),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint(
            "state <> 'sent' OR sid IS NOT NULL", name=op.f("ck_sms_outbox_sent_has_sid")
        ),
        sa.CheckConstraint(
            "state IN ('cancelled', 'checking', 'failed', 'pending', 'sending', 'sent', 'suppressed', 'unknown', 'verify')",
            name=op.f("ck_sms_outbox_state"),
        ),
        sa.CheckConstraint("attempts >= 0", name=op.f("ck_sms_outbox_attempts_non_negative")),
        sa.ForeignKeyConstraint(
            ["alert_id"], ["alerts.id"], name=op.f("fk_sms_outbox_alert_id_alerts")
        ),
        sa.ForeignKeyConstraint(
            ["user_id"], ["users.id"], name=op.f("fk_sms_outbox_user_id_users")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_sms_outbox")),
        sa.UniqueConstraint("dedupe_key", name=op.f("uq_sms_outbox_dedupe_key")),
        sa.UniqueConstraint("sid", name=op.f("uq_sms_outbox_sid")),
    )
    with op.batch_alter_table("sms_outbox", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_sms_outbox_alert_id"), ["alert_id"], unique=False)
        batch_op.create_index(
            "ix_sms_outbox_state_next_attempt_at", ["state", "next_attempt_at"], unique=False
        )

    op.create_table(
        "sms_status_events",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("message_sid", sa.String(length=64), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("error_code", sa.Integer(), nullable=True),
        sa.Column("outbox_id", sa.Integer(), nullable=True),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["outbox_id"], ["sms_outbox.id"], name=op.f("fk_sms_status_events_outbox_id_sms_outbox")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_sms_status_events")),
        sa.UniqueConstraint(
            "message_sid", "status", name=op.f("uq_sms_status_events_message_sid_status")
        ),
    )
    _create_append_only_triggers()


APPEND_ONLY_TABLES = ("logger_readings", "qa_dispositions", "sms_inbound", "sms_status_events")


def _create_append_only_triggers() -> None:
    if op.get_bind().dialect.name == "postgresql":
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
    op.drop_table("sms_status_events")
    with op.batch_alter_table("sms_outbox", schema=None) as batch_op:
        batch_op.drop_index("ix_sms_outbox_state_next_attempt_at")
        batch_op.drop_index(batch_op.f("ix_sms_outbox_alert_id"))

    op.drop_table("sms_outbox")
    with op.batch_alter_table("sms_inbound", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_sms_inbound_from_phone"))

    op.drop_table("sms_inbound")
    with op.batch_alter_table("qa_dispositions", schema=None) as batch_op:
        batch_op.drop_index("ix_qa_dispositions_item_id_id")

    op.drop_table("qa_dispositions")
    op.drop_table("logger_readings")
    op.drop_table("excursion_items")
    with op.batch_alter_table("alerts", schema=None) as batch_op:
        batch_op.drop_index("ix_alerts_status_next_escalation_at")
        batch_op.drop_index(batch_op.f("ix_alerts_site_id"))
        batch_op.drop_index(batch_op.f("ix_alerts_order_id"))
        batch_op.drop_index(batch_op.f("ix_alerts_ack_code"))

    op.drop_table("alerts")
    with op.batch_alter_table("logger_imports", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_logger_imports_logger_id"))

    op.drop_table("logger_imports")
    with op.batch_alter_table("handoff_deadlines", schema=None) as batch_op:
        batch_op.drop_index("ix_handoff_deadlines_status_warn_at")
        batch_op.drop_index("ix_handoff_deadlines_status_due_at")
        batch_op.drop_index(batch_op.f("ix_handoff_deadlines_shipment_id"))
        batch_op.drop_index(batch_op.f("ix_handoff_deadlines_order_id"))
        batch_op.drop_index(batch_op.f("ix_handoff_deadlines_item_id"))

    op.drop_table("handoff_deadlines")
    with op.batch_alter_table("excursions", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_excursions_logger_id"))

    op.drop_table("excursions")
    with op.batch_alter_table("loggers", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_loggers_site_id"))

    op.drop_table("loggers")
    op.drop_table("escalation_steps")
    op.drop_table("sms_opt_outs")
