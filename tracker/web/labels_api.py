"""Label API under /api/v1: printers, print, download, print history.

Documented in the same OpenAPI registry as the rest of the API. A printer that fails answers
502 with its reason code and the id of the failed attempt, which is on record.
"""

from __future__ import annotations

from typing import Any
from typing import Literal

from flask import Blueprint
from flask import Response
from flask import jsonify
from flask.typing import ResponseReturnValue
from pydantic import Field

from tracker.domain.errors import TrackerError
from tracker.domain.label_rules import MAX_COPIES
from tracker.domain.label_rules import LabelKind
from tracker.services import labels
from tracker.services import printers
from tracker.web.api import guard
from tracker.web.api import registry
from tracker.web.auth import current_principal
from tracker.web.errors import error_response
from tracker.web.openapi import Query
from tracker.web.openapi import Strict
from tracker.web.openapi import UtcDateTime
from tracker.web.runtime import runtime

bp = Blueprint("labels_api", __name__, url_prefix="/api/v1")
guard(bp)

PublicId = Field(min_length=1, max_length=32)
StepText = Field(default=None, min_length=1, max_length=24, pattern=r"^[A-Za-z0-9 ./()-]+$")


class PrinterIn(Strict):
    site: str = Field(min_length=1, max_length=32)
    name: str = Field(min_length=1, max_length=120)
    host: str = Field(min_length=1, max_length=255, pattern=r"^\S+$")
    port: int = Field(default=9100, ge=1, le=65535)
    dpi: Literal[203, 300] = 203
    default_size: Literal["2x1", "4x2", "4x6"] = "4x2"


class PrinterPatch(Strict):
    name: str | None = Field(default=None, min_length=1, max_length=120)
    host: str | None = Field(default=None, min_length=1, max_length=255, pattern=r"^\S+$")
    port: int | None = Field(default=None, ge=1, le=65535)
    dpi: Literal[203, 300] | None = None
    default_size: Literal["2x1", "4x2", "4x6"] | None = None
    active: bool | None = None


class PrinterOut(Strict):
    public_id: str
    site: str
    name: str
    host: str
    port: int
    dpi: int
    default_size: str
    active: bool


class PrinterList(Strict):
    printers: list[PrinterOut]


class PrintIn(Strict):
    kind: LabelKind
    target: str = PublicId
    printer: str = PublicId
    size: Literal["2x1", "4x2", "4x6"] | None = None
    copies: int = Field(default=1, ge=1, le=MAX_COPIES)
    reprint: bool = False
    reason: str | None = Field(default=None, max_length=2000)
    step: str | None = StepText


class DownloadIn(Strict):
    kind: LabelKind
    target: str = PublicId
    format: Literal["pdf", "zpl", "png", "svg"] = "pdf"
    size: Literal["2x1", "4x2", "4x6", "a4", "letter"] | None = None
    dpi: Literal[203, 300] = 203
    copies: int = Field(default=1, ge=1, le=MAX_COPIES)
    reprint: bool = False
    reason: str | None = Field(default=None, max_length=2000)
    step: str | None = StepText


class PrintOut(Strict):
    id: str
    label_kind: str
    status: Literal["done", "failed"]
    reprint: bool
    reason: str | None
    printer: str | None
    printer_id: str | None
    output: str
    size: str
    dpi: int
    copies: int
    template_version: str
    barcode_data: str
    din_flags: str | None
    error_reason: str | None
    error_message: str | None
    by: str | None
    at: UtcDateTime
    site: str


class PrintList(Strict):
    prints: list[PrintOut]


class LabelCountOut(Strict):
    kind: str
    prints: int
    last_at: UtcDateTime | None
    main: bool


class LabelledItemOut(Strict):
    public_id: str
    kind: str
    state: str
    container: int
    din: str | None
    din_check: str | None
    serial: str | None
    site: str | None
    labels: list[LabelCountOut]


class LabelledShipmentOut(Strict):
    public_id: str
    state: str
    route: str
    labels: list[LabelCountOut]


class LabelledOrderOut(Strict):
    public_id: str
    coi: str
    coi_check: str
    items: list[LabelledItemOut]
    shipments: list[LabelledShipmentOut]


class LabelOverviewOut(Strict):
    orders: list[LabelledOrderOut]
    shippers: list[LabelledItemOut]


class LabelPrinterOut(Strict):
    public_id: str
    name: str
    host: str
    port: int
    dpi: int


class LabelPageOut(Strict):
    kind: str
    target: str
    target_kind: str
    state: str
    site: str
    order: str | None
    coi: tuple[str, str] | None = Field(description="Eye-readable COI and its check character.")
    din: tuple[str, str] | None = Field(description="Eye-readable DIN and its check character.")
    serial: str | None
    printed_before: bool
    can_print: bool
    printers: list[LabelPrinterOut]
    sizes: list[str]
    default_size: str
    history: list[PrintOut]


class PreviewQuery(Query):
    format: Literal["png", "svg"] = "png"
    size: Literal["2x1", "4x2", "4x6"] | None = None
    dpi: Literal[203, 300] = 203


class LinkOut(Strict):
    order: str
    anchor: str = Field(description="The item or shipment on the order page (item-<id>).")


def _printer_out(p: Any) -> dict[str, Any]:
    return PrinterOut(
        public_id=p.public_id,
        site=p.site.code,
        name=p.name,
        host=p.host,
        port=p.port,
        dpi=p.dpi,
        default_size=p.default_size,
        active=p.active,
    ).model_dump()


def _print_out(row: dict[str, Any]) -> dict[str, Any]:
    fields = {k: row[k] for k in PrintOut.model_fields}
    return PrintOut(**fields).model_dump(mode="json")


@registry.route(
    bp, "/printers", "GET", summary="Label printers at your sites", response=PrinterList
)
def list_printers() -> ResponseReturnValue:
    with runtime().uow() as uow:
        rows = [_printer_out(p) for p in printers.list_printers(uow.session, current_principal())]
    return jsonify({"printers": rows})


@registry.route(
    bp,
    "/printers",
    "POST",
    summary="Add a label printer at a site (administrators)",
    body=PrinterIn,
    response=PrinterOut,
    status=201,
    errors=(400, 401, 403, 404, 409),
)
def create_printer(payload: PrinterIn) -> ResponseReturnValue:
    rt = runtime()
    with rt.uow() as uow:
        printer = printers.create_printer(
            uow=uow,
            principal=current_principal(),
            site_code=payload.site,
            name=payload.name,
            host=payload.host,
            port=payload.port,
            dpi=payload.dpi,
            default_size=payload.default_size,
            now=rt.clock.now(),
        )
        uow.commit()
        out = _printer_out(printer)
    return jsonify(out), 201


@registry.route(
    bp,
    "/printers/<public_id>",
    "PATCH",
    summary="Change a label printer (administrators)",
    body=PrinterPatch,
    response=PrinterOut,
    errors=(400, 401, 403, 404, 409),
)
def update_printer(public_id: str, payload: PrinterPatch) -> ResponseReturnValue:
    rt = runtime()
    with rt.uow() as uow:
        printer = printers.update_printer(
            uow=uow,
            principal=current_principal(),
            printer_public_id=public_id,
            changes=payload.model_dump(exclude_none=True),
            now=rt.clock.now(),
        )
        uow.commit()
        out = _printer_out(printer)
    return jsonify(out)


@registry.route(
    bp,
    "/labels/print",
    "POST",
    summary="Print a label on a site printer (ZPL over raw TCP); every attempt is recorded",
    body=PrintIn,
    response=PrintOut,
    status=201,
    errors=(400, 401, 403, 404, 409, 502),
)
def print_label(payload: PrintIn) -> ResponseReturnValue:
    rt = runtime()
    with rt.uow() as uow:
        result = labels.print_label(
            uow=uow,
            principal=current_principal(),
            ctx=labels.LabelContext.from_settings(rt.settings),
            kind=payload.kind,
            target_public_id=payload.target,
            printer_public_id=payload.printer,
            size=payload.size,
            copies=payload.copies,
            reprint=payload.reprint,
            reason=payload.reason,
            step_text=payload.step,
            now=rt.clock.now(),
        )
        uow.commit()  # a failed attempt is evidence too
        if result.error is not None:
            reason, message = result.error
            return error_response(reason, f"not printed: {message}", print_id=result.print_id)
        out = _print_out(labels.print_row(result.record))
    return jsonify(out), 201


@registry.route(
    bp,
    "/labels/download",
    "POST",
    summary="Render a label as a file (PDF, ZPL, PNG or SVG); recorded as a print",
    body=DownloadIn,
    status=201,
    errors=(400, 401, 403, 404, 409),
    produces=tuple(labels.MEDIA_TYPES.values()),
)
def download_label(payload: DownloadIn) -> ResponseReturnValue:
    rt = runtime()
    with rt.uow() as uow:
        result = labels.print_label(
            uow=uow,
            principal=current_principal(),
            ctx=labels.LabelContext.from_settings(rt.settings),
            kind=payload.kind,
            target_public_id=payload.target,
            output=payload.format,
            size=payload.size,
            dpi=payload.dpi,
            copies=payload.copies,
            reprint=payload.reprint,
            reason=payload.reason,
            step_text=payload.step,
            now=rt.clock.now(),
        )
        uow.commit()
    return file_response(result, status=201)


def file_response(result: labels.PrintResult, *, status: int = 200) -> Response:
    """A rendered label as an attachment, tagged with its print record's id."""
    response = Response(result.payload, status=status, mimetype=result.media_type)
    response.headers["Content-Disposition"] = f'attachment; filename="{result.filename}"'
    response.headers["X-Label-Print-Id"] = result.print_id
    response.headers["Cache-Control"] = "no-store"
    return response


@registry.route(
    bp,
    "/items/<public_id>/label-prints",
    "GET",
    summary="Every print, reprint and failed attempt of an item's labels",
    response=PrintList,
)
def item_prints(public_id: str) -> ResponseReturnValue:
    with runtime().uow() as uow:
        rows = labels.target_history(uow.session, current_principal(), item_public_id=public_id)
    return jsonify({"prints": [_print_out(r) for r in rows]})


@registry.route(
    bp,
    "/shipments/<public_id>/label-prints",
    "GET",
    summary="Every print of a shipment's courier job ticket",
    response=PrintList,
)
def shipment_prints(public_id: str) -> ResponseReturnValue:
    with runtime().uow() as uow:
        rows = labels.target_history(uow.session, current_principal(), shipment_public_id=public_id)
    return jsonify({"prints": [_print_out(r) for r in rows]})


@registry.route(
    bp,
    "/labels",
    "GET",
    summary="Every bag, shipment and cryoshipper you can see, with its label print counts",
    response=LabelOverviewOut,
)
def label_overview() -> ResponseReturnValue:
    with runtime().uow() as uow:
        overview = labels.label_overview(uow.session, current_principal())
    out = LabelOverviewOut.model_validate(overview, strict=False)
    return jsonify(out.model_dump(mode="json"))


@registry.route(
    bp,
    "/labels/<kind>/<target>",
    "GET",
    summary="One label: its target, whether it was printed, printers, sizes and history",
    response=LabelPageOut,
)
def label_page(kind: str, target: str) -> ResponseReturnValue:
    with runtime().uow() as uow:
        page = labels.label_page(uow.session, current_principal(), _label_kind(kind), target)
    page["history"] = [{k: h[k] for k in PrintOut.model_fields} for h in page["history"]]
    return jsonify(LabelPageOut.model_validate(page, strict=False).model_dump(mode="json"))


@registry.route(
    bp,
    "/labels/<kind>/<target>/preview",
    "GET",
    summary="The label the next print would produce, stamped PREVIEW (nothing is recorded)",
    query=PreviewQuery,
    produces=(labels.MEDIA_TYPES["png"], labels.MEDIA_TYPES["svg"]),
)
def label_preview(kind: str, target: str, params: PreviewQuery) -> ResponseReturnValue:
    rt = runtime()
    with rt.uow() as uow:
        image = labels.preview_label(
            uow=uow,
            principal=current_principal(),
            ctx=labels.LabelContext.from_settings(rt.settings),
            kind=_label_kind(kind),
            target_public_id=target,
            fmt=params.format,
            size=params.size,
            dpi=params.dpi,
        )
    response = Response(image, mimetype=labels.MEDIA_TYPES[params.format])
    response.headers["Cache-Control"] = "no-store"
    return response


@registry.route(
    bp,
    "/label-links/<token>",
    "GET",
    summary="Where a label's QR code leads: the order and the item or shipment on it",
    response=LinkOut,
)
def label_link(token: str) -> ResponseReturnValue:
    with runtime().uow() as uow:
        order, anchor = labels.resolve_link(uow.session, current_principal(), token)
    return jsonify(LinkOut(order=order, anchor=anchor).model_dump())


def _label_kind(value: str) -> LabelKind:
    try:
        return LabelKind(value)
    except ValueError:
        raise TrackerError("not_found", f"no label kind {value!r}") from None
