"""Readings become excursions that name the bags exposed, alert the courier and hold the bag."""

from datetime import timedelta

import pytest
from sqlalchemy import select

from tests.alert_helpers import COURIER_PHONE
from tests.alert_helpers import ingest
from tests.alert_helpers import logger_row
from tests.alert_helpers import on_the_road
from tests.alert_helpers import series
from tests.scanning import GOOD_MATERIAL
from tracker.domain.alerting import Decision
from tracker.domain.custody import CustodyState as S
from tracker.domain.errors import TrackerError
from tracker.models import Alert
from tracker.models import ExcursionRecord
from tracker.models import SmsOutbox
from tracker.services import alerts
from tracker.services import custody
from tracker.services import orders
from tracker.services import quality
from tracker.services import readings


def test_in_range_readings_are_stored_once_and_raise_nothing(new_uow, world, clock):
    trip = on_the_road(new_uow, world, clock.now())
    batch = series(trip.packed_at, [4.0, 4.2, 4.1, 5.0])
    first = ingest(new_uow, trip, batch, clock.now())
    again = ingest(new_uow, trip, batch, clock.now())
    assert (first.accepted, first.duplicates, first.evaluated) == (4, 0, False)
    assert (again.accepted, again.duplicates, again.conflicts) == (0, 4, [])
    assert logger_row(new_uow, trip).last_reading_at == batch[-1].at


def test_a_second_value_for_a_stored_instant_is_a_conflict_and_the_first_value_stands(
    new_uow, world, clock
):
    trip = on_the_road(new_uow, world, clock.now())
    ingest(new_uow, trip, series(trip.packed_at, [4.0]), clock.now())
    result = ingest(new_uow, trip, series(trip.packed_at, [6.5]), clock.now())
    assert result.accepted == 0
    assert result.conflicts == [{"at": trip.packed_at.isoformat(), "stored_c": 4.0, "sent_c": 6.5}]


def test_a_hot_breach_names_the_bag_copies_its_thresholds_and_texts_the_courier(
    new_uow, world, clock
):
    trip = on_the_road(new_uow, world, clock.now())
    # 35 minutes at 9-11 °C: warning at once, alarm after 30 min consecutive.
    values = [5.0] + [9.0, 10.0, 11.0, 10.5, 10.0, 9.5, 9.0] + [5.0]
    result = ingest(new_uow, trip, series(trip.packed_at, values), clock.now())
    assert result.evaluated and len(result.alerts) == 2
    with new_uow() as uow:
        records = list(uow.session.scalars(select(ExcursionRecord).order_by(ExcursionRecord.id)))
        levels = {(r.level, r.mode) for r in records}
        assert levels == {("warning", "consecutive"), ("alarm", "consecutive")}
        alarm = next(r for r in records if r.level == "alarm")
        assert (alarm.threshold_c, alarm.min_duration_seconds, alarm.inclusive) == (8.0, 1800, True)
        assert alarm.worst_c == 11.0 and alarm.end_at == trip.packed_at + timedelta(minutes=40)
        assert [i.public_id for i in alarm.items] == [trip.bag.public_id]
        assert alarm.rule_source == "product CD19-FRESH v1 (fresh)"
        alert = uow.session.scalar(select(Alert).where(Alert.excursion_id == alarm.id))
        assert (alert.severity, alert.notify, alert.shipment_id) == (
            "alarm",
            "ladder",
            trip.shipment.id,
        )
        texts = list(uow.session.scalars(select(SmsOutbox).where(SmsOutbox.alert_id == alert.id)))
        assert [(t.to_phone, t.state) for t in texts] == [(COURIER_PHONE, "pending")]
        assert f"ACK {alert.ack_code}" in texts[0].body
        warning = uow.session.scalar(
            select(Alert).where(Alert.severity == "warning", Alert.kind == "temperature_excursion")
        )
        assert warning.notify == "in_app"
        assert uow.session.scalar(select(SmsOutbox).where(SmsOutbox.alert_id == warning.id)) is None


def test_re_evaluating_the_same_readings_never_raises_a_breach_twice(new_uow, world, clock):
    trip = on_the_road(new_uow, world, clock.now())
    hot = series(trip.packed_at, [9.0] * 8)
    ingest(new_uow, trip, hot[:4], clock.now())
    ingest(new_uow, trip, hot[4:], clock.now())
    ingest(new_uow, trip, series(trip.packed_at + timedelta(minutes=40), [5.0]), clock.now())
    with new_uow() as uow:
        alarm = uow.session.scalar(select(ExcursionRecord).where(ExcursionRecord.level == "alarm"))
        assert alarm.end_at == trip.packed_at + timedelta(minutes=40)
        assert uow.session.query(Alert).filter(Alert.excursion_id == alarm.id).count() == 1
    assert logger_row(new_uow, trip).excursion_open is False


def test_a_later_profile_version_does_not_rewrite_a_recorded_breach(new_uow, world, clock):
    trip = on_the_road(new_uow, world, clock.now())
    ingest(new_uow, trip, series(trip.packed_at, [9.0] * 8 + [5.0]), clock.now())
    with new_uow() as uow:
        orders.create_product_profile(
            uow=uow,
            code="CD19-FRESH",
            name="Anti-CD19 fresh",
            product_code="S1001100",
            starting_material="fresh",
            data={"fresh_max_c": 10.0},
            now=clock.now(),
        )
        uow.commit()
    with new_uow() as uow:
        alarm = uow.session.scalar(select(ExcursionRecord).where(ExcursionRecord.level == "alarm"))
        assert (alarm.threshold_c, alarm.profile_version) == (8.0, 1)


def test_an_alarm_holds_the_bag_until_qa_decides_and_quarantine_keeps_holding_it(
    new_uow, world, clock
):
    trip = on_the_road(new_uow, world, clock.now())
    ingest(new_uow, trip, series(trip.packed_at, [9.0] * 8 + [5.0]), clock.now())
    p = world.principals

    def move(to, who="operator", reason=None):
        with new_uow() as uow:
            custody.change_item_state(
                uow=uow,
                principal=p[who],
                item_public_id=trip.bag.public_id,
                to_state=to,
                now=clock.now(),
                site_code="CD1" if who == "courier" else "MF1",
                reason=reason,
            )
            uow.commit()

    # Where the held bag physically goes is still recorded: on the road, received.
    move(S.in_transit, who="courier")
    move(S.received)
    with pytest.raises(TrackerError) as held:
        move(S.in_manufacturing)
    assert held.value.reason == "disposition_pending"

    def decide(decision):
        with new_uow() as uow:
            alerts.record_disposition(
                uow=uow,
                principal=p["qa"],
                item_public_id=trip.bag.public_id,
                decision=decision,
                comment="reviewed logger download",
                now=clock.now(),
            )
            uow.commit()

    decide(Decision.quarantine)
    with pytest.raises(TrackerError) as held:
        move(S.in_manufacturing)
    assert held.value.reason == "quarantine_hold"
    move(S.quarantined, reason="QA quarantine after excursion")  # safety moves stay open
    with pytest.raises(TrackerError) as held:
        move(S.stored, reason="trying to leave quarantine")
    assert held.value.reason == "quarantine_hold"
    decide(Decision.accept)
    move(S.stored, reason="QA accepted after review")
    with new_uow() as uow:  # the starting material's own acceptance gate (quality)
        quality.record_acceptance(
            uow=uow,
            principal=p["operator"],
            order_public_id=trip.order.public_id,
            measurements=GOOD_MATERIAL,
            now=clock.now(),
        )
        uow.commit()
    move(S.in_manufacturing)


def test_qa_cannot_accept_a_bag_while_its_excursion_is_still_going_on(new_uow, world, clock):
    trip = on_the_road(new_uow, world, clock.now())
    ingest(new_uow, trip, series(trip.packed_at, [9.0] * 8), clock.now())
    with new_uow() as uow, pytest.raises(TrackerError) as err:
        alerts.record_disposition(
            uow=uow,
            principal=world.principals["qa"],
            item_public_id=trip.bag.public_id,
            decision=Decision.accept,
            comment="looks fine",
            now=clock.now(),
        )
    assert err.value.reason == "excursion_ongoing"
    with new_uow() as uow, pytest.raises(TrackerError) as err:
        alerts.record_disposition(
            uow=uow,
            principal=world.principals["coord"],
            item_public_id=trip.bag.public_id,
            decision=Decision.quarantine,
            comment="not QA",
            now=clock.now(),
        )
    assert err.value.reason == "forbidden"


def test_every_bag_has_an_exposure_ledger_with_time_out_of_range_and_worst_value(
    new_uow, world, clock
):
    trip = on_the_road(new_uow, world, clock.now())
    ingest(new_uow, trip, series(trip.packed_at, [5.0, 9.0, 12.5, 9.0, 5.0, 4.0]), clock.now())
    with new_uow() as uow:
        bag = custody._lock_item(uow.session, trip.bag.public_id)
        result = readings.exposure_for_item(uow.session, bag, now=clock.now())
        ledger = result.exposure
        assert ledger.out_of_range == timedelta(minutes=15)
        assert (ledger.max_c, ledger.min_c) == (12.5, 4.0)
        assert result.loggers == [trip.logger_serial]
        assert [e.level for e in result.excursions] == ["warning"]


def test_a_silent_logger_raises_one_alarm_and_it_clears_when_readings_resume(new_uow, world, clock):
    trip = on_the_road(new_uow, world, clock.now())
    ingest(new_uow, trip, series(trip.packed_at, [4.0, 4.1]), clock.now())
    later = trip.packed_at + timedelta(minutes=30)
    for _ in range(2):
        with new_uow() as uow:
            readings.sweep_silent_loggers(uow=uow, now=later)
    with new_uow() as uow:
        silent = list(uow.session.scalars(select(Alert).where(Alert.kind == "logger_silent")))
        assert len(silent) == 1 and silent[0].status == "open"
        silent_id = silent[0].id
        to = uow.session.scalar(select(SmsOutbox.to_phone).where(SmsOutbox.alert_id == silent_id))
        assert to == COURIER_PHONE
    ingest(new_uow, trip, series(later, [4.0]), later)
    with new_uow() as uow:
        assert uow.session.get(Alert, silent_id).status == "resolved"
