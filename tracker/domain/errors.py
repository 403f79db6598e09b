"""TrackerError and the closed, documented vocabulary of reason codes.

Clients switch on ``reason``, never on message text. Adding a code means adding it here, with
its description; the API document lists this table.
"""

from __future__ import annotations

REASONS: dict[str, str] = {
    # generic request problems
    "invalid_request": "The request body or parameters are not valid.",
    "not_found": "No such record, or it is not visible to you.",
    "forbidden": "Your role or site does not allow this action.",
    "unauthenticated": "Log in or present a valid device token.",
    "csrf_failed": "The form or request lacked a valid CSRF token.",
    "conflict": "The record changed underneath you; reload and try again.",
    "naive_datetime": "A date-time without a UTC offset was given.",
    "reason_required": "A reason is required for this change.",
    "internal_error": "Something failed on the server; nothing was changed.",
    "session_expired": "The session was idle too long; log in again.",
    # login and signatures (21 CFR 11.200/11.300)
    "bad_credentials": "Unknown user or wrong password.",
    "account_locked": "Too many failed attempts; the account is locked for a while.",
    "account_inactive": "The account is deactivated.",
    "signature_failed": "The password re-entered for the signature was wrong.",
    # identifiers (tracker.domain.identifiers produces these)
    "empty": "Nothing was scanned.",
    "unknown_code": "The code is not one this system knows.",
    "malformed": "The code has the wrong length or characters for its type.",
    "bad_check_character": "The ISO 7064 check character does not match.",
    "bad_check_digit": "The GS1 check digit does not match.",
    "bad_flags": "The DIN flag characters are invalid.",
    "bad_date": "The date in the code is not a real date.",
    "unknown_ai": "The GS1 application identifier is not supported.",
    "compound_count_mismatch": "The compound message count disagrees with its content.",
    "not_allowed_in_compound": "This data structure may not appear inside a compound message.",
    "retired_structure": "The data structure is retired in ISBT 128.",
    "caps_lock": "The scan arrived in the wrong letter case: is Caps Lock on?",
    "keyboard_layout": "The scanner and computer keyboard layouts disagree.",
    # custody
    "invalid_transition": "The item cannot move from its current state to that state.",
    "duplicate_identifier": "That identifier is already registered.",
    "coi_mismatch": "The item belongs to a different chain of identity (another patient).",
    "correction_target_invalid": "Only an existing event of the same chain can be corrected.",
    # labels and printers
    "label_not_printed": "No successful print of this label is on record.",
    "label_already_printed": "This label was printed before; print it again as a reprint.",
    "reprint_reason_required": "A reprint needs a written reason.",
    "label_data_missing": "A value the label needs is not on record (see the message).",
    "printer_unreachable": "The label printer cannot be reached (off, offline or wrong address).",
    "printer_refused": "The label printer dropped the print job before taking it all.",
    # alerts, QA dispositions and loggers
    "disposition_pending": "An excursion exposed this bag; QA decides before its next use.",
    "quarantine_hold": "QA quarantined or discarded this bag; only those moves remain.",
    "excursion_ongoing": "The excursion is still going on; it cannot be accepted yet.",
    "alert_not_open": "The alert was already acknowledged or resolved.",
    "not_a_logger": "Only a device registered as a temperature logger may post readings.",
    # schedules (capacity, journey plans, bookings)
    "capacity_taken": "Another booking took the capacity first; propose the plan again.",
    "capacity_in_use": "The capacity change would remove room that bookings already hold.",
    "plan_changed": "The plan differs from the one you reviewed; review it again.",
    "plan_exists": "The order already has a live journey plan.",
    "plan_not_live": "The journey plan is cancelled, expired or otherwise not live.",
    "hold_expired": "The tentative hold expired and its capacity was released.",
    "no_collection_capacity": "No free apheresis chair within the planning horizon.",
    "no_manufacturing_capacity": "No free manufacturing slot within the planning horizon.",
    "no_infusion_capacity": "No free infusion bed within the planning horizon.",
    "fresh_stability_unreachable": "No collection reaches a manufacturing slot while fresh.",
    "stability_shorter_than_transit": "Fresh material would expire in transit (check the profile).",
    # scanning (tracker.domain.scans documents the order in which these are checked)
    "ambiguous_code": "The code matches more than one record; scan a more specific label.",
    "unknown_device": "The scanner is not a registered, active scanner at one of your sites.",
    "unknown_step": "That step is not part of this product's journey.",
    "wrong_step": "The journey is not at this step: another step must come first.",
    "wrong_site": "This step is not performed at this site for this order.",
    "wrong_item_type": "This kind of code is not scanned in this step.",
    "out_of_order": "Something else in this step comes first; scan or answer what is asked.",
    "already_scanned": "That code was already scanned for this step, or the item has moved on.",
    "not_labelled": "The bag's label has not been confirmed as applied.",
    "quarantined": "The item is in quarantine and may not be used.",
    "custody_gap": "The item's custody record lacks the step before this one.",
    "expired": "A time limit has passed (thaw-to-infusion, or the shipper's hold time).",
    "no_shipment": "No shipment of this order is waiting for this step.",
    "not_in_shipment": "The bag is not part of this shipment.",
    "shipment_mismatch": "The shipper, tamper seal or logger differs from the shipment's record.",
    "deviation_open": "An open deviation blocks the next custody step until QA closes it.",
    "checklist_refused": "This answer stops the step; follow the site procedure.",
    # quality gates (starting-material acceptance, release testing, lot release)
    "unit_mismatch": "The value's unit measures something else than the criterion's unit.",
    "measurement_missing": "A value the acceptance criteria need was not entered.",
    "material_not_accepted": "The starting material has no acceptance (or was rejected).",
    "release_tests_incomplete": "A release test has no reviewed result yet.",
    "lot_out_of_specification": "A release test is out of specification: exceptional release only.",
    "no_lot": "No manufacturing lot of this order is waiting for this action.",
    "reviewer_is_recorder": "A result is reviewed by someone other than who recorded it.",
    "superseded": "That result was already corrected; correct the current one.",
    "acknowledgement_required": "Exceptional release needs the physician's acknowledgement first.",
    # API-wide idempotency (Idempotency-Key header)
    "idempotency_in_flight": "A request with this Idempotency-Key is still running; retry later.",
    "idempotency_key_reused": "This Idempotency-Key was already used for a different request.",
}


class TrackerError(Exception):
    """A refusal with a stable reason code and a human message."""

    def __init__(self, reason: str, message: str | None = None, **details: object) -> None:
        if reason not in REASONS:
            raise ValueError(f"undocumented reason code: {reason!r}")
        self.reason = reason
        self.message = message or REASONS[reason]
        self.details = details
        super().__init__(f"{reason}: {self.message}")
