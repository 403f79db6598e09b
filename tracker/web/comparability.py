"""The comparability page (sites and processes side by side, charts and numbers) and its CSV."""

from __future__ import annotations

import csv
import hashlib
import io
from collections.abc import Sequence
from typing import Any

from flask import Blueprint
from flask import Response
from flask import render_template
from flask import request
from flask.typing import ResponseReturnValue
from flask_login import current_user
from flask_login import login_required
from markupsafe import Markup

from tracker import queries_comparability
from tracker.domain.comparability import LEGS
from tracker.domain.comparability import TOTAL_LEG
from tracker.domain.comparability import Cell
from tracker.domain.comparability import GroupSummary
from tracker.domain.comparability import order_table
from tracker.domain.comparability import summary_table
from tracker.domain.plots import box_plots
from tracker.domain.plots import rate_bars
from tracker.domain.plots import stacked_bars
from tracker.queries_comparability import ComparabilityData
from tracker.queries_comparability import ComparabilityFilters
from tracker.services.audit import record_audit
from tracker.web.auth import current_principal
from tracker.web.runtime import runtime

bp = Blueprint("comparability", __name__)
CSV_PARTS = ("orders", "summary")
DAY = 1 / 24  # hours to days


@bp.app_context_processor
def _nav() -> dict[str, Any]:
    """Whether the main menu offers the comparability view to the person signed in."""
    principal = getattr(current_user, "principal", None)
    return {"may_compare": principal is not None and queries_comparability.may_compare(principal)}


def load(filters: ComparabilityFilters) -> ComparabilityData:
    with runtime().uow() as uow:
        return queries_comparability.comparability(uow.session, current_principal(), filters)


def group_label(group: GroupSummary, names: dict[str, str]) -> str:
    if group.site is None:
        return "All sites"
    site = names.get(group.site, group.site)
    return f"{site} · {group.process}" if group.process else site


def chart_groups(data: ComparabilityData) -> Sequence[GroupSummary]:
    return data.result.sites if data.filters.group == "site" else data.result.site_processes


def charts(data: ComparabilityData) -> dict[str, Any]:
    """Every chart of the page as inline SVG, with the groups they show."""
    groups = chart_groups(data)
    label = {g.key: group_label(g, data.site_names) for g in groups}
    rates = [
        rate_bars(
            f"rate-{code}",
            title,
            [(label[g.key], getattr(g, field)) for g in groups],
        )
        for code, title, field in (
            ("acceptance", "Starting material accepted", "acceptance"),
            ("first-pass", "First-pass release", "first_pass"),
            ("oos", "Lots with an out-of-specification result", "oos_lots"),
        )
    ]
    legs = stacked_bars(
        "v2v-legs",
        "Vein-to-vein: median of each leg (days)",
        "d",
        [leg.label for leg in LEGS],
        [
            (
                label[g.key],
                [g.legs[leg.code].scaled(DAY).median for leg in LEGS],
            )
            for g in groups
        ],
    )
    v2v = box_plots(
        "v2v-total",
        "Vein-to-vein time, collection to infusion start (days)",
        "d",
        [(label[g.key], g.legs[TOTAL_LEG.code].scaled(DAY)) for g in groups],
    )
    turnaround = box_plots(
        "turnaround",
        "Manufacturing turnaround, lot start to completion (hours)",
        "h",
        [(label[g.key], g.turnaround) for g in groups],
    )
    results = []
    for test in data.result.overall.tests:
        for unit in test.values:
            rows = []
            for g in groups:
                match = next((t for t in g.tests if t.code == test.code), None)
                if match is not None and unit in match.values:
                    rows.append((label[g.key], match.values[unit]))
            results.append(
                box_plots(
                    f"result-{test.code}",
                    f"Release test: {test.code} ({unit})",
                    unit,
                    rows,
                )
            )
    return {
        "rates": [Markup(svg) for svg in rates],  # noqa: S704 - built by tracker.domain.plots, which escapes every text
        "legs": Markup(legs),  # noqa: S704
        "v2v": Markup(v2v),  # noqa: S704
        "turnaround": Markup(turnaround),  # noqa: S704
        "results": [Markup(svg) for svg in results],  # noqa: S704
    }


@bp.get("/quality/comparability")
@login_required  # type: ignore[untyped-decorator]
def page() -> ResponseReturnValue:
    filters = ComparabilityFilters.from_args(request.args)
    data = load(filters)
    groups = chart_groups(data)
    return render_template(
        "cockpit/comparability.html",
        data=data,
        filters=filters,
        groups=groups,
        label=lambda g: group_label(g, data.site_names),
        charts=charts(data),
        legs=(*LEGS, TOTAL_LEG),
    )


def _cell(value: Cell) -> Cell:
    # A spreadsheet runs text starting with these as a formula: make it plain text.
    if isinstance(value, str) and value[:1] in ("=", "+", "-", "@", "\t", "\r"):
        return "'" + value
    return value


def csv_bytes(header: Sequence[str], rows: Sequence[Sequence[Cell]]) -> bytes:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\r\n")
    writer.writerow(header)
    for row in rows:
        writer.writerow(["" if v is None else _cell(v) for v in row])
    return buffer.getvalue().encode("utf-8-sig")


def export_csv(filters: ComparabilityFilters, part: str) -> Response:
    """The per-order numbers or the aggregates as CSV; the export is recorded with its digest."""
    rt = runtime()
    principal = current_principal()
    now = rt.clock.now()
    with rt.uow() as uow:
        data = queries_comparability.comparability(uow.session, principal, filters)
        if part == "summary":
            header, rows = summary_table(data.result)
        else:
            header, rows = order_table(data.facts, data.result.test_codes)
        body = csv_bytes(header, rows)
        record_audit(
            uow.session,
            now=now,
            actor_user_id=principal.user_id,
            action="comparability_export",
            entity_type="comparability",
            entity_id=part,
            changes={
                "filters": [None, filters.described()],
                "rows": [None, len(rows)],
                "sha256": [None, hashlib.sha256(body).hexdigest()],
            },
        )
        uow.commit()
    response = Response(body, mimetype="text/csv")
    stamp = now.strftime("%Y%m%dT%H%M%SZ")
    response.headers["Content-Disposition"] = (
        f'attachment; filename="comparability-{part}-{stamp}.csv"'
    )
    response.headers["Cache-Control"] = "no-store"
    return response


@bp.get("/quality/comparability.csv")
@login_required  # type: ignore[untyped-decorator]
def csv_export() -> ResponseReturnValue:
    part = request.args.get("part", "orders")
    return export_csv(
        ComparabilityFilters.from_args(request.args), part if part in CSV_PARTS else "orders"
    )
