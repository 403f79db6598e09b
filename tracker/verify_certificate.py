"""Verify a chain-of-identity certificate bundle offline, with nothing but Python 3.11+.

Usage:
    python -m tracker.verify_certificate bundle.json [--head HASH] [--quiet]
    python verify_certificate.py bundle.json          (this file alone, copied anywhere)

This file imports only the standard library on purpose: an auditor can read all of it and run
it on a machine that has never seen the tracker. It re-implements the tracker's hashing rules
(tracker/domain/chain.py and tracker/domain/signatures.py); a test checks the two agree.

What is checked:
 1. Each custody event's hash is SHA-256 over  previous hash + "\\n" + canonical JSON of the
    event's fields  (canonical: keys sorted, separators "," and ":", ASCII only, UTC times
    written with microseconds and a "Z").
 2. Sequence numbers run 1, 2, 3 ... without gaps; the first event links to 64 zeros and each
    later one to the hash of the event before it; every event names the manifest's chain.
 3. The manifest's event count and head hash match the events; its SHA-256 digests of the
    "events" and "signatures" sections match those sections; manifest_sha256 matches it.
 4. Every signature whose signed content is in the bundle has the record hash of that content
    (SHA-256 over canonical JSON of {"type", "id", "content"}); a certificate sign-off must
    name a head hash that really is the chain's hash at the event count it signed.
 5. With --head, the head hash equals the one you were given (printed on the PDF certificate,
    or read from the tracker) -- this is what ties the bundle to the records it came from:
    anyone can recompute a self-consistent forgery, nobody can make it match a head you got
    from elsewhere.

Exit status: 0 all checks pass, 1 a check failed, 2 the file could not be read as a bundle.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
from typing import Any

GENESIS = "0" * 64
FORMAT = "coi-certificate"


def canonical_json(value: Any) -> str:
    """The tracker's canonical JSON; bundle values are already plain JSON (times as text)."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=True)


def sha256_hex(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def event_hash(prev_hash: str, fields: Any) -> str:
    return sha256_hex(prev_hash + "\n" + canonical_json(fields))


def record_hash(record_type: str, record_id: str, content: Any) -> str:
    return sha256_hex(canonical_json({"type": record_type, "id": record_id, "content": content}))


def verify_bundle(bundle: Any, *, expected_head: str | None = None) -> tuple[list[str], list[str]]:
    """Check a parsed bundle; return (problems, notes). No problems means it verifies."""
    problems: list[str] = []
    notes: list[str] = []
    if not isinstance(bundle, dict) or not isinstance(bundle.get("manifest"), dict):
        return ["not a certificate bundle: no manifest"], notes
    manifest = bundle["manifest"]
    events = bundle.get("events")
    signatures = bundle.get("signatures")
    if manifest.get("format") != FORMAT:
        problems.append(f"manifest format is {manifest.get('format')!r}, expected {FORMAT!r}")
    if not isinstance(events, list) or not isinstance(signatures, list):
        return [*problems, "bundle lacks its events or signatures list"], notes

    # 1-2: the hash chain.
    chain_key = manifest.get("chain_key")
    hashes: list[str] = []
    expected_prev, expected_seq = GENESIS, 1
    for position, event in enumerate(events, start=1):
        try:
            seq, prev, stored, fields = (
                event["seq"],
                event["prev_hash"],
                event["hash"],
                event["fields"],
            )
        except (KeyError, TypeError):
            problems.append(f"event at position {position} lacks seq, prev_hash, hash or fields")
            continue
        if seq != expected_seq:
            problems.append(f"event #{seq}: sequence gap (expected #{expected_seq})")
        if isinstance(fields, dict) and fields.get("seq") != seq:
            problems.append(f"event #{seq}: its fields say seq {fields.get('seq')}")
        if isinstance(fields, dict) and fields.get("chain_key") != chain_key:
            problems.append(f"event #{seq}: belongs to chain {fields.get('chain_key')!r}")
        if prev != expected_prev:
            problems.append(f"event #{seq}: previous-hash link does not match")
        if event_hash(prev, fields) != stored:
            problems.append(f"event #{seq}: stored hash does not match the event content")
        hashes.append(stored)
        expected_prev, expected_seq = stored, seq + 1 if isinstance(seq, int) else expected_seq + 1

    # 3: the manifest.
    head = hashes[-1] if hashes else GENESIS
    if manifest.get("event_count") != len(events):
        problems.append(
            f"manifest counts {manifest.get('event_count')} events, bundle has {len(events)}"
        )
    if manifest.get("head_hash") != head:
        problems.append("manifest head_hash is not the hash of the last event")
    sections = manifest.get("sections") or {}
    for name, section in (("events", events), ("signatures", signatures)):
        if sections.get(name) != sha256_hex(canonical_json(section)):
            problems.append(f"the {name} section does not match the manifest's digest")
    if bundle.get("manifest_sha256") != sha256_hex(canonical_json(manifest)):
        problems.append("manifest_sha256 does not match the manifest")

    # 4: signatures.
    for s in signatures:
        if not isinstance(s, dict):
            problems.append("a signature entry is not an object")
            continue
        label = f"signature {s.get('id')} ({s.get('printed_name')}, {s.get('meaning')})"
        content = s.get("content")
        if content is None:
            notes.append(f"{label}: signed content not in the bundle; record hash listed only")
            continue
        computed = record_hash(str(s.get("record_type")), str(s.get("record_id")), content)
        if computed != s.get("record_hash"):
            problems.append(f"{label}: record hash does not match the signed content")
            continue
        if s.get("record_type") == "coi_certificate":
            count = content.get("event_count") if isinstance(content, dict) else None
            signed_head = content.get("head_hash") if isinstance(content, dict) else None
            if not isinstance(count, int) or not 1 <= count <= len(hashes):
                problems.append(f"{label}: signs {count} events, the chain has {len(hashes)}")
            elif hashes[count - 1] != signed_head:
                problems.append(f"{label}: the signed head is not the chain's hash at #{count}")
            else:
                notes.append(f"{label}: signs the chain up to event #{count}")
        else:
            notes.append(f"{label}: record hash matches its content")

    # 5: the anchor from outside the bundle.
    if expected_head is not None and expected_head.strip().lower() != head:
        problems.append("head hash differs from the one given with --head")
    return problems, notes


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Verify a chain-of-identity bundle offline.")
    parser.add_argument("bundle", help="the JSON bundle downloaded from the tracker")
    parser.add_argument("--head", help="head hash to expect (from the PDF certificate)")
    parser.add_argument("--quiet", action="store_true", help="print only the verdict")
    args = parser.parse_args(argv)
    try:
        with open(args.bundle, encoding="utf-8") as handle:
            bundle = json.load(handle)
    except (OSError, ValueError) as exc:
        print(f"cannot read {args.bundle}: {exc}", file=sys.stderr)
        return 2
    problems, notes = verify_bundle(bundle, expected_head=args.head)
    manifest = bundle.get("manifest", {}) if isinstance(bundle, dict) else {}
    if not args.quiet:
        print(f"bundle:   {args.bundle}")
        print(f"COI:      {manifest.get('coi')}  order {manifest.get('order')}")
        print(f"patient:  {manifest.get('patient')} (pseudonym)")
        print(f"events:   {manifest.get('event_count')}")
        print(f"head:     {manifest.get('head_hash')}")
        for note in notes:
            print(f"note:     {note}")
        for problem in problems:
            print(f"PROBLEM:  {problem}")
    if problems:
        print(f"NOT VERIFIED: {len(problems)} problem(s)")
        return 1
    print("VERIFIED: chain, manifest and signatures are consistent")
    return 0


if __name__ == "__main__":
    sys.exit(main())
