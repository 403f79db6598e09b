"""Helpers for scanning tests: scanners per site, shippers, codes, and a journey driver."""

from __future__ import annotations

import itertools
import secrets
from dataclasses import dataclass
from dataclasses import field
from datetime import datetime
from datetime import timedelta
from typing import Any

from tests.conftest import WORLD_PASSWORD
from tests.conftest import World
from tests.factories import make_bag
from tests.factories import make_label_print
from tests.factories import make_order
from tracker.config import Settings
from tracker.domain import identifiers
from tracker.domain.custody import CustodyState as S
from tracker.domain.custody import ItemKind
from tracker.services import auth
from tracker.services import custody
from tracker.services import quality
from tracker.services import scans

SCANNER_SITES = ("CC1", "MF1", "TC1", "TC2", "CD1")
_counter = itertools.count(1)


def din_code(bag: Any) -> str:
    return identifiers.din_barcode_data(bag.din, "00")


def coi_code(order: Any) -> str:
    return identifiers.coi_barcode_data(order.coi)


def new_code(kind: str) -> str:
    return identifiers.new_internal_id(kind, secrets.token_bytes).value


def make_scanners(new_uow: Any, world: World, now: datetime) -> dict[str, str]:
    """One registered scanner per site: {site code: device public id}."""
    out = {}
    with new_uow() as uow:
        for code in SCANNER_SITES:
            issued = auth.register_device(
                uow=uow,
                name=f"Scanner {code}",
                kind="scanner",
                site_id=world.sites[code].id,
                now=now,
                actor_user_id=world.users["admin"].id,
            )
            out[code] = issued.device.public_id
        uow.commit()
    return out


def make_shipper(new_uow: Any, world: World, now: datetime, *, site: str = "CC1") -> Any:
    """A charged cryoshipper whose serial is its internal SHP barcode."""
    with new_uow() as uow:
        shipper = custody.register_shipper(
            uow=uow,
            principal=world.principals["admin"],
            serial=new_code("SHP"),
            site_code=site,
            validated_hold_hours=240,
            now=now,
        )
        custody.change_item_state(
            uow=uow,
            principal=world.principals["admin"],
            item_public_id=shipper.public_id,
            to_state=S.charged,
            now=now,
        )
        shipper.charged_at = now
        uow.commit()
        return shipper


def plan_shipment(
    new_uow: Any,
    world: World,
    order: Any,
    items: list[Any],
    now: datetime,
    *,
    origin: str = "CC1",
    destination: str = "MF1",
    shipper: Any = None,
    who: str = "coord",
) -> Any:
    with new_uow() as uow:
        shipment = custody.create_shipment(
            uow=uow,
            principal=world.principals[who if origin != "MF1" else "operator"],
            order_public_id=order.public_id,
            origin_code=origin,
            destination_code=destination,
            item_public_ids=[i.public_id for i in items],
            shipper_public_id=shipper.public_id if shipper else None,
            courier_user_id=world.users["courier"].id,
            now=now,
        )
        uow.commit()
        return shipment


@dataclass
class Driver:
    """Scans as people at their scanners would, one client run key per person and step."""

    new_uow: Any
    world: World
    clock: Any
    settings: Settings
    scanners: dict[str, str]
    runs: dict[tuple[str, str], str] = field(default_factory=dict)

    def run_key(self, user: str, step: str) -> str:
        return self.runs.setdefault((user, step), f"run-{next(_counter):06d}-{user}")

    def new_run(self, user: str, step: str) -> str:
        self.runs.pop((user, step), None)
        return self.run_key(user, step)

    def scan(
        self,
        user: str,
        step: str,
        raw: str,
        *,
        site: str,
        run: str | None = None,
        offline: bool = False,
        client_at: datetime | None = None,
        nonce: str | None = None,
        manual: bool = False,
        device: str | None = None,
    ) -> scans.Outcome:
        with self.new_uow() as uow:
            outcome = scans.record_scan(
                uow=uow,
                principal=self.world.principals[user],
                scan=scans.ScanInput(
                    raw=raw,
                    device=device or self.scanners[site],
                    step=step,
                    client_at=client_at or self.clock.now(),
                    nonce=nonce or f"nonce-{next(_counter):08d}",
                    client_run=run or self.run_key(user, step),
                    offline=offline,
                    manual=manual,
                ),
                now=self.clock.now(),
            )
            uow.commit()
        return outcome

    def answer(self, user: str, step: str, answers: dict[str, Any]) -> scans.Outcome:
        with self.new_uow() as uow:
            outcome = scans.answer_step(
                uow=uow,
                principal=self.world.principals[user],
                run_key=self.run_key(user, step),
                answers=answers,
                now=self.clock.now(),
            )
            uow.commit()
        return outcome

    def sign(self, user: str, step: str, meaning: str, password: str = WORLD_PASSWORD) -> Any:
        with self.new_uow() as uow:
            outcome = scans.sign_step(
                uow=uow,
                hasher=auth.make_hasher(self.settings),
                settings=self.settings,
                principal=self.world.principals[user],
                run_key=self.run_key(user, step),
                password=password,
                meaning=meaning,
                now=self.clock.now(),
            )
            uow.commit()
        return outcome

    def tick(self, minutes: int = 1) -> None:
        self.clock.advance(timedelta(minutes=minutes))


def ok(outcome: scans.Outcome, status: str = "incomplete") -> dict[str, Any]:
    assert outcome.body["status"] == status, outcome.body
    return outcome.body


@dataclass
class Journey:
    """One order's things, for a test to walk through the steps."""

    order: Any
    bags: list[Any]
    wristband: str
    shipper: Any = None
    shipment: Any = None
    products: list[Any] = field(default_factory=list)
    product_shipper: Any = None
    product_shipment: Any = None
    logger: str = field(default_factory=lambda: new_code("LOG"))
    seal: str = field(default_factory=lambda: f"SEAL-{next(_counter):06d}")
    certificate: str | None = None


def new_journey(d: Driver, *, bags: int = 2, mrn: str | None = None) -> Journey:
    now = d.clock.now()
    order = make_order(d.new_uow, d.world, now, mrn=mrn or f"MRN-{next(_counter)}")
    made = [make_bag(d.new_uow, d.world, order, now) for _ in range(bags)]
    for bag in made:  # printed at registration, so "label applied" can be confirmed
        make_label_print(d.new_uow, d.world, bag, now)
    with d.new_uow() as uow:
        from tracker.models import Patient

        wristband = uow.session.get(Patient, order.patient_id).wristband_code
    return Journey(order=order, bags=made, wristband=wristband)


# The steps in play order, each as a function of the driver and the journey.


def collect(d: Driver, j: Journey, upto: str = "collect_bags") -> None:
    ok(d.scan("nurse", "collect_verify_patient", j.wristband, site="CC1"))
    ok(d.answer("nurse", "collect_verify_patient", {"identity_confirmed": True}), "ok")
    if upto == "collect_verify_patient":
        return
    for step in ("collect_label_bags", "collect_bags"):
        ok(d.scan("nurse", step, j.wristband, site="CC1"))
        for i, bag in enumerate(j.bags):
            last = i == len(j.bags) - 1
            ok(d.scan("nurse", step, din_code(bag), site="CC1"), "ok" if last else "incomplete")
        if step == upto:
            return


def pack(d: Driver, j: Journey) -> None:
    j.shipper = j.shipper or make_shipper(d.new_uow, d.world, d.clock.now())
    j.shipment = plan_shipment(d.new_uow, d.world, j.order, j.bags, d.clock.now())
    step = "pack_apheresis"
    ok(d.scan("nurse", step, coi_code(j.order), site="CC1"))
    ok(d.scan("nurse", step, j.shipper.serial, site="CC1"))
    for bag in j.bags:
        ok(d.scan("nurse", step, din_code(bag), site="CC1"))
    ok(d.scan("nurse", step, j.logger, site="CC1"))
    ok(d.scan("nurse", step, j.seal, site="CC1"), "ok")


def pickup(d: Driver, j: Journey, step: str = "pickup_apheresis", shipper: Any = None) -> None:
    ok(d.scan("courier", step, coi_code(j.order), site="CD1"))
    ok(d.scan("courier", step, (shipper or j.shipper).serial, site="CD1"), "ok")


def receive(d: Driver, j: Journey) -> None:
    step = "receive_apheresis"
    ok(d.scan("operator", step, coi_code(j.order), site="MF1"))
    ok(d.scan("operator", step, j.shipper.serial, site="MF1"))
    ok(d.scan("operator", step, j.seal, site="MF1"))
    ok(d.scan("operator", step, j.logger, site="MF1"))
    ok(d.answer("operator", step, {"temperature_alarm": False}))
    for i, bag in enumerate(j.bags):
        last = i == len(j.bags) - 1
        ok(d.scan("operator", step, din_code(bag), site="MF1"), "ok" if last else "incomplete")


def bags_step(d: Driver, j: Journey, step: str, user: str, site: str, bags: list[Any]) -> None:
    ok(d.scan(user, step, coi_code(j.order), site=site))
    for i, bag in enumerate(bags):
        last = i == len(bags) - 1
        ok(d.scan(user, step, din_code(bag), site=site), "ok" if last else "incomplete")


GOOD_MATERIAL = {
    "tnc": (3.2, "10^9 cells"),
    "viability": (94.0, "%"),
    "cd3_fraction": (0.45, "fraction"),
    "volume": (210.0, "mL"),
}
PASSING_RESULTS = {
    "sterility": ("negative", None),
    "endotoxin": ("0.5", "EU/mL"),
    "mycoplasma": ("negative", None),
    "viability": ("88", "%"),
    "identity": ("positive", None),
    "potency": ("450", "pg/mL"),
    "vcn": ("1.8", "copies/cell"),
}


def accept_material(d: Driver, j: Journey, measurements: dict[str, Any] | None = None) -> Any:
    """The manufacturing site records the starting material's measurements at receipt."""
    with d.new_uow() as uow:
        outcome = quality.record_acceptance(
            uow=uow,
            principal=d.world.principals["operator"],
            order_public_id=j.order.public_id,
            measurements=measurements or GOOD_MATERIAL,
            now=d.clock.now(),
        )
        uow.commit()
    return outcome


def lot_code(d: Driver, j: Journey) -> str:
    with d.new_uow() as uow:
        lot = quality.order_lot(uow.session, j.order.id)
        assert lot is not None
        return lot.code


def pass_release_tests(d: Driver, j: Journey, results: dict[str, Any] | None = None) -> str:
    """The operator records every release test, QA reviews each: the lot is ready to release."""
    code = lot_code(d, j)
    for test, (value, unit) in (results or PASSING_RESULTS).items():
        with d.new_uow() as uow:
            row = quality.record_result(
                uow=uow,
                principal=d.world.principals["operator"],
                lot_code=code,
                test_code=test,
                value=value,
                unit=unit,
                now=d.clock.now(),
            )
            uow.commit()
        with d.new_uow() as uow:
            quality.review_result(
                uow=uow, principal=d.world.principals["qa"], result_id=row.id, now=d.clock.now()
            )
            uow.commit()
    return code


def manufacture(d: Driver, j: Journey, products: int = 1, *, accept: bool = True) -> None:
    if accept:
        accept_material(d, j)
    bags_step(d, j, "start_manufacturing", "operator", "MF1", j.bags)
    bags_step(d, j, "complete_manufacturing", "operator", "MF1", j.bags)
    j.products = [
        make_bag(
            d.new_uow,
            d.world,
            j.order,
            d.clock.now(),
            kind=ItemKind.final_product_bag,
            who="operator",
            parent_public_id=j.bags[0].public_id,
        )
        for _ in range(products)
    ]
    for bag in j.products:
        make_label_print(d.new_uow, d.world, bag, d.clock.now(), who="operator")
    bags_step(d, j, "label_product", "operator", "MF1", j.products)
    bags_step(d, j, "store_product", "operator", "MF1", j.products)


def release(d: Driver, j: Journey) -> None:
    with d.new_uow() as uow:
        lot = quality.order_lot(uow.session, j.order.id)
        # Tests that recorded their own results (or a bag back from quarantine, released
        # again from the same lot) go straight to the scan step.
        untested = lot is not None and not quality.results_by_test(uow.session, lot.id)
    if untested:
        pass_release_tests(d, j)
    step = "qa_release"
    ok(d.scan("qa", step, coi_code(j.order), site="MF1"))
    for bag in j.products:
        ok(d.scan("qa", step, din_code(bag), site="MF1"))
    body = ok(d.sign("qa", step, "approval"), "ok")
    j.certificate = body["certificate"]


def ship_product(d: Driver, j: Journey) -> None:
    j.product_shipper = make_shipper(d.new_uow, d.world, d.clock.now(), site="MF1")
    j.product_shipment = plan_shipment(
        d.new_uow, d.world, j.order, j.products, d.clock.now(), origin="MF1", destination="TC1"
    )
    step = "pack_product"
    j.logger, j.seal = new_code("LOG"), f"SEAL-{next(_counter):06d}"
    ok(d.scan("operator", step, coi_code(j.order), site="MF1"))
    ok(d.scan("operator", step, j.product_shipper.serial, site="MF1"))
    for bag in j.products:
        ok(d.scan("operator", step, din_code(bag), site="MF1"))
    ok(d.scan("operator", step, j.logger, site="MF1"))
    ok(d.scan("operator", step, j.seal, site="MF1"), "ok")
    pickup(d, j, "pickup_product", j.product_shipper)
    step = "receive_product"
    ok(d.scan("infusion", step, coi_code(j.order), site="TC1"))
    ok(d.scan("infusion", step, j.product_shipper.serial, site="TC1"))
    ok(d.scan("infusion", step, j.seal, site="TC1"))
    ok(d.scan("infusion", step, j.logger, site="TC1"))
    ok(d.answer("infusion", step, {"temperature_alarm": False}))
    ok(d.answer("infusion", step, {"ambient_exposure": False}))
    for i, bag in enumerate(j.products):
        last = i == len(j.products) - 1
        ok(d.scan("infusion", step, din_code(bag), site="TC1"), "ok" if last else "incomplete")
    bags_step(d, j, "store_at_site", "infusion", "TC1", j.products)


def thaw(d: Driver, j: Journey, bag: Any = None) -> dict[str, Any]:
    ok(d.scan("infusion", "thaw", j.wristband, site="TC1"))
    return ok(d.scan("infusion", "thaw", din_code(bag or j.products[0]), site="TC1"), "ok")


def verify_at_bedside(d: Driver, j: Journey, bag: Any = None) -> None:
    step = "bedside_verify"
    for person in ("infusion", "coord"):
        ok(d.scan(person, step, j.wristband, site="TC1"))
        ok(d.scan(person, step, din_code(bag or j.products[0]), site="TC1"))
        ok(d.scan(person, step, j.certificate, site="TC1"))
    ok(d.sign("infusion", step, "verification"))
    ok(d.sign("coord", step, "verification"), "ok")


def infuse(d: Driver, j: Journey, bag: Any = None) -> None:
    for step in ("infusion_start", "infusion_end"):
        ok(d.scan("infusion", step, j.wristband, site="TC1"))
        ok(d.scan("infusion", step, din_code(bag or j.products[0]), site="TC1"), "ok")


def walk(d: Driver, j: Journey, until: str) -> None:
    """Play the fresh-apheresis journey up to and including step group ``until``."""
    plan = [
        ("collect", lambda: collect(d, j)),
        ("pack", lambda: pack(d, j)),
        ("pickup", lambda: pickup(d, j)),
        ("receive", lambda: receive(d, j)),
        ("manufacture", lambda: manufacture(d, j)),
        ("release", lambda: release(d, j)),
        ("ship_product", lambda: ship_product(d, j)),
        ("thaw", lambda: thaw(d, j)),
        ("verify", lambda: verify_at_bedside(d, j)),
        ("infuse", lambda: infuse(d, j)),
    ]
    for name, play in plan:
        play()
        if name == until:
            return
    raise AssertionError(f"no step group {until!r}")
