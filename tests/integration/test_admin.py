"""Administration: administrators only, reasons for every change to a record, the change on
the audit trail as old -> new, sessions ended when access shrinks, tokens shown once."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from tests.conftest import WORLD_PASSWORD
from tracker.domain.errors import TrackerError
from tracker.models import AuditEntry
from tracker.models import Device
from tracker.models import EscalationStep
from tracker.models import Site
from tracker.models import User
from tracker.services import admin
from tracker.services import auth
from tracker.services.auth import make_hasher


def run(new_uow, world, clock, action, who="admin", **kwargs):
    with new_uow() as uow:
        result = action(uow=uow, principal=world.principals[who], now=clock.now(), **kwargs)
        uow.commit()
        return result


def last_audit(new_uow, action):
    with new_uow() as uow:
        entry = uow.session.scalar(
            select(AuditEntry).where(AuditEntry.action == action).order_by(AuditEntry.id.desc())
        )
        uow.session.expunge(entry)
        return entry


@pytest.mark.parametrize("who", ["coord", "qa", "nurse"])
def test_only_administrators_administer(new_uow, world, clock, who):
    with pytest.raises(TrackerError) as refused:
        run(
            new_uow,
            world,
            clock,
            admin.update_site,
            who=who,
            code="TC1",
            changes={"name": "Mine now"},
            reason="because",
        )
    assert refused.value.reason == "forbidden"


def test_a_site_change_needs_a_reason_and_is_audited_old_to_new(new_uow, world, clock):
    with pytest.raises(TrackerError) as refused:
        run(new_uow, world, clock, admin.update_site, code="TC1", changes={"name": "X"}, reason=" ")
    assert refused.value.reason == "reason_required"
    run(
        new_uow,
        world,
        clock,
        admin.update_site,
        code="TC1",
        changes={"name": "Treatment One (new wing)", "timezone": "America/Chicago"},
        reason="moved to the new wing",
    )
    entry = last_audit(new_uow, "update")
    assert entry.entity_type == "site" and entry.reason == "moved to the new wing"
    assert entry.changes["name"] == ["Treatment One", "Treatment One (new wing)"]
    assert entry.changes["timezone"] == ["America/New_York", "America/Chicago"]
    with pytest.raises(TrackerError):
        run(
            new_uow,
            world,
            clock,
            admin.update_site,
            code="TC1",
            changes={"timezone": "Mars/Olympus"},
            reason="typo",
        )


def test_new_sites_are_checked_and_recorded(new_uow, world, clock):
    site = run(
        new_uow,
        world,
        clock,
        admin.create_site,
        code="pl-2",
        name="Processing Two",
        kind="processing_lab",
        timezone="Europe/Paris",
        address="",
    )
    assert site.code == "PL-2"
    with pytest.raises(TrackerError) as dup:
        run(
            new_uow,
            world,
            clock,
            admin.create_site,
            code="PL-2",
            name="Again",
            kind="processing_lab",
            timezone="Europe/Paris",
            address="",
        )
    assert dup.value.reason == "duplicate_identifier"


def test_users_get_roles_lose_them_and_are_signed_out_each_time(new_uow, settings, world, clock):
    user = run(
        new_uow,
        world,
        clock,
        admin.create_user,
        hasher=make_hasher(settings),
        username="newnurse",
        full_name="New Nurse",
        password="long-enough-password",
        phone=None,
        grants=[("collection_nurse", "CC1")],
    )
    version = user.session_version
    assignment = run(
        new_uow,
        world,
        clock,
        admin.grant_role,
        user_id=user.id,
        role="infusion_nurse",
        site_code="TC1",
        reason="covers infusions on Fridays",
    )
    with new_uow() as uow:
        fresh = uow.session.get(User, user.id)
        assert fresh.session_version == version + 1
        assert {(a.role, a.site_id) for a in fresh.roles} == {
            ("collection_nurse", world.sites["CC1"].id),
            ("infusion_nurse", world.sites["TC1"].id),
        }
    run(
        new_uow,
        world,
        clock,
        admin.revoke_role,
        assignment_id=assignment.id,
        reason="rotation ended",
    )
    entry = last_audit(new_uow, "revoke_role")
    assert entry.changes == {"role": ["infusion_nurse@TC1", None]}
    assert entry.reason == "rotation ended"
    with pytest.raises(TrackerError) as dup:
        run(
            new_uow,
            world,
            clock,
            admin.create_user,
            hasher=make_hasher(settings),
            username="newnurse",
            full_name="Someone else",
            password="long-enough-password",
            phone=None,
            grants=[("qa", "MF1")],
        )
    assert dup.value.reason == "duplicate_identifier"  # identities are never reused


def test_deactivating_a_user_ends_their_sessions_and_logins(new_uow, settings, world, clock):
    run(
        new_uow,
        world,
        clock,
        admin.set_user_active,
        user_id=world.users["nurse"].id,
        active=False,
        reason="left the unit",
    )
    with new_uow() as uow, pytest.raises(TrackerError) as refused:
        auth.authenticate(
            uow=uow,
            hasher=make_hasher(settings),
            settings=settings,
            username="nurse",
            password=WORLD_PASSWORD,
            now=clock.now(),
        )
    assert refused.value.reason == "account_inactive"
    with pytest.raises(TrackerError) as self_lock:
        run(
            new_uow,
            world,
            clock,
            admin.set_user_active,
            user_id=world.users["admin"].id,
            active=False,
            reason="oops",
        )
    assert self_lock.value.reason == "forbidden"


def test_unlocking_an_account_is_a_reasoned_change(new_uow, settings, world, clock):
    for _ in range(settings.lockout_threshold):
        with new_uow() as uow, pytest.raises(TrackerError):
            auth.authenticate(
                uow=uow,
                hasher=make_hasher(settings),
                settings=settings,
                username="qa",
                password="wrong",
                now=clock.now(),
            )
    with new_uow() as uow:
        assert uow.session.get(User, world.users["qa"].id).locked_until is not None
    run(new_uow, world, clock, admin.unlock_user, user_id=world.users["qa"].id, reason="called")
    with new_uow() as uow:
        assert uow.session.get(User, world.users["qa"].id).locked_until is None
    assert last_audit(new_uow, "unlock").reason == "called"


def test_a_device_token_is_issued_once_and_stops_working_when_revoked(new_uow, world, clock):
    issued = run(
        new_uow,
        world,
        clock,
        admin.register_device,
        name="Bench scanner",
        kind="scanner",
        site_code="CC1",
    )
    with new_uow() as uow:
        stored = uow.session.scalar(
            select(Device).where(Device.public_id == issued.device.public_id)
        )
        assert stored.token_hash == auth.token_digest(issued.token)
        assert issued.token not in str(stored.__dict__)
        assert auth.authenticate_device(uow=uow, token=issued.token, now=clock.now())
    run(
        new_uow,
        world,
        clock,
        admin.set_device_active,
        device_public_id=issued.device.public_id,
        active=False,
        reason="scanner lost",
    )
    with new_uow() as uow, pytest.raises(TrackerError) as refused:
        auth.authenticate_device(uow=uow, token=issued.token, now=clock.now())
    assert refused.value.reason == "unauthenticated"
    assert last_audit(new_uow, "revoke").reason == "scanner lost"


def test_a_ladder_is_replaced_with_a_reason_and_checked(new_uow, world, clock):
    steps = [
        ("courier", None, "sms", 10),
        ("coordinator", world.users["coord"].id, "in_app", 15),
        ("on_call_manager", world.users["admin"].id, "sms", 20),
    ]
    run(new_uow, world, clock, admin.set_ladder, site_code="CC1", steps=steps, reason="new SOP")
    with new_uow() as uow:
        rungs = list(
            uow.session.execute(
                select(EscalationStep.role, EscalationStep.ack_timeout_minutes)
                .join(Site, Site.id == EscalationStep.site_id)
                .where(Site.code == "CC1")
                .order_by(EscalationStep.position)
            )
        )
    assert [tuple(r) for r in rungs] == [
        ("courier", 10),
        ("coordinator", 15),
        ("on_call_manager", 20),
    ]
    assert last_audit(new_uow, "set_ladder").reason == "new SOP"
    with pytest.raises(TrackerError):
        run(
            new_uow,
            world,
            clock,
            admin.set_ladder,
            site_code="CC1",
            steps=[("coordinator", None, "sms", 10)],
            reason="nobody named",
        )


def test_printer_changes_carry_their_reason(new_uow, world, clock):
    from tracker.services import printers

    printer = run(
        new_uow,
        world,
        clock,
        printers.create_printer,
        site_code="CC1",
        name="Bench Zebra",
        host="10.0.0.5",
    )
    run(
        new_uow,
        world,
        clock,
        admin.update_printer,
        printer_public_id=printer.public_id,
        changes={"active": False},
        reason="head worn out",
    )
    entry = last_audit(new_uow, "update")
    assert entry.entity_type == "printer" and entry.reason == "head worn out"
    assert entry.changes == {"active": [True, False]}
