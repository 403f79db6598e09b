"""Demo data: sites, a user per role, and a dozen synthetic patients along the journey.

Idempotent: if the demo sites exist nothing is added. Every journey is played through the
same services the API uses, so events, hash chains and audit rows are real.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import date
from datetime import datetime
from datetime import timedelta
from typing import Any

from argon2 import PasswordHasher
from sqlalchemy import select

from schedules.demo import seed_schedules
from tracker import demo_quality
from tracker.config import Settings
from tracker.demo_quality import profile_quality
from tracker.domain.access import Role
from tracker.domain.access import SiteKind
from tracker.domain.custody import CustodyState as S
from tracker.domain.custody import ItemKind
from tracker.domain.identifiers import InternalKind
from tracker.domain.identifiers import coi_barcode_data
from tracker.domain.identifiers import din_barcode_data
from tracker.domain.identifiers import new_internal_id
from tracker.domain.journey import Question
from tracker.domain.journey import ScanKind
from tracker.domain.journey import ScanRequirement
from tracker.domain.journey import SiteRole
from tracker.domain.journey import Step
from tracker.domain.journey import default_journey
from tracker.domain.journey import journey_for_profile
from tracker.domain.journey import journey_to_data
from tracker.models import Item
from tracker.models import Shipment
from tracker.models import Site
from tracker.models import TherapyOrder
from tracker.models import User
from tracker.services import auth
from tracker.services import custody
from tracker.services import labels
from tracker.services import orders
from tracker.services import printers
from tracker.services import scans
from tracker.services.principals import Principal
from tracker.services.principals import principal_for_user
from tracker.unit_of_work import UnitOfWork

DEMO_PASSWORD = "demo-password-2026"

SITES = [
    (
        "TC-BOS",
        "Harbour Cancer Centre",
        SiteKind.treatment_centre,
        "America/New_York",
        "1 Harbour Way, Boston MA",
    ),
    (
        "CC-PRO",
        "Providence Apheresis Unit",
        SiteKind.collection_centre,
        "America/New_York",
        "20 Collection Rd, Providence RI",
    ),
    (
        "PL-CHI",
        "Lakeside Cell Processing Lab",
        SiteKind.processing_lab,
        "America/Chicago",
        "300 Lab Street, Chicago IL",
    ),
    (
        "MF-NLD",
        "Polder Cell Manufacturing",
        SiteKind.manufacturing_facility,
        "Europe/Amsterdam",
        "Industrieweg 5, Leiden",
    ),
    (
        "CD-BOS",
        "Night Owl Courier Depot",
        SiteKind.courier_depot,
        "America/New_York",
        "9 Depot Ave, Boston MA",
    ),
]

# username, full name, role, site code (None = all sites, admin only)
USERS = [
    ("admin", "Ada Admin", Role.admin, None),
    ("coordinator", "Cora Coordinator", Role.coordinator, "TC-BOS"),
    ("collector", "Colin Collection-Nurse", Role.collection_nurse, "CC-PRO"),
    ("operator", "Opal Operator", Role.manufacturing_operator, "MF-NLD"),
    ("qa", "Quinn Quality", Role.qa, "MF-NLD"),
    ("infusion", "Ines Infusion-Nurse", Role.infusion_nurse, "TC-BOS"),
    ("courier", "Kurt Courier", Role.courier, "CD-BOS"),
]

# Each profile carries its journey as data: the steps, who scans what where, what follows.
PROFILES = [
    (
        "CD19-FRESH",
        "Anti-CD19 CAR T (fresh apheresis)",
        "S1001100",
        "fresh",
        {
            "storage_max_c": -150,
            "thaw_to_infusion_minutes": 180,
            "two_person_window_minutes": 15,
            "fresh_stability_hours": 72,
            "shelf_life_days": 270,
            "defaults_to_confirm": True,
            "journey": journey_to_data(default_journey("fresh")),
            "quality": profile_quality(fresh=True, rapid=False),
        },
    ),
    (
        "BCMA-CRYO",
        "Anti-BCMA CAR T (apheresis cryopreserved at the collection site)",
        "S1002100",
        "cryopreserved",
        {
            "storage_max_c": -130,
            "thaw_to_infusion_minutes": 60,
            "shelf_life_days": 270,
            "two_person_window_minutes": 15,
            "cryopreservation": "local",
            "defaults_to_confirm": True,
            "journey": journey_to_data(default_journey("cryo_local")),
            "quality": profile_quality(fresh=False, rapid=True),
        },
    ),
    (
        "CD19-CENTRAL",
        "Anti-CD19 CAR T (fresh to a central processing lab, cryopreserved there)",
        "S1003100",
        "cryopreserved",
        {
            "storage_max_c": -150,
            "thaw_to_infusion_minutes": 30,
            "cryopreservation": "central",
            "defaults_to_confirm": True,
            "journey": journey_to_data(default_journey("cryo_central")),
            "quality": profile_quality(fresh=False, rapid=False),
        },
    ),
]

# One scanner station per site (the scanner page asks which one it is).
SCANNERS = [
    ("CC-PRO", "Apheresis bay scanner"),
    ("PL-CHI", "Processing lab scanner"),
    ("MF-NLD", "Receiving and QA bench scanner"),
    ("TC-BOS", "Cell therapy pharmacy scanner"),
    ("CD-BOS", "Courier handheld"),
]

DEMO_PRINTERS = [("CC-PRO", "Apheresis bench Zebra"), ("MF-NLD", "Fill room Zebra")]

GIVEN = [
    "Avery",
    "Blake",
    "Casey",
    "Devon",
    "Emery",
    "Finley",
    "Harper",
    "Jules",
    "Kendall",
    "Logan",
    "Morgan",
    "Rowan",
]
FAMILY = [
    "Testperson",
    "Sample",
    "Placeholder",
    "Fictional",
    "Demo",
    "Example",
    "Synthetic",
    "Madeup",
    "Invented",
    "Dummy",
    "Imaginary",
    "Notreal",
]


@dataclass(frozen=True)
class DemoLogin:
    username: str
    role: str
    site: str


def demo_logins() -> list[DemoLogin]:
    return [DemoLogin(u, r.value, s or "all sites") for u, _, r, s in USERS]


def seed_demo(
    *, uow: UnitOfWork, hasher: PasswordHasher, settings: Settings, now: datetime
) -> bool:
    """Load the demo data once; return False when it was already there."""
    session = uow.session
    if session.scalar(select(Site.id).where(Site.code == SITES[0][0])) is not None:
        return False
    sites: dict[str, Site] = {}
    for code, name, kind, tz, address in SITES:
        sites[code] = orders.create_site(
            uow=uow, code=code, name=name, kind=kind, timezone=tz, address=address, now=now
        )
    users: dict[str, User] = {}
    for username, full_name, role, site_code in USERS:
        site_id = sites[site_code].id if site_code else None
        grants: list[tuple[Role, int | None]] = [(role, site_id)]
        if role is Role.coordinator:
            # The coordinator also follows the collection centre's work for their patients.
            grants.append((Role.coordinator, sites["CC-PRO"].id))
        users[username] = auth.create_user(
            uow=uow,
            hasher=hasher,
            username=username,
            full_name=full_name,
            password=DEMO_PASSWORD,
            grants=grants,
            now=now,
            phone="+15550100" + str(len(users)).zfill(3) if role is Role.courier else None,
        )
    for code, name, product_code, material, data in PROFILES:
        orders.create_product_profile(
            uow=uow,
            code=code,
            name=name,
            product_code=product_code,
            starting_material=material,
            data=data,
            now=now,
        )
    p = {name: principal_for_user(user) for name, user in users.items()}
    admin = p["admin"]
    for site_code, printer_name in DEMO_PRINTERS:
        # 127.0.0.1:9100: unreachable until scripts/fake_zebra.py (or a real printer) listens.
        printers.create_printer(
            uow=uow,
            principal=admin,
            site_code=site_code,
            name=printer_name,
            host="127.0.0.1",
            now=now,
        )
    rng = random.Random(2026)
    stations = {
        code: auth.register_device(
            uow=uow,
            name=name,
            kind="scanner",
            site_id=sites[code].id,
            now=now,
            actor_user_id=users["admin"].id,
        ).device.public_id
        for code, name in SCANNERS
    }
    # Spare charged shippers, so a demo user can pack the next shipment by hand.
    for site_code in ("CC-PRO", "MF-NLD"):
        _charged_shipper(uow, admin, site_code, now, rng)
    for n in range(12):
        # Later journeys started earlier, so every demo event lies in the past.
        _play_journey(uow, p, settings, hasher, stations, n, now - timedelta(days=24 + n), rng)
    from tracker import demo_alerts

    demo_alerts.seed(uow=uow, admin=admin, users=users, now=now)
    seed_schedules(uow=uow, principals=p, now=now)  # capacity, plans, waitlist
    uow.flush()
    return True


def _charged_shipper(
    uow: UnitOfWork, admin: Principal, site_code: str, now: datetime, rng: random.Random
) -> str:
    """A cryoshipper whose serial is its own scannable SHP code, charged at ``site_code``."""
    shipper = custody.register_shipper(
        uow=uow,
        principal=admin,
        serial=new_internal_id(InternalKind.shipper, rng).value,
        site_code=site_code,
        validated_hold_hours=240,
        now=now,
    )
    custody.change_item_state(
        uow=uow, principal=admin, item_public_id=shipper.public_id, to_state=S.charged, now=now
    )
    shipper.charged_at = now
    return shipper.public_id


# How far each demo patient goes: the last journey step completed (None: order only; "" :
# bag registered, nothing scanned yet).
DEMO_DEPTH: list[str | None] = [
    None,
    "",
    "collect_label_bags",
    "collect_bags",
    "pack_apheresis",
    "pickup_apheresis",
    "receive_apheresis",
    "start_manufacturing",
    "qa_release",
    "pickup_product",
    "store_at_site",
    "infusion_end",
]

# At which scanner (by site code) each step is played, and who may play it there.
_PERFORMERS = {
    SiteRole.collection: ("CC-PRO", ["collector"]),
    SiteRole.manufacturing: ("MF-NLD", ["operator", "qa"]),
    SiteRole.treatment: ("TC-BOS", ["infusion", "coordinator"]),
    SiteRole.courier: ("CD-BOS", ["courier"]),
}


class _DemoScanner:
    """Performs journey steps for one demo order the way people at the scanners would."""

    def __init__(
        self,
        uow: UnitOfWork,
        p: dict[str, Principal],
        settings: Settings,
        hasher: PasswordHasher,
        stations: dict[str, str],
        order: TherapyOrder,
        wristband: str,
        rng: random.Random,
        start: datetime,
    ) -> None:
        self.uow, self.p, self.settings, self.hasher = uow, p, settings, hasher
        self.stations, self.order, self.wristband, self.rng = stations, order, wristband, rng
        self.t = start
        self.journey = journey_for_profile(
            order.product_profile.starting_material, order.product_profile.data
        )
        self.certificate: str | None = None
        self.complete = False
        self.seals: dict[int, tuple[str, str]] = {}

    def _done(self, body: dict[str, Any]) -> dict[str, Any]:
        if body["status"] == "error":  # the demo plays only correct scans
            raise RuntimeError(f"demo refused at {body['step']['code']}: {body['message']}")
        self.complete = body["complete"]
        return body

    def _scan(self, who: str, site: str, step: Step, run: str, raw: str) -> dict[str, Any]:
        self.t += timedelta(seconds=40)
        outcome = scans.record_scan(
            uow=self.uow,
            principal=self.p[who],
            scan=scans.ScanInput(
                raw=raw,
                device=self.stations[site],
                step=step.code,
                client_at=self.t,
                nonce=f"demo-{self.rng.getrandbits(64):016x}",
                client_run=run,
            ),
            now=self.t,
            options=scans.ParseOptions(coi_check_scope=self.settings.coi_check_scope),
        )
        return self._done(outcome.body)

    def _codes(self, req: ScanRequirement, shipment: Shipment | None) -> list[str]:
        order = self.order
        kind = next(iter(req.kinds))
        if kind is ScanKind.wristband:
            return [self.wristband]
        if kind is ScanKind.coi_label:
            return [coi_barcode_data(order.coi)]
        if kind is ScanKind.certificate:
            return [self.certificate or ""]
        if shipment is not None and kind is ScanKind.shipper:
            return [shipment.shipper.serial or ""] if shipment.shipper else []
        if shipment is not None and kind in (ScanKind.logger, ScanKind.seal):
            logger, seal = self.seals[shipment.id]
            return [logger if kind is ScanKind.logger else seal]
        item_kind = "apheresis_bag" if kind is ScanKind.apheresis_bag else "final_product_bag"
        bags = [
            i
            for i in order.items
            if i.kind == item_kind
            and (shipment is None or i in shipment.items)
            and (not req.from_states or S(i.state) in req.from_states)
        ]
        chosen = bags if req.each else bags[:1]
        return [din_barcode_data(i.din or "", "00") for i in chosen]

    def perform(self, step: Step) -> None:
        """Scan, answer and sign everything the step asks for, in its order."""
        # Between thaw and infusion minutes pass, not hours: the countdown is running.
        bedside = step.countdown == "check" or step.code == "infusion_end"
        self.t += timedelta(minutes=5) if bedside else timedelta(hours=self.rng.randint(2, 20))
        site, candidates = _PERFORMERS[step.site]
        people = [
            name
            for name in candidates
            if any(role in step.roles for role, _ in self.p[name].grants)
        ][: step.persons]
        shipment = self._shipment_for(step)
        for person in people:
            run = f"demo-run-{self.rng.getrandbits(48):012x}"
            for req in step.requirements:
                if isinstance(req, ScanRequirement):
                    for raw in self._codes(req, shipment):
                        self._scan(person, site, step, run, raw)
                elif isinstance(req, Question):
                    answer: bool | str = req.expect if req.expect is not None else "demo"
                    self._done(
                        scans.answer_step(
                            uow=self.uow,
                            principal=self.p[person],
                            run_key=run,
                            answers={req.key: answer},
                            now=self.t,
                        ).body
                    )
                else:
                    body = scans.sign_step(
                        uow=self.uow,
                        hasher=self.hasher,
                        settings=self.settings,
                        principal=self.p[person],
                        run_key=run,
                        password=DEMO_PASSWORD,
                        meaning=req.meaning,
                        now=self.t,
                    ).body
                    self.certificate = self._done(body).get("certificate") or self.certificate
        if not self.complete:
            raise RuntimeError(f"demo left '{step.code}' incomplete")

    def _shipment_for(self, step: Step) -> Shipment | None:
        """Plan the shipment a packing step needs (with a fresh shipper, logger and seal)."""
        if step.shipment is None:
            return None
        if step.code.startswith("pack"):
            apheresis = step.code == "pack_apheresis"
            origin, destination = ("CC-PRO", "MF-NLD") if apheresis else ("MF-NLD", "TC-BOS")
            planner = self.p["collector" if apheresis else "operator"]
            kind = "apheresis_bag" if apheresis else "final_product_bag"
            shipper = _charged_shipper(self.uow, self.p["admin"], origin, self.t, self.rng)
            shipment = custody.create_shipment(
                uow=self.uow,
                principal=planner,
                order_public_id=self.order.public_id,
                origin_code=origin,
                destination_code=destination,
                item_public_ids=[i.public_id for i in self.order.items if i.kind == kind],
                shipper_public_id=shipper,
                courier_user_id=self.p["courier"].user_id,
                air_waybill=f"AWB{self.rng.randrange(10**8):08d}",
                now=self.t,
            )
            self.seals[shipment.id] = (
                new_internal_id(InternalKind.logger, self.rng).value,
                f"SEAL{self.rng.randrange(10**6):06d}",
            )
            return shipment
        return self.order.shipments[-1]


def _play_journey(
    uow: UnitOfWork,
    p: dict[str, Principal],
    settings: Settings,
    hasher: PasswordHasher,
    stations: dict[str, str],
    stage: int,
    start: datetime,
    rng: random.Random,
) -> None:
    """Create patient ``stage`` and play its journey through scans up to ``DEMO_DEPTH``."""
    t = start
    patient = orders.register_patient(
        uow=uow,
        principal=p["coordinator"],
        treatment_site_code="TC-BOS",
        given_name=GIVEN[stage],
        family_name=FAMILY[stage],
        date_of_birth=date(1950 + rng.randrange(50), rng.randrange(1, 13), rng.randrange(1, 28)),
        mrn=f"MRN-DEMO-{stage + 1:04d}",
        now=t,
    )
    order = orders.create_order(
        uow=uow,
        principal=p["coordinator"],
        patient_public_id=patient.public_id,
        product_code=PROFILES[stage % 2][0],
        collection_site_code="CC-PRO",
        manufacturing_site_code="MF-NLD",
        coi_fin=settings.coi_issuer_fin,
        now=t,
    )
    depth = DEMO_DEPTH[stage]
    if depth is None:
        return
    t += timedelta(days=1)
    bag = custody.register_bag(
        uow=uow,
        principal=p["collector"],
        order_public_id=order.public_id,
        kind=ItemKind.apheresis_bag,
        din_fin=settings.din_facility_fin,
        now=t,
    )
    # Printed at registration, so the "label applied" scan can confirm it (labels gate).
    _print_demo_label(uow, p["collector"], settings, bag.public_id, t)
    if not depth:
        return
    scanner = _DemoScanner(
        uow, p, settings, hasher, stations, order, patient.wristband_code, rng, t
    )
    for step in scanner.journey.steps:
        if step.exception:
            continue
        if step.code == "label_product":
            # Manufacturing made one product bag from the apheresis bag.
            product = custody.register_bag(
                uow=uow,
                principal=p["operator"],
                order_public_id=order.public_id,
                kind=ItemKind.final_product_bag,
                parent_public_id=bag.public_id,
                din_fin=settings.din_facility_fin,
                lot=f"LOT{stage:05d}",
                now=scanner.t + timedelta(days=9),
            )
            scanner.t += timedelta(days=9)
            _print_demo_label(uow, p["operator"], settings, product.public_id, scanner.t)
        uow.session.expire(order)  # its items and shipments change with every step
        if step.code == "start_manufacturing":
            demo_quality.accept(uow, p, order.public_id, stage, scanner.t + timedelta(hours=1))
        elif step.code == "qa_release":
            demo_quality.test_results(uow, p, order.id, stage, scanner.t)
        scanner.perform(step)
        if step.code == depth:
            if stage == demo_quality.REJECTED_STAGE:
                demo_quality.accept(uow, p, order.public_id, stage, scanner.t + timedelta(hours=1))
            elif stage == demo_quality.IN_PROGRESS_STAGE:
                demo_quality.partial_results(uow, p, order.id, scanner.t + timedelta(hours=6))
            return
    raise AssertionError(f"demo depth {depth!r} is not a step of {scanner.journey.variant}")


def _print_demo_label(
    uow: UnitOfWork, principal: Principal, settings: Settings, item: str, at: datetime
) -> None:
    """Print a bag's label as a PDF download, as a nurse without a printer would."""
    kind = uow.session.scalar(select(Item.kind).where(Item.public_id == item))
    labels.print_label(
        uow=uow,
        principal=principal,
        ctx=labels.LabelContext.from_settings(settings),
        kind=labels.label_kinds_for(str(kind))[0],
        target_public_id=item,
        now=at,
    )
