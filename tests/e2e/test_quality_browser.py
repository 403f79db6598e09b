"""Quality gates in a real browser: acceptance at receipt, the lot with its tests, a result
corrected with a reason, QA review, release through the scan step, the exceptional path with
the physician's acknowledgement, and the journey page's link to the lot.

Screenshots go to tests/artifacts/ (quality-*.png).
"""

# ruff: noqa: F811

from __future__ import annotations

from datetime import timedelta

import pytest

from tests import scanning as sc
from tests.conftest import T0
from tests.conftest import WORLD_PASSWORD
from tests.e2e import test_pages_browser as pages
from tests.e2e.test_pages_browser import log_in
from tests.e2e.test_pages_browser import shot
from tests.factories import build_world
from tracker.clock import FixedClock
from tracker.db import make_session_factory
from tracker.unit_of_work import UnitOfWork

pytestmark = pytest.mark.browser
browser = pages.browser
page = pages.page


@pytest.fixture(scope="module")
def live(tmp_path_factory):  # type: ignore[no-untyped-def]
    """The app and a scan driver on one committed SQLite database and one clock."""
    from tracker.web import create_app

    settings, engine = pages.committed_database(tmp_path_factory, "quality")
    factory = make_session_factory(engine)

    def new_uow() -> UnitOfWork:
        return UnitOfWork(factory)

    clock = FixedClock(T0)
    world = build_world(new_uow, settings, clock.now())
    driver = sc.Driver(new_uow, world, clock, settings, sc.make_scanners(new_uow, world, T0))
    with pages.serving(create_app(settings, clock=clock)) as base:
        yield base, driver
    engine.dispose()


def received(driver):  # type: ignore[no-untyped-def]
    driver.runs.clear()  # one driver for the module: every journey starts its own runs
    j = sc.new_journey(driver, bags=1)
    for play in (sc.collect, sc.pack, sc.pickup, sc.receive):
        play(driver, j)
    return j


def enter(page, base, who):  # type: ignore[no-untyped-def]
    page.context.clear_cookies()
    log_in(page, base, who, WORLD_PASSWORD)
    page.wait_for_url(f"{base}/dashboard")


def record(page, test, value, unit=None, reason=None):  # type: ignore[no-untyped-def]
    row = page.locator(f"tr[data-test={test}]")
    if row.locator("details").get_attribute("open") is None:
        row.locator("summary").click()
    row.locator("input[name=value]").fill(value)
    if unit is not None:
        row.locator("input[name=unit]").fill(unit)
    if reason is not None:
        row.locator("input[name=reason]").fill(reason)
    row.locator("button[type=submit]").click()
    page.wait_for_load_state()


def test_acceptance_lot_results_correction_review_and_release(page, live):
    base, d = live
    j = received(d)
    d.clock.advance(timedelta(hours=2))
    enter(page, base, "operator")
    page.click("nav >> text=Quality")
    page.click(f"[data-testid=awaiting-acceptance] a[href$='{j.order.public_id}/acceptance']")
    page.wait_for_url(f"{base}/orders/{j.order.public_id}/acceptance")
    page.fill("#value-tnc", "3100")
    page.fill("input[name=unit_tnc]", "10^6 cells")
    page.fill("#value-viability", "0.93")
    page.fill("input[name=unit_viability]", "fraction")
    page.fill("#value-cd3_fraction", "42")
    page.fill("#value-volume", "0.2")
    page.fill("input[name=unit_volume]", "L")
    page.click("button:has-text('Decide')")
    assert page.locator("[data-testid=acceptance-decision]").inner_text() == "accepted"
    assert page.locator("tr[data-criterion=age] td").nth(4).inner_text() == "pass"
    shot(page, "quality-acceptance")
    # Manufacturing runs on the scanners; its first scan opened the lot with its tests.
    sc.manufacture(d, j, accept=False)
    code = sc.lot_code(d, j)
    page.goto(f"{base}/orders/{j.order.public_id}/journey")
    page.click("[data-testid=journey-lot]")
    page.wait_for_url(f"{base}/lots/{code}")
    assert page.locator("[data-testid=lot-readiness]").inner_text() == "pending"
    assert "sterility" in page.locator("[data-testid=expected-release]").locator("..").inner_text()
    for test, (value, unit) in sc.PASSING_RESULTS.items():
        if test == "potency":
            value = "45"  # misread: out of specification
        record(page, test, value, unit)
    assert "oos" in page.locator("[data-testid=status-potency]").inner_text()
    shot(page, "quality-lot-oos")
    record(page, "potency", "450", "pg/mL", reason="dilution factor missed in the export")
    potency = page.locator("tr[data-test=potency]")
    assert potency.locator("s").count() == 1  # the first value stays, struck through
    assert "dilution factor missed" in potency.inner_text()
    # QA reviews every current result (the operator recorded them).
    enter(page, base, "qa")
    page.goto(f"{base}/lots/{code}")
    while page.locator("button:has-text('Review')").count():
        page.locator("button:has-text('Review')").first.click()
        page.wait_for_load_state()
    assert page.locator("[data-testid=lot-readiness]").inner_text() == "complete"
    shot(page, "quality-lot-reviewed")
    # Release is the QA release scan step; the lot page then links the certificate.
    sc.release(d, j)
    page.goto(f"{base}/lots/{code}")
    assert page.locator("[data-testid=lot-status]").inner_text() == "released"
    assert page.locator("[data-testid=release-certificate]").inner_text() == j.certificate
    shot(page, "quality-lot-released")
    with page.expect_download() as download:
        page.click("[data-testid=release-certificate]")
    assert download.value.suggested_filename == f"release-{j.certificate}.pdf"


def test_an_oos_lot_is_released_only_after_the_physicians_acknowledgement(page, live):
    base, d = live
    j = received(d)
    sc.manufacture(d, j)
    results = sc.PASSING_RESULTS | {"endotoxin": ("8.1", "EU/mL")}
    code = sc.pass_release_tests(d, j, results)
    body = d.scan("qa", "qa_release", sc.coi_code(j.order), site="MF1").body
    assert body["reason"] == "lot_out_of_specification"
    enter(page, base, "qa")
    page.goto(f"{base}/lots/{code}")
    assert "exceptional release" in page.locator("#release-h").locator("..").inner_text()
    page.fill("#ack-name", "Dr. Treating Physician")
    page.fill("#ack-statement", "Endotoxin 8.1 EU/mL reviewed with the patient; proceed.")
    page.click("button:has-text('Record the acknowledgement')")
    assert "Dr. Treating Physician" in page.locator("[data-testid=acknowledgement]").inner_text()
    shot(page, "quality-exceptional-acknowledged")
    d.new_run("qa", "qa_release")
    sc.release(d, j)
    page.goto(f"{base}/lots/{code}")
    assert page.locator("[data-testid=lot-status]").inner_text() == "exceptional release"
    assert "Exceptional release" in page.locator("[data-testid=lot-release]").inner_text()
    shot(page, "quality-exceptional-released")
    page.goto(f"{base}/orders/{j.order.public_id}/journey")
    assert "exceptional release" in page.locator("[data-testid=journey-quality]").inner_text()
    shot(page, "quality-journey")
