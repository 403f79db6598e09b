"""Journey-plan data inside a product profile's JSON ``data``, and the JourneyProfile built from it.

Stored as ``data["journey"]`` (field -> value) and ``data["journey_confirmed"]`` (the fields an
administrator has checked against the product's current label). Every other field is a
*default to confirm*: the value comes from ``JourneyProfile``'s defaults (DOMAIN.md section 4)
and pages show it marked as such. The apheresis mode comes from the profile's
``starting_material`` column. Editing creates a new profile version; plans record the version.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from schedules.planning import DEFAULTS_TO_CONFIRM
from schedules.planning import ApheresisMode
from schedules.planning import JourneyProfile
from schedules.planning import SplitDose

JOURNEY_KEY = "journey"
CONFIRMED_KEY = "journey_confirmed"


@dataclass(frozen=True)
class FieldSpec:
    name: str
    label: str
    unit: str
    help: str


FIELDS: tuple[FieldSpec, ...] = (
    FieldSpec(
        "fresh_stability_hours",
        "Fresh apheresis stability",
        "hours",
        "From collection end to manufacturing start (fresh material only).",
    ),
    FieldSpec(
        "transit_to_manufacturing_hours",
        "Transit to manufacturing",
        "hours",
        "Courier time from the collection site to the manufacturer.",
    ),
    FieldSpec(
        "cryopreservation_hours",
        "Cryopreservation before shipping",
        "hours",
        "Cryopreserved path only: collection end to ready to ship.",
    ),
    FieldSpec(
        "manufacturing_days",
        "Manufacturing turnaround",
        "days",
        "From 2-3 days (rapid processes) to 9-12 days.",
    ),
    FieldSpec(
        "release_testing_days",
        "Release testing",
        "days",
        "For example 14-day culture sterility versus a 3-day rapid test.",
    ),
    FieldSpec(
        "return_shipping_days",
        "Return shipping",
        "days",
        "Release to arrival at the treatment site.",
    ),
    FieldSpec(
        "ld_start_day",
        "Lymphodepletion starts on day",
        "day (negative)",
        "Relative to infusion day 0, e.g. -5 for days -5, -4, -3.",
    ),
    FieldSpec("ld_regimen_days", "Lymphodepletion regimen", "days", "Number of LD days."),
    FieldSpec(
        "infusion_window_after_ld_days",
        "Infusion window after the last LD day",
        "days (min-max)",
        "Infusion may follow the last LD day by this many days.",
    ),
    FieldSpec(
        "re_ld_after_delay_days",
        "Repeat LD when infusion is delayed by more than",
        "days (empty = no rule)",
        "A delay past this opens a repeat-lymphodepletion question (clinical decision).",
    ),
    FieldSpec(
        "split_dose",
        "Split dose: second dose day +- tolerance",
        "day, days (empty = single dose)",
        "For example day 10 +- 2 with the first dose on day 1.",
    ),
)
FIELD_NAMES = tuple(f.name for f in FIELDS)
_DEFAULT = JourneyProfile()


def default_values() -> dict[str, Any]:
    """The JourneyProfile defaults as JSON values."""
    return {name: to_json(name, getattr(_DEFAULT, name)) for name in FIELD_NAMES}


def to_json(name: str, value: Any) -> Any:
    """One field value as stored in JSON."""
    if name == "infusion_window_after_ld_days":
        return list(value)
    if name == "split_dose":
        return (
            None
            if value is None
            else {"second_dose_day": value.second_dose_day, "tolerance_days": value.tolerance_days}
        )
    return value


def _from_json(name: str, value: Any) -> Any:
    if name == "infusion_window_after_ld_days":
        low, high = value
        return (int(low), int(high))
    if name == "split_dose":
        if value is None:
            return None
        return SplitDose(int(value["second_dose_day"]), int(value["tolerance_days"]))
    if name == "re_ld_after_delay_days":
        return None if value is None else int(value)
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"{name} must be a whole number")
    return value


def stored_values(data: dict[str, Any]) -> dict[str, Any]:
    """Journey values of a profile's ``data``: stored ones over the defaults."""
    values = default_values()
    journey = data.get(JOURNEY_KEY) or {}
    for name in FIELD_NAMES:
        if name in journey:
            values[name] = journey[name]
        elif name in data:  # early profiles kept some numbers at the top level
            values[name] = data[name]
    return values


def confirmed_fields(data: dict[str, Any]) -> frozenset[str]:
    """Fields an administrator confirmed; the rest are defaults to confirm."""
    return frozenset(f for f in data.get(CONFIRMED_KEY) or () if f in FIELD_NAMES)


def unconfirmed_fields(data: dict[str, Any]) -> list[str]:
    """Fields still marked "default to confirm", in form order."""
    confirmed = confirmed_fields(data)
    return [n for n in FIELD_NAMES if n not in confirmed and n in DEFAULTS_TO_CONFIRM]


def build_profile(
    *, code: str, version: int, starting_material: str, values: dict[str, Any]
) -> JourneyProfile:
    """A validated JourneyProfile; ValueError names the problem."""
    unknown = set(values) - set(FIELD_NAMES)
    if unknown:
        raise ValueError(f"unknown journey fields: {', '.join(sorted(unknown))}")
    kwargs = {name: _from_json(name, values[name]) for name in FIELD_NAMES if name in values}
    try:
        return JourneyProfile(
            product=code,
            version=f"{code}@v{version}",
            apheresis=ApheresisMode(starting_material),
            **kwargs,
        )
    except (TypeError, KeyError) as exc:
        raise ValueError(f"malformed journey value: {exc}") from exc


def journey_profile(
    *, code: str, version: int, starting_material: str, data: dict[str, Any]
) -> JourneyProfile:
    """The JourneyProfile of a stored product profile row's fields."""
    return build_profile(
        code=code,
        version=version,
        starting_material=starting_material,
        values=stored_values(data),
    )
