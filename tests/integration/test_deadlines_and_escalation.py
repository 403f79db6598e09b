"""Handoff deadlines derived from the plan and profile; ladders climbed until someone answers."""

from datetime import timedelta

import pytest
from sqlalchemy import select

from tests.alert_helpers import BACKUP_PHONE
from tests.alert_helpers import COURIER_PHONE
from tests.alert_helpers import MANAGER_PHONE
from tests.alert_helpers import give_phone
from tests.alert_helpers import on_the_road
from tests.factories import make_bag
from tests.factories import make_label_print
from tests.factories import make_order
from tests.factories_quality import make_acceptance
from tracker.domain.alerting import DeadlineKind
from tracker.domain.alerting import LadderRole
from tracker.domain.alerting import Notify
from tracker.domain.custody import CustodyState as S
from tracker.domain.custody import ItemKind
from tracker.domain.errors import TrackerError
from tracker.models import Alert
from tracker.models import HandoffDeadline
from tracker.models import ProductProfile
from tracker.models import SmsOptOut
from tracker.models import SmsOutbox
from tracker.services import alerts
from tracker.services import custody
from tracker.services import deadlines


def _deadlines(new_uow, **where):
    with new_uow() as uow:
        stmt = select(HandoffDeadline).order_by(HandoffDeadline.id)
        for k, v in where.items():
            stmt = stmt.where(getattr(HandoffDeadline, k) == v)
        rows = list(uow.session.scalars(stmt))
        return [(r.kind, r.status, r.due_at, r.warn_at, r.warned_at, r.breached_at) for r in rows]


def _sweep(new_uow, now):
    with new_uow() as uow:
        deadlines.sweep_deadlines(uow=uow, now=now)
    with new_uow() as uow:
        alerts.sweep_escalations(uow=uow, now=now)


def _alerts(new_uow):
    with new_uow() as uow:
        return [
            (a.kind, a.severity, a.notify, a.status)
            for a in uow.session.scalars(select(Alert).order_by(Alert.id))
        ]


def _texts(new_uow):
    with new_uow() as uow:
        return [
            (t.to_phone, t.escalation_level, t.state)
            for t in uow.session.scalars(select(SmsOutbox).order_by(SmsOutbox.id))
        ]


def test_set_deadline_is_one_row_per_key_and_moving_it_rearms_the_warning(new_uow, world, clock):
    now = clock.now()
    site = world.sites["TC1"].id
    for due in (now + timedelta(hours=2), now + timedelta(hours=3)):
        with new_uow() as uow:
            deadlines.set_deadline(
                uow=uow,
                kind=DeadlineKind.plan_milestone,
                due_at=due,
                site_id=site,
                dedupe_key="plan:infusion-window:1",
                label="Infusion window opens",
                now=now,
            )
            uow.commit()
    rows = _deadlines(new_uow)
    assert len(rows) == 1 and rows[0][2] == now + timedelta(hours=3)
    _sweep(new_uow, now + timedelta(hours=2, minutes=30))
    assert _alerts(new_uow) == [("deadline_warning", "warning", "first", "open")]
    _sweep(new_uow, now + timedelta(hours=3, minutes=1))
    assert [a[0] for a in _alerts(new_uow)] == ["deadline_warning", "deadline_breach"]
    assert _alerts(new_uow)[0][3] == "resolved"  # the warning gave way to the breach


def test_a_new_deadline_is_the_stored_row_and_changes_to_it_are_written(new_uow, world, clock):
    # A new deadline is not read back after its insert: the object returned must still be
    # the stored row in every column, and later changes in the same transaction must reach it.
    now = clock.now()
    site = world.sites["TC1"].id
    with new_uow() as uow:
        row = deadlines.set_deadline(
            uow=uow,
            kind=DeadlineKind.plan_milestone,
            due_at=now + timedelta(hours=2),
            site_id=site,
            dedupe_key="plan:returned-row:1",
            label="Returned row",
            now=now,
        )
        returned = {c.name: getattr(row, c.name) for c in HandoffDeadline.__table__.columns}
        deadlines.complete(uow.session, row, at=now + timedelta(hours=1), now=now)
        uow.commit()
    with new_uow() as uow:
        stored = uow.session.scalars(
            select(HandoffDeadline).where(HandoffDeadline.dedupe_key == "plan:returned-row:1")
        ).one()
        assert {**returned, "status": "met", "closed_at": now + timedelta(hours=1)} == {
            c.name: getattr(stored, c.name) for c in HandoffDeadline.__table__.columns
        }
        assert returned["id"] == stored.id and returned["warned_at"] is None


def test_planned_pickup_warns_the_courier_and_picking_up_meets_it(new_uow, world, clock):
    now = clock.now()
    give_phone(new_uow, world, "courier", COURIER_PHONE)
    order = make_order(new_uow, world, now)
    bag = make_bag(new_uow, world, order, now)
    with new_uow() as uow:
        shipment = custody.create_shipment(
            uow=uow,
            principal=world.principals["nurse"],
            order_public_id=order.public_id,
            origin_code="CC1",
            destination_code="MF1",
            item_public_ids=[bag.public_id],
            courier_user_id=world.users["courier"].id,
            planned_pickup_at=now + timedelta(hours=2),
            planned_delivery_at=now + timedelta(hours=10),
            now=now,
        )
        uow.commit()
    kinds = {(k, s) for k, s, *_ in _deadlines(new_uow, shipment_id=shipment.id)}
    assert kinds == {("pickup_by", "open"), ("delivery_by", "open")}
    _sweep(new_uow, now + timedelta(hours=1, minutes=31))
    assert _alerts(new_uow) == [("deadline_warning", "warning", "first", "open")]
    assert _texts(new_uow) == [(COURIER_PHONE, 0, "pending")]
    with new_uow() as uow:
        body = uow.session.scalar(select(SmsOutbox.body))
        assert "pickup due by" in body and "Collection One" in body
        for to in (S.packed, S.picked_up):
            custody.change_shipment_state(
                uow=uow,
                principal=world.principals["nurse"],
                shipment_public_id=shipment.public_id,
                to_state=to,
                now=now + timedelta(hours=1, minutes=45),
            )
        uow.commit()
    assert _alerts(new_uow)[0][3] == "resolved"
    assert ("pickup_by", "met") in {(k, s) for k, s, *_ in _deadlines(new_uow)}
    assert _texts(new_uow) == [(COURIER_PHONE, 0, "cancelled")]


def test_a_deadline_met_late_still_leaves_its_breach_on_record(new_uow, world, clock):
    now = clock.now()
    with new_uow() as uow:
        profile = uow.session.scalar(select(ProductProfile))
        profile.data = {**profile.data, "fresh_stability_hours": 48}
        uow.commit()
    order = make_order(new_uow, world, now)
    bag = make_bag(new_uow, world, order, now)
    make_label_print(new_uow, world, bag, now)
    p = world.principals
    with new_uow() as uow:
        for to in (S.labelled, S.collected):
            custody.change_item_state(
                uow=uow, principal=p["nurse"], item_public_id=bag.public_id, to_state=to, now=now
            )
        uow.commit()
    stability = _deadlines(new_uow, kind="fresh_stability")
    assert stability[0][2] == now + timedelta(hours=48)
    # Straight into storage, then manufacturing three days later; nobody swept in between.
    later = now + timedelta(hours=72)
    with new_uow() as uow:  # the material passed acceptance (rows as the quality gate writes)
        make_acceptance(
            uow.session,
            order=order,
            site_id=world.sites["MF1"].id,
            decided_by=world.users["operator"].id,
            decided_at=later,
        )
        uow.commit()
    with new_uow() as uow:
        for to, site in ((S.stored, "CC1"), (S.in_manufacturing, "CC1")):
            custody.change_item_state(
                uow=uow,
                principal=p["nurse"],
                item_public_id=bag.public_id,
                to_state=to,
                now=later,
                site_code=site,
            )
        uow.commit()
    (row,) = _deadlines(new_uow, kind="fresh_stability")
    assert row[1] == "met" and row[5] is not None
    with new_uow() as uow:
        breaches = {
            a.details["deadline_kind"]: (a.severity, a.notify, a.status)
            for a in uow.session.scalars(select(Alert).where(Alert.kind == "deadline_breach"))
        }
    # Met late: on record for review (in-app), nobody is chased. The bag also sat 72 h at
    # ambient in 'collected' (fresh cells: 60 min budget), which is a breach of its own.
    assert breaches == {
        "fresh_stability": ("alarm", "in_app", "open"),
        "ambient_exposure": ("alarm", "in_app", "open"),
    }


def test_thawing_starts_the_thaw_to_infusion_countdown_from_the_profile(new_uow, world, clock):
    now = clock.now()
    with new_uow() as uow:
        profile = uow.session.scalar(select(ProductProfile))
        profile.data = {**profile.data, "thaw_to_infusion_minutes": 30}
        uow.commit()
    order = make_order(new_uow, world, now)
    aph = make_bag(new_uow, world, order, now)
    product = make_bag(
        new_uow,
        world,
        order,
        now,
        kind=ItemKind.final_product_bag,
        who="operator",
        parent_public_id=aph.public_id,
    )
    make_label_print(new_uow, world, product, now, who="operator")
    with new_uow() as uow:
        for to in (S.labelled, S.stored, S.thawed):
            custody.change_item_state(
                uow=uow,
                principal=world.principals["operator"],
                item_public_id=product.public_id,
                to_state=to,
                now=now,
            )
        uow.commit()
    (row,) = _deadlines(new_uow, kind="thaw_to_infusion")
    assert (row[2], row[3]) == (now + timedelta(minutes=30), now + timedelta(minutes=15))
    _sweep(new_uow, now + timedelta(minutes=31))
    assert ("deadline_breach", "critical", "ladder", "open") in _alerts(new_uow)


def test_a_cryopreserved_bag_out_of_the_shipper_has_three_minutes(new_uow, world, clock):
    now = clock.now()
    order = make_order(new_uow, world, now)
    aph = make_bag(new_uow, world, order, now)
    product = make_bag(
        new_uow,
        world,
        order,
        now,
        kind=ItemKind.final_product_bag,
        who="operator",
        parent_public_id=aph.public_id,
    )
    make_label_print(new_uow, world, product, now, who="operator")
    with new_uow() as uow:
        for to in (S.labelled, S.stored, S.packed, S.in_transit, S.received):
            custody.change_item_state(
                uow=uow,
                principal=world.principals["operator"],
                item_public_id=product.public_id,
                to_state=to,
                now=now,
            )
        uow.commit()
    (row,) = _deadlines(new_uow, kind="ambient_exposure")
    assert row[2] == now + timedelta(minutes=3)
    with new_uow() as uow:
        custody.change_item_state(
            uow=uow,
            principal=world.principals["operator"],
            item_public_id=product.public_id,
            to_state=S.stored,
            now=now + timedelta(minutes=2),
        )
        uow.commit()
    assert _deadlines(new_uow, kind="ambient_exposure")[0][1] == "met"
    assert _alerts(new_uow) == []


def test_a_shipper_that_cannot_hold_until_planned_arrival_plus_margin_alerts(new_uow, world, clock):
    now = clock.now()
    # Charged 30 h ago with 48 h validated hold: expires in 18 h; arrival in 10 h + 12 h margin.
    trip = on_the_road(
        new_uow, world, now, shipper=True, planned_delivery_at=now + timedelta(hours=10)
    )
    with new_uow() as uow:
        hold = uow.session.scalar(select(Alert).where(Alert.kind == "shipper_hold"))
        assert hold is not None and hold.shipment_id == trip.shipment.id
        expiry = uow.session.get(HandoffDeadline, hold.deadline_id)
        assert expiry.kind == "shipper_expiry" and expiry.due_at == now + timedelta(hours=18)
        body = uow.session.scalar(select(SmsOutbox.body).where(SmsOutbox.alert_id == hold.id))
        assert "shipper ..0042" in body and "seal ..8765" in body


def _ladder(new_uow, world, clock):
    give_phone(new_uow, world, "nurse", BACKUP_PHONE)
    give_phone(new_uow, world, "admin", MANAGER_PHONE)
    with new_uow() as uow:
        alerts.set_ladder(
            uow=uow,
            site_id=world.sites["CC1"].id,
            steps=[
                (LadderRole.courier, None, "sms", 10),
                (LadderRole.backup_courier, world.users["nurse"].id, "sms", 10),
                (LadderRole.coordinator, world.users["coord"].id, "in_app", 15),
                (LadderRole.on_call_manager, world.users["admin"].id, "sms", 15),
            ],
            now=clock.now(),
        )
        uow.commit()


def _raise(new_uow, trip, clock, *, key="t:1"):
    with new_uow() as uow:
        alert = alerts.raise_alert(
            uow.session,
            dedupe_key=key,
            kind="temperature_excursion",
            severity="alarm",
            notify=Notify.ladder,
            title="test alarm",
            site_id=trip.shipment.origin_site_id,
            shipment_id=trip.shipment.id,
            order_id=trip.order.id,
            sms_template="temperature_alarm",
            subject=trip.shipment.public_id,
            now=clock.now(),
        )
        uow.commit()
        return alert.id if alert else None


def test_an_unanswered_alert_climbs_courier_backup_coordinator_then_manager(new_uow, world, clock):
    trip = on_the_road(new_uow, world, clock.now())
    _ladder(new_uow, world, clock)
    alert_id = _raise(new_uow, trip, clock)
    assert _raise(new_uow, trip, clock) is None  # same dedupe key: no second alert
    assert [t[:2] for t in _texts(new_uow)] == [(COURIER_PHONE, 0)]
    steps = [
        (timedelta(minutes=9), [(COURIER_PHONE, 0)]),
        (timedelta(minutes=10), [(COURIER_PHONE, 0), (BACKUP_PHONE, 1)]),
        (timedelta(minutes=20), [(COURIER_PHONE, 0), (BACKUP_PHONE, 1)]),  # coordinator: page
        (timedelta(minutes=35), [(COURIER_PHONE, 0), (BACKUP_PHONE, 1), (MANAGER_PHONE, 3)]),
    ]
    for offset, expected in steps:
        _sweep(new_uow, clock.now() + offset)
        assert [t[:2] for t in _texts(new_uow)] == expected
    with new_uow() as uow:
        assert uow.session.get(Alert, alert_id).escalation_level == 3
        body = uow.session.scalar(select(SmsOutbox.body).where(SmsOutbox.to_phone == MANAGER_PHONE))
        assert body.startswith("ESCALATED: ")
    _sweep(new_uow, clock.now() + timedelta(minutes=50))
    with new_uow() as uow:
        assert uow.session.get(Alert, alert_id).ladder_exhausted is True


def test_acknowledging_needs_a_comment_and_stops_the_ladder(new_uow, world, clock):
    trip = on_the_road(new_uow, world, clock.now())
    _ladder(new_uow, world, clock)
    alert_id = _raise(new_uow, trip, clock)
    with new_uow() as uow, pytest.raises(TrackerError) as err:
        alerts.acknowledge_alert(
            uow=uow,
            principal=world.principals["coord"],
            alert_id=alert_id,
            comment=" ",
            now=clock.now(),
        )
    assert err.value.reason == "reason_required"
    with new_uow() as uow:
        alerts.acknowledge_alert(
            uow=uow,
            principal=world.principals["coord"],
            alert_id=alert_id,
            comment="Called the courier; shipper re-iced",
            now=clock.now(),
        )
        uow.commit()
    _sweep(new_uow, clock.now() + timedelta(hours=1))
    assert [t[:2] for t in _texts(new_uow)] == [(COURIER_PHONE, 0)]
    with new_uow() as uow, pytest.raises(TrackerError) as err:
        alerts.acknowledge_alert(
            uow=uow,
            principal=world.principals["coord"],
            alert_id=alert_id,
            comment="again",
            now=clock.now(),
        )
    assert err.value.reason == "alert_not_open"


def test_a_courier_who_opted_out_is_skipped_at_once_and_shown_as_suppressed(new_uow, world, clock):
    trip = on_the_road(new_uow, world, clock.now())
    _ladder(new_uow, world, clock)
    with new_uow() as uow:
        uow.session.add(
            SmsOptOut(phone=COURIER_PHONE, opted_out=True, source="keyword", changed_at=clock.now())
        )
        uow.commit()
    _raise(new_uow, trip, clock)
    assert _texts(new_uow) == [(COURIER_PHONE, 0, "suppressed"), (BACKUP_PHONE, 1, "pending")]


def test_alerts_without_a_shipment_skip_the_courier_rungs(new_uow, world, clock):
    _ladder(new_uow, world, clock)
    with new_uow() as uow:
        alert = alerts.raise_alert(
            uow.session,
            dedupe_key="storage:1",
            kind="logger_silent",
            severity="alarm",
            notify=Notify.ladder,
            title="freezer logger silent",
            site_id=world.sites["CC1"].id,
            sms_template="logger_silent",
            now=clock.now(),
        )
        uow.commit()
        # No shipment, so no shipment courier: the named backup courier hears first.
        assert alert.escalation_level == 1
    assert _texts(new_uow) == [(BACKUP_PHONE, 1, "pending")]
