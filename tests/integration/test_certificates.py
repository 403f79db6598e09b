"""Chain-of-identity certificates: the bundle verifies offline, every kind of tampering is
caught, signatures bind to what they signed, and the verifier needs only the standard library."""

from __future__ import annotations

import ast
import copy
import json
import os
import subprocess
import sys
from datetime import UTC
from datetime import datetime
from datetime import timedelta
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st
from sqlalchemy import select

from tests.alert_helpers import ingest
from tests.alert_helpers import on_the_road
from tests.alert_helpers import series
from tests.conftest import WORLD_PASSWORD
from tracker import verify_certificate as verifier
from tracker.domain import chain
from tracker.domain.alerting import Decision
from tracker.domain.errors import TrackerError
from tracker.domain.signatures import record_hash
from tracker.models import AuditEntry
from tracker.models import QaDisposition
from tracker.models import User
from tracker.services import certificates
from tracker.services import signoffs
from tracker.services.auth import make_hasher

VERIFIER = Path(verifier.__file__)


@pytest.fixture
def trip(new_uow, world, clock):
    """A fresh bag on the road with a 40-minute warm excursion (an alarm that holds the bag)."""
    trip = on_the_road(new_uow, world, clock.now())
    ingest(new_uow, trip, series(trip.packed_at, [9.0] * 8 + [5.0]), clock.now())
    return trip


def bundle_of(new_uow, world, order, now, who="coord"):
    with new_uow() as uow:
        return certificates.build_bundle(
            uow.session, world.principals[who], order.public_id, now=now
        )


def verify(bundle, head=None):
    problems, notes = verifier.verify_bundle(json.loads(json.dumps(bundle)), expected_head=head)
    return problems, notes


def reseal(bundle):
    """What a forger with the rules (but not the real head) can do: recompute every hash."""
    prev = chain.GENESIS
    for event in bundle["events"]:
        event["prev_hash"] = prev
        event["hash"] = verifier.event_hash(prev, event["fields"])
        prev = event["hash"]
    m = bundle["manifest"]
    m["event_count"] = len(bundle["events"])
    m["head_hash"] = prev
    m["sections"] = {
        "events": certificates.section_digest(bundle["events"]),
        "signatures": certificates.section_digest(bundle["signatures"]),
    }
    bundle["manifest_sha256"] = certificates.section_digest(m)
    return bundle


def test_a_fresh_bundle_verifies_offline(trip, new_uow, world, clock):
    bundle = bundle_of(new_uow, world, trip.order, clock.now())
    problems, _ = verify(bundle, head=bundle["manifest"]["head_hash"])
    assert problems == []
    m = bundle["manifest"]
    assert m["event_count"] == len(bundle["events"]) >= 7
    assert m["coi"] == trip.order.coi and m["server_verdict"] == "intact"
    assert bundle["events"][0]["prev_hash"] == chain.GENESIS


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("to_state", "discarded"),
        ("occurred_at", "2020-01-01T00:00:00.000000Z"),
        ("actor_user_id", 999),
        ("site_id", None),
        ("details", {"din": "W999926999999"}),
    ],
)
def test_editing_any_hashed_field_breaks_verification(trip, new_uow, world, clock, field, value):
    bundle = bundle_of(new_uow, world, trip.order, clock.now())
    bundle["events"][2]["fields"][field] = value
    problems, _ = verify(bundle)
    assert "event #3: stored hash does not match the event content" in problems


def test_removing_or_reordering_events_breaks_verification(trip, new_uow, world, clock):
    bundle = bundle_of(new_uow, world, trip.order, clock.now())
    removed = copy.deepcopy(bundle)
    del removed["events"][3]
    problems, _ = verify(removed)
    assert any("sequence gap" in p for p in problems)
    assert any("previous-hash link" in p for p in problems)
    swapped = copy.deepcopy(bundle)
    swapped["events"][1], swapped["events"][2] = swapped["events"][2], swapped["events"][1]
    assert verify(swapped)[0]
    truncated = copy.deepcopy(bundle)
    truncated["events"].pop()
    assert "manifest head_hash is not the hash of the last event" in verify(truncated)[0]


def test_a_resealed_forgery_is_caught_by_the_head_printed_on_the_certificate(
    trip, new_uow, world, clock
):
    bundle = bundle_of(new_uow, world, trip.order, clock.now())
    real_head = bundle["manifest"]["head_hash"]
    forged = copy.deepcopy(bundle)
    forged["events"][1]["fields"]["to_state"] = "discarded"
    reseal(forged)
    assert verify(forged)[0] == []  # internally consistent: hashes alone cannot tell
    assert verify(forged, head=real_head)[0] == ["head hash differs from the one given with --head"]


def test_editing_the_manifest_or_refs_breaks_verification(trip, new_uow, world, clock):
    bundle = bundle_of(new_uow, world, trip.order, clock.now())
    renamed = copy.deepcopy(bundle)
    renamed["manifest"]["patient"] = "PT-SOMEONE-ELSE"
    assert "manifest_sha256 does not match the manifest" in verify(renamed)[0]
    relabelled = copy.deepcopy(bundle)
    relabelled["events"][0]["refs"]["actor"] = "Someone Else"
    assert "the events section does not match the manifest's digest" in verify(relabelled)[0]
    wrong_chain = copy.deepcopy(bundle)
    wrong_chain["manifest"]["chain_key"] = "coi:CHOTHER"
    assert any("belongs to chain" in p for p in verify(wrong_chain)[0])


def test_the_command_line_verifier_runs_alone_and_exits_0_or_1(
    trip, new_uow, world, clock, tmp_path
):
    bundle = bundle_of(new_uow, world, trip.order, clock.now())
    good = tmp_path / "bundle.json"
    good.write_text(json.dumps(bundle, indent=1))
    bad = tmp_path / "tampered.json"
    tampered = copy.deepcopy(bundle)
    tampered["events"][-1]["fields"]["to_state"] = "infused"
    bad.write_text(json.dumps(tampered))
    # The single file, copied elsewhere, run with no access to the tracker package.
    lonely = tmp_path / "verify_certificate.py"
    lonely.write_text(VERIFIER.read_text())
    env = {"PATH": os.environ.get("PATH", ""), "PYTHONNOUSERSITE": "1"}

    def run(*args: str, module: bool = False) -> subprocess.CompletedProcess[str]:
        if module:  # python -m tracker.verify_certificate from a checkout
            command = [sys.executable, "-m", "tracker.verify_certificate"]
            environment = {**env, "PYTHONPATH": str(VERIFIER.parents[1])}
        else:  # isolated mode: no site-packages, no tracker on the path
            command, environment = [sys.executable, "-I", str(lonely)], env
        return subprocess.run(
            [*command, *args],
            capture_output=True,
            text=True,
            cwd=tmp_path,
            env=environment,
            check=False,
        )

    ok = run(str(good), "--head", bundle["manifest"]["head_hash"])
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert "VERIFIED" in ok.stdout
    failed = run(str(bad))
    assert failed.returncode == 1
    assert "stored hash does not match" in failed.stdout
    assert run(str(tmp_path / "missing.json")).returncode == 2
    as_module = run(str(good), module=True)
    assert as_module.returncode == 0, as_module.stdout + as_module.stderr


def test_the_verifier_imports_only_the_standard_library():
    tree = ast.parse(VERIFIER.read_text())
    modules = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            modules |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            modules.add((node.module or "").split(".")[0])
    assert modules <= set(sys.stdlib_module_names) | {"__future__"}, modules


json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**53), max_value=2**53)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=12),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6), inner, max_size=4)
    ),
    max_leaves=12,
)


@hypothesis_settings(max_examples=200, deadline=None)
@given(
    fields=st.dictionaries(st.text(max_size=10), json_values, max_size=6),
    at=st.datetimes(timezones=st.just(UTC)),
)
def test_the_verifier_hashes_exactly_like_the_tracker(fields, at):
    fields = {**fields, "occurred_at": at}
    plain = json.loads(chain.canonical_json(fields))
    assert verifier.event_hash(chain.GENESIS, plain) == chain.event_hash(chain.GENESIS, fields)
    assert verifier.record_hash("t", "1", plain) == record_hash("t", "1", fields)


def _sign(new_uow, settings, world, trip, clock, who="qa", password=WORLD_PASSWORD):
    with new_uow() as uow:
        signature = certificates.sign_certificate(
            uow=uow,
            hasher=make_hasher(settings),
            settings=settings,
            principal=world.principals[who],
            order_public_id=trip.order.public_id,
            password=password,
            meaning="review",
            now=clock.now(),
        )
        uow.commit()
        return signature


def test_qa_signs_the_chain_and_the_bundle_proves_what_was_signed(
    trip, new_uow, settings, world, clock
):
    signature = _sign(new_uow, settings, world, trip, clock)
    bundle = bundle_of(new_uow, world, trip.order, clock.now())
    count = bundle["manifest"]["event_count"]
    assert signature.record_id == f"{trip.order.public_id}@{count}"
    [signed] = [s for s in bundle["signatures"] if s["record_type"] == "coi_certificate"]
    assert signed["content"]["head_hash"] == bundle["manifest"]["head_hash"]
    problems, notes = verify(bundle)
    assert problems == []
    assert any(f"signs the chain up to event #{count}" in n for n in notes)
    # Pretending the signature covered a different head is caught.
    lied = copy.deepcopy(bundle)
    sig = next(s for s in lied["signatures"] if s["record_type"] == "coi_certificate")
    sig["content"]["head_hash"] = lied["events"][0]["hash"]
    assert any("record hash does not match" in p for p in verify(lied)[0])


def test_only_qa_signs_a_certificate_and_a_wrong_password_signs_nothing(
    trip, new_uow, settings, world, clock
):
    with pytest.raises(TrackerError) as refused:
        _sign(new_uow, settings, world, trip, clock, who="coord")
    assert refused.value.reason == "forbidden"
    with pytest.raises(TrackerError) as wrong:
        _sign(new_uow, settings, world, trip, clock, password="not the password")
    assert wrong.value.reason == "signature_failed"
    with new_uow() as uow:
        assert uow.session.get(User, world.users["qa"].id).failed_logins == 1
    assert not [s for s in bundle_of(new_uow, world, trip.order, clock.now())["signatures"]]


def test_a_signed_qa_disposition_travels_in_the_bundle_with_its_content(
    trip, new_uow, settings, world, clock
):
    later = clock.now() + timedelta(hours=1)
    with new_uow() as uow:
        row, signature = signoffs.record_signed_disposition(
            uow=uow,
            hasher=make_hasher(settings),
            settings=settings,
            principal=world.principals["qa"],
            item_public_id=trip.bag.public_id,
            decision=Decision.quarantine,
            comment="40 min above 8 °C: hold",
            password=WORLD_PASSWORD,
            now=later,
        )
        uow.commit()
    assert signature.meaning == "approval" and row.decided_at == later
    bundle = bundle_of(new_uow, world, trip.order, later)
    [signed] = [s for s in bundle["signatures"] if s["record_type"] == "qa_disposition"]
    assert signed["content"]["decision"] == "quarantine"
    assert signed["printed_name"] == "Qa User"
    problems, notes = verify(bundle)
    assert problems == [] and any("record hash matches its content" in n for n in notes)


def test_a_disposition_without_the_password_records_nothing(trip, new_uow, settings, world, clock):
    with new_uow() as uow, pytest.raises(TrackerError) as refused:
        signoffs.record_signed_disposition(
            uow=uow,
            hasher=make_hasher(settings),
            settings=settings,
            principal=world.principals["qa"],
            item_public_id=trip.bag.public_id,
            decision=Decision.accept,
            comment="fine",
            password="",
            now=clock.now(),
        )
    assert refused.value.reason == "signature_failed"
    with new_uow() as uow:
        assert uow.session.scalar(select(QaDisposition.id)) is None


def test_the_bundle_names_the_patient_only_by_pseudonym(trip, new_uow, world, clock):
    bundle = bundle_of(new_uow, world, trip.order, clock.now())
    text = json.dumps(bundle)
    assert bundle["manifest"]["patient"].startswith("PT-")
    for secret in ("MRN-1", "Patient", "1970-01-02"):
        assert secret not in text


def test_issuing_a_certificate_is_recorded_in_the_audit_trail(trip, new_uow, world, clock):
    with new_uow() as uow:
        bundle = certificates.issue_certificate(
            uow=uow,
            principal=world.principals["coord"],
            order_public_id=trip.order.public_id,
            fmt="json",
            now=clock.now(),
        )
        uow.commit()
    with new_uow() as uow:
        entry = uow.session.scalar(
            select(AuditEntry).where(AuditEntry.action == "certificate_issued")
        )
        assert entry.entity_id == trip.order.public_id
        assert entry.changes["head_hash"] == [None, bundle["manifest"]["head_hash"]]


def test_other_sites_cannot_have_the_certificate(trip, new_uow, world, clock):
    with pytest.raises(TrackerError) as refused:
        bundle_of(new_uow, world, trip.order, clock.now(), who="coord2")
    assert refused.value.reason == "not_found"


def test_bundle_times_are_utc_with_z(trip, new_uow, world, clock):
    bundle = bundle_of(new_uow, world, trip.order, datetime(2026, 3, 2, 14, 0, tzinfo=UTC))
    assert bundle["manifest"]["generated_at"] == "2026-03-02T14:00:00.000000Z"
    assert all(e["fields"]["occurred_at"].endswith("Z") for e in bundle["events"])
