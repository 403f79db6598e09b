"""Alerting rules as plain values: temperature tiers per profile, deadline windows, escalation,
send retries and courier replies.

Every number here is a default ([U] in DOMAIN.md) that a product profile's ``data`` overrides:
``storage_max_c`` (cryogenic limit, at or below is in range; -150), ``cryo_alarm_after_minutes``
(15), ``critical_after_minutes`` (60), ``fresh_min_c`` / ``fresh_max_c`` (2 / 8),
``fresh_temperature_rules`` / ``cryogenic_temperature_rules`` (explicit rule lists replacing
the tiers), ``fresh_stability_hours``, ``thaw_to_infusion_minutes`` (thaw to end of infusion),
``ambient_cryo_minutes`` (3, per transfer), ``ambient_fresh_minutes`` (60, cumulative),
``shipper_hold_margin_hours`` (12) and ``deadline_warning_minutes`` ({kind: minutes}).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from datetime import timedelta
from enum import StrEnum
from typing import Any
from typing import Literal

from tracker.domain.excursions import CRYOPRESERVED_AMBIENT
from tracker.domain.excursions import FRESH_AMBIENT
from tracker.domain.excursions import AmbientRule
from tracker.domain.excursions import Level
from tracker.domain.excursions import TemperatureRule
from tracker.domain.excursions import cryogenic_profile
from tracker.domain.excursions import fresh_profile


class AlertKind(StrEnum):
    temperature_excursion = "temperature_excursion"
    logger_silent = "logger_silent"
    shipper_hold = "shipper_hold"
    deadline_warning = "deadline_warning"
    deadline_breach = "deadline_breach"
    material_rejected = "material_rejected"
    release_after_ld = "release_after_ld"


class Notify(StrEnum):
    """How far an alert travels: the page only, the first rung once, or up the whole ladder."""

    in_app = "in_app"
    first = "first"
    ladder = "ladder"


class DeadlineKind(StrEnum):
    pickup_by = "pickup_by"
    delivery_by = "delivery_by"
    fresh_stability = "fresh_stability"
    shipper_expiry = "shipper_expiry"
    ambient_exposure = "ambient_exposure"
    thaw_to_infusion = "thaw_to_infusion"
    plan_milestone = "plan_milestone"


class Decision(StrEnum):
    accept = "accept"
    quarantine = "quarantine"
    discard = "discard"


class LadderRole(StrEnum):
    courier = "courier"
    backup_courier = "backup_courier"
    coordinator = "coordinator"
    on_call_manager = "on_call_manager"


Material = Literal["fresh", "cryogenic"]


def _minutes(value: Any, default: float) -> timedelta:
    return timedelta(minutes=float(value if value is not None else default))


def rule_from_dict(raw: Mapping[str, Any]) -> TemperatureRule:
    """One profile rule: {level, kind, threshold_c, min_duration_minutes, mode, inclusive}."""
    return TemperatureRule(
        level=raw["level"],
        kind=raw["kind"],
        threshold_c=float(raw["threshold_c"]),
        min_duration=_minutes(raw.get("min_duration_minutes"), 0),
        mode=raw.get("mode", "consecutive"),
        inclusive=bool(raw.get("inclusive", True)),
    )


def material_for(item_kind: str, starting_material: str) -> Material:
    """Fresh apheresis is 2-8 °C material; everything else here is stored cryogenically."""
    return "fresh" if item_kind == "apheresis_bag" and starting_material == "fresh" else "cryogenic"


def profile_rules(material: Material, data: Mapping[str, Any]) -> list[TemperatureRule]:
    """The warning, alarm and critical tiers for one material, from a profile's data."""
    explicit = data.get(f"{material}_temperature_rules")
    if explicit:
        return [rule_from_dict(r) for r in explicit]
    critical_after = _minutes(data.get("critical_after_minutes"), 60)
    if material == "fresh":
        low = float(data.get("fresh_min_c", 2.0))
        high = float(data.get("fresh_max_c", 8.0))
        return [
            TemperatureRule("warning", "hot", high, timedelta(0), "consecutive"),
            TemperatureRule("warning", "cold", low, timedelta(0), "consecutive"),
            *fresh_profile(hot_c=high, cold_c=low),
            TemperatureRule("critical", "hot", high, critical_after, "consecutive"),
            TemperatureRule("critical", "cold", low, critical_after, "consecutive"),
        ]
    limit = float(data.get("storage_max_c", -150.0))
    return [
        *cryogenic_profile(
            limit_c=limit, alarm_after=_minutes(data.get("cryo_alarm_after_minutes"), 15)
        ),
        TemperatureRule("critical", "hot", limit, critical_after, "consecutive", inclusive=False),
    ]


# Alarm and critical breaches hold the bags exposed until QA decides; warnings only inform.
GATING_LEVELS = ("alarm", "critical")


def notify_for_level(level: Level) -> Notify:
    return Notify.in_app if level == "warning" else Notify.ladder


# --- deadlines ----------------------------------------------------------------------------

# States in which a bag is out of controlled temperature, by item kind.
AMBIENT_STATES: dict[str, frozenset[str]] = {
    "apheresis_bag": frozenset({"collected", "received"}),
    "final_product_bag": frozenset({"received"}),
}

DEFAULT_WARN_BEFORE: dict[DeadlineKind, timedelta] = {
    DeadlineKind.pickup_by: timedelta(minutes=30),
    DeadlineKind.delivery_by: timedelta(minutes=60),
    DeadlineKind.fresh_stability: timedelta(hours=6),
    DeadlineKind.shipper_expiry: timedelta(hours=24),
    DeadlineKind.ambient_exposure: timedelta(minutes=1),
    DeadlineKind.thaw_to_infusion: timedelta(minutes=15),
    DeadlineKind.plan_milestone: timedelta(hours=1),
}


def warn_at(
    kind: DeadlineKind, start: datetime, due: datetime, data: Mapping[str, Any]
) -> datetime:
    """When to warn: the profile's lead time (or the default) before ``due``, never before start.

    A window shorter than its lead time warns half-way through, so a warning always comes first.
    """
    override = (data.get("deadline_warning_minutes") or {}).get(kind.value)
    lead = timedelta(minutes=float(override)) if override is not None else DEFAULT_WARN_BEFORE[kind]
    window = due - start
    if window <= timedelta(0):
        return due
    return due - min(lead, window / 2)


def ambient_rule_for(
    item_kind: str, state: str, starting_material: str, data: Mapping[str, Any]
) -> AmbientRule:
    """Fresh cells (just collected, or fresh material received) get the cumulative budget;
    cryopreserved bags get a limit per transfer."""
    fresh = item_kind == "apheresis_bag" and (state == "collected" or starting_material == "fresh")
    if fresh:
        return AmbientRule(
            "fresh", _minutes(data.get("ambient_fresh_minutes"), 60), FRESH_AMBIENT.mode
        )
    return AmbientRule(
        "cryopreserved", _minutes(data.get("ambient_cryo_minutes"), 3), CRYOPRESERVED_AMBIENT.mode
    )


def hold_margin(data: Mapping[str, Any]) -> timedelta:
    return timedelta(hours=float(data.get("shipper_hold_margin_hours", 12)))


# --- sending ------------------------------------------------------------------------------

RETRY_BASE = timedelta(seconds=2)
RETRY_CAP = timedelta(minutes=5)
MAX_SEND_ATTEMPTS = 8
MAX_VERIFY_ATTEMPTS = 5


def retry_delay(attempt: int) -> timedelta:
    """Exponential backoff after the ``attempt``-th failed try (1-based), capped."""
    if attempt < 1:
        raise ValueError("attempts count from 1")
    delay: timedelta = RETRY_BASE * (2 ** (attempt - 1))
    return min(delay, RETRY_CAP)


# Twilio message statuses in the order they can happen; a status never moves backwards.
_STATUS_RANK = {
    "accepted": 1,
    "scheduled": 1,
    "queued": 1,
    "sending": 2,
    "sent": 3,
    "delivered": 4,
    "undelivered": 4,
    "failed": 4,
    "canceled": 4,
    "read": 5,
}
FAILED_DELIVERY = frozenset({"undelivered", "failed"})


def status_moves_forward(current: str | None, new: str) -> bool:
    """True when ``new`` is a later status than ``current`` (unknown statuses never win)."""
    if new not in _STATUS_RANK:
        return False
    return current is None or _STATUS_RANK[new] > _STATUS_RANK.get(current, 0)


# --- replies ------------------------------------------------------------------------------

# Twilio's default opt-out and opt-in keywords (Messaging Services "Advanced Opt-Out").
STOP_WORDS = frozenset({"STOP", "STOPALL", "UNSUBSCRIBE", "CANCEL", "END", "QUIT", "REVOKE"})
START_WORDS = frozenset({"START", "YES", "UNSTOP"})
HELP_WORDS = frozenset({"HELP", "INFO"})
_ACK = re.compile(r"^(?:ACK|ACKNOWLEDGE|OK)?\s*[#:\-]?\s*(\d{4})\b")


@dataclass(frozen=True, slots=True)
class Reply:
    action: Literal["ack", "stop", "start", "help", "unknown"]
    code: str | None = None


def parse_reply(body: str) -> Reply:
    """Read a courier's text: ``ACK 4821`` (or just the code), STOP/START/HELP, or unknown."""
    text = " ".join(body.strip().upper().split())
    word = text.split(" ", 1)[0] if text else ""
    if word in STOP_WORDS:
        return Reply("stop")
    if word in START_WORDS:
        return Reply("start")
    if word in HELP_WORDS:
        return Reply("help")
    match = _ACK.match(text)
    if match:
        return Reply("ack", match.group(1))
    return Reply("unknown")


# Which custody event meets each journey-plan milestone (schedules.deadlines.DeadlineKind
# values): (item kind, custody states). Milestones no custody event can show, such as the
# start of lymphodepletion or a second dose, are not watched as deadlines: they would only
# ever breach. The plan page still shows them.
PLAN_MILESTONES_MET_BY: dict[str, tuple[str, frozenset[str]]] = {
    "outbound_pickup": ("apheresis_bag", frozenset({"in_transit"})),
    "fresh_stability_limit": ("apheresis_bag", frozenset({"in_manufacturing", "consumed"})),
    "manufacturing_receipt": ("apheresis_bag", frozenset({"received", "in_manufacturing"})),
    "manufacturing_start": ("apheresis_bag", frozenset({"in_manufacturing", "consumed"})),
    "release_decision": ("final_product_bag", frozenset({"released"})),
    "product_delivery": ("final_product_bag", frozenset({"received"})),
    "infusion": ("final_product_bag", frozenset({"infusing", "infused"})),
    "infusion_window_end": ("final_product_bag", frozenset({"infused"})),
}


def plan_milestones_met(item_kind: str, state: str) -> frozenset[str]:
    """The plan milestones that an item reaching ``state`` fulfils."""
    return frozenset(
        milestone
        for milestone, (kind, states) in PLAN_MILESTONES_MET_BY.items()
        if kind == item_kind and state in states
    )


def format_duration(value: timedelta) -> str:
    """A duration for people: '2 d 3 h', '1 h 05 min', '15 min', '40 s'."""
    seconds = int(value.total_seconds())
    sign = "-" if seconds < 0 else ""
    days, rest = divmod(abs(seconds), 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    if days:
        return f"{sign}{days} d {hours} h"
    if hours:
        return f"{sign}{hours} h {minutes:02d} min"
    return f"{sign}{minutes} min" if minutes else f"{sign}{secs} s"


def last_digits(value: str | None, count: int = 4) -> str | None:
    """The last ``count`` letters or digits of a shipper or seal number, for SMS."""
    if not value:
        return None
    tail = "".join(ch for ch in value if ch.isalnum())[-count:]
    return tail or None
