"""Schedules: capacity (resources, weekly hours, closures, UTC windows with used counters),
journey plans with steps and bookings, handoff deadlines, waitlist, notifications, ICS feeds.

Every table is new, so no data moves. capacity_windows.used <= capacity is the database's own
guard against overbooking (see schedules/capacity.py for the locking design).

Revision ID: b3a0c0de0005
Revises: b3a0c0de0006
Create Date: 2026-11-27 06:34:26.692460
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "b3a0c0de0005"
down_revision: str | Sequence[str] | None = "b3a0c0de0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "calendar_feeds",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("site_id", sa.Integer(), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("token_hash", sa.String(length=64), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("revoked_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_used_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["site_id"], ["sites.id"], name=op.f("fk_calendar_feeds_site_id_sites")
        ),
        sa.ForeignKeyConstraint(
            ["user_id"], ["users.id"], name=op.f("fk_calendar_feeds_user_id_users")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_calendar_feeds")),
        sa.UniqueConstraint("token_hash", name=op.f("uq_calendar_feeds_token_hash")),
    )
    op.create_index(op.f("ix_calendar_feeds_site_id"), "calendar_feeds", ["site_id"], unique=False)
    op.create_table(
        "schedule_resources",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("public_id", sa.String(length=32), nullable=False),
        sa.Column("site_id", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(length=32), nullable=False),
        sa.Column("name", sa.String(length=120), nullable=False),
        sa.Column("product_code", sa.String(length=32), nullable=True),
        sa.Column("slot_minutes", sa.Integer(), nullable=True),
        sa.Column("active", sa.Boolean(), nullable=False),
        sa.Column("expanded_until", sa.DateTime(timezone=True), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint(
            "kind = 'manufacturing_slot' OR product_code IS NULL",
            name=op.f("ck_schedule_resources_product_only_for_manufacturing"),
        ),
        sa.CheckConstraint(
            "kind IN ('apheresis_chair', 'courier', 'infusion_bed', 'manufacturing_slot')",
            name=op.f("ck_schedule_resources_kind"),
        ),
        sa.CheckConstraint(
            "slot_minutes IS NULL OR slot_minutes > 0",
            name=op.f("ck_schedule_resources_slot_minutes_positive"),
        ),
        sa.ForeignKeyConstraint(
            ["site_id"], ["sites.id"], name=op.f("fk_schedule_resources_site_id_sites")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_schedule_resources")),
        sa.UniqueConstraint("public_id", name=op.f("uq_schedule_resources_public_id")),
        sa.UniqueConstraint("site_id", "name", name=op.f("uq_schedule_resources_site_id_name")),
    )
    op.create_index(
        op.f("ix_schedule_resources_site_id"), "schedule_resources", ["site_id"], unique=False
    )
    op.create_table(
        "capacity_closures",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("site_id", sa.Integer(), nullable=False),
        sa.Column("resource_id", sa.Integer(), nullable=True),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("first_day", sa.Date(), nullable=False),
        sa.Column("last_day", sa.Date(), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("created_by_id", sa.Integer(), nullable=True),
        sa.CheckConstraint(
            "kind IN ('closure', 'holiday')", name=op.f("ck_capacity_closures_kind")
        ),
        sa.CheckConstraint(
            "first_day <= last_day", name=op.f("ck_capacity_closures_first_day_not_after_last")
        ),
        sa.ForeignKeyConstraint(
            ["created_by_id"], ["users.id"], name=op.f("fk_capacity_closures_created_by_id_users")
        ),
        sa.ForeignKeyConstraint(
            ["resource_id"],
            ["schedule_resources.id"],
            name=op.f("fk_capacity_closures_resource_id_schedule_resources"),
        ),
        sa.ForeignKeyConstraint(
            ["site_id"], ["sites.id"], name=op.f("fk_capacity_closures_site_id_sites")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_capacity_closures")),
    )
    op.create_index(
        op.f("ix_capacity_closures_site_id"), "capacity_closures", ["site_id"], unique=False
    )
    op.create_table(
        "capacity_templates",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("resource_id", sa.Integer(), nullable=False),
        sa.Column("weekday", sa.Integer(), nullable=False),
        sa.Column("opens_at", sa.Time(), nullable=False),
        sa.Column("closes_at", sa.Time(), nullable=False),
        sa.Column("capacity", sa.Integer(), nullable=False),
        sa.CheckConstraint(
            "capacity >= 0", name=op.f("ck_capacity_templates_capacity_non_negative")
        ),
        sa.CheckConstraint(
            "weekday BETWEEN 0 AND 6", name=op.f("ck_capacity_templates_weekday_0_to_6")
        ),
        sa.ForeignKeyConstraint(
            ["resource_id"],
            ["schedule_resources.id"],
            name=op.f("fk_capacity_templates_resource_id_schedule_resources"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_capacity_templates")),
        sa.UniqueConstraint(
            "resource_id",
            "weekday",
            "opens_at",
            name=op.f("uq_capacity_templates_resource_id_weekday_opens_at"),
        ),
    )
    op.create_index(
        op.f("ix_capacity_templates_resource_id"),
        "capacity_templates",
        ["resource_id"],
        unique=False,
    )
    op.create_table(
        "capacity_windows",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("resource_id", sa.Integer(), nullable=False),
        sa.Column("starts_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("ends_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("capacity", sa.Integer(), nullable=False),
        sa.Column("used", sa.Integer(), nullable=False),
        sa.CheckConstraint(
            "ends_at > starts_at", name=op.f("ck_capacity_windows_ends_after_start")
        ),
        sa.CheckConstraint(
            "used <= capacity", name=op.f("ck_capacity_windows_used_within_capacity")
        ),
        sa.CheckConstraint("used >= 0", name=op.f("ck_capacity_windows_used_non_negative")),
        sa.ForeignKeyConstraint(
            ["resource_id"],
            ["schedule_resources.id"],
            name=op.f("fk_capacity_windows_resource_id_schedule_resources"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_capacity_windows")),
        sa.UniqueConstraint(
            "resource_id", "starts_at", name=op.f("uq_capacity_windows_resource_id_starts_at")
        ),
    )
    op.create_table(
        "journey_plans",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("public_id", sa.String(length=32), nullable=False),
        sa.Column("order_id", sa.Integer(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("product_profile_id", sa.Integer(), nullable=False),
        sa.Column("profile_version", sa.String(length=64), nullable=False),
        sa.Column("earliest_collection", sa.DateTime(timezone=True), nullable=False),
        sa.Column("held_until", sa.DateTime(timezone=True), nullable=True),
        sa.Column(
            "explanations",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=False,
        ),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("created_by_id", sa.Integer(), nullable=True),
        sa.Column("booked_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("ended_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("end_reason", sa.Text(), nullable=True),
        sa.Column("version_id", sa.Integer(), nullable=False),
        sa.CheckConstraint(
            "status <> 'held' OR held_until IS NOT NULL",
            name=op.f("ck_journey_plans_hold_has_expiry"),
        ),
        sa.CheckConstraint(
            "status IN ('booked', 'cancelled', 'expired', 'held')",
            name=op.f("ck_journey_plans_status"),
        ),
        sa.ForeignKeyConstraint(
            ["created_by_id"], ["users.id"], name=op.f("fk_journey_plans_created_by_id_users")
        ),
        sa.ForeignKeyConstraint(
            ["order_id"],
            ["therapy_orders.id"],
            name=op.f("fk_journey_plans_order_id_therapy_orders"),
        ),
        sa.ForeignKeyConstraint(
            ["product_profile_id"],
            ["product_profiles.id"],
            name=op.f("fk_journey_plans_product_profile_id_product_profiles"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_journey_plans")),
        sa.UniqueConstraint("public_id", name=op.f("uq_journey_plans_public_id")),
    )
    op.create_index(
        op.f("ix_journey_plans_held_until"), "journey_plans", ["held_until"], unique=False
    )
    op.create_index(op.f("ix_journey_plans_order_id"), "journey_plans", ["order_id"], unique=False)
    op.create_index(
        "uq_journey_plans_live_order",
        "journey_plans",
        ["order_id"],
        unique=True,
        postgresql_where=sa.text("status IN ('held', 'booked')"),
        sqlite_where=sa.text("status IN ('held', 'booked')"),
    )
    op.create_table(
        "waitlist_entries",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("public_id", sa.String(length=32), nullable=False),
        sa.Column("order_id", sa.Integer(), nullable=False),
        sa.Column("site_id", sa.Integer(), nullable=False),
        sa.Column("product_code", sa.String(length=32), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("joined_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("urgency_category", sa.String(length=32), nullable=False),
        sa.Column("bridging_therapy_failing", sa.Boolean(), nullable=False),
        sa.Column("prior_slot_cancellations", sa.Integer(), nullable=False),
        sa.Column("note", sa.Text(), nullable=False),
        sa.Column("created_by_id", sa.Integer(), nullable=True),
        sa.Column("ended_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("end_reason", sa.Text(), nullable=True),
        sa.CheckConstraint(
            "status IN ('placed', 'removed', 'waiting')", name=op.f("ck_waitlist_entries_status")
        ),
        sa.CheckConstraint(
            "prior_slot_cancellations >= 0",
            name=op.f("ck_waitlist_entries_cancellations_non_negative"),
        ),
        sa.ForeignKeyConstraint(
            ["created_by_id"], ["users.id"], name=op.f("fk_waitlist_entries_created_by_id_users")
        ),
        sa.ForeignKeyConstraint(
            ["order_id"],
            ["therapy_orders.id"],
            name=op.f("fk_waitlist_entries_order_id_therapy_orders"),
        ),
        sa.ForeignKeyConstraint(
            ["site_id"], ["sites.id"], name=op.f("fk_waitlist_entries_site_id_sites")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_waitlist_entries")),
        sa.UniqueConstraint("public_id", name=op.f("uq_waitlist_entries_public_id")),
    )
    op.create_index(
        op.f("ix_waitlist_entries_order_id"), "waitlist_entries", ["order_id"], unique=False
    )
    op.create_index(
        op.f("ix_waitlist_entries_site_id"), "waitlist_entries", ["site_id"], unique=False
    )
    op.create_index(
        "uq_waitlist_entries_waiting_order",
        "waitlist_entries",
        ["order_id"],
        unique=True,
        postgresql_where=sa.text("status = 'waiting'"),
        sqlite_where=sa.text("status = 'waiting'"),
    )
    op.create_table(
        "notifications",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(length=32), nullable=False),
        sa.Column("subject", sa.String(length=200), nullable=False),
        sa.Column("body", sa.Text(), nullable=False),
        sa.Column("order_id", sa.Integer(), nullable=True),
        sa.Column("plan_id", sa.Integer(), nullable=True),
        sa.Column("site_id", sa.Integer(), nullable=True),
        sa.Column("dedupe_key", sa.String(length=120), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("read_at", sa.DateTime(timezone=True), nullable=True),
        sa.CheckConstraint(
            "kind IN ('hold_expired', 'plan_booked', 'plan_cancelled', 'plan_held', 'plan_rescheduled', 'slot_freed')",
            name=op.f("ck_notifications_kind"),
        ),
        sa.ForeignKeyConstraint(
            ["order_id"],
            ["therapy_orders.id"],
            name=op.f("fk_notifications_order_id_therapy_orders"),
        ),
        sa.ForeignKeyConstraint(
            ["plan_id"], ["journey_plans.id"], name=op.f("fk_notifications_plan_id_journey_plans")
        ),
        sa.ForeignKeyConstraint(
            ["site_id"], ["sites.id"], name=op.f("fk_notifications_site_id_sites")
        ),
        sa.ForeignKeyConstraint(
            ["user_id"], ["users.id"], name=op.f("fk_notifications_user_id_users")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_notifications")),
        sa.UniqueConstraint(
            "user_id", "dedupe_key", name=op.f("uq_notifications_user_id_dedupe_key")
        ),
    )
    op.create_index(op.f("ix_notifications_user_id"), "notifications", ["user_id"], unique=False)
    op.create_table(
        "plan_deadlines",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("plan_id", sa.Integer(), nullable=False),
        sa.Column("order_id", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(length=32), nullable=False),
        sa.Column("due_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("site_id", sa.Integer(), nullable=False),
        sa.Column("description", sa.Text(), nullable=False),
        sa.Column("profile_version", sa.String(length=64), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("closed_at", sa.DateTime(timezone=True), nullable=True),
        sa.CheckConstraint(
            "kind IN ('collection_start', 'cryopreservation_complete', 'fresh_stability_limit', 'infusion', 'infusion_window_end', 'ld_start', 'manufacturing_receipt', 'manufacturing_start', 'outbound_pickup', 'product_delivery', 'release_decision', 'second_dose', 'second_dose_window_end')",
            name=op.f("ck_plan_deadlines_kind"),
        ),
        sa.CheckConstraint(
            "status IN ('cancelled', 'open', 'superseded')", name=op.f("ck_plan_deadlines_status")
        ),
        sa.ForeignKeyConstraint(
            ["order_id"],
            ["therapy_orders.id"],
            name=op.f("fk_plan_deadlines_order_id_therapy_orders"),
        ),
        sa.ForeignKeyConstraint(
            ["plan_id"], ["journey_plans.id"], name=op.f("fk_plan_deadlines_plan_id_journey_plans")
        ),
        sa.ForeignKeyConstraint(
            ["site_id"], ["sites.id"], name=op.f("fk_plan_deadlines_site_id_sites")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_plan_deadlines")),
    )
    op.create_index(
        op.f("ix_plan_deadlines_order_id"), "plan_deadlines", ["order_id"], unique=False
    )
    op.create_index(op.f("ix_plan_deadlines_plan_id"), "plan_deadlines", ["plan_id"], unique=False)
    op.create_index(
        "ix_plan_deadlines_status_due_at", "plan_deadlines", ["status", "due_at"], unique=False
    )
    op.create_table(
        "slot_bookings",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("public_id", sa.String(length=32), nullable=False),
        sa.Column("plan_id", sa.Integer(), nullable=False),
        sa.Column("step_kind", sa.String(length=32), nullable=False),
        sa.Column("resource_id", sa.Integer(), nullable=False),
        sa.Column("starts_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("ends_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("units", sa.Integer(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("released_at", sa.DateTime(timezone=True), nullable=True),
        sa.CheckConstraint(
            "status IN ('booked', 'held', 'released')", name=op.f("ck_slot_bookings_status")
        ),
        sa.CheckConstraint(
            "step_kind IN ('collection', 'cryopreservation', 'infusion', 'lymphodepletion', 'manufacturing', 'outbound_shipping', 'release_testing', 'return_shipping', 'second_dose')",
            name=op.f("ck_slot_bookings_step_kind"),
        ),
        sa.CheckConstraint("ends_at > starts_at", name=op.f("ck_slot_bookings_ends_after_start")),
        sa.CheckConstraint("units >= 1", name=op.f("ck_slot_bookings_units_positive")),
        sa.ForeignKeyConstraint(
            ["plan_id"], ["journey_plans.id"], name=op.f("fk_slot_bookings_plan_id_journey_plans")
        ),
        sa.ForeignKeyConstraint(
            ["resource_id"],
            ["schedule_resources.id"],
            name=op.f("fk_slot_bookings_resource_id_schedule_resources"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_slot_bookings")),
        sa.UniqueConstraint("public_id", name=op.f("uq_slot_bookings_public_id")),
    )
    op.create_index(op.f("ix_slot_bookings_plan_id"), "slot_bookings", ["plan_id"], unique=False)
    op.create_index(
        "ix_slot_bookings_resource_id_starts_at",
        "slot_bookings",
        ["resource_id", "starts_at"],
        unique=False,
    )
    op.create_table(
        "booking_windows",
        sa.Column("booking_id", sa.Integer(), nullable=False),
        sa.Column("window_id", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(
            ["booking_id"],
            ["slot_bookings.id"],
            name=op.f("fk_booking_windows_booking_id_slot_bookings"),
        ),
        sa.ForeignKeyConstraint(
            ["window_id"],
            ["capacity_windows.id"],
            name=op.f("fk_booking_windows_window_id_capacity_windows"),
        ),
        sa.PrimaryKeyConstraint("booking_id", "window_id", name=op.f("pk_booking_windows")),
    )
    op.create_index(
        op.f("ix_booking_windows_window_id"), "booking_windows", ["window_id"], unique=False
    )
    op.create_table(
        "plan_steps",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("plan_id", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(length=32), nullable=False),
        sa.Column("site_id", sa.Integer(), nullable=False),
        sa.Column("starts_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("ends_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("deadline_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("booking_id", sa.Integer(), nullable=True),
        sa.CheckConstraint(
            "kind IN ('collection', 'cryopreservation', 'infusion', 'lymphodepletion', 'manufacturing', 'outbound_shipping', 'release_testing', 'return_shipping', 'second_dose')",
            name=op.f("ck_plan_steps_kind"),
        ),
        sa.CheckConstraint(
            "ends_at >= starts_at", name=op.f("ck_plan_steps_ends_not_before_start")
        ),
        sa.ForeignKeyConstraint(
            ["booking_id"],
            ["slot_bookings.id"],
            name=op.f("fk_plan_steps_booking_id_slot_bookings"),
        ),
        sa.ForeignKeyConstraint(
            ["plan_id"], ["journey_plans.id"], name=op.f("fk_plan_steps_plan_id_journey_plans")
        ),
        sa.ForeignKeyConstraint(
            ["site_id"], ["sites.id"], name=op.f("fk_plan_steps_site_id_sites")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_plan_steps")),
        sa.UniqueConstraint("plan_id", "kind", name=op.f("uq_plan_steps_plan_id_kind")),
    )


def downgrade() -> None:
    op.drop_table("plan_steps")
    op.drop_index(op.f("ix_booking_windows_window_id"), table_name="booking_windows")
    op.drop_table("booking_windows")
    op.drop_index("ix_slot_bookings_resource_id_starts_at", table_name="slot_bookings")
    op.drop_index(op.f("ix_slot_bookings_plan_id"), table_name="slot_bookings")
    op.drop_table("slot_bookings")
    op.drop_index("ix_plan_deadlines_status_due_at", table_name="plan_deadlines")
    op.drop_index(op.f("ix_plan_deadlines_plan_id"), table_name="plan_deadlines")
    op.drop_index(op.f("ix_plan_deadlines_order_id"), table_name="plan_deadlines")
    op.drop_table("plan_deadlines")
    op.drop_index(op.f("ix_notifications_user_id"), table_name="notifications")
    op.drop_table("notifications")
    op.drop_index(
        "uq_waitlist_entries_waiting_order",
        table_name="waitlist_entries",
        postgresql_where=sa.text("status = 'waiting'"),
        sqlite_where=sa.text("status = 'waiting'"),
    )
    op.drop_index(op.f("ix_waitlist_entries_site_id"), table_name="waitlist_entries")
    op.drop_index(op.f("ix_waitlist_entries_order_id"), table_name="waitlist_entries")
    op.drop_table("waitlist_entries")
    op.drop_index(
        "uq_journey_plans_live_order",
        table_name="journey_plans",
        postgresql_where=sa.text("status IN ('held', 'booked')"),
        sqlite_where=sa.text("status IN ('held', 'booked')"),
    )
    op.drop_index(op.f("ix_journey_plans_order_id"), table_name="journey_plans")
    op.drop_index(op.f("ix_journey_plans_held_until"), table_name="journey_plans")
    op.drop_table("journey_plans")
    op.drop_table("capacity_windows")
    op.drop_index(op.f("ix_capacity_templates_resource_id"), table_name="capacity_templates")
    op.drop_table("capacity_templates")
    op.drop_index(op.f("ix_capacity_closures_site_id"), table_name="capacity_closures")
    op.drop_table("capacity_closures")
    op.drop_index(op.f("ix_schedule_resources_site_id"), table_name="schedule_resources")
    op.drop_table("schedule_resources")
    op.drop_index(op.f("ix_calendar_feeds_site_id"), table_name="calendar_feeds")
    op.drop_table("calendar_feeds")
