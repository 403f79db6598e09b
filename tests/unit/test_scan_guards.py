"""The journey as data and the scan guards, on plain facts (no database, no web)."""

from __future__ import annotations

import dataclasses
from datetime import UTC
from datetime import datetime
from datetime import timedelta

import pytest

from tracker.domain import scans as rules
from tracker.domain.access import Role
from tracker.domain.access import SiteKind
from tracker.domain.custody import ALLOWED
from tracker.domain.custody import CustodyState as S
from tracker.domain.custody import ItemKind
from tracker.domain.errors import REASONS
from tracker.domain.journey import VARIANTS
from tracker.domain.journey import JourneyError
from tracker.domain.journey import Question
from tracker.domain.journey import ScanKind as K
from tracker.domain.journey import ScanRequirement
from tracker.domain.journey import SiteRole
from tracker.domain.journey import default_journey
from tracker.domain.journey import journey_for_profile
from tracker.domain.journey import journey_from_data
from tracker.domain.journey import journey_to_data

AT = datetime(2026, 3, 2, 14, 0, tzinfo=UTC)
COL, MFG, TX, DEPOT = 1, 2, 3, 4
ORDER, OTHER = 10, 11
PATIENT, OTHER_PATIENT = 20, 21
FRESH = default_journey("fresh")


def ctx(step: str, **kw) -> rules.Context:
    """A context in which ``step`` is allowed, at the right site, for the right role."""
    journey = kw.pop("journey", FRESH)
    s = journey.step(step)
    site = {SiteRole.collection: COL, SiteRole.manufacturing: MFG, SiteRole.treatment: TX}.get(
        s.site, DEPOT
    )
    kind = SiteKind.courier_depot if s.site is SiteRole.courier else SiteKind.collection_centre
    base = dict(
        journey=journey,
        step_code=step,
        person_id=7,
        roles=frozenset(s.roles),
        device_site_id=site,
        device_site_kind=kind,
        order_sites={SiteRole.collection: COL, SiteRole.manufacturing: MFG, SiteRole.treatment: TX},
        run_order_id=None,
        run_patient_id=None,
        run_open=False,
        progress=rules.Progress(),
        expected={},
        shipment=None,
        at=AT,
        last_completed=_before(journey, step),
    )
    base.update(kw)
    return rules.Context(**base)


def _before(journey, step):
    for candidate in journey.steps:
        if step in candidate.next:
            return candidate.code
    return None


def anchored(step: str, **kw) -> rules.Context:
    """A run in progress: its first code scanned (this order, this patient)."""
    first = FRESH.step(step).requirements[0]
    kw.setdefault("progress", rules.Progress(done={first.key: frozenset({"anchor"})}))
    for key, value in (("run_order_id", ORDER), ("run_patient_id", PATIENT), ("run_open", True)):
        kw.setdefault(key, value)
    return ctx(step, **kw)


WRISTBAND = rules.Scanned(kind=K.wristband, order_id=ORDER, patient_id=PATIENT, label="wristband")
COI = rules.Scanned(kind=K.coi_label, order_id=ORDER, label="COI label")


def bag(state=S.registered, *, item=100, order=ORDER, kind=K.apheresis_bag, site=COL):
    return rules.Scanned(
        kind=kind, order_id=order, item_id=item, item_state=state, item_site_id=site, label="bag"
    )


# ---------------------------------------------------------------------------------------------
# The journey as data
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("variant", VARIANTS)
def test_each_default_journey_survives_its_json_form_unchanged(variant):
    journey = default_journey(variant)
    assert journey_from_data(journey_to_data(journey)) == journey


@pytest.mark.parametrize("variant", VARIANTS)
def test_every_transition_a_journey_names_is_allowed_by_the_custody_state_machine(variant):
    for step in default_journey(variant).steps:
        for req in step.scans:
            if req.to_state is None:
                continue
            for kind in req.kinds:
                item_kind = {
                    K.apheresis_bag: ItemKind.apheresis_bag,
                    K.product_bag: ItemKind.final_product_bag,
                    K.shipper: ItemKind.cryoshipper,
                }[kind]
                # Exception paths list every live bag state; each kind has its own subset.
                for state in req.from_states & set(ALLOWED[item_kind]):
                    assert req.to_state in ALLOWED[item_kind][state], (step.code, kind, state)


@pytest.mark.parametrize("variant", VARIANTS)
def test_a_journey_walks_from_collection_to_infusion_through_next_links(variant):
    journey = default_journey(variant)
    seen, code = [], journey.start[0]
    while code not in seen:
        seen.append(code)
        code = journey.step(code).next[0]
    assert seen[0] == "collect_verify_patient" and seen[-1] == "infusion_end"
    assert ("cryopreserve_local" in seen) == (variant == "cryo_local")
    assert ("store_apheresis" in seen) == (variant != "fresh")


def test_a_profile_uses_its_own_step_list_or_the_default_for_its_material():
    assert journey_for_profile("fresh", {}).variant == "fresh"
    assert journey_for_profile("cryopreserved", {}).variant == "cryo_local"
    assert journey_for_profile("cryopreserved", {"cryopreservation": "central"}).variant == (
        "cryo_central"
    )
    own = journey_to_data(default_journey("fresh"))
    own["variant"] = "site-specific"
    assert journey_for_profile("cryopreserved", {"journey": own}).variant == "site-specific"


@pytest.mark.parametrize(
    ("change", "problem"),
    [
        (lambda d: d["steps"][0]["next"].append("nowhere"), "unknown steps"),
        (lambda d: d["steps"][0]["requires"].insert(0, {"ask": "x", "prompt": "?"}), "must start"),
        (lambda d: d["steps"][1]["requires"].append(dict(d["steps"][1]["requires"][0])), "repeats"),
        (lambda d: d["steps"][0].update(site="moon"), "not usable"),
        (lambda d: d["steps"][0]["requires"].append({"sign": "whim", "prompt": "?"}), "meaning"),
        (lambda d: d["steps"].append(dict(d["steps"][0])), "unique"),
        (lambda d: d["steps"][1].update(persons=2), "single codes"),
    ],
)
def test_an_inconsistent_step_list_is_refused(change, problem):
    data = journey_to_data(default_journey("fresh"))
    change(data)
    with pytest.raises(JourneyError, match=problem):
        journey_from_data(data)


def test_steps_may_start_only_after_the_step_before_them_but_exceptions_any_time():
    assert FRESH.may_start("collect_verify_patient", None)
    assert not FRESH.may_start("collect_label_bags", None)
    assert FRESH.may_start("collect_label_bags", "collect_verify_patient")
    assert not FRESH.may_start("pack_apheresis", "collect_verify_patient")
    assert FRESH.may_start("quarantine", None) and FRESH.may_start("discard", "thaw")
    assert FRESH.may_start("thaw", "infusion_end")  # the next bag of a multi-bag dose
    assert not FRESH.may_start("no_such_step", None)


def test_every_reason_a_guard_can_give_is_documented():
    assert set(REASONS) >= rules.SCAN_REASONS


# ---------------------------------------------------------------------------------------------
# Guards, one at a time
# ---------------------------------------------------------------------------------------------


def test_a_first_scan_of_the_right_kind_starts_the_step():
    verdict = rules.judge(WRISTBAND, ctx("collect_verify_patient"))
    assert isinstance(verdict, rules.Accepted) and verdict.requirement.key == "wristband"


def test_1_unreadable_codes_are_refused_with_the_parsers_reason_and_suggestion():
    damaged = rules.Scanned(problem=rules.Problem("caps_lock", "inverted", "=W1"), opaque="=w1")
    verdict = rules.judge(damaged, anchored("collect_label_bags"))
    assert (verdict.reason, verdict.suggestion) == ("caps_lock", "=W1")


def test_1_unknown_text_is_a_seal_number_where_a_seal_is_asked_for_and_only_there():
    unknown = rules.Scanned(problem=rules.Problem("unknown_code", "?"), opaque="SEAL-0042")
    ship = rules.ShipmentFacts(1, "SEAL-0042", "TRKLOG", frozenset({100}), 9)
    progress = rules.Progress(done={"coi_label": frozenset({"c"}), "shipper": frozenset({"1"})})
    verdict = rules.judge(unknown, anchored("receive_apheresis", progress=progress, shipment=ship))
    assert isinstance(verdict, rules.Accepted) and verdict.token == "SEAL-0042"
    verdict = rules.judge(unknown, anchored("collect_label_bags"))
    assert verdict.reason == "unknown_code"
    keyboard = dataclasses.replace(unknown, problem=rules.Problem("keyboard_layout", "layout"))
    verdict = rules.judge(keyboard, anchored("receive_apheresis", progress=progress, shipment=ship))
    assert verdict.reason == "keyboard_layout"


def test_2_unknown_and_ambiguous_codes_are_refused():
    for reason in ("unknown_code", "ambiguous_code"):
        scanned = rules.Scanned(problem=rules.Problem(reason, "?"))
        assert rules.judge(scanned, ctx("collect_verify_patient")).reason == reason


def test_3_another_patients_code_is_a_hard_stop_whatever_else_is_wrong():
    other_bag = bag(S.infused, order=OTHER, site=TX)
    other_wristband = dataclasses.replace(WRISTBAND, order_id=OTHER, patient_id=OTHER_PATIENT)
    # Wrong step, wrong site and wrong role too: the chain of identity is reported first.
    context = anchored(
        "collect_label_bags",
        roles=frozenset({Role.courier}),
        device_site_id=MFG,
        last_completed=None,
        run_open=False,
    )
    for scanned in (other_bag, other_wristband, dataclasses.replace(COI, order_id=OTHER)):
        assert rules.judge(scanned, context).reason == "coi_mismatch"


def test_3_a_wristband_is_matched_on_the_patient_not_the_order():
    second_order = dataclasses.replace(WRISTBAND, order_id=None)
    verdict = rules.judge(second_order, anchored("thaw"))
    assert verdict.reason != "coi_mismatch"


def test_4_5_unknown_and_out_of_sequence_steps_are_refused():
    assert rules.judge(WRISTBAND, ctx("collect_verify_patient", step_code="nope")).reason == (
        "unknown_step"
    )
    early = ctx("collect_label_bags", last_completed=None)
    verdict = rules.judge(WRISTBAND, early)
    assert verdict.reason == "wrong_step" and "Verify the patient" in verdict.message
    # Joining a run that is already open needs no sequence check.
    assert isinstance(
        rules.judge(WRISTBAND, dataclasses.replace(early, run_open=True)), rules.Accepted
    )


def test_6_7_the_step_happens_at_its_site_by_its_roles():
    assert rules.judge(WRISTBAND, ctx("collect_verify_patient", device_site_id=TX)).reason == (
        "wrong_site"
    )
    nurse_elsewhere = ctx("collect_verify_patient", roles=frozenset({Role.coordinator}))
    assert rules.judge(WRISTBAND, nurse_elsewhere).reason == "forbidden"
    ship = rules.ShipmentFacts(1, None, None, frozenset(), courier_user_id=99)
    assert rules.judge(COI, ctx("pickup_apheresis", shipment=ship)).reason == "forbidden"
    at_depot = ctx(
        "pickup_apheresis",
        shipment=dataclasses.replace(ship, courier_user_id=7),
        device_site_kind=SiteKind.treatment_centre,
    )
    assert rules.judge(COI, at_depot).reason == "wrong_site"


def test_6_exception_paths_happen_where_the_bag_is():
    quarantine = anchored("quarantine", device_site_id=MFG, roles=frozenset({Role.qa}))
    assert rules.judge(bag(S.stored, site=COL), quarantine).reason == "wrong_site"
    verdict = rules.judge(bag(S.stored, site=MFG), quarantine)
    assert isinstance(verdict, rules.Accepted)


def test_8_an_open_deviation_blocks_journey_steps_but_not_storage_or_exceptions():
    blocked = ctx("pack_apheresis", blocking_deviation=True)
    assert rules.judge(COI, blocked).reason == "deviation_open"
    storage = ctx("store_product", blocking_deviation=True)
    assert isinstance(rules.judge(COI, storage), rules.Accepted)
    quarantine = ctx("quarantine", blocking_deviation=True, device_site_id=MFG)
    assert isinstance(rules.judge(COI, quarantine), rules.Accepted)


def test_9_codes_are_taken_in_the_steps_order():
    label = anchored("collect_label_bags")
    assert rules.judge(COI, label).reason == "wrong_item_type"
    assert rules.judge(bag(), ctx("collect_label_bags")).reason == "out_of_order"
    receive = anchored(
        "receive_apheresis", shipment=rules.ShipmentFacts(1, "S", "L", frozenset({100}), 9)
    )
    verdict = rules.judge(bag(S.in_transit, site=DEPOT), receive)
    assert (verdict.reason, verdict.message) == ("out_of_order", "First: Scan the shipper.")
    assert rules.judge(WRISTBAND, anchored("collect_label_bags")).reason == "already_scanned"


def test_9_a_second_scanner_joins_an_open_run_with_its_first_code():
    joining = anchored("collect_label_bags", run_order_id=None, run_patient_id=None)
    verdict = rules.judge(WRISTBAND, joining)
    assert isinstance(verdict, rules.Accepted) and verdict.join


def test_10_the_shipment_record_is_checked_before_the_bags_state():
    ship = rules.ShipmentFacts(1, "SEAL-1", "LOG-1", frozenset({100}), 9)
    done = {k: frozenset({"x"}) for k in ("coi_label", "shipper", "seal", "logger")}
    receive = anchored(
        "receive_apheresis",
        shipment=ship,
        progress=rules.Progress(done=done, answers={"temperature_alarm": False}),
        expected={"apheresis_bag": frozenset({"100"})},
    )
    verdict = rules.judge(bag(S.collected, item=101, site=COL), receive)
    assert verdict.reason == "not_in_shipment"
    assert isinstance(rules.judge(bag(S.in_transit, site=DEPOT), receive), rules.Accepted)
    assert rules.judge(COI, ctx("pack_apheresis")).reason == "no_shipment"
    shipper = rules.Scanned(kind=K.shipper, order_id=ORDER, item_id=2, item_state=S.charged)
    packing = anchored("pack_apheresis", shipment=ship)
    assert rules.judge(shipper, packing).reason == "shipment_mismatch"
    logger = rules.Scanned(kind=K.logger, value="LOG-2", order_id=None)
    progress = rules.Progress(done={"coi_label": frozenset({"c"}), "shipper": frozenset({"1"})})
    receipt = anchored(
        "receive_apheresis",
        shipment=ship,
        progress=dataclasses.replace(
            progress, done={**progress.done, "seal": frozenset({"SEAL-1"})}
        ),
    )
    assert rules.judge(logger, receipt).reason == "shipment_mismatch"


def test_11_the_bags_custody_state_must_fit_the_requirement():
    label = anchored("collect_label_bags", expected={"apheresis_bag": frozenset({"100"})})
    assert rules.judge(bag(S.quarantined), label).reason == "quarantined"
    assert rules.judge(bag(S.labelled), label).reason == "already_scanned"
    collect = anchored("collect_bags", expected={"apheresis_bag": frozenset({"100"})})
    assert rules.judge(bag(S.registered), collect).reason == "not_labelled"
    assert rules.judge(bag(S.in_transit), collect).reason == "custody_gap"
    assert rules.judge(bag(S.labelled, item=999), collect).reason == "custody_gap"
    assert isinstance(rules.judge(bag(S.labelled), collect), rules.Accepted)


def test_12_time_limits_stop_infusion_and_packing_with_an_expired_shipper():
    late = anchored("infusion_start", deadline=AT - timedelta(seconds=1))
    product = bag(S.thawed, kind=K.product_bag, site=TX)
    assert rules.judge(product, late).reason == "expired"
    assert isinstance(rules.judge(product, dataclasses.replace(late, deadline=AT)), rules.Accepted)
    ship = rules.ShipmentFacts(None, None, None, frozenset(), 9)
    shipper = rules.Scanned(
        kind=K.shipper,
        order_id=None,
        item_id=2,
        item_state=S.charged,
        expires_at=AT - timedelta(hours=1),
    )
    assert rules.judge(shipper, anchored("pack_apheresis", shipment=ship)).reason == "expired"


def test_a_completed_run_refuses_further_scans():
    done = anchored(
        "collect_label_bags",
        run_completed=True,
        progress=rules.Progress(done={"apheresis_bag": frozenset({"100"})}),
    )
    assert rules.judge(bag(S.labelled), done).reason == "already_scanned"
    assert rules.judge(bag(S.registered, item=5), done).reason == "wrong_step"


# ---------------------------------------------------------------------------------------------
# Progress, questions, two people, clocks
# ---------------------------------------------------------------------------------------------


def test_every_bag_requirement_counts_until_the_set_is_complete():
    step = FRESH.step("collect_label_bags")
    expected = {"apheresis_bag": frozenset({"1", "2"})}
    one = rules.Progress(done={"wristband": frozenset({"w"}), "apheresis_bag": frozenset({"1"})})
    look = rules.outlook(step, one, expected)
    assert (look.complete, look.done, look.of) == (False, 1, 2)
    both = dataclasses.replace(one, done={**one.done, "apheresis_bag": frozenset({"1", "2"})})
    assert rules.outlook(step, both, expected).complete
    assert not rules.outlook(step, both, {"apheresis_bag": frozenset()}).complete


def test_a_two_person_step_completes_with_two_verified_people():
    step = FRESH.step("bedside_verify")
    mine = rules.Progress(
        done={r.key: frozenset({"x"}) for r in step.scans}, signed=frozenset({"sign_verification"})
    )
    look = rules.outlook(step, mine, {}, verified_people=1)
    assert not look.complete and look.waiting_for_second_person
    assert rules.outlook(step, mine, {}, verified_people=2).complete
    signed = {1: AT - timedelta(minutes=16), 2: AT - timedelta(minutes=2)}
    assert rules.people_within_window(signed, AT, 15) == 1
    assert rules.people_within_window(signed, AT, 20) == 2


@pytest.mark.parametrize(
    ("question", "answer", "verdict"),
    [
        (Question("q", "?", expect=True), True, (True, None)),
        (Question("q", "?", expect=True), False, (False, "Unexpected answer to: ?")),
        (
            Question("q", "?", expect=False, otherwise="deviation"),
            True,
            (True, "Unexpected answer to: ?"),
        ),
        (Question("q", "?", expect=True), "yes", (False, None)),
        (Question("reason", "?", answer_type="text"), "  ", (False, None)),
        (Question("reason", "?", answer_type="text"), "cracked", (True, None)),
    ],
)
def test_checklist_answers_are_judged_against_what_is_expected(question, answer, verdict):
    assert rules.question_verdict(question, answer) == verdict


def test_the_thaw_countdown_and_late_uploads():
    assert rules.countdown_deadline(AT, 30) == AT + timedelta(minutes=30)
    assert rules.is_late(AT, AT + timedelta(minutes=3))
    assert not rules.is_late(AT, AT + timedelta(seconds=90))


@pytest.mark.parametrize(
    ("raw", "seal"),
    [
        ("SEAL-0042\r\n", "SEAL-0042"),
        ("]C0123456", "123456"),
        ("ab", None),
        ("a b c", None),
        ("=W1234", None),
        ("x" * 65, None),
    ],
)
def test_seal_numbers_are_vendor_text_within_limits(raw, seal):
    assert rules.seal_text(raw) == seal


def test_offline_refusals_that_concern_no_patient_are_not_forced():
    assert rules.forceable("coi_mismatch") and rules.forceable("wrong_step")
    for reason in ("unknown_code", "caps_lock", "already_scanned", "empty"):
        assert not rules.forceable(reason)


def test_requirement_kinds_cover_every_scan_kind_a_journey_uses():
    used = {k for s in FRESH.steps for r in s.scans for k in r.kinds}
    assert used == set(K)
    assert all(isinstance(s.requirements[0], ScanRequirement) for s in FRESH.steps)
