"""Reads for the comparability view: per-order quality facts for the orders a person may see.

A fixed number of statements whatever the number of orders (eight, counted in
``tests/e2e/test_comparability_pages.py``): every statement selects plain columns and
restricts to one scoped, filtered subquery of order ids, never an IN list built in Python and
never a per-order load. The measures themselves are computed by the pure
``tracker.domain.comparability`` from the facts these statements return.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import asdict
from dataclasses import dataclass
from datetime import UTC
from datetime import datetime
from datetime import time
from datetime import timedelta
from typing import Any

from sqlalchemy import exists
from sqlalchemy import func
from sqlalchemy import or_
from sqlalchemy import select
from sqlalchemy.orm import Session
from sqlalchemy.orm import aliased

from tracker.domain.access import Role
from tracker.domain.comparability import CUSTODY_MILESTONES
from tracker.domain.comparability import AcceptanceFact
from tracker.domain.comparability import Comparability
from tracker.domain.comparability import LotFact
from tracker.domain.comparability import Milestone
from tracker.domain.comparability import OrderFacts
from tracker.domain.comparability import ReleaseTestFact
from tracker.domain.comparability import compare
from tracker.domain.comparability import first_reached
from tracker.domain.errors import TrackerError
from tracker.models import CustodyEvent
from tracker.models import Item
from tracker.models import ProductProfile
from tracker.models import Site
from tracker.models import TherapyOrder
from tracker.models_quality import LotRelease
from tracker.models_quality import ManufacturingLot
from tracker.models_quality import MaterialAcceptance
from tracker.models_quality import ReleaseTest
from tracker.models_quality import ReleaseTestResult
from tracker.queries_audit import parse_day
from tracker.services.principals import Principal
from tracker.services.principals import scope_orders

COMPARABILITY_ROLES = frozenset(
    {Role.admin, Role.qa, Role.coordinator, Role.manufacturing_operator}
)
GROUPINGS = ("site", "process")
# An order whose profile names no process and that has no lot yet.
NO_PROCESS = "unspecified"
MANUFACTURING_KINDS = ("manufacturing_facility", "processing_lab")


def may_compare(principal: Principal) -> bool:
    return principal.is_admin or any(role in COMPARABILITY_ROLES for role, _ in principal.grants)


def require_comparability_reader(principal: Principal) -> None:
    if principal.user_id is None or not may_compare(principal):
        raise TrackerError(
            "forbidden", "only QA, coordinators, manufacturing and administrators compare sites"
        )


@dataclass(frozen=True)
class ComparabilityFilters:
    """Which orders are compared: placed in [start, end] (UTC days), made at a site, by a process.

    ``group`` picks the rows of the charts: one per site, or one per (site, process).
    """

    start: str = ""
    end: str = ""
    site: str = ""
    process: str = ""
    group: str = "site"

    @classmethod
    def from_args(cls, args: Any) -> ComparabilityFilters:
        def text(name: str) -> str:
            return str(args.get(name) or "").strip()[:64]

        group = text("group")
        return cls(
            start=text("from"),
            end=text("to"),
            site=text("site"),
            process=text("process"),
            group=group if group in GROUPINGS else "site",
        )

    def params(self, **overrides: Any) -> dict[str, Any]:
        values = asdict(self)
        values["from"] = values.pop("start")
        values["to"] = values.pop("end")
        values.update(overrides)
        return {k: v for k, v in values.items() if v and not (k == "group" and v == "site")}

    def described(self) -> str:
        parts = [f"{k}={v}" for k, v in self.params().items()]
        return ", ".join(parts) or "every order"

    def window(self) -> tuple[datetime | None, datetime | None]:
        """The UTC instants the days cover: [start 00:00, the day after end 00:00)."""
        start, end = parse_day(self.start, "from"), parse_day(self.end, "to")
        if start and end and end < start:
            raise TrackerError("invalid_request", "'to' is before 'from'")
        return (
            datetime.combine(start, time(), UTC) if start else None,
            datetime.combine(end + timedelta(days=1), time(), UTC) if end else None,
        )


@dataclass(frozen=True)
class ComparabilityData:
    filters: ComparabilityFilters
    facts: list[OrderFacts]
    result: Comparability
    site_names: dict[str, str]  # code -> name, every site a fact names
    site_options: list[tuple[str, str]]  # manufacturing sites the person may filter on
    process_options: list[str]


def _order_ids(principal: Principal, filters: ComparabilityFilters) -> Any:
    start, end = filters.window()
    stmt = scope_orders(select(TherapyOrder), principal)
    if start:
        stmt = stmt.where(TherapyOrder.created_at >= start)
    if end:
        stmt = stmt.where(TherapyOrder.created_at < end)
    if filters.site:
        stmt = stmt.where(
            TherapyOrder.manufacturing_site_id.in_(select(Site.id).where(Site.code == filters.site))
        )
    return stmt.with_only_columns(TherapyOrder.id).scalar_subquery()


def _current_results(rows: Sequence[Any]) -> dict[int, ReleaseTestFact]:
    """Per test id: the current result and the two history flags (rows of one statement)."""
    by_test: dict[int, list[Any]] = defaultdict(list)
    tests: dict[int, str] = {}
    for row in rows:
        tests[row.test_id] = row.code
        if row.result_id is not None:
            by_test[row.test_id].append(row)
    facts = {}
    for test_id, code in tests.items():
        results = by_test.get(test_id, [])
        superseded = {r.supersedes_id for r in results if r.supersedes_id is not None}
        live = [r for r in results if r.result_id not in superseded]
        # The current result is the one nobody supersedes (the latest, should two stand).
        current = max(live, key=lambda r: (r.recorded_at, r.result_id), default=None)
        facts[test_id] = ReleaseTestFact(
            code=code,
            outcome=current.outcome if current else None,
            value=current.numeric_value if current else None,
            unit=current.unit if current else None,
            ever_oos=any(r.outcome == "oos" for r in results),
            corrected=bool(current is not None and current.supersedes_id is not None),
        )
    return facts


def comparability(
    session: Session, principal: Principal, filters: ComparabilityFilters
) -> ComparabilityData:
    """The facts of every visible order the filters select, and the measures over them."""
    require_comparability_reader(principal)
    ids = _order_ids(principal, filters)
    made_at = aliased(Site)

    # 1. The orders: where they are made and by which profile.
    orders = session.execute(
        select(
            TherapyOrder.id,
            TherapyOrder.public_id,
            made_at.code.label("site"),
            # Only the process, not the whole profile document on every row.
            ProductProfile.data[("quality", "process")].as_string().label("profile_process"),
        )
        .join(made_at, made_at.id == TherapyOrder.manufacturing_site_id)
        .join(ProductProfile, ProductProfile.id == TherapyOrder.product_profile_id)
        .where(TherapyOrder.id.in_(ids))
        .order_by(TherapyOrder.id)
    ).all()

    # 2. Current starting-material decisions (no later row supersedes them).
    newer = aliased(MaterialAcceptance)
    decided_at = aliased(Site)
    acceptances = session.execute(
        select(
            MaterialAcceptance.id,
            MaterialAcceptance.order_id,
            MaterialAcceptance.decision,
            decided_at.code.label("site"),
        )
        .join(decided_at, decided_at.id == MaterialAcceptance.site_id)
        .where(
            MaterialAcceptance.order_id.in_(ids),
            ~exists().where(newer.supersedes_id == MaterialAcceptance.id),
        )
        .order_by(MaterialAcceptance.id)
    ).all()

    # 3. Lots, with their release when there is one.
    lot_site = aliased(Site)
    lots = session.execute(
        select(
            ManufacturingLot.id,
            ManufacturingLot.order_id,
            ManufacturingLot.code,
            ManufacturingLot.process,
            ManufacturingLot.status,
            ManufacturingLot.acceptance_id,
            ManufacturingLot.started_at,
            ManufacturingLot.completed_at,
            lot_site.code.label("site"),
            LotRelease.kind.label("release_kind"),
            LotRelease.released_at,
        )
        .join(lot_site, lot_site.id == ManufacturingLot.site_id)
        .outerjoin(LotRelease, LotRelease.lot_id == ManufacturingLot.id)
        .where(ManufacturingLot.order_id.in_(ids))
        .order_by(ManufacturingLot.started_at, ManufacturingLot.id)
    ).all()

    # 4. Every release test of those lots with every result it has had.
    tests = session.execute(
        select(
            ReleaseTest.id.label("test_id"),
            ReleaseTest.lot_id,
            ReleaseTest.code,
            ReleaseTestResult.id.label("result_id"),
            ReleaseTestResult.outcome,
            ReleaseTestResult.numeric_value,
            ReleaseTestResult.unit,
            ReleaseTestResult.recorded_at,
            ReleaseTestResult.supersedes_id,
        )
        .join(ManufacturingLot, ManufacturingLot.id == ReleaseTest.lot_id)
        .outerjoin(ReleaseTestResult, ReleaseTestResult.test_id == ReleaseTest.id)
        .where(ManufacturingLot.order_id.in_(ids))
        .order_by(ReleaseTest.lot_id, ReleaseTest.code, ReleaseTestResult.id)
    ).all()

    # 5. The first time each vein-to-vein custody milestone was recorded, per order.
    states = sorted({state for _, state in CUSTODY_MILESTONES})
    marks = session.execute(
        select(
            CustodyEvent.order_id,
            Item.kind,
            CustodyEvent.to_state,
            func.min(CustodyEvent.occurred_at).label("at"),
        )
        .join(Item, Item.id == CustodyEvent.item_id)
        .where(
            CustodyEvent.order_id.in_(ids),
            CustodyEvent.event_type == "transition",
            CustodyEvent.to_state.in_(states),
        )
        .group_by(CustodyEvent.order_id, Item.kind, CustodyEvent.to_state)
    ).all()

    # 6. Filter choices: the manufacturing sites this person may see, 7. the names of the
    # sites in the facts, 8. the processes of the lots this person may see.
    visible = principal.site_ids
    site_stmt = select(Site.code, Site.name).where(Site.kind.in_(MANUFACTURING_KINDS))
    if visible is not None:
        site_stmt = site_stmt.where(Site.id.in_(sorted(visible)))
    site_options = [(r.code, r.name) for r in session.execute(site_stmt.order_by(Site.code))]
    names = {
        r.code: r.name
        for r in session.execute(
            select(Site.code, Site.name).where(
                or_(
                    Site.id.in_(
                        select(TherapyOrder.manufacturing_site_id).where(TherapyOrder.id.in_(ids))
                    ),
                    Site.id.in_(
                        select(MaterialAcceptance.site_id).where(
                            MaterialAcceptance.order_id.in_(ids)
                        )
                    ),
                    Site.id.in_(
                        select(ManufacturingLot.site_id).where(ManufacturingLot.order_id.in_(ids))
                    ),
                )
            )
        )
    }
    visible_orders = (
        scope_orders(select(TherapyOrder), principal)
        .with_only_columns(TherapyOrder.id)
        .scalar_subquery()
    )
    lot_processes = set(
        session.scalars(
            select(ManufacturingLot.process)
            .where(ManufacturingLot.order_id.in_(visible_orders))
            .distinct()
        )
    )

    facts = _assemble(orders, acceptances, lots, tests, marks)
    processes = sorted(lot_processes | {f.process for f in facts})
    if filters.process:
        facts = [f for f in facts if f.process == filters.process]
    return ComparabilityData(
        filters=filters,
        facts=facts,
        result=compare(facts),
        site_names=names,
        site_options=site_options,
        process_options=processes,
    )


def _assemble(
    orders: Sequence[Any],
    acceptances: Sequence[Any],
    lots: Sequence[Any],
    tests: Sequence[Any],
    marks: Sequence[Any],
) -> list[OrderFacts]:
    """Plain Python over the statements' rows: one OrderFacts per order."""
    results = _current_results(tests)
    tests_of: dict[int, list[ReleaseTestFact]] = defaultdict(list)
    for test_id, lot_id in {(r.test_id, r.lot_id) for r in tests}:
        tests_of[lot_id].append(results[test_id])
    lots_of: dict[int, list[Any]] = defaultdict(list)
    for lot in lots:
        lots_of[lot.order_id].append(lot)
    lot_process_by_acceptance = {lot.acceptance_id: lot.process for lot in lots}
    acceptances_of: dict[int, list[Any]] = defaultdict(list)
    for acceptance in acceptances:
        acceptances_of[acceptance.order_id].append(acceptance)
    milestones_of: dict[int, list[tuple[Milestone, datetime]]] = defaultdict(list)
    for mark in marks:
        milestone = CUSTODY_MILESTONES.get((mark.kind, mark.to_state))
        if milestone is not None:
            milestones_of[mark.order_id].append((milestone, mark.at))

    facts = []
    for order in orders:
        order_lots = lots_of.get(order.id, [])
        process = order_lots[-1].process if order_lots else (order.profile_process or NO_PROCESS)
        site = order_lots[-1].site if order_lots else order.site
        reached = first_reached(milestones_of.get(order.id, []))
        # The lot's own record is the better clock for completion and release than the bags.
        completed = [lot.completed_at for lot in order_lots if lot.completed_at is not None]
        released = [lot.released_at for lot in order_lots if lot.released_at is not None]
        if completed:
            reached[Milestone.manufacturing_complete] = min(completed)
        if released:
            reached[Milestone.released] = min(released)
        facts.append(
            OrderFacts(
                order=order.public_id,
                site=site,
                process=process,
                acceptances=tuple(
                    AcceptanceFact(
                        site=a.site,
                        process=lot_process_by_acceptance.get(a.id, process),
                        decision=a.decision,
                    )
                    for a in acceptances_of.get(order.id, [])
                ),
                lots=tuple(
                    LotFact(
                        code=lot.code,
                        site=lot.site,
                        process=lot.process,
                        status=lot.status,
                        started_at=lot.started_at,
                        completed_at=lot.completed_at,
                        release_kind=lot.release_kind,
                        tests=tuple(sorted(tests_of.get(lot.id, []), key=lambda t: t.code)),
                    )
                    for lot in order_lots
                ),
                milestones=reached,
            )
        )
    return facts
