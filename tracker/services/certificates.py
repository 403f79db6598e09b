"""Chain-of-identity certificates: a JSON bundle an auditor verifies offline, its PDF, and
QA's sign-off of the chain as it stands.

The bundle holds the order's custody events exactly as hashed (the fields covered by each
hash, in canonical JSON form), the signatures bound to the order's records, and a manifest
with digests of both sections. ``tracker/verify_certificate.py`` checks it with the standard
library only. No patient identity goes in: the patient appears by pseudonym.
"""

from __future__ import annotations

import hashlib
import json
from datetime import datetime
from typing import Any

from argon2 import PasswordHasher
from sqlalchemy import or_
from sqlalchemy import select
from sqlalchemy.orm import Session

from tracker.clock import require_aware
from tracker.config import Settings
from tracker.domain import chain
from tracker.domain.access import Role
from tracker.domain.errors import TrackerError
from tracker.domain.signatures import SIGNATURE_MEANINGS
from tracker.models import CustodyEvent
from tracker.models import Deviation
from tracker.models import Item
from tracker.models import QaDisposition
from tracker.models import Shipment
from tracker.models import Signature
from tracker.models import Site
from tracker.models import StepRun
from tracker.models import TherapyOrder
from tracker.models import User
from tracker.services.audit import record_audit
from tracker.services.auth import sign_record
from tracker.services.custody import event_fields
from tracker.services.custody import order_chain_key
from tracker.services.principals import Principal
from tracker.services.principals import scope_orders
from tracker.unit_of_work import UnitOfWork

FORMAT = "coi-certificate"
VERSION = 1
HASH_RULE = (
    "event.hash = sha256(prev_hash + '\\n' + canonical_json(event.fields)); the first "
    "prev_hash is 64 zeros; canonical_json sorts keys, uses ',' and ':' separators, ASCII "
    "only, and writes UTC times with microseconds and 'Z'. signature.record_hash = "
    "sha256(canonical_json({'type': record_type, 'id': record_id, 'content': content}))."
)
SIGN_OFF_ROLES = frozenset({Role.qa})
SIGN_OFF_MEANINGS = ("review", "approval")


def section_digest(value: Any) -> str:
    """SHA-256 of a section's canonical JSON (what the verifier recomputes)."""
    return hashlib.sha256(
        json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=True).encode()
    ).hexdigest()


def _plain(fields: dict[str, Any]) -> Any:
    """The fields as the hash saw them: the canonical JSON, parsed back into plain values."""
    return json.loads(chain.canonical_json(fields))


def _iso(value: datetime) -> str:
    return require_aware(value).isoformat(timespec="microseconds").replace("+00:00", "Z")


def visible_order(session: Session, principal: Principal, public_id: str) -> TherapyOrder:
    order = session.scalar(
        scope_orders(select(TherapyOrder), principal).where(TherapyOrder.public_id == public_id)
    )
    if order is None:
        raise TrackerError("not_found", f"no order {public_id}")
    return order


def disposition_content(d: QaDisposition, item: str) -> dict[str, Any]:
    """What a QA disposition signature covers (see tracker.services.signoffs)."""
    return {
        "item": item,
        "decision": d.decision,
        "comment": d.comment,
        "excursion_id": d.excursion_id,
        "decided_at": _iso(d.decided_at),
    }


def certificate_content(order: TherapyOrder, event_count: int, head_hash: str) -> dict[str, Any]:
    """What a certificate sign-off covers: the chain up to one event."""
    return {"coi": order.coi, "event_count": event_count, "head_hash": head_hash}


def certificate_record_id(order: TherapyOrder, event_count: int) -> str:
    return f"{order.public_id}@{event_count}"


def signature_filter(
    order: TherapyOrder,
    items: dict[int, str],
    ships: dict[int, str],
    runs: dict[int, str],
    deviations: list[Deviation],
) -> Any:
    """Every signature bound to one order's records (the order, its bags and shipments, its
    step runs and deviations, and sign-offs of its chain)."""
    return or_(
        Signature.record_id.in_({order.public_id, *items.values(), *ships.values()}),
        # certificate sign-offs are recorded as "<order>@<event count>"
        (Signature.record_type == "coi_certificate")
        & Signature.record_id.like(f"{order.public_id}@%"),
        (Signature.record_type == "step_run")
        & Signature.record_id.in_([str(r) for r in runs] or ["-"]),
        (Signature.record_type == "deviation")
        & Signature.record_id.in_([d.public_id for d in deviations] or ["-"]),
    )


def _signatures(
    session: Session,
    order: TherapyOrder,
    items: dict[int, str],
    ships: dict[int, str],
    hashes: list[str],
) -> list[dict[str, Any]]:
    runs = {
        run_id: step
        for run_id, step in session.execute(
            select(StepRun.id, StepRun.step).where(StepRun.order_id == order.id)
        )
    }
    deviations = list(session.scalars(select(Deviation).where(Deviation.order_id == order.id)))
    rows = session.scalars(
        select(Signature)
        .where(signature_filter(order, items, ships, runs, deviations))
        .order_by(Signature.signed_at, Signature.id)
    )
    closing = {d.close_signature_id: d for d in deviations if d.close_signature_id}
    by_item = {v: k for k, v in items.items()}
    out = []
    for s in rows:
        content: dict[str, Any] | None = None
        note = "the signed content is not kept apart from the record; its hash is listed"
        if s.record_type == "coi_certificate":
            count = int(s.record_id.rsplit("@", 1)[1])
            if 1 <= count <= len(hashes):
                content = certificate_content(order, count, hashes[count - 1])
                note = f"signs the chain up to event #{count}"
        elif s.record_type == "qa_disposition" and s.record_id in by_item:
            decision = session.scalar(
                select(QaDisposition).where(
                    QaDisposition.item_id == by_item[s.record_id],
                    QaDisposition.decided_at == s.signed_at,
                    QaDisposition.decided_by_user_id == s.user_id,
                )
            )
            if decision is not None:
                content = disposition_content(decision, s.record_id)
                note = "QA disposition of a bag after a temperature excursion"
        elif s.record_type == "deviation" and s.id in closing:
            deviation = closing[s.id]
            # What tracker.services.scans.close_deviation signs.
            content = {"description": deviation.description, "reason": deviation.close_reason}
            note = f"QA closed deviation {deviation.public_id}"
        elif s.record_type == "step_run":
            note = f"step {runs.get(int(s.record_id), '?')} signed; its content hash is listed"
        out.append(
            {
                "id": s.id,
                "printed_name": s.printed_name,
                "meaning": s.meaning,
                "meaning_text": SIGNATURE_MEANINGS.get(s.meaning, s.meaning),
                "signed_at": _iso(s.signed_at),
                "record_type": s.record_type,
                "record_id": s.record_id,
                "record_hash": s.record_hash,
                "content": content,
                "note": note,
            }
        )
    return out


def build_bundle(
    session: Session, principal: Principal, public_id: str, *, now: datetime
) -> dict[str, Any]:
    """The certificate bundle for one order, as of now."""
    order = visible_order(session, principal, public_id)
    # (Result objects have keys(), so dict() would take them for mappings: build explicitly.)
    items = {
        k: v
        for k, v in session.execute(
            select(Item.id, Item.public_id).where(Item.order_id == order.id)
        )
    }
    ships = {
        k: v
        for k, v in session.execute(
            select(Shipment.id, Shipment.public_id).where(Shipment.order_id == order.id)
        )
    }
    rows = session.execute(
        select(CustodyEvent, Site, User)
        .outerjoin(Site, Site.id == CustodyEvent.site_id)
        .outerjoin(User, User.id == CustodyEvent.actor_user_id)
        .where(CustodyEvent.chain_key == order_chain_key(order))
        .order_by(CustodyEvent.seq)
    ).all()
    events = []
    chained = []
    for e, site, actor in rows:
        fields = event_fields(e)
        chained.append(chain.ChainedEvent(e.seq, e.prev_hash, e.hash, fields))
        events.append(
            {
                "seq": e.seq,
                "prev_hash": e.prev_hash,
                "hash": e.hash,
                "fields": _plain(fields),
                # Readable names for the ids in the fields; covered by the manifest digest,
                # not by the event hash.
                "refs": {
                    "subject": items.get(e.item_id or 0) or ships.get(e.shipment_id or 0),
                    "site": site.code if site else None,
                    "actor": actor.full_name if actor else ("device" if e.device_id else None),
                },
            }
        )
    breaks = chain.verify(chained)
    hashes = [e["hash"] for e in events]
    signatures = _signatures(session, order, items, ships, hashes)
    profile = order.product_profile
    manifest = {
        "format": FORMAT,
        "version": VERSION,
        "order": order.public_id,
        "coi": order.coi,
        "patient": order.patient.public_id,
        "product": {"code": profile.code, "version": profile.version, "name": profile.name},
        "sites": {
            "collection": order.collection_site.name,
            "manufacturing": order.manufacturing_site.name,
            "treatment": order.treatment_site.name,
        },
        "chain_key": order_chain_key(order),
        "genesis": chain.GENESIS,
        "event_count": len(events),
        "head_hash": hashes[-1] if hashes else chain.GENESIS,
        "server_verdict": "intact" if not breaks else "broken",
        "generated_at": _iso(now),
        "generated_by": principal.name,
        "hash_rule": HASH_RULE,
        "sections": {"events": section_digest(events), "signatures": section_digest(signatures)},
    }
    return {
        "manifest": manifest,
        "events": events,
        "signatures": signatures,
        "manifest_sha256": section_digest(manifest),
    }


def verdict_of(bundle: dict[str, Any]) -> dict[str, Any]:
    """The server's own check of the chain in a bundle (the same rules as the verifier)."""
    events = [
        chain.ChainedEvent(e["seq"], e["prev_hash"], e["hash"], e["fields"])
        for e in bundle["events"]
    ]
    breaks = chain.verify(events)
    return {"intact": not breaks, "breaks": [{"seq": b.seq, "problem": b.problem} for b in breaks]}


def issue_certificate(
    *, uow: UnitOfWork, principal: Principal, order_public_id: str, fmt: str, now: datetime
) -> dict[str, Any]:
    """Build the bundle and record in the audit trail that it was issued, and to whom."""
    now = require_aware(now)
    bundle = build_bundle(uow.session, principal, order_public_id, now=now)
    m = bundle["manifest"]
    record_audit(
        uow.session,
        now=now,
        actor_user_id=principal.user_id,
        action="certificate_issued",
        entity_type="therapy_order",
        entity_id=order_public_id,
        changes={
            "format": [None, fmt],
            "head_hash": [None, m["head_hash"]],
            "event_count": [None, m["event_count"]],
        },
    )
    return bundle


def sign_certificate(
    *,
    uow: UnitOfWork,
    hasher: PasswordHasher,
    settings: Settings,
    principal: Principal,
    order_public_id: str,
    password: str,
    meaning: str,
    now: datetime,
) -> Signature:
    """QA signs the chain of identity as it stands (re-entering the password, 11.200)."""
    now = require_aware(now)
    session = uow.session
    order = visible_order(session, principal, order_public_id)
    sites = (order.collection_site_id, order.manufacturing_site_id, order.treatment_site_id)
    # Authority is checked before the signature ceremony (11.10(g)).
    if principal.user_id is None or not (
        principal.is_admin or any(principal.has_role_at(SIGN_OFF_ROLES, s) for s in sites)
    ):
        raise TrackerError("forbidden", "only QA of this order's sites signs its certificate")
    if meaning not in SIGN_OFF_MEANINGS:
        raise TrackerError("invalid_request", "a certificate is signed as review or approval")
    events = list(
        session.scalars(
            select(CustodyEvent)
            .where(CustodyEvent.chain_key == order_chain_key(order))
            .order_by(CustodyEvent.seq)
        )
    )
    if not events:
        raise TrackerError("invalid_request", "there is no custody event to sign yet")
    chained = [chain.ChainedEvent(e.seq, e.prev_hash, e.hash, event_fields(e)) for e in events]
    if chain.verify(chained):
        raise TrackerError("conflict", "the hash chain is broken; it cannot be signed")
    head = events[-1]
    return sign_record(
        uow=uow,
        hasher=hasher,
        settings=settings,
        user_id=principal.user_id,
        password=password,
        meaning=meaning,
        record_type="coi_certificate",
        record_id=certificate_record_id(order, head.seq),
        content=certificate_content(order, head.seq, head.hash),
        now=now,
    )
