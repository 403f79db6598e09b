"""Label rules: DIN flags, ISBT 128 dates read back by our own parser, reprint guards."""

from __future__ import annotations

from datetime import date
from datetime import datetime
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tracker.domain import identifiers
from tracker.domain import label_rules as rules
from tracker.domain.errors import TrackerError


@pytest.mark.parametrize(
    ("container", "set_size", "flags"),
    [(1, 1, "00"), (1, 2, "01"), (2, 2, "02"), (4, 4, "04"), (5, 5, "15"), (9, 9, "19")],
)
def test_din_flags_mark_containers_of_a_set_and_nothing_for_a_lone_bag(container, set_size, flags):
    assert rules.din_flags(container, set_size, reprint=False) == flags
    din = identifiers.Din("W999926000123", flags)
    if flags != "00":
        assert din.container_number == container


@pytest.mark.parametrize(("container", "set_size"), [(1, 1), (2, 3), (7, 9)])
def test_a_reprint_always_carries_flag_05_the_repeated_label_flag(container, set_size):
    flags = rules.din_flags(container, set_size, reprint=True)
    assert flags == "05"
    assert identifiers.Din("W999926000123", flags).flag_kind is identifiers.FlagKind.repeat_label


def test_flag_00_is_not_printed_but_set_and_reprint_flags_are():
    assert rules.printed_flags("00") == ""
    assert rules.printed_flags("02") == "02"
    assert rules.printed_flags("05") == "05"


# Facility-local wall-clock times: naive on purpose, like the ISBT 128 dates themselves.
FIRST, LAST = datetime(2000, 1, 1), datetime(2099, 12, 31, 23, 59)  # noqa: DTZ001


@given(st.datetimes(min_value=FIRST, max_value=LAST))
def test_isbt_dates_we_print_parse_back_to_the_same_local_time(moment):
    moment = moment.replace(second=0, microsecond=0)
    for data, kind in (
        (rules.collection_datetime_data(moment), "collection"),
        (rules.expiry_datetime_data(moment), "expiration"),
    ):
        parsed = identifiers.parse(data)
        assert isinstance(parsed, identifiers.Parsed), parsed
        assert parsed.value.kind == kind
        assert parsed.value.local_datetime == moment
    day = identifiers.parse(rules.expiry_date_data(moment.date()))
    assert isinstance(day, identifiers.Parsed)
    assert day.value.date == moment.date() and day.value.default_time_applied


def test_dates_outside_the_century_digit_0_are_refused():
    with pytest.raises(ValueError, match="2000-2099"):
        rules.expiry_date_data(date(2100, 1, 1))


def test_a_compound_message_of_our_structures_parses_with_its_count():
    din = identifiers.din_barcode_data("W999926000123", "05")
    data = rules.compound_message([din, "=<S1001100", "=>026334", "&/CHW999926A1B2C3"])
    assert data.startswith("=+04000")
    parsed = identifiers.parse(data)
    assert isinstance(parsed, identifiers.Parsed), parsed
    assert [type(s).__name__ for s in parsed.value.structures] == [
        "Din",
        "ProductCode",
        "IsbtDate",
        "ChainOfIdentity",
    ]
    assert parsed.value.structures[0].flags == "05"


def test_label_dates_spell_the_month_so_day_and_month_cannot_be_swapped():
    assert rules.label_day_text(date(2026, 5, 3)) == "03 MAY 2026"
    local = datetime(2026, 12, 9, 7, 5, tzinfo=ZoneInfo("Europe/Amsterdam"))
    assert rules.label_datetime_text(local) == "09 DEC 2026 07:05"


@pytest.mark.parametrize(
    ("value", "shown"), [("EVO-IS-10023", "0023"), ("77", "--77"), (None, "----"), ("  ", "----")]
)
def test_couriers_see_only_the_last_four_characters(value, shown):
    assert rules.last4(value) == shown


def test_a_first_print_needs_no_reason_and_keeps_none():
    assert rules.decide_reprint(printed_before=False, reprint=False, reason="ignored") is None


@pytest.mark.parametrize(
    ("printed_before", "reprint", "reason", "code"),
    [
        (True, False, "smudged", "label_already_printed"),
        (False, True, "smudged", "label_not_printed"),
        (True, True, None, "reprint_reason_required"),
        (True, True, "   ", "reprint_reason_required"),
    ],
)
def test_reprint_guards_refuse_with_their_codes(printed_before, reprint, reason, code):
    with pytest.raises(TrackerError) as err:
        rules.decide_reprint(printed_before=printed_before, reprint=reprint, reason=reason)
    assert err.value.reason == code


def test_a_reprint_keeps_its_reason_trimmed():
    reason = rules.decide_reprint(printed_before=True, reprint=True, reason="  torn in transit ")
    assert reason == "torn in transit"


@given(st.text(alphabet=identifiers.INTERNAL_ID_ALPHABET, min_size=6, max_size=6))
def test_job_codes_carry_a_check_character_that_catches_a_typo(body):
    try:
        code = rules.courier_job_code(body)
    except ValueError:
        return  # a body whose check character is never issued; the service draws again
    assert rules.is_courier_job_code(code) and len(code) == 11
    typo = code[:5] + ("B" if code[5] != "B" else "C") + code[6:]
    assert not rules.is_courier_job_code(typo)
    assert isinstance(identifiers.parse(code), identifiers.ParseError)  # no ISBT 128 look-alike
