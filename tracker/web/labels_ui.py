"""Labels pages: overview, one label (preview, print, reprint with reason, history), QR links."""

from __future__ import annotations

from typing import Any

from flask import Blueprint
from flask import Response
from flask import abort
from flask import redirect
from flask import render_template
from flask import request
from flask import url_for
from flask.typing import ResponseReturnValue
from flask_login import login_required

from tracker.domain.errors import TrackerError
from tracker.domain.label_rules import LabelKind
from tracker.services import labels
from tracker.web.auth import current_principal
from tracker.web.errors import status_for
from tracker.web.labels_api import file_response
from tracker.web.runtime import runtime

bp = Blueprint("labels", __name__)

KIND_TITLES = {
    LabelKind.apheresis_bag: "Apheresis bag label",
    LabelKind.processing: "Cell-processing (cassette) label",
    LabelKind.final_product: "Final product bag label",
    LabelKind.cryoshipper: "Cryoshipper label",
    LabelKind.courier_job: "Courier job ticket",
}


@bp.app_context_processor
def _titles() -> dict[str, Any]:
    return {"label_titles": {k.value: v for k, v in KIND_TITLES.items()}}


def _kind(value: str) -> LabelKind:
    try:
        return LabelKind(value)
    except ValueError:
        abort(404)


def _int_or_none(value: str | None) -> int | None:
    try:
        return int(value) if value else None
    except ValueError:
        raise TrackerError("invalid_request", f"not a number: {value!r}") from None


@bp.get("/labels")
@login_required  # type: ignore[untyped-decorator]
def index() -> ResponseReturnValue:
    with runtime().uow() as uow:
        overview = labels.label_overview(uow.session, current_principal())
    return render_template("labels.html", overview=overview)


def _page(kind: LabelKind, target: str) -> dict[str, Any]:
    with runtime().uow() as uow:
        return labels.label_page(uow.session, current_principal(), kind, target)


@bp.get("/labels/<kind>/<target>")
@login_required  # type: ignore[untyped-decorator]
def label(kind: str, target: str) -> ResponseReturnValue:
    page = _page(_kind(kind), target)
    size = request.args.get("size")
    page["preview_size"] = size if size in page["sizes"] else page["default_size"]
    return render_template("label.html", page=page)


def _answer(
    kind: LabelKind, target: str, message: dict[str, str], status: int
) -> ResponseReturnValue:
    """htmx gets the panel back (200, so it is swapped in); a plain form gets the whole page."""
    page = _page(kind, target)
    page["preview_size"] = request.form.get("size") or page["default_size"]
    if page["preview_size"] not in page["sizes"]:
        page["preview_size"] = page["default_size"]
    if request.headers.get("HX-Request"):
        return render_template("_label_panel.html", page=page, message=message)
    return render_template("label.html", page=page, message=message), status


@bp.post("/labels/<kind>/<target>/print")
@login_required  # type: ignore[untyped-decorator]
def print_label(kind: str, target: str) -> ResponseReturnValue:
    label_kind = _kind(kind)
    rt = runtime()
    form = request.form
    try:
        with rt.uow() as uow:
            result = labels.print_label(
                uow=uow,
                principal=current_principal(),
                ctx=labels.LabelContext.from_settings(rt.settings),
                kind=label_kind,
                target_public_id=target,
                printer_public_id=form.get("printer") or None,
                size=form.get("size") or None,
                copies=_int_or_none(form.get("copies")) or 1,
                reprint=form.get("reprint") == "1",
                reason=form.get("reason"),
                step_text=form.get("step") or None,
                now=rt.clock.now(),
            )
            uow.commit()  # a failed attempt is recorded too
        result.raise_if_failed()
    except TrackerError as exc:
        message = {"kind": "error", "reason": exc.reason, "text": exc.message}
        return _answer(label_kind, target, message, status_for(exc.reason))
    return _answer(label_kind, target, {"kind": "ok", "reason": "ok", "text": result.summary}, 200)


@bp.post("/labels/<kind>/<target>/download")
@login_required  # type: ignore[untyped-decorator]
def download(kind: str, target: str) -> ResponseReturnValue:
    label_kind = _kind(kind)
    rt = runtime()
    form = request.form
    try:
        with rt.uow() as uow:
            result = labels.print_label(
                uow=uow,
                principal=current_principal(),
                ctx=labels.LabelContext.from_settings(rt.settings),
                kind=label_kind,
                target_public_id=target,
                output=form.get("format") or "pdf",
                size=form.get("size") or None,
                dpi=_int_or_none(form.get("dpi")) or 203,
                copies=_int_or_none(form.get("copies")) or 1,
                reprint=form.get("reprint") == "1",
                reason=form.get("reason"),
                step_text=form.get("step") or None,
                now=rt.clock.now(),
            )
            uow.commit()
    except TrackerError as exc:
        message = {"kind": "error", "reason": exc.reason, "text": exc.message}
        return _answer(label_kind, target, message, status_for(exc.reason))
    return file_response(result)


@bp.get("/labels/<kind>/<target>/preview.<fmt>")
@login_required  # type: ignore[untyped-decorator]
def preview(kind: str, target: str, fmt: str) -> ResponseReturnValue:
    if fmt not in ("png", "svg"):
        abort(404)
    rt = runtime()
    with rt.uow() as uow:
        image = labels.preview_label(
            uow=uow,
            principal=current_principal(),
            ctx=labels.LabelContext.from_settings(rt.settings),
            kind=_kind(kind),
            target_public_id=target,
            fmt="png" if fmt == "png" else "svg",
            size=request.args.get("size") or None,
            dpi=_int_or_none(request.args.get("dpi")) or 203,
        )
    response = Response(image, mimetype=labels.MEDIA_TYPES[fmt])
    # A preview reflects the print history (a printed label previews as its reprint).
    response.headers["Cache-Control"] = "no-store"
    return response


@bp.get("/i/<token>")
@login_required  # type: ignore[untyped-decorator]
def link(token: str) -> ResponseReturnValue:
    """Where a label's QR code leads: the item's place on its order page, after login."""
    with runtime().uow() as uow:
        order, anchor = labels.resolve_link(uow.session, current_principal(), token)
    return redirect(url_for("ui.order", public_id=order) + f"#{anchor}")
