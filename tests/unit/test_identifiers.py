"""Behaviour of tracker.domain.identifiers: check characters, parsing, formatting, damage.

Facility numbers (G1234, W9999, ...) and product codes are synthetic.
"""

from __future__ import annotations

import ast
import random
import sys
from datetime import UTC
from datetime import date
from datetime import datetime
from datetime import time
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import settings
from hypothesis import strategies as st
from stdnum import ean
from stdnum.iso7064 import mod_37_2

from tracker.domain import identifiers as ids
from tracker.domain.identifiers import GS
from tracker.domain.identifiers import INTERNAL_ID_ALPHABET
from tracker.domain.identifiers import KEYBOARD_MISMATCHES
from tracker.domain.identifiers import MOD37_ALPHABET
from tracker.domain.identifiers import PARSE_REASONS
from tracker.domain.identifiers import ChainOfIdentity
from tracker.domain.identifiers import CoiCheckScope
from tracker.domain.identifiers import Compound
from tracker.domain.identifiers import Din
from tracker.domain.identifiers import FlagKind
from tracker.domain.identifiers import FlexibleDate
from tracker.domain.identifiers import Gs1Message
from tracker.domain.identifiers import InternalKind
from tracker.domain.identifiers import IsbtDate
from tracker.domain.identifiers import IsbtDateKind
from tracker.domain.identifiers import IsbtOpaque
from tracker.domain.identifiers import Parsed
from tracker.domain.identifiers import ParseError
from tracker.domain.identifiers import ParseResult
from tracker.domain.identifiers import ProductCode
from tracker.domain.identifiers import Retired
from tracker.domain.identifiers import coi_barcode_data
from tracker.domain.identifiers import coi_check_character
from tracker.domain.identifiers import coi_eye_readable
from tracker.domain.identifiers import din_barcode_data
from tracker.domain.identifiers import format_din_eye_readable
from tracker.domain.identifiers import gs1_bracketed
from tracker.domain.identifiers import gs1_check_digit
from tracker.domain.identifiers import gs1_date
from tracker.domain.identifiers import gs1_element_string
from tracker.domain.identifiers import isbt_check_character
from tracker.domain.identifiers import make_coi
from tracker.domain.identifiers import make_din
from tracker.domain.identifiers import make_internal_id
from tracker.domain.identifiers import mod37_2_value
from tracker.domain.identifiers import new_internal_id
from tracker.domain.identifiers import parse
from tracker.domain.identifiers import type3_flags
from tracker.domain.identifiers import verify_manual_entry

LAYOUT = {layout.name: layout for layout in KEYBOARD_MISMATCHES}
UPPER_ALNUM = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ"
CSET82 = "!\"%&'()*+,-./0123456789:;<=>?ABCDEFGHIJKLMNOPQRSTUVWXYZ_abcdefghijklmnopqrstuvwxyz"
COI = "CHG123425A1B2C3"
INTERNAL_EXAMPLE = new_internal_id(InternalKind.patient, random.Random(9)).value


def ok(result: ParseResult) -> Parsed:
    assert isinstance(result, Parsed), result
    return result


def refused(result: ParseResult, reason: str) -> ParseError:
    assert isinstance(result, ParseError), result
    assert result.reason == reason, result
    assert result.message
    return result


def with_check(digits: str) -> str:
    return digits + gs1_check_digit(digits)


# --- strategies --------------------------------------------------------------------------------

fins = st.builds(
    lambda a, b, c, d, e: a + b + c + d + e,
    st.sampled_from("ABCDEFGHIJKLMNPQRSTUVWXYZ123456789"),
    st.sampled_from("ABCDEFGHIJKLMNPQRSTUVWXYZ0123456789"),
    st.sampled_from("ABCDEFGHIJKLMNPQRSTUVWXYZ0123456789"),
    st.sampled_from("0123456789"),
    st.sampled_from("0123456789"),
)
years = st.integers(0, 99)
din13s = st.builds(lambda fin, y, n: make_din(fin, y, n).din, fins, years, st.integers(0, 999_999))
plain_flags = st.sampled_from(["00", "01", "04", "05", "06", "13", "15", "19", "20", "42", "59"])
coi_sequences = st.text(alphabet=UPPER_ALNUM, min_size=6, max_size=6)
cois = st.builds(make_coi, fins, years, coi_sequences)


def _digits(n: int) -> st.SearchStrategy[str]:
    return st.text(alphabet="0123456789", min_size=n, max_size=n)


def _yymmdd(day_zero: bool) -> st.SearchStrategy[str]:
    def build(d: date, last: bool) -> str:
        day = 0 if (day_zero and last) else d.day
        return f"{d.year % 100:02d}{d.month:02d}{day:02d}"

    return st.builds(build, st.dates(date(2000, 1, 1), date(2099, 12, 31)), st.booleans())


_x20 = st.text(alphabet=CSET82, min_size=1, max_size=20)
_gs1_values: dict[str, st.SearchStrategy[str]] = {
    "00": _digits(17).map(with_check),
    "01": _digits(13).map(with_check),
    "10": _x20,
    "11": _yymmdd(True),
    "15": _yymmdd(True),
    "17": _yymmdd(True),
    "21": _x20,
    "410": _digits(12).map(with_check),
    "414": _digits(12).map(with_check),
    "4331": st.builds(lambda n, minus: n + minus, _digits(6), st.sampled_from(["", "-"])),
    "4333": st.builds(lambda n, minus: n + minus, _digits(6), st.sampled_from(["", "-"])),
    "7003": st.builds(
        lambda d, h, m: d + f"{h:02d}{m:02d}",
        _yymmdd(False),
        st.integers(0, 23),
        st.integers(0, 59),
    ),
    "7240": _x20,
    "8003": st.builds(
        lambda d, serial: with_check("0" + d) + serial,
        _digits(12),
        st.text(alphabet=CSET82, max_size=16),
    ),
    "8017": _digits(17).map(with_check),
    "8018": _digits(17).map(with_check),
    "8019": st.text(alphabet="0123456789", min_size=1, max_size=10),
}
gs1_elements = st.lists(
    st.sampled_from(sorted(_gs1_values)).flatmap(
        lambda ai: _gs1_values[ai].map(lambda value: (ai, value))
    ),
    min_size=1,
    max_size=6,
    unique_by=lambda element: element[0],
)


# --- check characters --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("data", "value", "check"),
    [("G123417654321", 10, "A"), ("G123498654321", 17, "H"), ("G123489654321", 34, "Y")],
)
def test_check_character_matches_published_din_examples(data: str, value: int, check: str) -> None:
    assert mod37_2_value(data) == value
    assert isbt_check_character(data) == check


def test_type3_flags_of_the_published_din_are_70() -> None:
    assert type3_flags("G123417654321") == "70"


@pytest.mark.parametrize("data", ["", "g1234", "G1234*", "G-1234", "G1234 17", "Ä"])
def test_mod37_2_refuses_characters_outside_its_data_alphabet(data: str) -> None:
    with pytest.raises(ValueError):
        isbt_check_character(data)


@settings(max_examples=300)
@given(st.text(alphabet=UPPER_ALNUM, min_size=1, max_size=40))
def test_check_character_agrees_with_python_stdnum(data: str) -> None:
    assert isbt_check_character(data) == mod_37_2.calc_check_digit(data)
    assert mod_37_2.is_valid(data + isbt_check_character(data))


@pytest.mark.parametrize(
    ("digits", "check"),
    [("629104150021", "3"), ("37610425002123456", "9"), ("0703206980498", "8")],
)
def test_gs1_check_digit_matches_published_examples(digits: str, check: str) -> None:
    assert gs1_check_digit(digits) == check


@settings(max_examples=200)
@given(st.text(alphabet="0123456789", min_size=1, max_size=20))
def test_gs1_check_digit_agrees_with_python_stdnum(digits: str) -> None:
    assert gs1_check_digit(digits) == ean.calc_check_digit(digits)


@pytest.mark.parametrize("digits", ["", "12a4", "１２３", "12 34"])
def test_gs1_check_digit_refuses_anything_but_ascii_digits(digits: str) -> None:
    with pytest.raises(ValueError):
        gs1_check_digit(digits)


# --- DIN ---------------------------------------------------------------------------------------


def test_parses_din_with_valid_type3_flags() -> None:
    din = ok(parse("=G12341765432170")).value
    assert din == Din("G123417654321", "70")
    assert isinstance(din, Din)
    assert (din.fin, din.year2, din.sequence) == ("G1234", "17", "654321")
    assert din.flag_kind is FlagKind.type3
    assert din.check_character == "A"


def test_rejects_din_whose_type3_flags_do_not_match() -> None:
    refused(parse("=G12341765432171"), "bad_check_character")


@pytest.mark.parametrize(
    ("flags", "kind", "container", "meaning"),
    [
        ("00", FlagKind.not_used, None, "no flag information"),
        ("01", FlagKind.container, 1, "container 1 of a set"),
        ("04", FlagKind.container, 4, "container 4 of a set"),
        ("15", FlagKind.container, 5, "container 5 of a set"),
        ("19", FlagKind.container, 9, "container 9 of a set"),
        ("05", FlagKind.repeat_label, None, "repeated demand-printed label"),
        ("06", FlagKind.label_type, None, "pilot tube label"),
        ("13", FlagKind.label_type, None, "attached label"),
        ("20", FlagKind.local, None, "locally defined flag"),
        ("59", FlagKind.local, None, "locally defined flag"),
    ],
)
def test_classifies_din_flags(
    flags: str, kind: FlagKind, container: int | None, meaning: str
) -> None:
    din = ok(parse(f"=W999925000042{flags}")).value
    assert isinstance(din, Din)
    assert (din.flag_kind, din.container_number, din.flag_meaning) == (kind, container, meaning)


@pytest.mark.parametrize("flags", ["14", "97", "99", "A0", "0A", "7-"])
def test_rejects_reserved_or_non_numeric_din_flags(flags: str) -> None:
    refused(parse(f"=W999925000042{flags}"), "bad_flags")


@pytest.mark.parametrize("raw", ["=O12341765432100", "=012341765432100"])
def test_a_din_never_starts_with_letter_o_or_digit_zero(raw: str) -> None:
    assert "never starts" in refused(parse(raw), "unknown_code").message


@pytest.mark.parametrize(
    "raw", ["=G123417654321", "=G1234176543210", "=G12341765432100X", "=G12AB765432100"]
)
def test_rejects_din_of_wrong_length_or_characters(raw: str) -> None:
    refused(parse(raw), "malformed")


def test_din_value_objects_refuse_invalid_content() -> None:
    with pytest.raises(ValueError):
        Din("G12341765432")
    with pytest.raises(ValueError):
        Din("G123417654321", "71")


# --- product code and dates --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("code", "autologous"),
    [
        ("S1234100", True),
        ("S1234X00", True),
        ("S1234A00", True),
        ("S1234200", False),
        ("E1234100", False),
        ("S12341Ab", True),
    ],
)
def test_product_code_tells_autologous_cellular_therapy(code: str, autologous: bool) -> None:
    product = ok(parse(f"=<{code}")).value
    assert isinstance(product, ProductCode)
    assert product.autologous is autologous
    assert (product.family, product.pdc, product.division) == (code[0], code[:5], code[6:])


@pytest.mark.parametrize("raw", ["=<S12341AA", "=<S123410", "=<S12-4100", "=<1S234100"])
def test_rejects_malformed_product_codes(raw: str) -> None:
    refused(parse(raw), "malformed")


def test_isbt_date_without_time_means_2359_local_facility_time() -> None:
    value = ok(parse("=>025032")).value
    assert value == IsbtDate(4, "expiration", date(2025, 2, 1), None, default_time_applied=True)
    assert isinstance(value, IsbtDate)
    assert value.local_datetime == datetime.combine(date(2025, 2, 1), time(23, 59))
    assert value.local_datetime.tzinfo is None
    assert "local" in IsbtDate.TIME_BASIS


@pytest.mark.parametrize(
    ("raw", "ds", "kind", "day", "at"),
    [
        ("&>0240601230", 5, "expiration", date(2024, 2, 29), time(12, 30)),
        ("&*0250010000", 7, "collection", date(2025, 1, 1), time(0, 0)),
        ("=*024366", 6, "collection", date(2024, 12, 31), None),
        ("=}025365", 8, "production", date(2025, 12, 31), None),
        ("&}0251002359", 9, "production", date(2025, 4, 10), time(23, 59)),
    ],
)
def test_decodes_isbt_dates(
    raw: str, ds: int, kind: IsbtDateKind, day: date, at: time | None
) -> None:
    value = ok(parse(raw)).value
    assert value == IsbtDate(ds, kind, day, at, default_time_applied=at is None)


@pytest.mark.parametrize(
    "raw", ["=>025366", "=>025000", "&>0250012400", "&>0250011260", "=>125001"]
)
def test_rejects_dates_that_do_not_exist(raw: str) -> None:
    refused(parse(raw), "bad_date")


def test_flexible_date_in_utc_is_timezone_aware() -> None:
    value = ok(parse("=(2002202501311530")).value
    assert value == FlexibleDate("collection", datetime(2025, 1, 31, 15, 30, tzinfo=UTC), "utc")


def test_flexible_date_in_local_time_stays_naive_and_says_so() -> None:
    value = ok(parse("=(1006202402291530")).value
    assert isinstance(value, FlexibleDate)
    assert (value.kind, value.time_basis, value.value.tzinfo) == ("donor_death", "local", None)
    assert value.value == datetime.combine(date(2024, 2, 29), time(15, 30))


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        ("=(3002202501311530", "malformed"),
        ("=(1102202501311530", "malformed"),
        ("=(1007202501311530", "malformed"),
        ("=(1002202502301530", "bad_date"),
        ("=(1002202501312400", "bad_date"),
        ("=(100220250131153", "malformed"),
    ],
)
def test_rejects_bad_flexible_dates(raw: str, reason: str) -> None:
    refused(parse(raw), reason)


# --- chain of identity and manual entry --------------------------------------------------------


def test_parses_chain_of_identity_with_alphanumeric_sequence() -> None:
    value = ok(parse(f"&/{COI}")).value
    assert value == ChainOfIdentity(COI)
    assert isinstance(value, ChainOfIdentity)
    assert (value.fin, value.year2, value.sequence) == ("G1234", "25", "A1B2C3")


def test_typed_coi_check_character_is_verified_in_the_configured_scope() -> None:
    full, after_ch = coi_check_character(COI, "full"), coi_check_character(COI, "after_ch")
    assert full != after_ch  # the example tells the scopes apart
    assert ok(parse(f"&/{COI}{full}")).keyboard_check_verified
    assert ok(parse(f"&/{COI}{after_ch}", coi_check_scope="after_ch")).keyboard_check_verified
    refused(parse(f"&/{COI}{after_ch}"), "bad_check_character")
    refused(parse(f"&/{COI}{full}", coi_check_scope="after_ch"), "bad_check_character")


@pytest.mark.parametrize(
    "raw", ["&/CHG123425A1B2C", "&/XXG123425A1B2C3", "&/CHO123425A1B2C3", "&/CHG1234AAA1B2C3"]
)
def test_rejects_malformed_chain_of_identity(raw: str) -> None:
    refused(parse(raw), "malformed")


@pytest.mark.parametrize("typed", ["G123417654321A", "G1234 17 654321 A", "=G123417654321A"])
def test_manual_din_entry_with_its_check_character_is_verified(typed: str) -> None:
    result = verify_manual_entry(typed)
    assert ok(result) == Parsed(Din("G123417654321"), keyboard_check_verified=True)


def test_manual_entry_typed_with_caps_lock_on_is_reported() -> None:
    result = verify_manual_entry(" g1234 17 654321 a")
    assert refused(result, "caps_lock").suggestion == "G123417654321A"


def test_manual_coi_entry_with_its_check_character_is_verified() -> None:
    typed = f"{COI}{coi_check_character(COI)}"
    assert ok(verify_manual_entry(typed)).value == ChainOfIdentity(COI)
    assert ok(verify_manual_entry("&/" + typed)).value == ChainOfIdentity(COI)
    refused(verify_manual_entry(typed, coi_check_scope="after_ch"), "bad_check_character")


def test_manual_entry_refuses_values_that_are_neither_din_nor_coi() -> None:
    refused(verify_manual_entry("G12341765432"), "malformed")
    refused(verify_manual_entry("   "), "empty")


def _substitutions_and_transpositions(value: str) -> list[str]:
    variants = []
    for i, original in enumerate(value):
        variants += [value[:i] + ch + value[i + 1 :] for ch in MOD37_ALPHABET if ch != original]
    for i in range(len(value) - 1):
        if value[i] != value[i + 1]:
            variants.append(value[:i] + value[i + 1] + value[i] + value[i + 2 :])
    return variants


@pytest.mark.parametrize("din13", ["G123417654321", "W999925000001", "1A00990000123"])
def test_manual_entry_catches_every_single_substitution_and_adjacent_transposition(
    din13: str,
) -> None:
    typed = din13 + isbt_check_character(din13)
    assert isinstance(verify_manual_entry(typed), Parsed)
    variants = _substitutions_and_transpositions(typed)
    assert len(variants) >= 14 * 36
    missed = [v for v in variants if isinstance(verify_manual_entry(v), Parsed)]
    assert missed == []


@pytest.mark.parametrize("scope", ["full", "after_ch"])
def test_manual_coi_entry_catches_every_single_substitution_and_transposition(
    scope: CoiCheckScope,
) -> None:
    typed = COI + coi_check_character(COI, scope)
    missed = [
        v
        for v in _substitutions_and_transpositions(typed)
        if isinstance(verify_manual_entry(v, coi_check_scope=scope), Parsed)
    ]
    assert missed == []


@settings(max_examples=150)
@given(din13s, st.data())
def test_manual_din_entry_catches_random_single_errors(din13: str, data: st.DataObject) -> None:
    typed = din13 + isbt_check_character(din13)
    position = data.draw(st.integers(0, 13))
    if data.draw(st.booleans()) and position < 13 and typed[position] != typed[position + 1]:
        damaged = typed[:position] + typed[position + 1] + typed[position] + typed[position + 2 :]
    else:
        replacement = data.draw(
            st.sampled_from(MOD37_ALPHABET).filter(lambda c: c != typed[position])
        )
        damaged = typed[:position] + replacement + typed[position + 1 :]
    assert isinstance(verify_manual_entry(damaged), ParseError)


def test_manual_entry_accepts_star_and_letter_o_as_check_characters() -> None:
    wanted = {"*": "", "O": ""}
    for seq in range(2000):
        din13 = make_din("G1234", 25, seq).din
        check = isbt_check_character(din13)
        if check in wanted and not wanted[check]:
            wanted[check] = din13
    assert all(wanted.values())
    for check, din13 in wanted.items():
        assert ok(verify_manual_entry(din13 + check)).value == Din(din13)


# --- compound messages and other ISBT structures -----------------------------------------------


def test_parses_compound_message_structures_in_order() -> None:
    raw = f"=+04000=G12341765432170=<S1234100&>0250011230&/{COI}"
    value = ok(parse(raw)).value
    assert value == Compound(
        4,
        "000",
        (
            Din("G123417654321", "70"),
            ProductCode("S1234100"),
            IsbtDate(5, "expiration", date(2025, 1, 1), time(12, 30), default_time_applied=False),
            ChainOfIdentity(COI),
        ),
    )


@pytest.mark.parametrize("count", ["01", "03", "99"])
def test_rejects_compound_whose_count_disagrees_with_its_content(count: str) -> None:
    raw = f"=+{count}000=G12341765432170=<S1234100"
    refused(parse(raw), "compound_count_mismatch")


@pytest.mark.parametrize("inner", ["&aLOCAL123", "&;NATIONAL", "&!1", "=+01000=<S1234100"])
def test_rejects_structures_not_allowed_inside_a_compound(inner: str) -> None:
    refused(parse(f"=+02000=<S1234100{inner}"), "not_allowed_in_compound")


def test_skips_retired_structures_inside_a_compound_but_counts_them() -> None:
    retired = "=[" + "0" * 18
    value = ok(parse(f"=+03000{retired}=G12341765432170&,3" + "1" * 19)).value
    assert isinstance(value, Compound)
    assert value.structures == (Din("G123417654321", "70"),)
    assert value.retired == (Retired(15, "=[", "0" * 18), Retired(37, "&,3", "1" * 19))


@pytest.mark.parametrize(
    "raw", ["={" + "0" * 18, "=[" + "0" * 18, '="' + "0" * 18, "&,3" + "0" * 19]
)
def test_a_retired_structure_scanned_alone_is_refused(raw: str) -> None:
    refused(parse(raw), "retired_structure")


def test_compound_carries_known_structures_it_does_not_decode() -> None:
    raw = "=+03000&+W9999001234=,000001&#0105ABCDE"
    value = ok(parse(raw)).value
    assert isinstance(value, Compound)
    assert value.structures == (
        IsbtOpaque(33, "&+", "processing facility information code", "W9999001234"),
        IsbtOpaque(32, "=,", "product divisions", "000001"),
        IsbtOpaque(25, "&#", "patient identification number", "0105ABCDE"),
    )


def test_national_structure_scanned_alone_is_kept_opaque() -> None:
    value = ok(parse("&aWARD7-BED3")).value
    assert value == IsbtOpaque(None, "&a", "national or facility defined structure", "WARD7-BED3")


@pytest.mark.parametrize("raw", ["=~123", "&~123", "&,9" + "0" * 18, "=", "&,"])
def test_refuses_unknown_or_cut_short_data_identifiers(raw: str) -> None:
    result = parse(raw)
    assert isinstance(result, ParseError)
    assert result.reason in ("unknown_code", "malformed")


# --- GS1 ---------------------------------------------------------------------------------------


def test_parses_the_domain_example_with_a_gs_separator() -> None:
    message = ok(parse(f"0107032069804988100329{GS}15210526")).value
    assert message == Gs1Message((("01", "07032069804988"), ("10", "0329"), ("15", "210526")))
    assert isinstance(message, Gs1Message)
    assert (message.get("10"), message.get("21")) == ("0329", None)


def test_accepts_a_configured_printable_separator_instead_of_gs() -> None:
    result = parse("0107032069804988100329|15210526", gs_substitute="|")
    assert ok(result).value == Gs1Message(
        (("01", "07032069804988"), ("10", "0329"), ("15", "210526"))
    )


@pytest.mark.parametrize("substitute", ["", "A", "1", "<GS>", "%"])
def test_refuses_a_separator_substitute_that_can_occur_in_gs1_data(substitute: str) -> None:
    with pytest.raises(ValueError):
        parse("0107032069804988", gs_substitute=substitute)


def test_parses_bracketed_human_readable_gs1() -> None:
    message = ok(parse("(01)09506000134352(17)201225")).value
    assert message == Gs1Message((("01", "09506000134352"), ("17", "201225")))


@pytest.mark.parametrize(
    "raw",
    [
        "0107032069804989",
        "00" + "37610425002123456" + "8",
        "410" + "629104150021" + "4",
        "8018" + "12345678901234567" + str((int(gs1_check_digit("12345678901234567")) + 1) % 10),
        "(01)09506000134353",
    ],
)
def test_rejects_bad_gs1_check_digits(raw: str) -> None:
    refused(parse(raw), "bad_check_digit")


@pytest.mark.parametrize("raw", ["3103000123", "(99)ABC", "0107032069804988240ABC"])
def test_rejects_unknown_application_identifiers(raw: str) -> None:
    refused(parse(raw), "unknown_ai")


@pytest.mark.parametrize(
    "raw",
    [
        "01070320698049",
        "010703206980498810",
        f"0107032069804988{GS}{GS}100329",
        "10" + "A" * 21,
        "4331123",
        "(01)0703206980498",
        "800312345678901234",
    ],
)
def test_rejects_truncated_or_overlong_gs1_elements(raw: str) -> None:
    refused(parse(raw), "malformed")


@pytest.mark.parametrize(
    "raw", ["0107032069804988" + "17251301", "0107032069804988" + "17250231", "70032501312460"]
)
def test_rejects_gs1_dates_that_do_not_exist(raw: str) -> None:
    refused(parse(raw), "bad_date")


def test_parses_shipping_elements_for_a_cryoshipper() -> None:
    sscc = with_check("03761042500212345")
    grai = with_check("0629104150021") + "DEWAR-07"
    gsrn = with_check("12345678901234567")
    raw = f"00{sscc}8003{grai}{GS}8018{gsrn}{GS}80190000042{GS}4333000150-{GS}7003250131{'1530'}"
    message = ok(parse(raw)).value
    assert isinstance(message, Gs1Message)
    assert message.get("8003") == grai
    assert message.get("4333") == "000150-"
    assert message.get("7003") == "2501311530"


def test_gs1_day_00_means_the_last_day_of_the_month() -> None:
    assert ok(parse("0107032069804988172402" + "00")).value == Gs1Message(
        (("01", "07032069804988"), ("17", "240200"))
    )
    assert gs1_date("240200", reference_year=2026) == date(2024, 2, 29)
    assert gs1_date("250200", reference_year=2026) == date(2025, 2, 28)


@pytest.mark.parametrize(
    ("yymmdd", "reference", "year"),
    [
        ("251231", 2026, 2025),
        ("760101", 2026, 2076),
        ("770101", 2026, 1977),
        ("010101", 2075, 2101),
    ],
)
def test_gs1_dates_use_the_century_window_around_the_reference_year(
    yymmdd: str, reference: int, year: int
) -> None:
    assert gs1_date(yymmdd, reference_year=reference).year == year


@settings(max_examples=150)
@given(gs1_elements)
def test_generated_gs1_element_strings_parse_back_to_themselves(
    elements: list[tuple[str, str]],
) -> None:
    expected = Gs1Message(tuple(elements))
    assert ok(parse(gs1_element_string(elements))).value == expected
    piped = gs1_element_string(elements, separator="|")
    assert ok(parse(piped, gs_substitute="|")).value == expected
    assert ok(parse("]C1" + gs1_element_string(elements))).value == expected
    assert ok(parse(gs1_bracketed(elements))).value == expected


def test_gs1_encoders_refuse_invalid_elements() -> None:
    with pytest.raises(ValueError):
        gs1_element_string([("01", "07032069804989")])
    with pytest.raises(ValueError):
        gs1_bracketed([("3103", "000123")])


# --- symbology identifiers and input cleaning --------------------------------------------------


@pytest.mark.parametrize(
    ("prefix", "name"),
    [("]C0", "Code 128"), ("]d1", "Data Matrix"), ("]Q1", "QR Code"), ("]X9", "unrecognised")],
)
def test_strips_aim_symbology_identifier_and_records_it(prefix: str, name: str) -> None:
    result = ok(parse(prefix + "=G12341765432170"))
    assert result.value == Din("G123417654321", "70")
    assert result.symbology is not None
    assert result.symbology.code == prefix
    assert result.symbology.name.startswith(name)


@pytest.mark.parametrize("prefix", ["]C1", "]d2", "]Q3", "]e0"])
def test_a_gs1_symbology_forces_gs1_parsing(prefix: str) -> None:
    result = ok(parse(f"{prefix}{GS}0107032069804988"))
    assert result.symbology is not None and result.symbology.gs1
    error = parse(prefix + "=G12341765432170")
    assert isinstance(error, ParseError)
    assert error.reason in ("malformed", "unknown_ai")


def test_retail_ean_symbology_is_not_a_tracker_code() -> None:
    refused(parse("]E04006381333931"), "unknown_code")


def test_strips_enter_tab_and_control_characters_but_keeps_gs() -> None:
    raw = f"\x02 0107032069804988100329{GS}15210526\x03\r\n\t"
    assert ok(parse(raw)).value == Gs1Message(
        (("01", "07032069804988"), ("10", "0329"), ("15", "210526"))
    )
    assert ok(parse("=G12341765432170\r\n")).value == Din("G123417654321", "70")


@pytest.mark.parametrize("raw", ["", " ", "\r\n", "\t\x00\x7f", "]C1"])
def test_nothing_scanned_is_reported_as_empty(raw: str) -> None:
    refused(parse(raw), "empty")


def test_refuses_an_overlong_scan() -> None:
    refused(parse("=" * 5000), "malformed")


# --- internal identifiers ----------------------------------------------------------------------


def test_internal_id_alphabet_avoids_ambiguous_and_layout_sensitive_letters() -> None:
    assert len(INTERNAL_ID_ALPHABET) == len(set(INTERNAL_ID_ALPHABET)) == 26
    assert not set("ILOUYZAQWM") & set(INTERNAL_ID_ALPHABET)
    assert not set('=&<>%"@*') & set(INTERNAL_ID_ALPHABET)


def test_new_internal_id_is_reproducible_with_injected_randomness() -> None:
    first = new_internal_id(InternalKind.patient, random.Random(7))
    again = new_internal_id("PAT", random.Random(7))
    assert first == again
    assert str(first).startswith("TRKPAT")
    assert len(first.value) == 17


@settings(max_examples=150)
@given(st.sampled_from(list(InternalKind)), st.integers(0, 2**32), st.booleans())
def test_generated_internal_ids_parse_back_to_themselves(
    kind: InternalKind, seed: int, use_bytes: bool
) -> None:
    rng = random.Random(seed)
    internal = new_internal_id(kind, rng.randbytes if use_bytes else rng)
    assert ok(parse(internal.value)) == Parsed(internal)
    assert make_internal_id(kind.value, internal.body) == internal
    assert all(ch in INTERNAL_ID_ALPHABET for ch in internal.value[6:])


@pytest.mark.parametrize(
    "layout", ["us_scanner_de_host", "us_scanner_uk_host", "de_scanner_us_host"]
)
def test_internal_ids_type_identically_on_us_uk_and_german_hosts(layout: str) -> None:
    rng = random.Random(1)
    for kind in InternalKind:
        value = new_internal_id(kind, rng).value
        assert LAYOUT[layout].damage(value) == value


def test_rejects_internal_ids_with_errors() -> None:
    good = new_internal_id(InternalKind.shipper, random.Random(3)).value
    other = "B" if good[-1] != "B" else "C"
    refused(parse(good[:-1] + other), "bad_check_character")
    refused(parse("TRKXYZ" + good[6:]), "unknown_code")
    refused(parse(good[:8] + "O" + good[9:]), "malformed")
    refused(parse(good[:-1]), "malformed")


def test_make_internal_id_refuses_a_body_whose_check_is_never_issued() -> None:
    rng = random.Random(5)
    for _ in range(200):
        body = "".join(rng.choice(INTERNAL_ID_ALPHABET) for _ in range(10))
        if isbt_check_character("TRKLOG" + body) not in INTERNAL_ID_ALPHABET:
            with pytest.raises(ValueError, match="never issued"):
                make_internal_id(InternalKind.logger, body)
            return
    pytest.fail("no body with an unissuable check character found")


def test_new_internal_id_gives_up_on_a_useless_randomness_source() -> None:
    with pytest.raises(RuntimeError):
        new_internal_id(InternalKind.device, lambda n: b"\xff" * n)


# --- keyboard-wedge damage ---------------------------------------------------------------------


@pytest.mark.parametrize(
    "good",
    [
        "=G12341765432170",
        f"&/{COI}",
        "=<S1234100",
        "=<S12341Ab",
        "]C10107032069804988",
        INTERNAL_EXAMPLE,
    ],
)
def test_caps_lock_is_reported_with_what_the_scan_would_have_been(good: str) -> None:
    inverted = good.swapcase()
    assert refused(parse(inverted), "caps_lock").suggestion == good


@pytest.mark.parametrize(
    ("layout", "meant", "shown"),
    [
        # US keystrokes on a German host: the key right of 0 is a dead acute accent,
        # shift+7 is '/', shift+comma is ';', the slash key is '-'.
        ("us_scanner_de_host", "=", "´"),
        ("us_scanner_de_host", "&", "/"),
        ("us_scanner_de_host", "<", ";"),
        ("us_scanner_de_host", ">", ":"),
        ("us_scanner_de_host", "/", "-"),
        ("us_scanner_de_host", "Z", "Y"),
        # US keystrokes on a French host: shift+7 is '7', shift+comma is '.', digits move.
        ("us_scanner_fr_host", "&", "7"),
        ("us_scanner_fr_host", "<", "."),
        ("us_scanner_fr_host", "1", "&"),
        ("us_scanner_fr_host", "=", "="),
        # US keystrokes on a UK host: only '#', '"' and '@' among ours move.
        ("us_scanner_uk_host", "#", "£"),
        ("us_scanner_uk_host", "=", "="),
        # A scanner set to German keystrokes on a US host: German shift+0 ('=') shows ')'.
        ("de_scanner_us_host", "=", ")"),
        ("de_scanner_us_host", "&", "^"),
        ("de_scanner_us_host", "/", "&"),
    ],
)
def test_layout_tables_follow_physical_key_positions(layout: str, meant: str, shown: str) -> None:
    assert LAYOUT[layout].damage(meant) == shown


def test_layout_tables_can_always_be_undone() -> None:
    relevant = "=&<>%*}()+/,:;'\"[]{}\\#$-!" + UPPER_ALNUM
    for layout in KEYBOARD_MISMATCHES:
        shown = list(layout.typed_as.values())
        assert len(shown) == len(set(shown)), layout.name
        for ch in relevant:
            if ch not in layout.unreliable:
                assert layout.restore(layout.damage(ch)) == ch, (layout.name, ch)


@pytest.mark.parametrize(
    ("raw", "meant"),
    [
        ("´G12341765432170", "=G12341765432170"),
        ("ÁB1231765432100", "=AB1231765432100"),
        ("´;S1234100", "=<S1234100"),
        ("/-" + COI, "&/" + COI),
        (")G12341765432170", "=G12341765432170"),
        ("^&" + COI, "&/" + COI),
        ("+C1" + "0107032069804988", "]C1" + "0107032069804988"),
        ("=G&é\"'&è-('\"é&èà", "=G12341765432170"),
        ("=£0119800101", "=#0119800101"),
    ],
)
def test_layout_damage_is_reported_with_what_the_scanner_sent(raw: str, meant: str) -> None:
    assert ok(parse(meant))
    assert refused(parse(raw), "keyboard_layout").suggestion == meant


def test_layout_damage_that_cannot_be_undone_is_still_recognised_by_its_first_characters() -> None:
    error = refused(parse("´;S12"), "keyboard_layout")
    assert error.suggestion is None


def test_layout_diagnosis_never_turns_a_bad_din_into_another_valid_din() -> None:
    # '=Z...' with Type 3 flags of the '=Y...' DIN: swapping Y/Z alone would "repair" it.
    flags = type3_flags("Y123417654321")
    result = parse(f"=Z123417654321{flags}")
    assert isinstance(result, ParseError)
    assert result.reason == "bad_check_character"


_isbt_payloads = st.one_of(
    st.builds(lambda d, f: din_barcode_data(d, f), din13s, plain_flags),
    st.builds(lambda d: din_barcode_data(d, type3_flags(d)), din13s),
    cois.map(lambda c: coi_barcode_data(c.coi)),
    st.builds(
        lambda fam, pdc, t: f"=<{fam}{pdc}{t}00",
        st.sampled_from("SEPT"),
        st.text(alphabet=UPPER_ALNUM, min_size=4, max_size=4),
        st.sampled_from("12XA"),
    ),
    st.builds(
        lambda d: f"=>0{d.year % 100:02d}{d.timetuple().tm_yday:03d}",
        st.dates(date(2000, 1, 1), date(2099, 12, 31)),
    ),
    st.builds(
        lambda seed: new_internal_id(InternalKind.label, random.Random(seed)).value,
        st.integers(0, 10**6),
    ),
)


@settings(max_examples=200)
@given(
    _isbt_payloads,
    st.sampled_from(["us_scanner_de_host", "us_scanner_fr_host", "de_scanner_us_host"]),
)
def test_simulated_layout_damage_is_always_diagnosed(payload: str, layout: str) -> None:
    assert isinstance(parse(payload), Parsed)
    shown = LAYOUT[layout].damage(payload)
    result = parse(shown)
    if shown == payload:
        assert isinstance(result, Parsed)
    else:
        assert refused(result, "keyboard_layout").suggestion == payload


# --- generators and formatting -----------------------------------------------------------------


def test_formats_din_eye_readable_with_k_apart() -> None:
    assert format_din_eye_readable("G123417654321") == ("G1234 17 654321", "A")
    assert din_barcode_data("G123417654321", "00") == "=G12341765432100"
    assert make_din("G1234", 17, 654321, type3_flags("G123417654321")) == Din("G123417654321", "70")


def test_formats_coi_eye_readable_and_barcode_data() -> None:
    grouped, check = coi_eye_readable(COI)
    assert grouped == "CH G1234 25 A1B2C3"
    assert check == coi_check_character(COI)
    assert coi_eye_readable(COI, scope="after_ch")[1] == isbt_check_character(COI[2:])
    assert coi_barcode_data(COI) == "&/" + COI
    assert make_coi("G1234", 25, "A1B2C3") == ChainOfIdentity(COI)
    assert make_coi("W9999", 5, 42).coi == "CHW999905000042"


@pytest.mark.parametrize(
    "call",
    [
        lambda: make_din("O1234", 17, 1),
        lambda: make_din("G12AB", 17, 1),
        lambda: make_din("G1234", 100, 1),
        lambda: make_din("G1234", 17, 1_000_000),
        lambda: make_din("G1234", 17, 1, "97"),
        lambda: din_barcode_data("G123417654321", "71"),
        lambda: format_din_eye_readable("G12341765432"),
        lambda: make_coi("G1234", 25, "a1b2c3"),
        lambda: coi_eye_readable("CHG123425A1B2C"),
        lambda: make_internal_id("XYZ", "0" * 10),
        lambda: make_internal_id("PAT", "0" * 9),
    ],
)
def test_generators_refuse_invalid_parts(call: object) -> None:
    with pytest.raises(ValueError):
        call()  # type: ignore[operator]


@settings(max_examples=200)
@given(fins, years, st.integers(0, 999_999), st.one_of(plain_flags, st.just("type3")))
def test_every_generated_din_parses_back_to_itself(
    fin: str, year: int, seq: int, flags: str
) -> None:
    din13 = make_din(fin, year, seq).din
    if flags == "type3":
        flags = type3_flags(din13)
    din = make_din(fin, year, seq, flags)
    assert ok(parse(din_barcode_data(din.din, flags))) == Parsed(din)
    grouped, check = format_din_eye_readable(din.din)
    assert ok(verify_manual_entry(f"{grouped} {check}")).value == Din(din.din)


@settings(max_examples=200)
@given(cois, st.sampled_from(["full", "after_ch"]))
def test_every_generated_coi_parses_back_to_itself(
    coi: ChainOfIdentity, scope: CoiCheckScope
) -> None:
    assert ok(parse(coi_barcode_data(coi.coi))) == Parsed(coi)
    grouped, check = coi_eye_readable(coi.coi, scope=scope)
    typed = grouped + " " + check
    assert ok(verify_manual_entry(typed, coi_check_scope=scope)).value == coi
    keyed = parse(coi_barcode_data(coi.coi) + check, coi_check_scope=scope)
    assert ok(keyed).keyboard_check_verified


# --- robustness and vocabulary -----------------------------------------------------------------


def _assert_well_formed(result: ParseResult) -> None:
    assert isinstance(result, Parsed | ParseError)
    if isinstance(result, ParseError):
        assert result.reason in PARSE_REASONS
        assert result.message


@settings(max_examples=400)
@given(st.text(max_size=80))
def test_parse_never_raises_for_any_text(raw: str) -> None:
    _assert_well_formed(parse(raw))
    _assert_well_formed(parse(raw, gs_substitute="|", coi_check_scope="after_ch"))
    _assert_well_formed(verify_manual_entry(raw))


_near_miss_alphabet = (
    "=&<>%*}(){}[]+/,:;'\"\\#$-!^|~´`ÁÉßéèàç£§" + UPPER_ALNUM + "abcxyz" + GS + " \r\n"
)
_near_miss_seeds = [
    "=G12341765432170",
    f"&/{COI}",
    "=+03000=G12341765432170=<S1234100&>0250011230",
    f"0107032069804988100329{GS}15210526",
    "(01)09506000134352(17)201225",
    "]C1",
    "TRKPAT",
    "&#0105",
    "&$01",
    "&%001",
]


@settings(max_examples=400)
@given(
    st.sampled_from(_near_miss_seeds),
    st.text(alphabet=_near_miss_alphabet, max_size=40),
    st.integers(0, 60),
)
def test_parse_never_raises_for_near_miss_payloads(seed: str, noise: str, cut: int) -> None:
    for raw in (seed[:cut] + noise, seed + noise, noise + seed, seed[:cut]):
        _assert_well_formed(parse(raw))
        _assert_well_formed(verify_manual_entry(raw))


def test_parse_reasons_are_documented_in_the_error_vocabulary() -> None:
    from tracker.domain.errors import REASONS

    assert len(set(PARSE_REASONS)) == len(PARSE_REASONS) == 13
    assert set(PARSE_REASONS) <= set(REASONS)


def test_identifiers_module_uses_the_standard_library_only() -> None:
    source = Path(ids.__file__).read_text(encoding="utf-8")
    imported: set[str] = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            imported |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            imported.add(node.module.split(".")[0])
    assert imported <= set(sys.stdlib_module_names) | {"__future__"}


def test_parsed_results_are_immutable() -> None:
    result = ok(parse("=G12341765432170"))
    with pytest.raises(AttributeError):
        result.value = None  # type: ignore[misc]
