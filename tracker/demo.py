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

from argon2 import PasswordHasher
from sqlalchemy import select

from schedules.demo import seed_schedules
from tracker.config import Settings
from tracker.domain.access import Role
from tracker.domain.access import SiteKind
from tracker.domain.custody import CustodyState as S
from tracker.domain.custody import ItemKind
from tracker.models import Item
from tracker.models import Site
from tracker.models import User
from tracker.services import auth
from tracker.services import custody
from tracker.services import labels
from tracker.services import orders
from tracker.services import printers
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

PROFILES = [
    (
        "CD19-FRESH",
        "Anti-CD19 CAR T (fresh apheresis)",
        "S1001100",
        "fresh",
        {
            "storage_max_c": -150,
            "thaw_to_infusion_minutes": 180,
            "fresh_stability_hours": 72,
            "shelf_life_days": 270,
            "defaults_to_confirm": True,
        },
    ),
    (
        "BCMA-CRYO",
        "Anti-BCMA CAR T (cryopreserved apheresis)",
        "S1002100",
        "cryopreserved",
        {
            "storage_max_c": -130,
            "thaw_to_infusion_minutes": 60,
            "shelf_life_days": 270,
            "defaults_to_confirm": True,
        },
    ),
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
    shipper = custody.register_shipper(
        uow=uow,
        principal=admin,
        serial="EVO-DEMO-0001",
        site_code="MF-NLD",
        validated_hold_hours=240,
        now=now,
    )
    custody.change_item_state(
        uow=uow, principal=admin, item_public_id=shipper.public_id, to_state=S.charged, now=now
    )
    rng = random.Random(2026)
    for n in range(12):
        # Later journeys started earlier, so every demo event lies in the past.
        _play_journey(uow, p, settings, n, now - timedelta(days=24 + n), rng)
    from tracker import demo_alerts

    demo_alerts.seed(uow=uow, admin=admin, users=users, now=now)
    seed_schedules(uow=uow, principals=p, now=now)  # capacity, plans, waitlist
    uow.flush()
    return True


def _play_journey(
    uow: UnitOfWork,
    p: dict[str, Principal],
    settings: Settings,
    stage: int,
    start: datetime,
    rng: random.Random,
) -> None:
    """Create patient ``stage`` and move it ``stage`` steps along the journey."""

    def who(name: str) -> Principal:
        return p[name]

    t = start
    patient = orders.register_patient(
        uow=uow,
        principal=who("coordinator"),
        treatment_site_code="TC-BOS",
        given_name=GIVEN[stage],
        family_name=FAMILY[stage],
        date_of_birth=date(1950 + rng.randrange(50), rng.randrange(1, 13), rng.randrange(1, 28)),
        mrn=f"MRN-DEMO-{stage + 1:04d}",
        now=t,
    )
    product = PROFILES[stage % 2][0]
    order = orders.create_order(
        uow=uow,
        principal=who("coordinator"),
        patient_public_id=patient.public_id,
        product_code=product,
        collection_site_code="CC-PRO",
        manufacturing_site_code="MF-NLD",
        coi_fin=settings.coi_issuer_fin,
        now=t,
    )
    if stage < 1:
        return

    def step(name: str, item: str, to: S, site: str | None = None) -> None:
        nonlocal t
        # Bags leave ambient states (just collected, just received) and thawed product within
        # minutes, as the product windows require; the other steps take hours.
        quick = to in (S.packed, S.stored, S.in_manufacturing, S.infusing, S.infused)
        t += timedelta(minutes=rng.randint(1, 2)) if quick else timedelta(hours=rng.randint(2, 20))
        if to is S.labelled:  # "label applied" needs a printed label first
            _print_demo_label(uow, who(name), settings, item, t - timedelta(minutes=5))
        custody.change_item_state(
            uow=uow, principal=who(name), item_public_id=item, to_state=to, now=t, site_code=site
        )

    t += timedelta(days=1)
    bag = custody.register_bag(
        uow=uow,
        principal=who("collector"),
        order_public_id=order.public_id,
        kind=ItemKind.apheresis_bag,
        din_fin=settings.din_facility_fin,
        now=t,
    )
    plan = [
        ("collector", S.labelled, None),
        ("collector", S.collected, None),
        ("collector", S.packed, None),
        ("courier", S.in_transit, "CD-BOS"),
        ("operator", S.received, "MF-NLD"),
        ("operator", S.in_manufacturing, "MF-NLD"),
    ]
    for name, to, site in plan[: max(0, stage - 1)]:
        if to is S.in_transit:
            shipment = custody.create_shipment(
                uow=uow,
                principal=who("collector"),
                order_public_id=order.public_id,
                origin_code="CC-PRO",
                destination_code="MF-NLD",
                item_public_ids=[bag.public_id],
                courier_user_id=who("courier").user_id,
                tamper_seal=f"SEAL{rng.randrange(10**6):06d}",
                air_waybill=f"AWB{stage:08d}",
                logger_serial=f"LOG-{stage:04d}",
                now=t,
            )
            for s_to in (S.packed, S.picked_up):
                custody.change_shipment_state(
                    uow=uow,
                    principal=who("collector"),
                    shipment_public_id=shipment.public_id,
                    to_state=s_to,
                    now=t,
                )
        step(name, bag.public_id, to, site)
        if to is S.received:
            for s_to in (S.delivered, S.received):
                custody.change_shipment_state(
                    uow=uow,
                    principal=who("operator"),
                    shipment_public_id=shipment.public_id,
                    to_state=s_to,
                    now=t,
                )
    if stage < 8:
        return
    t += timedelta(days=9)
    product_bag = custody.register_bag(
        uow=uow,
        principal=who("operator"),
        order_public_id=order.public_id,
        kind=ItemKind.final_product_bag,
        parent_public_id=bag.public_id,
        din_fin=settings.din_facility_fin,
        lot=f"LOT{stage:05d}",
        now=t,
    )
    step("operator", bag.public_id, S.consumed, "MF-NLD")
    product_plan = [
        ("operator", S.labelled, "MF-NLD"),
        ("operator", S.stored, "MF-NLD"),
        ("qa", S.released, "MF-NLD"),
        ("operator", S.packed, "MF-NLD"),
        ("courier", S.in_transit, "CD-BOS"),
        ("infusion", S.received, "TC-BOS"),
        ("infusion", S.stored, "TC-BOS"),
        ("infusion", S.thawed, "TC-BOS"),
        ("infusion", S.infusing, "TC-BOS"),
        ("infusion", S.infused, "TC-BOS"),
    ]
    depth = {8: 3, 9: 5, 10: 7, 11: 10}[stage]
    for name, to, site in product_plan[:depth]:
        step(name, product_bag.public_id, to, site)


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
