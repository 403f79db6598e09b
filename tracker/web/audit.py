"""Audit trail pages (search, CSV and PDF export, signed reviews) and COI certificates."""

from __future__ import annotations

import hashlib
import json
from typing import Any

from flask import Blueprint
from flask import Response
from flask import flash
from flask import redirect
from flask import render_template
from flask import request
from flask import url_for
from flask.typing import ResponseReturnValue
from flask_login import login_required

from tracker import exports
from tracker import queries_audit
from tracker.domain.errors import TrackerError
from tracker.queries_audit import AuditFilters
from tracker.services import certificates
from tracker.services import signoffs
from tracker.services.audit import record_audit
from tracker.web.auth import current_principal
from tracker.web.runtime import runtime

bp = Blueprint("audit", __name__)
# A signed review covers what one person can read: past this, narrow the period or site.
REVIEW_LIMIT = 5000


def _download(body: bytes, mimetype: str, filename: str) -> Response:
    response = Response(body, mimetype=mimetype)
    response.headers["Content-Disposition"] = f'attachment; filename="{filename}"'
    response.headers["Cache-Control"] = "no-store"
    return response


@bp.get("/audit")
@login_required  # type: ignore[untyped-decorator]
def audit_page() -> ResponseReturnValue:
    principal = current_principal()
    filters = AuditFilters.from_args(request.args)
    try:
        with runtime().uow() as uow:
            page = queries_audit.audit_page(uow.session, principal, filters)
            scope = None
            if page["total"] <= REVIEW_LIMIT and signoffs_allowed(principal):
                rows = queries_audit.export_rows(uow.session, principal, filters)
                scope = signoffs.review_scope(filters.described(), rows)
    except TrackerError as exc:
        if exc.reason != "invalid_request":
            raise
        flash(exc.message, "error")
        return redirect(url_for("audit.audit_page"))
    return render_template(
        "cockpit/audit.html", page=page, filters=filters, scope=scope, can_review=scope is not None
    )


def signoffs_allowed(principal: Any) -> bool:
    return bool(principal.is_admin or any(r in signoffs.REVIEW_ROLES for r, _ in principal.grants))


def export_audit(fmt: str, filters: AuditFilters | None = None) -> Response:
    """Build an export of the filtered trail and record that it was made (and its digest)."""
    rt = runtime()
    principal = current_principal()
    filters = filters or AuditFilters.from_args(request.args)
    now = rt.clock.now()
    with rt.uow() as uow:
        rows = queries_audit.export_rows(uow.session, principal, filters)
        if fmt == "csv":
            body = exports.audit_csv(rows)
        else:
            body = exports.audit_pdf(
                rows, filters=filters.described(), generated_at=now, generated_by=principal.name
            )
        record_audit(
            uow.session,
            now=now,
            actor_user_id=principal.user_id,
            action="audit_export",
            entity_type="audit_log",
            entity_id=fmt,
            changes={
                "filters": [None, filters.described()],
                "entries": [None, len(rows)],
                "sha256": [None, hashlib.sha256(body).hexdigest()],
            },
        )
        uow.commit()
    stamp = now.strftime("%Y%m%dT%H%M%SZ")
    mimetype = "text/csv" if fmt == "csv" else "application/pdf"
    return _download(body, mimetype, f"audit-trail-{stamp}.{fmt}")


@bp.get("/audit/export.csv")
@login_required  # type: ignore[untyped-decorator]
def audit_csv() -> ResponseReturnValue:
    return export_audit("csv")


@bp.get("/audit/export.pdf")
@login_required  # type: ignore[untyped-decorator]
def audit_pdf() -> ResponseReturnValue:
    return export_audit("pdf")


@bp.get("/audit/reviews")
@login_required  # type: ignore[untyped-decorator]
def reviews() -> ResponseReturnValue:
    principal = current_principal()
    queries_audit.require_audit_reader(principal)
    with runtime().uow() as uow:
        rows = signoffs.reviews(uow.session)
    return render_template("cockpit/reviews.html", reviews=rows)


@bp.post("/audit/reviews")
@login_required  # type: ignore[untyped-decorator]
def sign_review() -> ResponseReturnValue:
    rt = runtime()
    principal = current_principal()
    filters = AuditFilters.from_args(request.form)
    back = url_for("audit.audit_page", **filters.params())
    try:
        with rt.uow() as uow:
            rows = queries_audit.export_rows(uow.session, principal, filters)
            scope = signoffs.review_scope(filters.described(), rows)
            # Sign only what the reviewer saw: the entries must not have changed meanwhile.
            if scope.digest != request.form.get("digest"):
                flash("New entries arrived since you opened this page; review them first.", "error")
                return redirect(back)
            signoffs.sign_audit_review(
                uow=uow,
                hasher=rt.hasher,
                settings=rt.settings,
                principal=principal,
                scope=scope,
                comment=request.form.get("comment", ""),
                password=request.form.get("password", ""),
                now=rt.clock.now(),
            )
            uow.commit()
    except TrackerError as exc:
        flash(exc.message, "error")
        return redirect(back)
    flash(f"Review of {scope.entries} entries signed.", "info")
    return redirect(url_for("audit.reviews"))


# --- certificates ---------------------------------------------------------------------------


def issue(public_id: str, fmt: str) -> dict[str, Any]:
    rt = runtime()
    with rt.uow() as uow:
        bundle = certificates.issue_certificate(
            uow=uow,
            principal=current_principal(),
            order_public_id=public_id,
            fmt=fmt,
            now=rt.clock.now(),
        )
        uow.commit()
    return bundle


def bundle_response(bundle: dict[str, Any]) -> Response:
    body = json.dumps(bundle, indent=1, ensure_ascii=False, sort_keys=True).encode()
    return _download(body, "application/json", f"coi-certificate-{bundle['manifest']['coi']}.json")


def pdf_response(bundle: dict[str, Any]) -> Response:
    body = exports.certificate_pdf(bundle, verdict=certificates.verdict_of(bundle))
    return _download(body, "application/pdf", f"coi-certificate-{bundle['manifest']['coi']}.pdf")


@bp.get("/orders/<public_id>/certificate.json")
@login_required  # type: ignore[untyped-decorator]
def certificate_json(public_id: str) -> ResponseReturnValue:
    return bundle_response(issue(public_id, "json"))


@bp.get("/orders/<public_id>/certificate.pdf")
@login_required  # type: ignore[untyped-decorator]
def certificate_pdf(public_id: str) -> ResponseReturnValue:
    return pdf_response(issue(public_id, "pdf"))


@bp.post("/orders/<public_id>/certificate/signatures")
@login_required  # type: ignore[untyped-decorator]
def sign_certificate(public_id: str) -> ResponseReturnValue:
    rt = runtime()
    try:
        with rt.uow() as uow:
            signature = certificates.sign_certificate(
                uow=uow,
                hasher=rt.hasher,
                settings=rt.settings,
                principal=current_principal(),
                order_public_id=public_id,
                password=request.form.get("password", ""),
                meaning=request.form.get("meaning", "review"),
                now=rt.clock.now(),
            )
            uow.commit()
            flash(
                f"Chain of identity signed ({signature.meaning}) up to "
                f"event #{signature.record_id.rsplit('@', 1)[1]}.",
                "info",
            )
    except TrackerError as exc:
        flash(exc.message, "error")
    return redirect(url_for("journey.journey", public_id=public_id) + "#chain-h")
