from datetime import UTC
from datetime import datetime
from datetime import timedelta

import pytest

from tracker.domain import chain


def _events(n):
    out, prev = [], chain.GENESIS
    for seq in range(1, n + 1):
        fields = {
            "seq": seq,
            "to_state": f"s{seq}",
            "occurred_at": datetime(2026, 1, 1, tzinfo=UTC) + timedelta(hours=seq),
        }
        h = chain.event_hash(prev, fields)
        out.append(chain.ChainedEvent(seq, prev, h, fields))
        prev = h
    return out


def test_an_untouched_chain_verifies():
    assert chain.verify(_events(5)) == []


def test_editing_one_event_breaks_it_and_the_link_after_it_still_holds():
    events = _events(4)
    tampered = dict(events[1].fields, to_state="forged")
    events[1] = chain.ChainedEvent(2, events[1].prev_hash, events[1].hash, tampered)
    breaks = chain.verify(events)
    assert [b.seq for b in breaks] == [2]
    assert "content" in breaks[0].problem


def test_deleting_an_event_is_detected():
    events = _events(4)
    del events[1]
    problems = {b.seq: b.problem for b in chain.verify(events)}
    assert 3 in problems
    assert "gap" in problems[3] or "previous" in problems[3]


def test_reordering_events_is_detected():
    events = _events(3)
    events[1], events[2] = events[2], events[1]
    assert chain.verify(events)


def test_canonical_json_is_independent_of_key_order_and_time_zone_spelling():
    a = {"b": 1, "a": datetime(2026, 1, 1, 12, tzinfo=UTC)}
    b = {"a": datetime(2026, 1, 1, 12, tzinfo=UTC), "b": 1}
    assert chain.canonical_json(a) == chain.canonical_json(b)
    assert "2026-01-01T12:00:00.000000Z" in chain.canonical_json(a)


def test_naive_datetimes_cannot_enter_a_chain():
    with pytest.raises(ValueError):
        chain.canonical_json({"at": datetime(2026, 1, 1)})  # noqa: DTZ001
