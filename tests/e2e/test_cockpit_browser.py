"""The cockpit in a real browser: dashboard (live, keyboard, tablet), journey, shipment chart,
inbox, audit exports and review, certificates verified offline, administration.

Screenshots go to tests/artifacts/ (cockpit-*.png). A console error (a CSP violation from an
inline script or style, a failed fetch) fails the test, through the shared page fixture.
"""

# ruff: noqa: F811

from __future__ import annotations

import csv
import io
import json
import re
from datetime import timedelta

import pytest
from playwright.sync_api import expect
from sqlalchemy import select

from tests.e2e import test_pages_browser as pages
from tests.e2e.test_pages_browser import log_in
from tests.e2e.test_pages_browser import shot
from tracker import verify_certificate as verifier
from tracker.clock import SystemClock
from tracker.config import Settings
from tracker.db import make_engine
from tracker.db import make_session_factory
from tracker.demo import DEMO_PASSWORD
from tracker.domain.custody import ItemKind
from tracker.models import Item
from tracker.models import TherapyOrder
from tracker.services import custody
from tracker.services.principals import principal_for_user
from tracker.unit_of_work import UnitOfWork

pytestmark = pytest.mark.browser
browser = pages.browser
page = pages.page


class Live:
    def __init__(self, base: str, settings: Settings) -> None:
        self.base = base
        self.settings = settings
        self.engine = make_engine(settings.database_url)

    def uow(self) -> UnitOfWork:
        return UnitOfWork(make_session_factory(self.engine))


@pytest.fixture(scope="module")
def live(tmp_path_factory):
    """The app on a committed SQLite demo database that the test may also write to."""
    from tracker.web import create_app

    settings, engine = pages.committed_database(tmp_path_factory, "cockpit")
    pages.load_demo(engine, settings)
    engine.dispose()
    with pages.serving(create_app(settings)) as base:
        yield Live(base, settings)


def enter(page, live, who="coordinator"):
    log_in(page, live.base, who)
    page.wait_for_url(f"{live.base}/dashboard")


def test_the_dashboard_shows_every_journey_with_its_clock_today_and_the_inbox(page, live):
    enter(page, live)
    rows = page.locator("table[aria-label='Active journeys'] tbody tr")
    assert rows.count() == 12
    counts = sum(
        int(page.locator(f"[data-testid=count-{r}] strong").inner_text())
        for r in ("overdue", "at_risk", "on_track", "no_clock")
    )
    assert counts == 12
    assert int(page.locator("[data-testid=open-alerts]").inner_text()) >= 1
    assert page.locator("[data-testid=today] h3").count() == 3
    assert page.locator("[data-testid=activity] li").count() >= 5
    shot(page, "cockpit-dashboard")
    # Filter by clicking a risk chip, then clear it.
    page.click("[data-testid=count-no_clock]")
    page.wait_for_url(re.compile(r".*risk=no_clock"))
    assert {r.get_attribute("data-risk") for r in rows.all()} <= {"no_clock"}
    page.click("text=Clear")
    expect(rows).to_have_count(12)  # count() alone would not wait for the new page


def test_the_dashboard_works_on_a_tablet_and_with_the_keyboard_alone(browser, live):
    context = browser.new_context(viewport={"width": 820, "height": 1180}, has_touch=True)
    tablet = context.new_page()
    errors: list[str] = []
    tablet.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    try:
        enter(tablet, live)
        # The table scrolls inside its own region; the page itself does not scroll sideways.
        shot(tablet, "cockpit-dashboard-tablet")
        page_width = tablet.evaluate("document.documentElement.scrollWidth")
        assert page_width <= 820
        # Keyboard: Tab from the top reaches the first journey link, Enter opens it.
        tablet.locator("#q").focus()
        for _ in range(40):
            tablet.keyboard.press("Tab")
            if tablet.evaluate("document.activeElement.id.startsWith('j-')"):
                break
        focused = tablet.evaluate("document.activeElement.id")
        assert focused.startswith("j-ORD-")
        outline = tablet.evaluate("getComputedStyle(document.activeElement).outlineStyle")
        assert outline != "none"  # a visible focus ring
        shot(tablet, "cockpit-dashboard-keyboard-focus")
        tablet.keyboard.press("Enter")
        tablet.wait_for_url(re.compile(r".*/orders/ORD-[0-9A-F]+/journey"))
    finally:
        context.close()
    assert errors == []


def test_a_new_custody_event_lands_on_the_dashboard_without_a_reload(page, live):
    enter(page, live)
    page.evaluate("window.notReloaded = true")
    # Somewhere else, a collection nurse registers the bag of the journey not yet started.
    with live.uow() as uow:
        from tracker.models import User

        order = uow.session.scalar(select(TherapyOrder).order_by(TherapyOrder.id).limit(1))
        nurse = uow.session.scalar(select(User).where(User.username == "collector"))
        bag = custody.register_bag(
            uow=uow,
            principal=principal_for_user(nurse),
            order_public_id=order.public_id,
            kind=ItemKind.apheresis_bag,
            now=SystemClock().now(),
        )
        uow.commit()
        bag_id, order_id = bag.public_id, order.public_id
    page.wait_for_selector(f"[data-testid=activity] >> text={bag_id}", timeout=25_000)
    row = page.locator(f"tr[data-order='{order_id}']")
    page.wait_for_function(
        "id => document.querySelector(`tr[data-order='${id}'] .stage`).innerText !== 'ordered'",
        arg=order_id,
        timeout=25_000,
    )
    assert row.locator(".stage").inner_text() == "collection"
    assert page.evaluate("window.notReloaded") is True
    shot(page, "cockpit-dashboard-live-update")


def test_the_journey_page_verifies_the_chain_and_the_certificate_verifies_offline(
    page, live, tmp_path
):
    enter(page, live)
    infused = page.locator("tr", has=page.locator(".stage-infused")).locator("a.coi").first
    infused.click()
    page.wait_for_selector("[data-testid=chain-verdict]")
    assert "verified" in page.locator("[data-testid=chain-verdict]").inner_text()
    kinds = set(page.locator("ol.journey li").evaluate_all("els => els.map(e => e.dataset.kind)"))
    assert {"custody", "label"} <= kinds
    assert page.locator(".link-bad").count() == 0
    shot(page, "cockpit-journey")
    page.click("text=Verify again")
    page.wait_for_selector("text=Verified again at")
    with page.expect_download() as download:
        page.click("[data-testid=certificate-json]")
    path = tmp_path / "bundle.json"
    download.value.save_as(path)
    bundle = json.loads(path.read_text())
    problems, _ = verifier.verify_bundle(bundle)
    assert problems == []
    assert verifier.main([str(path), "--quiet"]) == 0
    with page.expect_download() as pdf:
        page.click("[data-testid=certificate-pdf]")
    assert pdf.value.suggested_filename.endswith(".pdf")


def test_qa_signs_the_chain_of_identity_with_the_password(page, live):
    enter(page, live, "qa")
    page.goto(f"{live.base}/orders")
    page.locator("tr", has=page.locator("text=infused")).locator("a.coi").first.click()
    page.wait_for_url(re.compile(r".*/orders/ORD-[0-9A-F]+$"))
    page.goto(page.url + "/journey")
    page.fill("#cert-password", "not my password")
    page.click("text=Sign the chain up to event")
    page.wait_for_selector("text=wrong")
    page.fill("#cert-password", DEMO_PASSWORD)
    page.click("text=Sign the chain up to event")
    page.wait_for_selector("text=Chain of identity signed (review)")
    signoff = page.locator("ol.journey li[data-kind=signature]", has_text="coi certificate")
    assert signoff.count() == 1
    assert "Quinn Quality" in signoff.inner_text()
    shot(page, "cockpit-journey-signed")


def test_the_shipment_page_draws_the_temperature_chart_and_says_it_in_words(page, live):
    enter(page, live)
    with live.uow() as uow:
        from tracker.models import Shipment

        # The demo's shipment on the road, whose logger holds a 40-minute excursion.
        shipment = uow.session.scalar(
            select(Shipment).where(Shipment.state == "picked_up").order_by(Shipment.id).limit(1)
        )
        public_id = shipment.public_id
    page.goto(f"{live.base}/shipments/{public_id}")
    page.wait_for_selector("#temperature-chart[data-ready=true] canvas")
    summary = page.locator("[data-testid=temperature-summary]").inner_text()
    assert "readings" in summary and "excursion" in summary
    assert page.locator("[data-testid=excursions] li").count() >= 1
    assert page.locator("table[aria-label='Per-bag exposure'] tbody tr").count() == 1
    shot(page, "cockpit-shipment")


def test_a_coordinator_acknowledges_an_alert_from_the_inbox(page, live):
    enter(page, live)
    page.click("nav[aria-label=Main] >> text=Alerts")
    page.wait_for_url(f"{live.base}/alerts")  # loaded: the whole list is there to count
    forms = page.locator("table[aria-label='Alerts'] form")
    before = forms.count()
    assert before >= 1
    shot(page, "cockpit-inbox")
    first = forms.first
    first.locator("input[name=comment]").fill("Called the courier; lid re-seated")
    first.locator("button").click()
    page.wait_for_selector("text=acknowledged; escalation stopped")
    # The message comes before the list: wait for the list, not just the message.
    expect(page.locator("table[aria-label='Alerts'] form")).to_have_count(before - 1)
    page.click("text=All alerts")
    assert "Called the courier" in page.locator("table[aria-label='Alerts']").inner_text()
    shot(page, "cockpit-inbox-acknowledged")


def test_the_audit_trail_is_filtered_exported_and_its_review_signed(page, live, tmp_path):
    enter(page, live, "admin")
    page.click("nav[aria-label=Main] >> text=Audit")
    with live.uow() as uow:
        from tracker.models import Patient

        patient = uow.session.scalar(select(Patient.public_id).order_by(Patient.id.desc()))
    page.fill("#patient", patient)
    page.click("button:has-text('Search')")
    page.wait_for_url(re.compile(r".*patient="))
    actions = set(
        page.locator("table[aria-label='Audit entries'] tbody tr").evaluate_all(
            "rows => rows.map(r => r.dataset.action)"
        )
    )
    assert {"create", "custody_transition"} <= actions
    shot(page, "cockpit-audit")
    with page.expect_download() as csv_file:
        page.click("[data-testid=export-csv]")
    saved = tmp_path / "audit.csv"
    csv_file.value.save_as(saved)
    assert patient in saved.read_text(encoding="utf-8-sig") or "custody_transition" in (
        saved.read_text(encoding="utf-8-sig")
    )
    with page.expect_download() as pdf_file:
        page.click("[data-testid=export-pdf]")
    pdf = tmp_path / "audit.pdf"
    pdf_file.value.save_as(pdf)
    assert pdf.read_bytes().startswith(b"%PDF")
    _render_pdf(pdf, "cockpit-audit-export")
    page.fill("#review-comment", "Reviewed this patient's trail: complete, reasons present")
    page.fill("#review-password", DEMO_PASSWORD)
    page.click("text=Sign review")
    page.wait_for_selector("table[aria-label='Signed reviews']")
    assert "Reviewed this patient's trail" in page.content()
    shot(page, "cockpit-audit-reviews")


def test_a_coordinator_narrows_the_audit_by_item_user_site_and_days_and_exports_it(
    page, live, tmp_path
):
    from tracker.models import AuditEntry
    from tracker.models import Site
    from tracker.models import User

    now = SystemClock().now()
    with live.uow() as uow:
        # The collection nurse's latest custody change at the apheresis unit.
        item, site = uow.session.execute(
            select(AuditEntry.entity_id, Site.code)
            .join(User, User.id == AuditEntry.actor_user_id)
            .join(Site, Site.id == AuditEntry.site_id)
            .where(
                User.username == "collector",
                Site.code == "CC-PRO",
                AuditEntry.entity_type == "item",
                AuditEntry.action == "custody_transition",
            )
            .order_by(AuditEntry.id.desc())
            .limit(1)
        ).one()
    enter(page, live)  # a coordinator, who sees the trail of their sites
    page.click("nav[aria-label=Main] >> text=Audit")
    page.wait_for_url(f"{live.base}/audit")
    page.fill("#item", item)
    page.fill("#user", "collector")
    page.select_option("#site", "CC-PRO")
    page.fill("#from", (now - timedelta(days=60)).date().isoformat())
    page.fill("#to", now.date().isoformat())
    page.click("button:has-text('Search')")
    page.wait_for_url(re.compile(r".*item=.*user=collector.*site=CC-PRO"))
    rows = page.locator("table[aria-label='Audit entries'] tbody tr")
    expect(rows.first).to_be_visible()
    shown = rows.all_inner_texts()
    assert shown and all("collector" in r and site in r for r in shown)
    assert "custody_transition" in rows.evaluate_all("rs => rs.map(r => r.dataset.action)")
    shot(page, "cockpit-audit-coordinator-filtered")
    with page.expect_download() as csv_file:
        page.click("[data-testid=export-csv]")
    saved = tmp_path / "coordinator-audit.csv"
    csv_file.value.save_as(saved)
    exported = list(csv.DictReader(io.StringIO(saved.read_text(encoding="utf-8-sig"))))
    assert len(exported) == len(shown)
    assert {r["username"] for r in exported} == {"collector"}
    assert {r["site"] for r in exported} == {site}
    # The same search on days long before the demo finds nothing.
    page.fill("#from", "2001-01-01")
    page.fill("#to", "2001-01-31")
    page.click("button:has-text('Search')")
    expect(page.get_by_text("No entry matches.")).to_be_visible()


def _render_pdf(path, name):
    """A look at the first page of a PDF, next to the screenshots."""
    import pypdfium2 as pdfium

    pdf = pdfium.PdfDocument(str(path))
    pages.ARTIFACTS.mkdir(exist_ok=True)
    pdf[0].render(scale=1.2).to_pil().save(pages.ARTIFACTS / f"{name}.png")
    pdf.close()


def test_an_administrator_works_every_admin_page(page, live):
    enter(page, live, "admin")
    page.click("nav[aria-label=Main] >> text=Admin")
    page.wait_for_url(f"{live.base}/admin/sites")
    shot(page, "cockpit-admin-sites")
    row = page.locator("tr[data-site=CD-BOS]")
    row.locator("input[name=address]").fill("11 Depot Ave, Boston MA")
    row.locator("input[name=reason]").fill("the depot moved next door")
    row.locator("button").click()
    page.wait_for_selector("text=Site CD-BOS updated.")
    for label, name in (
        ("Users and roles", "users"),
        ("Product profiles", "profiles"),
        ("Escalation ladders", "ladders"),
        ("Printers", "printers"),
        ("Devices", "devices"),
    ):
        page.click(f"nav[aria-label=Administration] >> text={label}")
        page.wait_for_url(f"{live.base}/admin/{name}")
        shot(page, f"cockpit-admin-{name}")
    page.fill("#nd-name", "Infusion bedside scanner")
    page.select_option("#nd-site", "TC-BOS")
    page.click("text=Register and show its token")
    token = page.locator("[data-testid=device-token]").inner_text()
    assert token.startswith("dev_")
    shot(page, "cockpit-admin-device-token")
    page.goto(f"{live.base}/admin/devices")
    assert token not in page.content()
    page.goto(f"{live.base}/admin/users")
    page.click("a:has-text('courier')")
    page.fill("#grant-reason", "covers the Providence runs")
    page.select_option("#grant-role", "courier")
    page.select_option("#grant-site", "CC-PRO")
    page.click("button:has-text('Grant')")
    page.wait_for_selector("text=Role granted")
    assert page.locator("[data-role='courier@CC-PRO']").count() == 1
    shot(page, "cockpit-admin-user")


def test_nobody_but_administrators_opens_the_admin_pages(page, live):
    enter(page, live)
    assert page.locator("nav[aria-label=Main] >> text=Admin").count() == 0
    # (page.request shares the session but logs no console error for the refusal)
    assert page.request.get(f"{live.base}/admin/users").status == 403


def test_every_bag_in_the_demo_has_a_journey_page(page, live):
    enter(page, live, "operator")
    with live.uow() as uow:
        orders = list(
            uow.session.scalars(
                select(TherapyOrder.public_id)
                .join(Item, Item.order_id == TherapyOrder.id)
                .where(Item.kind == "final_product_bag")
            )
        )
    for public_id in orders:
        response = page.goto(f"{live.base}/orders/{public_id}/journey")
        assert response.status == 200
        assert page.locator("[data-testid=chain-verdict].chain-ok").count() == 1
    assert "MRN-DEMO" not in page.content()


def test_a_coordinator_plans_a_journey_and_sees_the_plan_beside_what_happened(page, live):
    enter(page, live)
    with live.uow() as uow:
        second = uow.session.scalar(
            select(TherapyOrder.public_id).order_by(TherapyOrder.id).offset(1).limit(1)
        )
    page.goto(f"{live.base}/orders/{second}/journey")
    page.click("text=Plan this journey")
    page.click("text=Propose the earliest plan")
    page.wait_for_selector("[data-testid=proposal]")
    page.click("text=Hold for 48 hours")
    page.wait_for_selector("[data-testid=plan-status]")
    page.goto(f"{live.base}/orders/{second}/journey")
    steps = page.locator("table[aria-label='Plan against actual'] tbody tr")
    assert steps.count() >= 7
    assert "to come" in steps.first.inner_text()
    assert page.locator("ol.journey li[data-kind=plan]").count() >= 1
    shot(page, "cockpit-journey-planned")
    page.goto(f"{live.base}/dashboard?q={second}")
    row = page.locator(f"tr[data-order='{second}']")
    assert "plan:" in row.inner_text() or "left" in row.inner_text()


CONTRAST = """
(selectors) => {
  const parse = (c) => (c.match(/[\\d.]+/g) || []).map(Number);
  const lum = ([r, g, b]) => {
    const f = (v) => { v /= 255; return v <= 0.03928 ? v / 12.92 : ((v + 0.055) / 1.055) ** 2.4; };
    return 0.2126 * f(r) + 0.7152 * f(g) + 0.0722 * f(b);
  };
  const background = (el) => {
    for (let e = el; e; e = e.parentElement) {
      const c = parse(getComputedStyle(e).backgroundColor);
      if (c.length === 3 || (c.length === 4 && c[3] > 0.5)) return c.slice(0, 3);
    }
    return [255, 255, 255];
  };
  const worst = [];
  for (const el of document.querySelectorAll(selectors)) {
    if (!el.offsetParent || !el.innerText.trim()) continue;
    const fg = parse(getComputedStyle(el).color).slice(0, 3);
    const [a, b] = [lum(fg), lum(background(el))];
    const ratio = (Math.max(a, b) + 0.05) / (Math.min(a, b) + 0.05);
    const what = el.className + ' ' + el.innerText.slice(0, 30);
    if (ratio < 4.5) worst.push(what + ': ' + ratio.toFixed(2));
  }
  return worst;
}
"""


def test_text_on_the_cockpit_pages_meets_wcag_aa_contrast(page, live):
    enter(page, live)
    selectors = (
        "a, td, th, .risk, .stage, .state, .sev, .kind-tag, .muted, button, label, h1, h2, h3, p"
    )
    assert page.evaluate(CONTRAST, selectors) == []
    page.locator("a.coi").first.click()
    assert page.evaluate(CONTRAST, selectors) == []
    page.goto(f"{live.base}/audit")
    assert page.evaluate(CONTRAST, selectors) == []


FOCUS_WALK = """
(steps) => ({
  tag: document.activeElement.tagName,
  id: document.activeElement.id || document.activeElement.textContent.trim().slice(0, 30),
  outline: getComputedStyle(document.activeElement).outlineStyle,
  width: getComputedStyle(document.activeElement).outlineWidth,
})
"""


def test_every_cockpit_page_shows_where_the_keyboard_focus_is(page, live):
    """WCAG 2.4.7: tabbing through each page, every element that takes the focus shows it."""
    enter(page, live)
    with live.uow() as uow:
        from tracker.models import Shipment

        order = uow.session.scalar(select(TherapyOrder.public_id).order_by(TherapyOrder.id.desc()))
        shipment = uow.session.scalar(select(Shipment.public_id).order_by(Shipment.id))
    paths = [
        "/dashboard",
        "/alerts",
        "/audit",
        f"/orders/{order}/journey",
        f"/shipments/{shipment}",
        "/orders",
        "/labels",
        "/schedules/",
    ]
    for path in paths:
        page.goto(f"{live.base}{path}")
        reached = []
        for _ in range(25):
            page.keyboard.press("Tab")
            state = page.evaluate(FOCUS_WALK)
            if state["tag"] == "BODY":
                break
            reached.append(state)
            assert state["outline"] != "none" and state["width"] != "0px", (path, state)
        assert len({(r["tag"], r["id"]) for r in reached}) >= 5, (path, reached)


def test_a_scan_lands_on_the_dashboard_and_a_refused_one_stands_out(page, live):
    from tracker.models import Device
    from tracker.models import Patient
    from tracker.models import Site
    from tracker.models import StepRun
    from tracker.models import User
    from tracker.services import scans

    enter(page, live)
    page.evaluate("window.notReloaded = true")
    with live.uow() as uow:
        s = uow.session
        unstarted = [
            o
            for o in s.scalars(select(TherapyOrder).order_by(TherapyOrder.id))
            if s.scalar(select(StepRun.id).where(StepRun.order_id == o.id)) is None
        ]
        order, other = unstarted[0], unstarted[1]
        wristband = s.scalar(select(Patient.wristband_code).where(Patient.id == order.patient_id))
        other_band = s.scalar(select(Patient.wristband_code).where(Patient.id == other.patient_id))
        scanner = s.scalar(
            select(Device.public_id)
            .join(Site, Site.id == Device.site_id)
            .where(Device.kind == "scanner", Site.code == "CC-PRO")
        )
        collector = principal_for_user(s.scalar(select(User).where(User.username == "collector")))
        run = f"browser-{order.public_id}"
        for n, raw in enumerate((wristband, other_band)):
            outcome = scans.record_scan(
                uow=uow,
                principal=collector,
                scan=scans.ScanInput(
                    raw=raw,
                    device=scanner,
                    step="collect_verify_patient",
                    client_at=SystemClock().now(),
                    nonce=f"browser-nonce-{n}",
                    client_run=run,
                ),
                now=SystemClock().now(),
            )
            assert (outcome.body["status"] == "error") == (n == 1), outcome.body
        uow.commit()
    activity = page.locator("[data-testid=activity]")
    page.wait_for_selector(
        "[data-testid=activity] li.activity-scan[data-result=error]", timeout=25_000
    )
    assert "refused" in activity.locator("li[data-result=error]").first.inner_text()
    assert activity.locator("li.activity-scan").count() >= 2
    assert page.evaluate("window.notReloaded") is True
    shot(page, "cockpit-dashboard-scan-landed")
