from datetime import timedelta

import pytest
from sqlalchemy import select
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.exc import IntegrityError

from tests.factories import make_bag
from tests.factories import make_order
from tracker.domain import identifiers
from tracker.domain.custody import CustodyState as S
from tracker.domain.custody import ItemKind
from tracker.domain.errors import TrackerError
from tracker.models import AuditEntry
from tracker.models import CustodyEvent
from tracker.models import Item
from tracker.services import custody


def test_creating_an_order_issues_a_unique_valid_chain_of_identity_identifier(
    new_uow, world, clock
):
    first = make_order(new_uow, world, clock.now(), mrn="A")
    second = make_order(new_uow, world, clock.now(), mrn="B")
    assert first.coi != second.coi
    for order in (first, second):
        parsed = identifiers.parse("&/" + order.coi)
        assert not isinstance(parsed, identifiers.ParseError), parsed
        assert order.coi.startswith("CHW9999" + clock.now().strftime("%y"))


def test_custody_changes_build_an_intact_hash_chain_per_order(new_uow, world, clock):
    order = make_order(new_uow, world, clock.now())
    bag = make_bag(new_uow, world, order, clock.now())
    for target in (S.labelled, S.collected):
        clock.advance(timedelta(minutes=5))
        with new_uow() as uow:
            custody.change_item_state(
                uow=uow,
                principal=world.principals["nurse"],
                item_public_id=bag.public_id,
                to_state=target,
                now=clock.now(),
            )
            uow.commit()
    with new_uow() as uow:
        events = list(
            uow.session.scalars(
                select(CustodyEvent)
                .where(CustodyEvent.chain_key == f"coi:{order.coi}")
                .order_by(CustodyEvent.seq)
            )
        )
        assert [e.seq for e in events] == [1, 2, 3]
        assert [e.to_state for e in events] == ["registered", "labelled", "collected"]
        assert events[1].prev_hash == events[0].hash
        assert custody.verify_chains(uow.session)[f"coi:{order.coi}"] == []
        assert uow.session.get(Item, bag.id).state == "collected"


def test_an_invalid_step_changes_nothing_and_is_refused_with_a_code(new_uow, world, clock):
    order = make_order(new_uow, world, clock.now())
    bag = make_bag(new_uow, world, order, clock.now())
    with new_uow() as uow, pytest.raises(TrackerError) as err:
        custody.change_item_state(
            uow=uow,
            principal=world.principals["nurse"],
            item_public_id=bag.public_id,
            to_state=S.in_transit,
            now=clock.now(),
        )
    assert err.value.reason == "invalid_transition"
    with new_uow() as uow:
        assert uow.session.get(Item, bag.id).state == "registered"
        assert (
            uow.session.scalar(select(CustodyEvent.id).where(CustodyEvent.to_state == "in_transit"))
            is None
        )


def test_custody_events_cannot_be_updated_or_deleted(new_uow, world, clock, connection):
    order = make_order(new_uow, world, clock.now())
    make_bag(new_uow, world, order, clock.now())
    for statement in (
        "UPDATE custody_events SET reason = 'x'",
        "DELETE FROM custody_events",
        "UPDATE audit_log SET reason = 'x'",
        "DELETE FROM audit_log",
    ):
        savepoint = connection.begin_nested()
        with pytest.raises((DBAPIError, IntegrityError)):
            connection.execute(text(statement))
        savepoint.rollback()


def test_tampering_with_a_stored_event_is_reported_by_verification(
    new_uow, world, clock, connection, is_postgres
):
    order = make_order(new_uow, world, clock.now())
    bag = make_bag(new_uow, world, order, clock.now())
    with new_uow() as uow:
        custody.change_item_state(
            uow=uow,
            principal=world.principals["nurse"],
            item_public_id=bag.public_id,
            to_state=S.labelled,
            now=clock.now(),
        )
        uow.commit()
    # Simulate someone with database rights bypassing the trigger.
    if is_postgres:
        connection.execute(text("ALTER TABLE custody_events DISABLE TRIGGER USER"))
        connection.execute(text("UPDATE custody_events SET to_state = 'collected' WHERE seq = 2"))
        connection.execute(text("ALTER TABLE custody_events ENABLE TRIGGER USER"))
    else:
        connection.execute(text("DROP TRIGGER custody_events_no_update"))
        connection.execute(text("UPDATE custody_events SET to_state = 'collected' WHERE seq = 2"))
    with new_uow() as uow:
        breaks = custody.verify_chains(uow.session)[f"coi:{order.coi}"]
    assert [b.seq for b in breaks] == [2]


def test_a_correction_is_a_new_event_pointing_at_the_original_with_a_reason(new_uow, world, clock):
    order = make_order(new_uow, world, clock.now())
    make_bag(new_uow, world, order, clock.now())
    with new_uow() as uow:
        original = uow.session.scalar(select(CustodyEvent).where(CustodyEvent.order_id == order.id))
        with pytest.raises(TrackerError) as err:
            custody.correct_event(
                uow=uow,
                principal=world.principals["nurse"],
                event_id=original.id,
                reason=" ",
                correction={},
                now=clock.now(),
            )
        assert err.value.reason == "reason_required"
        fix = custody.correct_event(
            uow=uow,
            principal=world.principals["nurse"],
            event_id=original.id,
            reason="container number mistyped",
            correction={"container": 2},
            now=clock.now(),
        )
        uow.commit()
    with new_uow() as uow:
        stored = uow.session.get(CustodyEvent, original.id)
        assert stored.details["container"] == 1  # the original is untouched
        assert fix.corrects_event_id == original.id and fix.seq == original.seq + 1
        assert custody.verify_chains(uow.session)[f"coi:{order.coi}"] == []
        audit = uow.session.scalar(select(AuditEntry).where(AuditEntry.action == "correct"))
        assert audit.reason == "container number mistyped"
        assert audit.changes == {"container": [1, 2]}


def test_a_shipment_refuses_a_bag_from_another_chain_of_identity(new_uow, world, clock):
    mine = make_order(new_uow, world, clock.now(), mrn="A")
    other = make_order(new_uow, world, clock.now(), mrn="B")
    my_bag = make_bag(new_uow, world, mine, clock.now())
    their_bag = make_bag(new_uow, world, other, clock.now())
    with new_uow() as uow, pytest.raises(TrackerError) as err:
        custody.create_shipment(
            uow=uow,
            principal=world.principals["nurse"],
            order_public_id=mine.public_id,
            origin_code="CC1",
            destination_code="MF1",
            item_public_ids=[my_bag.public_id, their_bag.public_id],
            now=clock.now(),
        )
    assert err.value.reason == "coi_mismatch"


def test_a_final_product_cannot_be_made_from_another_patients_cells(new_uow, world, clock):
    mine = make_order(new_uow, world, clock.now(), mrn="A")
    other = make_order(new_uow, world, clock.now(), mrn="B")
    their_bag = make_bag(new_uow, world, other, clock.now())
    with pytest.raises(TrackerError) as err:
        make_bag(
            new_uow,
            world,
            mine,
            clock.now(),
            kind=ItemKind.final_product_bag,
            who="operator",
            parent_public_id=their_bag.public_id,
        )
    assert err.value.reason == "coi_mismatch"


def test_a_final_product_links_both_ways_to_its_apheresis_bag(new_uow, world, clock):
    order = make_order(new_uow, world, clock.now())
    bag = make_bag(new_uow, world, order, clock.now())
    product = make_bag(
        new_uow,
        world,
        order,
        clock.now(),
        kind=ItemKind.final_product_bag,
        who="operator",
        parent_public_id=bag.public_id,
    )
    with new_uow() as uow:
        stored_bag = uow.session.get(Item, bag.id)
        assert [c.public_id for c in stored_bag.children] == [product.public_id]
        assert uow.session.get(Item, product.id).parent.public_id == bag.public_id
        assert {i.public_id for i in stored_bag.order.items} == {bag.public_id, product.public_id}


def test_dins_are_allocated_in_sequence_and_duplicates_are_refused(new_uow, world, clock):
    order = make_order(new_uow, world, clock.now())
    first = make_bag(new_uow, world, order, clock.now())
    second = make_bag(new_uow, world, order, clock.now())
    assert first.din[:7] == second.din[:7] == "W999926"
    assert int(second.din[7:]) == int(first.din[7:]) + 1
    with pytest.raises(TrackerError) as err:
        make_bag(new_uow, world, order, clock.now(), din=first.din)
    assert err.value.reason == "duplicate_identifier"


def test_staff_of_another_site_cannot_touch_an_order(new_uow, world, clock):
    order = make_order(new_uow, world, clock.now())
    with pytest.raises(TrackerError) as err:
        make_bag(new_uow, world, order, clock.now(), who="coord2")
    assert err.value.reason == "not_found"


def test_a_courier_cannot_register_bags_at_a_collection_centre(new_uow, world, clock):
    order = make_order(new_uow, world, clock.now())
    with pytest.raises(TrackerError) as err:
        make_bag(new_uow, world, order, clock.now(), who="courier", site_code="CC1")
    assert err.value.reason in ("forbidden", "not_found")


def test_naive_datetimes_are_refused_by_services(new_uow, world, clock):
    from datetime import datetime

    order = make_order(new_uow, world, clock.now())
    with pytest.raises(ValueError, match="naive"):
        make_bag(new_uow, world, order, datetime(2026, 3, 2, 12, 0))  # noqa: DTZ001


def test_a_shippers_custody_forms_its_own_asset_chain(new_uow, world, clock):
    with new_uow() as uow:
        shipper = custody.register_shipper(
            uow=uow,
            principal=world.principals["operator"],
            serial="EVO-1",
            site_code="MF1",
            validated_hold_hours=240,
            now=clock.now(),
        )
        custody.change_item_state(
            uow=uow,
            principal=world.principals["operator"],
            item_public_id=shipper.public_id,
            to_state=S.charged,
            now=clock.now(),
        )
        uow.commit()
        assert custody.verify_chains(uow.session)[f"asset:{shipper.public_id}"] == []
    with new_uow() as uow, pytest.raises(TrackerError) as err:
        custody.register_shipper(
            uow=uow,
            principal=world.principals["operator"],
            serial="EVO-1",
            site_code="MF1",
            validated_hold_hours=240,
            now=clock.now(),
        )
    assert err.value.reason == "duplicate_identifier"


def test_a_bag_knows_the_shipment_legs_that_carried_it(new_uow, world, clock):
    order = make_order(new_uow, world, clock.now())
    bag = make_bag(new_uow, world, order, clock.now())
    with new_uow() as uow:
        shipment = custody.create_shipment(
            uow=uow,
            principal=world.principals["nurse"],
            order_public_id=order.public_id,
            origin_code="CC1",
            destination_code="MF1",
            item_public_ids=[bag.public_id],
            now=clock.now(),
        )
        uow.commit()
    with new_uow() as uow:
        stored = uow.session.get(Item, bag.id)
        assert [s.public_id for s in stored.shipments] == [shipment.public_id]
        assert [i.public_id for i in stored.shipments[0].items] == [bag.public_id]
