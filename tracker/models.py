"""Typed SQLAlchemy models. State lives here; the rules that change it live in tracker.domain.

Enumerations are stored as readable strings guarded by CHECK constraints, and the invariants
that matter for patient safety are also named SQL constraints.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import date
from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import CheckConstraint
from sqlalchemy import Date
from sqlalchemy import Float
from sqlalchemy import ForeignKey
from sqlalchemy import Index
from sqlalchemy import Integer
from sqlalchemy import String
from sqlalchemy import Text
from sqlalchemy import UniqueConstraint
from sqlalchemy import text
from sqlalchemy.orm import Mapped
from sqlalchemy.orm import mapped_column
from sqlalchemy.orm import relationship

from tracker.db import Base
from tracker.domain.access import Role
from tracker.domain.access import SiteKind
from tracker.domain.custody import ItemKind
from tracker.domain.custody import all_states
from tracker.domain.label_rules import LABEL_SIZES
from tracker.domain.label_rules import MAX_COPIES
from tracker.domain.label_rules import OUTPUTS
from tracker.domain.label_rules import SHEET_SIZES
from tracker.domain.label_rules import LabelKind
from tracker.domain.label_rules import PrintStatus
from tracker.domain.signatures import SIGNATURE_MEANINGS


def _in(column: str, values: Iterable[str], name: str) -> CheckConstraint:
    allowed = ", ".join(f"'{v}'" for v in sorted(values))
    return CheckConstraint(f"{column} IN ({allowed})", name=name)


def _values(enum: type[StrEnum]) -> list[str]:
    return [m.value for m in enum]


class Site(Base):
    __tablename__ = "sites"
    __table_args__ = (_in("kind", _values(SiteKind), "kind"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    code: Mapped[str] = mapped_column(String(32), unique=True)
    name: Mapped[str] = mapped_column(String(200))
    kind: Mapped[str] = mapped_column(String(32))
    timezone: Mapped[str] = mapped_column(String(64))
    address: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[datetime]


class User(Base):
    __tablename__ = "users"
    __table_args__ = (CheckConstraint("failed_logins >= 0", name="failed_logins_non_negative"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    username: Mapped[str] = mapped_column(String(80), unique=True)
    full_name: Mapped[str] = mapped_column(String(200))
    password_hash: Mapped[str] = mapped_column(String(255))
    active: Mapped[bool] = mapped_column(default=True)
    failed_logins: Mapped[int] = mapped_column(default=0)
    locked_until: Mapped[datetime | None]
    # Bumping this invalidates every session of the user (get_id() carries it).
    session_version: Mapped[int] = mapped_column(default=1)
    phone: Mapped[str | None] = mapped_column(String(32))
    created_at: Mapped[datetime]
    last_login_at: Mapped[datetime | None]

    roles: Mapped[list[RoleAssignment]] = relationship(
        back_populates="user", lazy="selectin", cascade="all, delete-orphan"
    )


class RoleAssignment(Base):
    __tablename__ = "role_assignments"
    __table_args__ = (
        _in("role", _values(Role), "role"),
        UniqueConstraint("user_id", "role", "site_id"),
        # Only administrators may hold a role that is not scoped to a site.
        CheckConstraint("site_id IS NOT NULL OR role = 'admin'", name="site_scoped_unless_admin"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"), index=True)
    role: Mapped[str] = mapped_column(String(32))
    site_id: Mapped[int | None] = mapped_column(ForeignKey("sites.id"))

    user: Mapped[User] = relationship(back_populates="roles")
    site: Mapped[Site | None] = relationship(lazy="joined")


class Device(Base):
    """A scanner or temperature logger that calls the API with a bearer token."""

    __tablename__ = "devices"
    __table_args__ = (_in("kind", ["scanner", "logger"], "kind"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    public_id: Mapped[str] = mapped_column(String(32), unique=True)
    name: Mapped[str] = mapped_column(String(120))
    kind: Mapped[str] = mapped_column(String(16))
    site_id: Mapped[int] = mapped_column(ForeignKey("sites.id"))
    # Only a SHA-256 of the token is stored; the token itself is shown once at creation.
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    active: Mapped[bool] = mapped_column(default=True)
    created_at: Mapped[datetime]
    created_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    last_seen_at: Mapped[datetime | None]

    site: Mapped[Site] = relationship(lazy="joined")


class Patient(Base):
    """Pseudonymous patient: everything else refers to ``public_id`` only."""

    __tablename__ = "patients"

    id: Mapped[int] = mapped_column(primary_key=True)
    public_id: Mapped[str] = mapped_column(String(32), unique=True)
    # Opaque token printed on the wristband barcode; carries no identity data.
    wristband_code: Mapped[str] = mapped_column(String(32), unique=True)
    treatment_site_id: Mapped[int] = mapped_column(ForeignKey("sites.id"), index=True)
    created_at: Mapped[datetime]

    treatment_site: Mapped[Site] = relationship(lazy="joined")


class PatientIdentity(Base):
    """Name, date of birth and MRN, kept apart and read only by clinical roles at the site."""

    __tablename__ = "patient_identities"

    patient_id: Mapped[int] = mapped_column(ForeignKey("patients.id"), primary_key=True)
    given_name: Mapped[str] = mapped_column(String(120))
    family_name: Mapped[str] = mapped_column(String(120))
    date_of_birth: Mapped[date] = mapped_column(Date)
    mrn: Mapped[str] = mapped_column(String(64))


class ProductProfile(Base):
    """Versioned product data: storage, windows, steps. Numbers live here, never in code."""

    __tablename__ = "product_profiles"
    __table_args__ = (
        UniqueConstraint("code", "version"),
        _in("starting_material", ["fresh", "cryopreserved"], "starting_material"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    code: Mapped[str] = mapped_column(String(32))
    version: Mapped[int] = mapped_column(default=1)
    name: Mapped[str] = mapped_column(String(200))
    # Opaque ISBT 128 product code (the PDC database is licensed; we never interpret it).
    product_code: Mapped[str] = mapped_column(String(16))
    starting_material: Mapped[str] = mapped_column(String(16))
    data: Mapped[dict[str, Any]] = mapped_column(default=dict)
    active: Mapped[bool] = mapped_column(default=True)
    created_at: Mapped[datetime]


class TherapyOrder(Base):
    __tablename__ = "therapy_orders"
    __table_args__ = (_in("status", ["active", "completed", "cancelled"], "status"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    public_id: Mapped[str] = mapped_column(String(32), unique=True)
    # ISBT 128 DS040 chain-of-identity identifier (15 characters, without data identifier).
    coi: Mapped[str] = mapped_column(String(15), unique=True)
    patient_id: Mapped[int] = mapped_column(ForeignKey("patients.id"), index=True)
    product_profile_id: Mapped[int] = mapped_column(ForeignKey("product_profiles.id"))
    treatment_site_id: Mapped[int] = mapped_column(ForeignKey("sites.id"), index=True)
    collection_site_id: Mapped[int] = mapped_column(ForeignKey("sites.id"), index=True)
    manufacturing_site_id: Mapped[int] = mapped_column(ForeignKey("sites.id"), index=True)
    status: Mapped[str] = mapped_column(String(16), default="active")
    created_at: Mapped[datetime]
    created_by_id: Mapped[int] = mapped_column(ForeignKey("users.id"))
    version_id: Mapped[int] = mapped_column(default=1)

    __mapper_args__ = {"version_id_col": version_id}

    patient: Mapped[Patient] = relationship(lazy="joined")
    product_profile: Mapped[ProductProfile] = relationship(lazy="joined")
    treatment_site: Mapped[Site] = relationship(foreign_keys=[treatment_site_id], lazy="joined")
    collection_site: Mapped[Site] = relationship(foreign_keys=[collection_site_id], lazy="joined")
    manufacturing_site: Mapped[Site] = relationship(
        foreign_keys=[manufacturing_site_id], lazy="joined"
    )
    items: Mapped[list[Item]] = relationship(
        back_populates="order", order_by="Item.id", lazy="selectin"
    )
    shipments: Mapped[list[Shipment]] = relationship(
        back_populates="order", order_by="Shipment.id", lazy="selectin"
    )


class Item(Base):
    """A tracked physical item: apheresis bag, final product bag or cryoshipper."""

    __tablename__ = "items"
    __table_args__ = (
        _in("kind", [k.value for k in ItemKind if k != ItemKind.shipment], "kind"),
        _in("state", [s.value for s in all_states()], "state"),
        # A bag always belongs to one order and carries a DIN; a shipper carries a serial.
        CheckConstraint(
            "kind = 'cryoshipper' OR (order_id IS NOT NULL AND din IS NOT NULL)",
            name="bag_has_order_and_din",
        ),
        CheckConstraint("kind <> 'cryoshipper' OR serial IS NOT NULL", name="shipper_has_serial"),
        CheckConstraint("container BETWEEN 1 AND 9", name="container_1_to_9"),
        UniqueConstraint("din", "container"),
        UniqueConstraint("serial"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    public_id: Mapped[str] = mapped_column(String(32), unique=True)
    kind: Mapped[str] = mapped_column(String(32))
    state: Mapped[str] = mapped_column(String(32))
    order_id: Mapped[int | None] = mapped_column(ForeignKey("therapy_orders.id"), index=True)
    site_id: Mapped[int | None] = mapped_column(ForeignKey("sites.id"))
    # Final product bag -> the apheresis bag it was made from.
    parent_id: Mapped[int | None] = mapped_column(ForeignKey("items.id"))
    din: Mapped[str | None] = mapped_column(String(13))
    container: Mapped[int] = mapped_column(default=1)
    product_code: Mapped[str | None] = mapped_column(String(16))
    lot: Mapped[str | None] = mapped_column(String(32))
    serial: Mapped[str | None] = mapped_column(String(40))
    charged_at: Mapped[datetime | None]
    validated_hold_hours: Mapped[int | None] = mapped_column(Integer)
    created_at: Mapped[datetime]
    version_id: Mapped[int] = mapped_column(default=1)

    __mapper_args__ = {"version_id_col": version_id}

    order: Mapped[TherapyOrder | None] = relationship(back_populates="items")
    site: Mapped[Site | None] = relationship(lazy="joined")
    parent: Mapped[Item | None] = relationship(remote_side=[id], back_populates="children")
    children: Mapped[list[Item]] = relationship(back_populates="parent")
    # Back-link from a bag to every shipment leg that carried it.
    shipments: Mapped[list[Shipment]] = relationship(
        secondary="shipment_items", viewonly=True, order_by="Shipment.id"
    )


class Shipment(Base):
    """One leg from origin to destination, in one cryoshipper, for one order's items."""

    __tablename__ = "shipments"
    __table_args__ = (
        _in("state", [s.value for s in all_states()], "state"),
        CheckConstraint("origin_site_id <> destination_site_id", name="origin_differs"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    public_id: Mapped[str] = mapped_column(String(32), unique=True)
    order_id: Mapped[int] = mapped_column(ForeignKey("therapy_orders.id"), index=True)
    shipper_id: Mapped[int | None] = mapped_column(ForeignKey("items.id"))
    origin_site_id: Mapped[int] = mapped_column(ForeignKey("sites.id"))
    destination_site_id: Mapped[int] = mapped_column(ForeignKey("sites.id"))
    courier_user_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    state: Mapped[str] = mapped_column(String(32))
    tamper_seal: Mapped[str | None] = mapped_column(String(64))
    air_waybill: Mapped[str | None] = mapped_column(String(64))
    logger_serial: Mapped[str | None] = mapped_column(String(64))
    planned_pickup_at: Mapped[datetime | None]
    planned_delivery_at: Mapped[datetime | None]
    created_at: Mapped[datetime]
    version_id: Mapped[int] = mapped_column(default=1)

    __mapper_args__ = {"version_id_col": version_id}

    order: Mapped[TherapyOrder] = relationship(back_populates="shipments")
    shipper: Mapped[Item | None] = relationship(lazy="joined")
    origin_site: Mapped[Site] = relationship(foreign_keys=[origin_site_id], lazy="joined")
    destination_site: Mapped[Site] = relationship(foreign_keys=[destination_site_id], lazy="joined")
    items: Mapped[list[Item]] = relationship(secondary="shipment_items", lazy="selectin")


class ShipmentItem(Base):
    __tablename__ = "shipment_items"

    shipment_id: Mapped[int] = mapped_column(ForeignKey("shipments.id"), primary_key=True)
    item_id: Mapped[int] = mapped_column(ForeignKey("items.id"), primary_key=True)


class CustodyEvent(Base):
    """Append-only custody record (database triggers refuse UPDATE and DELETE).

    Events of one chain (an order's COI, or one reusable asset) form a hash chain.
    """

    __tablename__ = "custody_events"
    __table_args__ = (
        UniqueConstraint("chain_key", "seq"),
        _in(
            "event_type",
            ["registered", "transition", "correction", "linked", "note"],
            "event_type",
        ),
        CheckConstraint(
            "event_type <> 'correction' OR (corrects_event_id IS NOT NULL AND reason IS NOT NULL)",
            name="correction_has_target_and_reason",
        ),
        Index("ix_custody_events_item_id_occurred_at", "item_id", "occurred_at"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    chain_key: Mapped[str] = mapped_column(String(48))
    seq: Mapped[int]
    order_id: Mapped[int | None] = mapped_column(ForeignKey("therapy_orders.id"), index=True)
    item_id: Mapped[int | None] = mapped_column(ForeignKey("items.id"))
    shipment_id: Mapped[int | None] = mapped_column(ForeignKey("shipments.id"))
    event_type: Mapped[str] = mapped_column(String(16))
    from_state: Mapped[str | None] = mapped_column(String(32))
    to_state: Mapped[str | None] = mapped_column(String(32))
    site_id: Mapped[int | None] = mapped_column(ForeignKey("sites.id"))
    actor_user_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    device_id: Mapped[int | None] = mapped_column(ForeignKey("devices.id"))
    occurred_at: Mapped[datetime]
    recorded_at: Mapped[datetime]
    details: Mapped[dict[str, Any]] = mapped_column(default=dict)
    corrects_event_id: Mapped[int | None] = mapped_column(ForeignKey("custody_events.id"))
    reason: Mapped[str | None] = mapped_column(Text)
    prev_hash: Mapped[str] = mapped_column(String(64))
    hash: Mapped[str] = mapped_column(String(64), unique=True)

    actor: Mapped[User | None] = relationship(lazy="joined")
    site: Mapped[Site | None] = relationship(lazy="joined")


class AuditEntry(Base):
    """Who changed what (old -> new), when and why. Append-only."""

    __tablename__ = "audit_log"

    id: Mapped[int] = mapped_column(primary_key=True)
    at: Mapped[datetime] = mapped_column(index=True)
    actor_user_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    action: Mapped[str] = mapped_column(String(48))
    entity_type: Mapped[str] = mapped_column(String(48))
    entity_id: Mapped[str] = mapped_column(String(64))
    changes: Mapped[dict[str, Any]] = mapped_column(default=dict)
    reason: Mapped[str | None] = mapped_column(Text)
    site_id: Mapped[int | None] = mapped_column(ForeignKey("sites.id"))

    __table_args__ = (Index("ix_audit_log_entity", "entity_type", "entity_id"),)


class Signature(Base):
    """An electronic signature (21 CFR 11.50/11.70): name, meaning, time, hash of the record."""

    __tablename__ = "signatures"
    __table_args__ = (
        _in("meaning", list(SIGNATURE_MEANINGS), "meaning"),
        Index("ix_signatures_record", "record_type", "record_id"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"))
    printed_name: Mapped[str] = mapped_column(String(200))
    meaning: Mapped[str] = mapped_column(String(32))
    signed_at: Mapped[datetime]
    record_type: Mapped[str] = mapped_column(String(48))
    record_id: Mapped[str] = mapped_column(String(64))
    record_hash: Mapped[str] = mapped_column(String(64))


class WorkerHeartbeat(Base):
    __tablename__ = "worker_heartbeats"

    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    beat_at: Mapped[datetime]
    host: Mapped[str] = mapped_column(String(120))
    pid: Mapped[int]


class IdentifierCounter(Base):
    """Monotonic counters for identifier sequences (COI per issuer and year, DIN per FIN)."""

    __tablename__ = "identifier_counters"

    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    value: Mapped[int] = mapped_column(default=0)


# --- labels ---


class Printer(Base):
    """A network label printer at a site, taking ZPL II over raw TCP (port 9100 by default)."""

    __tablename__ = "printers"
    __table_args__ = (
        UniqueConstraint("site_id", "name"),
        CheckConstraint("port BETWEEN 1 AND 65535", name="port_range"),
        CheckConstraint("dpi IN (203, 300)", name="dpi"),
        _in("default_size", LABEL_SIZES, "default_size"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    public_id: Mapped[str] = mapped_column(String(32), unique=True)
    site_id: Mapped[int] = mapped_column(ForeignKey("sites.id"), index=True)
    name: Mapped[str] = mapped_column(String(120))
    host: Mapped[str] = mapped_column(String(255))
    port: Mapped[int] = mapped_column(default=9100)
    dpi: Mapped[int] = mapped_column(default=203)
    default_size: Mapped[str] = mapped_column(String(8), default="4x2")
    active: Mapped[bool] = mapped_column(default=True)
    created_at: Mapped[datetime]
    version_id: Mapped[int] = mapped_column(default=1)

    __mapper_args__ = {"version_id_col": version_id}

    site: Mapped[Site] = relationship(lazy="joined")


class LabelPrint(Base):
    """One print (or download) of one label, successful or failed. Append-only evidence.

    ``public_id`` is the label instance's opaque id (``TRKLBL…``); the label's QR link carries it.
    """

    __tablename__ = "label_prints"
    __table_args__ = (
        _in("label_kind", _values(LabelKind), "label_kind"),
        _in("output", OUTPUTS, "output"),
        _in("size", (*LABEL_SIZES, *SHEET_SIZES), "size"),
        _in("status", _values(PrintStatus), "status"),
        CheckConstraint("dpi IN (203, 300)", name="dpi"),
        CheckConstraint(f"copies BETWEEN 1 AND {MAX_COPIES}", name="copies_range"),
        CheckConstraint("NOT reprint OR reason IS NOT NULL", name="reprint_has_reason"),
        CheckConstraint(
            "(status = 'done' AND error_reason IS NULL)"
            " OR (status = 'failed' AND error_reason IS NOT NULL)",
            name="failure_has_reason",
        ),
        # A courier ticket belongs to a shipment and carries a job code; every other label
        # belongs to one item.
        CheckConstraint(
            "(label_kind = 'courier_job' AND shipment_id IS NOT NULL AND item_id IS NULL"
            " AND job_code IS NOT NULL)"
            " OR (label_kind <> 'courier_job' AND item_id IS NOT NULL AND shipment_id IS NULL)",
            name="one_target",
        ),
        # Printers take ZPL; a download (no printer) is done once the file is handed over.
        CheckConstraint("printer_id IS NULL OR output = 'zpl'", name="printers_take_zpl"),
        CheckConstraint("printer_id IS NOT NULL OR status = 'done'", name="downloads_succeed"),
        Index("ix_label_prints_item_id_label_kind", "item_id", "label_kind"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    public_id: Mapped[str] = mapped_column(String(32), unique=True)
    label_kind: Mapped[str] = mapped_column(String(16))
    item_id: Mapped[int | None] = mapped_column(ForeignKey("items.id"))
    shipment_id: Mapped[int | None] = mapped_column(ForeignKey("shipments.id"), index=True)
    order_id: Mapped[int | None] = mapped_column(ForeignKey("therapy_orders.id"), index=True)
    site_id: Mapped[int] = mapped_column(ForeignKey("sites.id"))
    printer_id: Mapped[int | None] = mapped_column(ForeignKey("printers.id"))
    output: Mapped[str] = mapped_column(String(8))
    size: Mapped[str] = mapped_column(String(8))
    dpi: Mapped[int]
    copies: Mapped[int]
    template_version: Mapped[str] = mapped_column(String(32))
    reprint: Mapped[bool]
    reason: Mapped[str | None] = mapped_column(Text)
    # What identifies the physical label: DIN barcode data with its flags (bags), the job
    # code (tickets) or the GS1 data (shippers); a label-applied scan is checked against it.
    barcode_data: Mapped[str] = mapped_column(String(120))
    din_flags: Mapped[str | None] = mapped_column(String(2))
    job_code: Mapped[str | None] = mapped_column(String(32))
    payload_sha256: Mapped[str] = mapped_column(String(64))
    status: Mapped[str] = mapped_column(String(8))
    error_reason: Mapped[str | None] = mapped_column(String(32))
    error_message: Mapped[str | None] = mapped_column(Text)
    actor_user_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    device_id: Mapped[int | None] = mapped_column(ForeignKey("devices.id"))
    requested_at: Mapped[datetime]

    printer: Mapped[Printer | None] = relationship(lazy="joined")
    actor: Mapped[User | None] = relationship(lazy="joined")
    site: Mapped[Site] = relationship(lazy="joined")


# --- alerts ---
# Loggers and their readings, excursions (breach records with copied thresholds), QA
# dispositions, handoff deadlines, alerts with escalation ladders, and the SMS outbox with
# the webhook evidence Twilio sends back. Readings, dispositions, inbound SMS and status
# callbacks are evidence: database triggers make them append-only.

ALERT_KINDS = [
    "temperature_excursion",
    "logger_silent",
    "shipper_hold",
    "deadline_warning",
    "deadline_breach",
]
DEADLINE_KINDS = [
    "pickup_by",
    "delivery_by",
    "fresh_stability",
    "shipper_expiry",
    "ambient_exposure",
    "thaw_to_infusion",
    "plan_milestone",
]
OUTBOX_STATES = [
    "pending",  # waiting for its turn (or for a retry after 429)
    "sending",  # claimed by a dispatcher; the call to Twilio is in flight
    "verify",  # the call may have gone through (5xx, timeout, dead worker): look it up first
    "checking",  # claimed by a dispatcher that is looking it up
    "sent",  # Twilio accepted it (sid stored)
    "failed",  # permanently refused, or retries exhausted
    "suppressed",  # not sent: the recipient opted out
    "cancelled",  # not sent: the alert was acknowledged first
    "unknown",  # could not find out whether it went; escalation carries on
]


class TemperatureLogger(Base):
    """A temperature logger placed in shipments (by serial) or fixed in a site's storage."""

    __tablename__ = "loggers"
    __table_args__ = (
        _in("placement", ["shipment", "storage"], "placement"),
        _in("profile", ["cryogenic", "fresh", "device"], "profile"),
        CheckConstraint("expected_interval_seconds > 0", name="interval_positive"),
        CheckConstraint("silence_factor > 0", name="silence_factor_positive"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    serial: Mapped[str] = mapped_column(String(64), unique=True)
    # The API device whose token may post this logger's readings (None: file imports only).
    device_id: Mapped[int | None] = mapped_column(ForeignKey("devices.id"), unique=True)
    site_id: Mapped[int] = mapped_column(ForeignKey("sites.id"), index=True)
    placement: Mapped[str] = mapped_column(String(16))
    location: Mapped[str] = mapped_column(String(120), default="")
    # A logger built into one cryoshipper follows that shipper from shipment to shipment.
    shipper_item_id: Mapped[int | None] = mapped_column(ForeignKey("items.id"))
    profile: Mapped[str] = mapped_column(String(16))
    limit_c: Mapped[float | None] = mapped_column(Float)
    expected_interval_seconds: Mapped[int]
    silence_factor: Mapped[float] = mapped_column(Float, default=2.0)
    # Cumulative rules count from here (a new shipment leg starts a new series).
    series_started_at: Mapped[datetime | None]
    last_reading_at: Mapped[datetime | None]
    excursion_open: Mapped[bool] = mapped_column(default=False)
    device_alarms: Mapped[dict[str, Any]] = mapped_column(default=dict)
    active: Mapped[bool] = mapped_column(default=True)
    created_at: Mapped[datetime]

    site: Mapped[Site] = relationship(lazy="joined")


class LoggerImportRun(Base):
    """One uploaded logger file: the archived original, its progress and its outcome."""

    __tablename__ = "logger_imports"
    __table_args__ = (
        _in(
            "status",
            ["queued", "parsing", "storing", "evaluating", "done", "failed"],
            "status",
        ),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    logger_id: Mapped[int | None] = mapped_column(ForeignKey("loggers.id"), index=True)
    site_id: Mapped[int] = mapped_column(ForeignKey("sites.id"))
    filename: Mapped[str] = mapped_column(String(255))
    serial_hint: Mapped[str | None] = mapped_column(String(64))
    profile_hint: Mapped[str] = mapped_column(String(16), default="cryogenic")
    content: Mapped[str] = mapped_column(Text)
    format: Mapped[str | None] = mapped_column(String(32))
    status: Mapped[str] = mapped_column(String(16), default="queued")
    total: Mapped[int] = mapped_column(default=0)
    done: Mapped[int] = mapped_column(default=0)
    readings_new: Mapped[int] = mapped_column(default=0)
    readings_duplicate: Mapped[int] = mapped_column(default=0)
    readings_conflicting: Mapped[int] = mapped_column(default=0)
    excursions: Mapped[int] = mapped_column(default=0)
    summary: Mapped[dict[str, Any]] = mapped_column(default=dict)
    uploaded_by_user_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    created_at: Mapped[datetime]
    started_at: Mapped[datetime | None]
    finished_at: Mapped[datetime | None]


class LoggerReading(Base):
    """One reading; idempotent per logger and instant (the primary key). Append-only."""

    __tablename__ = "logger_readings"

    logger_id: Mapped[int] = mapped_column(ForeignKey("loggers.id"), primary_key=True)
    at: Mapped[datetime] = mapped_column(primary_key=True)
    celsius: Mapped[float] = mapped_column(Float)
    received_at: Mapped[datetime]
    import_id: Mapped[int | None] = mapped_column(ForeignKey("logger_imports.id"))


class ExcursionRecord(Base):
    """A breach of one temperature rule, with the rule's thresholds copied onto the row."""

    __tablename__ = "excursions"
    __table_args__ = (
        _in("level", ["warning", "alarm", "critical"], "level"),
        _in("kind", ["hot", "cold"], "kind"),
        _in("mode", ["consecutive", "cumulative"], "mode"),
        CheckConstraint("end_at IS NULL OR end_at >= start_at", name="ends_after_start"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    dedupe_key: Mapped[str] = mapped_column(String(200), unique=True)
    logger_id: Mapped[int] = mapped_column(ForeignKey("loggers.id"), index=True)
    shipment_id: Mapped[int | None] = mapped_column(ForeignKey("shipments.id"))
    site_id: Mapped[int] = mapped_column(ForeignKey("sites.id"))
    level: Mapped[str] = mapped_column(String(16))
    kind: Mapped[str] = mapped_column(String(8))
    mode: Mapped[str] = mapped_column(String(16))
    threshold_c: Mapped[float] = mapped_column(Float)
    inclusive: Mapped[bool]
    min_duration_seconds: Mapped[int]
    rule_source: Mapped[str] = mapped_column(String(160))
    profile_id: Mapped[int | None] = mapped_column(ForeignKey("product_profiles.id"))
    profile_version: Mapped[int | None]
    start_at: Mapped[datetime]
    end_at: Mapped[datetime | None]
    duration_seconds: Mapped[int]
    triggered_at: Mapped[datetime]
    worst_c: Mapped[float] = mapped_column(Float)
    worst_at: Mapped[datetime]
    spans: Mapped[dict[str, Any]] = mapped_column(default=dict)
    detected_at: Mapped[datetime]
    updated_at: Mapped[datetime]

    logger: Mapped[TemperatureLogger] = relationship(lazy="joined")
    items: Mapped[list[Item]] = relationship(secondary="excursion_items", lazy="selectin")


class ExcursionItem(Base):
    """A bag that sat in the breached container during the breach."""

    __tablename__ = "excursion_items"

    excursion_id: Mapped[int] = mapped_column(ForeignKey("excursions.id"), primary_key=True)
    item_id: Mapped[int] = mapped_column(ForeignKey("items.id"), primary_key=True)


class QaDisposition(Base):
    """QA's decision on a bag after an excursion; the latest one gates custody. Append-only."""

    __tablename__ = "qa_dispositions"
    __table_args__ = (
        _in("decision", ["accept", "quarantine", "discard"], "decision"),
        Index("ix_qa_dispositions_item_id_id", "item_id", "id"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    item_id: Mapped[int] = mapped_column(ForeignKey("items.id"))
    excursion_id: Mapped[int | None] = mapped_column(ForeignKey("excursions.id"))
    alert_id: Mapped[int | None] = mapped_column(ForeignKey("alerts.id"))
    decision: Mapped[str] = mapped_column(String(16))
    comment: Mapped[str] = mapped_column(Text)
    decided_by_user_id: Mapped[int] = mapped_column(ForeignKey("users.id"))
    decided_at: Mapped[datetime]

    decided_by: Mapped[User] = relationship(lazy="joined")


class HandoffDeadline(Base):
    """A deadline row derived from the plan and product profile; the sweeper warns and alerts."""

    __tablename__ = "handoff_deadlines"
    __table_args__ = (
        _in("kind", DEADLINE_KINDS, "kind"),
        _in("status", ["open", "met", "cancelled"], "status"),
        CheckConstraint("warn_at IS NULL OR warn_at <= due_at", name="warns_before_due"),
        Index("ix_handoff_deadlines_status_due_at", "status", "due_at"),
        Index("ix_handoff_deadlines_status_warn_at", "status", "warn_at"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    dedupe_key: Mapped[str] = mapped_column(String(160), unique=True)
    kind: Mapped[str] = mapped_column(String(24))
    label: Mapped[str] = mapped_column(String(200))
    due_at: Mapped[datetime]
    warn_at: Mapped[datetime | None]
    order_id: Mapped[int | None] = mapped_column(ForeignKey("therapy_orders.id"), index=True)
    item_id: Mapped[int | None] = mapped_column(ForeignKey("items.id"), index=True)
    shipment_id: Mapped[int | None] = mapped_column(ForeignKey("shipments.id"), index=True)
    site_id: Mapped[int] = mapped_column(ForeignKey("sites.id"))
    profile_id: Mapped[int | None] = mapped_column(ForeignKey("product_profiles.id"))
    profile_version: Mapped[int | None]
    status: Mapped[str] = mapped_column(String(16), default="open")
    warned_at: Mapped[datetime | None]
    breached_at: Mapped[datetime | None]
    closed_at: Mapped[datetime | None]
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]


class EscalationStep(Base):
    """One rung of a site's ladder: who hears next, how, and how long they have to answer."""

    __tablename__ = "escalation_steps"
    __table_args__ = (
        UniqueConstraint("site_id", "position"),
        _in("role", ["courier", "backup_courier", "coordinator", "on_call_manager"], "role"),
        _in("channel", ["sms", "in_app"], "channel"),
        CheckConstraint("ack_timeout_minutes > 0", name="timeout_positive"),
        # The courier rung names nobody: it means the courier of the shipment concerned.
        CheckConstraint("role = 'courier' OR user_id IS NOT NULL", name="named_unless_courier"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    site_id: Mapped[int] = mapped_column(ForeignKey("sites.id"))
    position: Mapped[int]
    role: Mapped[str] = mapped_column(String(24))
    user_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    channel: Mapped[str] = mapped_column(String(8))
    ack_timeout_minutes: Mapped[int]

    user: Mapped[User | None] = relationship(lazy="joined")


class Alert(Base):
    """Something a person must hear about; raised once per dedupe key, escalated until acked."""

    __tablename__ = "alerts"
    __table_args__ = (
        _in("kind", ALERT_KINDS, "kind"),
        _in("severity", ["info", "warning", "alarm", "critical"], "severity"),
        _in("notify", ["in_app", "first", "ladder"], "notify"),
        _in("status", ["open", "acknowledged", "resolved"], "status"),
        CheckConstraint("ack_channel IS NULL OR ack_channel IN ('web', 'sms')", name="ack_channel"),
        CheckConstraint(
            "status <> 'acknowledged' OR acknowledged_at IS NOT NULL", name="ack_has_time"
        ),
        Index("ix_alerts_status_next_escalation_at", "status", "next_escalation_at"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    dedupe_key: Mapped[str] = mapped_column(String(200), unique=True)
    kind: Mapped[str] = mapped_column(String(32))
    severity: Mapped[str] = mapped_column(String(16))
    notify: Mapped[str] = mapped_column(String(16))
    title: Mapped[str] = mapped_column(String(300))
    details: Mapped[dict[str, Any]] = mapped_column(default=dict)
    site_id: Mapped[int] = mapped_column(ForeignKey("sites.id"), index=True)
    order_id: Mapped[int | None] = mapped_column(ForeignKey("therapy_orders.id"), index=True)
    item_id: Mapped[int | None] = mapped_column(ForeignKey("items.id"))
    shipment_id: Mapped[int | None] = mapped_column(ForeignKey("shipments.id"))
    logger_id: Mapped[int | None] = mapped_column(ForeignKey("loggers.id"))
    excursion_id: Mapped[int | None] = mapped_column(ForeignKey("excursions.id"))
    deadline_id: Mapped[int | None] = mapped_column(ForeignKey("handoff_deadlines.id"))
    # Opaque codes: the job code names the work in SMS, the ack code is what couriers reply.
    job_code: Mapped[str] = mapped_column(String(16))
    ack_code: Mapped[str] = mapped_column(String(8), index=True)
    status: Mapped[str] = mapped_column(String(16), default="open")
    raised_at: Mapped[datetime]
    escalation_level: Mapped[int] = mapped_column(default=0)
    next_escalation_at: Mapped[datetime | None]
    ladder_exhausted: Mapped[bool] = mapped_column(default=False)
    acknowledged_at: Mapped[datetime | None]
    acknowledged_by_user_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    ack_channel: Mapped[str | None] = mapped_column(String(8))
    ack_comment: Mapped[str | None] = mapped_column(Text)
    ack_phone: Mapped[str | None] = mapped_column(String(32))
    resolved_at: Mapped[datetime | None]
    resolution: Mapped[str | None] = mapped_column(String(200))
    version_id: Mapped[int] = mapped_column(default=1)

    __mapper_args__ = {"version_id_col": version_id}

    site: Mapped[Site] = relationship(lazy="joined")
    acknowledged_by: Mapped[User | None] = relationship(lazy="joined")


class SmsOutbox(Base):
    """A text to send, committed with the event that caused it; the dispatcher sends it."""

    __tablename__ = "sms_outbox"
    __table_args__ = (
        _in("state", OUTBOX_STATES, "state"),
        CheckConstraint("attempts >= 0", name="attempts_non_negative"),
        CheckConstraint("state <> 'sent' OR sid IS NOT NULL", name="sent_has_sid"),
        Index("ix_sms_outbox_state_next_attempt_at", "state", "next_attempt_at"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    dedupe_key: Mapped[str] = mapped_column(String(200), unique=True)
    alert_id: Mapped[int | None] = mapped_column(ForeignKey("alerts.id"), index=True)
    user_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    to_phone: Mapped[str] = mapped_column(String(32))
    template: Mapped[str] = mapped_column(String(32))
    body: Mapped[str] = mapped_column(Text)
    escalation_level: Mapped[int] = mapped_column(default=0)
    state: Mapped[str] = mapped_column(String(16), default="pending")
    attempts: Mapped[int] = mapped_column(default=0)
    verify_attempts: Mapped[int] = mapped_column(default=0)
    next_attempt_at: Mapped[datetime]
    claimed_at: Mapped[datetime | None]
    claimed_by: Mapped[str | None] = mapped_column(String(120))
    sent_at: Mapped[datetime | None]
    sid: Mapped[str | None] = mapped_column(String(64), unique=True)
    twilio_status: Mapped[str | None] = mapped_column(String(16))
    error_code: Mapped[int | None]
    last_error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime]

    user: Mapped[User | None] = relationship(lazy="joined")


class SmsStatusEvent(Base):
    """A delivery status callback as Twilio sent it, once per (sid, status). Append-only."""

    __tablename__ = "sms_status_events"
    __table_args__ = (UniqueConstraint("message_sid", "status"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    message_sid: Mapped[str] = mapped_column(String(64))
    status: Mapped[str] = mapped_column(String(16))
    error_code: Mapped[int | None]
    outbox_id: Mapped[int | None] = mapped_column(ForeignKey("sms_outbox.id"))
    received_at: Mapped[datetime]


class SmsInbound(Base):
    """A text a courier or on-call person sent us, and what we made of it. Append-only."""

    __tablename__ = "sms_inbound"
    __table_args__ = (_in("action", ["ack", "stop", "start", "help", "unknown"], "action"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    message_sid: Mapped[str] = mapped_column(String(64), unique=True)
    from_phone: Mapped[str] = mapped_column(String(32), index=True)
    to_phone: Mapped[str] = mapped_column(String(32))
    body: Mapped[str] = mapped_column(Text)
    action: Mapped[str] = mapped_column(String(8))
    outcome: Mapped[str] = mapped_column(String(200))
    alert_id: Mapped[int | None] = mapped_column(ForeignKey("alerts.id"))
    user_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    received_at: Mapped[datetime]


class SmsOptOut(Base):
    """Whether a phone number said STOP (or Twilio reported it unsubscribed); shown to staff."""

    __tablename__ = "sms_opt_outs"
    __table_args__ = (_in("source", ["keyword", "carrier_error", "admin"], "source"),)

    phone: Mapped[str] = mapped_column(String(32), primary_key=True)
    opted_out: Mapped[bool]
    source: Mapped[str] = mapped_column(String(16))
    changed_at: Mapped[datetime]


# --- scanning ---


class StepRun(Base):
    """One performance of a journey step for one order; its scans, answers and signatures.

    At most one run per order and step is open at a time, so scanners that start the same
    step for the same order work on one run (and a two-person step collects both people).
    """

    __tablename__ = "step_runs"
    __table_args__ = (
        _in("status", ["open", "completed"], "status"),
        CheckConstraint(
            "status <> 'completed' OR completed_at IS NOT NULL", name="completed_has_time"
        ),
        Index(
            "uq_step_runs_open_order_id_step",
            "order_id",
            "step",
            unique=True,
            postgresql_where=text("status = 'open'"),
            sqlite_where=text("status = 'open'"),
        ),
        Index("ix_step_runs_order_id_completed_at", "order_id", "completed_at"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    order_id: Mapped[int] = mapped_column(ForeignKey("therapy_orders.id"))
    step: Mapped[str] = mapped_column(String(48))
    # Exception paths (quarantine, discard, ...) do not move the journey on.
    exception: Mapped[bool] = mapped_column(default=False)
    site_id: Mapped[int] = mapped_column(ForeignKey("sites.id"))
    shipment_id: Mapped[int | None] = mapped_column(ForeignKey("shipments.id"))
    status: Mapped[str] = mapped_column(String(16), default="open")
    started_by_id: Mapped[int] = mapped_column(ForeignKey("users.id"))
    started_at: Mapped[datetime]
    completed_at: Mapped[datetime | None]
    # Checklist answers: {key: {"value": ..., "by": user id, "at": ISO time}}.
    answers: Mapped[dict[str, Any]] = mapped_column(default=dict)
    version_id: Mapped[int] = mapped_column(default=1)

    __mapper_args__ = {"version_id_col": version_id}


class Deviation(Base):
    """A departure from the journey (a forced offline scan, an unexpected checklist answer).

    While open it blocks the order's next custody step; only QA closes it, with a reason.
    """

    __tablename__ = "deviations"
    __table_args__ = (
        _in("kind", ["forced_scan", "checklist", "manual"], "kind"),
        _in("status", ["open", "closed"], "status"),
        CheckConstraint(
            "status <> 'closed' OR (closed_at IS NOT NULL AND closed_by_id IS NOT NULL "
            "AND close_reason IS NOT NULL)",
            name="closed_has_reason",
        ),
        Index("ix_deviations_order_id_status", "order_id", "status"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    public_id: Mapped[str] = mapped_column(String(32), unique=True)
    order_id: Mapped[int] = mapped_column(ForeignKey("therapy_orders.id"))
    item_id: Mapped[int | None] = mapped_column(ForeignKey("items.id"))
    # The run that opened it (a checklist answer): that run may still finish.
    run_id: Mapped[int | None] = mapped_column(ForeignKey("step_runs.id"))
    kind: Mapped[str] = mapped_column(String(16))
    status: Mapped[str] = mapped_column(String(16), default="open")
    description: Mapped[str] = mapped_column(Text)
    opened_at: Mapped[datetime]
    opened_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    closed_at: Mapped[datetime | None]
    closed_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    close_reason: Mapped[str | None] = mapped_column(Text)
    close_signature_id: Mapped[int | None] = mapped_column(ForeignKey("signatures.id"))
    version_id: Mapped[int] = mapped_column(default=1)

    __mapper_args__ = {"version_id_col": version_id}


class Scan(Base):
    """Every scan, accepted or refused, as it arrived. Append-only (database triggers).

    ``client_at`` is when the device says it happened, ``server_at`` when we recorded it.
    ``offline`` scans were queued on the device; ``forced`` ones would have been refused online
    and were kept as facts, each linked to the deviation it opened or joined.
    """

    __tablename__ = "scans"
    __table_args__ = (
        UniqueConstraint("device_ref", "nonce"),
        _in("result", ["ok", "incomplete", "error"], "result"),
        CheckConstraint("result = 'error' OR reason IS NULL", name="only_errors_have_reasons"),
        CheckConstraint("NOT forced OR (offline AND result = 'error')", name="forced_is_offline"),
        Index("ix_scans_client_run", "client_run"),
        Index("ix_scans_run_id", "run_id"),
        Index("ix_scans_order_id_server_at", "order_id", "server_at"),
        Index("ix_scans_scanned_order_id", "scanned_order_id"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    nonce: Mapped[str] = mapped_column(String(64))
    # What the client named as its device; device_id is set only when that is a real scanner.
    device_ref: Mapped[str] = mapped_column(String(64))
    device_id: Mapped[int | None] = mapped_column(ForeignKey("devices.id"))
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"))
    site_id: Mapped[int | None] = mapped_column(ForeignKey("sites.id"))
    step: Mapped[str] = mapped_column(String(48))
    client_run: Mapped[str | None] = mapped_column(String(64))
    run_id: Mapped[int | None] = mapped_column(ForeignKey("step_runs.id"))
    raw: Mapped[str] = mapped_column(Text)
    manual: Mapped[bool] = mapped_column(default=False)
    parsed: Mapped[dict[str, Any] | None]
    kind: Mapped[str | None] = mapped_column(String(32))
    # The order whose step this was (the run's), and the one the code belongs to if different.
    order_id: Mapped[int | None] = mapped_column(ForeignKey("therapy_orders.id"))
    scanned_order_id: Mapped[int | None] = mapped_column(ForeignKey("therapy_orders.id"))
    item_id: Mapped[int | None] = mapped_column(ForeignKey("items.id"))
    requirement: Mapped[str | None] = mapped_column(String(48))
    token: Mapped[str | None] = mapped_column(String(64))
    client_at: Mapped[datetime]
    server_at: Mapped[datetime]
    offline: Mapped[bool] = mapped_column(default=False)
    forced: Mapped[bool] = mapped_column(default=False)
    result: Mapped[str] = mapped_column(String(16))
    reason: Mapped[str | None] = mapped_column(String(48))
    message: Mapped[str] = mapped_column(Text)
    # The answer as sent, replayed verbatim when the same nonce arrives again.
    http_status: Mapped[int]
    response: Mapped[dict[str, Any]]
    deviation_id: Mapped[int | None] = mapped_column(ForeignKey("deviations.id"))


class ReleaseCertificate(Base):
    """Issued at QA release; scanned at the bedside. Append-only."""

    __tablename__ = "release_certificates"

    id: Mapped[int] = mapped_column(primary_key=True)
    # Internal CRT identifier printed as the certificate's barcode.
    code: Mapped[str] = mapped_column(String(17), unique=True)
    order_id: Mapped[int] = mapped_column(ForeignKey("therapy_orders.id"), index=True)
    run_id: Mapped[int] = mapped_column(ForeignKey("step_runs.id"))
    signature_id: Mapped[int] = mapped_column(ForeignKey("signatures.id"))
    issued_at: Mapped[datetime]
    items: Mapped[dict[str, Any]]


class IdempotencyKey(Base):
    """A caller's Idempotency-Key and the stored answer, kept at least 24 hours."""

    __tablename__ = "idempotency_keys"
    __table_args__ = (
        UniqueConstraint("caller", "key"),
        _in("state", ["in_flight", "done"], "state"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    caller: Mapped[str] = mapped_column(String(64))
    key: Mapped[str] = mapped_column(String(255))
    # sha256 over method, path and body: the same key with another request is refused.
    fingerprint: Mapped[str] = mapped_column(String(64))
    state: Mapped[str] = mapped_column(String(16))
    status_code: Mapped[int | None]
    content_type: Mapped[str | None] = mapped_column(String(128))
    body: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime]
    expires_at: Mapped[datetime] = mapped_column(index=True)


# --- schedules ---
from schedules import models as _schedules_models  # noqa: E402, F401  (registers its tables)

# --- quality gates ---
from tracker import models_quality as _quality_models  # noqa: E402, F401  (registers its tables)
