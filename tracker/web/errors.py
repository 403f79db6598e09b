"""The one place that maps errors to HTTP: JSON for the API, pages for browsers."""

from __future__ import annotations

import logging

from flask import Flask
from flask import Response
from flask import jsonify
from flask import render_template
from flask import request
from flask_wtf.csrf import CSRFError
from pydantic import ValidationError
from sqlalchemy.orm.exc import StaleDataError
from werkzeug.exceptions import HTTPException

from tracker.domain.errors import REASONS
from tracker.domain.errors import TrackerError

log = logging.getLogger(__name__)

HTTP_STATUS: dict[str, int] = {
    "unauthenticated": 401,
    "session_expired": 401,
    "bad_credentials": 401,
    "signature_failed": 401,
    "forbidden": 403,
    "csrf_failed": 403,
    "account_inactive": 403,
    "account_locked": 423,
    "not_found": 404,
    "conflict": 409,
    "duplicate_identifier": 409,
    "invalid_transition": 409,
    "coi_mismatch": 409,
    "label_not_printed": 409,
    "label_already_printed": 409,
    # The printer, not the caller, failed: a gateway error, and the attempt is on record.
    "printer_unreachable": 502,
    "printer_refused": 502,
    "disposition_pending": 409,
    "quarantine_hold": 409,
    "excursion_ongoing": 409,
    "alert_not_open": 409,
    "not_a_logger": 403,
    "capacity_taken": 409,
    "capacity_in_use": 409,
    "plan_changed": 409,
    "plan_exists": 409,
    "plan_not_live": 409,
    "hold_expired": 409,
    "material_not_accepted": 409,
    "release_tests_incomplete": 409,
    "lot_out_of_specification": 409,
    "superseded": 409,
    "idempotency_in_flight": 409,
    "idempotency_key_reused": 422,
    "internal_error": 500,
}

_WERKZEUG_REASON = {
    401: "unauthenticated",
    403: "forbidden",
    404: "not_found",
    405: "invalid_request",
    409: "conflict",
    413: "invalid_request",
}


def status_for(reason: str) -> int:
    return HTTP_STATUS.get(reason, 400)


def _wants_json() -> bool:
    return request.path.startswith("/api/") or request.accept_mimetypes.best == "application/json"


def error_response(
    reason: str, message: str, status: int | None = None, **extra: object
) -> tuple[Response, int]:
    body: dict[str, object] = {"status": "error", "reason": reason, "message": message}
    body.update(extra)
    return jsonify(body), status or status_for(reason)


def register_error_handlers(app: Flask) -> None:
    @app.errorhandler(TrackerError)
    def _tracker_error(exc: TrackerError) -> tuple[Response | str, int]:
        if _wants_json():
            return error_response(exc.reason, exc.message)
        return render_template("error.html", reason=exc.reason, message=exc.message), status_for(
            exc.reason
        )

    @app.errorhandler(ValidationError)
    def _validation_error(exc: ValidationError) -> tuple[Response, int]:
        problems = [
            {"field": ".".join(str(p) for p in e["loc"]), "problem": e["msg"]}
            for e in exc.errors(include_url=False, include_input=False)
        ]
        naive = any("timezone" in p["problem"].lower() for p in problems)
        reason = "naive_datetime" if naive else "invalid_request"
        return error_response(reason, REASONS[reason], 400, problems=problems)

    @app.errorhandler(StaleDataError)
    def _stale(exc: StaleDataError) -> tuple[Response | str, int]:
        # A version counter moved under a concurrent write: the caller reloads and retries.
        if _wants_json():
            return error_response("conflict", REASONS["conflict"])
        return render_template("error.html", reason="conflict", message=REASONS["conflict"]), 409

    @app.errorhandler(CSRFError)
    def _csrf_error(exc: CSRFError) -> tuple[Response | str, int]:
        if _wants_json():
            return error_response("csrf_failed", REASONS["csrf_failed"])
        return render_template(
            "error.html",
            reason="csrf_failed",
            message="The form expired; reload the page and try again.",
        ), 403

    @app.errorhandler(HTTPException)
    def _http_error(exc: HTTPException) -> tuple[Response | str, int]:
        code = exc.code or 500
        reason = _WERKZEUG_REASON.get(code, "invalid_request" if code < 500 else "internal_error")
        if _wants_json():
            return error_response(reason, exc.description or REASONS[reason], code)
        return render_template("error.html", reason=reason, message=exc.description), code

    @app.errorhandler(Exception)
    def _unexpected(exc: Exception) -> tuple[Response | str, int]:
        # Logged with the path only: bodies may carry identity data.
        log.exception("unhandled error on %s %s", request.method, request.path)
        if _wants_json():
            return error_response("internal_error", REASONS["internal_error"], 500)
        return render_template(
            "error.html", reason="internal_error", message=REASONS["internal_error"]
        ), 500
