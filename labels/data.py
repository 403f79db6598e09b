"""Label input data: frozen dataclasses, the only input type of the labels package.

Every field arrives already formatted by the caller (``tracker`` maps its objects to these);
this package only checks that the values are printable and never computes identifiers.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from dataclasses import fields
from typing import TYPE_CHECKING
from typing import Literal

if TYPE_CHECKING:
    from _typeshed import DataclassInstance

LabelSize = Literal["2x1", "4x2", "4x6"]
PaperSize = Literal["a4", "letter"]
Dpi = Literal[203, 300]

AUTOLOGOUS_NOTICE = "FOR AUTOLOGOUS USE ONLY"

# ISO/IEC 7064 MOD 37-2 alphabet: K may be a digit, a letter (including O) or '*'.
_CHECK_CHARS = frozenset("0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ*")
# Barcode data is restricted to printable ASCII: ISBT 128 and GS1 need nothing else, and it
# keeps every output (PDF, ZPL invocation codes, DataMatrix escapes) unambiguous.
_BARCODE_DATA = re.compile(r"[\x20-\x7e]+")
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")
_FLAGS = re.compile(r"\d\d")
# Courier tickets must never carry identity: reject anything shaped like an ISBT 128 data
# structure (leading '=' or '&'), a DIN (alpha + 4 + 2 + 6) or a COI (CH + the same).
_ISBT_LIKE = re.compile(r"(^|\s)[=&]\S|[A-NP-Z1-9]\d{4}\s?\d{2}\s?[0-9A-Z]{6}")


class LabelDataError(ValueError):
    """A label field is missing or not printable."""


def _check_text(owner: object, name: str, value: str, *, required: bool = True) -> None:
    if required and not value.strip():
        raise LabelDataError(f"{type(owner).__name__}.{name} must not be empty")
    if _CONTROL.search(value):
        raise LabelDataError(f"{type(owner).__name__}.{name} contains a control character")


def _check_barcode(owner: object, name: str, value: str) -> None:
    if not _BARCODE_DATA.fullmatch(value):
        raise LabelDataError(f"{type(owner).__name__}.{name} must be printable ASCII, non-empty")


def _check_check_char(owner: object, name: str, value: str) -> None:
    if len(value) != 1 or value not in _CHECK_CHARS:
        raise LabelDataError(f"{type(owner).__name__}.{name} must be one MOD 37-2 character")


def _check_all_text(owner: DataclassInstance) -> None:
    for f in fields(owner):
        value = getattr(owner, f.name)
        if isinstance(value, str):
            _check_text(owner, f.name, value, required=False)
        elif isinstance(value, tuple):
            for line in value:
                _check_text(owner, f.name, line)


def printed_flags(flags: str) -> str:
    """The flag characters to print: Type 3 flags (60-96) are never printed (ST-001 §7.4.1)."""
    if flags and 60 <= int(flags) <= 96:
        return ""
    return flags


def _check_flags(owner: object, flags: str) -> None:
    if flags and not _FLAGS.fullmatch(flags):
        raise LabelDataError(f"{type(owner).__name__}.flags must be two digits or empty")


@dataclass(frozen=True, slots=True, kw_only=True)
class _Identity:
    """Fields shared by labels that carry a DIN and a COI."""

    din_grouped: str
    din_check_char: str
    din_barcode: str
    flags: str
    product_code_barcode: str
    product_description: str
    coi_grouped: str
    coi_check_char: str
    coi_barcode: str
    datamatrix_data: str
    template_version: str
    qr_url: str | None = None
    reprint: bool = False

    def __post_init__(self) -> None:
        _check_all_text(self)
        for name in ("din_grouped", "coi_grouped", "product_description", "template_version"):
            _check_text(self, name, getattr(self, name))
        for name in ("din_barcode", "product_code_barcode", "coi_barcode", "datamatrix_data"):
            _check_barcode(self, name, getattr(self, name))
        _check_check_char(self, "din_check_char", self.din_check_char)
        _check_check_char(self, "coi_check_char", self.coi_check_char)
        _check_flags(self, self.flags)
        if self.qr_url is not None:
            _check_barcode(self, "qr_url", self.qr_url)


@dataclass(frozen=True, slots=True, kw_only=True)
class ApheresisBagLabel(_Identity):
    """Apheresis (starting material) bag label."""

    collection_date_text: str
    collection_date_barcode: str
    expiry_date_text: str = ""
    expiry_date_barcode: str = ""

    def __post_init__(self) -> None:
        _Identity.__post_init__(self)
        _check_text(self, "collection_date_text", self.collection_date_text)
        _check_barcode(self, "collection_date_barcode", self.collection_date_barcode)
        if bool(self.expiry_date_text) != bool(self.expiry_date_barcode):
            raise LabelDataError("ApheresisBagLabel expiry text and barcode go together")
        if self.expiry_date_barcode:
            _check_barcode(self, "expiry_date_barcode", self.expiry_date_barcode)


@dataclass(frozen=True, slots=True, kw_only=True)
class FinalProductLabel(_Identity):
    """Final (cryopreserved) product bag label."""

    expiry_date_text: str
    expiry_date_barcode: str
    bag_text: str = ""
    storage_text: str = ""

    def __post_init__(self) -> None:
        _Identity.__post_init__(self)
        _check_text(self, "expiry_date_text", self.expiry_date_text)
        _check_barcode(self, "expiry_date_barcode", self.expiry_date_barcode)


@dataclass(frozen=True, slots=True, kw_only=True)
class ProcessingLabel:
    """Cell-processing label (cassette, culture bag, sample): COI, step and 2-D symbol."""

    coi_grouped: str
    coi_check_char: str
    coi_barcode: str
    step_text: str
    container_text: str
    datamatrix_data: str
    template_version: str
    reprint: bool = False

    def __post_init__(self) -> None:
        _check_all_text(self)
        for name in ("coi_grouped", "step_text", "template_version"):
            _check_text(self, name, getattr(self, name))
        _check_barcode(self, "coi_barcode", self.coi_barcode)
        _check_barcode(self, "datamatrix_data", self.datamatrix_data)
        _check_check_char(self, "coi_check_char", self.coi_check_char)


@dataclass(frozen=True, slots=True, kw_only=True)
class CryoshipperLabel:
    """Reusable dry-vapour shipper label: serial, GS1 asset data and hold time.

    ``gs1_data`` is a GS1 element string with parenthesised AIs, e.g.
    ``(8003)0<GRAI>SERIAL(7003)YYMMDDhhmm``; it is encoded with FNC1 (GS1-128, GS1 DataMatrix).
    """

    shipper_serial: str
    gs1_data: str
    hold_time_text: str
    hold_until_text: str
    condition_text: str
    template_version: str
    reprint: bool = False

    def __post_init__(self) -> None:
        _check_all_text(self)
        for name in ("shipper_serial", "hold_time_text", "hold_until_text", "template_version"):
            _check_text(self, name, getattr(self, name))
        _check_barcode(self, "gs1_data", self.gs1_data)
        if not self.gs1_data.startswith("("):
            raise LabelDataError("CryoshipperLabel.gs1_data must start with a parenthesised AI")


@dataclass(frozen=True, slots=True, kw_only=True)
class CourierJobTicket:
    """Courier job ticket: logistics only, never patient data, COI or DIN."""

    job_code: str
    pickup_address: tuple[str, ...]
    dropoff_address: tuple[str, ...]
    pickup_window_text: str
    dropoff_window_text: str
    shipper_serial_last4: str
    seal_last4: str
    template_version: str
    qr_url: str | None = None
    reprint: bool = False

    def __post_init__(self) -> None:
        _check_all_text(self)
        _check_barcode(self, "job_code", self.job_code)
        for name in ("pickup_window_text", "dropoff_window_text", "template_version"):
            _check_text(self, name, getattr(self, name))
        for name in ("pickup_address", "dropoff_address"):
            if not 1 <= len(getattr(self, name)) <= 4:
                raise LabelDataError(f"CourierJobTicket.{name} needs 1 to 4 lines")
        for name in ("shipper_serial_last4", "seal_last4"):
            if len(getattr(self, name)) != 4:
                raise LabelDataError(f"CourierJobTicket.{name} must be exactly 4 characters")
        if self.qr_url is not None:
            _check_barcode(self, "qr_url", self.qr_url)
        for text in (self.job_code, *self.pickup_address, *self.dropoff_address):
            if _ISBT_LIKE.search(text.upper()):
                raise LabelDataError("CourierJobTicket must not carry a DIN, COI or ISBT 128 data")


LabelData = (
    ApheresisBagLabel | FinalProductLabel | ProcessingLabel | CryoshipperLabel | CourierJobTicket
)
