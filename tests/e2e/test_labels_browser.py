"""The Labels pages in a real browser: preview, print, reprint with a reason, a printer failure.

The demo's collection-site printer is pointed at a fake Zebra listening on 127.0.0.1, so the
ZPL the page sends is read back and decoded like a printer would print it.
"""

from __future__ import annotations

import socket
import threading

import pytest
from sqlalchemy import select
from werkzeug.serving import make_server

from tests.conftest import reset_database
from tests.e2e.test_pages_browser import browser  # noqa: F401  (fixture)
from tests.e2e.test_pages_browser import log_in
from tests.e2e.test_pages_browser import page  # noqa: F401  (fixture)
from tests.e2e.test_pages_browser import shot
from tests.integration.test_label_printing import decode_zpl
from tests.unit.labels.test_label_printers import FakeZebra
from tracker import migrate
from tracker.clock import SystemClock
from tracker.config import Settings
from tracker.db import make_engine
from tracker.db import make_session_factory
from tracker.demo import seed_demo
from tracker.domain.access import Role
from tracker.domain.custody import ItemKind
from tracker.models import Item
from tracker.models import Printer
from tracker.models import TherapyOrder
from tracker.services import custody
from tracker.services import printers
from tracker.services.auth import make_hasher
from tracker.services.principals import Principal
from tracker.unit_of_work import UnitOfWork

pytestmark = [pytest.mark.browser, pytest.mark.enable_socket]


@pytest.fixture(scope="module")
def zebra():
    server = FakeZebra()
    yield server
    server.close()


@pytest.fixture(scope="module")
def closed_port():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))  # bound, never listening: a printer that is off
        yield probe.getsockname()[1]


@pytest.fixture(scope="module")
def live_server(tmp_path_factory, zebra, closed_port):
    """The app on a committed SQLite demo database whose bench printer is the fake Zebra."""
    from tracker.web import create_app

    db = tmp_path_factory.mktemp("labels-browser") / "browser.db"
    settings = Settings(
        env="test",
        database_url=f"sqlite:///{db}",
        secret_key="browser-test-secret",  # type: ignore[arg-type]
        argon2_time_cost=1,
        argon2_memory_cost=1024,
        printer_timeout_seconds=2.0,
    )
    engine = make_engine(settings.database_url)
    reset_database(engine)
    migrate.upgrade(settings.database_url)
    admin = Principal(user_id=None, name="setup", grants=frozenset({(Role.admin, None)}))
    with UnitOfWork(make_session_factory(engine)) as uow:
        now = SystemClock().now()
        seed_demo(uow=uow, hasher=make_hasher(settings), settings=settings, now=now)
        bench = uow.session.scalar(select(Printer).where(Printer.name == "Apheresis bench Zebra"))
        printers.update_printer(
            uow=uow,
            principal=admin,
            printer_public_id=bench.public_id,
            changes={"port": zebra.port, "default_size": "4x6"},
            now=now,
        )
        printers.create_printer(
            uow=uow,
            principal=admin,
            site_code="CC-PRO",
            name="Spare bench Zebra (off)",
            host="127.0.0.1",
            port=closed_port,
            now=now,
        )
        # The demo prints every bag's label at registration; a bag just registered on the
        # order-only demo journey is the one still waiting for its first print.
        first_order = uow.session.scalar(
            select(TherapyOrder).where(~TherapyOrder.items.any()).order_by(TherapyOrder.id)
        )
        custody.register_bag(
            uow=uow,
            principal=admin,
            order_public_id=first_order.public_id,
            kind=ItemKind.apheresis_bag,
            now=now,
        )
        uow.commit()
    engine.dispose()
    app = create_app(settings)
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield {"url": f"http://127.0.0.1:{server.server_port}", "db": settings.database_url}
    server.shutdown()


def din_of(db_url: str, public_id: str) -> str:
    engine = make_engine(db_url)
    try:
        with UnitOfWork(make_session_factory(engine)) as uow:
            return uow.session.scalar(select(Item.din).where(Item.public_id == public_id))
    finally:
        engine.dispose()


def test_the_labels_overview_shows_which_labels_are_printed(page, live_server):  # noqa: F811
    base = live_server["url"]
    log_in(page, base, "collector")
    page.wait_for_url(f"{base}/dashboard")
    page.click("nav[aria-label=Main] >> text=Labels")
    page.wait_for_url(f"{base}/labels")
    printed = page.locator("a.label-chip.printed[data-label=apheresis_bag]")
    unprinted = page.locator("a.label-chip.unprinted[data-label=apheresis_bag]")
    # Demo bags are printed at registration; the one bag the fixture added is not.
    assert printed.count() >= 10 and unprinted.count() == 1
    shot(page, "labels-overview")


def test_print_reprint_with_a_reason_and_a_printer_that_is_off(page, live_server, zebra):  # noqa: F811
    base = live_server["url"]
    log_in(page, base, "collector")
    page.wait_for_url(f"{base}/dashboard")
    page.goto(f"{base}/labels")
    page.locator("a.label-chip.unprinted[data-label=apheresis_bag]").click()
    page.wait_for_selector("h1 >> text=Apheresis bag label")
    bag = page.url.rsplit("/", 1)[1]
    din = din_of(live_server["db"], bag)
    preview = page.locator("img[data-testid=preview]")
    preview.wait_for()
    assert page.evaluate("img => img.complete && img.naturalWidth > 0", preview.element_handle())
    assert page.locator("[data-testid=history]").count() == 0  # never printed

    # First print, on the bench printer, 4x6.
    page.select_option("#printer", label=page.locator("#printer option").first.inner_text())
    page.select_option("#print-size", "4x6")
    page.click("[data-testid=print-form] button[type=submit]")
    status = page.locator("#label-message [role=status]")
    status.wait_for()
    assert "Printed on Apheresis bench Zebra" in status.inner_text()
    assert page.locator("[data-testid=history] tbody tr").count() == 1
    assert page.locator("[data-testid=reprint-note]").is_visible()
    shot(page, "label-printed")

    # A reprint without a reason is stopped by the form, and by the server if forced.
    page.click("[data-testid=print-form] button[type=submit]")
    assert page.locator("#print-reason").evaluate("el => !el.validity.valid")
    assert page.locator("[data-testid=history] tbody tr").count() == 1
    page.fill("#print-reason", "label smudged while spiking the bag")
    page.click("[data-testid=print-form] button[type=submit]")
    page.locator("#label-message [role=status] >> text=Reprinted").wait_for()
    rows = page.locator("[data-testid=history] tbody tr")
    assert rows.count() == 2
    top = rows.first.inner_text()
    assert "reprinted" in top and "label smudged while spiking the bag" in top and "05" in top
    shot(page, "label-reprinted")

    # The printer received the original, then the repeated label with flag 05.
    for _ in range(50):
        if len(zebra.received) >= 2:
            break
        page.wait_for_timeout(100)
    original, repeated = (decode_zpl(job) for job in zebra.received[-2:])
    assert (f"={din}00".encode(), "]C0") in original
    assert (f"={din}05".encode(), "]C0") in repeated

    # A printer that is off: a clear coded message, and the attempt in the history as failed.
    off = page.locator("#printer option", has_text="off").inner_text()
    page.select_option("#printer", label=off)
    page.fill("#print-reason", "second copy for the cassette")
    page.click("[data-testid=print-form] button[type=submit]")
    alert = page.locator("#label-message [role=alert]")
    alert.wait_for()
    assert alert.get_attribute("data-reason") == "printer_unreachable"
    assert "cannot reach" in alert.inner_text()
    assert "failed: printer_unreachable" in rows.first.inner_text()
    assert rows.count() == 3
    shot(page, "label-printer-off")

    # The QR link of the printed label leads, after login, to the bag on its order page.
    token = rows.nth(1).get_attribute("data-print")
    page.goto(f"{base}/i/{token}")
    page.wait_for_selector(f"tr#item-{bag}")
    assert page.url.endswith(f"#item-{bag}")


def test_staff_of_another_site_see_a_label_but_cannot_print_it(page, live_server):  # noqa: F811
    base = live_server["url"]
    log_in(page, base, "operator")
    page.wait_for_url(f"{base}/dashboard")
    page.goto(f"{base}/labels")
    # The oldest journey's bag is still at the collection centre, where operators have no role.
    page.locator("a.label-chip[data-label=apheresis_bag]").last.click()
    page.wait_for_selector("[data-testid=cannot-print]")
    assert page.locator("[data-testid=print-form]").count() == 0
    shot(page, "label-view-only")
