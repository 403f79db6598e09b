"""Scan decisions: one scan judged against one journey step. Pure: facts in, verdict out.

``judge`` runs its guards in this fixed order; a refusal names the first guard that fails,
and the order changes only together with this list (and ``GUARD_ORDER``):

 1. unreadable      the parse reason (``empty``, ``malformed``, ``bad_check_character``,
                    ``caps_lock``, ``keyboard_layout``, ...); but where the next requirement is
                    a tamper seal, unrecognised text is the seal number (vendor numbering)
 2. unknown         ``unknown_code`` / ``ambiguous_code``: readable, but not one of ours
 3. coi_mismatch    the code belongs to another chain of identity than the step's first scan;
                    checked before anything about the step, so a wrong-patient scan is always
                    reported as what it is
 4. unknown_step    the order's journey has no such step
 5. wrong_step      the journey may not start this step now (its sequence)
 6. wrong_site      the device's site is not where this step happens for this order
 7. forbidden       the person lacks the step's role there, or is not the assigned courier
 8. deviation_open  an open deviation blocks this journey step until QA closes it
 9. requirement     ``wrong_item_type`` (no requirement scans this kind), ``out_of_order`` (a
                    requirement before it is unfinished), ``already_scanned``
10. shipment        ``no_shipment``, ``not_in_shipment``, ``shipment_mismatch``: what the step's
                    shipment recorded says more than the state of a bag that does not belong
11. item state      ``quarantined``, ``already_scanned`` (already moved on), ``not_labelled``,
                    ``custody_gap`` (the item is not in a state this requirement accepts)
12. time            ``expired``: the thaw-to-infusion countdown, or the shipper's hold time

If handhelds ever judge scans offline, this module is the one list of rules they must mirror.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from dataclasses import field
from datetime import datetime
from datetime import timedelta

from tracker.domain.access import Role
from tracker.domain.access import SiteKind
from tracker.domain.custody import CustodyState
from tracker.domain.journey import Journey
from tracker.domain.journey import Question
from tracker.domain.journey import Requirement
from tracker.domain.journey import ScanKind
from tracker.domain.journey import ScanRequirement
from tracker.domain.journey import SignatureRequirement
from tracker.domain.journey import SiteRole
from tracker.domain.journey import Step

GUARD_ORDER: tuple[tuple[str, ...], ...] = (
    (
        "empty",
        "malformed",
        "bad_check_character",
        "bad_check_digit",
        "bad_flags",
        "bad_date",
        "unknown_ai",
        "compound_count_mismatch",
        "not_allowed_in_compound",
        "retired_structure",
        "caps_lock",
        "keyboard_layout",
    ),
    ("unknown_code", "ambiguous_code"),
    ("coi_mismatch",),
    ("unknown_step",),
    ("wrong_step",),
    ("wrong_site",),
    ("forbidden",),
    ("deviation_open",),
    ("wrong_item_type", "out_of_order", "already_scanned"),
    ("no_shipment", "not_in_shipment", "shipment_mismatch"),
    ("quarantined", "already_scanned", "not_labelled", "custody_gap"),
    ("expired",),
)
"""Reason codes per guard, in the order ``judge`` checks them (documentation and tests)."""

SCAN_REASONS = frozenset(r for group in GUARD_ORDER for r in group)

# Unrecognised text may be a tamper seal number, but never text that the parser diagnosed as
# keyboard damage or that was empty: those are refused as they are.
_SEAL_TEXT_OK = frozenset(GUARD_ORDER[0]) - {"empty", "caps_lock", "keyboard_layout"} | {
    "unknown_code"
}

# An offline scan refused by these guards is still a fact about a patient's material: it is
# kept as ``forced`` and opens a deviation. Unreadable, unknown and repeated scans are not
# facts about anybody's cells, so they are stored as plain refusals.
NOT_FORCEABLE = frozenset(GUARD_ORDER[0]) | {
    "unknown_code",
    "ambiguous_code",
    "unknown_step",
    "already_scanned",
}

KIND_LABELS: Mapping[ScanKind, str] = {
    ScanKind.wristband: "wristband",
    ScanKind.coi_label: "COI label",
    ScanKind.apheresis_bag: "apheresis bag",
    ScanKind.product_bag: "product bag",
    ScanKind.shipper: "shipper",
    ScanKind.logger: "temperature logger",
    ScanKind.seal: "tamper seal",
    ScanKind.certificate: "release certificate",
}

LATE_UPLOAD = timedelta(minutes=2)


_SEAL_CHARS = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-/.")


def seal_text(raw: str) -> str | None:
    """The text of a tamper seal barcode, or None when it cannot be a seal number.

    Seals carry the seal maker's numbering, not one of our identifiers: letters, digits and
    ``- / .``, 3 to 64 characters, after terminators and an AIM prefix are removed.
    """
    text = "".join(ch for ch in raw if ch.isprintable()).strip()
    if text.startswith("]") and len(text) > 3:
        text = text[3:]
    if 3 <= len(text) <= 64 and set(text) <= _SEAL_CHARS:
        return text
    return None


def forceable(reason: str) -> bool:
    """Whether an offline scan refused for ``reason`` is kept as forced (with a deviation)."""
    return reason not in NOT_FORCEABLE


def is_late(client_at: datetime, server_at: datetime) -> bool:
    """Client and server times differ by more than two minutes (an offline or late upload)."""
    return abs(server_at - client_at) > LATE_UPLOAD


# ---------------------------------------------------------------------------------------------
# Facts
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Problem:
    reason: str
    message: str
    suggestion: str | None = None


@dataclass(frozen=True, slots=True)
class Scanned:
    """What one scanned code turned out to be, once parsed and looked up."""

    kind: ScanKind | None = None
    problem: Problem | None = None
    order_id: int | None = None  # the chain of identity the code belongs to
    patient_id: int | None = None
    item_id: int | None = None
    item_state: CustodyState | None = None
    item_site_id: int | None = None
    value: str | None = None  # seal, logger or certificate text; shipper serial
    label: str = "code"  # how messages name it (no patient data)
    opaque: str | None = None  # the cleaned text, should it be a seal number
    expires_at: datetime | None = None  # a shipper's validated hold time runs out

    @property
    def token(self) -> str:
        """What progress records for this scan: the item, or the text value."""
        if self.item_id is not None:
            return str(self.item_id)
        return self.value or ""

    def as_seal(self) -> Scanned:
        text = self.opaque or ""
        return Scanned(kind=ScanKind.seal, value=text, label=f"tamper seal {text}")


@dataclass(frozen=True, slots=True)
class ShipmentFacts:
    shipper_id: int | None
    seal: str | None
    logger: str | None
    item_ids: frozenset[int]
    courier_user_id: int | None


@dataclass(frozen=True, slots=True)
class Progress:
    """What has been done in a run: by anyone (one-person steps) or by one person."""

    done: Mapping[str, frozenset[str]] = field(default_factory=dict)
    answers: Mapping[str, object] = field(default_factory=dict)
    signed: frozenset[str] = frozenset()


@dataclass(frozen=True, slots=True)
class Context:
    """Everything about the step, the order and the person that a scan is judged against."""

    journey: Journey
    step_code: str
    person_id: int
    roles: frozenset[Role]  # the person's roles at the device's site
    device_site_id: int
    device_site_kind: SiteKind
    order_sites: Mapping[SiteRole, int]  # the order's collection/manufacturing/treatment sites
    run_order_id: int | None  # the chain this scanner's run is fixed to (None: none yet)
    run_patient_id: int | None
    run_open: bool  # a run of this step is open for the order (joining it needs no sequence)
    progress: Progress  # this person's progress (everybody's, for one-person steps)
    expected: Mapping[str, frozenset[str]]  # "every bag" requirements: tokens of all of them
    shipment: ShipmentFacts | None
    at: datetime
    last_completed: str | None = None
    run_completed: bool = False  # this scanner's run is already complete
    blocking_deviation: bool = False
    deadline: datetime | None = None  # thaw-to-infusion


@dataclass(frozen=True, slots=True)
class Accepted:
    requirement: ScanRequirement
    token: str
    scanned: Scanned
    # A scanner joining a run in progress re-scans its first code: accepted, adds nothing.
    join: bool = False


@dataclass(frozen=True, slots=True)
class Refused:
    reason: str
    message: str
    suggestion: str | None = None


Verdict = Accepted | Refused


# ---------------------------------------------------------------------------------------------
# Progress
# ---------------------------------------------------------------------------------------------


def satisfied(req: Requirement, progress: Progress, expected: Mapping[str, frozenset[str]]) -> bool:
    """Whether one requirement is met (every bag of an "each" requirement, or one code)."""
    if isinstance(req, ScanRequirement):
        done = progress.done.get(req.key, frozenset())
        if req.each:
            wanted = expected.get(req.key, frozenset())
            return bool(wanted) and wanted <= done
        return bool(done)
    if isinstance(req, Question):
        return req.key in progress.answers
    return req.key in progress.signed


def next_requirement(
    step: Step, progress: Progress, expected: Mapping[str, frozenset[str]]
) -> Requirement | None:
    """The first unmet requirement, in the step's order; None when everything is done."""
    return next((r for r in step.requirements if not satisfied(r, progress, expected)), None)


@dataclass(frozen=True, slots=True)
class Outlook:
    """Where a run stands for one person after a scan, answer or signature."""

    complete: bool
    next: Requirement | None
    done: int = 0  # for an "every bag" requirement: how many are scanned ...
    of: int = 0  # ... out of how many
    waiting_for_second_person: bool = False


def outlook(
    step: Step,
    mine: Progress,
    expected: Mapping[str, frozenset[str]],
    *,
    verified_people: int = 0,
) -> Outlook:
    """What this person does next, and whether the step is complete.

    One-person steps: ``mine`` is everybody's progress. Two-person steps: ``mine`` is this
    person's, and ``verified_people`` counts people (this one included) whose scans are done
    and whose signature is still inside the verification window.
    """
    nxt = next_requirement(step, mine, expected)
    done = of = 0
    if isinstance(nxt, ScanRequirement) and nxt.each:
        wanted = expected.get(nxt.key, frozenset())
        done, of = len(wanted & mine.done.get(nxt.key, frozenset())), len(wanted)
    if step.persons == 1:
        return Outlook(complete=nxt is None, next=nxt, done=done, of=of)
    complete = verified_people >= step.persons
    return Outlook(
        complete=complete,
        next=nxt,
        done=done,
        of=of,
        waiting_for_second_person=nxt is None and not complete,
    )


def countdown_deadline(thawed_at: datetime, minutes: int) -> datetime:
    """The thaw-to-infusion limit: the countdown starts at thaw."""
    return thawed_at + timedelta(minutes=minutes)


def people_within_window(signed_at: Mapping[int, datetime], at: datetime, minutes: int) -> int:
    """How many people's verification signatures still count (signed within the window)."""
    limit = at - timedelta(minutes=minutes)
    return sum(1 for when in signed_at.values() if when >= limit)


# ---------------------------------------------------------------------------------------------
# The decision
# ---------------------------------------------------------------------------------------------


def _refuse(reason: str, message: str, suggestion: str | None = None) -> Refused:
    return Refused(reason, message, suggestion)


def _site_ok(step: Step, scanned: Scanned, ctx: Context) -> bool:
    if step.site is SiteRole.courier:
        return ctx.device_site_kind is SiteKind.courier_depot
    if step.site is SiteRole.item:
        # Exception paths happen where the bag is; the first (COI) scan names no place.
        return scanned.item_site_id is None or scanned.item_site_id == ctx.device_site_id
    return ctx.order_sites.get(step.site) == ctx.device_site_id


def judge(scanned: Scanned, ctx: Context) -> Verdict:
    """Accept the scan for one of the step's requirements, or refuse it (see module docs)."""
    step = ctx.journey.step(ctx.step_code)
    nxt = (
        next_requirement(step, ctx.progress, ctx.expected) if step is not None else None
    )  # what the step asks for now

    # 1. Unreadable. A seal number is vendor text, so where a seal is asked for, text that is
    #    none of our identifiers is taken as the seal number.
    if (
        scanned.problem is not None
        and isinstance(nxt, ScanRequirement)
        and ScanKind.seal in nxt.kinds
        and scanned.opaque
        and scanned.problem.reason in _SEAL_TEXT_OK
    ):
        scanned = scanned.as_seal()
    problem = scanned.problem
    if problem is not None and problem.reason in GUARD_ORDER[0]:
        return _refuse(problem.reason, problem.message, problem.suggestion)
    # 2. Unknown or ambiguous.
    if problem is not None and problem.reason != "coi_mismatch":
        return _refuse(problem.reason, problem.message, problem.suggestion)
    # 3. Chain of identity: every code after the first must belong to the same patient (and
    #    a label whose own COI and DIN disagree is refused even as a first scan).
    if problem is not None:
        return _refuse(problem.reason, problem.message)
    if scanned.kind is None:
        return _refuse("unknown_code", "This code is not one the tracker knows.")
    if ctx.run_order_id is not None:
        other_patient = (
            scanned.kind is ScanKind.wristband
            and scanned.patient_id is not None
            and scanned.patient_id != ctx.run_patient_id
        )
        other_chain = (
            scanned.kind is not ScanKind.wristband
            and scanned.order_id is not None
            and scanned.order_id != ctx.run_order_id
        )
        if other_patient or other_chain:
            return _refuse(
                "coi_mismatch",
                f"STOP: this {KIND_LABELS[scanned.kind]} belongs to another patient's chain of "
                "identity. Do not use it. The attempt is recorded and the coordinator is told.",
            )

    # 4-5. The step and its place in the journey.
    if step is None:
        return _refuse(
            "unknown_step", f"'{ctx.step_code}' is not a step of this product's journey."
        )
    if ctx.run_completed:
        if any(scanned.token in tokens for tokens in ctx.progress.done.values()):
            return _refuse("already_scanned", f"'{step.title}' is already complete.")
        return _refuse("wrong_step", f"'{step.title}' is already complete; start the next step.")
    if not ctx.run_open and not ctx.journey.may_start(step.code, ctx.last_completed):
        titles = [
            s.title for c in ctx.journey.following(ctx.last_completed) if (s := ctx.journey.step(c))
        ]
        expected_next = " or ".join(titles) if titles else "no further journey step"
        return _refuse(
            "wrong_step",
            f"Not now: '{step.title}' cannot follow. This order is at: {expected_next}.",
        )

    # 6-7. Where and who.
    if not _site_ok(step, scanned, ctx):
        return _refuse("wrong_site", f"'{step.title}' is not done at this site for this order.")
    if not (ctx.roles & step.roles):
        return _refuse("forbidden", f"Your role here does not allow '{step.title}'.")
    if (
        step.site is SiteRole.courier
        and ctx.shipment is not None
        and ctx.shipment.courier_user_id != ctx.person_id
    ):
        return _refuse("forbidden", "This shipment is not assigned to you.")

    # 8. Open deviations block the next custody step (storage steps excepted).
    if ctx.blocking_deviation and step.blocked_by_deviation and not step.exception:
        return _refuse("deviation_open", "An open deviation blocks this step until QA closes it.")

    # 9. Which requirement the code answers, in the step's order.
    matching = [r for r in step.scans if scanned.kind in r.kinds]
    if not matching:
        wanted = f" Next: {nxt.prompt}." if nxt is not None else ""
        return _refuse(
            "wrong_item_type",
            f"A {KIND_LABELS[scanned.kind]} is not scanned in '{step.title}'.{wanted}",
        )
    req = matching[0]
    first = step.requirements[0]
    if ctx.run_order_id is None and req is not first:
        return _refuse("out_of_order", f"First: {first.prompt}.")
    done = ctx.progress.done.get(req.key, frozenset())
    if satisfied(req, ctx.progress, ctx.expected) or scanned.token in done:
        if req is first and ctx.run_order_id is None and ctx.run_open:
            # A second scanner joins the open run by scanning its first code again.
            return Accepted(req, scanned.token, scanned, join=True)
        if scanned.token in done:
            return _refuse("already_scanned", f"This {scanned.label} was already scanned.")
        return _refuse("already_scanned", f"'{req.prompt}' is already done for this step.")
    if nxt is not req:
        assert nxt is not None  # req is unmet, so something is next
        return _refuse("out_of_order", f"First: {nxt.prompt}.")

    # 10. The shipment this step works on.
    if step.shipment is not None:
        ship = ctx.shipment
        if ship is None:
            return _refuse("no_shipment", "No shipment for this order is waiting for this step.")
        if scanned.kind in (ScanKind.apheresis_bag, ScanKind.product_bag):
            if scanned.item_id not in ship.item_ids:
                return _refuse(
                    "not_in_shipment", f"This {scanned.label} is not part of this shipment."
                )
        elif scanned.kind is ScanKind.shipper:
            if ship.shipper_id is not None and ship.shipper_id != scanned.item_id:
                return _refuse(
                    "shipment_mismatch", "This is not the shipper recorded for this shipment."
                )
        elif scanned.kind in (ScanKind.seal, ScanKind.logger):
            recorded = ship.seal if scanned.kind is ScanKind.seal else ship.logger
            if recorded is None and not req.record:
                return _refuse(
                    "shipment_mismatch",
                    f"No {KIND_LABELS[scanned.kind]} was recorded when this shipment was packed.",
                )
            if recorded is not None and recorded != scanned.value:
                return _refuse(
                    "shipment_mismatch",
                    f"This {KIND_LABELS[scanned.kind]} is not the one recorded for this "
                    "shipment. Check for tampering.",
                )

    # 11. The item's custody state.
    state = scanned.item_state
    if state is not None and req.from_states:
        if state is CustodyState.quarantined and state not in req.from_states:
            return _refuse("quarantined", f"This {scanned.label} is in quarantine. Do not use it.")
        if req.to_state is not None and state is req.to_state:
            return _refuse("already_scanned", f"This {scanned.label} is already {state.value}.")
        if state is CustodyState.registered and state not in req.from_states:
            return _refuse(
                "not_labelled",
                f"This {scanned.label} has no confirmed label yet. Confirm its label first.",
            )
        if state not in req.from_states:
            allowed = ", ".join(sorted(s.value.replace("_", " ") for s in req.from_states))
            return _refuse(
                "custody_gap",
                f"This {scanned.label} is {state.value.replace('_', ' ')}; this step needs it "
                f"{allowed}. A custody step is missing.",
            )
    if (
        step.shipment is None
        and req.each
        and scanned.token not in ctx.expected.get(req.key, frozenset())
    ):
        return _refuse("custody_gap", f"This {scanned.label} is not waiting for this step.")

    # 12. Time limits.
    if step.countdown == "check" and ctx.deadline is not None and ctx.at > ctx.deadline:
        return _refuse(
            "expired",
            "The thaw-to-infusion time limit has passed. Do not infuse; quarantine the bag.",
        )
    if (
        scanned.expires_at is not None
        and req.to_state is CustodyState.assigned
        and (ctx.at > scanned.expires_at)
    ):
        return _refuse("expired", "The shipper's validated hold time has run out. Recharge it.")
    return Accepted(req, scanned.token, scanned)


def question_verdict(question: Question, answer: object) -> tuple[bool, str | None]:
    """Check one answer: (counts as answered, deviation or refusal message if unexpected)."""
    if question.answer_type == "text":
        return isinstance(answer, str) and bool(answer.strip()), None
    if not isinstance(answer, bool):
        return False, None
    if question.expect is None or answer is question.expect:
        return True, None
    return question.otherwise == "deviation", f"Unexpected answer to: {question.prompt}"


def signature_requirement(step: Step) -> SignatureRequirement | None:
    return next((r for r in step.requirements if isinstance(r, SignatureRequirement)), None)
