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
