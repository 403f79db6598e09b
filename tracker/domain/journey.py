"""The vein-to-vein journey as data: a product profile's steps, in order, with what each needs.

A step says where it happens (which of the order's sites), who may perform it, and what it
requires, in order: scans of given kinds (one code, or every item of a set), checklist
questions, and e-signatures. It also names the custody states its items move to when it is
complete, and which steps may follow it. Profiles store this as JSON under ``data["journey"]``
(versioned with the profile); a profile without one gets the default for its starting material.

Nothing here touches the clock, the database or the web: ``tracker.domain.scans`` judges one
scan against a step, and ``tracker.services.scans`` supplies the facts.
"""

from __future__ import annotations

from collections.abc import Iterable
from collections.abc import Mapping
from dataclasses import dataclass
from dataclasses import field
from enum import StrEnum
from typing import Any
from typing import Literal
from typing import TypeAlias

from tracker.domain.access import Role
from tracker.domain.custody import CustodyState
from tracker.domain.custody import ItemKind
from tracker.domain.signatures import SIGNATURE_MEANINGS


class ScanKind(StrEnum):
    """What a scanned code is, once it has been parsed and looked up."""

    wristband = "wristband"  # the patient's wristband (internal PAT id)
    coi_label = "coi_label"  # a chain-of-identity label (ISBT 128 DS040) on an insert or shipper
    apheresis_bag = "apheresis_bag"  # a bag's DIN
    product_bag = "product_bag"
    shipper = "shipper"  # a cryoshipper (internal SHP id or GS1 GRAI)
    logger = "logger"  # a temperature logger (internal LOG id)
    seal = "seal"  # a tamper seal number: vendor text, not one of our identifiers
    certificate = "certificate"  # a release certificate (internal CRT id)


ITEM_KINDS: Mapping[ScanKind, ItemKind] = {
    ScanKind.apheresis_bag: ItemKind.apheresis_bag,
    ScanKind.product_bag: ItemKind.final_product_bag,
    ScanKind.shipper: ItemKind.cryoshipper,
}
SCAN_KIND_OF_ITEM: Mapping[ItemKind, ScanKind] = {v: k for k, v in ITEM_KINDS.items()}
BAG_KINDS = frozenset({ScanKind.apheresis_bag, ScanKind.product_bag})


class SiteRole(StrEnum):
    """Where a step happens, relative to the order."""

    collection = "collection"
    manufacturing = "manufacturing"
    treatment = "treatment"
    courier = "courier"  # at a courier depot, by the courier the shipment is assigned to
    item = "item"  # wherever the scanned item is now (exception paths)


class ShipmentLeg(StrEnum):
    """Which of the order's shipments a step works on."""

    outgoing = "outgoing"  # planned, leaving the device's site
    pickup = "pickup"  # packed, waiting for its courier
    incoming = "incoming"  # picked up, arriving at the device's site


AnswerType: TypeAlias = Literal["yes_no", "text"]
Otherwise: TypeAlias = Literal["refuse", "deviation"]
Countdown: TypeAlias = Literal["start", "check"]


@dataclass(frozen=True, slots=True)
class ScanRequirement:
    """Scan one code of ``kinds`` (or, with ``each``, every item of the step's set)."""

    key: str
    kinds: frozenset[ScanKind]
    prompt: str
    each: bool = False
    from_states: frozenset[CustodyState] = frozenset()
    to_state: CustodyState | None = None
    # Seal and logger at packing: the scanned value is recorded on the shipment; elsewhere
    # it must equal what was recorded.
    record: bool = False


@dataclass(frozen=True, slots=True)
class Question:
    """A checklist question; an answer other than ``expect`` refuses or opens a deviation."""

    key: str
    prompt: str
    answer_type: AnswerType = "yes_no"
    expect: bool | None = None
    otherwise: Otherwise = "refuse"


@dataclass(frozen=True, slots=True)
class SignatureRequirement:
    """An e-signature with a meaning (21 CFR 11.50), by a person allowed to do the step."""

    key: str
    meaning: str
    prompt: str


Requirement: TypeAlias = ScanRequirement | Question | SignatureRequirement


@dataclass(frozen=True, slots=True)
class Step:
    code: str
    title: str
    site: SiteRole
    roles: frozenset[Role]
    requirements: tuple[Requirement, ...]
    next: tuple[str, ...] = ()
    # Exception paths (quarantine, discard, ...) may start at any point and do not move the
    # journey on; deviations never block them.
    exception: bool = False
    # Keeping cells cold is always right: storage steps proceed while a deviation is open.
    blocked_by_deviation: bool = True
    # Two-person verification: each person scans every code and signs, within the window.
    persons: int = 1
    shipment: ShipmentLeg | None = None
    shipment_to: tuple[CustodyState, ...] = ()
    # The shipment's bags move with it, without being scanned one by one (a sealed shipper).
    shipment_items_to: CustodyState | None = None
    issues_certificate: bool = False
    countdown: Countdown | None = None

    @property
    def scans(self) -> tuple[ScanRequirement, ...]:
        return tuple(r for r in self.requirements if isinstance(r, ScanRequirement))

    def requirement(self, key: str) -> Requirement | None:
        return next((r for r in self.requirements if r.key == key), None)

    @property
    def reason_question(self) -> Question | None:
        """The text question whose answer becomes the custody reason (exception paths)."""
        found = self.requirement("reason")
        return found if isinstance(found, Question) and found.answer_type == "text" else None


@dataclass(frozen=True, slots=True)
class Journey:
    variant: str
    steps: tuple[Step, ...]
    start: tuple[str, ...]
    _index: Mapping[str, Step] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_index", {s.code: s for s in self.steps})

    def step(self, code: str) -> Step | None:
        return self._index.get(code)

    def may_start(self, code: str, last_completed: str | None) -> bool:
        """Whether step ``code`` may begin after ``last_completed`` (None: nothing done yet)."""
        step = self.step(code)
        if step is None:
            return False
        if step.exception:
            return True
        if last_completed is None:
            return code in self.start
        previous = self.step(last_completed)
        return previous is not None and code in previous.next

    def following(self, last_completed: str | None) -> tuple[str, ...]:
        """The journey steps that may start now."""
        if last_completed is None:
            return self.start
        previous = self.step(last_completed)
        return previous.next if previous else ()


# ---------------------------------------------------------------------------------------------
# Reading and writing the JSON form stored in a product profile
# ---------------------------------------------------------------------------------------------


class JourneyError(ValueError):
    """A journey definition that cannot be used (bad kind, unknown next step, ...)."""


def _states(values: Iterable[str]) -> frozenset[CustodyState]:
    return frozenset(CustodyState(v) for v in values)


def _requirement_from(raw: Mapping[str, Any], index: int) -> Requirement:
    if "scan" in raw:
        kinds = raw["scan"] if isinstance(raw["scan"], list) else [raw["scan"]]
        to = raw.get("to")
        return ScanRequirement(
            key=str(raw.get("key") or "_".join(kinds)),
            kinds=frozenset(ScanKind(k) for k in kinds),
            prompt=str(raw["prompt"]),
            each=bool(raw.get("each", False)),
            from_states=_states(raw.get("from", ())),
            to_state=CustodyState(to) if to else None,
            record=bool(raw.get("record", False)),
        )
    if "ask" in raw:
        answer_type = raw.get("type", "yes_no")
        otherwise = raw.get("otherwise", "refuse")
        if answer_type not in ("yes_no", "text") or otherwise not in ("refuse", "deviation"):
            raise JourneyError(f"question {raw['ask']!r}: bad type or otherwise")
        expect = raw.get("expect")
        return Question(
            key=str(raw["ask"]),
            prompt=str(raw["prompt"]),
            answer_type=answer_type,
            expect=None if expect is None else bool(expect),
            otherwise=otherwise,
        )
    if "sign" in raw:
        meaning = str(raw["sign"])
        if meaning not in SIGNATURE_MEANINGS:
            raise JourneyError(f"unknown signature meaning {meaning!r}")
        return SignatureRequirement(
            key=str(raw.get("key") or f"sign_{meaning}"), meaning=meaning, prompt=str(raw["prompt"])
        )
    raise JourneyError(f"requirement {index} is neither a scan, a question nor a signature")


def _step_from(raw: Mapping[str, Any]) -> Step:
    requirements = tuple(_requirement_from(r, i) for i, r in enumerate(raw["requires"]))
    keys = [r.key for r in requirements]
    if len(set(keys)) != len(keys):
        raise JourneyError(f"step {raw['code']!r} repeats a requirement key")
    if not requirements or not isinstance(requirements[0], ScanRequirement):
        # The first scan fixes the chain of identity every later scan is checked against.
        raise JourneyError(f"step {raw['code']!r} must start with a scan")
    leg = raw.get("shipment")
    countdown = raw.get("countdown")
    if countdown not in (None, "start", "check"):
        raise JourneyError(f"step {raw['code']!r}: countdown must be 'start' or 'check'")
    items_to = raw.get("shipment_items_to")
    step = Step(
        code=str(raw["code"]),
        title=str(raw["title"]),
        site=SiteRole(raw["site"]),
        roles=frozenset(Role(r) for r in raw["roles"]),
        requirements=requirements,
        next=tuple(raw.get("next", ())),
        exception=bool(raw.get("exception", False)),
        blocked_by_deviation=bool(raw.get("blocked_by_deviation", True)),
        persons=int(raw.get("persons", 1)),
        shipment=ShipmentLeg(leg) if leg else None,
        shipment_to=tuple(CustodyState(s) for s in raw.get("shipment_to", ())),
        shipment_items_to=CustodyState(items_to) if items_to else None,
        issues_certificate=bool(raw.get("issues_certificate", False)),
        countdown=countdown,
    )
    if step.persons not in (1, 2):
        raise JourneyError(f"step {step.code!r}: persons must be 1 or 2")
    if step.persons > 1 and any(
        isinstance(r, ScanRequirement) and r.each for r in step.requirements
    ):
        raise JourneyError(f"step {step.code!r}: two-person steps scan single codes")
    return step


def journey_from_data(raw: Mapping[str, Any]) -> Journey:
    """Build a journey from its JSON form, refusing inconsistent definitions."""
    try:
        steps = tuple(_step_from(s) for s in raw["steps"])
        journey = Journey(
            variant=str(raw.get("variant", "custom")),
            steps=steps,
            start=tuple(raw.get("start", (steps[0].code,) if steps else ())),
        )
    except (KeyError, TypeError, ValueError) as exc:
        if isinstance(exc, JourneyError):
            raise
        raise JourneyError(f"journey definition is not usable: {exc!r}") from exc
    codes = {s.code for s in journey.steps}
    if len(codes) != len(journey.steps):
        raise JourneyError("step codes must be unique")
    for step in journey.steps:
        unknown = [c for c in step.next if c not in codes]
        if unknown:
            raise JourneyError(f"step {step.code!r} is followed by unknown steps {unknown}")
    if not set(journey.start) <= codes:
        raise JourneyError("the journey starts at an unknown step")
    return journey


def _requirement_data(r: Requirement) -> dict[str, Any]:
    if isinstance(r, ScanRequirement):
        kinds = sorted(k.value for k in r.kinds)
        out: dict[str, Any] = {
            "scan": kinds[0] if len(kinds) == 1 else kinds,
            "key": r.key,
            "prompt": r.prompt,
        }
        if r.each:
            out["each"] = True
        if r.from_states:
            out["from"] = sorted(s.value for s in r.from_states)
        if r.to_state:
            out["to"] = r.to_state.value
        if r.record:
            out["record"] = True
        return out
    if isinstance(r, Question):
        return {
            "ask": r.key,
            "prompt": r.prompt,
            "type": r.answer_type,
            "expect": r.expect,
            "otherwise": r.otherwise,
        }
    return {"sign": r.meaning, "key": r.key, "prompt": r.prompt}


def journey_to_data(journey: Journey) -> dict[str, Any]:
    """The JSON form stored in ``ProductProfile.data["journey"]``."""
    steps = []
    for s in journey.steps:
        raw: dict[str, Any] = {
            "code": s.code,
            "title": s.title,
            "site": s.site.value,
            "roles": sorted(r.value for r in s.roles),
            "requires": [_requirement_data(r) for r in s.requirements],
            "next": list(s.next),
        }
        if s.exception:
            raw["exception"] = True
        if not s.blocked_by_deviation:
            raw["blocked_by_deviation"] = False
        if s.persons != 1:
            raw["persons"] = s.persons
        if s.shipment:
            raw["shipment"] = s.shipment.value
        if s.shipment_to:
            raw["shipment_to"] = [x.value for x in s.shipment_to]
        if s.shipment_items_to:
            raw["shipment_items_to"] = s.shipment_items_to.value
        if s.issues_certificate:
            raw["issues_certificate"] = True
        if s.countdown:
            raw["countdown"] = s.countdown
        steps.append(raw)
    return {"variant": journey.variant, "start": list(journey.start), "steps": steps}


# ---------------------------------------------------------------------------------------------
# Default journeys (what a profile without its own step list uses)
# ---------------------------------------------------------------------------------------------

S = CustodyState
R = Role
K = ScanKind
Variant: TypeAlias = Literal["fresh", "cryo_local", "cryo_central"]
VARIANTS: tuple[Variant, ...] = ("fresh", "cryo_local", "cryo_central")

_ANY_BAG = frozenset({K.apheresis_bag, K.product_bag})
# Every bag state an exception path may start from (final states excluded).
_LIVE_BAG_STATES = frozenset(
    {
        S.registered,
        S.labelled,
        S.collected,
        S.packed,
        S.in_transit,
        S.received,
        S.stored,
        S.in_manufacturing,
        S.released,
        S.thawed,
        S.infusing,
    }
)


def _scan(
    kind: ScanKind | frozenset[ScanKind],
    prompt: str,
    *,
    each: bool = False,
    from_: Iterable[CustodyState] = (),
    to: CustodyState | None = None,
    record: bool = False,
    key: str | None = None,
) -> ScanRequirement:
    kinds = kind if isinstance(kind, frozenset) else frozenset({kind})
    return ScanRequirement(
        key=key or "_".join(sorted(k.value for k in kinds)),
        kinds=kinds,
        prompt=prompt,
        each=each,
        from_states=frozenset(from_),
        to_state=to,
        record=record,
    )


_COI = _scan(K.coi_label, "Scan the COI label on the packing insert or shipper")
_WRISTBAND = _scan(K.wristband, "Scan the patient's wristband")
_TEMPERATURE_ALARM = Question(
    "temperature_alarm",
    "Was a temperature alarm (TOR) received for this shipment?",
    expect=False,
    otherwise="deviation",
)


def _pack(
    code: str,
    title: str,
    site: SiteRole,
    roles: frozenset[Role],
    bag: ScanKind,
    from_: Iterable[CustodyState],
    nxt: str,
) -> Step:
    return Step(
        code=code,
        title=title,
        site=site,
        roles=roles,
        requirements=(
            _COI,
            _scan(K.shipper, "Scan the shipper", from_=[S.charged], to=S.assigned),
            _scan(
                bag,
                "Scan every bag as it goes into the shipper",
                each=True,
                from_=from_,
                to=S.packed,
            ),
            _scan(K.logger, "Scan the temperature logger placed in the shipper", record=True),
            _scan(K.seal, "Scan the tamper seal", record=True),
        ),
        next=(nxt,),
        shipment=ShipmentLeg.outgoing,
        shipment_to=(S.packed,),
    )


def _pickup(code: str, nxt: str) -> Step:
    return Step(
        code=code,
        title="Courier pickup",
        site=SiteRole.courier,
        roles=frozenset({R.courier}),
        requirements=(
            _scan(K.coi_label, "Scan the COI label on the shipper"),
            _scan(K.shipper, "Scan the shipper", from_=[S.assigned], to=S.in_transit),
        ),
        next=(nxt,),
        shipment=ShipmentLeg.pickup,
        shipment_to=(S.picked_up,),
        shipment_items_to=S.in_transit,
    )


def _receive(
    code: str,
    title: str,
    site: SiteRole,
    roles: frozenset[Role],
    bag: ScanKind,
    nxt: str,
    extra: tuple[Question, ...] = (),
) -> Step:
    return Step(
        code=code,
        title=title,
        site=site,
        roles=roles,
        requirements=(
            _COI,
            _scan(K.shipper, "Scan the shipper", from_=[S.in_transit], to=S.delivered),
            _scan(K.seal, "Scan the tamper seal: it must match the one packed"),
            _scan(K.logger, "Scan the temperature logger"),
            _TEMPERATURE_ALARM,
            *extra,
            _scan(
                bag, "Scan every bag in the shipper", each=True, from_=[S.in_transit], to=S.received
            ),
        ),
        next=(nxt,),
        shipment=ShipmentLeg.incoming,
        shipment_to=(S.delivered, S.received),
    )


def _bags_step(
    code: str,
    title: str,
    site: SiteRole,
    roles: frozenset[Role],
    bag: ScanKind,
    from_: Iterable[CustodyState],
    to: CustodyState,
    nxt: tuple[str, ...],
    *,
    anchor: ScanRequirement = _COI,
    prompt: str = "Scan every bag",
    blocked: bool = True,
) -> Step:
    return Step(
        code=code,
        title=title,
        site=site,
        roles=roles,
        requirements=(anchor, _scan(bag, prompt, each=True, from_=from_, to=to)),
        next=nxt,
        blocked_by_deviation=blocked,
    )


def _exception_steps() -> tuple[Step, ...]:
    reason = Question("reason", "Why? (recorded with the custody event)", answer_type="text")
    sign_qa = SignatureRequirement("sign_approval", "approval", "Sign to approve (QA)")
    anyone = frozenset({R.qa, R.manufacturing_operator, R.collection_nurse, R.infusion_nurse})
    return (
        Step(
            code="quarantine",
            title="Quarantine a bag",
            site=SiteRole.item,
            roles=anyone,
            requirements=(
                _COI,
                _scan(
                    _ANY_BAG,
                    "Scan the bag to quarantine",
                    from_=_LIVE_BAG_STATES,
                    to=S.quarantined,
                    key="bag",
                ),
                reason,
            ),
            exception=True,
        ),
        Step(
            code="release_quarantine",
            title="Release a bag from quarantine",
            site=SiteRole.item,
            roles=frozenset({R.qa}),
            requirements=(
                _COI,
                _scan(
                    _ANY_BAG,
                    "Scan the quarantined bag",
                    from_=[S.quarantined],
                    to=S.stored,
                    key="bag",
                ),
                reason,
                sign_qa,
            ),
            exception=True,
        ),
        Step(
            code="discard",
            title="Discard a bag",
            site=SiteRole.item,
            roles=frozenset({R.qa}),
            requirements=(
                _COI,
                _scan(
                    _ANY_BAG,
                    "Scan the bag to discard",
                    from_=_LIVE_BAG_STATES | {S.quarantined},
                    to=S.discarded,
                    key="bag",
                ),
                reason,
                sign_qa,
            ),
            exception=True,
        ),
        Step(
            code="return_to_manufacturer",
            title="Return a quarantined product to the manufacturer",
            site=SiteRole.item,
            roles=frozenset({R.infusion_nurse, R.coordinator, R.qa}),
            requirements=(
                _COI,
                _scan(
                    K.product_bag,
                    "Scan the quarantined product bag",
                    from_=[S.quarantined],
                    to=S.returned_to_manufacturer,
                    key="bag",
                ),
                reason,
            ),
            exception=True,
        ),
    )


def default_journey(variant: Variant = "fresh") -> Journey:
    """The reference journey of one variant: fresh, or cryopreserved locally or centrally.

    Fresh and centrally cryopreserved apheresis leave the collection site after collection;
    locally cryopreserved apheresis is frozen and stored there first. Centrally cryopreserved
    and locally cryopreserved apheresis is stored at the manufacturing site before manufacturing.
    """
    if variant not in VARIANTS:
        raise JourneyError(f"unknown journey variant {variant!r}")
    nurse = frozenset({R.collection_nurse})
    operator = frozenset({R.manufacturing_operator})
    infusion = frozenset({R.infusion_nurse})
    col, mfg, tx = SiteRole.collection, SiteRole.manufacturing, SiteRole.treatment
    after_collection = "cryopreserve_local" if variant == "cryo_local" else "pack_apheresis"
    after_receipt = "start_manufacturing" if variant == "fresh" else "store_apheresis"
    steps: list[Step] = [
        Step(
            code="collect_verify_patient",
            title="Verify the patient at collection",
            site=col,
            roles=nurse,
            requirements=(
                _WRISTBAND,
                Question(
                    "identity_confirmed",
                    "Has the patient confirmed their name and date of birth?",
                    expect=True,
                ),
            ),
            next=("collect_label_bags",),
        ),
        _bags_step(
            "collect_label_bags",
            "Confirm bag labels applied",
            col,
            nurse,
            K.apheresis_bag,
            [S.registered],
            S.labelled,
            ("collect_bags",),
            anchor=_WRISTBAND,
            prompt="Scan the label on every apheresis bag",
        ),
        _bags_step(
            "collect_bags",
            "Collection complete",
            col,
            nurse,
            K.apheresis_bag,
            [S.labelled],
            S.collected,
            (after_collection,),
            anchor=_WRISTBAND,
            prompt="Scan every filled apheresis bag",
        ),
    ]
    if variant == "cryo_local":
        steps.append(
            _bags_step(
                "cryopreserve_local",
                "Cryopreserve and store apheresis",
                col,
                nurse,
                K.apheresis_bag,
                [S.collected],
                S.stored,
                ("pack_apheresis",),
                prompt="Scan every bag going into LN2 storage",
            ),
        )
    pack_from = [S.stored] if variant == "cryo_local" else [S.collected]
    steps += [
        _pack(
            "pack_apheresis",
            "Pack apheresis into the shipper",
            col,
            nurse,
            K.apheresis_bag,
            pack_from,
            "pickup_apheresis",
        ),
        _pickup("pickup_apheresis", "receive_apheresis"),
        _receive(
            "receive_apheresis",
            "Receive apheresis shipment",
            mfg,
            operator,
            K.apheresis_bag,
            after_receipt,
        ),
    ]
    if variant != "fresh":
        steps.append(
            _bags_step(
                "store_apheresis",
                "Store apheresis in LN2",
                mfg,
                operator,
                K.apheresis_bag,
                [S.received],
                S.stored,
                ("start_manufacturing",),
                blocked=False,
            ),
        )
    start_from = [S.received] if variant == "fresh" else [S.stored]
    steps += [
        _bags_step(
            "start_manufacturing",
            "Start manufacturing",
            mfg,
            operator,
            K.apheresis_bag,
            start_from,
            S.in_manufacturing,
            ("complete_manufacturing",),
        ),
        _bags_step(
            "complete_manufacturing",
            "Manufacturing complete",
            mfg,
            operator,
            K.apheresis_bag,
            [S.in_manufacturing],
            S.consumed,
            ("label_product",),
        ),
        _bags_step(
            "label_product",
            "Confirm product labels applied",
            mfg,
            operator,
            K.product_bag,
            [S.registered],
            S.labelled,
            ("store_product",),
            prompt="Scan the label on every product bag",
        ),
        _bags_step(
            "store_product",
            "Store product in LN2",
            mfg,
            operator,
            K.product_bag,
            [S.labelled],
            S.stored,
            ("qa_release",),
            blocked=False,
        ),
        Step(
            code="qa_release",
            title="QA release for infusion",
            site=mfg,
            roles=frozenset({R.qa}),
            requirements=(
                _COI,
                _scan(
                    K.product_bag,
                    "Scan every product bag to release",
                    each=True,
                    from_=[S.stored],
                    to=S.released,
                ),
                SignatureRequirement(
                    "sign_approval", "approval", "Sign: I approve this product for release"
                ),
            ),
            # QA may release again: a bag back from quarantine returns to storage unreleased.
            next=("pack_product", "qa_release"),
            issues_certificate=True,
        ),
        _pack(
            "pack_product",
            "Pack product into the shipper",
            mfg,
            operator,
            K.product_bag,
            [S.released],
            "pickup_product",
        ),
        _pickup("pickup_product", "receive_product"),
        _receive(
            "receive_product",
            "Receive product shipment",
            tx,
            infusion,
            K.product_bag,
            "store_at_site",
            extra=(
                Question(
                    "ambient_exposure",
                    "Were cassettes exposed to ambient temperature for more than 3 minutes?",
                    expect=False,
                    otherwise="deviation",
                ),
            ),
        ),
        _bags_step(
            "store_at_site",
            "Store product at the treatment site",
            tx,
            infusion,
            K.product_bag,
            [S.received],
            S.stored,
            ("thaw",),
            blocked=False,
        ),
        Step(
            code="thaw",
            title="Thaw one bag",
            site=tx,
            roles=infusion,
            requirements=(
                _WRISTBAND,
                _scan(K.product_bag, "Scan the bag you are thawing", from_=[S.stored], to=S.thawed),
            ),
            next=("bedside_verify",),
            countdown="start",
        ),
        Step(
            code="bedside_verify",
            title="Bedside verification (two people)",
            site=tx,
            roles=frozenset({R.infusion_nurse, R.coordinator}),
            requirements=(
                _WRISTBAND,
                _scan(K.product_bag, "Scan the thawed product bag", from_=[S.thawed]),
                _scan(K.certificate, "Scan the release certificate"),
                SignatureRequirement(
                    "sign_verification",
                    "verification",
                    "Sign: I verified the identity of the patient and the product",
                ),
            ),
            next=("infusion_start",),
            persons=2,
            countdown="check",
        ),
        Step(
            code="infusion_start",
            title="Start infusion",
            site=tx,
            roles=infusion,
            requirements=(
                _WRISTBAND,
                _scan(
                    K.product_bag, "Scan the bag at the bedside", from_=[S.thawed], to=S.infusing
                ),
            ),
            next=("infusion_end",),
            countdown="check",
        ),
        Step(
            code="infusion_end",
            title="Infusion complete",
            site=tx,
            roles=infusion,
            requirements=(
                _WRISTBAND,
                _scan(K.product_bag, "Scan the empty bag", from_=[S.infusing], to=S.infused),
            ),
            # A dose of several bags thaws the next one only after this one is infused.
            next=("thaw",),
        ),
    ]
    steps += _exception_steps()
    return Journey(variant=variant, steps=tuple(steps), start=("collect_verify_patient",))


def variant_for(starting_material: str, data: Mapping[str, Any]) -> Variant:
    """Which default journey a profile without its own step list follows."""
    if starting_material == "fresh":
        return "fresh"
    return "cryo_central" if data.get("cryopreservation") == "central" else "cryo_local"


def journey_for_profile(starting_material: str, data: Mapping[str, Any]) -> Journey:
    """The profile's own journey (``data["journey"]``), or the default for its variant."""
    raw = data.get("journey")
    if raw:
        return journey_from_data(raw)
    return default_journey(variant_for(starting_material, data))
