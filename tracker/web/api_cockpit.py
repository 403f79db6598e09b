"""API routes for the cockpit's own actions: audit-trail search and export, COI certificates.

Query parameters of the audit routes: patient, item, user, site, action, from, to (UTC days,
YYYY-MM-DD) and page. Exports are recorded in the audit trail like the page's.
"""

from __future__ import annotations

from typing import Any

from flask import jsonify
from flask import request
from flask.typing import ResponseReturnValue
from pydantic import AwareDatetime

from tracker import queries_audit
from tracker.queries_audit import AuditFilters
from tracker.web import audit as audit_pages
from tracker.web.api import Strict
from tracker.web.api import bp
from tracker.web.api import registry
from tracker.web.auth import current_principal
from tracker.web.runtime import runtime


class AuditEntryOut(Strict):
    id: int
    at: AwareDatetime
    actor: str | None
    username: str | None
    action: str
    entity_type: str
    entity_id: str
    site: str | None
    changes: dict[str, Any]
    reason: str | None


class AuditPageOut(Strict):
    entries: list[AuditEntryOut]
    total: int
    page: int
    pages: int


class CertificateOut(Strict):
    manifest: dict[str, Any]
    events: list[dict[str, Any]]
    signatures: list[dict[str, Any]]
    manifest_sha256: str


_AUDIT_FIELDS = tuple(AuditEntryOut.model_fields)


@registry.route(
    bp,
    "/audit-entries",
    "GET",
    summary="Search the audit trail (patient, item, user, site, action, from, to, page)",
    response=AuditPageOut,
    tag="audit",
)
def audit_entries() -> ResponseReturnValue:
    filters = AuditFilters.from_args(request.args)
    with runtime().uow() as uow:
        page = queries_audit.audit_page(uow.session, current_principal(), filters)
    out = AuditPageOut(
        entries=[AuditEntryOut(**{k: e[k] for k in _AUDIT_FIELDS}) for e in page["entries"]],
        total=page["total"],
        page=page["page"],
        pages=page["pages"],
    )
    return jsonify(out.model_dump(mode="json"))


@registry.route(
    bp,
    "/audit-entries.csv",
    "GET",
    summary="Export the filtered audit trail as CSV (recorded in the trail)",
    produces=("text/csv",),
    tag="audit",
)
def audit_entries_csv() -> ResponseReturnValue:
    return audit_pages.export_audit("csv")


@registry.route(
    bp,
    "/audit-entries.pdf",
    "GET",
    summary="Export the filtered audit trail as PDF (recorded in the trail)",
    produces=("application/pdf",),
    tag="audit",
)
def audit_entries_pdf() -> ResponseReturnValue:
    return audit_pages.export_audit("pdf")


@registry.route(
    bp,
    "/orders/<public_id>/certificate",
    "GET",
    summary="Chain-of-identity certificate bundle (JSON, verifiable offline)",
    response=CertificateOut,
    tag="audit",
)
def order_certificate(public_id: str) -> ResponseReturnValue:
    return jsonify(audit_pages.issue(public_id, "json"))


@registry.route(
    bp,
    "/orders/<public_id>/certificate.pdf",
    "GET",
    summary="Chain-of-identity certificate as PDF",
    produces=("application/pdf",),
    tag="audit",
)
def order_certificate_pdf(public_id: str) -> ResponseReturnValue:
    return audit_pages.pdf_response(audit_pages.issue(public_id, "pdf"))
