"""The comparability page, its CSV exports and its API, over HTTP."""

from __future__ import annotations

import csv
import io
import xml.etree.ElementTree as ET

import pytest
from sqlalchemy import select

from tests.cockpit_helpers import bulk_journeys
from tests.cockpit_helpers import counting_statements
from tests.comparability_seed import SPECS
from tests.comparability_seed import bulk_quality
from tests.comparability_seed import results_of
from tests.comparability_seed import seed_comparability
from tests.e2e.test_api import login
from tests.integration.test_comparability_seeded import expected_for
from tracker.models import AuditEntry

SVG = "{http://www.w3.org/2000/svg}"


@pytest.fixture
def seeded(world, new_uow, clock):  # type: ignore[no-untyped-def]
    return seed_comparability(new_uow, world, clock.now())


def _csv(resp) -> list[dict[str, str]]:  # type: ignore[no-untyped-def]
    assert resp.status_code == 200, resp.data[:300]
    assert resp.mimetype == "text/csv"
    assert "attachment" in resp.headers["Content-Disposition"]
    return list(csv.DictReader(io.StringIO(resp.get_data().decode("utf-8-sig"))))


def _svgs(page: str) -> list[ET.Element]:
    found = []
    start = 0
    while (i := page.find("<svg", start)) != -1:
        j = page.index("</svg>", i) + len("</svg>")
        found.append(ET.fromstring(page[i:j]))  # noqa: S314 - our own page
        start = j
    return found


def test_the_page_shows_charts_and_the_numbers_per_site(client, seeded):
    login(client, "admin")
    resp = client.get("/quality/comparability")
    assert resp.status_code == 200
    page = resp.get_data(as_text=True)
    svgs = _svgs(page)
    titles = [s.findtext(f"{SVG}title") for s in svgs]
    assert "First-pass release" in titles
    assert "Vein-to-vein: median of each leg (days)" in titles
    assert "Release test: viability (%)" in titles
    assert all(s.get("role") == "img" and s.get("aria-labelledby") for s in svgs)
    # MF1's first-pass release, computed from the seed, stands in the chart and in the table.
    fp, decided = expected_for([s for s in SPECS if s.site == "MF1"])["first_pass"]
    share = f"{fp / decided * 100:.0f}%"
    first_pass = svgs[titles.index("First-pass release")]
    assert f"{share} ({fp} of {decided})" in ["".join(t.itertext()) for t in first_pass.iter()]
    assert f'{share} <span class="muted small">({fp} of {decided})</span>' in page
    by_process = client.get("/quality/comparability?group=process").get_data(as_text=True)
    assert "Manufacturing One · rapid_3d" in by_process


def test_the_per_order_csv_carries_each_orders_numbers(client, seeded, uow):
    login(client, "admin")
    rows = _csv(client.get("/quality/comparability.csv?part=orders"))
    assert len(rows) == len(SPECS)
    by_order = {r["order"]: r for r in rows}
    for spec in SPECS:
        row = by_order[seeded.orders[spec.index].public_id]
        assert row["manufacturing_site"] == spec.site and row["process"] == spec.process
        assert row["acceptance_decisions"] == ";".join(c[-1] for c in spec.decisions)
        if len(spec.legs) == 5:
            assert float(row["vein_to_vein_hours"]) == pytest.approx(sum(spec.legs))
        else:
            assert row["vein_to_vein_hours"] == ""
        assert float(row["to_manufacturing_hours"]) == pytest.approx(spec.legs[0])
        if spec.lot is None:
            assert row["lot"] == "" and row["first_pass"] == ""
            continue
        history = results_of(spec)
        current_oos = sorted(c for c, h in history.items() if h and h[-1][2] == "oos")
        assert sorted(filter(None, row["oos_tests"].split(";"))) == current_oos
        viability = history["viability"][-1]
        assert float(row["viability_value"]) == pytest.approx(viability[1])
    entry = uow.session.scalar(
        select(AuditEntry).where(AuditEntry.action == "comparability_export")
    )
    assert entry is not None and entry.entity_id == "orders"
    assert entry.changes["rows"] == [None, len(SPECS)]


def test_the_summary_csv_holds_every_groups_measures(client, seeded):
    login(client, "admin")
    rows = _csv(client.get("/quality/comparability.csv?part=summary&site=MF2"))
    measures = {(r["site"], r["process"], r["measure"]): r for r in rows}
    expected = expected_for([s for s in SPECS if s.site == "MF2"])
    first_pass = measures[("MF2", "", "first_pass_release_rate")]
    assert (int(first_pass["numerator"]), int(first_pass["denominator"])) == expected["first_pass"]
    total = measures[("MF2", "", "leg:vein_to_vein")]
    n, low, _, median, _, high = expected["legs"]["vein_to_vein"]
    assert (int(total["n"]), float(total["min"]), float(total["max"])) == (n, low, high)
    assert float(total["median"]) == pytest.approx(median)
    assert {r["site"] for r in rows} == {"MF2", ""}  # the site, then all together


def test_the_api_answers_the_same_numbers_and_refuses_bad_days(client, seeded):
    login(client, "admin")
    body = client.get("/api/v1/comparability?group=process").get_json()
    for group in body["sites"]:
        expected = expected_for([s for s in SPECS if s.site == group["site"]])
        rate = group["acceptance"]
        assert (rate["numerator"], rate["denominator"]) == expected["acceptance"]
        assert group["exceptional_releases"] == expected["exceptional"]
    assert len(body["orders"]) == len(SPECS)
    assert (
        body["overall"]["leg_hours"]["vein_to_vein"]["n"]
        == expected_for(SPECS)["legs"]["vein_to_vein"][0]
    )
    bad = client.get("/api/v1/comparability?from=2026-02-31")
    assert bad.status_code == 400 and bad.get_json()["reason"] == "invalid_request"
    csv_rows = _csv(client.get("/api/v1/comparability.csv?part=summary"))
    assert csv_rows[0]["measure"] == "acceptance_rate"


def test_a_courier_may_not_compare_sites_nor_is_offered_to(app, client, seeded):
    login(client, "courier")
    assert client.get("/api/v1/comparability").status_code == 403
    assert client.get("/quality/comparability").status_code == 403
    assert "/quality/comparability" not in client.get("/orders").get_data(as_text=True)
    qa = app.test_client()  # a browser of its own, not a second login in the courier's
    login(qa, "qa")
    assert "/quality/comparability" in qa.get("/orders").get_data(as_text=True)


def test_the_page_runs_the_same_number_of_statements_for_10_and_200_orders(
    client, connection, new_uow, world, clock
):
    now = clock.now()
    login(client, "admin")

    def count(path: str) -> int:
        with counting_statements(connection) as statements:
            resp = client.get(path)
        assert resp.status_code == 200, resp.data[:300]
        return len(statements)

    bulk_quality(new_uow, world, bulk_journeys(new_uow, world, now, start=0, count=10), now)
    small = count("/quality/comparability?group=process")
    small_csv = count("/quality/comparability.csv")
    bulk_quality(new_uow, world, bulk_journeys(new_uow, world, now, start=10, count=190), now)
    large = count("/quality/comparability?group=process")
    large_csv = count("/quality/comparability.csv")
    print(f"comparability statements: {small} for 10 orders, {large} for 200")
    assert large == small and large_csv == small_csv
    assert small <= 14


def test_the_lot_list_runs_the_same_number_of_statements_for_10_and_60_lots(
    client, connection, new_uow, world, clock
):
    # Each lot's readiness and expected release come from its tests and results: read for
    # every lot at once, not lot by lot (the /quality page and GET /api/v1/lots).
    now = clock.now()
    login(client, "admin")

    def count(path: str) -> tuple[int, int]:
        with counting_statements(connection) as statements:
            resp = client.get(path)
        assert resp.status_code == 200, resp.data[:300]
        return len(statements), len(resp.get_json()["lots"])

    bulk_quality(new_uow, world, bulk_journeys(new_uow, world, now, start=0, count=10), now)
    small, small_lots = count("/api/v1/lots")
    bulk_quality(new_uow, world, bulk_journeys(new_uow, world, now, start=10, count=50), now)
    large, large_lots = count("/api/v1/lots")
    assert small_lots >= 5 and large_lots >= 5 * small_lots  # (rejected material has no lot)
    assert large == small
