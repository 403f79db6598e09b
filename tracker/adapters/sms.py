"""The SMS port and its adapters: Twilio for real, the console for offline development.

Senders sort every failure into one of three outcomes, because the dispatcher's next move
depends on it (STACK.md, Twilio pitfalls):
- ``retry``: the message was certainly not accepted (HTTP 429 / error 20429): send again later.
- ``maybe_sent``: a 5xx, a timeout or a broken connection: Twilio may have queued it, so look it
  up before any resend.
- ``rejected``: a permanent refusal (bad number, unsubscribed recipient 21610, bad credentials).
"""

from __future__ import annotations

import logging
import threading
import uuid
from dataclasses import dataclass
from datetime import datetime
from datetime import timedelta
from typing import Literal
from typing import Protocol

from twilio.base.exceptions import TwilioException
from twilio.base.exceptions import TwilioRestException
from twilio.base.exceptions import TwilioServiceException
from twilio.http.http_client import TwilioHttpClient
from twilio.http.response import Response
from twilio.rest import Client

from tracker.config import Settings

log = logging.getLogger("tracker.sms")

Outcome = Literal["retry", "maybe_sent", "rejected"]
UNSUBSCRIBED = 21610  # Twilio: "Attempt to send to unsubscribed recipient"


@dataclass(frozen=True, slots=True)
class SendResult:
    sid: str
    status: str


class SmsSendError(Exception):
    def __init__(self, outcome: Outcome, message: str, code: int | None = None) -> None:
        super().__init__(f"{outcome}: {message}")
        self.outcome: Outcome = outcome
        self.code = code
        self.message = message


class SmsSender(Protocol):
    backend: str

    def send(self, *, to: str, body: str, status_callback: str | None) -> SendResult:
        """Hand one message to the provider, or raise SmsSendError."""
        ...

    def find_sent(self, *, to: str, body: str, since: datetime) -> SendResult | None:
        """Look for a message the provider already accepted (after a maybe-sent failure)."""
        ...


def classify(status: int, code: int | None) -> Outcome:
    """Sort a Twilio HTTP error into retry / maybe_sent / rejected."""
    if status == 429 or code == 20429:
        return "retry"
    if status >= 500:
        return "maybe_sent"
    return "rejected"


class TwilioSmsSender:
    """Sends through the real twilio ``Client`` (tests put a fake HttpClient under it)."""

    backend = "twilio"

    def __init__(
        self,
        client: Client,
        *,
        messaging_service_sid: str | None = None,
        from_number: str | None = None,
        validity_period: int = 900,
    ) -> None:
        if not (messaging_service_sid or from_number):
            raise ValueError("Twilio needs a messaging service SID or a from number")
        self.client = client
        self.messaging_service_sid = messaging_service_sid
        self.from_number = from_number
        self.validity_period = validity_period

    def send(self, *, to: str, body: str, status_callback: str | None) -> SendResult:
        kwargs: dict[str, object] = {
            "to": to,
            "body": body,
            "validity_period": self.validity_period,
        }
        if self.messaging_service_sid:
            kwargs["messaging_service_sid"] = self.messaging_service_sid
        else:
            kwargs["from_"] = self.from_number
        if status_callback:
            kwargs["status_callback"] = status_callback
        try:
            message = self.client.messages.create(**kwargs)
        except (TwilioRestException, TwilioServiceException) as exc:
            raise SmsSendError(classify(exc.status, exc.code), str(exc), exc.code) from exc
        except (TwilioException, OSError, ValueError) as exc:
            # requests' Timeout and ConnectionError are OSErrors; a garbled reply is a
            # ValueError. The request may have reached Twilio either way.
            raise SmsSendError("maybe_sent", f"{type(exc).__name__}: {exc}") from exc
        return SendResult(str(message.sid), str(message.status or "queued"))

    def find_sent(self, *, to: str, body: str, since: datetime) -> SendResult | None:
        # Newest first; a message created before our claim (minus clock skew) is not ours.
        earliest = since - timedelta(minutes=5)
        try:
            recent = self.client.messages.list(to=to, page_size=50, limit=50)
        except (TwilioRestException, TwilioServiceException) as exc:
            raise SmsSendError("retry", f"lookup failed: {exc}", exc.code) from exc
        except (TwilioException, OSError, ValueError) as exc:
            raise SmsSendError("retry", f"lookup failed: {type(exc).__name__}") from exc
        for message in recent:
            created = message.date_created
            if message.body == body and (created is None or created >= earliest):
                return SendResult(str(message.sid), str(message.status or "queued"))
        return None


class ConsoleSmsSender:
    """Offline backend for ``make run``: writes each text to the worker log and remembers it."""

    backend = "console"

    def __init__(self) -> None:
        self.sent: list[tuple[str, str, str]] = []
        self._lock = threading.Lock()

    def send(self, *, to: str, body: str, status_callback: str | None) -> SendResult:
        sid = f"CONSOLE{uuid.uuid4().hex[:26].upper()}"
        with self._lock:
            self.sent.append((sid, to, body))
        log.info("SMS (console backend, not sent) to %s: %s", to, body)
        return SendResult(sid, "sent")

    def find_sent(self, *, to: str, body: str, since: datetime) -> SendResult | None:
        with self._lock:
            for sid, sent_to, sent_body in reversed(self.sent):
                if sent_to == to and sent_body == body:
                    return SendResult(sid, "sent")
        return None


class RedirectingHttpClient(TwilioHttpClient):  # type: ignore[misc]
    """TwilioHttpClient that sends API calls to another base URL (a stand-in Twilio)."""

    def __init__(self, base_url: str, *, timeout: float) -> None:
        super().__init__(timeout=timeout)
        self.base_url = base_url.rstrip("/")

    def request(self, method: str, url: str, *args: object, **kwargs: object) -> Response:
        for origin in ("https://api.twilio.com", "https://api.us1.twilio.com"):
            if url.startswith(origin):
                url = self.base_url + url[len(origin) :]
        response: Response = super().request(method, url, *args, **kwargs)
        return response


def make_sms_sender(settings: Settings) -> SmsSender:
    """Twilio when credentials are configured, otherwise the console backend."""
    if not settings.twilio_configured:
        return ConsoleSmsSender()
    assert settings.twilio_auth_token is not None
    timeout = settings.twilio_timeout_seconds
    http_client = (
        RedirectingHttpClient(settings.twilio_api_base_url, timeout=timeout)
        if settings.twilio_api_base_url
        else TwilioHttpClient(timeout=timeout)
    )
    client = Client(
        settings.twilio_account_sid,
        settings.twilio_auth_token.get_secret_value(),
        http_client=http_client,
        environment={},  # settings are read in tracker.config only
    )
    return TwilioSmsSender(
        client,
        messaging_service_sid=settings.twilio_messaging_service_sid,
        from_number=settings.twilio_from_number,
    )
