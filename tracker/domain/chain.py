"""Hash chain over custody events: each event stores the hash of the one before it.

The digest covers a canonical JSON rendering of the event's own fields plus the previous
hash, so editing, deleting or re-ordering any stored event breaks verification.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime

GENESIS = "0" * 64


def _canonical(value: object) -> object:
    if isinstance(value, datetime):
        if value.utcoffset() is None:
            raise ValueError("naive datetime in a chained event")
        return value.isoformat(timespec="microseconds").replace("+00:00", "Z")
    if isinstance(value, Mapping):
        return {str(k): _canonical(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_canonical(v) for v in value]
    return value


def canonical_json(fields: Mapping[str, object]) -> str:
    """Deterministic JSON: sorted keys, no whitespace, UTC times with a Z."""
    return json.dumps(_canonical(fields), sort_keys=True, separators=(",", ":"), ensure_ascii=True)


def event_hash(prev_hash: str, fields: Mapping[str, object]) -> str:
    """sha256 over the previous hash and the event's canonical fields."""
    return hashlib.sha256((prev_hash + "\n" + canonical_json(fields)).encode()).hexdigest()


@dataclass(frozen=True, slots=True)
class ChainedEvent:
    seq: int
    prev_hash: str
    hash: str
    fields: Mapping[str, object]


@dataclass(frozen=True, slots=True)
class ChainBreak:
    seq: int
    problem: str


def verify(events: Iterable[ChainedEvent]) -> list[ChainBreak]:
    """Walk one chain in sequence order and report every break."""
    breaks: list[ChainBreak] = []
    expected_prev = GENESIS
    expected_seq = 1
    for event in events:
        if event.seq != expected_seq:
            breaks.append(ChainBreak(event.seq, f"sequence gap: expected {expected_seq}"))
        if event.prev_hash != expected_prev:
            breaks.append(ChainBreak(event.seq, "previous-hash link does not match"))
        if event_hash(event.prev_hash, event.fields) != event.hash:
            breaks.append(ChainBreak(event.seq, "stored hash does not match the event content"))
        expected_prev = event.hash
        expected_seq = event.seq + 1
    return breaks
