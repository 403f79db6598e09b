"""Pure alerting rules: tiers per profile, warning leads, backoff, statuses, courier replies."""

from datetime import UTC
from datetime import datetime
from datetime import timedelta

import pytest

from tracker.domain import alerting
from tracker.domain.alerting import DeadlineKind

T = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)


def test_fresh_material_gets_warning_alarm_and_critical_tiers_around_two_to_eight():
    rules = alerting.profile_rules("fresh", {})
    levels = {(r.level, r.kind, r.mode) for r in rules}
    assert ("warning", "hot", "consecutive") in levels
    assert ("alarm", "cold", "cumulative") in levels
    assert ("critical", "hot", "consecutive") in levels
    assert {r.threshold_c for r in rules} == {2.0, 8.0}


def test_the_cryogenic_limit_comes_from_the_profile_and_the_limit_itself_is_in_range():
    rules = alerting.profile_rules("cryogenic", {"storage_max_c": -120})
    assert {r.threshold_c for r in rules} == {-120.0}
    assert not any(r.violated_by(-120.0) for r in rules)
    assert all(r.violated_by(-119.9) for r in rules)
    assert {r.level for r in rules} == {"warning", "alarm", "critical"}


def test_a_profile_may_replace_the_default_rules_entirely():
    data = {
        "cryogenic_temperature_rules": [
            {"level": "critical", "kind": "hot", "threshold_c": -135, "min_duration_minutes": 5}
        ]
    }
    (rule,) = alerting.profile_rules("cryogenic", data)
    assert (rule.level, rule.threshold_c, rule.min_duration) == (
        "critical",
        -135.0,
        timedelta(minutes=5),
    )


def test_only_fresh_apheresis_is_fresh_material():
    assert alerting.material_for("apheresis_bag", "fresh") == "fresh"
    assert alerting.material_for("apheresis_bag", "cryopreserved") == "cryogenic"
    assert alerting.material_for("final_product_bag", "fresh") == "cryogenic"


def test_warnings_come_the_lead_time_before_due_or_half_way_through_a_short_window():
    due = T + timedelta(hours=4)
    assert alerting.warn_at(DeadlineKind.pickup_by, T, due, {}) == due - timedelta(minutes=30)
    short = T + timedelta(minutes=3)
    assert alerting.warn_at(DeadlineKind.ambient_exposure, T, short, {}) == short - timedelta(
        minutes=1
    )
    thaw = T + timedelta(minutes=20)
    assert alerting.warn_at(DeadlineKind.thaw_to_infusion, T, thaw, {}) == T + timedelta(minutes=10)
    data = {"deadline_warning_minutes": {"pickup_by": 90}}
    assert alerting.warn_at(DeadlineKind.pickup_by, T, due, data) == due - timedelta(minutes=90)


def test_cryopreserved_bags_get_three_minutes_per_transfer_and_fresh_cells_an_hour_in_all():
    cryo = alerting.ambient_rule_for("final_product_bag", "received", "fresh", {})
    assert (cryo.max_duration, cryo.mode) == (timedelta(minutes=3), "per_interval")
    fresh = alerting.ambient_rule_for("apheresis_bag", "collected", "cryopreserved", {})
    assert (fresh.max_duration, fresh.mode) == (timedelta(minutes=60), "cumulative")


def test_retry_delays_double_and_stop_growing_at_the_cap():
    assert [alerting.retry_delay(n).total_seconds() for n in (1, 2, 3)] == [2, 4, 8]
    assert alerting.retry_delay(30) == alerting.RETRY_CAP
    with pytest.raises(ValueError):
        alerting.retry_delay(0)


def test_a_delivery_status_never_moves_backwards():
    assert alerting.status_moves_forward(None, "queued")
    assert alerting.status_moves_forward("sent", "delivered")
    assert not alerting.status_moves_forward("delivered", "sent")
    assert not alerting.status_moves_forward("sent", "made-up")


@pytest.mark.parametrize(
    ("body", "action", "code"),
    [
        ("ACK 4821", "ack", "4821"),
        ("ack4821", "ack", "4821"),
        ("  Ack #4821 thanks", "ack", "4821"),
        ("4821", "ack", "4821"),
        ("STOP", "stop", None),
        ("unsubscribe please", "stop", None),
        ("start", "start", None),
        ("HELP", "help", None),
        ("where are you", "unknown", None),
        ("ACK 48", "unknown", None),
    ],
)
def test_courier_replies_are_read_as_ack_stop_start_help_or_unknown(body, action, code):
    assert alerting.parse_reply(body) == alerting.Reply(action, code)


def test_only_the_last_four_letters_or_digits_of_a_serial_reach_an_sms():
    assert alerting.last_digits("EVO-IS-2026-0042") == "0042"
    assert alerting.last_digits("SEAL 98-76") == "9876"
    assert alerting.last_digits(None) is None
