from datetime import timedelta

import pytest
from sqlalchemy import select

from tests.factories import make_order
from tracker.domain.errors import TrackerError
from tracker.models import AuditEntry
from tracker.models import Signature
from tracker.services import auth


def _login(new_uow, settings, clock, username, password):
    with new_uow() as uow:
        return auth.authenticate(
            uow=uow,
            hasher=auth.make_hasher(settings),
            settings=settings,
            username=username,
            password=password,
            now=clock.now(),
        )


def test_a_correct_password_logs_in_and_resets_the_failure_count(new_uow, world, settings, clock):
    with pytest.raises(TrackerError):
        _login(new_uow, settings, clock, "coord", "wrong")
    user = _login(new_uow, settings, clock, "coord", world.password)
    assert user.failed_logins == 0
    assert user.last_login_at == clock.now()


def test_repeated_failures_lock_the_account_in_the_database(new_uow, world, settings, clock):
    reasons = []
    for _ in range(settings.lockout_threshold):
        with pytest.raises(TrackerError) as err:
            _login(new_uow, settings, clock, "nurse", "wrong password")
        reasons.append(err.value.reason)
    assert reasons[-1] == "account_locked"
    assert set(reasons[:-1]) == {"bad_credentials"}
    # Even the right password is refused while locked...
    with pytest.raises(TrackerError) as err:
        _login(new_uow, settings, clock, "nurse", world.password)
    assert err.value.reason == "account_locked"
    # ...and accepted once the lock has run out.
    clock.advance(timedelta(minutes=settings.lockout_minutes + 1))
    assert _login(new_uow, settings, clock, "nurse", world.password).username == "nurse"
    with new_uow() as uow:
        actions = list(
            uow.session.scalars(
                select(AuditEntry.action).where(
                    AuditEntry.action.in_(["login_failed", "account_locked", "login"])
                )
            )
        )
    assert actions.count("account_locked") == 1 and "login" in actions


def test_an_unknown_user_gets_the_same_answer_as_a_wrong_password(new_uow, world, settings, clock):
    with pytest.raises(TrackerError) as err:
        _login(new_uow, settings, clock, "nobody", "whatever")
    assert err.value.reason == "bad_credentials"


def test_a_signature_records_printed_name_meaning_time_and_record_hash(
    new_uow, world, settings, clock
):
    order = make_order(new_uow, world, clock.now())
    content = {"coi": order.coi, "decision": "approved"}
    with new_uow() as uow:
        sig = auth.sign_record(
            uow=uow,
            hasher=auth.make_hasher(settings),
            settings=settings,
            user_id=world.users["qa"].id,
            password=world.password,
            meaning="approval",
            record_type="therapy_order",
            record_id=order.public_id,
            content=content,
            now=clock.now(),
        )
        uow.commit()
    assert (sig.printed_name, sig.meaning, sig.signed_at) == ("Qa User", "approval", clock.now())
    assert auth.signature_matches(sig, content)
    assert not auth.signature_matches(sig, {**content, "decision": "rejected"})


def test_a_wrong_signature_password_is_refused_and_counts_toward_lockout(
    new_uow, world, settings, clock
):
    for attempt in range(settings.lockout_threshold):
        with new_uow() as uow, pytest.raises(TrackerError) as err:
            auth.sign_record(
                uow=uow,
                hasher=auth.make_hasher(settings),
                settings=settings,
                user_id=world.users["qa"].id,
                password="nope",
                meaning="approval",
                record_type="therapy_order",
                record_id="X",
                content={},
                now=clock.now(),
            )
        expected = (
            "account_locked" if attempt == settings.lockout_threshold - 1 else ("signature_failed")
        )
        assert err.value.reason == expected
    with new_uow() as uow:
        assert uow.session.scalar(select(Signature.id)) is None


def test_device_tokens_are_stored_hashed_and_resolve_to_their_device(new_uow, world, clock):
    with new_uow() as uow:
        issued = auth.register_device(
            uow=uow,
            name="Gun 1",
            kind="scanner",
            site_id=world.sites["CC1"].id,
            now=clock.now(),
            actor_user_id=world.users["admin"].id,
        )
        uow.commit()
    assert issued.token not in issued.device.token_hash
    with new_uow() as uow:
        assert (
            auth.authenticate_device(uow=uow, token=issued.token, now=clock.now()).id
            == issued.device.id
        )
        with pytest.raises(TrackerError) as err:
            auth.authenticate_device(uow=uow, token=issued.token + "x", now=clock.now())
    assert err.value.reason == "unauthenticated"
