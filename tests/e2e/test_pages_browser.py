"""Coordinator pages in a real browser (Debian chromium through Playwright)."""

from __future__ import annotations

import shutil
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from playwright.sync_api import expect
from werkzeug.serving import make_server

from tests.conftest import reset_database
from tracker import migrate
from tracker.clock import SystemClock
from tracker.config import Settings
from tracker.db import make_engine
from tracker.db import make_session_factory
from tracker.demo import DEMO_PASSWORD
from tracker.demo import seed_demo
from tracker.services.auth import make_hasher
from tracker.unit_of_work import UnitOfWork

pytestmark = pytest.mark.browser
ARTIFACTS = Path(__file__).resolve().parents[1] / "artifacts"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
]


def committed_database(tmp_path_factory, name: str):  # type: ignore[no-untyped-def]
    """Settings and engine of a new, migrated SQLite file database that the served app and
    the test both commit to (a browser test cannot share the suite's rolled-back one)."""
    db = tmp_path_factory.mktemp(name) / f"{name}.db"
    settings = Settings(
        env="test",
        database_url=f"sqlite:///{db}",
        secret_key="browser-test-secret",  # type: ignore[arg-type]
        argon2_time_cost=1,
        argon2_memory_cost=1024,
    )
    engine = make_engine(settings.database_url)
    reset_database(engine)
    migrate.upgrade(settings.database_url)
    return settings, engine


def load_demo(engine, settings: Settings) -> None:  # type: ignore[no-untyped-def]
    with UnitOfWork(make_session_factory(engine)) as uow:
        seed_demo(uow=uow, hasher=make_hasher(settings), settings=settings, now=SystemClock().now())
        uow.commit()


@contextmanager
def serving(app) -> Iterator[str]:  # type: ignore[no-untyped-def]
    """The app on a free local port in a background thread; its base URL."""
    server = make_server("127.0.0.1", 0, app, threaded=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()


@pytest.fixture(scope="module")
def live_server(tmp_path_factory):
    """The real app on a committed SQLite database loaded with the demo data."""
    from tracker.web import create_app

    settings, engine = committed_database(tmp_path_factory, "browser")
    load_demo(engine, settings)
    engine.dispose()
    with serving(create_app(settings)) as base:
        yield base


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    executable = shutil.which("chromium")
    if executable is None:
        pytest.fail("Debian chromium is not installed (make system-deps installs it)")
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


@pytest.fixture
def page(browser):
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()
    # A loaded 2-core CI machine can take longer than Playwright's 30 s default (and than
    # the 5 s default of web-first expectations).
    page.set_default_timeout(90_000)
    expect.set_options(timeout=90_000)
    errors: list[str] = []
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    yield page
    context.close()
    assert errors == [], f"browser console errors: {errors}"


def shot(page, name):
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)


def log_in(page, base, username, password=DEMO_PASSWORD):
    page.goto(f"{base}/login")
    page.fill("#username", username)
    page.fill("#password", password)
    page.click("button[type=submit]")


def test_login_page_refuses_a_wrong_password_with_a_clear_message(page, live_server):
    log_in(page, live_server, "coordinator", "not the password")
    alert = page.locator("[role=alert]")
    assert alert.get_attribute("data-reason") == "bad_credentials"
    assert "wrong password" in alert.inner_text().lower()
    shot(page, "login-refused")


def test_a_coordinator_logs_in_and_sees_the_demo_journeys(page, live_server):
    log_in(page, live_server, "coordinator")
    page.wait_for_url(f"{live_server}/dashboard")
    page.click("nav[aria-label=Main] >> text=Therapy orders")
    rows = page.locator("table[aria-label='Therapy orders'] tbody tr")
    expect(rows).to_have_count(12)  # waits for the list; count() would not
    stages = set(page.locator(".stage").all_inner_texts())
    assert {"ordered", "collection", "manufacturing", "infused"} <= stages
    shot(page, "orders")


def test_the_order_page_shows_identifiers_items_and_a_verified_timeline(page, live_server):
    log_in(page, live_server, "coordinator")
    page.wait_for_url(f"{live_server}/dashboard")
    page.goto(f"{live_server}/orders")
    page.locator("tr", has=page.locator("text=infused")).locator("a.coi").first.click()
    page.wait_for_selector("[data-testid=chain-status]")
    assert "verified" in page.locator("[data-testid=chain-status]").inner_text()
    assert page.locator("[data-testid=coi]").inner_text().startswith("&/CH")
    assert page.locator("[data-testid=identity]").is_visible()
    items = page.locator("table[aria-label='Linked items'] tbody tr")
    expect(items).to_have_count(2)  # the apheresis bag and the product made from it
    expect(page.locator("ol.timeline li").nth(14)).to_be_attached()  # 15 events or more
    shot(page, "order")


def test_manufacturing_staff_see_no_patient_identity(page, live_server):
    log_in(page, live_server, "operator")
    page.wait_for_url(f"{live_server}/dashboard")
    page.goto(f"{live_server}/orders")
    page.locator("a.coi").first.click()
    page.wait_for_selector("[data-testid=identity-hidden]")
    assert page.locator("[data-testid=identity]").count() == 0
    assert "MRN-DEMO" not in page.content()
    shot(page, "order-no-identity")


def test_a_courier_sees_only_the_orders_whose_shipments_they_carry(page, live_server):
    log_in(page, live_server, "courier")
    page.wait_for_url(f"{live_server}/dashboard")
    page.goto(f"{live_server}/orders")
    rows = page.locator("table[aria-label='Therapy orders'] tbody tr")
    # Demo journeys 4 to 11 have an apheresis shipment assigned to the demo courier (packing
    # scans need a planned shipment, so journey 4's is planned and packed, not yet picked up).
    assert rows.count() == 8
    assert "ordered" not in page.locator(".stage").all_inner_texts()


def test_logging_out_returns_to_the_login_page(page, live_server):
    log_in(page, live_server, "qa")
    page.wait_for_url(f"{live_server}/dashboard")
    page.click("text=Log out")
    page.wait_for_url(f"{live_server}/login")
    page.goto(f"{live_server}/orders")
    assert "/login" in page.url
