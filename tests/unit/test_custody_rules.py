from itertools import product

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tracker.domain.custody import ALLOWED
from tracker.domain.custody import INITIAL_STATE
from tracker.domain.custody import REASON_REQUIRED_TO
from tracker.domain.custody import CustodyState
from tracker.domain.custody import ItemKind
from tracker.domain.custody import can_transition
from tracker.domain.custody import transition
from tracker.domain.errors import REASONS
from tracker.domain.errors import TrackerError


def test_every_kind_starts_in_a_state_of_its_own_map():
    for kind, state in INITIAL_STATE.items():
        assert state in ALLOWED[kind]


def test_every_target_state_is_itself_a_state_of_the_kind():
    for kind, table in ALLOWED.items():
        for targets in table.values():
            assert targets <= set(table), kind


def test_every_state_is_reachable_from_the_initial_state():
    for kind, table in ALLOWED.items():
        seen = {INITIAL_STATE[kind]}
        frontier = [INITIAL_STATE[kind]]
        while frontier:
            for nxt in table[frontier.pop()]:
                if nxt not in seen:
                    seen.add(nxt)
                    frontier.append(nxt)
        assert seen == set(table), f"{kind}: unreachable {set(table) - seen}"


def test_transition_allows_exactly_the_pairs_in_the_map():
    for kind, table in ALLOWED.items():
        for current, target in product(table, table):
            allowed = target in table[current]
            if allowed:
                step = transition(kind, current, target, reason="documented reason")
                assert (step.from_state, step.to_state) == (current, target)
            else:
                with pytest.raises(TrackerError) as err:
                    transition(kind, current, target, reason="documented reason")
                assert err.value.reason == "invalid_transition"


def test_refuses_to_skip_collection_for_an_apheresis_bag():
    with pytest.raises(TrackerError, match="cannot move to 'packed'"):
        transition(ItemKind.apheresis_bag, CustodyState.labelled, CustodyState.packed)


def test_final_states_allow_nothing():
    with pytest.raises(TrackerError) as err:
        transition(ItemKind.final_product_bag, CustodyState.infused, CustodyState.stored)
    assert "final state" in err.value.message


@pytest.mark.parametrize(
    "target", sorted(REASON_REQUIRED_TO & set(ALLOWED[ItemKind.apheresis_bag]))
)
def test_exception_paths_need_a_written_reason(target):
    source = next(s for s, t in ALLOWED[ItemKind.apheresis_bag].items() if target in t)
    with pytest.raises(TrackerError) as err:
        transition(ItemKind.apheresis_bag, source, target, reason="   ")
    assert err.value.reason == "reason_required"
    assert transition(ItemKind.apheresis_bag, source, target, reason=" seal broken ").reason == (
        "seal broken"
    )


def test_leaving_quarantine_needs_a_reason():
    with pytest.raises(TrackerError):
        transition(ItemKind.apheresis_bag, CustodyState.quarantined, CustodyState.stored)


def test_a_state_of_another_kind_is_refused():
    with pytest.raises(TrackerError):
        transition(ItemKind.cryoshipper, CustodyState.labelled, CustodyState.collected)


@given(st.sampled_from(list(ItemKind)), st.lists(st.sampled_from(list(CustodyState)), max_size=30))
def test_random_walks_only_ever_follow_the_map(kind, targets):
    state = INITIAL_STATE[kind]
    for target in targets:
        try:
            step = transition(kind, state, target, reason="r")
        except TrackerError:
            assert not can_transition(kind, state, target)
            continue
        assert target in ALLOWED[kind][state]
        state = step.to_state


def test_unknown_reason_codes_cannot_be_raised():
    with pytest.raises(ValueError):
        TrackerError("made_up_reason")
    assert all(isinstance(v, str) and v for v in REASONS.values())
