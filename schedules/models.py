"""Schedules tables: capacity definitions, expanded windows, journey plans and what hangs off them.

Capacity is defined in the site's local wall time (weekly hours, closures and holidays as local
dates) and expanded into ``capacity_windows`` rows in UTC. Each window row is also the
concurrency-control point for booking: it carries a ``used`` counter that a booking increments
under a row lock, and the CHECK ``used <= capacity`` refuses any overbooking that slipped past
the application (see schedules/booking.py for the locking order).

Local opening times are plain ``Time`` columns on purpose: they are wall-clock times of a site,
not instants. Every instant is an aware UTC datetime (``UTCDateTime``).
"""

from __future__ import annotations

from datetime import date
from datetime import datetime
from datetime import time
from typing import Any

from sqlalchemy import CheckConstraint
from sqlalchemy import Date
from sqlalchemy import ForeignKey
from sqlalchemy import Index
from sqlalchemy import String
from sqlalchemy import Text
from sqlalchemy import Time
from sqlalchemy import UniqueConstraint
from sqlalchemy import text
from sqlalchemy.orm import Mapped
from sqlalchemy.orm import mapped_column

from schedules.deadlines import DeadlineKind
from schedules.planning import StepKind
from schedules.slots import ResourceKind
from tracker.db import Base


def _in(column: str, values: list[str], name: str) -> CheckConstraint:
    allowed = ", ".join(f"'{v}'" for v in sorted(values))
    return CheckConstraint(f"{column} IN ({allowed})", name=name)


PLAN_STATUSES = ["held", "booked", "cancelled", "expired"]
ACTIVE_PLAN = "status IN ('held', 'booked')"
BOOKING_STATUSES = ["held", "booked", "released"]
DEADLINE_STATUSES = ["open", "superseded", "cancelled"]
WAITLIST_STATUSES = ["waiting", "placed", "removed"]
NOTIFICATION_KINDS = [
    "plan_held",
    "plan_booked",
    "plan_rescheduled",
    "plan_cancelled",
    "hold_expired",
    "slot_freed",
]


class ScheduleResource(Base):
    """A bookable pool at a site (e.g. its apheresis chairs); ``public_id`` is the slots id."""

    __tablename__ = "schedule_resources"
    __table_args__ = (
        _in("kind", [k.value for k in ResourceKind], "kind"),
        CheckConstraint(
            "kind = 'manufacturing_slot' OR product_code IS NULL",
            name="product_only_for_manufacturing",
        ),
        CheckConstraint("slot_minutes IS NULL OR slot_minutes > 0", name="slot_minutes_positive"),
        UniqueConstraint("site_id", "name"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    public_id: Mapped[str] = mapped_column(String(32), unique=True)
    site_id: Mapped[int] = mapped_column(ForeignKey("sites.id"), index=True)
    kind: Mapped[str] = mapped_column(String(32))
    name: Mapped[str] = mapped_column(String(120))
    # Manufacturing slots may be reserved for one product profile code; None = any product.
    product_code: Mapped[str | None] = mapped_column(String(32))
    # Cut opening periods into slots of this length; None = one window per period.
    slot_minutes: Mapped[int | None]
    active: Mapped[bool] = mapped_column(default=True)
    # Windows exist up to here; the worker job rolls the horizon forward.
    expanded_until: Mapped[datetime | None]
    created_at: Mapped[datetime]


class WeeklyHours(Base):
    """One opening period of a resource, in the site's local wall time (weekday 0 = Monday)."""

    __tablename__ = "capacity_templates"
    __table_args__ = (
        CheckConstraint("weekday BETWEEN 0 AND 6", name="weekday_0_to_6"),
        CheckConstraint("capacity >= 0", name="capacity_non_negative"),
        UniqueConstraint("resource_id", "weekday", "opens_at"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    resource_id: Mapped[int] = mapped_column(ForeignKey("schedule_resources.id"), index=True)
    weekday: Mapped[int]
    # closes_at <= opens_at means the period ends on the next local day.
    opens_at: Mapped[time] = mapped_column(Time)
    closes_at: Mapped[time] = mapped_column(Time)
    capacity: Mapped[int]


class Closure(Base):
    """Local dates on which a site (resource_id NULL) or one resource takes no bookings."""

    __tablename__ = "capacity_closures"
    __table_args__ = (
        _in("kind", ["closure", "holiday"], "kind"),
        CheckConstraint("first_day <= last_day", name="first_day_not_after_last"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    site_id: Mapped[int] = mapped_column(ForeignKey("sites.id"), index=True)
    resource_id: Mapped[int | None] = mapped_column(ForeignKey("schedule_resources.id"))
    kind: Mapped[str] = mapped_column(String(16))
    first_day: Mapped[date] = mapped_column(Date)
    last_day: Mapped[date] = mapped_column(Date)
    reason: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime]
    created_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))


class WindowRow(Base):
    """``capacity`` units of a resource during [starts_at, ends_at) UTC, ``used`` of them taken."""

    __tablename__ = "capacity_windows"
    __table_args__ = (
        CheckConstraint("ends_at > starts_at", name="ends_after_start"),
        CheckConstraint("used >= 0", name="used_non_negative"),
        # The last line of defence against overbooking: whatever the code above does, the
        # database refuses a counter past the window's capacity.
        CheckConstraint("used <= capacity", name="used_within_capacity"),
        UniqueConstraint("resource_id", "starts_at"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    resource_id: Mapped[int] = mapped_column(ForeignKey("schedule_resources.id"))
    starts_at: Mapped[datetime]
    ends_at: Mapped[datetime]
    capacity: Mapped[int]
    used: Mapped[int] = mapped_column(default=0)


class JourneyPlan(Base):
    """One booked (or tentatively held) vein-to-vein plan of an order."""

    __tablename__ = "journey_plans"
    __table_args__ = (
        _in("status", PLAN_STATUSES, "status"),
        CheckConstraint("status <> 'held' OR held_until IS NOT NULL", name="hold_has_expiry"),
        # At most one live plan per order; history (cancelled, expired) is kept.
        Index(
            "uq_journey_plans_live_order",
            "order_id",
            unique=True,
            postgresql_where=text(ACTIVE_PLAN),
            sqlite_where=text(ACTIVE_PLAN),
        ),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    public_id: Mapped[str] = mapped_column(String(32), unique=True)
    order_id: Mapped[int] = mapped_column(ForeignKey("therapy_orders.id"), index=True)
    status: Mapped[str] = mapped_column(String(16))
    # The exact profile version the plan (and so every deadline) was computed from.
    product_profile_id: Mapped[int] = mapped_column(ForeignKey("product_profiles.id"))
    profile_version: Mapped[str] = mapped_column(String(64))
    earliest_collection: Mapped[datetime]
    held_until: Mapped[datetime | None] = mapped_column(index=True)
    explanations: Mapped[dict[str, Any]] = mapped_column(default=dict)
    created_at: Mapped[datetime]
    created_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    booked_at: Mapped[datetime | None]
    ended_at: Mapped[datetime | None]
    end_reason: Mapped[str | None] = mapped_column(Text)
    version_id: Mapped[int] = mapped_column(default=1)

    __mapper_args__ = {"version_id_col": version_id}


class PlanStepRow(Base):
    """One step of a plan: where and when, its hard deadline, and the booking holding capacity."""

    __tablename__ = "plan_steps"
    __table_args__ = (
        _in("kind", [k.value for k in StepKind], "kind"),
        CheckConstraint("ends_at >= starts_at", name="ends_not_before_start"),
        UniqueConstraint("plan_id", "kind"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    plan_id: Mapped[int] = mapped_column(ForeignKey("journey_plans.id"))
    kind: Mapped[str] = mapped_column(String(32))
    site_id: Mapped[int] = mapped_column(ForeignKey("sites.id"))
    starts_at: Mapped[datetime]
    ends_at: Mapped[datetime]
    deadline_at: Mapped[datetime | None]
    booking_id: Mapped[int | None] = mapped_column(ForeignKey("slot_bookings.id"))


class SlotBooking(Base):
    """Units of one resource held for a plan step; ``booking_windows`` says which counters."""

    __tablename__ = "slot_bookings"
    __table_args__ = (
        _in("status", BOOKING_STATUSES, "status"),
        _in("step_kind", [k.value for k in StepKind], "step_kind"),
        CheckConstraint("units >= 1", name="units_positive"),
        CheckConstraint("ends_at > starts_at", name="ends_after_start"),
        Index("ix_slot_bookings_resource_id_starts_at", "resource_id", "starts_at"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    public_id: Mapped[str] = mapped_column(String(32), unique=True)
    plan_id: Mapped[int] = mapped_column(ForeignKey("journey_plans.id"), index=True)
    step_kind: Mapped[str] = mapped_column(String(32))
    resource_id: Mapped[int] = mapped_column(ForeignKey("schedule_resources.id"))
    starts_at: Mapped[datetime]
    ends_at: Mapped[datetime]
    units: Mapped[int] = mapped_column(default=1)
    status: Mapped[str] = mapped_column(String(16))
    created_at: Mapped[datetime]
    released_at: Mapped[datetime | None]


class BookingWindow(Base):
    """The window counters a booking incremented (and must decrement when released)."""

    __tablename__ = "booking_windows"

    booking_id: Mapped[int] = mapped_column(ForeignKey("slot_bookings.id"), primary_key=True)
    window_id: Mapped[int] = mapped_column(
        ForeignKey("capacity_windows.id"), primary_key=True, index=True
    )


class PlanDeadline(Base):
    """A handoff deadline derived from a plan; the alerting worker watches open rows."""

    __tablename__ = "plan_deadlines"
    __table_args__ = (
        _in("kind", [k.value for k in DeadlineKind], "kind"),
        _in("status", DEADLINE_STATUSES, "status"),
        Index("ix_plan_deadlines_status_due_at", "status", "due_at"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    plan_id: Mapped[int] = mapped_column(ForeignKey("journey_plans.id"), index=True)
    order_id: Mapped[int] = mapped_column(ForeignKey("therapy_orders.id"), index=True)
    kind: Mapped[str] = mapped_column(String(32))
    due_at: Mapped[datetime]
    site_id: Mapped[int] = mapped_column(ForeignKey("sites.id"))
    description: Mapped[str] = mapped_column(Text)
    profile_version: Mapped[str] = mapped_column(String(64))
    status: Mapped[str] = mapped_column(String(16), default="open")
    created_at: Mapped[datetime]
    closed_at: Mapped[datetime | None]


class WaitlistEntry(Base):
    """A patient waiting for a scarce manufacturing slot; the score comes from these inputs."""

    __tablename__ = "waitlist_entries"
    __table_args__ = (
        _in("status", WAITLIST_STATUSES, "status"),
        CheckConstraint("prior_slot_cancellations >= 0", name="cancellations_non_negative"),
        Index(
            "uq_waitlist_entries_waiting_order",
            "order_id",
            unique=True,
            postgresql_where=text("status = 'waiting'"),
            sqlite_where=text("status = 'waiting'"),
        ),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    public_id: Mapped[str] = mapped_column(String(32), unique=True)
    order_id: Mapped[int] = mapped_column(ForeignKey("therapy_orders.id"), index=True)
    site_id: Mapped[int] = mapped_column(ForeignKey("sites.id"), index=True)
    product_code: Mapped[str] = mapped_column(String(32))
    status: Mapped[str] = mapped_column(String(16), default="waiting")
    joined_at: Mapped[datetime]
    urgency_category: Mapped[str] = mapped_column(String(32))
    bridging_therapy_failing: Mapped[bool] = mapped_column(default=False)
    prior_slot_cancellations: Mapped[int] = mapped_column(default=0)
    note: Mapped[str] = mapped_column(Text, default="")
    created_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    ended_at: Mapped[datetime | None]
    end_reason: Mapped[str | None] = mapped_column(Text)


class Notification(Base):
    """An in-app message for one user; never carries patient identity."""

    __tablename__ = "notifications"
    __table_args__ = (
        _in("kind", NOTIFICATION_KINDS, "kind"),
        UniqueConstraint("user_id", "dedupe_key"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"), index=True)
    kind: Mapped[str] = mapped_column(String(32))
    subject: Mapped[str] = mapped_column(String(200))
    body: Mapped[str] = mapped_column(Text)
    order_id: Mapped[int | None] = mapped_column(ForeignKey("therapy_orders.id"))
    plan_id: Mapped[int | None] = mapped_column(ForeignKey("journey_plans.id"))
    site_id: Mapped[int | None] = mapped_column(ForeignKey("sites.id"))
    dedupe_key: Mapped[str] = mapped_column(String(120))
    created_at: Mapped[datetime]
    read_at: Mapped[datetime | None]


class CalendarFeed(Base):
    """A secret ICS feed URL for one site, issued to one user (only a SHA-256 is stored)."""

    __tablename__ = "calendar_feeds"

    id: Mapped[int] = mapped_column(primary_key=True)
    site_id: Mapped[int] = mapped_column(ForeignKey("sites.id"), index=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"))
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime]
    revoked_at: Mapped[datetime | None]
    last_used_at: Mapped[datetime | None]
