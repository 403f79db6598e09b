"""Electronic signature rules (21 CFR 11.50, 11.70, 11.200): meanings and record hashing."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping

from tracker.domain.chain import canonical_json

SIGNATURE_MEANINGS: dict[str, str] = {
    "authorship": "I am the author of this record.",
    "review": "I have reviewed this record.",
    "approval": "I approve this record.",
    "responsibility": "I take responsibility for this record.",
    "verification": "I verified the identity of the patient and the product.",
    "witness": "I witnessed this step being performed.",
}


def record_hash(record_type: str, record_id: str, content: Mapping[str, object]) -> str:
    """Hash that binds a signature to the exact content signed (11.70)."""
    body = canonical_json({"type": record_type, "id": record_id, "content": dict(content)})
    return hashlib.sha256(body.encode()).hexdigest()
