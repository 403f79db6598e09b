"""Scan use cases: judge and store every scan, carry a step to completion, answers, signatures.

``record_scan`` is the one way a scan enters the system. In one transaction it:

1. checks the device and that the person works at its site;
2. parses the code and looks it up (no locks yet: identities never change);
3. locks the order row (the custody chain's anchor, always locked first, as in
   ``tracker.services.custody``), then the order's item rows, and only then reads the run,
   the journey position, deviations and shipment it is judged against;
4. asks ``tracker.domain.scans.judge`` for the verdict;
5. stores the scan, accepted or refused; an accepted scan that completes its step applies the
   step's custody transitions through ``tracker.services.custody`` in a savepoint, so a refusal
   there leaves no state change and the scan is stored as refused.

A nonce this device already sent is refused by the unique constraint on (device, nonce) when
the row is stored: the whole attempt is rolled back and the first answer returned instead.
The caller commits, whatever the verdict: refused scans are records too."""

from __future__ import annotations

import dataclasses
import functools
import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from datetime import timedelta
from typing import Any
from typing import Protocol

from argon2 import PasswordHasher
from sqlalchemy import Integer
from sqlalchemy import String
from sqlalchemy import Text
from sqlalchemy import bindparam
from sqlalchemy import cast
from sqlalchemy import exists
from sqlalchemy import func
from sqlalchemy import insert
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from tracker.clock import require_aware
from tracker.config import Settings
from tracker.domain import identifiers as ids
from tracker.domain import scans as rules
from tracker.domain.access import CUSTODY_ROLES
from tracker.domain.access import Role
from tracker.domain.access import SiteKind
from tracker.domain.custody import CustodyState
from tracker.domain.custody import ItemKind
from tracker.domain.errors import TrackerError
from tracker.domain.journey import SCAN_KIND_OF_ITEM
from tracker.domain.journey import Journey
from tracker.domain.journey import Question
from tracker.domain.journey import Requirement
from tracker.domain.journey import ScanKind
from tracker.domain.journey import ScanRequirement
from tracker.domain.journey import ShipmentLeg
from tracker.domain.journey import SiteRole
from tracker.domain.journey import Step
from tracker.domain.journey import journey_for_profile
from tracker.models import Deviation
from tracker.models import Device
from tracker.models import Item
from tracker.models import Patient
from tracker.models import ProductProfile
from tracker.models import ReleaseCertificate
from tracker.models import Scan
from tracker.models import Shipment
from tracker.models import ShipmentItem
from tracker.models import Signature
from tracker.models import Site
from tracker.models import StepRun
from tracker.models import TherapyOrder
from tracker.services import custody
from tracker.services import quality
from tracker.services.audit import record_audit
from tracker.services.auth import sign_record
from tracker.services.auth import signature_matches
from tracker.services.deviations import open_deviation
from tracker.services.principals import Principal
from tracker.unit_of_work import UnitOfWork

DEFAULT_THAW_MINUTES = 30
DEFAULT_TWO_PERSON_WINDOW_MINUTES = 15
_ACTIVE_SHIPMENT_STATES = ("planned", "packed", "picked_up", "delivered")
_LEG_STATE = {
    ShipmentLeg.outgoing: "planned",
    ShipmentLeg.pickup: "packed",
    ShipmentLeg.incoming: "picked_up",
}


# The statements every scan runs, built once: a scan then only binds its values (building
# SQL expressions per call was a measurable part of a scan's time; see bench/bench_scans.py).
_Q_REPLAY = select(Scan.id, Scan.http_status, Scan.response).where(
    Scan.device_ref == bindparam("device"), Scan.nonce == bindparam("nonce")
)


_Q_DEVICE = (
    select(
        Device.id,
        Device.site_id,
        Device.kind,
        Device.active,
        Site.kind.label("site_kind"),
        Site.code,
    )
    .join(Site, Site.id == Device.site_id)
    .where(Device.public_id == bindparam("device"))
)
_Q_CONTEXT = (
    select(StepRun.id, StepRun.order_id)
    .join(Scan, Scan.run_id == StepRun.id)
    .where(Scan.client_run == bindparam("client_run"))
    .order_by(Scan.id)
    .limit(1)
)
# What judging a scanned item reads of it (a bag's row, or a shipper's); never its site row.
_ITEM_FACTS = (
    Item.id,
    Item.kind,
    Item.order_id,
    Item.state,
    Item.site_id,
    Item.serial,
    Item.container,
    Item.charged_at,
    Item.validated_hold_hours,
)
_Q_BAGS_BY_DIN = select(*_ITEM_FACTS).where(
    Item.din == bindparam("din"),
    Item.kind.in_([ItemKind.apheresis_bag.value, ItemKind.final_product_bag.value]),
)
_Q_PATIENT = select(Patient.id).where(Patient.wristband_code == bindparam("code"))
_Q_ACTIVE_ORDERS = select(TherapyOrder.id).where(
    TherapyOrder.patient_id == bindparam("patient"), TherapyOrder.status == "active"
)
_Q_LOCK_ORDER = (
    select(
        TherapyOrder.id,
        TherapyOrder.public_id,
        TherapyOrder.coi,
        TherapyOrder.patient_id,
        TherapyOrder.collection_site_id,
        TherapyOrder.manufacturing_site_id,
        TherapyOrder.treatment_site_id,
        ProductProfile.starting_material,
        # As text: it keys the parsed-journey cache (the content, not the row id).
        cast(ProductProfile.data, Text).label("data_text"),
    )
    .join(ProductProfile, ProductProfile.id == TherapyOrder.product_profile_id)
    .where(TherapyOrder.id == bindparam("order"))
    # NO KEY UPDATE: scanners of one order queue behind each other, but a refused scan
    # elsewhere that merely references this order (a foreign key check takes KEY SHARE)
    # does not. Two wrong-patient scans crossing each other's orders would deadlock on
    # FOR UPDATE.
    .with_for_update(of=TherapyOrder, key_share=True)
)
_Q_ITEMS = (
    select(Item.id, Item.public_id, Item.kind, Item.state, Item.site_id)
    .where(Item.order_id == bindparam("order"))
    .order_by(Item.id)
    .with_for_update(key_share=True)
)
_Q_PROGRESS = select(Scan.requirement, Scan.token, Scan.user_id).where(
    Scan.run_id == bindparam("run"), Scan.result != "error"
)


_Q_STORE = insert(Scan).returning(Scan.id)


def _core(session: Session, stmt: Any, params: dict[str, Any]) -> Any:
    """Run one of the statements above as plain SQL on the session's connection: rows, not
    ORM objects, without the ORM's per-statement work. The caller has flushed whatever the
    statement must see (these read rows written by Core inserts or explicit flushes)."""
    return session.connection().execute(stmt, params)


def _position_query() -> Any:
    order = bindparam("order", type_=Integer)
    step = bindparam("step", type_=String)
    open_run = (
        select(StepRun.id)
        .where(StepRun.order_id == order, StepRun.step == step, StepRun.status == "open")
        .scalar_subquery()
    )
    last = (
        select(StepRun.step)
        .where(
            StepRun.order_id == order,
            StepRun.status == "completed",
            StepRun.exception.is_(False),
        )
        .order_by(StepRun.completed_at.desc(), StepRun.id.desc())
        .limit(1)
        .scalar_subquery()
    )
    own_run = func.coalesce(bindparam("run", type_=Integer), open_run)
    blocking = exists().where(
        Deviation.order_id == order,
        Deviation.status == "open",
        Deviation.run_id.is_distinct_from(own_run),
    )
    return select(last, open_run, blocking)


_Q_POSITION = _position_query()


@dataclass(frozen=True)
class ParseOptions:
    gs_substitute: str | None = None
    coi_check_scope: ids.CoiCheckScope = "full"


@dataclass(frozen=True)
class ScanInput:
    raw: str
    device: str  # the scanner's public id
    step: str
    client_at: datetime
    nonce: str
    client_run: str | None = None  # the scanner's key for "this performance of the step"
    offline: bool = False  # queued on the device and uploaded later
    manual: bool = False  # typed from the eye-readable label: needs its check character


@dataclass(frozen=True)
class Outcome:
    """An answer for the API: HTTP status and JSON body (a scan's is stored for replays)."""

    http_status: int
    body: dict[str, Any]
    replayed: bool = False


# ---------------------------------------------------------------------------------------------
# Looking things up
# ---------------------------------------------------------------------------------------------


@dataclass
class _Order:
    """The locked order row and what judging needs of it."""

    id: int
    public_id: str
    coi: str
    patient_id: int
    sites: dict[SiteRole, int]
    journey: Journey
    profile: dict[str, Any]


def _stored_raw(raw: str) -> str:
    """The raw string as it arrived, with what a database cannot hold (NUL, lone surrogates)
    written as escapes."""
    return raw.encode("utf-8", "backslashreplace").decode("utf-8").replace("\x00", "\\x00")


def _parse(scan: ScanInput, options: ParseOptions) -> ids.ParseResult:
    if scan.manual:
        return ids.verify_manual_entry(scan.raw, coi_check_scope=options.coi_check_scope)
    return ids.parse(
        scan.raw, gs_substitute=options.gs_substitute, coi_check_scope=options.coi_check_scope
    )


def _din_label(din: str) -> str:
    grouped, check = ids.format_din_eye_readable(din)
    return f"{grouped} {check}"


class _ItemFacts(Protocol):
    """The columns of ``_ITEM_FACTS``: an ``Item`` or a row of them."""

    id: int
    kind: str
    order_id: int | None
    state: str
    site_id: int | None
    serial: str | None
    charged_at: datetime | None
    validated_hold_hours: int | None


def _item_scanned(session: Session, item: _ItemFacts, label: str) -> rules.Scanned:
    kind = SCAN_KIND_OF_ITEM[ItemKind(item.kind)]
    order_id = item.order_id
    expires = None
    if kind is ScanKind.shipper:
        order_id = session.scalar(
            select(Shipment.order_id)
            .where(Shipment.shipper_id == item.id, Shipment.state.in_(_ACTIVE_SHIPMENT_STATES))
            .order_by(Shipment.id.desc())
            .limit(1)
        )
        if item.charged_at is not None and item.validated_hold_hours:
            expires = item.charged_at + timedelta(hours=item.validated_hold_hours)
    return rules.Scanned(
        kind=kind,
        order_id=order_id,
        item_id=item.id,
        item_state=CustodyState(item.state),
        item_site_id=item.site_id,
        value=item.serial,
        label=label,
        expires_at=expires,
    )


def _unknown(message: str) -> rules.Scanned:
    return rules.Scanned(problem=rules.Problem("unknown_code", message))


def _resolve_din(session: Session, din: ids.Din) -> rules.Scanned:
    bags: list[Any] = list(_core(session, _Q_BAGS_BY_DIN, {"din": din.din}))
    if din.container_number is not None:
        bags = [b for b in bags if b.container == din.container_number]
    if not bags:
        return _unknown("No bag with this DIN is registered.")
    if len(bags) > 1:
        return rules.Scanned(
            problem=rules.Problem(
                "ambiguous_code", "Several bags share this DIN; scan the label with its flags."
            )
        )
    bag = bags[0]
    what = "apheresis bag" if bag.kind == ItemKind.apheresis_bag else "product bag"
    return _item_scanned(session, bag, f"{what} {_din_label(din.din)}")


def _resolve_wristband(session: Session, code: str, context_order: int | None) -> rules.Scanned:
    patient_id = _core(session, _Q_PATIENT, {"code": code}).scalar()
    if patient_id is None:
        return _unknown("No patient has this wristband.")
    active = list(_core(session, _Q_ACTIVE_ORDERS, {"patient": patient_id}).scalars())
    if context_order in active:
        order_id: int | None = context_order
    elif len(active) == 1:
        order_id = active[0]
    elif context_order is not None:
        # Checked against the run's patient, whatever orders the patient has.
        order_id = None
    elif not active:
        return _unknown("This patient has no active therapy order.")
    else:
        return rules.Scanned(
            problem=rules.Problem(
                "ambiguous_code",
                "This patient has several active orders: scan a COI label to choose.",
            )
        )
    return rules.Scanned(
        kind=ScanKind.wristband, order_id=order_id, patient_id=patient_id, label="wristband"
    )


def _resolve(
    session: Session, result: ids.ParseResult, raw: str, context_order: int | None
) -> rules.Scanned:
    """Turn a parse result into what it identifies (no locks: identities never change)."""
    if isinstance(result, ids.ParseError):
        return rules.Scanned(
            problem=rules.Problem(result.reason, result.message, result.suggestion),
            opaque=rules.seal_text(raw),
        )
    value = result.value
    if isinstance(value, ids.Din):
        return _resolve_din(session, value)
    if isinstance(value, ids.ChainOfIdentity):
        order_id = session.scalar(select(TherapyOrder.id).where(TherapyOrder.coi == value.coi))
        if order_id is None:
            return _unknown("No order has this chain-of-identity identifier.")
        return rules.Scanned(kind=ScanKind.coi_label, order_id=order_id, label="COI label")
    if isinstance(value, ids.Compound):
        dins = [s for s in value.structures if isinstance(s, ids.Din)]
        cois = [s for s in value.structures if isinstance(s, ids.ChainOfIdentity)]
        if dins:
            bag = _resolve_din(session, dins[0])
            if cois and bag.order_id is not None and bag.problem is None:
                label_coi = session.scalar(
                    select(TherapyOrder.coi).where(TherapyOrder.id == bag.order_id)
                )
                if label_coi != cois[0].coi:
                    return rules.Scanned(
                        problem=rules.Problem(
                            "coi_mismatch",
                            "STOP: this label's COI and DIN belong to different patients.",
                        )
                    )
            return bag
        if cois:
            return _resolve(session, ids.Parsed(cois[0]), raw, context_order)
        return _unknown("This label carries no DIN or COI.")
    if isinstance(value, ids.InternalId):
        code = value.value
        if value.kind is ids.InternalKind.patient:
            return _resolve_wristband(session, code, context_order)
        if value.kind is ids.InternalKind.shipper:
            shipper = session.scalar(
                select(Item).where(Item.serial == code, Item.kind == ItemKind.cryoshipper.value)
            )
            if shipper is None:
                return _unknown("No shipper has this code.")
            return _item_scanned(session, shipper, f"shipper {code}")
        if value.kind is ids.InternalKind.logger:
            order_id = session.scalar(
                select(Shipment.order_id)
                .where(
                    Shipment.logger_serial == code,
                    Shipment.state.in_(_ACTIVE_SHIPMENT_STATES),
                )
                .order_by(Shipment.id.desc())
                .limit(1)
            )
            return rules.Scanned(
                kind=ScanKind.logger, order_id=order_id, value=code, label=f"logger {code}"
            )
        if value.kind is ids.InternalKind.certificate:
            order_id = session.scalar(
                select(ReleaseCertificate.order_id).where(ReleaseCertificate.code == code)
            )
            if order_id is None:
                return _unknown("No release certificate has this code.")
            return rules.Scanned(
                kind=ScanKind.certificate,
                order_id=order_id,
                value=code,
                label="release certificate",
            )
        return _unknown(f"A {value.kind.name.replace('_', ' ')} code is not scanned in any step.")
    if isinstance(value, ids.Gs1Message) and value.get("8003"):
        grai = value.get("8003") or ""
        shipper = session.scalar(
            select(Item).where(
                Item.kind == ItemKind.cryoshipper.value, Item.serial.in_([grai, grai[14:]])
            )
        )
        if shipper is None:
            return _unknown("No shipper has this GRAI.")
        return _item_scanned(session, shipper, f"shipper {shipper.serial}")
    return _unknown(f"A {type(value).__name__} label identifies nothing a step scans.")


@functools.lru_cache(maxsize=64)
def _journey_of(starting_material: str, data_text: str) -> tuple[Journey, dict[str, Any]]:
    """Parse a profile's step list once per distinct content, not once per scan."""
    data = json.loads(data_text)
    return journey_for_profile(starting_material, data), data


def _lock_order(session: Session, order_id: int) -> _Order:
    row = _core(session, _Q_LOCK_ORDER, {"order": order_id}).one()
    journey, data = _journey_of(row.starting_material, row.data_text)
    return _Order(
        id=row.id,
        public_id=row.public_id,
        coi=row.coi,
        patient_id=row.patient_id,
        sites={
            SiteRole.collection: row.collection_site_id,
            SiteRole.manufacturing: row.manufacturing_site_id,
            SiteRole.treatment: row.treatment_site_id,
        },
        journey=journey,
        profile=data,
    )


# ---------------------------------------------------------------------------------------------
# Runs: progress, expected sets, shipment, deadlines
# ---------------------------------------------------------------------------------------------


def _context_run(session: Session, client_run: str | None) -> tuple[int, int] | None:
    """(run id, order id) of the run this scanner's accepted scans belong to, if any.

    Both never change, so they are read before the order lock; the run row itself is read
    after it.
    """
    if not client_run:
        return None
    row = _core(session, _Q_CONTEXT, {"client_run": client_run}).first()
    return (row.id, row.order_id) if row else None


def _load_run(session: Session, run_id: int) -> StepRun:
    run = session.get(StepRun, run_id, populate_existing=True)
    assert run is not None
    return run


@dataclass(frozen=True)
class _Position:
    last_completed: str | None
    open_run_id: int | None
    blocking_deviation: bool


def _position(session: Session, order_id: int, step: str, run_id: int | None) -> _Position:
    """Where the order's journey stands, in one round trip: the last completed journey step,
    this step's open run, and whether an open deviation blocks (one opened by this run's own
    checklist or forced scan does not: that run may finish)."""
    row = _core(session, _Q_POSITION, {"order": order_id, "step": step, "run": run_id}).one()
    return _Position(row[0], row[1], bool(row[2]))


def _signatures(session: Session, run: StepRun) -> list[Signature]:
    return list(
        session.scalars(
            select(Signature).where(
                Signature.record_type == "step_run", Signature.record_id == str(run.id)
            )
        )
    )


def _progress(
    session: Session,
    run: StepRun | None,
    step: Step,
    order: _Order,
    person_id: int,
    at: datetime,
) -> tuple[rules.Progress, int]:
    """This person's progress (everyone's for one-person steps), and verified people."""
    if run is None:
        return rules.Progress(), 0
    done: dict[str, set[str]] = {}
    by_person: dict[int, dict[str, set[str]]] = {}
    for req, token, user in _core(session, _Q_PROGRESS, {"run": run.id}):
        if req is None or token is None:
            continue
        by_person.setdefault(user, {}).setdefault(req, set()).add(token)
        if step.persons == 1 or user == person_id:
            done.setdefault(req, set()).add(token)
    signed: set[str] = set()
    verified = 0
    sign_req = rules.signature_requirement(step)
    if sign_req is not None:
        sigs = [s for s in _signatures(session, run) if s.meaning == sign_req.meaning]
        if step.persons == 1:
            signed = {sign_req.key} if sigs else set()
        else:
            window = int(
                order.profile.get("two_person_window_minutes", DEFAULT_TWO_PERSON_WINDOW_MINUTES)
            )
            latest = {s.user_id: s.signed_at for s in sorted(sigs, key=lambda s: s.signed_at)}
            scans_needed = {r.key for r in step.scans}
            counted = {
                user: when
                for user, when in latest.items()
                if scans_needed <= set(by_person.get(user, {}))
            }
            verified = rules.people_within_window(counted, at, window)
            mine = counted.get(person_id)
            if mine is not None and rules.people_within_window({0: mine}, at, window):
                signed = {sign_req.key}
    progress = rules.Progress(
        done={k: frozenset(v) for k, v in done.items()},
        answers={k: v["value"] for k, v in (run.answers or {}).items()},
        signed=frozenset(signed),
    )
    return progress, verified


@dataclass
class _Facts:
    shipment: Shipment | None
    shipment_facts: rules.ShipmentFacts | None
    expected: dict[str, frozenset[str]]
    public_ids: dict[int, str]
    items: dict[int, Any]  # id -> locked row (state, site)


def _shipment(
    session: Session, order: _Order, step: Step, run: StepRun | None, site_id: int
) -> Shipment | None:
    if step.shipment is None:
        return None
    if run is not None and run.shipment_id is not None:
        return session.get(Shipment, run.shipment_id)
    stmt = select(Shipment).where(
        Shipment.order_id == order.id, Shipment.state == _LEG_STATE[step.shipment]
    )
    if step.shipment is ShipmentLeg.outgoing:
        stmt = stmt.where(Shipment.origin_site_id == site_id)
    elif step.shipment is ShipmentLeg.incoming:
        stmt = stmt.where(Shipment.destination_site_id == site_id)
    return session.scalar(stmt.order_by(Shipment.id).limit(1))


def _facts(
    session: Session, order: _Order, step: Step, run: StepRun | None, site_id: int
) -> _Facts:
    shipment = _shipment(session, order, step, run, site_id)
    ship_items: frozenset[int] = frozenset()
    facts = None
    if shipment is not None:
        ship_items = frozenset(
            session.scalars(
                select(ShipmentItem.item_id).where(ShipmentItem.shipment_id == shipment.id)
            )
        )
        facts = rules.ShipmentFacts(
            shipper_id=shipment.shipper_id,
            seal=shipment.tamper_seal,
            logger=shipment.logger_serial,
            item_ids=ship_items,
            courier_user_id=shipment.courier_user_id,
        )
    items = _order_items(session, order)
    expected: dict[str, frozenset[str]] = {}
    for req in step.scans:
        if not req.each:
            continue
        kinds = {k.value for k in req.kinds}
        kinds = {ItemKind.final_product_bag.value if k == "product_bag" else k for k in kinds}
        if shipment is not None:
            chosen = [i for i in items if i.kind in kinds and i.id in ship_items]
        else:
            chosen = [
                i for i in items if i.kind in kinds and CustodyState(i.state) in req.from_states
            ]
        expected[req.key] = frozenset(str(i.id) for i in chosen)
    return _Facts(
        shipment, facts, expected, {i.id: i.public_id for i in items}, {i.id: i for i in items}
    )


def _order_items(session: Session, order: _Order) -> list[Any]:
    """The order's bags, their rows locked (after the order's): the scanned bag's state is
    read here, under its lock, and the "every bag" sets come from the same rows."""
    return list(_core(session, _Q_ITEMS, {"order": order.id}))


def _deadline(session: Session, order: _Order, step: Step) -> datetime | None:
    if step.countdown != "check":
        return None
    thawed = session.scalar(
        select(StepRun.completed_at)
        .where(
            StepRun.order_id == order.id,
            StepRun.status == "completed",
            StepRun.step.in_(
                [s.code for s in order.journey.steps if s.countdown == "start"] or ["-"]
            ),
        )
        .order_by(StepRun.completed_at.desc())
        .limit(1)
    )
    if thawed is None:
        return None
    minutes = int(order.profile.get("thaw_to_infusion_minutes", DEFAULT_THAW_MINUTES))
    return rules.countdown_deadline(thawed, minutes)


# ---------------------------------------------------------------------------------------------
# Answers
# ---------------------------------------------------------------------------------------------


def _requirement_out(req: Requirement | None, look: rules.Outlook) -> dict[str, Any] | None:
    if req is None:
        return None
    out: dict[str, Any] = {"key": req.key, "prompt": req.prompt}
    if isinstance(req, ScanRequirement):
        out.update(type="scan", kinds=sorted(k.value for k in req.kinds), each=req.each)
        if req.each:
            out.update(done=look.done, of=look.of)
    elif isinstance(req, Question):
        out.update(type="question", answer_type=req.answer_type)
    else:
        out.update(type="signature", meaning=req.meaning)
    return out


def _body(
    *,
    status: str,
    message: str,
    step_code: str,
    step: Step | None,
    run_key: str | None,
    order: _Order | None,
    reason: str | None = None,
    suggestion: str | None = None,
    look: rules.Outlook | None = None,
    deadline: datetime | None = None,
    **extra: Any,
) -> dict[str, Any]:
    complete = bool(look and look.complete)
    following = []
    if complete and step is not None and order is not None and not step.exception:
        following = [
            {"code": c, "title": s.title}
            for c in step.next
            if (s := order.journey.step(c)) is not None
        ]
    return {
        "status": status,
        "reason": reason,
        "message": message,
        "suggestion": suggestion,
        "step": {"code": step_code, "title": step.title if step else None},
        "run": run_key,
        "order": {"public_id": order.public_id, "coi": order.coi} if order else None,
        "next": None if complete or look is None else _requirement_out(look.next, look),
        "complete": complete,
        "waiting_for_second_person": bool(look and look.waiting_for_second_person),
        "following": following,
        "countdown": {"deadline": deadline.isoformat()} if deadline else None,
        **extra,
    }


def _http_status(status: str, reason: str | None) -> int:
    if status != "error":
        return 201
    return 404 if reason in ("unknown_code", "unknown_device") else 400


# ---------------------------------------------------------------------------------------------
# Deviations
# ---------------------------------------------------------------------------------------------


def _forced_deviation(
    session: Session,
    order_id: int,
    description: str,
    now: datetime,
    user_id: int,
    site_id: int,
    run_id: int | None,
) -> Deviation:
    """Forced offline scans of one order share its open forced-scan deviation.

    Like a checklist deviation, it lets the run it happened in finish (that handoff did take
    place) and blocks the order's next custody step.
    """
    existing = session.scalar(
        select(Deviation).where(
            Deviation.order_id == order_id,
            Deviation.status == "open",
            Deviation.kind == "forced_scan",
        )
    )
    if existing is not None:
        return existing
    return open_deviation(
        session,
        order_id=order_id,
        kind="forced_scan",
        description=description,
        now=now,
        user_id=user_id,
        site_id=site_id,
        run_id=run_id,
    )


# ---------------------------------------------------------------------------------------------
# Completing a step
# ---------------------------------------------------------------------------------------------


def _complete(
    uow: UnitOfWork,
    principal: Principal,
    *,
    run: StepRun,
    step: Step,
    order: _Order,
    progress: rules.Progress,
    facts: _Facts,
    site_id: int,
    site_code: str,
    occurred: datetime,
    now: datetime,
) -> dict[str, Any]:
    """Apply the step's custody transitions and close the run; returns what it issued.
    ``site_id`` and ``site_code`` name the same site, where the step is performed."""
    session = uow.session
    details = {"step": step.code, "run": run.id}
    reason_q = step.reason_question
    reason = str(progress.answers.get(reason_q.key)) if reason_q else None
    moved = False
    for req in step.scans:
        if req.to_state is None:
            continue
        tokens = sorted(progress.done.get(req.key, frozenset()), key=int)
        if tokens and all(int(t) in facts.public_ids for t in tokens):
            # The order's bags: through the custody service together, every check per bag.
            custody.change_items_state(
                uow=uow,
                principal=principal,
                order_id=order.id,
                item_ids=[int(t) for t in tokens],
                to_state=req.to_state,
                now=now,
                occurred_at=occurred,
                site_id=site_id,
                reason=reason,
                details=details,
            )
            moved = True
            continue
        for token in tokens:
            # One item at a time through the custody service and every check it makes (a
            # shipper is no bag of the order: it moves on its own asset chain, no reason).
            bag = facts.public_ids.get(int(token))
            public_id = bag or session.scalar(select(Item.public_id).where(Item.id == int(token)))
            custody.change_item_state(
                uow=uow,
                principal=principal,
                item_public_id=str(public_id),
                to_state=req.to_state,
                now=now,
                occurred_at=occurred,
                site_code=site_code,
                reason=reason if bag else None,
                details=details,
            )
            moved = True
    shipment = facts.shipment
    if shipment is not None:
        for state in step.shipment_to:
            custody.change_shipment_state(
                uow=uow,
                principal=principal,
                shipment_public_id=shipment.public_id,
                to_state=state,
                now=now,
                occurred_at=occurred,
                site_code=site_code,
            )
            moved = True
        if step.shipment_items_to is not None and facts.shipment_facts is not None:
            for item_id in sorted(facts.shipment_facts.item_ids):
                custody.change_item_state(
                    uow=uow,
                    principal=principal,
                    item_public_id=facts.public_ids[item_id],
                    to_state=step.shipment_items_to,
                    now=now,
                    occurred_at=occurred,
                    site_code=site_code,
                    details=details,
                )
    issued: dict[str, Any] = {}
    if step.issues_certificate:
        signature = next(iter(_signatures(session, run)), None)
        if signature is None:
            raise TrackerError("out_of_order", "release needs the QA signature first")
        if not signature_matches(signature, _signed_content(session, order, step, run, progress)):
            raise TrackerError("conflict", "the lot's record changed after it was signed")
        released = sorted(
            facts.public_ids[int(t)]
            for req in step.scans
            if req.to_state is CustodyState.released
            for t in progress.done.get(req.key, frozenset())
        )
        certificate = quality.issue_release(
            session, order_id=order.id, run=run, signature=signature, bags=released, now=now
        )
        issued["certificate"] = certificate.code
    if not moved:
        # A verification that moves nothing still belongs on the chain of identity.
        custody.record_note(
            session,
            order_id=order.id,
            item_id=None,
            shipment_id=None,
            site_id=run.site_id,
            actor_user_id=principal.user_id,
            occurred_at=occurred,
            now=now,
            details={
                **details,
                "verified_by": sorted({s.printed_name for s in _signatures(session, run)}),
            },
        )
    run.status = "completed"
    run.completed_at = occurred
    session.flush()
    return issued


# ---------------------------------------------------------------------------------------------
# record_scan
# ---------------------------------------------------------------------------------------------


def _replay(session: Session, scan: ScanInput) -> Outcome | None:
    row = session.execute(_Q_REPLAY, {"device": scan.device, "nonce": scan.nonce}).first()
    if row is None:
        return None
    return Outcome(row.http_status, {**row.response, "scan": row.id}, replayed=True)


def record_scan(
    *,
    uow: UnitOfWork,
    principal: Principal,
    scan: ScanInput,
    now: datetime,
    options: ParseOptions | None = None,
) -> Outcome:
    """Judge one scan and store it, accepted or refused; a repeated nonce replays its answer."""
    now = require_aware(now)
    if principal.user_id is None:
        raise TrackerError("forbidden", "a scan is made by a person: log in on the scanner")
    session = uow.session
    try:
        return _record(uow, principal, scan, now, options or ParseOptions())
    except IntegrityError:
        # A repeated nonce: the unique constraint on (device, nonce) refuses the second row.
        # Undo everything this attempt did and answer as the first time. (Retries are rare,
        # so they pay for a whole judgement instead of every scan paying for a look-up.)
        session.rollback()
        replay = _replay(session, scan)
        if replay is None:
            raise
        return replay


@dataclass
class _Draft:
    """The scan row being written, filled in as the judgement proceeds."""

    device_id: int | None = None
    site_id: int | None = None
    parsed: dict[str, Any] | None = None
    kind: str | None = None
    order_id: int | None = None
    scanned_order_id: int | None = None
    item_id: int | None = None
    run_id: int | None = None
    requirement: str | None = None
    token: str | None = None
    forced: bool = False
    deviation_id: int | None = None


def _store(
    session: Session,
    principal: Principal,
    scan: ScanInput,
    draft: _Draft,
    body: dict[str, Any],
    now: datetime,
) -> Outcome:
    status = body["status"]
    http = _http_status(status, body["reason"])
    # A Core insert: the row is never used as an object again in this transaction. Pending
    # changes go first, as before (a refused flush must not be taken for a repeated nonce).
    session.flush()
    scan_id = _core(
        session,
        _Q_STORE,
        {
            "nonce": scan.nonce,
            "device_ref": scan.device,
            "device_id": draft.device_id,
            "user_id": principal.user_id,
            "site_id": draft.site_id,
            "step": scan.step,
            "client_run": scan.client_run,
            "run_id": draft.run_id,
            "raw": _stored_raw(scan.raw),
            "manual": scan.manual,
            "parsed": draft.parsed,
            "kind": draft.kind,
            "order_id": draft.order_id,
            "scanned_order_id": draft.scanned_order_id,
            "item_id": draft.item_id,
            "requirement": draft.requirement,
            "token": draft.token,
            "client_at": require_aware(scan.client_at),
            "server_at": now,
            "offline": scan.offline,
            "forced": draft.forced,
            "result": status,
            "reason": body["reason"],
            "message": body["message"],
            "http_status": http,
            "response": body,
            "deviation_id": draft.deviation_id,
        },
    ).scalar_one()
    return Outcome(http, {**body, "scan": scan_id})


def _record(
    uow: UnitOfWork,
    principal: Principal,
    scan: ScanInput,
    now: datetime,
    options: ParseOptions,
) -> Outcome:
    session = uow.session
    draft = _Draft()
    # The device's time is the event's time for offline scans, but never later than now.
    occurred = min(require_aware(scan.client_at), now) if scan.offline else now

    def refuse(
        reason: str,
        message: str,
        order: _Order | None = None,
        *,
        suggestion: str | None = None,
        deviation: str | None = None,
        deadline: datetime | None = None,
    ) -> Outcome:
        body = _body(
            status="error",
            reason=reason,
            message=message,
            suggestion=suggestion,
            step_code=scan.step,
            step=order.journey.step(scan.step) if order else None,
            run_key=scan.client_run,
            order=order,
            deadline=deadline,
            offline=scan.offline,
            forced=draft.forced,
            deviation=deviation,
        )
        return _store(session, principal, scan, draft, body, now)

    # Request-level guards: a registered scanner, at a site where this person works.
    device = _core(session, _Q_DEVICE, {"device": scan.device}).first()
    if device is None or not device.active or device.kind != "scanner":
        return refuse("unknown_device", "This scanner is not registered or is switched off.")
    draft.device_id, draft.site_id = device.id, device.site_id
    roles = principal.roles_at(device.site_id) - {Role.admin}
    if not roles:
        return refuse("forbidden", "You have no role at this scanner's site.")
    actor = dataclasses.replace(principal, device_id=device.id)

    # Parse and look up, without locks (identities never change).
    result = _parse(scan, options)
    if isinstance(result, ids.Parsed):
        draft.parsed = {
            "type": type(result.value).__name__,
            "value": ids.as_json(result.value),
            "symbology": result.symbology.code if result.symbology else None,
            "check_verified": result.keyboard_check_verified,
        }
    context = _context_run(session, scan.client_run)
    context_order = context[1] if context is not None else None
    scanned = _resolve(session, result, scan.raw, context_order)
    draft.kind = scanned.kind.value if scanned.kind else None
    draft.item_id = scanned.item_id
    order_id = context_order if context_order is not None else scanned.order_id
    if order_id is None:
        problem = scanned.problem or rules.Problem(
            "out_of_order", "Start the step with its first scan (a COI label or wristband)."
        )
        return refuse(problem.reason, problem.message, suggestion=problem.suggestion)

    # Lock the chain's anchor, then its items, then read everything the verdict rests on.
    order = _lock_order(session, order_id)
    draft.order_id = order.id
    if scanned.order_id is not None and scanned.order_id != order.id:
        draft.scanned_order_id = scanned.order_id
    step = order.journey.step(scan.step)
    position = _position(session, order.id, scan.step, context[0] if context else None)
    run_id = context[0] if context else position.open_run_id
    run = _load_run(session, run_id) if run_id is not None else None
    if run is not None and run.step != scan.step:
        return refuse("wrong_step", "This scanner is in the middle of another step.", order)
    facts = (
        _facts(session, order, step, run, device.site_id)
        if step is not None
        else _Facts(None, None, {}, {}, {})
    )
    locked = facts.items.get(scanned.item_id or 0) if scanned.order_id == order.id else None
    if locked is not None:
        scanned = dataclasses.replace(
            scanned, item_state=CustodyState(locked.state), item_site_id=locked.site_id
        )
    progress, verified = (
        _progress(session, run, step, order, principal.user_id or 0, occurred)
        if step is not None
        else (rules.Progress(), 0)
    )
    deadline = _deadline(session, order, step) if step is not None else None
    ctx = rules.Context(
        journey=order.journey,
        step_code=scan.step,
        person_id=principal.user_id or 0,
        roles=roles,
        device_site_id=device.site_id,
        device_site_kind=SiteKind(device.site_kind),
        order_sites=order.sites,
        run_order_id=context_order,
        run_patient_id=order.patient_id if context is not None else None,
        run_open=run is not None and run.status == "open",
        run_completed=run is not None and run.status == "completed",
        progress=progress,
        expected=facts.expected,
        shipment=facts.shipment_facts,
        at=occurred,
        last_completed=position.last_completed,
        blocking_deviation=position.blocking_deviation,
        deadline=deadline,
    )
    verdict = rules.judge(scanned, ctx)
    if isinstance(verdict, rules.Accepted) and step is not None:
        verdict = _quality_gate(session, step, order, verdict)

    if isinstance(verdict, rules.Accepted):
        assert step is not None
        try:
            return _accept(
                uow,
                actor,
                scan,
                draft,
                verdict,
                order,
                step,
                run,
                facts,
                progress,
                verified,
                device.site_id,
                device.code,
                occurred,
                now,
                deadline,
            )
        except TrackerError as exc:
            # Completing the step was refused by the custody rules: nothing moved.
            verdict = rules.Refused(exc.reason, exc.message)
            draft.run_id = draft.requirement = draft.token = None

    # Refused. Offline, it still happened: keep it as forced and open (or join) a deviation.
    deviation = None
    if scan.offline and rules.forceable(verdict.reason):
        draft.forced = True
        dev = _forced_deviation(
            session,
            order.id,
            f"Offline scan at '{scan.step}' would have been refused ({verdict.reason}): "
            f"{verdict.message}",
            now,
            principal.user_id or 0,
            device.site_id,
            run.id if run is not None and run.status == "open" else None,
        )
        draft.deviation_id, deviation = dev.id, dev.public_id
    message = verdict.message
    if deviation:
        message = f"Recorded as forced (made offline): {message} Deviation {deviation} is open."
    return refuse(
        verdict.reason,
        message,
        order,
        suggestion=verdict.suggestion,
        deviation=deviation,
        deadline=deadline,
    )


def _quality_gate(
    session: Session, step: Step, order: _Order, verdict: rules.Accepted
) -> rules.Verdict:
    """Refuse at the first scan what custody would refuse at the end: manufacturing from
    material that is not accepted, and release of a lot whose record is not complete."""
    try:
        if step.issues_certificate:
            quality.release_check(session, order.id)
        elif verdict.requirement.to_state is CustodyState.in_manufacturing:
            item = session.get(Item, verdict.scanned.item_id) if verdict.scanned.item_id else None
            if item is not None:
                quality.require_material_accepted(session, item)
    except TrackerError as exc:
        return rules.Refused(exc.reason, exc.message)
    return verdict


def _accept(
    uow: UnitOfWork,
    actor: Principal,
    scan: ScanInput,
    draft: _Draft,
    verdict: rules.Accepted,
    order: _Order,
    step: Step,
    run: StepRun | None,
    facts: _Facts,
    progress: rules.Progress,
    verified: int,
    site_id: int,
    site_code: str,
    occurred: datetime,
    now: datetime,
    deadline: datetime | None,
) -> Outcome:
    session = uow.session
    req = verdict.requirement
    done = dict(progress.done)
    done[req.key] = done.get(req.key, frozenset()) | {verdict.token}
    progress = dataclasses.replace(progress, done=done)
    look = rules.outlook(step, progress, facts.expected, verified_people=verified)

    def write() -> dict[str, Any]:
        nonlocal run
        if run is None:
            run = StepRun(
                order_id=order.id,
                step=step.code,
                exception=step.exception,
                site_id=site_id,
                shipment_id=facts.shipment.id if facts.shipment else None,
                started_by_id=actor.user_id,
                started_at=occurred,
                answers={},
            )
            session.add(run)
            session.flush()
        _note_on_shipment(session, actor, req, facts.shipment, verdict.scanned, site_id, now)
        draft.run_id, draft.requirement, draft.token = run.id, req.key, verdict.token
        if not look.complete:
            return {}
        return _complete(
            uow,
            actor,
            run=run,
            step=step,
            order=order,
            progress=progress,
            facts=facts,
            site_id=site_id,
            site_code=site_code,
            occurred=occurred,
            now=now,
        )

    if look.complete:
        # A savepoint: if the custody rules refuse the step's transitions, nothing of this
        # scan's work stays and the scan is stored as refused.
        with session.begin_nested():
            issued = write()
        if step.countdown == "start":
            minutes = int(order.profile.get("thaw_to_infusion_minutes", DEFAULT_THAW_MINUTES))
            deadline = rules.countdown_deadline(occurred, minutes)
    else:
        issued = write()
    what = verdict.scanned.label
    if verdict.join:
        message = f"Joined '{step.title}' in progress."
    elif look.complete:
        message = f"{what[:1].upper()}{what[1:]} accepted. '{step.title}' is complete."
    else:
        message = f"{what[:1].upper()}{what[1:]} accepted."
    body = _body(
        status="ok" if look.complete else "incomplete",
        message=message,
        step_code=step.code,
        step=step,
        run_key=scan.client_run,
        order=order,
        look=look,
        deadline=deadline,
        offline=scan.offline,
        forced=False,
        deviation=None,
        **issued,
    )
    return _store(session, actor, scan, draft, body, now)


def _note_on_shipment(
    session: Session,
    actor: Principal,
    req: ScanRequirement,
    shipment: Shipment | None,
    scanned: rules.Scanned,
    site_id: int,
    now: datetime,
) -> None:
    """Packing records the shipper, logger and seal it scanned on the shipment."""
    if shipment is None:
        return
    value: int | str | None
    if ScanKind.shipper in req.kinds and shipment.shipper_id is None:
        column, value = "shipper_id", scanned.item_id
    elif req.record:
        column = "tamper_seal" if scanned.kind is ScanKind.seal else "logger_serial"
        value = scanned.value
    else:
        return
    old = getattr(shipment, column)
    if old == value:
        return
    setattr(shipment, column, value)
    record_audit(
        session,
        now=now,
        actor_user_id=actor.user_id,
        action="shipment_recorded",
        entity_type="shipment",
        entity_id=shipment.public_id,
        changes={column: [old, value]},
        site_id=site_id,
    )


# ---------------------------------------------------------------------------------------------
# Checklist answers and signatures on a run in progress
# ---------------------------------------------------------------------------------------------


@dataclass
class _RunScope:
    order: _Order
    run: StepRun
    step: Step
    site_code: str
    facts: _Facts
    progress: rules.Progress
    verified: int


def _run_scope(session: Session, principal: Principal, run_key: str, at: datetime) -> _RunScope:
    """Lock the order of the run this scanner is performing and load what judging needs."""
    if principal.user_id is None:
        raise TrackerError("forbidden", "only a person answers and signs")
    found = _context_run(session, run_key)
    if found is None:
        raise TrackerError("not_found", "no step in progress under this run key")
    order = _lock_order(session, found[1])
    run = _load_run(session, found[0])
    step = order.journey.step(run.step)
    if step is None:
        raise TrackerError("unknown_step", f"'{run.step}' is not in this product's journey")
    if run.status != "open":
        raise TrackerError("wrong_step", f"'{step.title}' is already complete")
    if not (principal.roles_at(run.site_id) & step.roles):
        raise TrackerError("forbidden", f"your role here does not allow '{step.title}'")
    site_code = session.scalar(select(Site.code).where(Site.id == run.site_id))
    facts = _facts(session, order, step, run, run.site_id)
    progress, verified = _progress(session, run, step, order, principal.user_id, at)
    return _RunScope(order, run, step, str(site_code), facts, progress, verified)


def _finish(
    uow: UnitOfWork,
    principal: Principal,
    scope: _RunScope,
    run_key: str,
    message: str,
    now: datetime,
) -> Outcome:
    """After an answer or signature: complete the step if that was all it needed."""
    session = uow.session
    progress, verified = _progress(
        session, scope.run, scope.step, scope.order, principal.user_id or 0, now
    )
    look = rules.outlook(scope.step, progress, scope.facts.expected, verified_people=verified)
    issued: dict[str, Any] = {}
    deadline = _deadline(session, scope.order, scope.step)
    if look.complete:
        try:
            with session.begin_nested():
                issued = _complete(
                    uow,
                    principal,
                    run=scope.run,
                    step=scope.step,
                    order=scope.order,
                    progress=progress,
                    facts=scope.facts,
                    site_id=scope.run.site_id,
                    site_code=scope.site_code,
                    occurred=now,
                    now=now,
                )
        except TrackerError as exc:
            return _run_error(scope, run_key, exc.reason, exc.message)
        message = f"{message} '{scope.step.title}' is complete."
    body = _body(
        status="ok" if look.complete else "incomplete",
        message=message,
        step_code=scope.step.code,
        step=scope.step,
        run_key=run_key,
        order=scope.order,
        look=look,
        deadline=deadline,
        **issued,
    )
    return Outcome(201, body)


def _run_error(scope: _RunScope, run_key: str, reason: str, message: str) -> Outcome:
    body = _body(
        status="error",
        reason=reason,
        message=message,
        step_code=scope.step.code,
        step=scope.step,
        run_key=run_key,
        order=scope.order,
    )
    return Outcome(_http_status("error", reason), body)


def answer_step(
    *,
    uow: UnitOfWork,
    principal: Principal,
    run_key: str,
    answers: Mapping[str, object],
    now: datetime,
) -> Outcome:
    """Record checklist answers for the step this scanner is performing, in the step's order.

    An unexpected answer either refuses (the step cannot go on) or opens a deviation that
    lets this step finish but blocks the next custody step until QA closes it.
    """
    now = require_aware(now)
    session = uow.session
    scope = _run_scope(session, principal, run_key, now)
    step, run = scope.step, scope.run
    stored = dict(run.answers or {})
    opened: list[str] = []
    keys = [r.key for r in step.requirements if r.key in answers]
    unknown = sorted(set(answers) - set(keys))
    if unknown or not keys:
        raise TrackerError("invalid_request", f"no such question in this step: {unknown or '-'}")
    progress = scope.progress
    for key in keys:
        question = step.requirement(key)
        if not isinstance(question, Question):
            raise TrackerError("invalid_request", f"'{key}' is not a question")
        nxt = rules.next_requirement(step, progress, scope.facts.expected)
        if nxt is not question:
            if key in progress.answers:
                return _run_error(scope, run_key, "already_scanned", "Already answered.")
            prompt = nxt.prompt if nxt else "nothing"
            return _run_error(scope, run_key, "out_of_order", f"First: {prompt}.")
        value = answers[key]
        counted, problem = rules.question_verdict(question, value)
        if not counted and problem is None:
            expected = "yes or no" if question.answer_type == "yes_no" else "a written answer"
            raise TrackerError("invalid_request", f"'{key}' needs {expected}")
        record_audit(
            session,
            now=now,
            actor_user_id=principal.user_id,
            action="checklist_answer",
            entity_type="step_run",
            entity_id=str(run.id),
            changes={key: [None, value]},
            site_id=run.site_id,
        )
        if not counted:
            return _run_error(scope, run_key, "checklist_refused", problem or "")
        if problem is not None:
            deviation = open_deviation(
                session,
                order_id=scope.order.id,
                kind="checklist",
                description=f"{step.title}: {problem} (answered {value!r})",
                now=now,
                user_id=principal.user_id,
                run_id=run.id,
                site_id=run.site_id,
            )
            opened.append(deviation.public_id)
        stored[key] = {"value": value, "by": principal.user_id, "at": now.isoformat()}
        progress = dataclasses.replace(progress, answers={**progress.answers, key: value})
    run.answers = stored  # a new dict, so the JSON column is written
    session.flush()
    message = "Answer recorded."
    if opened:
        message += f" Deviation {', '.join(opened)} opened: QA must close it before the next step."
    return _finish(uow, principal, scope, run_key, message, now)


def _signed_content(
    session: Session, order: _Order, step: Step, run: StepRun, progress: rules.Progress
) -> dict[str, Any]:
    """What a step signature covers; a release signature also covers the lot's whole record."""
    content: dict[str, Any] = {
        "order": order.public_id,
        "coi": order.coi,
        "step": step.code,
        "run": run.id,
        "scanned": {k: sorted(v) for k, v in progress.done.items()},
        "answers": dict(progress.answers),
    }
    if step.issues_certificate:
        gate = quality.release_check(session, order.id)
        content["lot"] = quality.lot_record(session, gate.lot)
    return content


def release_signature(session: Session, run_id: int) -> tuple[Signature, dict[str, Any]]:
    """A QA release run's signature and the content it covers, rebuilt from the run's stored
    scans and the lot's record as it is now (``signature_matches`` compares the two)."""
    run = _load_run(session, run_id)
    order = _lock_order(session, run.order_id)
    step = order.journey.step(run.step)
    if step is None or not step.issues_certificate:
        raise TrackerError("invalid_request", "not a release step")
    signature = next(iter(_signatures(session, run)), None)
    if signature is None:
        raise TrackerError("not_found", "this release run has no signature")
    progress, _ = _progress(session, run, step, order, signature.user_id, signature.signed_at)
    return signature, _signed_content(session, order, step, run, progress)


def sign_step(
    *,
    uow: UnitOfWork,
    hasher: PasswordHasher,
    settings: Settings,
    principal: Principal,
    run_key: str,
    password: str,
    meaning: str,
    now: datetime,
) -> Outcome:
    """E-sign the step this scanner is performing (password re-entered, meaning recorded)."""
    now = require_aware(now)
    session = uow.session
    scope = _run_scope(session, principal, run_key, now)
    step, run = scope.step, scope.run
    wanted = rules.signature_requirement(step)
    if wanted is None:
        raise TrackerError("invalid_request", f"'{step.title}' takes no signature")
    if meaning != wanted.meaning:
        raise TrackerError(
            "invalid_request", f"this step is signed with meaning '{wanted.meaning}'"
        )
    nxt = rules.next_requirement(step, scope.progress, scope.facts.expected)
    if nxt is not wanted:
        if nxt is None:
            return _run_error(scope, run_key, "already_scanned", "You have already signed.")
        return _run_error(scope, run_key, "out_of_order", f"First: {nxt.prompt}.")
    content = _signed_content(session, scope.order, step, run, scope.progress)
    signature = sign_record(
        uow=uow,
        hasher=hasher,
        settings=settings,
        user_id=principal.user_id or 0,
        password=password,
        meaning=meaning,
        record_type="step_run",
        record_id=str(run.id),
        content=content,
        now=now,
    )
    return _finish(
        uow, principal, scope, run_key, f"Signed by {signature.printed_name} ({meaning}).", now
    )


# ---------------------------------------------------------------------------------------------
# Deviations: reported by hand, closed by QA
# ---------------------------------------------------------------------------------------------


def _order_for(session: Session, principal: Principal, public_id: str) -> TherapyOrder:
    return custody.lock_order(session, public_id, principal)


def report_deviation(
    *,
    uow: UnitOfWork,
    principal: Principal,
    order_public_id: str,
    description: str,
    now: datetime,
) -> Deviation:
    """Open a deviation by hand; it blocks the order's next custody step like any other."""
    now = require_aware(now)
    session = uow.session
    order = _order_for(session, principal, order_public_id)
    sites = (order.collection_site_id, order.manufacturing_site_id, order.treatment_site_id)
    if not any(principal.has_role_at(CUSTODY_ROLES, s) for s in sites):
        raise TrackerError("forbidden", "you may not report deviations on this order")
    if not description.strip():
        raise TrackerError("reason_required", "describe the deviation")
    return open_deviation(
        session,
        order_id=order.id,
        kind="manual",
        description=description.strip(),
        now=now,
        user_id=principal.user_id,
    )


def close_deviation(
    *,
    uow: UnitOfWork,
    hasher: PasswordHasher,
    settings: Settings,
    principal: Principal,
    deviation_public_id: str,
    reason: str,
    password: str,
    now: datetime,
) -> Deviation:
    """QA closes a deviation with a written reason and an e-signature; the block lifts."""
    now = require_aware(now)
    session = uow.session
    found = session.execute(
        select(Deviation.id, TherapyOrder.public_id)
        .join(TherapyOrder, TherapyOrder.id == Deviation.order_id)
        .where(Deviation.public_id == deviation_public_id)
    ).first()
    if found is None:
        raise TrackerError("not_found", f"no deviation {deviation_public_id}")
    order = _order_for(session, principal, found.public_id)
    sites = (order.collection_site_id, order.manufacturing_site_id, order.treatment_site_id)
    if not any(principal.has_role_at(frozenset({Role.qa}), s) for s in sites):
        raise TrackerError("forbidden", "only QA for this order closes deviations")
    deviation = session.get(Deviation, found.id, populate_existing=True)
    assert deviation is not None
    if deviation.status != "open":
        raise TrackerError("conflict", f"deviation {deviation_public_id} is already closed")
    if not reason or not reason.strip():
        raise TrackerError("reason_required", "closing a deviation needs a reason")
    signature = sign_record(
        uow=uow,
        hasher=hasher,
        settings=settings,
        user_id=principal.user_id or 0,
        password=password,
        meaning="approval",
        record_type="deviation",
        record_id=deviation.public_id,
        content={"description": deviation.description, "reason": reason.strip()},
        now=now,
    )
    deviation.status = "closed"
    deviation.closed_at = now
    deviation.closed_by_id = principal.user_id
    deviation.close_reason = reason.strip()
    deviation.close_signature_id = signature.id
    record_audit(
        session,
        now=now,
        actor_user_id=principal.user_id,
        action="deviation_closed",
        entity_type="deviation",
        entity_id=deviation.public_id,
        changes={"status": ["open", "closed"]},
        reason=reason.strip(),
    )
    session.flush()
    return deviation
