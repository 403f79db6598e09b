"""Twilio webhooks: signatures (Twilio's published vector, behind a proxy), ACK replies as
custody evidence, STOP shown to coordinators, status callbacks."""

import pytest
from pydantic import SecretStr
from sqlalchemy import select
from twilio.request_validator import RequestValidator
from werkzeug.datastructures import MultiDict

from tests.alert_helpers import COURIER_PHONE
from tests.alert_helpers import ingest
from tests.alert_helpers import on_the_road
from tests.alert_helpers import series
from tests.e2e.test_api import login
from tracker.clock import FixedClock
from tracker.models import Alert
from tracker.models import CustodyEvent
from tracker.models import SmsInbound
from tracker.models import SmsOptOut
from tracker.models import SmsOutbox
from tracker.services.custody import verify_chain_for
from tracker.web import create_app
from tracker.web.twilio import signature_valid

TOKEN = "12345"
PUBLIC = "https://tracker.example.org"
VECTOR_PARAMS = {
    "CallSid": "CA1234567890ABCDE",
    "Caller": "+14158675309",
    "Digits": "1234",
    "From": "+14158675309",
    "To": "+18005551212",
}


def test_signatures_match_twilios_published_example():
    validator = RequestValidator(TOKEN)
    url = "https://mycompany.com/myapp.php?foo=1&bar=2"
    assert validator.compute_signature(url, VECTOR_PARAMS) == "RSOYDt4T1cUTdK1PDd93/VVr8B8="
    other = {**VECTOR_PARAMS, "Caller": "+12349013030", "From": "+12349013030"}
    assert validator.validate(url, other, "0/KCTR6DLpKmkAf8muzZqo1nDgQ=")


@pytest.fixture
def twilio_app(settings, session_factory, clock):
    app = create_app(
        settings.model_copy(
            update={"twilio_auth_token": SecretStr(TOKEN), "public_base_url": PUBLIC}
        ),
        clock=FixedClock(clock.now()),
    )
    rt = app.extensions["tracker"]
    rt.session_factory, rt.clock = session_factory, clock
    return app


def test_our_check_accepts_the_published_example_at_its_public_url(twilio_app, settings):
    # The request reached us as http://localhost/myapp.php; Twilio signed the public URL.
    rt = twilio_app.extensions["tracker"]
    vector = rt.settings.model_copy(update={"public_base_url": "https://mycompany.com"})
    with twilio_app.test_request_context(
        "/myapp.php?foo=1&bar=2",
        method="POST",
        data=VECTOR_PARAMS,
        headers={"X-Twilio-Signature": "RSOYDt4T1cUTdK1PDd93/VVr8B8="},
    ):
        assert signature_valid(vector)
    with twilio_app.test_request_context(
        "/myapp.php?foo=1&bar=3",
        method="POST",
        data=VECTOR_PARAMS,
        headers={"X-Twilio-Signature": "RSOYDt4T1cUTdK1PDd93/VVr8B8="},
    ):
        assert not signature_valid(vector)


def _post(client, path, params, *, url=None, token=TOKEN):
    signed = RequestValidator(token).compute_signature(url or PUBLIC + path, MultiDict(params))
    return client.post(path, data=MultiDict(params), headers={"X-Twilio-Signature": signed})


def test_behind_a_proxy_only_the_public_url_signature_is_accepted(twilio_app, world):
    client = twilio_app.test_client()
    params = {"MessageSid": "SM1", "From": "+15550009999", "To": "+15550000000", "Body": "hi"}
    assert _post(client, "/twilio/inbound", params).status_code == 200
    internal = "http://localhost/twilio/inbound"
    params["MessageSid"] = "SM2"
    assert _post(client, "/twilio/inbound", params, url=internal).status_code == 403
    assert _post(client, "/twilio/inbound", params, token="wrong").status_code == 403
    assert client.post("/twilio/inbound", data=params).status_code == 403


def test_repeated_form_values_all_count_in_the_signature(twilio_app, world):
    client = twilio_app.test_client()
    params = [("MessageSid", "SM3"), ("From", "+1555"), ("Media", "a"), ("Media", "b")]
    assert _post(client, "/twilio/inbound", params).status_code == 200
    single = RequestValidator(TOKEN).compute_signature(
        PUBLIC + "/twilio/inbound", {"MessageSid": "SM4", "From": "+1555", "Media": "a"}
    )
    resp = client.post(
        "/twilio/inbound",
        data=MultiDict([("MessageSid", "SM4"), ("From", "+1555"), ("Media", "a"), ("Media", "b")]),
        headers={"X-Twilio-Signature": single},
    )
    assert resp.status_code == 403


@pytest.fixture
def excursion_alert(new_uow, world, clock):
    trip = on_the_road(new_uow, world, clock.now())
    ingest(new_uow, trip, series(trip.packed_at, [9.0] * 8), clock.now())
    with new_uow() as uow:
        alert = uow.session.scalar(select(Alert).where(Alert.severity == "alarm"))
        uow.session.execute(SmsOutbox.__table__.update().values(state="sent", sid="SMcourier1"))
        uow.commit()
        return trip, alert.id, alert.ack_code, alert.job_code


def test_a_courier_ack_acknowledges_the_alert_and_is_custody_evidence(
    twilio_app, new_uow, excursion_alert, clock
):
    trip, alert_id, code, job = excursion_alert
    client = twilio_app.test_client()
    params = {
        "MessageSid": "SMin1",
        "From": COURIER_PHONE,
        "To": "+15550000000",
        "Body": f"ack {code}",
    }
    resp = _post(client, "/twilio/inbound", params)
    assert resp.status_code == 200 and resp.mimetype == "application/xml"
    assert f"Job {job}: acknowledged" in resp.get_data(as_text=True)
    assert _post(client, "/twilio/inbound", params).status_code == 200  # Twilio retried
    with new_uow() as uow:
        alert = uow.session.get(Alert, alert_id)
        assert (alert.status, alert.ack_channel, alert.ack_phone) == (
            "acknowledged",
            "sms",
            COURIER_PHONE,
        )
        notes = list(
            uow.session.scalars(
                select(CustodyEvent).where(
                    CustodyEvent.order_id == trip.order.id, CustodyEvent.event_type == "note"
                )
            )
        )
        assert len(notes) == 1
        assert notes[0].details["phone"] == COURIER_PHONE
        assert notes[0].details["message_sid"] == "SMin1"
        assert notes[0].occurred_at == clock.now()
        assert notes[0].actor_user_id is not None
        assert verify_chain_for(uow.session, notes[0].chain_key) == []
        assert uow.session.query(SmsInbound).count() == 1


def test_an_ack_from_a_phone_that_was_not_texted_acknowledges_nothing(
    twilio_app, new_uow, excursion_alert
):
    _, alert_id, code, _ = excursion_alert
    params = {"MessageSid": "SMx", "From": "+15559998888", "To": "+1", "Body": f"ACK {code}"}
    resp = _post(twilio_app.test_client(), "/twilio/inbound", params)
    assert "No open alert" in resp.get_data(as_text=True)
    with new_uow() as uow:
        assert uow.session.get(Alert, alert_id).status == "open"


def test_stop_is_recorded_shown_to_coordinators_and_honoured(
    twilio_app, new_uow, excursion_alert, world
):
    client = twilio_app.test_client()
    params = {"MessageSid": "SMstop", "From": COURIER_PHONE, "To": "+1", "Body": "STOP"}
    resp = _post(client, "/twilio/inbound", params)
    assert resp.get_data(as_text=True).endswith("<Response />")
    with new_uow() as uow:
        assert uow.session.get(SmsOptOut, COURIER_PHONE).opted_out is True
    login(client, "coord")
    page = client.get("/alerts").get_data(as_text=True)
    assert "SMS opt-outs" in page and "Courier User" in page and "…1111" in page
    params = {"MessageSid": "SMstart", "From": COURIER_PHONE, "To": "+1", "Body": "START"}
    _post(client, "/twilio/inbound", params)
    with new_uow() as uow:
        assert uow.session.get(SmsOptOut, COURIER_PHONE).opted_out is False


def test_status_callbacks_update_the_text_shown_on_the_alert(twilio_app, new_uow, excursion_alert):
    _, alert_id, _, _ = excursion_alert
    client = twilio_app.test_client()
    params = {"MessageSid": "SMcourier1", "MessageStatus": "delivered", "To": COURIER_PHONE}
    assert _post(client, "/twilio/status", params).status_code == 204
    with new_uow() as uow:
        assert uow.session.scalar(select(SmsOutbox.twilio_status)) == "delivered"
    login(client, "coord")
    page = client.get(f"/alerts/{alert_id}").get_data(as_text=True)
    assert "delivered" in page
