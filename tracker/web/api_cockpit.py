"""API routes for the cockpit: the dashboard, a journey's merged timeline, shipments and their
temperatures, audit-trail search, export and signed reviews, COI certificates and sign-offs.

Exports and certificates are recorded in the audit trail like the pages'.
"""

from __future__ import annotations

from typing import Any
from typing import Literal

from flask import jsonify
from flask.typing import ResponseReturnValue
from pydantic import Field

from tracker import queries_audit
from tracker import queries_cockpit
from tracker import queries_journey
from tracker.domain.errors import TrackerError
from tracker.queries_audit import AuditFilters
from tracker.queries_cockpit import Filters
from tracker.services import certificates
from tracker.services import signoffs
from tracker.web import audit as audit_pages
from tracker.web.api import SignatureOut
from tracker.web.api import Strict
from tracker.web.api import bp
from tracker.web.api import registry
from tracker.web.auth import current_principal
from tracker.web.openapi import Query
from tracker.web.openapi import UtcDateTime
from tracker.web.runtime import runtime

Day = Field(default="", pattern=r"^([0-9]{4}-[0-9]{2}-[0-9]{2})?$")
Name = Field(default="", max_length=64)


class AuditQuery(Query):
    patient: str = Name
    item: str = Name
    user: str = Name
    site: str = Name
    action: str = Name
    from_: str = Field(default="", alias="from", pattern=r"^([0-9]{4}-[0-9]{2}-[0-9]{2})?$")
    to: str = Day
    page: int = Field(default=1, ge=1, le=1_000_000)

    def filters(self) -> AuditFilters:
        return AuditFilters(
            patient=self.patient,
            item=self.item,
            user=self.user,
            site=self.site,
            action=self.action,
            start=self.from_,
            end=self.to,
            page=self.page,
        )


class AuditEntryOut(Strict):
    id: int
    at: UtcDateTime
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
    # What a signed review of every matching entry binds to (None past the review limit).
    review_digest: str | None


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
    summary="Search the audit trail by patient, item, user, site, action and UTC days",
    response=AuditPageOut,
    query=AuditQuery,
    tag="audit",
)
def audit_entries(params: AuditQuery) -> ResponseReturnValue:
    filters = params.filters()
    principal = current_principal()
    with runtime().uow() as uow:
        page = queries_audit.audit_page(uow.session, principal, filters)
        digest = None
        if page["total"] <= audit_pages.REVIEW_LIMIT:
            rows = queries_audit.export_rows(uow.session, principal, filters)
            digest = signoffs.review_scope(filters.described(), rows).digest
    out = AuditPageOut(
        entries=[AuditEntryOut(**{k: e[k] for k in _AUDIT_FIELDS}) for e in page["entries"]],
        total=page["total"],
        page=page["page"],
        pages=page["pages"],
        review_digest=digest,
    )
    return jsonify(out.model_dump(mode="json"))


@registry.route(
    bp,
    "/audit-entries.csv",
    "GET",
    summary="Export the filtered audit trail as CSV (recorded in the trail)",
    produces=("text/csv",),
    query=AuditQuery,
    tag="audit",
)
def audit_entries_csv(params: AuditQuery) -> ResponseReturnValue:
    return audit_pages.export_audit("csv", params.filters())


@registry.route(
    bp,
    "/audit-entries.pdf",
    "GET",
    summary="Export the filtered audit trail as PDF (recorded in the trail)",
    produces=("application/pdf",),
    query=AuditQuery,
    tag="audit",
)
def audit_entries_pdf(params: AuditQuery) -> ResponseReturnValue:
    return audit_pages.export_audit("pdf", params.filters())


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


class ReviewIn(Strict):
    patient: str = Name
    item: str = Name
    user: str = Name
    site: str = Name
    action: str = Name
    from_: str = Field(default="", alias="from", pattern=r"^([0-9]{4}-[0-9]{2}-[0-9]{2})?$")
    to: str = Day
    digest: str = Field(pattern=r"^[0-9a-f]{64}$")
    comment: str = Field(min_length=1, max_length=2000)
    password: str = Field(min_length=1, max_length=200)


class ReviewOut(Strict):
    record_id: str
    signed_at: UtcDateTime
    printed_name: str
    meaning: str
    filters: str | None
    entries: int | None
    first_at: str | None
    last_at: str | None
    digest: str | None
    comment: str | None
    record_hash: str


class ReviewList(Strict):
    reviews: list[ReviewOut]


@registry.route(
    bp,
    "/audit-reviews",
    "GET",
    summary="Signed reviews of the audit trail, newest first",
    response=ReviewList,
    tag="audit",
)
def audit_reviews() -> ResponseReturnValue:
    queries_audit.require_audit_reader(current_principal())
    with runtime().uow() as uow:
        rows = signoffs.reviews(uow.session)
    return jsonify(ReviewList(reviews=[ReviewOut(**r) for r in rows]).model_dump(mode="json"))


@registry.route(
    bp,
    "/audit-reviews",
    "POST",
    summary="QA signs a review of the entries a filter selects (digest from GET audit-entries)",
    body=ReviewIn,
    response=ReviewOut,
    status=201,
    errors=(423,),
    caller="person",
    tag="audit",
)
def sign_audit_review(payload: ReviewIn) -> ResponseReturnValue:
    rt = runtime()
    principal = current_principal()
    filters = AuditFilters(
        patient=payload.patient,
        item=payload.item,
        user=payload.user,
        site=payload.site,
        action=payload.action,
        start=payload.from_,
        end=payload.to,
    )
    with rt.uow() as uow:
        rows = queries_audit.export_rows(uow.session, principal, filters)
        scope = signoffs.review_scope(filters.described(), rows)
        if scope.digest != payload.digest:
            raise TrackerError("conflict", "the entries changed since that digest; review again")
        signature = signoffs.sign_audit_review(
            uow=uow,
            hasher=rt.hasher,
            settings=rt.settings,
            principal=principal,
            scope=scope,
            comment=payload.comment,
            password=payload.password,
            now=rt.clock.now(),
        )
        uow.commit()
        [row] = [r for r in signoffs.reviews(uow.session) if r["record_id"] == signature.record_id]
    return jsonify(ReviewOut(**row).model_dump(mode="json")), 201


class CertificateSignIn(Strict):
    password: str = Field(min_length=1, max_length=200)
    meaning: Literal["review", "approval"] = "review"


@registry.route(
    bp,
    "/orders/<public_id>/certificate/signatures",
    "POST",
    summary="QA signs the chain of identity as it stands (password re-entered)",
    body=CertificateSignIn,
    response=SignatureOut,
    status=201,
    errors=(423,),
    caller="person",
    tag="audit",
)
def sign_certificate(public_id: str, payload: CertificateSignIn) -> ResponseReturnValue:
    rt = runtime()
    with rt.uow() as uow:
        signature = certificates.sign_certificate(
            uow=uow,
            hasher=rt.hasher,
            settings=rt.settings,
            principal=current_principal(),
            order_public_id=public_id,
            password=payload.password,
            meaning=payload.meaning,
            now=rt.clock.now(),
        )
        uow.commit()
        out = SignatureOut(
            id=signature.id,
            printed_name=signature.printed_name,
            meaning=signature.meaning,
            signed_at=signature.signed_at,
            record_type=signature.record_type,
            record_id=signature.record_id,
            record_hash=signature.record_hash,
        )
    return jsonify(out.model_dump(mode="json")), 201


# --- dashboard, timeline, shipments ----------------------------------------------------------


class DashboardQuery(Query):
    risk: Literal["", "overdue", "at_risk", "on_track", "no_clock"] = ""
    stage: str = Field(default="", max_length=40)
    q: str = Field(default="", max_length=40)
    page: int = Field(default=1, ge=1, le=1_000_000)


class NextDeadlineOut(Strict):
    label: str
    kind: str
    due_at: UtcDateTime
    site: str
    timezone: str
    left: str
    seconds_left: int
    source: Literal["handoff", "plan"]


class JourneyRowOut(Strict):
    public_id: str
    coi: str
    patient: str
    product: str
    product_code: str
    treatment_site: str
    stage: str
    risk: Literal["overdue", "at_risk", "on_track", "no_clock"]
    risk_reason: str
    deadline: NextDeadlineOut | None
    open_alerts: int
    worst_alert: str | None
    last_event_at: UtcDateTime | None
    v2v_day: int | None


class DashboardOut(Strict):
    total: int
    counts: dict[str, int]
    matching: int
    page: int
    pages: int
    journeys: list[JourneyRowOut]
    today: dict[str, Any]
    inbox: dict[str, Any]
    activity: list[dict[str, Any]]


def _journey_row(j: dict[str, Any]) -> JourneyRowOut:
    d = j["deadline"]
    return JourneyRowOut(
        public_id=j["public_id"],
        coi=j["coi"]["value"],
        patient=j["patient"],
        product=j["product"],
        product_code=j["product_code"],
        treatment_site=j["treatment_site"],
        stage=j["stage"],
        risk=j["risk"],
        risk_reason=j["risk_reason"],
        deadline=None
        if d is None
        else NextDeadlineOut(**{k: d[k] for k in NextDeadlineOut.model_fields}),
        open_alerts=j["open_alerts"],
        worst_alert=j["worst_alert"],
        last_event_at=j["last_event_at"],
        v2v_day=j["v2v_day"],
    )


def _plain(value: Any) -> Any:
    """Nested page data as JSON values: COI dicts flattened, times as RFC 3339 text."""
    if isinstance(value, dict):
        if set(value) == {"value", "eye_readable", "check"}:
            return value["value"]
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if hasattr(value, "isoformat"):
        return value.isoformat()
    if hasattr(value, "total_seconds"):
        return value.total_seconds()
    return value


@registry.route(
    bp,
    "/dashboard",
    "GET",
    summary="Active journeys with their clock, today's work and the inbox (the dashboard)",
    response=DashboardOut,
    query=DashboardQuery,
    tag="cockpit",
)
def dashboard(params: DashboardQuery) -> ResponseReturnValue:
    rt = runtime()
    principal = current_principal()
    filters = Filters(risk=params.risk, stage=params.stage, q=params.q, page=params.page)
    with rt.uow() as uow:
        now = rt.clock.now()
        rows = queries_cockpit.active_journeys(uow.session, principal, now=now)
        summary = queries_cockpit.summarize(rows, filters)
        today = queries_cockpit.today_board(uow.session, principal, now=now)
        inbox = queries_cockpit.inbox(uow.session, principal)
        activity = queries_cockpit.recent_activity(uow.session, principal)
    out = DashboardOut(
        total=summary["total"],
        counts=summary["counts"],
        matching=summary["matching"],
        page=summary["page"],
        pages=summary["pages"],
        journeys=[_journey_row(j) for j in summary["rows"]],
        today=_plain(today),
        inbox=_plain(inbox),
        activity=_plain(activity),
    )
    return jsonify(out.model_dump(mode="json"))


class TimelineEntryOut(Strict):
    kind: str
    at: UtcDateTime
    title: str
    failed: bool
    detail: str | None
    site: str | None
    actor: str | None
    seq: int | None
    hash: str | None
    link_ok: bool | None


class ChainVerdictOut(Strict):
    intact: bool
    events: int
    head: str
    breaks: list[dict[str, Any]]


class TimelineOut(Strict):
    order: str
    coi: str
    patient: str
    stage: str
    chain: ChainVerdictOut
    entries: list[TimelineEntryOut]
    plan: dict[str, Any] | None


@registry.route(
    bp,
    "/orders/<public_id>/timeline",
    "GET",
    summary="One timeline of everything recorded for an order, the plan against what happened, "
    "and the hash chain verified now",
    response=TimelineOut,
    tag="cockpit",
)
def order_timeline(public_id: str) -> ResponseReturnValue:
    rt = runtime()
    with rt.uow() as uow:
        data = queries_journey.journey(
            uow.session, current_principal(), public_id, now=rt.clock.now()
        )
    o = data["order"]
    out = TimelineOut(
        order=o["public_id"],
        coi=o["coi"]["value"],
        patient=o["patient"]["public_id"],
        stage=o["stage"],
        chain=ChainVerdictOut(**data["chain"]),
        entries=[
            TimelineEntryOut(
                kind=e["kind"],
                at=e["at"],
                title=e["title"],
                failed=e["failed"],
                detail=e.get("detail"),
                site=e.get("site"),
                actor=e.get("actor"),
                seq=e.get("seq"),
                hash=e.get("hash"),
                link_ok=e.get("link_ok"),
            )
            for e in data["entries"]
        ],
        plan=_plain(data["plan"]),
    )
    return jsonify(out.model_dump(mode="json"))


class ShipmentOut(Strict):
    public_id: str
    state: str
    order: str
    patient: str
    origin: str
    destination: str
    courier: str | None
    shipper: str | None
    tamper_seal: str | None
    air_waybill: str | None
    logger_serial: str | None
    planned_pickup_at: UtcDateTime | None
    planned_delivery_at: UtcDateTime | None
    items: list[str]
    legs: list[dict[str, Any]]
    handoffs: list[dict[str, Any]]
    acks: list[dict[str, Any]]
    alerts: list[dict[str, Any]]
    replies: list[dict[str, Any]]
    temperature: dict[str, Any] | None
    exposure: list[dict[str, Any]]


@registry.route(
    bp,
    "/shipments/<public_id>",
    "GET",
    summary="A shipment: legs, custody hand-offs, courier acknowledgements, temperature summary "
    "and per-bag exposure (durations in seconds)",
    response=ShipmentOut,
    tag="cockpit",
)
def shipment(public_id: str) -> ResponseReturnValue:
    rt = runtime()
    with rt.uow() as uow:
        data = queries_journey.shipment_page(
            uow.session, current_principal(), public_id, now=rt.clock.now()
        )
    fields = {k: data[k] for k in ShipmentOut.model_fields}
    for key in ("legs", "handoffs", "acks", "alerts", "replies", "temperature", "exposure"):
        fields[key] = _plain(fields[key])
    return jsonify(ShipmentOut(**fields).model_dump(mode="json"))


class ThresholdOut(Strict):
    c: float
    kind: str
    level: str
    label: str


class BandOut(Strict):
    start: float
    end: float
    level: str
    kind: str
    ongoing: bool


class TemperaturesOut(Strict):
    logger: str | None
    start: float | None = None
    end: float | None = None
    x: list[float]
    y: list[float]
    thresholds: list[ThresholdOut]
    rules_source: str | None = None
    excursions: list[BandOut]


@registry.route(
    bp,
    "/shipments/<public_id>/temperatures",
    "GET",
    summary="A shipment's logger readings (epoch seconds, °C), rule limits and excursion bands",
    response=TemperaturesOut,
    tag="cockpit",
)
def shipment_temperatures(public_id: str) -> ResponseReturnValue:
    rt = runtime()
    with rt.uow() as uow:
        data = queries_journey.shipment_temperatures(
            uow.session, current_principal(), public_id, now=rt.clock.now()
        )
    return jsonify(TemperaturesOut(**data).model_dump(mode="json"))


class DeviationsQuery(Query):
    show: Literal["open", "all"] = "open"


class DeviationRowOut(Strict):
    public_id: str
    kind: str
    status: str
    description: str
    opened_at: UtcDateTime
    opened_by: str | None
    closed_at: UtcDateTime | None
    closed_by: str | None
    close_reason: str | None
    order: str
    patient: str
    can_close: bool


class DeviationList(Strict):
    deviations: list[DeviationRowOut]


@registry.route(
    bp,
    "/deviations",
    "GET",
    summary="Deviations of the orders you may see (open ones, or all), and which you may close",
    response=DeviationList,
    query=DeviationsQuery,
    tag="cockpit",
)
def deviations(params: DeviationsQuery) -> ResponseReturnValue:
    with runtime().uow() as uow:
        rows = queries_cockpit.deviation_list(
            uow.session, current_principal(), open_only=params.show == "open"
        )
    out = DeviationList(deviations=[DeviationRowOut(**r) for r in rows])
    return jsonify(out.model_dump(mode="json"))
