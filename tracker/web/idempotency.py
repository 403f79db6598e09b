"""The ``Idempotency-Key`` header on API writes, for every blueprint that asks for it.

``protect(bp)`` adds two hooks after the blueprint's own authentication and CSRF checks: one
claims the caller's key (or answers with the stored response, 409 + ``Retry-After`` while the
first request still runs, or 422 when the key was used for a different request), the other
stores the answer. Keys are scoped to the caller (a user or a device), so two callers never
see each other's answers. Requests without the header behave as before.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable

from flask import Blueprint
from flask import Response
from flask import g
from flask import request

from tracker.domain.errors import REASONS
from tracker.domain.errors import TrackerError
from tracker.services import idempotency as service
from tracker.web.auth import current_principal
from tracker.web.errors import error_response
from tracker.web.openapi import IDEMPOTENT
from tracker.web.runtime import runtime

HEADER = "Idempotency-Key"
WRITES = frozenset({"POST", "PUT", "PATCH", "DELETE"})


def _caller() -> str:
    principal = current_principal()
    if principal.user_id is not None:
        return f"user:{principal.user_id}"
    return f"device:{principal.device_id}"


def _fingerprint() -> str:
    digest = hashlib.sha256()
    for part in (request.method.encode(), request.full_path.encode(), request.get_data()):
        digest.update(part)
        digest.update(b"\0")
    return digest.hexdigest()


def protect(bp: Blueprint, *, exempt: Iterable[str] = ()) -> None:
    """Make every write of ``bp`` honour ``Idempotency-Key`` (``exempt``: endpoint names)."""
    skip = frozenset(exempt)
    IDEMPOTENT[bp.name] = skip  # the API document lists the header on these writes

    @bp.before_request
    def _claim() -> Response | tuple[Response, int] | None:
        key = request.headers.get(HEADER)
        if key is None or request.method not in WRITES or request.endpoint in skip:
            return None
        if not 1 <= len(key) <= 255 or not key.isascii() or not key.isprintable():
            raise TrackerError("invalid_request", f"{HEADER} must be 1-255 printable ASCII")
        rt = runtime()
        with rt.uow() as uow:
            outcome = service.claim(
                uow=uow,
                caller=_caller(),
                key=key,
                fingerprint=_fingerprint(),
                now=rt.clock.now(),
            )
            uow.commit()
        if isinstance(outcome, service.Claimed):
            g.idempotency_row = outcome.row_id
            return None
        if isinstance(outcome, service.Replay):
            replay = Response(
                outcome.body, status=outcome.status_code, content_type=outcome.content_type
            )
            replay.headers["Idempotent-Replayed"] = "true"
            return replay
        if isinstance(outcome, service.InFlight):
            busy, status = error_response(
                "idempotency_in_flight", REASONS["idempotency_in_flight"], 409
            )
            busy.headers["Retry-After"] = str(outcome.retry_after_seconds)
            return busy, status
        return error_response("idempotency_key_reused", REASONS["idempotency_key_reused"], 422)

    @bp.after_request
    def _store(response: Response) -> Response:
        row_id = g.pop("idempotency_row", None)
        if row_id is None:
            return response
        rt = runtime()
        with rt.uow() as uow:
            service.complete(
                uow=uow,
                row_id=row_id,
                status_code=response.status_code,
                content_type=response.content_type or "application/json",
                body=response.get_data(as_text=True),
            )
            uow.commit()
        return response
