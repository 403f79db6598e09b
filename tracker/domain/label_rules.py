"""Label printing rules: which label each record gets, DIN flags, ISBT dates, reprint control.

Pure functions over plain values; ``tracker.services.labels`` maps records through them and
``labels`` (the rendering library) draws the result.
"""

from __future__ import annotations

from datetime import date
from datetime import datetime
from enum import StrEnum
from typing import Final
from typing import Literal

from tracker.domain.custody import ItemKind
from tracker.domain.errors import TrackerError
from tracker.domain.identifiers import INTERNAL_ID_ALPHABET
from tracker.domain.identifiers import isbt_check_character


class LabelKind(StrEnum):
    apheresis_bag = "apheresis_bag"
    processing = "processing"  # cell-processing cassette or culture bag
    final_product = "final_product"
    cryoshipper = "cryoshipper"
    courier_job = "courier_job"  # printed for a shipment, never for a bag


class PrintStatus(StrEnum):
    done = "done"
    failed = "failed"


Output = Literal["zpl", "pdf", "png", "svg"]
LabelSizeName = Literal["2x1", "4x2", "4x6"]
OUTPUTS: Final = ("zpl", "pdf", "png", "svg")
LABEL_SIZES: Final = ("2x1", "4x2", "4x6")
SHEET_SIZES: Final = ("a4", "letter")
PRINTER_DPIS: Final = (203, 300)
MAX_COPIES: Final = 10

# Printed on every label and stored with every print: bump a kind's version whenever its
# mapping or layout changes, so a print record says which design produced the label.
TEMPLATE_VERSIONS: Final[dict[LabelKind, str]] = {
    LabelKind.apheresis_bag: "APH-BAG TPL 1.0",
    LabelKind.processing: "PROC TPL 1.0",
    LabelKind.final_product: "FIN-PROD TPL 1.0",
    LabelKind.cryoshipper: "SHIPPER TPL 1.0",
    LabelKind.courier_job: "JOB TPL 1.0",
}

# What each label is printed for (``None``: a shipment rather than an item).
TARGET_KINDS: Final[dict[LabelKind, frozenset[ItemKind]]] = {
    LabelKind.apheresis_bag: frozenset({ItemKind.apheresis_bag}),
    LabelKind.processing: frozenset({ItemKind.apheresis_bag, ItemKind.final_product_bag}),
    LabelKind.final_product: frozenset({ItemKind.final_product_bag}),
    LabelKind.cryoshipper: frozenset({ItemKind.cryoshipper}),
    LabelKind.courier_job: frozenset({ItemKind.shipment}),
}

# The label whose successful print the "label applied" step (registered -> labelled) needs.
APPLIED_LABEL: Final[dict[ItemKind, LabelKind]] = {
    ItemKind.apheresis_bag: LabelKind.apheresis_bag,
    ItemKind.final_product_bag: LabelKind.final_product,
}

NO_FLAGS: Final = "00"
REPEAT_LABEL_FLAGS: Final = "05"  # ST-001 Table 3: second or repeated demand-printed label


def din_flags(container: int, set_size: int, *, reprint: bool) -> str:
    """Flag characters for a DIN barcode (ST-001 Table 3).

    A reprint is always ``05``, so a repeated label can be told from the original. Otherwise a
    bag that is one of a set (several containers share the DIN) carries its container number:
    01-04 for containers 1-4, 15-19 for containers 5-9. A lone bag carries ``00``.
    """
    if not 1 <= container <= 9:
        raise ValueError(f"container must be 1-9, got {container}")
    if reprint:
        return REPEAT_LABEL_FLAGS
    if set_size <= 1 and container == 1:
        return NO_FLAGS
    return f"{container:02d}" if container <= 4 else f"{container + 10:02d}"


def printed_flags(flags: str) -> str:
    """The flags printed beside the eye-readable DIN: ``00`` means none, so nothing is printed."""
    return "" if flags == NO_FLAGS else flags


def _isbt_day(day: date) -> str:
    if not 2000 <= day.year <= 2099:
        raise ValueError("ISBT 128 dates use century digit 0 (2000-2099) only")
    return f"0{day.year % 100:02d}{day.timetuple().tm_yday:03d}"


def expiry_date_data(day: date) -> str:
    """DS004 expiration date ``=>cyyjjj`` (ST-001 reads it as 23:59 local time)."""
    return f"=>{_isbt_day(day)}"


def expiry_datetime_data(local: datetime) -> str:
    """DS005 expiration date and time ``&>cyyjjjhhmm``, in the facility's local time."""
    return f"&>{_isbt_day(local.date())}{local:%H%M}"


def collection_datetime_data(local: datetime) -> str:
    """DS007 collection date and time ``&*cyyjjjhhmm``, in the facility's local time."""
    return f"&*{_isbt_day(local.date())}{local:%H%M}"


def compound_message(structures: list[str]) -> str:
    """DS023 compound message ``=+aa000`` (order undefined) followed by the structures."""
    if not 1 <= len(structures) <= 99:
        raise ValueError("a compound message carries 1 to 99 structures")
    return f"=+{len(structures):02d}000" + "".join(structures)


_MONTHS: Final = (
    "JAN",
    "FEB",
    "MAR",
    "APR",
    "MAY",
    "JUN",
    "JUL",
    "AUG",
    "SEP",
    "OCT",
    "NOV",
    "DEC",
)


def label_day_text(day: date) -> str:
    """``03 MAY 2026``: the month in letters, so nobody confuses day and month."""
    return f"{day.day:02d} {_MONTHS[day.month - 1]} {day.year}"


def label_datetime_text(local: datetime) -> str:
    """``03 MAY 2026 09:40`` in the facility's local time."""
    return f"{label_day_text(local)} {local:%H:%M}"


def last4(value: str | None) -> str:
    """The last four characters of a serial or seal for a courier ticket (``----`` if none)."""
    cleaned = (value or "").strip()
    return cleaned[-4:].rjust(4, "-") if cleaned else "----"


JOB_CODE_PREFIX: Final = "JOB-"
JOB_CODE_BODY: Final = 6


def courier_job_code(body: str) -> str:
    """``JOB-`` + 6 characters + check character: the opaque code on a courier ticket.

    Short enough for the 4x2 ticket's barcode, and typed back by couriers (SMS replies), so
    it uses the internal-id alphabet and carries a MOD 37-2 check character; bodies whose
    check character falls outside that alphabet raise ValueError (draw another).
    """
    if len(body) != JOB_CODE_BODY or not set(body) <= set(INTERNAL_ID_ALPHABET):
        raise ValueError(f"a job code body is {JOB_CODE_BODY} of {INTERNAL_ID_ALPHABET}")
    check = isbt_check_character(f"JOB{body}")
    if check not in INTERNAL_ID_ALPHABET:
        raise ValueError("this body's check character is never issued")
    return f"{JOB_CODE_PREFIX}{body}{check}"


def is_courier_job_code(text: str) -> bool:
    """True for a well-formed job code whose check character matches."""
    if not text.startswith(JOB_CODE_PREFIX) or len(text) != len(JOB_CODE_PREFIX) + 7:
        return False
    try:
        return courier_job_code(text[4:-1]) == text
    except ValueError:
        return False


def decide_reprint(*, printed_before: bool, reprint: bool, reason: str | None) -> str | None:
    """Check a print request against the label's history; return the cleaned reprint reason.

    Guards, in order:
    1. A label that was printed before can only be printed again as a reprint
       (``label_already_printed``), so a second original never exists.
    2. A reprint needs an earlier successful print (``label_not_printed``).
    3. A reprint needs a written reason (``reprint_reason_required``).
    """
    cleaned = (reason or "").strip()
    if printed_before and not reprint:
        raise TrackerError(
            "label_already_printed",
            "this label was printed before; print it again as a reprint, with a reason",
        )
    if reprint and not printed_before:
        raise TrackerError("label_not_printed", "there is no earlier print of this label")
    if reprint and not cleaned:
        raise TrackerError("reprint_reason_required", "a reprint needs a written reason")
    return (cleaned or None) if reprint else None
