"""A multi-site quality data set for the comparability tests, and what it says in plain terms.

Three manufacturing sites, two processes, rejections (one corrected), a re-collection, OOS
results (current, retested and corrected), an exceptional release, a rejected lot, a lot still
in testing, and vein-to-vein legs of different lengths. Orders, bags and custody events go
through the real services (custody changes at the times the legs say), so the quality service
opens each lot and its release tests when the bag enters manufacturing; acceptances, results
and releases are written with ``tests.factories_quality``.

``SPECS`` is the input the tests compute their expected numbers from, independently of the
code under test.
"""

from __future__ import annotations

from dataclasses import dataclass
from dataclasses import field
from datetime import date
from datetime import datetime
from datetime import timedelta
from typing import Any

from sqlalchemy import select

from tests.conftest import World
from tests.factories import make_label_print
from tests.factories_quality import make_acceptance
from tests.factories_quality import make_lot_release
from tests.factories_quality import make_result
from tests.factories_quality import quality_profile_data
from tracker.domain.access import SiteKind
from tracker.domain.custody import CustodyState as S
from tracker.domain.custody import ItemKind
from tracker.models import Deviation
from tracker.models import Item
from tracker.models_quality import ManufacturingLot
from tracker.models_quality import ReleaseTest
from tracker.services import custody
from tracker.services import orders

EXTRA_SITES = {
    "MF2": ("Manufacturing Two", SiteKind.manufacturing_facility, "Asia/Singapore"),
    "MF3": ("Manufacturing Three", SiteKind.manufacturing_facility, "America/Chicago"),
}
PROFILES = {"standard_9d": "CART-STD", "rapid_3d": "CART-RAPID"}
UNITS = {"endotoxin": "EU/mL", "viability": "%", "potency": "pg/mL", "vcn": "copies/cell"}
QUALITATIVE = {"sterility": "negative", "mycoplasma": "negative", "identity": "positive"}
# Hours from the apheresis bag's receipt to the lot's start (queue before manufacturing).
QUEUE_HOURS = 6.0
# The product bags' custody "released" is recorded this long after the lot's release record.
CUSTODY_RELEASE_LAG = 1.5

# One result as recorded: (value as text, number or None, outcome).
Result = tuple[str, float | None, str]


@dataclass(frozen=True)
class LotSpec:
    status: str  # testing | released | exceptional_release | rejected
    # Test code -> its results in the order recorded; each later one corrects the one before.
    # A code not listed keeps the default passing result; one mapped to [] is still pending.
    results: dict[str, list[Result]] = field(default_factory=dict)


@dataclass(frozen=True)
class OrderSpec:
    site: str
    process: str
    # Each chain is one decision and its corrections, oldest first (the last one stands).
    decisions: list[list[str]]
    legs: list[float]  # hours of the legs the journey has completed, in order
    lot: LotSpec | None = None
    index: int = 0


def _default_results(i: int) -> dict[str, list[Result]]:
    viability = 80.0 + i * 1.5
    return {
        "sterility": [("negative", None, "pass")],
        "mycoplasma": [("negative", None, "pass")],
        "identity": [("positive", None, "pass")],
        "endotoxin": [(f"{0.5 + i * 0.25:.2f}", 0.5 + i * 0.25, "pass")],
        "viability": [(f"{viability:.1f}", viability, "pass")],
        "potency": [(f"{150 + i * 20}", 150.0 + i * 20, "pass")],
        "vcn": [(f"{1.0 + i * 0.2:.1f}", 1.0 + i * 0.2, "pass")],
    }


SPECS: list[OrderSpec] = [
    # MF1, standard process
    OrderSpec("MF1", "standard_9d", [["accepted"]], [20, 230, 300, 30, 70], LotSpec("released")),
    OrderSpec(
        "MF1",
        "standard_9d",
        [["accepted"]],
        [26, 240, 310, 28, 90],
        LotSpec("released", {"viability": [("65.0", 65.0, "oos"), ("78.0", 78.0, "pass")]}),
    ),
    OrderSpec(
        "MF1",
        "standard_9d",
        [["rejected"], ["accepted"]],
        [22, 250, 290, 31, 60],
        LotSpec("released"),
    ),
    # MF1, rapid process
    OrderSpec("MF1", "rapid_3d", [["accepted"]], [18, 80, 75, 26, 50], LotSpec("released")),
    OrderSpec(
        "MF1",
        "rapid_3d",
        [["rejected", "accepted_with_deviation"]],
        [24, 85],
        LotSpec(
            "testing",
            {"sterility": [], "mycoplasma": [], "identity": [], "potency": [], "vcn": []},
        ),
    ),
    # MF2, standard process
    OrderSpec(
        "MF2",
        "standard_9d",
        [["accepted"]],
        [40, 260, 330, 45, 100],
        LotSpec("exceptional_release", {"potency": [("85", 85.0, "oos")]}),
    ),
    OrderSpec(
        "MF2",
        "standard_9d",
        [["accepted_with_deviation"]],
        [36, 255, 320, 50, 80],
        LotSpec("released"),
    ),
    OrderSpec("MF2", "standard_9d", [["rejected"]], [38]),
    # MF2, rapid process
    OrderSpec(
        "MF2",
        "rapid_3d",
        [["accepted"]],
        [35, 90],
        LotSpec("rejected", {"sterility": [("positive", None, "oos")]}),
    ),
    OrderSpec(
        "MF2",
        "rapid_3d",
        [["accepted"]],
        [33, 95, 80, 40, 66],
        LotSpec("released", {"endotoxin": [("6.10", 6.1, "oos"), ("1.20", 1.2, "pass")]}),
    ),
    # MF3, standard process
    OrderSpec("MF3", "standard_9d", [["accepted"]], [15, 200, 280, 20, 55], LotSpec("released")),
    OrderSpec("MF3", "standard_9d", [["accepted"]], [17, 210, 270, 22], LotSpec("released")),
]
SPECS = [
    OrderSpec(s.site, s.process, s.decisions, s.legs, s.lot, index=i) for i, s in enumerate(SPECS)
]


def results_of(spec: OrderSpec) -> dict[str, list[Result]]:
    """Every test's results as seeded (the defaults with the spec's overrides)."""
    assert spec.lot is not None
    return {**_default_results(spec.index), **spec.lot.results}


@dataclass
class Seeded:
    orders: dict[int, Any]  # spec index -> order
    start: datetime  # when the first order's collection happened


def _move(
    uow: Any, world: World, item: Any, state: S, at: datetime, site: str, now: datetime
) -> None:
    custody.change_item_state(
        uow=uow,
        principal=world.principals["admin"],
        item_public_id=item.public_id,
        to_state=state,
        now=now,
        occurred_at=at,
        site_code=site,
    )


def seed_profiles_and_sites(new_uow: Any, world: World, now: datetime) -> None:
    with new_uow() as uow:
        for code, (name, kind, tz) in EXTRA_SITES.items():
            world.sites[code] = orders.create_site(
                uow=uow, code=code, name=name, kind=kind, timezone=tz, address="2 Lab Road", now=now
            )
        for process, code in PROFILES.items():
            orders.create_product_profile(
                uow=uow,
                code=code,
                name=f"Anti-CD19 ({process})",
                product_code="S1001100",
                starting_material="fresh",
                data={
                    "storage_max_c": -150,
                    "shelf_life_days": 270,
                    "fresh_stability_hours": 72,
                    "quality": quality_profile_data(rapid=process == "rapid_3d"),
                },
                now=now,
            )
        uow.commit()


def seed_order(new_uow: Any, world: World, spec: OrderSpec, start: datetime, now: datetime) -> Any:
    """One order of the data set: its custody journey up to its last leg, then quality rows."""
    admin = world.principals["admin"]
    with new_uow() as uow:
        patient = orders.register_patient(
            uow=uow,
            principal=admin,
            treatment_site_code="TC1",
            given_name="Comp",
            family_name=f"Patient{spec.index}",
            date_of_birth=date(1960, 1, 1),
            mrn=f"CMP-{spec.index}",
            now=now,
        )
        order = orders.create_order(
            uow=uow,
            principal=admin,
            patient_public_id=patient.public_id,
            product_code=PROFILES[spec.process],
            collection_site_code="CC1",
            manufacturing_site_code=spec.site,
            coi_fin="W9999",
            now=now,
        )
        uow.commit()
    with new_uow() as uow:
        bag = custody.register_bag(
            uow=uow,
            principal=admin,
            order_public_id=order.public_id,
            kind=ItemKind.apheresis_bag,
            now=now,
            occurred_at=start - timedelta(hours=2),
        )
        uow.commit()
    make_label_print(new_uow, world, bag, now, who="admin")

    # Milestones from the legs: collection, receipt, completion, release, receipt, infusion.
    marks = [start]
    for hours in spec.legs:
        marks.append(marks[-1] + timedelta(hours=hours))
    with new_uow() as uow:
        _move(uow, world, bag, S.labelled, start - timedelta(hours=1), "CC1", now)
        _move(uow, world, bag, S.collected, marks[0], "CC1", now)
        if len(marks) > 1:
            _move(uow, world, bag, S.packed, marks[0] + timedelta(minutes=10), "CC1", now)
            _move(uow, world, bag, S.in_transit, marks[0] + timedelta(minutes=20), "CD1", now)
            _move(uow, world, bag, S.received, marks[1], spec.site, now)
        uow.commit()
    if len(marks) > 1:
        _decide(new_uow, world, spec, order, bag, marks[1] + timedelta(hours=1))
    if len(marks) <= 2:
        return order
    # Manufacturing through custody: the quality service opens the lot (with the profile's
    # release tests) when the bag enters manufacturing and starts testing when it is consumed,
    # each at the time it happened (passed as the service's ``now``).
    lot_start = marks[1] + timedelta(hours=QUEUE_HOURS)
    with new_uow() as uow:
        _move(uow, world, bag, S.in_manufacturing, lot_start, spec.site, lot_start)
        _move(uow, world, bag, S.consumed, marks[2], spec.site, marks[2])
        uow.commit()
    _results_and_release(new_uow, world, spec, order, marks)
    if len(marks) <= 3:
        return order
    with new_uow() as uow:
        product = custody.register_bag(
            uow=uow,
            principal=admin,
            order_public_id=order.public_id,
            kind=ItemKind.final_product_bag,
            parent_public_id=bag.public_id,
            now=now,
            occurred_at=marks[2],
        )
        uow.commit()
    make_label_print(new_uow, world, product, now, who="admin")
    with new_uow() as uow:
        _move(uow, world, product, S.labelled, marks[2], spec.site, now)
        _move(uow, world, product, S.stored, marks[2] + timedelta(minutes=30), spec.site, now)
        # Custody records the bags' release after the lot's release record.
        released = marks[3] + timedelta(hours=CUSTODY_RELEASE_LAG)
        _move(uow, world, product, S.released, released, spec.site, now)
        if len(marks) > 4:
            _move(uow, world, product, S.packed, released + timedelta(minutes=10), spec.site, now)
            _move(uow, world, product, S.in_transit, released + timedelta(minutes=20), "CD1", now)
            _move(uow, world, product, S.received, marks[4], "TC1", now)
        if len(marks) > 5:
            _move(uow, world, product, S.stored, marks[4] + timedelta(minutes=5), "TC1", now)
            _move(uow, world, product, S.thawed, marks[5] - timedelta(minutes=20), "TC1", now)
            _move(uow, world, product, S.infusing, marks[5], "TC1", now)
        uow.commit()
    return order


def _decide(
    new_uow: Any, world: World, spec: OrderSpec, order: Any, bag: Any, at: datetime
) -> None:
    """The spec's acceptance decisions, each chain's corrections superseding its first row."""
    with new_uow() as uow:
        session = uow.session
        site_id = world.sites[spec.site].id  # type: ignore[attr-defined]
        qa = world.users["admin"].id  # type: ignore[attr-defined]
        item_id = session.scalar(select(Item.id).where(Item.public_id == bag.public_id))
        for number, chain in enumerate(spec.decisions):
            previous = None
            for decision in chain:
                deviation_id = None
                if decision == "accepted_with_deviation":
                    # Closed by QA, so it does not hold the next custody step.
                    deviation = Deviation(
                        public_id=f"DEV-CMP{spec.index:03d}{number}",
                        order_id=order.id,
                        item_id=item_id,
                        kind="manual",
                        status="closed",
                        description="Viability below the acceptance limit",
                        opened_at=at,
                        opened_by_id=qa,
                        closed_at=at,
                        closed_by_id=qa,
                        close_reason="Accepted by QA with a deviation",
                    )
                    session.add(deviation)
                    session.flush()
                    deviation_id = deviation.id
                previous = make_acceptance(
                    session,
                    order=order,
                    site_id=site_id,
                    decided_by=qa,
                    decided_at=at + timedelta(minutes=number),
                    decision=decision,
                    item_id=item_id,
                    deviation_id=deviation_id,
                    supersedes_id=previous.id if previous else None,
                    reason="re-measured viability" if previous else None,
                )
        uow.commit()


def _results_and_release(
    new_uow: Any, world: World, spec: OrderSpec, order: Any, marks: list[datetime]
) -> None:
    """Results (corrections superseding), reviewed by QA; then the lot's release or rejection."""
    assert spec.lot is not None
    with new_uow() as uow:
        session = uow.session
        qa = world.users["admin"].id  # type: ignore[attr-defined]
        reviewer = world.users["qa"].id  # type: ignore[attr-defined]
        lot = session.scalar(select(ManufacturingLot).where(ManufacturingLot.order_id == order.id))
        assert lot is not None and lot.process == spec.process
        tests = {
            t.code: t
            for t in session.scalars(select(ReleaseTest).where(ReleaseTest.lot_id == lot.id))
        }
        for code, history in results_of(spec).items():
            previous = None
            for n, (text, number, outcome) in enumerate(history):
                previous = make_result(
                    session,
                    test=tests[code],
                    value=text,
                    numeric_value=number,
                    unit=UNITS.get(code),
                    outcome=outcome,
                    recorded_by=qa,
                    reviewed_by=reviewer,
                    recorded_at=marks[2] + timedelta(hours=24 + n),
                    supersedes_id=previous.id if previous else None,
                    reason="transcription corrected" if previous else None,
                )
        if spec.lot.status in ("released", "exceptional_release"):
            exceptional = spec.lot.status == "exceptional_release"
            make_lot_release(
                session,
                lot=lot,
                qa_user_id=qa,
                site_id=world.sites[spec.site].id,  # type: ignore[attr-defined]
                released_at=marks[3],
                kind="exceptional" if exceptional else "standard",
                physician_name="Dr Treating" if exceptional else None,
                physician_statement="Benefit outweighs the risk" if exceptional else None,
            )
        elif spec.lot.status == "rejected":
            lot.status = "rejected"
        session.flush()
        uow.commit()


def seed_comparability(new_uow: Any, world: World, now: datetime) -> Seeded:
    """Every order of ``SPECS``, the first collected 60 days before ``now``, a day apart."""
    seed_profiles_and_sites(new_uow, world, now)
    start = now - timedelta(days=60)
    seeded = {
        spec.index: seed_order(new_uow, world, spec, start + timedelta(days=spec.index), now)
        for spec in SPECS
    }
    return Seeded(orders=seeded, start=start)


def bulk_quality(new_uow: Any, world: World, order_ids: list[int], now: datetime) -> None:
    """An acceptance, a lot, its seven release tests and one result each, for many orders
    at once (plain INSERT batches; for statement counting, not for the numbers)."""
    from sqlalchemy import insert

    from tests.factories_quality import release_test_specs
    from tracker.models_quality import ManufacturingLot
    from tracker.models_quality import MaterialAcceptance
    from tracker.models_quality import ReleaseTest
    from tracker.models_quality import ReleaseTestResult

    site = world.sites["MF1"].id  # type: ignore[attr-defined]
    qa = world.users["qa"].id  # type: ignore[attr-defined]
    with new_uow() as uow:
        session = uow.session
        session.execute(
            insert(MaterialAcceptance),
            [
                {
                    "order_id": oid,
                    "site_id": site,
                    "decision": "rejected" if oid % 7 == 0 else "accepted",
                    "criteria": {},
                    "decided_at": now - timedelta(days=20),
                    "decided_by": qa,
                }
                for oid in order_ids
            ],
        )
        acceptance = dict(
            session.execute(
                select(MaterialAcceptance.order_id, MaterialAcceptance.id).where(
                    MaterialAcceptance.order_id.in_(order_ids)
                )
            ).all()
        )
        session.execute(
            insert(ManufacturingLot),
            [
                {
                    "code": f"LOT-BULK{oid:08d}",
                    "order_id": oid,
                    "site_id": site,
                    "process": "rapid_3d" if oid % 2 else "standard_9d",
                    "acceptance_id": acceptance[oid],
                    "started_at": now - timedelta(days=19),
                    "completed_at": now - timedelta(days=19 - oid % 9),
                    "status": "rejected" if oid % 5 == 0 else "testing",
                }
                for oid in order_ids
                if oid % 7
            ],
        )
        lots = dict(
            session.execute(
                select(ManufacturingLot.id, ManufacturingLot.order_id).where(
                    ManufacturingLot.order_id.in_(order_ids)
                )
            ).all()
        )
        specs = release_test_specs()
        session.execute(
            insert(ReleaseTest),
            [
                {
                    "lot_id": lot_id,
                    "code": spec["code"],
                    "method": spec["method"],
                    "spec": spec["spec"],
                    "started_at": now - timedelta(days=10),
                    "expected_turnaround_hours": spec["turnaround_hours"],
                    "due_at": now,
                }
                for lot_id in lots
                for spec in specs
            ],
        )
        tests = session.execute(
            select(ReleaseTest.id, ReleaseTest.lot_id, ReleaseTest.code).where(
                ReleaseTest.lot_id.in_(list(lots))
            )
        ).all()
        session.execute(
            insert(ReleaseTestResult),
            [
                {
                    "test_id": t.id,
                    "value": str(70 + t.lot_id % 25),
                    "numeric_value": float(70 + t.lot_id % 25) if t.code in UNITS else None,
                    "unit": UNITS.get(t.code),
                    "outcome": "oos" if (t.lot_id + len(t.code)) % 11 == 0 else "pass",
                    "recorded_at": now - timedelta(days=5),
                    "recorded_by": qa,
                }
                for t in tests
            ],
        )
        uow.commit()
