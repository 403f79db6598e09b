"""The comparability page in a real browser: charts drawn, filters, the CSV downloaded.

Screenshots go to tests/artifacts/ (comparability-*.png). A console error fails the test,
through the shared page fixture.
"""

from __future__ import annotations

import csv
import io
from pathlib import Path

import pytest

from tests.comparability_seed import SPECS
from tests.comparability_seed import seed_comparability
from tests.conftest import WORLD_PASSWORD
from tests.e2e import test_pages_browser as pages
from tests.e2e.test_pages_browser import log_in
from tests.e2e.test_pages_browser import shot
from tests.factories import build_world
from tests.integration.test_comparability_seeded import expected_for
from tracker.clock import SystemClock
from tracker.db import make_session_factory
from tracker.unit_of_work import UnitOfWork

pytestmark = pytest.mark.browser
browser = pages.browser
page = pages.page


@pytest.fixture(scope="module")
def live(tmp_path_factory):
    """The app on a committed SQLite database holding the seeded multi-site data set."""
    from tracker.web import create_app

    settings, engine = pages.committed_database(tmp_path_factory, "comparability")
    factory = make_session_factory(engine)
    now = SystemClock().now()
    world = build_world(lambda: UnitOfWork(factory), settings, now)
    seed_comparability(lambda: UnitOfWork(factory), world, now)
    engine.dispose()
    with pages.serving(create_app(settings)) as base:
        yield base


def test_qa_compares_sites_on_charts_and_downloads_the_numbers(page, live):
    log_in(page, live, "admin", WORLD_PASSWORD)
    page.wait_for_url(f"{live}/dashboard")
    page.click("nav[aria-label=Main] >> text=Comparability")
    page.wait_for_url(f"{live}/quality/comparability")
    charts = page.locator("svg[role=img]")
    assert charts.count() >= 8
    # Drawn, not just present: the first-pass chart has a visible bar per site with data.
    first_pass = page.locator("svg#rate-first-pass")
    box = first_pass.bounding_box()
    assert box is not None and box["width"] > 400 and box["height"] > 100
    bars = first_pass.locator("rect.bar")
    assert bars.count() == 3
    assert all((bars.nth(i).bounding_box() or {"width": 0})["width"] > 0 for i in range(3))
    assert page.locator("svg#v2v-legs rect.segment").count() >= 10
    label = page.get_attribute("svg#v2v-legs", "aria-labelledby")
    assert label == "v2v-legs-title v2v-legs-desc"
    fp, decided = expected_for([s for s in SPECS if s.site == "MF3"])["first_pass"]
    row = page.locator(
        "table[aria-label='Rates per group'] tbody tr", has_text="Manufacturing Three"
    )
    assert f"({fp} of {decided})" in row.inner_text()
    shot(page, "comparability-sites")

    page.select_option("#group", "process")
    page.select_option("#site", "MF2")
    page.click("form[role=search] button[type=submit]")
    page.wait_for_url("**group=process**")
    labels = page.locator("svg#rate-acceptance text.row-label").all_text_contents()
    assert labels == ["Manufacturing Two · rapid_3d", "Manufacturing Two · standard_9d"]
    shot(page, "comparability-mf2-by-process")

    with page.expect_download() as download_info:
        page.click("[data-testid=csv-orders]")
    download = download_info.value
    assert download.suggested_filename.startswith("comparability-orders-")
    text = Path(download.path()).read_text(encoding="utf-8-sig")
    rows = list(csv.DictReader(io.StringIO(text)))
    assert len(rows) == sum(1 for s in SPECS if s.site == "MF2")
    assert {r["manufacturing_site"] for r in rows} == {"MF2"}
