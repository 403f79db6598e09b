"""Stand-ins for Twilio's servers, under the real ``twilio`` client.

``FakeTwilioHttp`` replaces the client's HttpClient in-process (STACK.md recipe): the library
serialises the request as it would for Twilio, and the test sees wire names (To, Body, ...).
``FakeTwilioServer`` is a loopback HTTP server speaking the same two endpoints (create and
list messages), for worker processes and the benchmark, which reach it through
``TRACKER_TWILIO_API_BASE_URL``.
"""

from __future__ import annotations

import json
import logging
import threading
import time
import uuid
from collections.abc import Callable
from datetime import UTC
from datetime import datetime
from email.utils import format_datetime
from http.server import BaseHTTPRequestHandler
from http.server import ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs
from urllib.parse import urlparse

from twilio.http import HttpClient
from twilio.http.response import Response
from twilio.rest import Client

ACCOUNT = "AC" + "0" * 32
SERVICE = "MG" + "0" * 32


def message_json(to: str, body: str, *, sid: str | None = None, status: str = "queued") -> dict:
    return {
        "sid": sid or "SM" + uuid.uuid4().hex,
        "account_sid": ACCOUNT,
        "to": to,
        "body": body,
        "status": status,
        "date_created": format_datetime(datetime.now(UTC)),
        "messaging_service_sid": SERVICE,
    }


def page_json(messages: list[dict]) -> dict:
    return {
        "messages": messages,
        "end": max(len(messages) - 1, 0),
        "first_page_uri": "/2010-04-01/Accounts/x/Messages.json?PageSize=50&Page=0",
        "next_page_uri": None,
        "page": 0,
        "page_size": 50,
        "previous_page_uri": None,
        "start": 0,
        "uri": "/2010-04-01/Accounts/x/Messages.json?PageSize=50&Page=0",
    }


Reply = tuple[int, dict] | Exception | Callable[[str, str, dict], tuple[int, dict]]


class FakeTwilioHttp(HttpClient):
    """Scripted replies for message creation; lookups answer from what was 'accepted'.

    ``replies`` is consumed per create call: ``"ok"`` accepts the message, ``(status, body)``
    answers with that, an exception is raised (a timeout), and ``"lost"`` raises a timeout
    *after* accepting the message (the reply never reached us).
    """

    def __init__(self, replies: list[Any] | None = None) -> None:
        super().__init__(logger=logging.getLogger("fake-twilio"), is_async=False)
        self.replies = list(replies or [])
        self.requests: list[tuple[str, str, dict]] = []
        self.accepted: list[dict] = []
        self.list_errors: list[tuple[int, dict]] = []
        self._lock = threading.Lock()
        self.delay = 0.0

    @property
    def posts(self) -> list[dict]:
        return [data for method, _, data in self.requests if method == "POST"]

    def request(  # type: ignore[override]
        self,
        method: str,
        url: str,
        params: dict | None = None,
        data: dict | None = None,
        headers: dict | None = None,
        auth: tuple | None = None,
        timeout: float | None = None,
        allow_redirects: bool = False,
    ) -> Response:
        with self._lock:
            self.requests.append((method, url, dict(data or params or {})))
        if self.delay:
            time.sleep(self.delay)
        if method == "GET":
            with self._lock:
                if self.list_errors:
                    status, body = self.list_errors.pop(0)
                    return Response(status, json.dumps(body))
            to = (params or {}).get("To")
            found = [m for m in reversed(self.accepted) if to is None or m["to"] == to]
            return Response(200, json.dumps(page_json(found)))
        with self._lock:
            reply = self.replies.pop(0) if self.replies else "ok"
        payload = dict(data or {})
        if isinstance(reply, Exception):
            raise reply
        if reply in ("ok", "lost"):
            message = message_json(payload["To"], payload["Body"])
            with self._lock:
                self.accepted.append(message)
            if reply == "lost":
                raise TimeoutError("read timed out")  # accepted by Twilio, reply lost
            return Response(201, json.dumps(message))
        status, body = reply
        return Response(status, json.dumps(body))


def twilio_client(http: HttpClient) -> Client:
    return Client(ACCOUNT, "auth-token", http_client=http, environment={})


class FakeTwilioServer:
    """A loopback Twilio: records each message with its arrival time; can hang on demand."""

    def __init__(self) -> None:
        self.messages: list[dict] = []
        self.arrivals: list[tuple[float, str, str]] = []
        self.mode = "ok"  # "ok" | "hang" (accept, never answer) | "drop" (never accept)
        self.release = threading.Event()
        self.lock = threading.Lock()
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def _send(self, status: int, body: dict) -> None:
                raw = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(raw)))
                self.end_headers()
                self.wfile.write(raw)

            def do_POST(self) -> None:  # noqa: N802
                arrived = time.time()
                length = int(self.headers.get("Content-Length", 0))
                form = {k: v[0] for k, v in parse_qs(self.rfile.read(length).decode()).items()}
                with server.lock:
                    server.arrivals.append((arrived, form.get("To", ""), form.get("Body", "")))
                    mode = server.mode
                    message = message_json(form.get("To", ""), form.get("Body", ""))
                    if mode != "drop":
                        server.messages.append(message)
                if mode in ("hang", "drop"):
                    server.release.wait(60)
                    return
                self._send(201, message)

            def do_GET(self) -> None:  # noqa: N802
                query = parse_qs(urlparse(self.path).query)
                to = query.get("To", [None])[0]
                with server.lock:
                    found = [m for m in reversed(server.messages) if to is None or m["to"] == to]
                self._send(200, page_json(found))

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.httpd.server_port}"

    def __enter__(self) -> FakeTwilioServer:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release.set()
        self.httpd.shutdown()
        self.httpd.server_close()

    def posts_to(self, phone: str) -> list[str]:
        with self.lock:
            return [body for _, to, body in self.arrivals if to == phone]
