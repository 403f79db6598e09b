"""Schedules pages in a real browser: calendars, plan timeline, rescheduling, ICS, waitlist,
profiles and notifications, on the demo data (its own live server and database)."""

# The fixtures are shared with test_pages_browser by import, so pytest sees them here; their
# names are then "redefined" as test arguments, which is how fixtures work.
# ruff: noqa: F811

from __future__ import annotations

import urllib.request
from datetime import date
from datetime import timedelta

import icalendar
import pytest

from tests.e2e.test_pages_browser import browser  # noqa: F401  (fixture)
from tests.e2e.test_pages_browser import live_server  # noqa: F401  (fixture)
from tests.e2e.test_pages_browser import log_in
from tests.e2e.test_pages_browser import page  # noqa: F401  (fixture)
from tests.e2e.test_pages_browser import shot
from tracker.demo import FAMILY
from tracker.demo import GIVEN

pytestmark = pytest.mark.browser


def open_plan(page, base, who="coordinator", status="booked"):
    log_in(page, base, who)
    page.wait_for_url(f"{base}/dashboard")
    page.goto(f"{base}/schedules/")
    row = page.locator(
        "table[aria-label='Journey plans'] tr", has=page.locator(f".status-{status}")
    )
    row.locator("a.mono").first.click()
    page.wait_for_selector("svg.timeline")


def test_the_week_calendar_shows_bookings_and_utilisation_in_site_time(page, live_server):
    log_in(page, live_server, "coordinator")
    page.wait_for_url(f"{live_server}/dashboard")
    page.click("nav[aria-label=Main] >> text=Schedules")
    page.locator("tr[data-site=CC-PRO]").get_by_role("link", name="Week").click()
    page.wait_for_selector("table[aria-label='Capacity calendar']")
    assert "America/New_York" in page.locator("h1").inner_text()
    first_range = page.locator("[data-testid=range]").inner_text()
    page.click("[data-testid=next]")  # an htmx swap, pushed into the address bar
    page.wait_for_function(
        "t => document.querySelector('[data-testid=range]').innerText !== t", arg=first_range
    )
    assert "view=week&date=" in page.url
    page.click("[data-testid=prev]")
    page.wait_for_function(
        "t => document.querySelector('[data-testid=range]').innerText === t", arg=first_range
    )
    # The demo books from tomorrow on: walk forward until a booking shows.
    for _ in range(3):
        if page.locator("a.chip").count():
            break
        before = page.locator("[data-testid=range]").inner_text()
        page.click("[data-testid=next]")
        page.wait_for_function(
            "t => document.querySelector('[data-testid=range]').innerText !== t", arg=before
        )
    chips = page.locator("a.chip")
    assert chips.count() >= 1
    totals = page.locator("[data-testid=site-utilisation] td")
    assert totals.count() == 7
    # Chairs work Monday to Friday: five days with a utilisation bar, the weekend closed.
    assert page.locator("[data-testid=site-utilisation] meter").count() == 5
    used = page.locator("[data-testid=util] span").all_inner_texts()
    assert any(u.split("/")[0] != "0" for u in used)
    shot(page, "schedules-calendar-week")


def test_the_day_calendar_lists_each_window_with_its_bookings(page, live_server):
    open_plan(page, live_server)
    infusion = page.locator("table[aria-label='Plan steps'] tr[data-step=infusion] td")
    day = infusion.nth(2).inner_text().split()[0]
    page.goto(f"{live_server}/schedules/sites/TC-BOS?view=day&date={day}")
    assert page.locator("table[aria-label='Capacity calendar'] thead th").count() == 2
    assert page.locator(".day-view .win a.chip").count() >= 1
    heading = page.locator("[data-testid=range]").inner_text()
    assert date.fromisoformat(day).strftime("%d %B %Y") in heading
    shot(page, "schedules-calendar-day")


def test_the_plan_timeline_shows_every_step_why_and_the_handoff_deadlines(page, live_server):
    open_plan(page, live_server)
    bars = page.locator("svg.timeline g.step")
    # Fresh CD19: collection, shipping, manufacturing, release, return, LD, infusion.
    assert bars.count() == 7
    assert page.locator("svg.timeline rect.booked").count() == 3
    assert page.locator("[data-testid=plan-status]").inner_text() == "booked"
    assert page.locator("[data-testid=flags-ok]").is_visible()
    deadlines = page.locator("[data-testid=deadlines] li").all_inner_texts()
    assert any("Courier picks up" in d for d in deadlines)
    assert any("Infusion at site TC-BOS" in d for d in deadlines)
    assert "MRN-DEMO" not in page.content()
    shot(page, "schedules-plan-timeline")


def test_rescheduling_previews_the_knock_on_and_needs_a_reason_and_confirmation(page, live_server):
    open_plan(page, live_server, status="held")
    row = page.locator("table[aria-label='Plan steps'] tr[data-step=infusion]")
    old_infusion = row.locator("td").nth(2).inner_text()
    old_day = date.fromisoformat(old_infusion.split()[0])
    page.select_option("select[name=step]", "infusion")
    page.fill("input[name=date]", (old_day + timedelta(days=7)).isoformat())
    page.click("text=Preview knock-on effects")
    page.wait_for_selector("table[aria-label='Knock-on effects']")
    moved = page.locator("table[aria-label='Knock-on effects'] tr.moved")
    assert moved.count() >= 1
    assert page.locator("tr[data-step=infusion].moved").count() == 1
    shot(page, "schedules-reschedule-preview")
    # The browser refuses to submit without a reason and the review box ticked.
    page.click("text=Confirm reschedule")
    assert page.locator("[data-testid=confirm-reschedule]").is_visible()
    page.fill("textarea[name=reason]", "patient asked for a later date")
    page.check("input[name=reviewed]")
    page.click("text=Confirm reschedule")
    page.wait_for_selector(".flash")
    assert "rescheduled" in page.locator(".flash").inner_text()
    new_infusion = (
        page.locator("table[aria-label='Plan steps'] tr[data-step=infusion] td").nth(2).inner_text()
    )
    assert date.fromisoformat(new_infusion.split()[0]) >= old_day + timedelta(days=7)
    # A week later is past the infusion window after lymphodepletion: the plan says so.
    flags = page.locator("[data-testid=flags] li")
    assert "infusion_window_exceeded" in [f.get_attribute("data-code") for f in flags.all()]
    shot(page, "schedules-rescheduled")


def test_the_ics_feed_parses_and_carries_no_patient_identity(page, live_server):
    log_in(page, live_server, "coordinator")
    page.wait_for_url(f"{live_server}/dashboard")
    page.goto(f"{live_server}/schedules/sites/TC-BOS")
    page.click("text=Create a subscription link")
    url = page.locator("[data-testid=feed-url]").inner_text().strip()
    shot(page, "schedules-feed-link")
    token_path = url.split("127.0.0.1:5000", 1)[-1]
    with urllib.request.urlopen(f"{live_server}{token_path}") as resp:  # no session cookie
        assert resp.headers["Content-Type"].startswith("text/calendar")
        body = resp.read()
    assert b"\r\n" in body and all(len(line) <= 75 for line in body.split(b"\r\n"))
    calendar = icalendar.Calendar.from_ical(body)
    events = list(calendar.walk("VEVENT"))
    assert events, "the demo books infusions at TC-BOS"
    text = body.decode()
    assert all(":" in line for line in text.replace("\r\n ", "").splitlines() if line)
    for event in events:
        assert event.decoded("DTSTART").utcoffset() == timedelta(0)
        assert "DTSTART:" in event.to_ical().decode()
        assert event.to_ical().decode().split("DTSTART:")[1][15] == "Z"
    for name in GIVEN + FAMILY + ["MRN-DEMO", "CHW"]:
        assert name not in text
    session_feed = page.request.get(f"{live_server}/schedules/sites/TC-BOS/calendar.ics")
    assert session_feed.status == 200 and b"BEGIN:VCALENDAR" in session_feed.body()
    with pytest.raises(urllib.error.HTTPError) as wrong:
        urllib.request.urlopen(f"{live_server}/schedules/feeds/not-a-token.ics")
    assert wrong.value.code == 404
    wrong.value.close()


def test_the_waitlist_shows_each_score_with_its_inputs(page, live_server):
    log_in(page, live_server, "operator")
    page.wait_for_url(f"{live_server}/dashboard")
    page.goto(f"{live_server}/schedules/")
    page.locator("tr[data-site=MF-NLD]").get_by_role("link", name="Waitlist").click()
    rows = page.locator("table[aria-label=Waitlist] tbody tr")
    assert rows.count() == 2
    totals = [float(t) for t in page.locator("[data-testid=total]").all_inner_texts()]
    assert totals == sorted(totals, reverse=True)
    first = rows.first.inner_text()
    assert "bridging failing" in first and "urgency" in first and "× 40 = 40" in first
    assert page.locator("details").count() == 0  # operators see, coordinators decide
    shot(page, "schedules-waitlist")


def test_an_admin_confirms_journey_numbers_into_a_new_profile_version(page, live_server):
    log_in(page, live_server, "admin")
    page.wait_for_url(f"{live_server}/dashboard")
    page.goto(f"{live_server}/schedules/profiles")
    page.click("text=Anti-CD19 CAR T (fresh apheresis)")
    field = page.locator("[data-field=manufacturing_days]")
    assert field.locator(".default-to-confirm").count() == 1
    shot(page, "schedules-profile-before")
    field.locator("input[name=manufacturing_days]").fill("10")
    field.locator("input[name=confirmed]").check()
    page.fill("input[name=reason]", "checked against the current label")
    page.click("text=Save as a new version")
    page.wait_for_selector(".flash")
    assert "version 2" in page.locator(".flash").inner_text()
    field = page.locator("[data-field=manufacturing_days]")
    assert field.locator(".confirmed-mark").count() == 1
    assert field.locator("input[name=manufacturing_days]").input_value() == "10"


def test_staff_at_affected_sites_find_their_notifications(page, live_server):
    log_in(page, live_server, "infusion")
    page.wait_for_url(f"{live_server}/dashboard")
    badge = page.locator("nav[aria-label=Main] .badge")
    assert int(badge.inner_text()) >= 1
    page.click("nav[aria-label=Main] >> text=Schedules")
    page.click("text=Notifications")
    unread = page.locator("table[aria-label=Notifications] tr.unread")
    count = unread.count()
    assert count >= 1
    assert "Journey plan" in unread.first.inner_text()
    shot(page, "schedules-notifications")
    unread.first.get_by_role("button", name="Mark read").click()
    page.wait_for_load_state()
    assert page.locator("table[aria-label=Notifications] tr.unread").count() == count - 1


def test_proposing_explains_the_dates_and_holding_takes_the_order_off_the_waitlist(
    page, live_server
):
    log_in(page, live_server, "coordinator")
    page.wait_for_url(f"{live_server}/dashboard")
    page.goto(f"{live_server}/schedules/")
    # The oldest unplanned order is demo journey 1: BCMA, not collected yet, on the waitlist.
    row = page.locator("table[aria-label='Journey plans'] tr", has=page.locator("text=not planned"))
    row.locator("a.mono").last.click()
    assert "position" in page.locator("[data-testid=waitlist-position]").inner_text()
    page.click("text=Propose the earliest plan")
    page.wait_for_selector("[data-testid=proposal]")
    steps = page.locator("table[aria-label='Proposed steps'] tbody tr")
    assert steps.count() == 8  # cryopreserved: a cryopreservation step before shipping
    assert "defaults to confirm" in page.locator("[data-testid=proposal] .warn").inner_text()
    shot(page, "schedules-proposal")
    page.click("text=Hold for 48 hours")
    page.wait_for_selector("[data-testid=plan-status]")
    assert page.locator("[data-testid=plan-status]").inner_text() == "held"
    assert "Tentative hold until" in page.locator(".warn").inner_text()
    assert page.locator("[data-testid=waitlist-position]").count() == 0
    shot(page, "schedules-held")
