"""Alerts in a real browser: the demo excursion, acknowledgement, a QA quarantine, the bag's
exposure ledger, and a logger file imported by the worker with visible progress."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest
from playwright.sync_api import expect

from tests.e2e import test_pages_browser as pages
from tests.e2e.test_pages_browser import log_in
from tests.e2e.test_pages_browser import shot
from tracker import scheduler

pytestmark = pytest.mark.browser
# The same chromium and page fixtures as the other page tests (console errors fail a test).
browser = pages.browser
page = pages.page
FRIDGETAG = (
    Path(__file__).resolve().parents[1]
    / "data"
    / "loggers"
    / ("fridgetag-ul_100800001215_202304201410.txt")
)


@pytest.fixture(scope="module")
def alerts_server(tmp_path_factory):
    """The app and its worker (SQLite mode, console SMS) on a demo database."""
    from tracker.web import create_app

    settings, engine = pages.committed_database(tmp_path_factory, "alerts")
    pages.load_demo(engine, settings)
    engine.dispose()
    stop = threading.Event()
    worker = threading.Thread(target=scheduler.run, args=(settings, stop), daemon=True)
    worker.start()
    with pages.serving(create_app(settings)) as base:
        yield base
    stop.set()
    worker.join(10)


def test_a_coordinator_acknowledges_the_demo_excursion_and_qa_quarantines_the_bag(
    page,
    alerts_server,
):
    base = alerts_server
    log_in(page, base, "coordinator")
    page.wait_for_url(f"{base}/dashboard")
    page.click("nav[aria-label=Main] >> text=Alerts")
    rows = page.locator("table[aria-label='Alerts'] tbody tr")
    # A loaded machine delivers and parses a page in parts: count rows only once the second
    # one is there (count() itself does not wait).
    expect(rows.nth(1)).to_be_attached()
    alarm = page.locator("tr[data-kind='temperature_excursion']", has=page.locator(".sev-alarm"))
    # The logger scanned into the shipper on the road (demo journey 5) raised it.
    assert "logger TRKLOG" in alarm.inner_text() and "1 bag(s) exposed" in alarm.inner_text()
    shot(page, "alerts")
    alarm.locator("a").click()
    page.wait_for_selector("[data-testid=thresholds]")
    assert "> -130.0 °C for 15 min" in page.locator("[data-testid=thresholds]").inner_text()
    # The tables below the thresholds may not be parsed yet: these expectations wait.
    expect(page.locator("table[aria-label='Bags exposed'] tbody tr")).to_have_count(1)
    expect(page.locator("table[aria-label='Text messages']")).to_be_visible()
    page.fill("#comment", "Courier called: shipper lid re-seated, temperature recovering")
    page.click("button:has-text('Acknowledge')")
    page.wait_for_selector("[data-testid=ack]")
    assert page.locator("[data-testid=alert-status]").inner_text() == "acknowledged"
    alert_url = page.url
    bag = page.locator("table[aria-label='Bags exposed'] tbody tr").get_attribute("data-bag")
    shot(page, "alert-acknowledged")
    page.get_by_role("button", name="Log out").click()
    expect(page.get_by_text("You are logged out.")).to_be_visible()

    log_in(page, base, "qa")
    page.wait_for_url(f"{base}/dashboard")
    page.goto(alert_url)
    row = page.locator(f"tr[data-bag='{bag}']")
    row.locator("select").select_option("quarantine")
    row.locator("input[name=comment]").fill("Above -130 °C for 40 min: hold for deviation review")
    row.locator("input[name=password]").fill(pages.DEMO_PASSWORD)  # the e-signature
    row.locator("button").click()
    page.wait_for_selector(".decision-quarantine")
    shot(page, "alert-qa-quarantine")
    page.locator(f"a:has-text('{bag}')").click()
    page.wait_for_selector("[data-testid=ledger]")
    assert "quarantine" in page.locator("[data-testid=qa-hold]").inner_text()
    assert page.locator("[data-testid=out-of-range]").inner_text() != "0 s"
    shot(page, "exposure-ledger")


def test_a_fridge_tag_file_is_imported_by_the_worker_with_visible_progress(
    page,
    alerts_server,
):
    base = alerts_server
    log_in(page, base, "coordinator")
    page.wait_for_url(f"{base}/dashboard")
    page.click("nav[aria-label=Main] >> text=Loggers")
    expect(page.locator("table[aria-label='Loggers'] tbody tr")).to_have_count(2)
    page.set_input_files("#file", str(FRIDGETAG))
    page.select_option("#profile", "device")
    page.click("button:has-text('Import')")
    page.wait_for_selector("#import-progress")
    page.wait_for_selector("#import-progress[data-status=done]", timeout=20000)
    outcome = page.locator("[data-testid=import-outcome]").inner_text()
    assert "berlinger_fridgetag" in outcome and "835 new" in outcome
    assert "-90.0 °C" in outcome
    shot(page, "import-done")
