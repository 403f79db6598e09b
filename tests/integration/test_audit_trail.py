"""The audit trail as people search it, its exports, and signed reviews (Annex 11 §9)."""

from __future__ import annotations

import csv
import io
from datetime import timedelta

import pytest
from sqlalchemy import select

from tests.alert_helpers import on_the_road
from tests.conftest import WORLD_PASSWORD
from tests.factories import make_order
from tracker import exports
from tracker import queries_audit
from tracker.domain.errors import TrackerError
from tracker.models import AuditEntry
from tracker.models import Patient
from tracker.models import Signature
from tracker.models import User
from tracker.queries_audit import AuditFilters
from tracker.services import signoffs
from tracker.services.auth import make_hasher


def pseudonym(uow, order):
    return uow.session.scalar(select(Patient.public_id).where(Patient.id == order.patient_id))


def rows(uow, world, who="admin", **filters):
    return queries_audit.export_rows(uow.session, world.principals[who], AuditFilters(**filters))


def test_a_patient_filter_gathers_the_whole_trail_of_that_patient_only(new_uow, world, clock, uow):
    trip = on_the_road(new_uow, world, clock.now())
    make_order(new_uow, world, clock.now(), mrn="MRN-OTHER")
    patient = pseudonym(uow, trip.order)
    found = rows(uow, world, patient=patient)
    kinds = {(r["entity_type"], r["action"]) for r in found}
    assert ("patient", "create") in kinds
    assert ("therapy_order", "create") in kinds
    assert ("item", "custody_transition") in kinds
    assert ("shipment", "create") in kinds
    assert any(e == "item" and "print" in a for e, a in kinds)  # the label print
    others = {r["entity_id"] for r in rows(uow, world)} - {r["entity_id"] for r in found}
    assert others  # the other patient's order (and sites, users) are left out
    assert all(r["entity_id"] != trip.order.public_id for r in rows(uow, world, patient="PT-NONE"))


def test_item_user_site_action_and_day_filters(new_uow, world, clock, uow):
    trip = on_the_road(new_uow, world, clock.now())
    by_item = rows(uow, world, item=trip.bag.public_id)
    assert by_item and {r["entity_id"] for r in by_item} == {trip.bag.public_id}
    by_user = rows(uow, world, user="nurse")
    assert by_user and {r["username"] for r in by_user} == {"nurse"}
    by_site = rows(uow, world, site="CC1")
    assert by_site and {r["site"] for r in by_site} == {"CC1"}
    transitions = rows(uow, world, action="custody_transition")
    assert {r["action"] for r in transitions} == {"custody_transition"}
    today = clock.now().date().isoformat()
    assert rows(uow, world, start=today, end=today)
    tomorrow = (clock.now() + timedelta(days=1)).date().isoformat()
    assert rows(uow, world, start=tomorrow) == []
    with pytest.raises(TrackerError):
        rows(uow, world, start="yesterday")


def test_who_may_read_the_audit_trail(new_uow, world, clock, uow):
    on_the_road(new_uow, world, clock.now())
    for who in ("nurse", "operator", "courier", "infusion"):
        with pytest.raises(TrackerError) as refused:
            rows(uow, world, who=who)
        assert refused.value.reason == "forbidden"
    # Coordinators and QA see what was recorded at their sites.
    assert {r["site"] for r in rows(uow, world, who="coord")} <= {"TC1", "CC1"}
    assert {r["site"] for r in rows(uow, world, who="qa")} <= {"MF1"}


def test_a_coordinator_elsewhere_gets_nothing_for_a_patient_they_cannot_see(
    new_uow, world, clock, uow
):
    trip = on_the_road(new_uow, world, clock.now())
    patient = pseudonym(uow, trip.order)
    assert rows(uow, world, who="coord2", patient=patient) == []
    assert rows(uow, world, who="coord", patient=patient)


def test_the_csv_and_pdf_exports_carry_every_matching_entry(new_uow, world, clock, uow):
    on_the_road(new_uow, world, clock.now())
    found = rows(uow, world)
    table = list(csv.reader(io.StringIO(exports.audit_csv(found).decode("utf-8-sig"))))
    assert table[0] == exports.CSV_COLUMNS
    assert len(table) == len(found) + 1
    assert {r[4] for r in table[1:]} == {r["action"] for r in found}
    pdf = exports.audit_pdf(found, filters="none", generated_at=clock.now(), generated_by="A")
    assert pdf.startswith(b"%PDF") and len(pdf) > 2000


def _review(new_uow, settings, world, clock, scope, password=WORLD_PASSWORD, who="qa"):
    with new_uow() as uow:
        signature = signoffs.sign_audit_review(
            uow=uow,
            hasher=make_hasher(settings),
            settings=settings,
            principal=world.principals[who],
            scope=scope,
            comment="No unexplained change; two corrections had reasons.",
            password=password,
            now=clock.now(),
        )
        uow.commit()
        return signature.record_id


def test_qa_signs_a_review_bound_to_the_exact_entries_seen(new_uow, settings, world, clock, uow):
    on_the_road(new_uow, world, clock.now())
    seen = rows(uow, world, who="qa")
    scope = signoffs.review_scope("site=MF1", seen)
    record_id = _review(new_uow, settings, world, clock, scope)
    with new_uow() as check:
        signature = check.session.scalar(select(Signature).where(Signature.record_id == record_id))
        assert signature.meaning == "review" and signature.printed_name == "Qa User"
        entry = check.session.scalar(select(AuditEntry).where(AuditEntry.action == "audit_review"))
        assert entry.changes["digest"] == [None, scope.digest]
        [listed] = signoffs.reviews(check.session)
    assert listed["entries"] == len(seen) and listed["comment"].startswith("No unexplained")
    # One more entry changes the digest: the same review would not cover it.
    make_order(new_uow, world, clock.now(), mrn="MRN-LATER")
    assert signoffs.review_scope("x", rows(uow, world)).digest != scope.digest


def test_only_qa_signs_reviews_and_a_wrong_password_counts_as_a_failure(
    new_uow, settings, world, clock, uow
):
    scope = signoffs.review_scope("all", rows(uow, world))
    with pytest.raises(TrackerError) as refused:
        _review(new_uow, settings, world, clock, scope, who="coord")
    assert refused.value.reason == "forbidden"
    with pytest.raises(TrackerError) as wrong:
        _review(new_uow, settings, world, clock, scope, password="guess")
    assert wrong.value.reason == "signature_failed"
    with new_uow() as check:
        assert check.session.get(User, world.users["qa"].id).failed_logins == 1
        assert check.session.scalar(select(Signature.id)) is None
