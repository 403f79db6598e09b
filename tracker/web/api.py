"""JSON API under /api/v1. Views parse, call one service, and shape the answer."""

from __future__ import annotations

from datetime import date
from typing import Any
from typing import Literal

from flask import Blueprint
from flask import jsonify
from flask import request
from flask.typing import ResponseReturnValue
from pydantic import BaseModel
from pydantic import ConfigDict
from pydantic import Field

from tracker import __version__
from tracker import queries
from tracker.domain import identifiers
from tracker.domain.custody import CustodyState
from tracker.domain.custody import ItemKind
from tracker.domain.errors import TrackerError
from tracker.domain.signatures import SIGNATURE_MEANINGS
from tracker.services import auth as auth_service
from tracker.services import custody
from tracker.services import fhir_export
from tracker.services import orders
from tracker.web import idempotency
from tracker.web.auth import csrf
from tracker.web.auth import current_principal
from tracker.web.openapi import Registry
from tracker.web.openapi import Strict as Strict  # re-exported: API modules import it from here
from tracker.web.openapi import UtcDateTime
from tracker.web.runtime import runtime


def _authenticate_and_check_csrf() -> None:
    principal = current_principal()
    # Browser sessions must prove the request came from our pages; device tokens are
    # not ambient credentials, so they need no CSRF token.
    if principal.device_id is None and request.method not in ("GET", "HEAD", "OPTIONS"):
        csrf.protect()


def guard(blueprint: Blueprint) -> None:
    """The API's one gate, for every blueprint under /api/v1: a session (with its CSRF token
    on writes) or a device token. The app-wide CSRF check is lifted for the blueprint, since
    this gate makes it (once, and not for device tokens)."""
    csrf.exempt(blueprint)
    blueprint.before_request(_authenticate_and_check_csrf)


bp = Blueprint("api", __name__, url_prefix="/api/v1")
registry = Registry()
guard(bp)


Text = Field(min_length=1, max_length=200)


class PatientIn(Strict):
    treatment_site: str = Field(min_length=1, max_length=32)
    given_name: str = Text
    family_name: str = Text
    date_of_birth: date
    mrn: str = Field(min_length=1, max_length=64)


class PatientOut(Strict):
    public_id: str
    wristband_code: str


class OrderIn(Strict):
    patient: str = Field(min_length=1, max_length=32)
    product: str = Field(min_length=1, max_length=32)
    collection_site: str = Field(min_length=1, max_length=32)
    manufacturing_site: str = Field(min_length=1, max_length=32)


class CoiOut(Strict):
    value: str
    eye_readable: str
    check: str


class OrderOut(Strict):
    public_id: str
    coi: CoiOut
    status: str


class OrderSummary(Strict):
    public_id: str
    coi: CoiOut
    patient: str
    product: str
    stage: str
    status: str


class OrderList(Strict):
    orders: list[OrderSummary]


class BagIn(Strict):
    kind: Literal["apheresis_bag", "final_product_bag"]
    din: str | None = Field(default=None, pattern=r"^[A-NP-Z1-9][0-9]{12}$")
    container: int = Field(default=1, ge=1, le=9)
    parent: str | None = None
    lot: str | None = Field(default=None, max_length=32)
    site: str | None = None
    occurred_at: UtcDateTime | None = None


class ItemOut(Strict):
    public_id: str
    kind: str
    state: str
    din: str | None = None


class TransitionIn(Strict):
    to_state: CustodyState
    reason: str | None = Field(default=None, max_length=2000)
    occurred_at: UtcDateTime | None = None
    site: str | None = None


class EventOut(Strict):
    id: int
    seq: int
    event_type: str
    from_state: str | None
    to_state: str | None
    hash: str


class ShipmentIn(Strict):
    order: str
    origin: str
    destination: str
    items: list[str] = Field(min_length=1, max_length=50)
    shipper: str | None = None
    tamper_seal: str | None = Field(default=None, max_length=64)
    air_waybill: str | None = Field(default=None, max_length=64)
    logger_serial: str | None = Field(default=None, max_length=64)
    planned_pickup_at: UtcDateTime | None = None
    planned_delivery_at: UtcDateTime | None = None


class ShipmentOut(Strict):
    public_id: str
    state: str
    items: list[str]


class ShipperIn(Strict):
    serial: str = Field(min_length=1, max_length=40)
    site: str
    validated_hold_hours: int = Field(ge=1, le=24 * 60)


class CorrectionIn(Strict):
    reason: str = Field(min_length=3, max_length=2000)
    correction: dict[str, Any]


class ParseIn(Strict):
    raw: str = Field(max_length=4000)


class ParseOut(Strict):
    status: Literal["ok"]
    kind: str
    parsed: dict[str, Any]


class SignIn(Strict):
    password: str = Field(min_length=1, max_length=200)
    meaning: Literal[tuple(SIGNATURE_MEANINGS)]  # type: ignore[valid-type]


class SignatureOut(Strict):
    id: int
    printed_name: str
    meaning: str
    signed_at: UtcDateTime
    record_type: str
    record_id: str
    record_hash: str


class DeviceIn(Strict):
    name: str = Text
    kind: Literal["scanner", "logger"]
    site: str


class DeviceOut(Strict):
    public_id: str
    token: str
    name: str
    kind: str


class ChainBreakOut(Strict):
    seq: int
    problem: str


class ChainOut(Strict):
    intact: bool
    events: int = Field(description="Events in the order's chain, genesis excluded.")
    head_hash: str = Field(
        pattern=r"^[0-9a-f]{64}$",
        description=(
            "SHA-256 of the chain's last event (64 zeros while it is empty): pin it, and "
            "compare it with a certificate's head hash or a later answer."
        ),
    )
    breaks: list[ChainBreakOut]


class ItemDetailOut(Strict):
    public_id: str
    kind: str
    state: str
    site: str | None
    site_name: str | None
    site_kind: str | None
    container: int
    lot: str | None
    parent: str | None
    din: str | None
    din_eye_readable: str | None
    din_check: str | None


class IdentityOut(Strict):
    given_name: str
    family_name: str
    date_of_birth: date
    mrn: str


class PatientRefOut(Strict):
    public_id: str
    wristband_code: str
    identity: IdentityOut | None = Field(
        description="Present only for callers whose role may read patient identity."
    )


class ProductRefOut(Strict):
    code: str
    version: int
    name: str
    starting_material: str


class OrderSitesOut(Strict):
    treatment: str
    collection: str
    manufacturing: str


class ShipmentDetailOut(Strict):
    public_id: str
    state: str
    origin: str
    destination: str
    shipper: str | None
    tamper_seal: str | None
    air_waybill: str | None
    logger_serial: str | None
    items: list[str]
    planned_pickup_at: UtcDateTime | None
    planned_delivery_at: UtcDateTime | None


class TimelineEventOut(Strict):
    id: int
    seq: int
    type: str
    item: str | None
    shipment: str | None
    from_state: str | None
    to_state: str | None
    site: str | None
    site_timezone: str
    actor: str | None
    occurred_at: UtcDateTime
    recorded_at: UtcDateTime
    reason: str | None
    corrects: int | None
    details: dict[str, Any]
    hash: str


class OrderDetailOut(Strict):
    public_id: str
    coi: CoiOut
    status: str
    patient: PatientRefOut
    product: ProductRefOut
    sites: OrderSitesOut
    stage: str
    items: list[ItemDetailOut]
    shipments: list[ShipmentDetailOut]
    timeline: list[TimelineEventOut]
    chain: ChainOut
    created_at: UtcDateTime


class MeOut(Strict):
    name: str
    user_id: int | None
    device_id: int | None
    roles: list[str]


def _rt_now() -> Any:
    return runtime().clock.now()


@registry.route(bp, "/me", "GET", summary="Who is calling", response=MeOut)
def me() -> ResponseReturnValue:
    p = current_principal()
    roles = sorted(f"{r.value}@{s if s is not None else '*'}" for r, s in p.grants)
    return jsonify(
        MeOut(name=p.name, user_id=p.user_id, device_id=p.device_id, roles=roles).model_dump()
    )


@registry.route(
    bp,
    "/patients",
    "POST",
    summary="Register a pseudonymous patient",
    body=PatientIn,
    response=PatientOut,
    status=201,
)
def create_patient(payload: PatientIn) -> ResponseReturnValue:
    rt = runtime()
    with rt.uow() as uow:
        patient = orders.register_patient(
            uow=uow,
            principal=current_principal(),
            treatment_site_code=payload.treatment_site,
            given_name=payload.given_name,
            family_name=payload.family_name,
            date_of_birth=payload.date_of_birth,
            mrn=payload.mrn,
            now=rt.clock.now(),
        )
        uow.commit()
        out = PatientOut(public_id=patient.public_id, wristband_code=patient.wristband_code)
    return jsonify(out.model_dump()), 201


@registry.route(bp, "/orders", "GET", summary="Therapy orders visible to you", response=OrderList)
def list_orders() -> ResponseReturnValue:
    with runtime().uow() as uow:
        rows = queries.list_orders(uow.session, current_principal())
    return jsonify(
        OrderList(
            orders=[OrderSummary(**{k: r[k] for k in OrderSummary.model_fields}) for r in rows]
        ).model_dump()
    )


@registry.route(
    bp,
    "/orders",
    "POST",
    summary="Create a therapy order and issue its COI",
    body=OrderIn,
    response=OrderOut,
    status=201,
)
def create_order(payload: OrderIn) -> ResponseReturnValue:
    rt = runtime()
    with rt.uow() as uow:
        order = orders.create_order(
            uow=uow,
            principal=current_principal(),
            patient_public_id=payload.patient,
            product_code=payload.product,
            collection_site_code=payload.collection_site,
            manufacturing_site_code=payload.manufacturing_site,
            coi_fin=rt.settings.coi_issuer_fin,
            now=rt.clock.now(),
        )
        uow.commit()
        out = OrderOut(
            public_id=order.public_id,
            coi=CoiOut(**queries.coi_display(order.coi)),
            status=order.status,
        )
    return jsonify(out.model_dump()), 201


@registry.route(
    bp,
    "/orders/<public_id>",
    "GET",
    summary="One order: identifiers, items, shipments and custody timeline",
    response=OrderDetailOut,
)
def get_order(public_id: str) -> ResponseReturnValue:
    with runtime().uow() as uow:
        detail = queries.order_detail(uow.session, current_principal(), public_id)
    return jsonify(OrderDetailOut.model_validate(detail, strict=False).model_dump(mode="json"))


@registry.route(
    bp,
    "/orders/<public_id>/chain",
    "GET",
    summary="Verify the order's hash chain",
    response=ChainOut,
)
def verify_order_chain(public_id: str) -> ResponseReturnValue:
    with runtime().uow() as uow:
        detail = queries.order_detail(uow.session, current_principal(), public_id)
    return jsonify(ChainOut(**detail["chain"]).model_dump())


@registry.route(
    bp,
    "/orders/<public_id>/bags",
    "POST",
    summary="Register a bag with its DIN",
    body=BagIn,
    response=ItemOut,
    status=201,
    errors=(400, 401, 403, 404, 409),
)
def register_bag(public_id: str, payload: BagIn) -> ResponseReturnValue:
    rt = runtime()
    with rt.uow() as uow:
        item = custody.register_bag(
            uow=uow,
            principal=current_principal(),
            order_public_id=public_id,
            kind=ItemKind(payload.kind),
            din=payload.din,
            din_fin=rt.settings.din_facility_fin,
            container=payload.container,
            parent_public_id=payload.parent,
            lot=payload.lot,
            site_code=payload.site,
            occurred_at=payload.occurred_at,
            now=rt.clock.now(),
        )
        uow.commit()
        out = ItemOut(public_id=item.public_id, kind=item.kind, state=item.state, din=item.din)
    return jsonify(out.model_dump()), 201


@registry.route(
    bp,
    "/shippers",
    "POST",
    summary="Register a reusable cryoshipper",
    body=ShipperIn,
    response=ItemOut,
    status=201,
    errors=(400, 401, 403, 404, 409),
)
def register_shipper(payload: ShipperIn) -> ResponseReturnValue:
    rt = runtime()
    with rt.uow() as uow:
        item = custody.register_shipper(
            uow=uow,
            principal=current_principal(),
            serial=payload.serial,
            site_code=payload.site,
            validated_hold_hours=payload.validated_hold_hours,
            now=rt.clock.now(),
        )
        uow.commit()
        out = ItemOut(public_id=item.public_id, kind=item.kind, state=item.state)
    return jsonify(out.model_dump()), 201


def _event_out(event: Any) -> dict[str, Any]:
    return EventOut(
        id=event.id,
        seq=event.seq,
        event_type=event.event_type,
        from_state=event.from_state,
        to_state=event.to_state,
        hash=event.hash,
    ).model_dump()


@registry.route(
    bp,
    "/items/<public_id>/transitions",
    "POST",
    summary="Move an item to its next custody state",
    body=TransitionIn,
    response=EventOut,
    status=201,
    errors=(400, 401, 403, 404, 409),
)
def item_transition(public_id: str, payload: TransitionIn) -> ResponseReturnValue:
    rt = runtime()
    with rt.uow() as uow:
        event = custody.change_item_state(
            uow=uow,
            principal=current_principal(),
            item_public_id=public_id,
            to_state=payload.to_state,
            reason=payload.reason,
            occurred_at=payload.occurred_at,
            site_code=payload.site,
            now=rt.clock.now(),
        )
        uow.commit()
        out = _event_out(event)
    return jsonify(out), 201


@registry.route(
    bp,
    "/shipments",
    "POST",
    summary="Plan a shipment leg for one order's bags",
    body=ShipmentIn,
    response=ShipmentOut,
    status=201,
    errors=(400, 401, 403, 404, 409),
)
def create_shipment(payload: ShipmentIn) -> ResponseReturnValue:
    rt = runtime()
    with rt.uow() as uow:
        shipment = custody.create_shipment(
            uow=uow,
            principal=current_principal(),
            order_public_id=payload.order,
            origin_code=payload.origin,
            destination_code=payload.destination,
            item_public_ids=payload.items,
            shipper_public_id=payload.shipper,
            tamper_seal=payload.tamper_seal,
            air_waybill=payload.air_waybill,
            logger_serial=payload.logger_serial,
            planned_pickup_at=payload.planned_pickup_at,
            planned_delivery_at=payload.planned_delivery_at,
            now=rt.clock.now(),
        )
        uow.commit()
        out = ShipmentOut(
            public_id=shipment.public_id,
            state=shipment.state,
            items=[i.public_id for i in shipment.items],
        )
    return jsonify(out.model_dump()), 201


@registry.route(
    bp,
    "/shipments/<public_id>/transitions",
    "POST",
    summary="Move a shipment to its next state",
    body=TransitionIn,
    response=EventOut,
    status=201,
    errors=(400, 401, 403, 404, 409),
)
def shipment_transition(public_id: str, payload: TransitionIn) -> ResponseReturnValue:
    rt = runtime()
    with rt.uow() as uow:
        event = custody.change_shipment_state(
            uow=uow,
            principal=current_principal(),
            shipment_public_id=public_id,
            to_state=payload.to_state,
            reason=payload.reason,
            occurred_at=payload.occurred_at,
            now=rt.clock.now(),
        )
        uow.commit()
        out = _event_out(event)
    return jsonify(out), 201


@registry.route(
    bp,
    "/events/<int:event_id>/corrections",
    "POST",
    summary="Correct a custody event (a new event with a reason)",
    body=CorrectionIn,
    response=EventOut,
    status=201,
)
def correct_event(event_id: int, payload: CorrectionIn) -> ResponseReturnValue:
    rt = runtime()
    with rt.uow() as uow:
        event = custody.correct_event(
            uow=uow,
            principal=current_principal(),
            event_id=event_id,
            reason=payload.reason,
            correction=payload.correction,
            now=rt.clock.now(),
        )
        uow.commit()
        out = _event_out(event)
    return jsonify(out), 201


@registry.route(
    bp,
    "/orders/<public_id>/signatures",
    "POST",
    summary="E-sign the order record (password re-entered)",
    body=SignIn,
    response=SignatureOut,
    status=201,
    errors=(400, 401, 403, 404, 423),
)
def sign_order(public_id: str, payload: SignIn) -> ResponseReturnValue:
    rt = runtime()
    principal = current_principal()
    if principal.user_id is None:
        raise TrackerError("forbidden", "only a person can sign")
    with rt.uow() as uow:
        detail = queries.order_detail(uow.session, principal, public_id)
        content = {
            "coi": detail["coi"]["value"],
            "items": [
                {"id": i["public_id"], "state": i["state"], "din": i["din"]}
                for i in detail["items"]
            ],
            "chain_head": detail["timeline"][-1]["hash"] if detail["timeline"] else None,
        }
        signature = auth_service.sign_record(
            uow=uow,
            hasher=rt.hasher,
            settings=rt.settings,
            user_id=principal.user_id,
            password=payload.password,
            meaning=payload.meaning,
            record_type="therapy_order",
            record_id=public_id,
            content=content,
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


@registry.route(
    bp,
    "/devices",
    "POST",
    summary="Register a scanner or logger (token shown once)",
    body=DeviceIn,
    response=DeviceOut,
    status=201,
)
def register_device(payload: DeviceIn) -> ResponseReturnValue:
    rt = runtime()
    principal = current_principal()
    if not principal.is_admin:
        raise TrackerError("forbidden", "only administrators register devices")
    with rt.uow() as uow:
        site = orders.site_by_code(uow.session, payload.site)
        issued = auth_service.register_device(
            uow=uow,
            name=payload.name,
            kind=payload.kind,
            site_id=site.id,
            now=rt.clock.now(),
            actor_user_id=principal.user_id,
        )
        uow.commit()
        out = DeviceOut(
            public_id=issued.device.public_id,
            token=issued.token,
            name=issued.device.name,
            kind=issued.device.kind,
        )
    return jsonify(out.model_dump()), 201


@registry.route(
    bp,
    "/identifiers/parse",
    "POST",
    summary="Classify and parse one scanned string",
    body=ParseIn,
    response=ParseOut,
)
def parse_identifier(payload: ParseIn) -> ResponseReturnValue:
    settings = runtime().settings
    result = identifiers.parse(
        payload.raw, gs_substitute=settings.gs_substitute, coi_check_scope=settings.coi_check_scope
    )
    if isinstance(result, identifiers.ParseError):
        raise TrackerError(result.reason, result.message)
    return jsonify(
        {
            "status": "ok",
            "kind": type(result.value).__name__,
            "parsed": identifiers.as_json(result.value),
        }
    )


class FhirBundleOut(BaseModel):
    """A FHIR R5 Bundle; each resource is validated against R5 in the test suite."""

    model_config = ConfigDict(extra="allow")
    resourceType: Literal["Bundle"]  # noqa: N815 (FHIR's element names)
    id: str
    type: Literal["collection"]
    timestamp: UtcDateTime
    entry: list[dict[str, Any]]


@registry.route(
    bp,
    "/orders/<public_id>/fhir",
    "GET",
    summary="The order as FHIR R5 (products, bookings, temperature findings, custody)",
    response=FhirBundleOut,
    media_type="application/fhir+json",
)
def order_fhir(public_id: str) -> ResponseReturnValue:
    rt = runtime()
    with rt.uow() as uow:
        bundle = fhir_export.export_order_bundle(
            session=uow.session,
            principal=current_principal(),
            order_public_id=public_id,
            now=rt.clock.now(),
            base_url=rt.settings.public_base_url,
        )
    response = jsonify(bundle)
    response.mimetype = "application/fhir+json"
    return response


# Every write above accepts an Idempotency-Key (replay, 409 while in flight, 422 on reuse).
idempotency.protect(bp)


def openapi_document() -> dict[str, Any]:
    return registry.document(title="Chain-of-identity tracker API", version=__version__)
