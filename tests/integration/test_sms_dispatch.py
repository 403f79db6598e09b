"""The outbox dispatcher against the real twilio client over a fake HTTP client.

Faults: 429 (retry with backoff), 500 and timeouts (look it up before resending), a permanent
refusal (21610 unsubscribed), lookups that keep failing, and a worker that died mid-call.
"""

from datetime import timedelta

import pytest
import requests
from sqlalchemy import select
from sqlalchemy import update

from tests.alert_helpers import COURIER_PHONE
from tests.alert_helpers import on_the_road
from tests.fake_twilio import SERVICE
from tests.fake_twilio import FakeTwilioHttp
from tests.fake_twilio import message_json
from tests.fake_twilio import twilio_client
from tracker.adapters.sms import TwilioSmsSender
from tracker.domain.alerting import Notify
from tracker.models import Alert
from tracker.models import SmsOptOut
from tracker.models import SmsOutbox
from tracker.models import SmsStatusEvent
from tracker.services import alerts
from tracker.services import sms

CALLBACK = "https://tracker.example.org/twilio/status"
LEASE = timedelta(seconds=60)


@pytest.fixture
def queued(new_uow, world, clock):
    """One alert whose first rung (the shipment's courier) has a text waiting."""
    trip = on_the_road(new_uow, world, clock.now())
    with new_uow() as uow:
        alert = alerts.raise_alert(
            uow.session,
            dedupe_key="dispatch:1",
            kind="temperature_excursion",
            severity="alarm",
            notify=Notify.ladder,
            title="t",
            site_id=trip.shipment.origin_site_id,
            shipment_id=trip.shipment.id,
            sms_template="temperature_alarm",
            subject=trip.shipment.public_id,
            now=clock.now(),
        )
        uow.commit()
        return alert.id


def _run(session_factory, http, clock, *, lease=LEASE):
    sender = TwilioSmsSender(twilio_client(http), messaging_service_sid=SERVICE)
    return sms.dispatch(
        session_factory=session_factory,
        sender=sender,
        now=clock.now,
        worker="test-worker",
        status_callback=CALLBACK,
        lease=lease,
    )


def _row(new_uow):
    with new_uow() as uow:
        row = uow.session.scalar(select(SmsOutbox))
        uow.session.expunge(row)
        return row


def test_a_queued_text_goes_out_once_with_twilio_wire_names(
    session_factory, new_uow, clock, queued
):
    http = FakeTwilioHttp(["ok"])
    report = _run(session_factory, http, clock)
    assert report.sent == 1
    (post,) = http.posts
    assert post["To"] == COURIER_PHONE
    assert post["MessagingServiceSid"] == SERVICE
    assert post["StatusCallback"] == CALLBACK
    assert post["ValidityPeriod"] == 900
    assert "Reply ACK" in post["Body"]
    row = _row(new_uow)
    assert (row.state, row.sid, row.attempts) == ("sent", http.accepted[0]["sid"], 1)
    assert _run(session_factory, http, clock).sent == 0 and len(http.posts) == 1


def test_429_is_retried_after_a_backoff(session_factory, new_uow, clock, queued):
    http = FakeTwilioHttp([(429, {"code": 20429, "message": "Too Many Requests"}), "ok"])
    _run(session_factory, http, clock)
    row = _row(new_uow)
    assert (row.state, row.error_code) == ("pending", 20429)
    assert row.next_attempt_at == clock.now() + timedelta(seconds=2)
    _run(session_factory, http, clock)
    assert len(http.posts) == 1  # not due yet
    clock.advance(timedelta(seconds=2))
    _run(session_factory, http, clock)
    assert _row(new_uow).state == "sent" and len(http.posts) == 2


def test_a_500_may_have_sent_so_it_is_looked_up_and_not_sent_twice(
    session_factory, new_uow, clock, queued
):
    http = FakeTwilioHttp([(500, {"code": 20500, "message": "Internal Server Error"})])
    _run(session_factory, http, clock)
    assert _row(new_uow).state == "verify"
    # Twilio in fact queued the message before failing to answer.
    body = http.posts[0]["Body"]
    http.accepted.append(message_json(COURIER_PHONE, body, sid="SM" + "5" * 32))
    clock.advance(timedelta(seconds=2))
    report = _run(session_factory, http, clock)
    assert report.found == 1
    row = _row(new_uow)
    assert (row.state, row.sid) == ("sent", "SM" + "5" * 32)
    assert len(http.posts) == 1  # looked up (GET), never re-posted
    assert [m for m, _, _ in http.requests] == ["POST", "GET"]


def test_a_timeout_after_twilio_accepted_is_found_by_lookup(
    session_factory, new_uow, clock, queued
):
    http = FakeTwilioHttp(["lost"])
    _run(session_factory, http, clock)
    clock.advance(timedelta(seconds=2))
    _run(session_factory, http, clock)
    row = _row(new_uow)
    assert row.state == "sent" and row.sid == http.accepted[0]["sid"]
    assert len(http.posts) == 1


def test_a_timeout_before_twilio_got_it_is_resent_exactly_once(
    session_factory, new_uow, clock, queued
):
    http = FakeTwilioHttp([requests.ReadTimeout("read timed out"), "ok"])
    _run(session_factory, http, clock)
    assert _row(new_uow).state == "verify"
    clock.advance(timedelta(seconds=2))
    _run(session_factory, http, clock)  # lookup finds nothing -> pending -> sent
    assert _row(new_uow).state == "sent"
    assert len(http.posts) == 2 and len(http.accepted) == 1


def test_lookups_that_keep_failing_end_as_unknown_and_the_alert_escalates(
    session_factory, new_uow, clock, queued
):
    http = FakeTwilioHttp([(503, {"code": 20503, "message": "Service Unavailable"})])
    http.list_errors = [(503, {"code": 20503, "message": "down"})] * 10
    _run(session_factory, http, clock)
    for _ in range(6):
        clock.advance(timedelta(minutes=5))
        _run(session_factory, http, clock)
    row = _row(new_uow)
    assert (row.state, row.verify_attempts) == ("unknown", 5)
    with new_uow() as uow:
        assert uow.session.get(Alert, queued).next_escalation_at <= clock.now()
    assert len(http.posts) == 1


def test_an_unsubscribed_recipient_is_recorded_as_opted_out_and_the_alert_moves_on(
    session_factory, new_uow, clock, queued
):
    http = FakeTwilioHttp([(400, {"code": 21610, "message": "Attempt to send to unsubscribed"})])
    _run(session_factory, http, clock)
    assert _row(new_uow).state == "suppressed"
    with new_uow() as uow:
        assert uow.session.get(SmsOptOut, COURIER_PHONE).opted_out is True
        assert uow.session.get(Alert, queued).next_escalation_at == clock.now()


def test_a_text_left_sending_by_a_dead_worker_is_verified_before_any_resend(
    session_factory, new_uow, clock, queued
):
    with new_uow() as uow:
        uow.session.execute(
            update(SmsOutbox).values(
                state="sending", claimed_at=clock.now(), claimed_by="dead-worker", attempts=1
            )
        )
        uow.commit()
    http = FakeTwilioHttp(["ok"])
    assert _run(session_factory, http, clock).recovered == 0  # still within its lease
    clock.advance(LEASE + timedelta(seconds=1))
    report = _run(session_factory, http, clock)
    assert report.recovered == 1
    assert [m for m, _, _ in http.requests] == ["GET", "POST"]  # looked up first, then sent
    assert _row(new_uow).state == "sent"


def test_status_callbacks_are_stored_once_and_never_move_backwards(
    session_factory, new_uow, clock, queued
):
    http = FakeTwilioHttp(["ok"])
    _run(session_factory, http, clock)
    sid = _row(new_uow).sid
    for status in ("sent", "delivered", "sent", "delivered"):
        with new_uow() as uow:
            sms.record_status(
                uow=uow, message_sid=sid, status=status, error_code=None, now=clock.now()
            )
            uow.commit()
    assert _row(new_uow).twilio_status == "delivered"
    with new_uow() as uow:
        assert uow.session.query(SmsStatusEvent).count() == 2


def test_an_undelivered_text_brings_the_next_rung_forward(session_factory, new_uow, clock, queued):
    http = FakeTwilioHttp(["ok"])
    _run(session_factory, http, clock)
    clock.advance(timedelta(minutes=1))
    with new_uow() as uow:
        sms.record_status(
            uow=uow,
            message_sid=_row(new_uow).sid,
            status="undelivered",
            error_code=30003,
            now=clock.now(),
        )
        uow.commit()
    with new_uow() as uow:
        assert uow.session.get(Alert, queued).next_escalation_at == clock.now()


def test_a_callback_that_beats_our_own_commit_is_applied_when_the_sid_is_stored(
    session_factory, new_uow, clock, queued
):
    http = FakeTwilioHttp(["ok"])
    original = http.request

    def racing(method, url, params=None, data=None, **kw):
        response = original(method, url, params=params, data=data, **kw)
        if method == "POST":
            with new_uow() as uow:
                sms.record_status(
                    uow=uow,
                    message_sid=http.accepted[-1]["sid"],
                    status="delivered",
                    error_code=None,
                    now=clock.now(),
                )
                uow.commit()
        return response

    http.request = racing
    _run(session_factory, http, clock)
    assert _row(new_uow).twilio_status == "delivered"
