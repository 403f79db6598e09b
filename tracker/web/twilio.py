"""Twilio webhooks: delivery status callbacks and inbound replies, signature-checked.

Twilio signs the URL it called, which behind a TLS proxy is not the URL Flask sees; so the
signature is checked against ``public_base_url`` plus the path and the raw query string, and
against the form as a MultiDict (a repeated parameter counts every value). Any doubt fails
closed with 403. The signature replaces CSRF for these two routes.
"""

from __future__ import annotations

from flask import Blueprint
from flask import Response
from flask import abort
from flask import request
from flask.typing import ResponseReturnValue
from twilio.request_validator import RequestValidator
from twilio.request_validator import get_signature_algorithm
from twilio.twiml.messaging_response import MessagingResponse

from tracker.config import Settings
from tracker.services import sms
from tracker.web.auth import csrf
from tracker.web.runtime import runtime

bp = Blueprint("twilio", __name__, url_prefix="/twilio")
csrf.exempt(bp)


def public_url(settings: Settings) -> str:
    """The URL Twilio called: our public base, this path, and the query string as sent."""
    url = settings.public_base_url.rstrip("/") + request.path
    if request.query_string:
        url += "?" + request.query_string.decode("latin-1")
    return url


def signature_valid(settings: Settings) -> bool:
    algorithm = get_signature_algorithm(request.headers.get("X-Twilio-Webhooks-Signature-Settings"))
    secret = (
        settings.twilio_shared_key if algorithm == "HMAC_SHA256" else settings.twilio_auth_token
    )
    signature = request.headers.get("X-Twilio-Signature", "")
    if secret is None or not signature:
        return False
    validator = RequestValidator(secret.get_secret_value())
    return bool(validator.validate(public_url(settings), request.form, signature, algorithm))


@bp.before_request
def _require_signature() -> None:
    if not signature_valid(runtime().settings):
        abort(403)


def _twiml(message: str | None) -> Response:
    reply = MessagingResponse()
    if message:
        reply.message(message)
    return Response(str(reply), mimetype="application/xml")


@bp.post("/status")
def status_callback() -> ResponseReturnValue:
    rt = runtime()
    sid = request.form.get("MessageSid", "")
    status = request.form.get("MessageStatus", "")
    if not sid or not status:
        abort(400)
    code = request.form.get("ErrorCode")
    with rt.uow() as uow:
        sms.record_status(
            uow=uow,
            message_sid=sid,
            status=status,
            error_code=int(code) if code and code.isdigit() else None,
            now=rt.clock.now(),
        )
        uow.commit()
    return Response(status=204)


@bp.post("/inbound")
def inbound() -> ResponseReturnValue:
    rt = runtime()
    sid = request.form.get("MessageSid", "")
    sender = request.form.get("From", "")
    if not sid or not sender:
        abort(400)
    with rt.uow() as uow:
        result = sms.handle_inbound(
            uow=uow,
            message_sid=sid,
            from_phone=sender,
            to_phone=request.form.get("To", ""),
            body=request.form.get("Body", ""),
            now=rt.clock.now(),
        )
        uow.commit()
    return _twiml(result.reply)
