"""Test data builders with defaults: make_order(world, **overrides) and friends."""

from __future__ import annotations

from datetime import date
from datetime import datetime
from typing import Any

from tests.conftest import WORLD_PASSWORD
from tests.conftest import World
from tests.factories_quality import quality_profile_data
from tracker.config import Settings
from tracker.domain.access import Role
from tracker.domain.access import SiteKind
from tracker.domain.custody import ItemKind
from tracker.services import auth
from tracker.services import custody
from tracker.services import orders
from tracker.services.principals import principal_for_user

SITE_SPECS = {
    "TC1": ("Treatment One", SiteKind.treatment_centre, "America/New_York"),
    "TC2": ("Treatment Two", SiteKind.treatment_centre, "Europe/Berlin"),
    "CC1": ("Collection One", SiteKind.collection_centre, "America/New_York"),
    "MF1": ("Manufacturing One", SiteKind.manufacturing_facility, "Europe/Amsterdam"),
    "CD1": ("Courier Depot", SiteKind.courier_depot, "America/New_York"),
}

USER_SPECS = {
    "admin": [(Role.admin, None)],
    "coord": [(Role.coordinator, "TC1"), (Role.coordinator, "CC1")],
    "coord2": [(Role.coordinator, "TC2")],
    "nurse": [(Role.collection_nurse, "CC1")],
    "operator": [(Role.manufacturing_operator, "MF1")],
    "qa": [(Role.qa, "MF1")],
    "infusion": [(Role.infusion_nurse, "TC1")],
    "courier": [(Role.courier, "CD1")],
}


def build_world(new_uow: Any, settings: Settings, now: datetime) -> World:
    hasher = auth.make_hasher(settings)
    with new_uow() as uow:
        sites = {
            code: orders.create_site(
                uow=uow,
                code=code,
                name=name,
                kind=kind,
                timezone=tz,
                address="1 Test Street",
                now=now,
            )
            for code, (name, kind, tz) in SITE_SPECS.items()
        }
        users = {}
        for username, grants in USER_SPECS.items():
            users[username] = auth.create_user(
                uow=uow,
                hasher=hasher,
                username=username,
                full_name=username.title() + " User",
                password=WORLD_PASSWORD,
                grants=[(r, sites[s].id if s else None) for r, s in grants],
                now=now,
            )
        orders.create_product_profile(
            uow=uow,
            code="CD19-FRESH",
            name="Anti-CD19 fresh",
            product_code="S1001100",
            starting_material="fresh",
            data={
                "storage_max_c": -150,
                "shelf_life_days": 270,
                "fresh_stability_hours": 72,
                "quality": quality_profile_data(),
            },
            now=now,
        )
        uow.commit()
        principals = {name: principal_for_user(u) for name, u in users.items()}
    return World(sites=sites, users=users, principals=principals, password=WORLD_PASSWORD)


def make_order(
    new_uow: Any,
    world: World,
    now: datetime,
    *,
    site: str = "TC1",
    coordinator: str = "coord",
    mrn: str = "MRN-1",
    **_: Any,
) -> Any:
    with new_uow() as uow:
        patient = orders.register_patient(
            uow=uow,
            principal=world.principals[coordinator],
            treatment_site_code=site,
            given_name="Test",
            family_name="Patient",
            date_of_birth=date(1970, 1, 2),
            mrn=mrn,
            now=now,
        )
        order = orders.create_order(
            uow=uow,
            principal=world.principals[coordinator],
            patient_public_id=patient.public_id,
            product_code="CD19-FRESH",
            collection_site_code="CC1",
            manufacturing_site_code="MF1",
            coi_fin="W9999",
            now=now,
        )
        uow.commit()
        return order


def make_bag(
    new_uow: Any,
    world: World,
    order: Any,
    now: datetime,
    *,
    kind: ItemKind = ItemKind.apheresis_bag,
    who: str = "nurse",
    **kw: Any,
) -> Any:
    with new_uow() as uow:
        bag = custody.register_bag(
            uow=uow,
            principal=world.principals[who],
            order_public_id=order.public_id,
            kind=kind,
            now=now,
            **kw,
        )
        uow.commit()
        return bag


def label_context() -> Any:
    from tracker.services.labels import LabelContext

    return LabelContext(
        public_base_url="https://tracker.test", coi_check_scope="full", grai_prefix="061414100001"
    )


def make_label_print(
    new_uow: Any,
    world: World,
    item: Any,
    now: datetime,
    *,
    who: str = "nurse",
    kind: Any = None,
    **kw: Any,
) -> Any:
    """Print an item's main label as a PDF download (recorded as a successful print)."""
    from tracker.services import labels

    with new_uow() as uow:
        result = labels.print_label(
            uow=uow,
            principal=world.principals[who],
            ctx=label_context(),
            kind=kind or labels.label_kinds_for(item.kind)[0],
            target_public_id=item.public_id,
            now=now,
            **kw,
        )
        uow.commit()
        return result
