"""Label use cases: print or download a label, record every attempt, and gate "label applied".

``label_data`` says what a label carries; this module renders it with ``labels.render``, sends
ZPL to a site printer or hands back a file, and writes one append-only ``LabelPrint`` row per
print, reprint or failed attempt. The custody step registered -> labelled (label applied)
needs a successful print (:func:`require_label_printed`).
"""

from __future__ import annotations

import hashlib
import io
import secrets
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from typing import Literal

from PIL import Image
from PIL import ImageDraw
from PIL import ImageFont
from sqlalchemy import bindparam
from sqlalchemy import func
from sqlalchemy import select
from sqlalchemy.orm import Session

from labels.data import LabelData
from labels.layouts import LayoutError
from labels.layouts import supported_sizes
from labels.render import render
from labels.render import render_sheet
from labels.render import render_zpl_batch
from tracker.adapters.printers import PrinterError
from tracker.clock import require_aware
from tracker.domain import identifiers
from tracker.domain import label_rules as rules
from tracker.domain.access import CUSTODY_ROLES
from tracker.domain.access import ORDER_ROLES
from tracker.domain.custody import ItemKind
from tracker.domain.errors import TrackerError
from tracker.domain.identifiers import InternalKind
from tracker.domain.label_rules import LabelKind
from tracker.domain.label_rules import PrintStatus
from tracker.models import Item
from tracker.models import LabelPrint
from tracker.models import Printer
from tracker.models import Shipment
from tracker.models import Site
from tracker.models import TherapyOrder
from tracker.services.audit import record_audit
from tracker.services.label_data import LabelContext
from tracker.services.label_data import PrinterFactory
from tracker.services.label_data import Target
from tracker.services.label_data import build_label
from tracker.services.label_data import order_visible
from tracker.services.label_data import resolve_target
from tracker.services.label_data import sizes_for
from tracker.services.principals import Principal
from tracker.services.principals import scope_orders
from tracker.services.printers import list_printers
from tracker.unit_of_work import UnitOfWork

__all__ = ["LabelContext", "print_label", "preview_label", "require_label_printed"]

PreviewFormat = Literal["png", "svg"]

MEDIA_TYPES = {
    "pdf": "application/pdf",
    "png": "image/png",
    "svg": "image/svg+xml",
    "zpl": "application/vnd.zebra.zpl",  # not registered with IANA; Zebra tools use it
}
PRINTER_ROLES = CUSTODY_ROLES | ORDER_ROLES


@dataclass(frozen=True)
class PrintResult:
    """The recorded attempt and what was rendered.

    ``print_id``, ``summary`` and ``error`` are plain copies, still readable after the unit of
    work has closed (the ORM row is expired by then).
    """

    record: LabelPrint
    payload: bytes
    media_type: str
    filename: str
    print_id: str
    summary: str
    error: tuple[str, str] | None = None  # (reason code, message) of a failed attempt

    @property
    def failed(self) -> bool:
        return self.error is not None

    def raise_if_failed(self) -> None:
        """After committing a failed attempt, refuse with the printer's reason code."""
        if self.error is not None:
            reason, message = self.error
            raise TrackerError(reason, f"not printed: {message}", print_id=self.print_id)


# --- the label-applied gate -----------------------------------------------------------------


def _printed_before(session: Session, target: Target) -> bool:
    return (
        session.scalar(
            select(LabelPrint.id)
            .where(
                target.target_filter,
                LabelPrint.label_kind == target.kind.value,
                LabelPrint.status == PrintStatus.done.value,
            )
            .limit(1)
        )
        is not None
    )


def printed_barcodes(session: Session, item: Item) -> list[str]:
    """DIN barcode data (with flags) of every successful print of the item's main label.

    Newest first. A "label applied" confirmation scan can be checked against these: the
    first is the label that should be on the bag now (``…05`` after a reprint).
    """
    kind = rules.APPLIED_LABEL.get(ItemKind(item.kind))
    if kind is None:
        return []
    return list(session.scalars(_Q_PRINTED, {"item": item.id, "kind": kind.value}))


_Q_PRINTED = (
    select(LabelPrint.barcode_data)
    .where(
        LabelPrint.item_id == bindparam("item"),
        LabelPrint.label_kind == bindparam("kind"),
        LabelPrint.status == PrintStatus.done.value,
    )
    .order_by(LabelPrint.requested_at.desc(), LabelPrint.id.desc())
)


def require_label_printed(session: Session, item: Item) -> None:
    """The "label applied" gate: refuse unless the item's label was printed successfully."""
    kind = rules.APPLIED_LABEL.get(ItemKind(item.kind))
    if kind is not None and not printed_barcodes(session, item):
        raise TrackerError(
            "label_not_printed",
            f"{item.public_id} has no successfully printed {kind.value.replace('_', ' ')} label;"
            " print it before confirming it is applied",
        )


# --- rendering, printing, recording ---------------------------------------------------------


@dataclass(frozen=True)
class _Output:
    fmt: str
    size: str
    dpi: int


def _choose_output(
    data: LabelData,
    printer: Printer | None,
    *,
    output: str | None,
    size: str | None,
    dpi: int | None,
    copies: int,
) -> _Output:
    sizes = supported_sizes(data)
    if printer is not None:
        if output not in (None, "zpl"):
            raise TrackerError("invalid_request", "label printers take ZPL; download other formats")
        fmt, dpi = "zpl", printer.dpi
        size = size or (printer.default_size if printer.default_size in sizes else sizes[-1])
    else:
        fmt, dpi = output or "pdf", dpi or 203
        size = size or sizes[-1]
    if fmt not in rules.OUTPUTS:
        raise TrackerError("invalid_request", f"formats are {', '.join(rules.OUTPUTS)}")
    if dpi not in rules.PRINTER_DPIS:
        raise TrackerError("invalid_request", "labels render at 203 or 300 dpi")
    if not 1 <= copies <= rules.MAX_COPIES:
        raise TrackerError("invalid_request", f"print 1 to {rules.MAX_COPIES} copies")
    if size in rules.SHEET_SIZES:
        if fmt != "pdf":
            raise TrackerError("invalid_request", "A4 and Letter sheets are PDF only")
    elif size not in sizes:
        raise TrackerError(
            "invalid_request",
            f"a {type(data).__name__} comes in {', '.join(sizes)} (or A4/Letter PDF sheets)",
        )
    if fmt in ("png", "svg") and copies != 1:
        raise TrackerError("invalid_request", "PNG and SVG hold one label; download one copy")
    if fmt == "pdf" and size in rules.LABEL_SIZES and copies != 1:
        raise TrackerError("invalid_request", "for several copies in one PDF choose A4 or Letter")
    return _Output(fmt, size, dpi)


def _render(data: LabelData, out: _Output, copies: int) -> bytes:
    try:
        if out.fmt == "zpl":
            size = out.size
            assert size in rules.LABEL_SIZES
            return render_zpl_batch([data] * copies, size=size, dpi=out.dpi)  # type: ignore[arg-type]
        if out.size in rules.SHEET_SIZES:
            return render_sheet([data] * copies, out.size, dpi=out.dpi)  # type: ignore[arg-type]
        return render(data, out.fmt, size=out.size, dpi=out.dpi)  # type: ignore[arg-type]
    except LayoutError as exc:
        raise TrackerError("label_data_missing", f"the label does not fit: {exc}") from exc


def _printer_for(session: Session, principal: Principal, public_id: str, site: Site) -> Printer:
    printer = session.scalar(select(Printer).where(Printer.public_id == public_id))
    if printer is None or not principal.can_see_site(printer.site_id):
        raise TrackerError("not_found", f"no printer {public_id}")
    if not printer.active:
        raise TrackerError("invalid_request", f"printer {printer.name} is switched off here")
    if printer.site_id != site.id:
        # The label comes out where the item is, or it could be stuck on the wrong bag.
        raise TrackerError(
            "invalid_request", f"printer {printer.name} is not at {site.name}, where this is"
        )
    return printer


def new_label_token() -> str:
    """An opaque id for one printed label (``TRKLBL…``); its QR link carries only this."""
    return str(identifiers.new_internal_id(InternalKind.label, secrets.token_bytes))


def print_label(
    *,
    uow: UnitOfWork,
    principal: Principal,
    ctx: LabelContext,
    kind: LabelKind,
    target_public_id: str,
    now: datetime,
    printer_public_id: str | None = None,
    output: str | None = None,
    size: str | None = None,
    dpi: int | None = None,
    copies: int = 1,
    reprint: bool = False,
    reason: str | None = None,
    step_text: str | None = None,
    printer_factory: PrinterFactory | None = None,
) -> PrintResult:
    """Print a label on a site printer (ZPL over raw TCP) or render it for download; log it.

    Order of work: lock the target, check the role at its site, check reprint rules, build and
    render, send, then record the attempt. A printer failure is recorded as ``failed`` with
    its reason and returned (commit, then :meth:`PrintResult.raise_if_failed`); it never
    counts as a print. The row lock is held while sending so that concurrent first prints
    cannot both come out as originals; the printer timeout bounds that wait.
    """
    now = require_aware(now)
    session = uow.session
    target = resolve_target(session, principal, kind, target_public_id, lock=True)
    principal.require_role_at(PRINTER_ROLES, target.site.id, "print labels")
    cleaned = rules.decide_reprint(
        printed_before=_printed_before(session, target), reprint=reprint, reason=reason
    )
    printer = (
        _printer_for(session, principal, printer_public_id, target.site)
        if printer_public_id
        else None
    )
    token = new_label_token()
    built = build_label(session, target, ctx, reprint=reprint, token=token, step_text=step_text)
    out = _choose_output(built.data, printer, output=output, size=size, dpi=dpi, copies=copies)
    payload = _render(built.data, out, copies)
    status, error_reason, error_message = PrintStatus.done, None, None
    if printer is not None:
        send = (printer_factory or ctx.printer_factory())(printer)
        try:
            send.send(payload, job_name=f"{printer.name} {token}")
        except PrinterError as exc:
            status, error_reason, error_message = PrintStatus.failed, exc.reason, exc.message
    record = LabelPrint(
        public_id=token,
        label_kind=kind.value,
        item_id=target.item.id if target.item else None,
        shipment_id=target.shipment.id if target.shipment else None,
        order_id=target.order.id if target.order else None,
        site_id=printer.site_id if printer else target.site.id,
        printer_id=printer.id if printer else None,
        output=out.fmt,
        size=out.size,
        dpi=out.dpi,
        copies=copies,
        template_version=rules.TEMPLATE_VERSIONS[kind],
        reprint=reprint,
        reason=cleaned,
        barcode_data=built.barcode_data,
        din_flags=built.din_flags,
        job_code=built.barcode_data if kind is LabelKind.courier_job else None,
        payload_sha256=hashlib.sha256(payload).hexdigest(),
        status=status.value,
        error_reason=error_reason,
        error_message=error_message,
        actor_user_id=principal.user_id,
        device_id=principal.device_id,
        requested_at=now,
    )
    session.add(record)
    session.flush()
    action = "label_reprint" if reprint else "label_print"
    record_audit(
        session,
        now=now,
        actor_user_id=principal.user_id,
        action=action if status is PrintStatus.done else f"{action}_failed",
        entity_type="shipment" if target.shipment else "item",
        entity_id=target.public_id,
        changes={
            "label": [None, token],
            "kind": [None, kind.value],
            "printer": [None, printer.public_id if printer else f"download:{out.fmt}"],
            "copies": [None, copies],
            **({"error": [None, error_reason]} if error_reason else {}),
        },
        reason=cleaned,
        site_id=record.site_id,
    )
    stem = f"{kind.value}-{target.public_id}-{token}".lower()
    where = f"on {printer.name}" if printer else f"as {out.fmt.upper()}"
    summary = f"{'Reprinted' if reprint else 'Printed'} {where}: {token}"
    return PrintResult(
        record,
        payload,
        MEDIA_TYPES[out.fmt],
        f"{stem}.{out.fmt}",
        print_id=token,
        summary=summary,
        error=(error_reason, error_message or "") if error_reason else None,
    )


def preview_label(
    *,
    uow: UnitOfWork,
    principal: Principal,
    ctx: LabelContext,
    kind: LabelKind,
    target_public_id: str,
    fmt: PreviewFormat,
    size: str | None = None,
    dpi: int = 203,
    step_text: str | None = None,
) -> bytes:
    """The label the next print would produce, marked PREVIEW; nothing is recorded.

    The reprint flag follows the history (a printed label previews as its reprint); the QR
    link carries a placeholder, since the real token is issued when the label is printed.
    """
    session = uow.session
    target = resolve_target(session, principal, kind, target_public_id)
    reprint = _printed_before(session, target)
    built = build_label(session, target, ctx, reprint=reprint, token="PREVIEW", step_text=step_text)
    out = _choose_output(built.data, None, output=fmt, size=size, dpi=dpi, copies=1)
    return watermark(_render(built.data, out, 1), fmt)


PREVIEW_MARK = "PREVIEW - NOT A LABEL"


def _mark_size(width: int, height: int) -> int:
    # Wide enough to cross the label, small enough that the whole mark stays on it.
    return max(10, min(height // 5, int(width / (len(PREVIEW_MARK) * 0.68))))


def watermark(image: bytes, fmt: PreviewFormat) -> bytes:
    """Stamp a preview so a screenshot of it is never mistaken for a printed label."""
    if fmt == "svg":
        text = image.decode("utf-8")
        box = text[text.index('viewBox="') + 9 :].split('"', 1)[0].split()
        width, height = int(box[2]), int(box[3])
        font_size = _mark_size(width, height)
        mark = (
            f'<text data-field="preview" x="{width / 2}" y="{height / 2}" text-anchor="middle" '
            f'font-family="sans-serif" font-weight="bold" font-size="{font_size}" '
            f'fill="#b91c1c" fill-opacity="0.45" '
            f'transform="rotate(-18 {width / 2} {height / 2})">{PREVIEW_MARK}</text>'
        )
        return text.replace("</svg>", mark + "</svg>").encode("utf-8")
    base = Image.open(io.BytesIO(image)).convert("RGB")
    layer = Image.new("RGBA", base.size, (0, 0, 0, 0))
    draw = ImageDraw.Draw(layer)
    size = _mark_size(base.width, base.height)
    try:
        font: ImageFont.FreeTypeFont | ImageFont.ImageFont = ImageFont.truetype(
            "DejaVuSans-Bold.ttf", size
        )
    except OSError:
        font = ImageFont.load_default(size)
    middle = (base.width / 2, base.height / 2)
    draw.text(middle, PREVIEW_MARK, font=font, fill=(185, 28, 28, 115), anchor="mm")
    layer = layer.rotate(18, center=middle)
    merged = Image.alpha_composite(base.convert("RGBA"), layer).convert("RGB")
    buffer = io.BytesIO()
    merged.save(buffer, format="PNG")
    return buffer.getvalue()


# --- reads ----------------------------------------------------------------------------------


def print_row(p: LabelPrint) -> dict[str, Any]:
    """One print record as plain values (history tables, API)."""
    return {
        "id": p.public_id,
        "label_kind": p.label_kind,
        "status": p.status,
        "reprint": p.reprint,
        "reason": p.reason,
        "printer": p.printer.name if p.printer else None,
        "printer_id": p.printer.public_id if p.printer else None,
        "output": p.output,
        "size": p.size,
        "dpi": p.dpi,
        "copies": p.copies,
        "template_version": p.template_version,
        "barcode_data": p.barcode_data,
        "din_flags": p.din_flags,
        "error_reason": p.error_reason,
        "error_message": p.error_message,
        "by": p.actor.full_name if p.actor else ("device" if p.device_id else None),
        "at": p.requested_at,
        "site": p.site.name,
        "site_timezone": p.site.timezone,
    }


def label_history(
    session: Session, principal: Principal, kind: LabelKind, target_public_id: str
) -> list[dict[str, Any]]:
    """Every print and failed attempt of one label, newest first."""
    target = resolve_target(session, principal, kind, target_public_id)
    rows = session.scalars(
        select(LabelPrint)
        .where(target.target_filter, LabelPrint.label_kind == kind.value)
        .order_by(LabelPrint.requested_at.desc(), LabelPrint.id.desc())
    )
    return [print_row(p) for p in rows]


def target_history(
    session: Session,
    principal: Principal,
    *,
    item_public_id: str | None = None,
    shipment_public_id: str | None = None,
) -> list[dict[str, Any]]:
    """Every label print for one item (all its label kinds) or one shipment, newest first."""
    if shipment_public_id is not None:
        target = resolve_target(session, principal, LabelKind.courier_job, shipment_public_id)
    else:
        item = session.scalar(select(Item).where(Item.public_id == item_public_id))
        if item is None:
            raise TrackerError("not_found", f"no item {item_public_id}")
        target = resolve_target(session, principal, label_kinds_for(item.kind)[0], item.public_id)
    rows = session.scalars(
        select(LabelPrint)
        .where(target.target_filter)
        .order_by(LabelPrint.requested_at.desc(), LabelPrint.id.desc())
    )
    return [print_row(p) for p in rows]


def label_kinds_for(item_kind: str) -> list[LabelKind]:
    """The labels an item or shipment can have, main label first."""
    kind = ItemKind(item_kind)
    found = [k for k, kinds in rules.TARGET_KINDS.items() if kind in kinds]
    main = rules.APPLIED_LABEL.get(kind)
    return sorted(found, key=lambda k: k is not main)


def resolve_link(session: Session, principal: Principal, token: str) -> tuple[str, str]:
    """Where a label's QR link leads: (order public id, anchor). Opaque token in, 404 if unseen."""
    record = session.scalar(select(LabelPrint).where(LabelPrint.public_id == token))
    if record is None or record.order_id is None:
        raise TrackerError("not_found", "no such label")
    order = order_visible(session, principal, record.order_id)
    if order is None:
        raise TrackerError("not_found", "no such label")
    if record.shipment_id is not None:
        shipment = session.get(Shipment, record.shipment_id)
        return order.public_id, f"shipment-{shipment.public_id if shipment else ''}"
    item = session.get(Item, record.item_id)
    return order.public_id, f"item-{item.public_id if item else ''}"


def label_overview(session: Session, principal: Principal, *, limit: int = 200) -> dict[str, Any]:
    """Orders (newest first) with their bags and shipments, and shippers, with print counts."""
    orders = list(
        session.scalars(
            scope_orders(select(TherapyOrder), principal)
            .order_by(TherapyOrder.id.desc())
            .limit(limit)
        )
    )
    sites = principal.site_ids
    shipper_stmt = select(Item).where(Item.kind == ItemKind.cryoshipper.value).order_by(Item.id)
    if sites is not None:
        shipper_stmt = shipper_stmt.where(Item.site_id.in_(sites))
    shippers = list(session.scalars(shipper_stmt))
    item_ids = [i.id for o in orders for i in o.items] + [s.id for s in shippers]
    shipment_ids = [s.id for o in orders for s in o.shipments]
    counts: dict[tuple[str, int | None, str], tuple[int, datetime]] = {}
    stmt = (
        select(
            LabelPrint.item_id,
            LabelPrint.shipment_id,
            LabelPrint.label_kind,
            func.count(LabelPrint.id),
            func.max(LabelPrint.requested_at),
        )
        .where(
            LabelPrint.status == PrintStatus.done.value,
            LabelPrint.item_id.in_(item_ids) | LabelPrint.shipment_id.in_(shipment_ids),
        )
        .group_by(LabelPrint.item_id, LabelPrint.shipment_id, LabelPrint.label_kind)
    )
    for item_id, shipment_id, kind, count, last in session.execute(stmt):
        key = ("item", item_id, kind) if item_id else ("shipment", shipment_id, kind)
        counts[key] = (count, last)

    def entry(scope: str, row_id: int, kind: LabelKind, main: bool = False) -> dict[str, Any]:
        count, last = counts.get((scope, row_id, kind.value), (0, None))
        return {"kind": kind.value, "prints": count, "last_at": last, "main": main}

    def item_row(item: Item) -> dict[str, Any]:
        din = identifiers.format_din_eye_readable(item.din) if item.din else None
        return {
            "public_id": item.public_id,
            "kind": item.kind,
            "state": item.state,
            "container": item.container,
            "din": din[0] if din else None,
            "din_check": din[1] if din else None,
            "serial": item.serial,
            "site": item.site.name if item.site else None,
            "labels": [
                entry("item", item.id, k, k is rules.APPLIED_LABEL.get(ItemKind(item.kind)))
                for k in label_kinds_for(item.kind)
            ],
        }

    return {
        "orders": [
            {
                "public_id": order.public_id,
                "coi": identifiers.coi_eye_readable(order.coi)[0],
                "coi_check": identifiers.coi_eye_readable(order.coi)[1],
                "items": [item_row(i) for i in order.items],
                "shipments": [
                    {
                        "public_id": s.public_id,
                        "state": s.state,
                        "route": f"{s.origin_site.name} → {s.destination_site.name}",
                        "labels": [entry("shipment", s.id, LabelKind.courier_job)],
                    }
                    for s in order.shipments
                ],
            }
            for order in orders
            if order.items or order.shipments
        ],
        "shippers": [item_row(s) for s in shippers],
    }


def label_page(
    session: Session, principal: Principal, kind: LabelKind, target_public_id: str
) -> dict[str, Any]:
    """What the label page shows: the target, whether it was printed, printers, history."""
    target = resolve_target(session, principal, kind, target_public_id)
    printed = _printed_before(session, target)
    item, order = target.item, target.order
    din = identifiers.format_din_eye_readable(item.din) if item and item.din else None
    coi = identifiers.coi_eye_readable(order.coi) if order else None
    sizes = list(sizes_for(kind))
    return {
        "kind": kind.value,
        "target": target.public_id,
        "target_kind": item.kind if item else "shipment",
        "state": item.state if item else (target.shipment.state if target.shipment else ""),
        "site": target.site.name,
        "order": order.public_id if order else None,
        "coi": coi,
        "din": din,
        "serial": item.serial if item else None,
        "printed_before": printed,
        "can_print": principal.is_admin or principal.has_role_at(PRINTER_ROLES, target.site.id),
        "printers": [
            {"public_id": p.public_id, "name": p.name, "host": p.host, "port": p.port, "dpi": p.dpi}
            for p in list_printers(session, principal, site_id=target.site.id)
            if p.active
        ],
        "sizes": sizes,
        "default_size": sizes[-1],
        "history": label_history(session, principal, kind, target_public_id),
    }
