"""What a label says: records (bags, shippers, shipments) mapped to ``labels.data`` values.

The tracker knows the labels package, never the reverse. Everything identifying comes from
the records and the domain rules in ``tracker.domain.label_rules``; nothing here prints.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from datetime import timedelta
from functools import cache
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import func
from sqlalchemy import select
from sqlalchemy.orm import Session
from sqlalchemy.orm import lazyload

from labels import samples
from labels.data import ApheresisBagLabel
from labels.data import CourierJobTicket
from labels.data import CryoshipperLabel
from labels.data import FinalProductLabel
from labels.data import LabelData
from labels.data import LabelDataError
from labels.data import ProcessingLabel
from labels.layouts import supported_sizes
from tracker.adapters.printers import LabelPrinter
from tracker.adapters.printers import ZebraTcpPrinter
from tracker.clock import require_aware
from tracker.config import Settings
from tracker.domain import identifiers
from tracker.domain import label_rules as rules
from tracker.domain.custody import ItemKind
from tracker.domain.errors import TrackerError
from tracker.domain.identifiers import CoiCheckScope
from tracker.domain.label_rules import LabelKind
from tracker.models import CustodyEvent
from tracker.models import Item
from tracker.models import LabelPrint
from tracker.models import Printer
from tracker.models import Shipment
from tracker.models import Site
from tracker.models import TherapyOrder
from tracker.services.principals import Principal
from tracker.services.principals import scope_orders

PrinterFactory = Callable[[Printer], LabelPrinter]
_WEEKDAYS = ("MON", "TUE", "WED", "THU", "FRI", "SAT", "SUN")
_APHERESIS_TEXT = "APHERESIS MNC, AUTOLOGOUS, FOR MANUFACTURING"
_PRODUCT_TEXT = "CAR T CELLS IN SUSPENSION FOR IV INFUSION, CRYOPRESERVED"
_SHIPPER_TEXT = "LN2 DRY VAPOUR SHIPPER - KEEP UPRIGHT - DO NOT X-RAY"


@dataclass(frozen=True)
class LabelContext:
    """The settings label mapping and printing depend on."""

    public_base_url: str
    coi_check_scope: CoiCheckScope
    grai_prefix: str
    printer_timeout: float = 5.0

    @classmethod
    def from_settings(cls, settings: Settings) -> LabelContext:
        return cls(
            public_base_url=settings.public_base_url.rstrip("/"),
            coi_check_scope=settings.coi_check_scope,
            grai_prefix=settings.gs1_grai_prefix,
            printer_timeout=settings.printer_timeout_seconds,
        )

    def item_link(self, token: str) -> str:
        return f"{self.public_base_url}/i/{token}"

    def printer_factory(self) -> PrinterFactory:
        return lambda p: ZebraTcpPrinter(p.host, p.port, timeout=self.printer_timeout)


@dataclass(frozen=True)
class Target:
    """What a label is printed for: an item, or a shipment (courier ticket)."""

    kind: LabelKind
    public_id: str
    site: Site
    item: Item | None = None
    shipment: Shipment | None = None
    order: TherapyOrder | None = None

    @property
    def target_filter(self) -> Any:
        if self.item is not None:
            return LabelPrint.item_id == self.item.id
        assert self.shipment is not None
        return LabelPrint.shipment_id == self.shipment.id


@dataclass(frozen=True)
class BuiltLabel:
    data: LabelData
    barcode_data: str
    din_flags: str | None = None


# --- targets --------------------------------------------------------------------------------


def order_visible(session: Session, principal: Principal, order_id: int) -> TherapyOrder | None:
    """The order if the principal may see it, without eagerly loading all its items."""
    return session.scalar(
        scope_orders(select(TherapyOrder), principal)
        .where(TherapyOrder.id == order_id)
        .options(lazyload(TherapyOrder.items), lazyload(TherapyOrder.shipments))
    )


def resolve_target(
    session: Session,
    principal: Principal,
    kind: LabelKind,
    public_id: str,
    *,
    lock: bool = False,
) -> Target:
    """Load what a label is printed for, if the principal may see it (else ``not_found``).

    With ``lock`` the item or shipment row is locked, so two people printing the same label
    at once are serialised and only one of them prints the original.
    """
    if kind is LabelKind.courier_job:
        stmt = select(Shipment).where(Shipment.public_id == public_id)
        shipment = session.scalar(stmt.with_for_update(of=Shipment) if lock else stmt)
        order = order_visible(session, principal, shipment.order_id) if shipment else None
        if shipment is None or order is None:
            raise TrackerError("not_found", f"no shipment {public_id}")
        return Target(kind, public_id, shipment.origin_site, shipment=shipment, order=order)
    item_stmt = select(Item).where(Item.public_id == public_id)
    item = session.scalar(item_stmt.with_for_update(of=Item) if lock else item_stmt)
    if item is None or ItemKind(item.kind) not in rules.TARGET_KINDS[kind]:
        raise TrackerError("not_found", f"no item {public_id} that takes a {kind} label")
    order = None
    if item.order_id is not None:
        order = order_visible(session, principal, item.order_id)
        if order is None:
            raise TrackerError("not_found", f"no item {public_id}")
    elif item.site_id is None or not principal.can_see_site(item.site_id):
        raise TrackerError("not_found", f"no item {public_id}")
    if item.site is None:
        raise TrackerError("label_data_missing", f"{public_id} is at no site")
    return Target(kind, public_id, item.site, item=item, order=order)


# --- mapping records to label data ----------------------------------------------------------


def _local(value: datetime, site: Site) -> datetime:
    return require_aware(value).astimezone(ZoneInfo(site.timezone))


def _registered_at(session: Session, item: Item) -> datetime:
    at = session.scalar(
        select(CustodyEvent.occurred_at).where(
            CustodyEvent.item_id == item.id, CustodyEvent.event_type == "registered"
        )
    )
    return at or item.created_at


def _set_size(session: Session, item: Item) -> int:
    count = session.scalar(select(func.count(Item.id)).where(Item.din == item.din)) or 1
    return max(count, item.container)


def _product_code(item: Item) -> str:
    try:
        code = identifiers.ProductCode(item.product_code or "")
    except ValueError as exc:
        raise TrackerError("label_data_missing", f"{item.public_id}: product code: {exc}") from exc
    if not code.autologous:
        # Every label we print says FOR AUTOLOGOUS USE ONLY; the code must agree.
        raise TrackerError(
            "label_data_missing", f"product code {code.code} is not coded for autologous use"
        )
    return f"=<{code.code}"


@dataclass(frozen=True)
class _Identity:
    din_grouped: str
    din_check: str
    din_barcode: str
    flags: str
    coi_grouped: str
    coi_check: str
    coi_barcode: str


def _identity(
    session: Session, item: Item, order: TherapyOrder, ctx: LabelContext, *, reprint: bool
) -> _Identity:
    if item.din is None:
        raise TrackerError("label_data_missing", f"{item.public_id} has no DIN")
    flags = rules.din_flags(item.container, _set_size(session, item), reprint=reprint)
    din_grouped, din_check = identifiers.format_din_eye_readable(item.din)
    coi_grouped, coi_check = identifiers.coi_eye_readable(order.coi, scope=ctx.coi_check_scope)
    return _Identity(
        din_grouped=din_grouped,
        din_check=din_check,
        din_barcode=identifiers.din_barcode_data(item.din, flags),
        flags=flags,
        coi_grouped=coi_grouped,
        coi_check=coi_check,
        coi_barcode=identifiers.coi_barcode_data(order.coi),
    )


def _apheresis(
    session: Session, target: Target, ctx: LabelContext, *, reprint: bool, token: str
) -> BuiltLabel:
    item, order = target.item, target.order
    assert item is not None and order is not None
    ident = _identity(session, item, order, ctx, reprint=reprint)
    product = _product_code(item)
    registered = _registered_at(session, item)
    collected = _local(registered, target.site)
    collection = rules.collection_datetime_data(collected)
    structures = [ident.din_barcode, product, collection]
    profile = order.product_profile
    hours = (
        profile.data.get("fresh_stability_hours") if profile.starting_material == "fresh" else None
    )
    expiry_text = expiry_barcode = ""
    if hours:
        # Fresh starting material expires by the hour: DS005 carries the time, since a
        # date alone would be read as 23:59 and stretch the window.
        expires = _local(registered + timedelta(hours=int(hours)), target.site)
        expiry_text = rules.label_datetime_text(expires)
        expiry_barcode = rules.expiry_datetime_data(expires)
        structures.append(expiry_barcode)
    structures.append(ident.coi_barcode)
    data = ApheresisBagLabel(
        din_grouped=ident.din_grouped,
        din_check_char=ident.din_check,
        din_barcode=ident.din_barcode,
        flags=rules.printed_flags(ident.flags),
        product_code_barcode=product,
        product_description=_APHERESIS_TEXT,
        collection_date_text=rules.label_datetime_text(collected),
        collection_date_barcode=collection,
        expiry_date_text=expiry_text,
        expiry_date_barcode=expiry_barcode,
        coi_grouped=ident.coi_grouped,
        coi_check_char=ident.coi_check,
        coi_barcode=ident.coi_barcode,
        datamatrix_data=rules.compound_message(structures),
        qr_url=ctx.item_link(token),
        reprint=reprint,
        template_version=rules.TEMPLATE_VERSIONS[LabelKind.apheresis_bag],
    )
    return BuiltLabel(data, ident.din_barcode, ident.flags)


def _final_product(
    session: Session, target: Target, ctx: LabelContext, *, reprint: bool, token: str
) -> BuiltLabel:
    item, order = target.item, target.order
    assert item is not None and order is not None
    ident = _identity(session, item, order, ctx, reprint=reprint)
    product = _product_code(item)
    profile = order.product_profile
    days = profile.data.get("shelf_life_days")
    if not isinstance(days, int) or days <= 0:
        raise TrackerError(
            "label_data_missing",
            f"product profile {profile.code} v{profile.version} has no shelf_life_days",
        )
    made = _local(_registered_at(session, item), target.site)
    expires = (made + timedelta(days=days)).date()
    expiry = rules.expiry_date_data(expires)
    storage = profile.data.get("storage_max_c")
    data = FinalProductLabel(
        din_grouped=ident.din_grouped,
        din_check_char=ident.din_check,
        din_barcode=ident.din_barcode,
        flags=rules.printed_flags(ident.flags),
        product_code_barcode=product,
        product_description=_PRODUCT_TEXT,
        expiry_date_text=rules.label_day_text(expires),
        expiry_date_barcode=expiry,
        coi_grouped=ident.coi_grouped,
        coi_check_char=ident.coi_check,
        coi_barcode=ident.coi_barcode,
        datamatrix_data=rules.compound_message(
            [ident.din_barcode, product, expiry, ident.coi_barcode]
        ),
        bag_text=f"BAG {item.container} OF {_set_size(session, item)}",
        storage_text=(
            f"STORE IN VAPOUR PHASE OF LIQUID NITROGEN AT {int(storage)} C OR COLDER"
            if isinstance(storage, int | float)
            else ""
        ),
        qr_url=ctx.item_link(token),
        reprint=reprint,
        template_version=rules.TEMPLATE_VERSIONS[LabelKind.final_product],
    )
    return BuiltLabel(data, ident.din_barcode, ident.flags)


def _processing(
    session: Session,
    target: Target,
    ctx: LabelContext,
    *,
    reprint: bool,
    token: str,
    step_text: str | None = None,
) -> BuiltLabel:
    item, order = target.item, target.order
    assert item is not None and order is not None
    ident = _identity(session, item, order, ctx, reprint=reprint)
    default_step = "CELL PROCESSING" if item.kind == ItemKind.apheresis_bag else "FINAL PRODUCT"
    data = ProcessingLabel(
        coi_grouped=ident.coi_grouped,
        coi_check_char=ident.coi_check,
        coi_barcode=ident.coi_barcode,
        step_text=(step_text or default_step).strip().upper(),
        container_text=f"CASSETTE {item.container} OF {_set_size(session, item)}",
        # The cassette's 2-D symbol ties it to its bag (DIN with flags) and to the patient (COI).
        datamatrix_data=rules.compound_message([ident.din_barcode, ident.coi_barcode]),
        reprint=reprint,
        template_version=rules.TEMPLATE_VERSIONS[LabelKind.processing],
    )
    return BuiltLabel(data, ident.din_barcode, ident.flags)


def _charged_at(session: Session, shipper: Item) -> datetime | None:
    if shipper.charged_at is not None:
        return shipper.charged_at
    return session.scalar(
        select(CustodyEvent.occurred_at)
        .where(CustodyEvent.item_id == shipper.id, CustodyEvent.to_state == "charged")
        .order_by(CustodyEvent.seq.desc())
        .limit(1)
    )


def _cryoshipper(
    session: Session, target: Target, ctx: LabelContext, *, reprint: bool, token: str
) -> BuiltLabel:
    shipper = target.item
    assert shipper is not None
    serial = shipper.serial or ""
    head = "0" + ctx.grai_prefix
    elements = [("8003", head + identifiers.gs1_check_digit(head) + serial)]
    hours = shipper.validated_hold_hours or 0
    if hours <= 0:
        raise TrackerError("label_data_missing", f"{shipper.public_id} has no validated hold time")
    charged = _charged_at(session, shipper)
    until_text = "NOT CHARGED - NO HOLD CLOCK"
    if charged is not None:
        until = require_aware(charged) + timedelta(hours=hours)
        elements.append(("7003", f"{until:%y%m%d%H%M}"))  # GS1 gives no zone: we print UTC
        until_text = f"HOLD UNTIL {until:%Y-%m-%d %H:%M} UTC"
    try:
        gs1 = identifiers.gs1_bracketed(elements)
    except ValueError as exc:
        raise TrackerError("label_data_missing", f"shipper serial {serial!r}: {exc}") from exc
    days, rest = divmod(hours, 24)
    data = CryoshipperLabel(
        shipper_serial=serial,
        gs1_data=gs1,
        hold_time_text=f"DRY HOLD TIME {days} DAYS" if not rest else f"DRY HOLD TIME {hours} H",
        hold_until_text=until_text,
        condition_text=_SHIPPER_TEXT,
        reprint=reprint,
        template_version=rules.TEMPLATE_VERSIONS[LabelKind.cryoshipper],
    )
    return BuiltLabel(data, gs1)


def _address(site: Site) -> tuple[str, ...]:
    """A business address: site name, then the address split on commas or lines (4 lines)."""
    parts = [p.strip() for p in site.address.replace("\n", ",").split(",") if p.strip()]
    lines = [site.name, *parts]
    if len(lines) > 4:
        lines = [*lines[:3], ", ".join(lines[3:])]
    return tuple(line.upper() for line in lines)


def _window(value: datetime | None, site: Site, prefix: str = "") -> str:
    if value is None:
        return "TO BE ARRANGED"
    local = _local(value, site)
    day = f"{_WEEKDAYS[local.weekday()]} {rules.label_day_text(local)[:6]}"
    return f"{prefix}{day} {local:%H:%M} {local.tzname()}"


def _courier_job(
    session: Session, target: Target, ctx: LabelContext, *, reprint: bool, token: str
) -> BuiltLabel:
    shipment = target.shipment
    assert shipment is not None
    # The job code is issued with the ticket's first print and reused on every reprint.
    job_code = (
        session.scalar(
            select(LabelPrint.job_code)
            .where(LabelPrint.shipment_id == shipment.id, LabelPrint.job_code.is_not(None))
            .order_by(LabelPrint.id)
            .limit(1)
        )
        or new_job_code()
    )
    # Logistics only: business addresses, windows, last four of shipper and seal. Never the
    # COI, a DIN, the patient or the product (DOMAIN.md section 6, courier messages).
    data = CourierJobTicket(
        job_code=job_code,
        pickup_address=_address(shipment.origin_site),
        dropoff_address=_address(shipment.destination_site),
        pickup_window_text=_window(shipment.planned_pickup_at, shipment.origin_site),
        dropoff_window_text=_window(shipment.planned_delivery_at, shipment.destination_site, "BY "),
        shipper_serial_last4=rules.last4(shipment.shipper.serial if shipment.shipper else None),
        seal_last4=rules.last4(shipment.tamper_seal),
        qr_url=ctx.item_link(token),
        reprint=reprint,
        template_version=rules.TEMPLATE_VERSIONS[LabelKind.courier_job],
    )
    return BuiltLabel(data, job_code)


def build_label(
    session: Session,
    target: Target,
    ctx: LabelContext,
    *,
    reprint: bool,
    token: str,
    step_text: str | None = None,
) -> BuiltLabel:
    """Map a target's records to the label data the rendering library takes."""
    try:
        if target.kind is LabelKind.processing:
            return _processing(
                session, target, ctx, reprint=reprint, token=token, step_text=step_text
            )
        builder = {
            LabelKind.apheresis_bag: _apheresis,
            LabelKind.final_product: _final_product,
            LabelKind.cryoshipper: _cryoshipper,
            LabelKind.courier_job: _courier_job,
        }[target.kind]
        return builder(session, target, ctx, reprint=reprint, token=token)
    except LabelDataError as exc:
        raise TrackerError("label_data_missing", str(exc)) from exc


def new_job_code() -> str:
    """A fresh courier job code (``JOB-`` + 6 random characters + check character)."""
    while True:  # about 30% of bodies have a check character that is never issued
        body = "".join(secrets.choice(identifiers.INTERNAL_ID_ALPHABET) for _ in range(6))
        try:
            return rules.courier_job_code(body)
        except ValueError:
            continue


@cache
def sizes_for(kind: LabelKind) -> tuple[str, ...]:
    """The label sizes the library lays this kind out at (the larger first)."""
    makers: dict[LabelKind, Callable[[], LabelData]] = {
        LabelKind.apheresis_bag: samples.apheresis_bag,
        LabelKind.processing: samples.processing,
        LabelKind.final_product: samples.final_product,
        LabelKind.cryoshipper: samples.cryoshipper,
        LabelKind.courier_job: samples.courier_job,
    }
    return tuple(sorted(supported_sizes(makers[kind]()), reverse=True))
