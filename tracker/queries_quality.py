"""Read models of the quality gates for pages and the API (plain dicts, scoped per principal)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from tracker.domain import identifiers
from tracker.domain import label_rules
from tracker.domain import quality as q
from tracker.domain.access import Role
from tracker.domain.custody import ItemKind
from tracker.domain.errors import TrackerError
from tracker.models import Alert
from tracker.models import Deviation
from tracker.models import Item
from tracker.models import ProductProfile
from tracker.models import ReleaseCertificate
from tracker.models import Signature
from tracker.models import Site
from tracker.models import TherapyOrder
from tracker.models import User
from tracker.models_quality import AcceptanceMeasurement
from tracker.models_quality import LotRelease
from tracker.models_quality import ManufacturingLot
from tracker.models_quality import MaterialAcceptance
from tracker.models_quality import PhysicianAcknowledgement
from tracker.queries import coi_display
from tracker.services import quality
from tracker.services.principals import Principal
from tracker.services.principals import scope_orders


def _names(session: Session, ids: set[int | None]) -> dict[int, str]:
    wanted = {i for i in ids if i is not None}
    if not wanted:
        return {}
    return dict(session.execute(select(User.id, User.full_name).where(User.id.in_(wanted))).all())


def _order(session: Session, principal: Principal, public_id: str) -> TherapyOrder:
    order = session.scalar(
        scope_orders(select(TherapyOrder), principal).where(TherapyOrder.public_id == public_id)
    )
    if order is None:
        raise TrackerError("not_found", f"no order {public_id}")
    return order


def _site(session: Session, site_id: int) -> Site:
    site = session.get(Site, site_id)
    assert site is not None
    return site


def acceptance_rows(session: Session, order_id: int) -> list[dict[str, Any]]:
    rows = list(
        session.scalars(
            select(MaterialAcceptance)
            .where(MaterialAcceptance.order_id == order_id)
            .order_by(MaterialAcceptance.id)
        )
    )
    names = _names(session, {r.decided_by for r in rows})
    superseded = {r.supersedes_id for r in rows if r.supersedes_id}
    out = []
    for r in rows:
        measurements = session.scalars(
            select(AcceptanceMeasurement)
            .where(AcceptanceMeasurement.acceptance_id == r.id)
            .order_by(AcceptanceMeasurement.id)
        )
        criteria = {c["code"]: c for c in r.criteria.get("acceptance", [])}
        deviation = session.get(Deviation, r.deviation_id) if r.deviation_id else None
        out.append(
            {
                "id": r.id,
                "decision": r.decision,
                "decided_at": r.decided_at,
                "decided_by": names.get(r.decided_by),
                "current": r.id not in superseded,
                "supersedes": r.supersedes_id,
                "reason": r.reason,
                "deviation": deviation.public_id if deviation else None,
                "deviation_status": deviation.status if deviation else None,
                "measurements": [
                    {
                        "criterion": m.criterion,
                        "name": criteria.get(m.criterion, {}).get("name", m.criterion),
                        "value": m.value,
                        "unit": m.unit,
                        "converted": m.value_in_criterion_unit,
                        "criterion_unit": criteria.get(m.criterion, {}).get("unit", m.unit),
                        "limits": _limits(criteria.get(m.criterion, {})),
                        "outcome": m.outcome,
                    }
                    for m in measurements
                ],
            }
        )
    return out


def _limits(criterion: dict[str, Any]) -> str:
    low, high, unit = criterion.get("min"), criterion.get("max"), criterion.get("unit", "")
    if low is not None and high is not None:
        return f"{low:g}–{high:g} {unit}"
    if low is not None:
        return f"≥ {low:g} {unit}"
    if high is not None:
        return f"≤ {high:g} {unit}"
    return ""


def _estimate_dict(est: q.ReleaseEstimate) -> dict[str, Any]:
    return {"expected_at": est.expected_at, "slowest": est.slowest, "late": list(est.late)}


def lot_summary(
    session: Session,
    lot: ManufacturingLot,
    now: datetime,
    states: list[q.TestState] | None = None,
) -> dict[str, Any]:
    if states is None:
        states = quality.test_states(session, lot)
    state = q.lot_state(states)
    est = quality.estimate(session, lot, now, states)
    return {
        "code": lot.code,
        "status": lot.status,
        "process": lot.process,
        "site": _site(session, lot.site_id).code,
        "started_at": lot.started_at,
        "completed_at": lot.completed_at,
        "readiness": state.readiness.value,
        "pending": list(state.pending),
        "unreviewed": list(state.unreviewed),
        "oos": list(state.oos),
        "expected_release": _estimate_dict(est),
    }


def order_quality(
    session: Session, principal: Principal, public_id: str, now: datetime
) -> dict[str, Any]:
    """The quality side of one order: acceptance history, lots, expected release vs the plan."""
    order = _order(session, principal, public_id)
    profile = session.get(ProductProfile, order.product_profile_id)
    assert profile is not None
    block = quality.quality_block(profile.data)
    lots = list(
        session.scalars(
            select(ManufacturingLot)
            .where(ManufacturingLot.order_id == order.id)
            .order_by(ManufacturingLot.id)
        )
    )
    current = quality.current_acceptance(session, order.id)
    received = session.scalar(
        select(Item.id).where(
            Item.order_id == order.id,
            Item.kind == ItemKind.apheresis_bag.value,
            Item.state.in_(["received", "stored"]),
            Item.site_id == order.manufacturing_site_id,
        )
    )
    rejection = session.scalar(
        select(Alert)
        .where(Alert.order_id == order.id, Alert.dedupe_key.like("quality:rejected:%"))
        .order_by(Alert.id.desc())
        .limit(1)
    )
    lot = quality.order_lot(session, order.id)
    ld = quality.planned_ld_start(session, order.id)
    summary = lot_summary(session, lot, now) if lot else None
    expected = summary["expected_release"]["expected_at"] if summary else None
    return {
        "order": {
            "public_id": order.public_id,
            "coi": coi_display(order.coi),
            "patient": order.patient.public_id,
            "product": profile.name,
            "manufacturing_site": _site(session, order.manufacturing_site_id).code,
        },
        "criteria": block.get("acceptance", []),
        "process": block.get("process"),
        "decision": current.decision if current else None,
        "current_acceptance": current.id if current else None,
        "awaiting_acceptance": received is not None and current is None,
        "acceptances": acceptance_rows(session, order.id),
        "recollection": (
            {
                "alert": rejection.id,
                "why": rejection.details.get("why"),
                "earliest_collection": rejection.details.get("earliest_collection"),
                "plan": rejection.details.get("plan"),
                "moves": rejection.details.get("moves", []),
                "problems": rejection.details.get("problems", []),
            }
            if rejection is not None and current is not None and current.decision == "rejected"
            else None
        ),
        "lots": [lot_summary(session, x, now) for x in lots],
        "expected_release": expected,
        "ld_start": ld,
        "release_after_ld": bool(expected and ld and expected > ld),
        "may_record": principal.has_role_at(quality.QUALITY_ROLES, order.manufacturing_site_id),
    }


def lot_detail(session: Session, principal: Principal, code: str, now: datetime) -> dict[str, Any]:
    """One lot: its tests with every result (corrections too), readiness and release."""
    lot = session.scalar(select(ManufacturingLot).where(ManufacturingLot.code == code))
    if lot is None:
        raise TrackerError("not_found", f"no lot {code}")
    order = session.scalar(
        scope_orders(select(TherapyOrder), principal).where(TherapyOrder.id == lot.order_id)
    )
    if order is None:
        raise TrackerError("not_found", f"no lot {code}")
    results = quality.results_by_test(session, lot.id)
    user_ids: set[int | None] = set()
    for rows in results.values():
        for r in rows:
            user_ids |= {r.recorded_by, r.reviewed_by}
    names = _names(session, user_ids)
    # What this person may do on the lot now; the service refuses the rest with a reason.
    is_open = lot.status in quality.OPEN_LOT
    may_review = principal.has_role_at(frozenset({Role.qa}), lot.site_id)
    tests = []
    for t in quality.lot_tests(session, lot.id):
        rows = results.get(t.id, [])
        cur = quality.current_result(rows)
        if cur is None:
            status = "late" if t.due_at <= now else "pending"
        elif cur.reviewed_by is None:
            status = f"{cur.outcome}, awaiting review"
        else:
            status = cur.outcome
        tests.append(
            {
                "code": t.code,
                "method": t.method,
                "spec": q.describe_spec(t.spec),
                "spec_kind": t.spec.get("kind"),
                "unit": t.spec.get("unit"),
                "started_at": t.started_at,
                "turnaround_hours": t.expected_turnaround_hours,
                "due_at": t.due_at,
                "status": status,
                "current": cur.id if cur else None,
                "results": [
                    {
                        "id": r.id,
                        "value": r.value,
                        "unit": r.unit,
                        "outcome": r.outcome,
                        "recorded_at": r.recorded_at,
                        "recorded_by": names.get(r.recorded_by),
                        "recorded_by_id": r.recorded_by,
                        "reviewed_at": r.reviewed_at,
                        "reviewed_by": names.get(r.reviewed_by) if r.reviewed_by else None,
                        "supersedes": r.supersedes_id,
                        "reason": r.reason,
                        "current": cur is not None and r.id == cur.id,
                        # reviewed once, by someone other than the person who recorded it
                        "may_review": is_open
                        and may_review
                        and cur is not None
                        and r.id == cur.id
                        and r.reviewed_by is None
                        and r.recorded_by != principal.user_id,
                    }
                    for r in rows
                ],
            }
        )
    release = session.scalar(select(LotRelease).where(LotRelease.lot_id == lot.id))
    release_out = None
    if release is not None:
        cert = session.get(ReleaseCertificate, release.certificate_id)
        sig = session.get(Signature, release.signature_id)
        assert cert is not None and sig is not None
        release_out = {
            "kind": release.kind,
            "released_at": release.released_at,
            "certificate": cert.code,
            "signed_by": sig.printed_name,
            "meaning": sig.meaning,
            "record_hash": sig.record_hash,
            "signature_matches_record": _signature_still_matches(session, sig, lot),
            "physician_name": release.physician_name,
            "physician_statement": release.physician_statement,
            "physician_acknowledged_at": release.physician_acknowledged_at,
        }
    acks = list(
        session.scalars(
            select(PhysicianAcknowledgement)
            .where(PhysicianAcknowledgement.lot_id == lot.id)
            .order_by(PhysicianAcknowledgement.id)
        )
    )
    covering = quality.covering_acknowledgement(session, lot)
    summary = lot_summary(session, lot, now)
    ld = quality.planned_ld_start(session, lot.order_id)
    expected = summary["expected_release"]["expected_at"]
    return {
        **summary,
        "order": order.public_id,
        "coi": coi_display(order.coi),
        "patient": order.patient.public_id,
        "acceptance": next(
            (a for a in acceptance_rows(session, order.id) if a["id"] == lot.acceptance_id), None
        ),
        "tests": tests,
        "release": release_out,
        "acknowledgements": [
            {
                "id": a.id,
                "physician_name": a.physician_name,
                "statement": a.statement,
                "acknowledged_at": a.acknowledged_at,
                "tests": a.oos_results.get("tests", []),
                "covers_current": covering is not None and covering.id == a.id,
            }
            for a in acks
        ],
        "ld_start": ld,
        "release_after_ld": bool(expected and ld and expected > ld),
        "may_record": is_open and principal.has_role_at(quality.QUALITY_ROLES, lot.site_id),
        "may_review": may_review,
        "user_id": principal.user_id,
    }


def _signature_still_matches(session: Session, sig: Signature, lot: ManufacturingLot) -> bool:
    """Whether the lot part of the QA release signature still matches the lot's record.

    The step signature also covers the run's scans; this re-checks the lot's record only,
    comparing it with what the certificate froze at release."""
    cert = session.scalar(
        select(ReleaseCertificate).where(ReleaseCertificate.signature_id == sig.id)
    )
    frozen = (cert.items or {}).get("lot_record_hash") if cert else None
    return frozen is None or frozen == quality.lot_record_hash(session, lot)


def lots(session: Session, principal: Principal, now: datetime) -> list[dict[str, Any]]:
    """Lots of the orders the principal can see, open ones first."""
    visible = scope_orders(select(TherapyOrder.id), principal)
    # The orders come with their lots (the estimate reads each order's profile from the
    # session), and every lot's tests and results in two statements: no query per lot.
    rows = session.execute(
        select(ManufacturingLot, TherapyOrder)
        .join(TherapyOrder, TherapyOrder.id == ManufacturingLot.order_id)
        .where(ManufacturingLot.order_id.in_(visible.scalar_subquery()))
        .order_by(ManufacturingLot.id.desc())
    ).all()
    states = quality.test_states_of(session, [lot.id for lot, _ in rows])
    out = [
        {**lot_summary(session, lot, now, states[lot.id]), "order": order.public_id}
        for lot, order in rows
    ]
    out.sort(key=lambda r: (r["status"] not in quality.OPEN_LOT, r["code"]))
    return out


def awaiting_acceptance(session: Session, principal: Principal) -> list[dict[str, Any]]:
    """Orders whose apheresis was received at the manufacturing site, without a decision."""
    visible = scope_orders(select(TherapyOrder), principal)
    orders = session.scalars(
        visible.where(
            select(Item.id)
            .where(
                Item.order_id == TherapyOrder.id,
                Item.kind == ItemKind.apheresis_bag.value,
                Item.state.in_(["received", "stored"]),
                Item.site_id == TherapyOrder.manufacturing_site_id,
            )
            .exists()
        ).order_by(TherapyOrder.id)
    )
    out = []
    for order in orders:
        current = quality.current_acceptance(session, order.id)
        if current is None or current.decision == "rejected":
            out.append(
                {
                    "public_id": order.public_id,
                    "coi": coi_display(order.coi),
                    "patient": order.patient.public_id,
                    "decision": current.decision if current else None,
                }
            )
    return out


def release_certificate(session: Session, principal: Principal, code: str) -> dict[str, Any]:
    """What the release-for-infusion certificate shows (no patient identity)."""
    cert = session.scalar(select(ReleaseCertificate).where(ReleaseCertificate.code == code))
    if cert is None:
        raise TrackerError("not_found", f"no certificate {code}")
    order = session.scalar(
        scope_orders(select(TherapyOrder), principal).where(TherapyOrder.id == cert.order_id)
    )
    if order is None:
        raise TrackerError("not_found", f"no certificate {code}")
    lot = session.scalar(
        select(ManufacturingLot).where(ManufacturingLot.code == (cert.items or {}).get("lot"))
    )
    if lot is None:
        raise TrackerError("not_found", f"certificate {code} names no lot")
    sig = session.get(Signature, cert.signature_id)
    assert sig is not None
    release = session.scalar(select(LotRelease).where(LotRelease.lot_id == lot.id))
    profile = session.get(ProductProfile, order.product_profile_id)
    assert profile is not None
    bags = []
    for public_id in cert.items.get("bags", []):
        item = session.scalar(select(Item).where(Item.public_id == public_id))
        if item is None or item.din is None:
            continue
        set_size = max(
            len(list(session.scalars(select(Item.id).where(Item.din == item.din)))),
            item.container,
        )
        flags = label_rules.din_flags(item.container, set_size, reprint=False)
        grouped, check = identifiers.format_din_eye_readable(item.din)
        bags.append(
            {
                "public_id": public_id,
                "din": f"{grouped} {check}",
                "barcode": identifiers.din_barcode_data(item.din, flags),
            }
        )
    results = quality.results_by_test(session, lot.id)
    names = _names(session, {r.recorded_by for rows in results.values() for r in rows})
    names |= _names(session, {r.reviewed_by for rows in results.values() for r in rows})
    tests = []
    for t in quality.lot_tests(session, lot.id):
        cur = quality.current_result(results.get(t.id, []))
        tests.append(
            {
                "code": t.code,
                "method": t.method,
                "spec": q.describe_spec(t.spec),
                "value": cur.value if cur else "-",
                "unit": cur.unit if cur else None,
                "outcome": cur.outcome if cur else "pending",
                "recorded_by": names.get(cur.recorded_by) if cur else "-",
                "reviewed_by": names.get(cur.reviewed_by) if cur and cur.reviewed_by else None,
            }
        )
    coi = coi_display(order.coi)
    return {
        "code": cert.code,
        "kind": cert.items.get("kind", release.kind if release else "standard"),
        "issued_at": cert.issued_at,
        "lot": lot.code,
        "process": lot.process,
        "site": _site(session, lot.site_id).code,
        "coi": f"{coi['eye_readable']} {coi['check']}",
        "patient": order.patient.public_id,
        "product": profile.name,
        "signed_by": sig.printed_name,
        "meaning": sig.meaning,
        "signed_at": sig.signed_at,
        "record_hash": sig.record_hash,
        "physician_name": release.physician_name if release else None,
        "physician_statement": release.physician_statement if release else None,
        "physician_acknowledged_at": release.physician_acknowledged_at if release else None,
        "bags": bags,
        "tests": tests,
    }
