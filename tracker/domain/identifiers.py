"""Identifiers: check characters, barcode payload parsing and formatting.

Everything here is pure: no clock, no randomness of its own, no I/O, standard library only.

``parse(raw)`` turns one scanner payload into ``Parsed`` or ``ParseError`` and never raises
for any input string. It understands:

* AIM symbology identifiers (``]C1``, ``]d2``, ...): stripped and recorded; a GS1 symbology
  forces GS1 parsing.
* ISBT 128 data structures (ST-001): DIN with flags, product code, dates, flexible date, chain
  of identity (COI), compound messages. Other ICCBBA structures of known length come back as
  ``IsbtOpaque`` so that compound messages carrying them still split correctly.
* GS1 element strings (FNC1 as ASCII GS or a configured substitute) and the bracketed human
  form ``(01)...(17)...``, for the application identifiers in ``GS1_AIS``.
* Our own internal identifiers (``TRK`` + kind + body + check character, see ``InternalId``).

Design decisions:

* Retired ISBT structures (DS011, DS015, DS016, DS037) are recognised by data identifier and
  length. Scanned on their own they give ``ParseError(reason="retired_structure")``, because
  they identify nothing we track. Inside a compound message they count towards the announced
  number of structures, are skipped, and are listed in ``Compound.retired``.
* Keyboard-wedge damage is diagnosed, never silently repaired: if the payload fails and its
  case-inverted or layout-restored form parses, the result is ``caps_lock`` or
  ``keyboard_layout`` with the repaired text in ``suggestion`` for a person to confirm.
* Internal ids use an alphabet that types identically on US, UK and German hosts and breaks
  loudly (never silently) on French AZERTY hosts; see ``INTERNAL_ID_ALPHABET``.
* ISBT dates without a time default to 23:59 (ST-001) and are facility-local: we return naive
  values and never guess a time zone.
"""

from __future__ import annotations

import calendar
import dataclasses
import datetime as _dt
import random
import re
import unicodedata
from collections.abc import Callable
from collections.abc import Iterable
from collections.abc import Mapping
from dataclasses import dataclass
from dataclasses import field
from datetime import UTC
from datetime import date
from datetime import datetime
from datetime import time
from datetime import timedelta
from enum import Enum
from enum import StrEnum
from typing import Any
from typing import ClassVar
from typing import Final
from typing import Literal
from typing import TypeAlias
from typing import get_args

# ---------------------------------------------------------------------------------------------
# Check characters
# ---------------------------------------------------------------------------------------------

MOD37_ALPHABET: Final = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ*"
"""ISO/IEC 7064 MOD 37-2 characters, valued 0-36. ``*`` only ever appears as a check character."""

_DATA_VALUE: Final = {ch: value for value, ch in enumerate(MOD37_ALPHABET[:36])}
_DIGITS: Final = frozenset("0123456789")
_UPPER: Final = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZ")
_LOWER: Final = frozenset("abcdefghijklmnopqrstuvwxyz")
_UPPER_ALNUM: Final = _UPPER | _DIGITS
_ALNUM: Final = _UPPER | _LOWER | _DIGITS
# The first character of a FIN (and so of a DIN): A-N, P-Z or 1-9; never O or 0.
_DIN_ALPHA: Final = frozenset("ABCDEFGHIJKLMNPQRSTUVWXYZ123456789")
_FIN_MIDDLE: Final = frozenset("ABCDEFGHIJKLMNPQRSTUVWXYZ0123456789")


def mod37_2_value(data: str) -> int:
    """Return the ISO/IEC 7064 MOD 37-2 check value (0-36) of ``data`` (characters 0-9, A-Z)."""
    if not data:
        raise ValueError("MOD 37-2 needs at least one character")
    total = 0
    for ch in data:
        value = _DATA_VALUE.get(ch)
        if value is None:
            raise ValueError(f"{ch!r} is not in the MOD 37-2 data alphabet 0-9, A-Z")
        total = ((total + value) * 2) % 37
    return (38 - total) % 37


def isbt_check_character(data: str) -> str:
    """Return the MOD 37-2 keyboard check character K of ``data`` (one of 0-9, A-Z, ``*``)."""
    return MOD37_ALPHABET[mod37_2_value(data)]


def gs1_check_digit(digits: str) -> str:
    """Return the GS1 mod-10 check digit for ``digits`` (the data digits, check digit excluded)."""
    if not digits or any(ch not in _DIGITS for ch in digits):
        raise ValueError(f"GS1 check digits are computed over ASCII digits only, got {digits!r}")
    total = sum(int(ch) * (3 if i % 2 == 0 else 1) for i, ch in enumerate(reversed(digits)))
    return str((10 - total % 10) % 10)


# ---------------------------------------------------------------------------------------------
# Result types
# ---------------------------------------------------------------------------------------------

ParseReason: TypeAlias = Literal[
    "empty",
    "unknown_code",
    "malformed",
    "bad_check_character",
    "bad_check_digit",
    "bad_flags",
    "bad_date",
    "unknown_ai",
    "compound_count_mismatch",
    "not_allowed_in_compound",
    "caps_lock",
    "keyboard_layout",
    "retired_structure",
]
PARSE_REASONS: Final[tuple[ParseReason, ...]] = get_args(ParseReason)
"""The closed list of ``ParseError.reason`` values.

* ``empty``: nothing left after stripping whitespace and control characters.
* ``unknown_code``: not an ISBT 128, GS1 or internal identifier we know.
* ``malformed``: wrong length or characters for the recognised type (also truncation).
* ``bad_check_character``: a MOD 37-2 check (K, Type 3 DIN flags, internal id) fails.
* ``bad_check_digit``: a GS1 mod-10 check digit fails.
* ``bad_flags``: DIN flag characters that are reserved or not two digits.
* ``bad_date``: a date or time that does not exist (day 366 of 2025, 24:00, ...).
* ``unknown_ai``: a GS1 application identifier outside ``GS1_AIS``.
* ``compound_count_mismatch``: an ISBT compound message announces a different count.
* ``not_allowed_in_compound``: a nested compound, or a national ``&a``-``&z``/``&;``/``&!``
  structure inside a compound message.
* ``caps_lock``: the payload parses once letter case is inverted (see ``suggestion``).
* ``keyboard_layout``: scanner and host keyboard layouts disagree (see ``suggestion``).
* ``retired_structure``: a retired ISBT structure scanned on its own.
"""

CoiCheckScope: TypeAlias = Literal["full", "after_ch"]
"""What the COI keyboard check character covers: all 15 characters, or the 13 after ``CH``."""

TimeBasis: TypeAlias = Literal["local", "utc"]


@dataclass(frozen=True, slots=True)
class Symbology:
    """An AIM symbology identifier such as ``]C1``; ``gs1`` means the data is GS1 syntax."""

    code: str
    name: str
    gs1: bool


class FlagKind(StrEnum):
    """What the two DIN flag characters mean (ST-001 Table 3, summarised)."""

    not_used = "not_used"  # 00
    container = "container"  # 01-04, 15-19: container 1-9 of a set
    repeat_label = "repeat_label"  # 05: second or later demand-printed label
    label_type = "label_type"  # 06-13: pilot tube, test tube, ...
    local = "local"  # 20-59: only the issuing facility may interpret them
    type3 = "type3"  # 60-96: 60 + MOD 37-2 of the 13-character DIN


_LABEL_TYPES: Final = {
    6: "pilot tube label",
    7: "test tube label",
    8: "donor record label",
    9: "NAT sample tube label",
    10: "bacterial testing sample label",
    11: "match-with-unit label",
    12: "affixed partial label",
    13: "attached label",
}


@dataclass(frozen=True, slots=True)
class Din:
    """A 13-character Donation Identification Number, with its flags when it came from a barcode.

    ``flags`` is None for a DIN typed by hand (flags are never keyed in).
    """

    din: str
    flags: str | None = None

    def __post_init__(self) -> None:
        _raise_value_error(_din_problem(self.din))
        if self.flags is not None:
            problem = _flags_problem(self.din, self.flags)
            _raise_value_error(problem[1] if problem else None)

    @property
    def fin(self) -> str:
        return self.din[:5]

    @property
    def year2(self) -> str:
        return self.din[5:7]

    @property
    def sequence(self) -> str:
        return self.din[7:]

    @property
    def check_character(self) -> str:
        """The keyboard check character K, printed in a box beside the eye-readable DIN."""
        return isbt_check_character(self.din)

    @property
    def flag_kind(self) -> FlagKind | None:
        return None if self.flags is None else _flag_kind(int(self.flags))

    @property
    def container_number(self) -> int | None:
        """Container 1-9 of a set, when the flags say so."""
        if self.flags is None or self.flag_kind is not FlagKind.container:
            return None
        number = int(self.flags)
        return number if number <= 4 else number - 10

    @property
    def flag_meaning(self) -> str | None:
        if self.flags is None:
            return None
        number = int(self.flags)
        kind = _flag_kind(number)
        if kind is None:
            return None
        if kind is FlagKind.label_type:
            return _LABEL_TYPES[number]
        if kind is FlagKind.container:
            return f"container {self.container_number} of a set"
        return {
            FlagKind.not_used: "no flag information",
            FlagKind.repeat_label: "repeated demand-printed label",
            FlagKind.local: "locally defined flag",
            FlagKind.type3: "Type 3 check flags",
        }[kind]


@dataclass(frozen=True, slots=True)
class ProductCode:
    """ISBT 128 product code ``αooootds`` (DS003). The PDC ``αoooo`` stays opaque (licensed)."""

    code: str

    def __post_init__(self) -> None:
        _raise_value_error(_product_problem(self.code))

    @property
    def family(self) -> str:
        """Product family letter; ``S`` is cellular therapy."""
        return self.code[0]

    @property
    def pdc(self) -> str:
        return self.code[:5]

    @property
    def collection_type(self) -> str:
        return self.code[5]

    @property
    def division(self) -> str:
        return self.code[6:]

    @property
    def autologous(self) -> bool:
        """Cellular therapy collected for autologous use (collection type 1, X or A)."""
        return self.family == "S" and self.collection_type in ("1", "X", "A")


IsbtDateKind: TypeAlias = Literal["expiration", "collection", "production"]


@dataclass(frozen=True, slots=True)
class IsbtDate:
    """ISBT 128 date (DS004-DS009), in the facility's local time, whose zone the code omits.

    ``time`` is None when the structure carries no time; ST-001 then means 23:59, which
    ``local_datetime`` applies (``default_time_applied`` says so).
    """

    TIME_BASIS: ClassVar[str] = "local facility time; the time zone is not encoded"

    ds: int
    kind: IsbtDateKind
    date: _dt.date
    time: _dt.time | None
    default_time_applied: bool

    @property
    def local_datetime(self) -> datetime:
        """Naive local date-time; pair it with the facility's zone before storing it as UTC."""
        return datetime.combine(self.date, self.time or _DEFAULT_ISBT_TIME)


FlexibleDateKind: TypeAlias = Literal[
    "expiration", "collection", "production", "cross_clamp", "preservation", "donor_death"
]


@dataclass(frozen=True, slots=True)
class FlexibleDate:
    """DS031 flexible date and time: aware UTC when ``time_basis`` is utc, else naive local."""

    kind: FlexibleDateKind
    value: datetime
    time_basis: TimeBasis


@dataclass(frozen=True, slots=True)
class ChainOfIdentity:
    """ISBT 128 Chain of Identity Identifier (DS040): ``CH`` + FIN + yy + 6 alphanumerics."""

    coi: str

    def __post_init__(self) -> None:
        _raise_value_error(_coi_problem(self.coi))

    @property
    def fin(self) -> str:
        return self.coi[2:7]

    @property
    def year2(self) -> str:
        return self.coi[7:9]

    @property
    def sequence(self) -> str:
        return self.coi[9:]

    def check_character(self, scope: CoiCheckScope = "full") -> str:
        return coi_check_character(self.coi, scope)


@dataclass(frozen=True, slots=True)
class IsbtOpaque:
    """An ISBT 128 structure we recognise but do not decode.

    ``ds`` is None for national or facility structures (``&a``-``&z``, ``&;``, ``&!``), whose
    length is not standardised: scanned alone, they take the rest of the payload.
    """

    ds: int | None
    di: str
    name: str
    data: str


@dataclass(frozen=True, slots=True)
class Retired:
    """A retired ISBT 128 structure skipped inside a compound message."""

    ds: int
    di: str
    data: str


IsbtValue: TypeAlias = Din | ProductCode | IsbtDate | FlexibleDate | ChainOfIdentity | IsbtOpaque


@dataclass(frozen=True, slots=True)
class Compound:
    """ISBT 128 compound message (DS023): ``count`` structures, in order, retired ones apart."""

    count: int
    order_code: str
    structures: tuple[IsbtValue, ...]
    retired: tuple[Retired, ...] = ()


@dataclass(frozen=True, slots=True)
class Gs1Message:
    """GS1 element strings in scan order, as (application identifier, raw value) pairs."""

    elements: tuple[tuple[str, str], ...]

    def get(self, ai: str) -> str | None:
        for key, value in self.elements:
            if key == ai:
                return value
        return None


class InternalKind(StrEnum):
    """Kinds of our own opaque identifiers; the value is the 3-letter code inside the id."""

    patient = "PAT"  # patient wristband token
    shipper = "SHP"  # cryoshipper (dewar)
    logger = "LOG"  # temperature data logger
    certificate = "CRT"  # release certificate
    courier_job = "JOB"
    location = "LOC"  # storage location
    device = "DEV"  # scanner or other device
    label = "LBL"  # one printed label instance


INTERNAL_ID_PREFIX: Final = "TRK"
INTERNAL_ID_ALPHABET: Final = "0123456789BCDEFGHJKNPRSTVX"
"""Body and check alphabet of internal ids (26 characters).

Left out: I, L, O, U (misread as 1, 1, 0, V); Y and Z (swapped by German QWERTZ layouts);
A, Q, W, M (moved by French AZERTY layouts). So every character types the same on US, UK and
German hosts; on an AZERTY host the digits turn into accented letters, which fails loudly.
"""
INTERNAL_ID_BODY_LENGTH: Final = 10
INTERNAL_ID_LENGTH: Final = len(INTERNAL_ID_PREFIX) + 3 + INTERNAL_ID_BODY_LENGTH + 1
_INTERNAL_SET: Final = frozenset(INTERNAL_ID_ALPHABET)
_KIND_BY_CODE: Final = {kind.value: kind for kind in InternalKind}


@dataclass(frozen=True, slots=True)
class InternalId:
    """``TRK`` + kind + 10 body characters + MOD 37-2 check character, 17 characters in all.

    The check character covers the 16 characters before it. Ids whose check character would
    fall outside ``INTERNAL_ID_ALPHABET`` (for example ``*`` or ``O``) are never issued.
    """

    kind: InternalKind
    body: str

    def __post_init__(self) -> None:
        _raise_value_error(_internal_body_problem(self.kind, self.body))

    @property
    def check_character(self) -> str:
        return isbt_check_character(f"{INTERNAL_ID_PREFIX}{self.kind.value}{self.body}")

    @property
    def value(self) -> str:
        return f"{INTERNAL_ID_PREFIX}{self.kind.value}{self.body}{self.check_character}"

    def __str__(self) -> str:
        return self.value


Identifier: TypeAlias = IsbtValue | Compound | Gs1Message | InternalId


@dataclass(frozen=True, slots=True)
class Parsed:
    """A successful parse. ``keyboard_check_verified``: a typed K was present and matched."""

    value: Identifier
    symbology: Symbology | None = None
    keyboard_check_verified: bool = False


@dataclass(frozen=True, slots=True)
class ParseError:
    """A refused payload: ``reason`` from ``PARSE_REASONS`` plus a message for people.

    ``suggestion`` holds what a damaged scan would have read (caps lock, keyboard layout) so a
    person can confirm it; it is never applied automatically.
    """

    reason: ParseReason
    message: str
    suggestion: str | None = None
    symbology: Symbology | None = None


ParseResult: TypeAlias = Parsed | ParseError


class _Reject(Exception):
    """Internal: unwinds a parse to ``parse()``, which turns it into a ParseError."""

    def __init__(self, reason: ParseReason, message: str) -> None:
        super().__init__(message)
        self.reason: ParseReason = reason
        self.message = message


def _raise_value_error(problem: str | None) -> None:
    if problem is not None:
        raise ValueError(problem)


# ---------------------------------------------------------------------------------------------
# Field validation shared by parsing, constructors and generators
# ---------------------------------------------------------------------------------------------

_DEFAULT_ISBT_TIME: Final = time(23, 59)


def _fin_problem(fin: str, what: str = "facility identification number") -> str | None:
    if len(fin) != 5:
        return f"the {what} must have 5 characters, got {len(fin)}"
    if fin[0] not in _DIN_ALPHA:
        return f"the {what} must start with A-N, P-Z or 1-9, not {fin[0]!r}"
    if fin[1] not in _FIN_MIDDLE or fin[2] not in _FIN_MIDDLE:
        return f"characters 2-3 of the {what} must be A-N, P-Z or 0-9, got {fin[1:3]!r}"
    if fin[3] not in _DIGITS or fin[4] not in _DIGITS:
        return f"characters 4-5 of the {what} must be digits, got {fin[3:5]!r}"
    return None


def _din_problem(din13: str) -> str | None:
    if len(din13) != 13:
        return f"a DIN has 13 characters, got {len(din13)}"
    fin_problem = _fin_problem(din13[:5], "DIN's facility number")
    if fin_problem:
        return fin_problem
    if any(ch not in _DIGITS for ch in din13[5:]):
        return f"the DIN's year and sequence number must be 8 digits, got {din13[5:]!r}"
    return None


def _coi_problem(coi15: str) -> str | None:
    if len(coi15) != 15:
        return f"a chain of identity identifier has 15 characters, got {len(coi15)}"
    if not coi15.startswith("CH"):
        return f"a chain of identity identifier starts with 'CH', not {coi15[:2]!r}"
    fin_problem = _fin_problem(coi15[2:7], "COI's facility number")
    if fin_problem:
        return fin_problem
    if any(ch not in _DIGITS for ch in coi15[7:9]):
        return f"the COI year must be 2 digits, got {coi15[7:9]!r}"
    if any(ch not in _UPPER_ALNUM for ch in coi15[9:]):
        return f"the COI sequence must be 6 characters A-Z or 0-9, got {coi15[9:]!r}"
    return None


def _product_problem(code: str) -> str | None:
    if len(code) != 8:
        return f"a product code has 8 characters, got {len(code)}"
    if code[0] not in _UPPER:
        return f"a product code starts with a family letter A-Z, not {code[0]!r}"
    if any(ch not in _UPPER_ALNUM for ch in code[1:5]):
        return f"product description code characters must be A-Z or 0-9, got {code[1:5]!r}"
    if code[5] not in _ALNUM:
        return f"the collection type must be a letter or digit, not {code[5]!r}"
    if code[6] not in _UPPER_ALNUM or (code[7] not in _LOWER and code[7] not in _DIGITS):
        return f"the division code must be [A-Z0-9][a-z0-9], got {code[6:]!r}"
    return None


def _flag_kind(number: int) -> FlagKind | None:
    if number == 0:
        return FlagKind.not_used
    if 1 <= number <= 4 or 15 <= number <= 19:
        return FlagKind.container
    if number == 5:
        return FlagKind.repeat_label
    if 6 <= number <= 13:
        return FlagKind.label_type
    if 20 <= number <= 59:
        return FlagKind.local
    if 60 <= number <= 96:
        return FlagKind.type3
    return None  # 14 and 97-99 are reserved


def _flags_problem(din13: str, flags: str) -> tuple[ParseReason, str] | None:
    if len(flags) != 2 or any(ch not in _DIGITS for ch in flags):
        return "bad_flags", f"DIN flags must be two digits, got {flags!r}"
    number = int(flags)
    kind = _flag_kind(number)
    if kind is None:
        return "bad_flags", f"DIN flag value {flags} is reserved and must not be used"
    if kind is FlagKind.type3 and number != 60 + mod37_2_value(din13):
        return "bad_check_character", (
            f"the Type 3 check flags {flags} do not match DIN {din13}: "
            "the DIN or its flags were misread or misprinted"
        )
    return None


def coi_check_character(coi15: str, scope: CoiCheckScope = "full") -> str:
    """Keyboard check character of a COI: over all 15 characters, or the 13 after ``CH``."""
    _raise_value_error(_coi_problem(coi15))
    return isbt_check_character(coi15 if scope == "full" else coi15[2:])


def _internal_body_problem(kind: InternalKind, body: str) -> str | None:
    if len(body) != INTERNAL_ID_BODY_LENGTH:
        return f"an internal id body has {INTERNAL_ID_BODY_LENGTH} characters, got {len(body)}"
    bad = [ch for ch in body if ch not in _INTERNAL_SET]
    if bad:
        return f"{bad[0]!r} is not in the internal id alphabet {INTERNAL_ID_ALPHABET}"
    check = isbt_check_character(f"{INTERNAL_ID_PREFIX}{kind.value}{body}")
    if check not in _INTERNAL_SET:
        return f"body {body!r} gives check character {check!r}, which is never issued"
    return None


# ---------------------------------------------------------------------------------------------
# Generators and formatting
# ---------------------------------------------------------------------------------------------


def type3_flags(din13: str) -> str:
    """Type 3 DIN flags: 60 + the MOD 37-2 check value of the 13-character DIN."""
    _raise_value_error(_din_problem(din13))
    return f"{60 + mod37_2_value(din13):02d}"


def make_din(fin: str, year2: int, seq: int, flags: str = "00") -> Din:
    """Build a DIN from facility number, nominal year (0-99) and sequence (0-999999)."""
    _raise_value_error(_fin_problem(fin))
    if not 0 <= year2 <= 99:
        raise ValueError(f"year2 must be 0-99, got {year2}")
    if not 0 <= seq <= 999_999:
        raise ValueError(f"sequence must be 0-999999, got {seq}")
    return Din(f"{fin}{year2:02d}{seq:06d}", flags)


def make_coi(fin: str, year2: int, seq: int | str) -> ChainOfIdentity:
    """Build a COI; ``seq`` is 6 characters A-Z/0-9, or a number zero-padded to 6 digits."""
    _raise_value_error(_fin_problem(fin))
    if not 0 <= year2 <= 99:
        raise ValueError(f"year2 must be 0-99, got {year2}")
    if isinstance(seq, int):
        if not 0 <= seq <= 999_999:
            raise ValueError(f"numeric sequence must be 0-999999, got {seq}")
        seq = f"{seq:06d}"
    return ChainOfIdentity(f"CH{fin}{year2:02d}{seq}")


def format_din_eye_readable(din13: str) -> tuple[str, str]:
    """Return the grouped eye-readable DIN (``G1234 17 654321``) and K, printed boxed apart."""
    _raise_value_error(_din_problem(din13))
    return f"{din13[:5]} {din13[5:7]} {din13[7:]}", isbt_check_character(din13)


def din_barcode_data(din13: str, flags: str) -> str:
    """Return the DS001 barcode data ``=`` + DIN + flags, refusing invalid flags."""
    Din(din13, flags)
    return f"={din13}{flags}"


def coi_eye_readable(coi15: str, *, scope: CoiCheckScope = "full") -> tuple[str, str]:
    """Return the grouped eye-readable COI (``CH G1234 25 A1B2C3``) and its K."""
    check = coi_check_character(coi15, scope)
    return f"{coi15[:2]} {coi15[2:7]} {coi15[7:9]} {coi15[9:]}", check


def coi_barcode_data(coi15: str) -> str:
    """Return the DS040 barcode data ``&/`` + COI (K is never encoded in the barcode)."""
    _raise_value_error(_coi_problem(coi15))
    return f"&/{coi15}"


def make_internal_id(kind: InternalKind | str, body: str) -> InternalId:
    """Build an internal id from a kind (enum or 3-letter code) and a 10-character body."""
    return InternalId(InternalKind(kind), body)


_MAX_DRAWS: Final = 64


def new_internal_id(
    kind: InternalKind | str, rand: Callable[[int], bytes] | random.Random
) -> InternalId:
    """Draw a new internal id; ``rand`` is ``secrets.token_bytes``-like or a ``random.Random``.

    Bodies whose check character is never issued are redrawn (about 30% of draws), so every
    body is equally likely among the issuable ones.
    """
    resolved = InternalKind(kind)
    for _ in range(_MAX_DRAWS):
        body = _draw_body(rand)
        check = isbt_check_character(f"{INTERNAL_ID_PREFIX}{resolved.value}{body}")
        if check in _INTERNAL_SET:
            return InternalId(resolved, body)
    raise RuntimeError("the randomness source keeps giving bodies that cannot be issued")


def _draw_body(rand: Callable[[int], bytes] | random.Random) -> str:
    size = len(INTERNAL_ID_ALPHABET)
    if isinstance(rand, random.Random):
        return "".join(rand.choice(INTERNAL_ID_ALPHABET) for _ in range(INTERNAL_ID_BODY_LENGTH))
    # Bytes at or above the largest multiple of 26 are dropped so that no character is favoured.
    limit = 256 - 256 % size
    chars: list[str] = []
    for _ in range(_MAX_DRAWS):
        for byte in rand(16):
            if byte < limit:
                chars.append(INTERNAL_ID_ALPHABET[byte % size])
                if len(chars) == INTERNAL_ID_BODY_LENGTH:
                    return "".join(chars)
    raise RuntimeError("the randomness source gave too few usable bytes")


# ---------------------------------------------------------------------------------------------
# ISBT 128 structures
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Structure:
    ds: int
    di: str
    name: str
    length: int | None  # None: computed from a count inside the data
    retired: bool = False


_STRUCTURE_LIST: Final = (
    _Structure(2, "=%", "blood groups (ABO and RhD)", 4),
    _Structure(3, "=<", "product code", 8),
    _Structure(4, "=>", "expiration date", 6),
    _Structure(5, "&>", "expiration date and time", 10),
    _Structure(6, "=*", "collection date", 6),
    _Structure(7, "&*", "collection date and time", 10),
    _Structure(8, "=}", "production date", 6),
    _Structure(9, "&}", "production date and time", 10),
    _Structure(10, "&(", "special testing: general", 5),
    _Structure(11, "={", "special testing: red cell antigens", 18, retired=True),
    _Structure(12, "=\\", "special testing: red cell antigens, general", 18),
    _Structure(13, "&\\", "special testing: red cell antigens, Finnish", 18),
    _Structure(14, "&{", "special testing: platelet HLA and platelet antigens", 18),
    _Structure(15, "=[", "special testing: HLA-A and -B alleles", 18, retired=True),
    _Structure(16, '="', "special testing: HLA-DRB1 alleles", 18, retired=True),
    _Structure(17, "=)", "container manufacturer and catalogue number", 10),
    _Structure(18, "&)", "container lot number", 10),
    _Structure(19, "=;", "donor identification number", 21),
    _Structure(20, "='", "staff member identification number", 11),
    _Structure(21, "=-", "manufacturer and catalogue number of other items", 10),
    _Structure(22, "&-", "lot number of other items", 10),
    _Structure(23, "=+", "compound message", 5),
    _Structure(24, "=#", "patient date of birth", 10),
    _Structure(25, "&#", "patient identification number", None),
    _Structure(26, "=]", "expiration month and year", 6),
    _Structure(27, '&"', "infectious markers", 18),
    _Structure(28, "=$", "product consignment", 16),
    _Structure(29, "&$", "dimensions", None),
    _Structure(30, "&%", "red cell antigens with test history", None),
    _Structure(31, "=(", "flexible date and time", 16),
    _Structure(32, "=,", "product divisions", 6),
    _Structure(33, "&+", "processing facility information code", 11),
    _Structure(34, "=/", "processor product identification code", 16),
    _Structure(35, "&,1", "MPHO lot number", 18),
    _Structure(36, "&,2", "MPHO supplemental identification number", 18),
    _Structure(37, "&,3", "global registration identifier for donors (old)", 19, retired=True),
    _Structure(38, "&,4", "single European code", 40),
    _Structure(39, "&:", "global registration identifier for donors", 19),
    _Structure(40, "&/", "chain of identity identifier", 15),
)
_STRUCTURES: Final = {s.di: s for s in _STRUCTURE_LIST}

_DATE_KINDS: Final[Mapping[int, IsbtDateKind]] = {
    4: "expiration",
    5: "expiration",
    6: "collection",
    7: "collection",
    8: "production",
    9: "production",
}
_FLEX_KINDS: Final[Mapping[str, FlexibleDateKind]] = {
    "01": "expiration",
    "02": "collection",
    "03": "production",
    "04": "cross_clamp",
    "05": "preservation",
    "06": "donor_death",
}


@dataclass(frozen=True, slots=True)
class _CompoundHeader:
    count: int
    order_code: str


def _digits_or_reject(data: str, what: str) -> None:
    if any(ch not in _DIGITS for ch in data):
        raise _Reject("malformed", f"the {what} must be digits only, got {data!r}")


def _variable_length(ds: int, text: str, start: int) -> int:
    """Data length of DS025/029/030, read from the count at the start of their data."""
    if ds == 25:  # aa (location) + ll (length) + ll characters
        head = text[start : start + 4]
        if len(head) < 4:
            raise _Reject("malformed", "patient identification number (DS025) is cut short")
        _digits_or_reject(head[2:], "patient identification length")
        return 4 + int(head[2:])
    width, segment = (2, 14) if ds == 29 else (3, 10)
    head = text[start : start + width]
    if len(head) < width:
        raise _Reject("malformed", f"data structure {ds:03d} is cut short")
    _digits_or_reject(head, f"segment count of data structure {ds:03d}")
    return width + segment * int(head)


def _read_structure(
    text: str, pos: int, *, in_compound: bool
) -> tuple[IsbtValue | Retired | _CompoundHeader, int]:
    """Read one ISBT 128 structure starting at ``pos``; return it and the position after it."""
    rest = text[pos:]
    if rest[0] not in "=&":
        raise _Reject(
            "malformed",
            f"expected an ISBT 128 data identifier ('=' or '&') at position {pos + 1}, "
            f"found {rest[0]!r}",
        )
    if len(rest) < 2:
        raise _Reject("malformed", "the ISBT 128 data identifier is cut short")
    second = rest[1]
    if rest[0] == "=" and second in _DIN_ALPHA:
        content = rest[1:16]
        if len(content) < 15:
            raise _Reject(
                "malformed",
                f"a DIN barcode needs 13 characters and 2 flags after '=', got {len(content)} "
                "(a DIN typed with its check character goes through manual entry)",
            )
        return _decode_din(content), pos + 16
    if rest[0] == "&" and (second in _LOWER or second in ";!"):
        if in_compound:
            raise _Reject(
                "not_allowed_in_compound",
                f"national or facility structure {rest[:2]!r} is not allowed in a compound message",
            )
        if len(rest) < 3 or any(not "!" <= ch <= "~" for ch in rest[2:]):
            raise _Reject("malformed", f"national structure {rest[:2]!r} has no usable data")
        national = IsbtOpaque(None, rest[:2], "national or facility defined structure", rest[2:])
        return national, len(text)
    di = rest[:3] if rest.startswith("&,") else rest[:2]
    spec = _STRUCTURES.get(di)
    if spec is None:
        hint = (
            " (a DIN never starts with the letter O or the digit 0)" if di in ("=O", "=0") else ""
        )
        raise _Reject("unknown_code", f"{di!r} is not an ISBT 128 data identifier we know{hint}")
    start = pos + len(di)
    length = spec.length if spec.length is not None else _variable_length(spec.ds, text, start)
    data = text[start : start + length]
    if len(data) < length:
        raise _Reject(
            "malformed",
            f"{spec.name} ({di}) needs {length} characters after its identifier, got {len(data)}",
        )
    end = start + length
    if spec.ds == 23:
        if in_compound:
            raise _Reject("not_allowed_in_compound", "a compound message cannot contain another")
        _digits_or_reject(data, "compound message header")
        if data[:2] == "00":
            raise _Reject("malformed", "a compound message must announce at least 1 structure")
        return _CompoundHeader(int(data[:2]), data[2:]), end
    if spec.retired:
        return Retired(spec.ds, di, data), end
    return _decode_structure(spec, data), end


def _decode_structure(spec: _Structure, data: str) -> IsbtValue:
    if spec.ds == 3:
        problem = _product_problem(data)
        if problem:
            raise _Reject("malformed", problem)
        return ProductCode(data)
    if spec.ds in _DATE_KINDS:
        return _decode_isbt_date(spec.ds, data)
    if spec.ds == 31:
        return _decode_flexible_date(data)
    if spec.ds == 40:
        problem = _coi_problem(data)
        if problem:
            raise _Reject("malformed", problem)
        return ChainOfIdentity(data)
    if any(not "!" <= ch <= "~" for ch in data):
        raise _Reject("malformed", f"{spec.name} ({spec.di}) contains non-printable characters")
    return IsbtOpaque(spec.ds, spec.di, spec.name, data)


def _decode_din(content: str) -> Din:
    din13, flags = content[:13], content[13:]
    problem = _din_problem(din13)
    if problem:
        raise _Reject("malformed", problem)
    flag_problem = _flags_problem(din13, flags)
    if flag_problem:
        raise _Reject(*flag_problem)
    return Din(din13, flags)


def _decode_isbt_date(ds: int, data: str) -> IsbtDate:
    _digits_or_reject(data, "date")
    if data[0] != "0":
        raise _Reject("bad_date", f"century digit {data[0]} is not in use (only 0, for 2000-2099)")
    year = 2000 + int(data[1:3])
    day_of_year = int(data[3:6])
    if not 1 <= day_of_year <= (366 if calendar.isleap(year) else 365):
        raise _Reject("bad_date", f"{year} has no day number {day_of_year}")
    at: time | None = None
    if len(data) == 10:
        hour, minute = int(data[6:8]), int(data[8:10])
        if hour > 23 or minute > 59:
            raise _Reject("bad_date", f"{data[6:8]}:{data[8:10]} is not a time of day")
        at = time(hour, minute)
    day = date(year, 1, 1) + timedelta(days=day_of_year - 1)
    return IsbtDate(ds, _DATE_KINDS[ds], day, at, default_time_applied=at is None)


def _decode_flexible_date(data: str) -> FlexibleDate:
    _digits_or_reject(data, "flexible date")
    zone, reserved, code = data[0], data[1], data[2:4]
    if zone not in "12":
        raise _Reject("malformed", f"flexible date time zone must be 1 (local) or 2 (UTC): {zone}")
    if reserved != "0":
        raise _Reject("malformed", f"flexible date reserved digit must be 0, got {reserved}")
    kind = _FLEX_KINDS.get(code)
    if kind is None:
        raise _Reject("malformed", f"flexible date type {code} is not one of 01-06")
    year, month, day = int(data[4:8]), int(data[8:10]), int(data[10:12])
    hour, minute = int(data[12:14]), int(data[14:16])
    if year < 1 or not 1 <= month <= 12 or not 1 <= day <= _days_in_month(year, month):
        raise _Reject("bad_date", f"{data[4:8]}-{data[8:10]}-{data[10:12]} is not a date")
    if hour > 23 or minute > 59:
        raise _Reject("bad_date", f"{data[12:14]}:{data[14:16]} is not a time of day")
    if zone == "2":
        return FlexibleDate(kind, datetime(year, month, day, hour, minute, tzinfo=UTC), "utc")
    local = datetime.combine(date(year, month, day), time(hour, minute))
    return FlexibleDate(kind, local, "local")


def _days_in_month(year: int, month: int) -> int:
    return calendar.monthrange(year, month)[1]


def _parse_isbt(text: str, scope: CoiCheckScope) -> tuple[Identifier, bool]:
    if text.startswith("&/") and len(text) == 18:
        return _coi_with_check(text[2:], scope), True
    item, end = _read_structure(text, 0, in_compound=False)
    if isinstance(item, Retired):
        raise _Reject(
            "retired_structure",
            f"data structure {item.ds:03d} ({item.di}) is retired in ISBT 128; scan another code",
        )
    if isinstance(item, _CompoundHeader):
        return _parse_compound(text, end, item), False
    if end != len(text):
        raise _Reject(
            "malformed", f"{len(text) - end} unexpected characters follow the ISBT 128 structure"
        )
    return item, False


def _parse_compound(text: str, pos: int, header: _CompoundHeader) -> Compound:
    structures: list[IsbtValue] = []
    retired: list[Retired] = []
    while pos < len(text):
        item, pos = _read_structure(text, pos, in_compound=True)
        if isinstance(item, Retired):
            retired.append(item)
        elif not isinstance(item, _CompoundHeader):
            structures.append(item)
    found = len(structures) + len(retired)
    if found != header.count:
        raise _Reject(
            "compound_count_mismatch",
            f"the compound message announces {header.count} structures but "
            f"{found} {'follows' if found == 1 else 'follow'}; none of its data may be used",
        )
    return Compound(header.count, header.order_code, tuple(structures), tuple(retired))


def _coi_with_check(value: str, scope: CoiCheckScope) -> ChainOfIdentity:
    coi15, check = value[:15], value[15:]
    problem = _coi_problem(coi15)
    if problem:
        raise _Reject("malformed", problem)
    if len(check) != 1 or check not in MOD37_ALPHABET:
        raise _Reject("malformed", f"{check!r} cannot be a check character (0-9, A-Z or *)")
    if coi_check_character(coi15, scope) != check:
        raise _Reject(
            "bad_check_character",
            "the COI check character does not match the 15 characters; re-read the label",
        )
    return ChainOfIdentity(coi15)


# ---------------------------------------------------------------------------------------------
# GS1 element strings
# ---------------------------------------------------------------------------------------------

GS: Final = "\x1d"
"""ASCII group separator, how scanners transmit FNC1 between GS1 element strings."""

_CSET82: Final = frozenset(
    "!\"%&'()*+,-./0123456789:;<=>?ABCDEFGHIJKLMNOPQRSTUVWXYZ_abcdefghijklmnopqrstuvwxyz"
)


@dataclass(frozen=True, slots=True)
class _Ai:
    title: str
    fixed: int | None  # exact length, read without needing a separator after it
    max_length: int
    predefined: bool  # in GS1's predefined-length table: never followed by FNC1
    validate: Callable[[str, str], None]


def _check_numeric(ai: str, value: str) -> None:
    if any(ch not in _DIGITS for ch in value):
        raise _Reject("malformed", f"GS1 ({ai}) must be digits only, got {value!r}")


def _check_mod10(ai: str, value: str) -> None:
    _check_numeric(ai, value)
    if gs1_check_digit(value[:-1]) != value[-1]:
        raise _Reject("bad_check_digit", f"the check digit of GS1 ({ai}) {value} does not match")


def _check_cset82(ai: str, value: str) -> None:
    bad = [ch for ch in value if ch not in _CSET82]
    if bad:
        raise _Reject("malformed", f"GS1 ({ai}) contains {bad[0]!r}, not allowed in GS1 data")


def _check_yymmd0(ai: str, value: str) -> None:
    _check_numeric(ai, value)
    _gs1_date_or_reject(ai, value, allow_day_zero=True)


def _check_yymmddhhmm(ai: str, value: str) -> None:
    _check_numeric(ai, value)
    _gs1_date_or_reject(ai, value[:6], allow_day_zero=False)
    if int(value[6:8]) > 23 or int(value[8:10]) > 59:
        raise _Reject("bad_date", f"GS1 ({ai}) time {value[6:8]}:{value[8:10]} is not valid")


def _gs1_date_or_reject(ai: str, yymmdd: str, *, allow_day_zero: bool) -> None:
    # Leap years are judged as 20YY; 19YY and 21YY agree except for YY = 00.
    year, month, day = 2000 + int(yymmdd[:2]), int(yymmdd[2:4]), int(yymmdd[4:6])
    lowest = 0 if allow_day_zero else 1
    if not 1 <= month <= 12 or not lowest <= day <= _days_in_month(year, month):
        raise _Reject("bad_date", f"GS1 ({ai}) date {yymmdd} is not a real date")


def _check_temperature(ai: str, value: str) -> None:
    if re.fullmatch(r"[0-9]{6}-?", value) is None:
        raise _Reject("malformed", f"GS1 ({ai}) temperature must be 6 digits and an optional '-'")


def _check_grai(ai: str, value: str) -> None:
    if len(value) < 14:
        raise _Reject("malformed", f"GS1 ({ai}) needs at least 14 digits, got {len(value)}")
    head, serial = value[:14], value[14:]
    _check_numeric(ai, head)
    if head[0] != "0":
        raise _Reject("malformed", f"GS1 ({ai}) must start with 0, got {head[0]}")
    _check_mod10(ai, head)
    _check_cset82(ai, serial)


_GS1_AI_TABLE: Final = (
    ("00", _Ai("SSCC", 18, 18, True, _check_mod10)),
    ("01", _Ai("GTIN", 14, 14, True, _check_mod10)),
    ("10", _Ai("batch or lot", None, 20, False, _check_cset82)),
    ("11", _Ai("production date", 6, 6, True, _check_yymmd0)),
    ("15", _Ai("best before date", 6, 6, True, _check_yymmd0)),
    ("17", _Ai("expiration date", 6, 6, True, _check_yymmd0)),
    ("21", _Ai("serial number", None, 20, False, _check_cset82)),
    ("410", _Ai("ship-to GLN", 13, 13, True, _check_mod10)),
    ("413", _Ai("ship-for GLN", 13, 13, True, _check_mod10)),
    ("414", _Ai("location GLN", 13, 13, True, _check_mod10)),
    ("417", _Ai("party GLN", 13, 13, True, _check_mod10)),
    ("4330", _Ai("maximum temperature, Fahrenheit", None, 7, False, _check_temperature)),
    ("4331", _Ai("maximum temperature, Celsius", None, 7, False, _check_temperature)),
    ("4332", _Ai("minimum temperature, Fahrenheit", None, 7, False, _check_temperature)),
    ("4333", _Ai("minimum temperature, Celsius", None, 7, False, _check_temperature)),
    ("7003", _Ai("expiration date and time", 10, 10, False, _check_yymmddhhmm)),
    ("7240", _Ai("clinical trial protocol", None, 20, False, _check_cset82)),
    ("8003", _Ai("GRAI (returnable asset)", None, 30, False, _check_grai)),
    ("8017", _Ai("GSRN of a service provider", 18, 18, False, _check_mod10)),
    ("8018", _Ai("GSRN of a service recipient", 18, 18, False, _check_mod10)),
    ("8019", _Ai("service relation instance number", None, 10, False, _check_numeric)),
)
_GS1_AIS: Final = dict(_GS1_AI_TABLE)
GS1_AIS: Final = {ai: spec.title for ai, spec in _GS1_AI_TABLE}
"""Supported GS1 application identifiers and their titles; others give ``unknown_ai``."""


def _match_ai(data: str, pos: int) -> str:
    for size in (2, 3, 4):
        candidate = data[pos : pos + size]
        if candidate in _GS1_AIS:
            return candidate
    head = data[pos : pos + 4]
    if len(head) < 2 or any(ch not in _DIGITS for ch in head[:2]):
        raise _Reject(
            "malformed", f"expected a GS1 application identifier at position {pos + 1}: {head!r}"
        )
    raise _Reject("unknown_ai", f"GS1 application identifier starting {head!r} is not supported")


def _validate_element(ai: str, value: str) -> None:
    spec = _GS1_AIS[ai]
    if not value:
        raise _Reject("malformed", f"GS1 ({ai}) has no data")
    if spec.fixed is not None and len(value) != spec.fixed:
        raise _Reject(
            "malformed", f"GS1 ({ai}) {spec.title} needs {spec.fixed} characters, got {len(value)}"
        )
    if len(value) > spec.max_length:
        raise _Reject(
            "malformed",
            f"GS1 ({ai}) {spec.title} is longer than {spec.max_length} characters; "
            "is a separator (FNC1) missing?",
        )
    spec.validate(ai, value)


def _collect(elements: Iterable[tuple[str, str]]) -> Gs1Message:
    seen: dict[str, str] = {}
    ordered: list[tuple[str, str]] = []
    for ai, value in elements:
        if ai in seen:
            if seen[ai] != value:
                raise _Reject("malformed", f"GS1 ({ai}) appears twice with different values")
            continue
        seen[ai] = value
        ordered.append((ai, value))
    return Gs1Message(tuple(ordered))


def _parse_gs1_elements(data: str) -> Gs1Message:
    elements: list[tuple[str, str]] = []
    pos = 0
    while pos < len(data):
        if data[pos] == GS:
            raise _Reject("malformed", f"empty GS1 element at position {pos + 1}")
        ai = _match_ai(data, pos)
        spec = _GS1_AIS[ai]
        pos += len(ai)
        if spec.fixed is not None:
            value = data[pos : pos + spec.fixed]
            if len(value) < spec.fixed or GS in value:
                shown = value.split(GS)[0]
                raise _Reject(
                    "malformed",
                    f"GS1 ({ai}) {spec.title} needs {spec.fixed} characters, got {len(shown)}",
                )
            pos += spec.fixed
            # Tolerate a separator after a fixed-length element: some printers add one.
            if data[pos : pos + 1] == GS:
                pos += 1
        else:
            end = data.find(GS, pos)
            end = len(data) if end == -1 else end
            value = data[pos:end]
            pos = end + 1 if end < len(data) else end
        _validate_element(ai, value)
        elements.append((ai, value))
    return _collect(elements)


_BRACKETED_AI: Final = re.compile(r"(?<!\\)\(([0-9]{2,4})\)")


def _parse_gs1_bracketed(text: str) -> Gs1Message:
    matches = list(_BRACKETED_AI.finditer(text))
    if not matches or matches[0].start() != 0:
        raise _Reject("malformed", "bracketed GS1 text must start with '(' and an AI")
    elements: list[tuple[str, str]] = []
    for index, match in enumerate(matches):
        ai = match.group(1)
        if ai not in _GS1_AIS:
            raise _Reject("unknown_ai", f"GS1 application identifier ({ai}) is not supported")
        stop = matches[index + 1].start() if index + 1 < len(matches) else len(text)
        value = text[match.end() : stop].replace("\\(", "(")
        _validate_element(ai, value)
        elements.append((ai, value))
    return _collect(elements)


def _parse_gs1(text: str, gs_substitute: str | None) -> Gs1Message:
    if gs_substitute:
        text = text.replace(gs_substitute, GS)
    text = text.lstrip(GS)  # a leading FNC1 is the GS1 marker itself, not a separator
    if not text:
        raise _Reject("empty", "the GS1 barcode holds no data")
    if text.startswith("("):
        return _parse_gs1_bracketed(text)
    return _parse_gs1_elements(text)


def gs1_element_string(elements: Iterable[tuple[str, str]], *, separator: str = GS) -> str:
    """Encode (AI, value) pairs as scanner data, with FNC1 after every variable-length field."""
    items = list(elements)
    parts: list[str] = []
    for index, (ai, value) in enumerate(items):
        spec = _require_element(ai, value)
        parts.append(ai + value)
        if not spec.predefined and index < len(items) - 1:
            parts.append(separator)
    return "".join(parts)


def gs1_bracketed(elements: Iterable[tuple[str, str]]) -> str:
    """Encode (AI, value) pairs in the human form ``(01)...(17)...``, escaping ``(`` as ``\\(``."""
    parts: list[str] = []
    for ai, value in elements:
        _require_element(ai, value)
        escaped = value.replace("(", "\\(")
        parts.append(f"({ai}){escaped}")
    return "".join(parts)


def _require_element(ai: str, value: str) -> _Ai:
    if ai not in _GS1_AIS:
        raise ValueError(f"GS1 application identifier ({ai}) is not supported")
    try:
        _validate_element(ai, value)
    except _Reject as reject:
        raise ValueError(reject.message) from None
    return _GS1_AIS[ai]


def gs1_date(yymmdd: str, *, reference_year: int) -> date:
    """Resolve a GS1 YYMMDD date with the GS1 century window around ``reference_year``.

    Day 00 means the last day of the month. The caller supplies the year (we never read the
    clock): two-digit years 51 or more ahead belong to the previous century, 50 or more behind
    to the next.
    """
    if len(yymmdd) != 6 or any(ch not in _DIGITS for ch in yymmdd):
        raise ValueError(f"a GS1 date is 6 digits YYMMDD, got {yymmdd!r}")
    yy, month, day = int(yymmdd[:2]), int(yymmdd[2:4]), int(yymmdd[4:])
    century = reference_year // 100 * 100
    difference = yy - reference_year % 100
    if difference >= 51:
        century -= 100
    elif difference <= -50:
        century += 100
    year = century + yy
    if not 1 <= month <= 12:
        raise ValueError(f"month {month:02d} does not exist")
    if day == 0:
        day = _days_in_month(year, month)
    return date(year, month, day)


# ---------------------------------------------------------------------------------------------
# Internal identifiers
# ---------------------------------------------------------------------------------------------


def _parse_internal(text: str) -> InternalId:
    if len(text) != INTERNAL_ID_LENGTH:
        raise _Reject(
            "malformed", f"a tracker id has {INTERNAL_ID_LENGTH} characters, got {len(text)}"
        )
    kind = _KIND_BY_CODE.get(text[3:6])
    if kind is None:
        raise _Reject("unknown_code", f"{text[3:6]!r} is not a tracker id kind")
    body, check = text[6:16], text[16]
    for offset, ch in enumerate(text[6:], start=7):
        if ch not in _INTERNAL_SET:
            raise _Reject(
                "malformed",
                f"{ch!r} at position {offset} is not used in tracker ids "
                f"(allowed: {INTERNAL_ID_ALPHABET})",
            )
    if isbt_check_character(text[:16]) != check:
        raise _Reject("bad_check_character", "the tracker id check character does not match")
    return InternalId(kind, body)


# ---------------------------------------------------------------------------------------------
# Keyboard-wedge damage
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, eq=False)
class KeyboardMismatch:
    """A scanner typing for one keyboard layout into a computer set to another.

    ``typed_as`` maps each character the scanner meant to what the host shows, worked out
    from the physical key the scanner presses; only characters that differ and matter for
    our identifiers are listed. ``composed`` lists dead-key results: on Windows a dead accent
    followed by a vowel merges into one accented letter, otherwise both characters appear.
    Characters in ``unreliable`` cannot be told apart on the host (AltGr characters, keys that
    collide), so they are not modelled.
    """

    name: str
    description: str
    typed_as: Mapping[str, str]
    composed: Mapping[str, str] = field(default_factory=dict)
    unreliable: str = ""  # dropped or ambiguous on this host: never used as evidence

    def damage(self, text: str) -> str:
        """What the host shows when the scanner sends ``text`` (a model, used in tests)."""
        out = "".join(self.typed_as.get(ch, ch) for ch in text)
        for merged, pair in self.composed.items():
            out = out.replace(pair, merged)
        return out

    def expand(self, text: str) -> str:
        """Split dead-key compositions back into accent + letter."""
        return "".join(self.composed.get(ch, ch) for ch in text)

    def restore(self, text: str) -> str:
        """Undo the mismatch: what the scanner meant when the host shows ``text``."""
        back = {shown: meant for meant, shown in self.typed_as.items()}
        return "".join(back.get(ch, ch) for ch in self.expand(text))


_DE_DEAD_KEYS: Final = {
    "Á": "´A",
    "É": "´E",
    "Í": "´I",
    "Ó": "´O",
    "Ú": "´U",
    "Ý": "´Y",
    "À": "`A",
    "È": "`E",
    "Ì": "`I",
    "Ò": "`O",
    "Ù": "`U",
}

# Key names below follow ISO 9995 positions: AE = digit row, AD = Q row, AC = A row,
# AB = Z row; LSGT is the extra key left of Z on ISO keyboards.
KEYBOARD_MISMATCHES: Final = (
    KeyboardMismatch(
        "us_scanner_de_host",
        "scanner sends US keystrokes, the computer uses the German (QWERTZ) layout",
        {
            "=": "´",  # AE12: German dead acute accent
            "+": "`",  # shift AE12: German dead grave accent
            "&": "/",  # shift 7
            "*": "(",  # shift 8
            "(": ")",  # shift 9
            ")": "=",  # shift 0
            "/": "-",  # AB10
            "-": "ß",  # AE11
            "<": ";",  # shift AB08 (comma key)
            ">": ":",  # shift AB09 (period key)
            ";": "ö",  # AC10
            ":": "Ö",  # shift AC10
            "'": "ä",  # AC11
            '"': "Ä",  # shift AC11
            "[": "ü",  # AD11
            "{": "Ü",  # shift AD11
            "]": "+",  # AD12, so AIM prefixes arrive as '+C1'
            "}": "*",  # shift AD12
            "\\": "#",  # backslash key
            "#": "§",  # shift 3
            "Y": "Z",  # QWERTZ swaps the Y and Z keys
            "Z": "Y",
            "y": "z",
            "z": "y",
        },
        _DE_DEAD_KEYS,
    ),
    KeyboardMismatch(
        "us_scanner_fr_host",
        "scanner sends US keystrokes, the computer uses the French (AZERTY) layout",
        {
            # AZERTY digits need shift; unshifted the digit keys give these characters.
            "1": "&",
            "2": "é",
            "3": '"',
            "4": "'",
            "5": "(",
            "6": "-",
            "7": "è",
            "8": "_",
            "9": "ç",
            "0": "à",
            # Shifted digit keys give the digits themselves.
            "!": "1",
            "@": "2",
            "#": "3",
            "$": "4",
            "%": "5",
            "&": "7",
            "*": "8",
            "(": "9",
            ")": "0",
            "-": ")",  # AE11
            "<": ".",  # shift AB08
            ">": "/",  # shift AB09
            "/": "!",  # AB10
            ",": ";",  # AB08
            ".": ":",  # AB09
            ";": "m",  # AC10
            ":": "M",  # shift AC10
            "'": "ù",  # AC11
            '"': "%",  # shift AC11
            "]": "$",  # AD12
            "}": "£",  # shift AD12
            "\\": "*",  # backslash key
            "A": "Q",  # AZERTY swaps A/Q and W/Z and moves M
            "Q": "A",
            "W": "Z",
            "Z": "W",
            "M": "?",
            "a": "q",
            "q": "a",
            "w": "z",
            "z": "w",
            "m": ",",
        },
        unreliable="{[",  # dead diaeresis and circumflex keys on AZERTY
    ),
    KeyboardMismatch(
        "us_scanner_uk_host",
        "scanner sends US keystrokes, the computer uses the UK layout",
        # Every ISBT data identifier character types the same; only these differ.
        {'"': "@", "@": '"', "#": "£", "\\": "#", "|": "~", "~": "¬"},
    ),
    KeyboardMismatch(
        "de_scanner_us_host",
        "scanner sends German keystrokes, the computer uses the US layout",
        {
            "=": ")",  # German shift 0
            "&": "^",  # German shift 6
            "/": "&",  # German shift 7
            "(": "*",  # German shift 8
            ")": "(",  # German shift 9
            "+": "]",  # German AD12
            "*": "}",  # German shift AD12
            "-": "/",  # German AB10
            ";": "<",  # German shift AB08
            ":": ">",  # German shift AB09
            "<": "\\",  # German LSGT; US layouts give a backslash there
            ">": "|",  # shift LSGT
            '"': "@",  # German shift 2
            "Y": "Z",
            "Z": "Y",
            "y": "z",
            "z": "y",
        },
        # AltGr characters are lost on a US host; ' and # share one key there with < and >.
        unreliable="{}[]\\@~|'#",
    ),
)


def _changes_punctuation(shown: str, restored: str) -> bool:
    """Restoration changed a non-alphanumeric character, not merely swapped letters."""
    return any(a != b and a not in _ALNUM for a, b in zip(shown, restored, strict=True))


def _legit_prefix(prefix: str) -> bool:
    """Whether a payload could start with ``prefix`` without any keyboard damage."""
    if prefix[0] in "=&":
        if len(prefix) == 1:
            return True
        if prefix[0] == "=" and prefix[1] in _DIN_ALPHA:
            return True
        if prefix[0] == "&" and (prefix[1] in _LOWER or prefix[1] in ";!"):
            return True
        return any(di.startswith(prefix) or prefix.startswith(di) for di in _STRUCTURES)
    if all(ch in _DIGITS for ch in prefix):
        return True
    return prefix[0] in "(]" or INTERNAL_ID_PREFIX.startswith(prefix[:3])


def _damaged_prefixes() -> tuple[tuple[str, str, KeyboardMismatch], ...]:
    """How each data identifier's first characters look after each mismatch (longest first)."""
    found: list[tuple[str, str, KeyboardMismatch]] = []
    for layout in KEYBOARD_MISMATCHES:
        for meant in (*_STRUCTURES, "=", "&", "]"):
            if any(ch in layout.unreliable for ch in meant):
                continue
            shown = "".join(layout.typed_as.get(ch, ch) for ch in meant)
            if _changes_punctuation(shown, meant) and not _legit_prefix(shown):
                found.append((shown, meant, layout))
    return tuple(sorted(found, key=lambda item: -len(item[0])))


_DAMAGED_PREFIXES: Final = _damaged_prefixes()


_SWAP_CASE: Final = str.maketrans(
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz",
    "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ",
)


def _swap_ascii_case(text: str) -> str:
    return text.translate(_SWAP_CASE)


def _has_ascii_lower(text: str) -> bool:
    return any(ch in _LOWER for ch in text)


def _diagnose_keyboard(
    text: str, original: ParseError, reparse: Callable[[str], ParseResult]
) -> ParseError:
    """Explain a failed payload as caps lock or a layout mismatch when the evidence is clear."""
    if original.reason in ("empty", "caps_lock", "keyboard_layout"):
        return original
    swapped = _swap_ascii_case(text)
    if _has_ascii_lower(text):
        again = reparse(swapped)
        if isinstance(again, Parsed):
            return ParseError(
                "caps_lock",
                f"the scan arrived in inverted letter case; with Caps Lock off it reads "
                f"{swapped!r}. Turn Caps Lock off and scan again.",
                suggestion=swapped,
                symbology=again.symbology,
            )
    for layout in KEYBOARD_MISMATCHES:
        expanded = layout.expand(text)
        restored = layout.restore(text)
        if restored != expanded and _changes_punctuation(expanded, restored):
            again = reparse(restored)
            if isinstance(again, Parsed):
                return ParseError(
                    "keyboard_layout",
                    f"keyboard layout mismatch ({layout.description}); the scanner sent "
                    f"{restored!r}. Fix the scanner or computer layout and scan again.",
                    suggestion=restored,
                    symbology=again.symbology,
                )
    if original.reason in ("unknown_code", "malformed"):
        for shown, meant, layout in _DAMAGED_PREFIXES:
            if layout.expand(text).startswith(shown):
                return ParseError(
                    "keyboard_layout",
                    f"the scan starts with {shown!r}, which is how {meant!r} looks when "
                    f"{layout.description}. Fix the layout and scan again.",
                )
    if original.reason == "unknown_code" and _has_ascii_lower(text):
        again = reparse(swapped)
        if isinstance(again, ParseError) and again.reason != "unknown_code":
            return ParseError(
                "caps_lock",
                f"the scan arrived in inverted letter case (is Caps Lock on?); even read as "
                f"{swapped!r} it fails: {again.message}",
            )
    return original


# ---------------------------------------------------------------------------------------------
# Entry points
# ---------------------------------------------------------------------------------------------

MAX_INPUT_LENGTH: Final = 1024

_SYMBOLOGIES: Final = {
    s.code: s
    for s in (
        Symbology("]C0", "Code 128", gs1=False),
        Symbology("]C1", "GS1-128", gs1=True),
        Symbology("]d1", "Data Matrix", gs1=False),
        Symbology("]d2", "GS1 DataMatrix", gs1=True),
        Symbology("]Q1", "QR Code", gs1=False),
        Symbology("]Q3", "GS1 QR Code", gs1=True),
        Symbology("]e0", "GS1 DataBar", gs1=True),
        Symbology("]E0", "EAN/UPC", gs1=False),
    )
}


def _clean(raw: str) -> str:
    """Drop control characters except GS, then surrounding whitespace (Enter/Tab terminators)."""
    kept = "".join(ch for ch in raw if ch == GS or unicodedata.category(ch) != "Cc")
    start, end = 0, len(kept)
    # str.strip() would also remove GS, which Python counts as whitespace.
    while start < end and kept[start] != GS and kept[start].isspace():
        start += 1
    while end > start and kept[end - 1] != GS and kept[end - 1].isspace():
        end -= 1
    return kept[start:end]


def _checked_substitute(gs_substitute: str | None) -> str | None:
    if gs_substitute is None:
        return None
    if not gs_substitute or any(ch in _CSET82 for ch in gs_substitute):
        raise ValueError(
            "gs_substitute must be non-empty and use characters that never occur in GS1 data "
            f"(for example '|', '~', '^' or '#'), got {gs_substitute!r}"
        )
    return gs_substitute


def _dispatch(
    body: str, symbology: Symbology | None, gs_substitute: str | None, scope: CoiCheckScope
) -> tuple[Identifier, bool]:
    if symbology is not None and symbology.gs1:
        return _parse_gs1(body, gs_substitute), False
    if symbology is not None and symbology.code == "]E0":
        raise _Reject("unknown_code", "retail EAN/UPC barcodes carry no tracker identifiers")
    first = body[0]
    if first in "=&":
        return _parse_isbt(body, scope)
    if body.startswith(INTERNAL_ID_PREFIX):
        return _parse_internal(body), False
    if (
        first in _DIGITS
        or first == GS
        or (first == "(" and body[1:2] in _DIGITS)
        or (gs_substitute is not None and body.startswith(gs_substitute))
    ):
        return _parse_gs1(body, gs_substitute), False
    raise _Reject("unknown_code", f"not an ISBT 128, GS1 or tracker code: {body[:20]!r}")


def _parse_clean(text: str, gs_substitute: str | None, scope: CoiCheckScope) -> ParseResult:
    symbology: Symbology | None = None
    body = text
    if text.startswith("]"):
        code = text[:3]
        if len(code) < 3:
            return ParseError("malformed", "the symbology identifier is cut short")
        symbology = _SYMBOLOGIES.get(code)
        if symbology is None and _swap_ascii_case(code) in _SYMBOLOGIES:
            swapped = _swap_ascii_case(text)
            return ParseError(
                "caps_lock",
                f"the symbology identifier {code!r} arrived in inverted letter case; with Caps "
                f"Lock off the scan reads {swapped!r}",
                suggestion=swapped,
            )
        if symbology is None:
            symbology = Symbology(code, "unrecognised symbology", gs1=False)
        body = text[3:]
        if not body:
            return ParseError("empty", "only a symbology identifier was received", None, symbology)
    try:
        value, verified = _dispatch(body, symbology, gs_substitute, scope)
    except _Reject as reject:
        return ParseError(reject.reason, reject.message, symbology=symbology)
    return Parsed(value, symbology, verified)


def parse(
    raw: str,
    *,
    gs_substitute: str | None = None,
    coi_check_scope: CoiCheckScope = "full",
) -> ParseResult:
    """Parse one scanner payload; never raises for any ``raw`` string.

    ``gs_substitute`` is a printable stand-in for FNC1 that a keyboard-wedge scanner sends
    instead of ASCII GS; it must not contain GS1 data characters (ValueError otherwise, a
    configuration error). ``coi_check_scope`` sets what a typed COI check character covers.
    """
    substitute = _checked_substitute(gs_substitute)
    text = _clean(raw)
    if not text:
        return ParseError("empty", "nothing was scanned (only whitespace or control characters)")
    if len(text) > MAX_INPUT_LENGTH:
        return ParseError(
            "malformed", f"the scan has {len(text)} characters, more than {MAX_INPUT_LENGTH}"
        )
    result = _parse_clean(text, substitute, coi_check_scope)
    if isinstance(result, ParseError):
        return _diagnose_keyboard(
            text, result, lambda candidate: _parse_clean(candidate, substitute, coi_check_scope)
        )
    return result


def verify_manual_entry(
    value_with_k: str, *, coi_check_scope: CoiCheckScope = "full"
) -> ParseResult:
    """Check a DIN (13 characters + K) or COI (15 + K) typed from the eye-readable label.

    Spaces are ignored, so ``G1234 17 654321 A`` is fine; a leading ``=`` or ``&/`` is too.
    The message never reveals the expected K, which would defeat the check.
    """
    text = "".join(_clean(value_with_k).split())
    if not text:
        return ParseError("empty", "nothing was typed")
    result = _verify_manual(text, coi_check_scope)
    if isinstance(result, ParseError) and _has_ascii_lower(text):
        swapped = _swap_ascii_case(text)
        if isinstance(_verify_manual(swapped, coi_check_scope), Parsed):
            return ParseError(
                "caps_lock",
                f"the entry is in inverted letter case; with Caps Lock off it reads {swapped!r}",
                suggestion=swapped,
            )
    return result


def _verify_manual(text: str, scope: CoiCheckScope) -> ParseResult:
    body = text
    if body.startswith("&/"):
        body = body[2:]
    elif body.startswith("="):
        body = body[1:]
    try:
        if len(body) == 16 and text[0] != "=":
            return Parsed(_coi_with_check(body, scope), keyboard_check_verified=True)
        if len(body) == 14 and not text.startswith("&/"):
            din13, check = body[:13], body[13]
            problem = _din_problem(din13)
            if problem:
                raise _Reject("malformed", problem)
            if check not in MOD37_ALPHABET:
                raise _Reject("malformed", f"{check!r} cannot be a check character (0-9, A-Z, *)")
            if isbt_check_character(din13) != check:
                raise _Reject(
                    "bad_check_character",
                    "the DIN check character does not match the 13 characters; re-read the label",
                )
            return Parsed(Din(din13), keyboard_check_verified=True)
    except _Reject as reject:
        return ParseError(reject.reason, reject.message)
    return ParseError(
        "malformed",
        "type a DIN with its check character (14 characters, e.g. G1234 17 654321 A) "
        f"or a COI with its check character (16 characters starting CH); got {len(body)}",
    )


def as_json(value: object) -> Any:
    """A parsed identifier's fields as JSON values (enums by value, dates and anything else
    as text): how the scan record stores it and the parse API answers it."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        value = dataclasses.asdict(value)
    if isinstance(value, dict):
        return {str(k): as_json(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [as_json(v) for v in value]
    if isinstance(value, Enum):
        return value.value
    if value is None or isinstance(value, bool | int | float | str):
        return value
    return str(value)
