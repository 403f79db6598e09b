"""The dashboard over HTTP: a fixed number of statements however many journeys, the
vein-to-vein clock, today's work in each site's own day, and the live partials."""

from __future__ import annotations

import re
from datetime import UTC
from datetime import datetime
from datetime import timedelta

from sqlalchemy import select

from tests.cockpit_helpers import bulk_journeys
from tests.cockpit_helpers import counting_statements
from tests.e2e.test_api import login
from tests.factories import make_bag
from tests.factories import make_label_print
from tests.factories import make_order
from tracker.domain.alerting import DeadlineKind
from tracker.domain.custody import CustodyState as S
from tracker.models import Item
from tracker.queries_cockpit import Filters
from tracker.queries_cockpit import active_journeys
from tracker.queries_cockpit import summarize
from tracker.queries_cockpit import today_board
from tracker.services import custody
from tracker.services import deadlines


def _statements_for(client, connection, path):
    with counting_statements(connection) as statements:
        resp = client.get(path)
    assert resp.status_code == 200, resp.data[:500]
    return statements, resp


def test_the_dashboard_runs_the_same_number_of_statements_for_50_and_5000_journeys(
    client, connection, new_uow, world, clock
):
    now = clock.now()
    bulk_journeys(new_uow, world, now, start=0, count=50)
    login(client, "coord")
    small, resp = _statements_for(client, connection, "/dashboard")
    assert 'Active journeys <span class="muted">(50)</span>' in resp.get_data(as_text=True)
    bulk_journeys(new_uow, world, now, start=50, count=4950)
    large, resp = _statements_for(client, connection, "/dashboard")
    page = resp.get_data(as_text=True)
    assert 'Active journeys <span class="muted">(5000)</span>' in page
    assert page.count('data-order="ORD-BULK') == 50  # one page of the 5,000
    # Print the figures for the record (pytest -s), then hold them equal.
    print(f"dashboard statements: {len(small)} for 50 journeys, {len(large)} for 5000")
    assert len(large) == len(small), "\n".join(large)
    assert len(small) <= 20
    for path in ("/dashboard/journeys?risk=overdue", "/dashboard/side"):
        few, _ = _statements_for(client, connection, path)
        assert len(few) <= len(small)


def test_overdue_journeys_come_first_and_each_risk_is_counted(new_uow, world, clock, uow):
    now = clock.now()
    bulk_journeys(new_uow, world, now, start=0, count=40)
    rows = active_journeys(uow.session, world.principals["coord"], now=now)
    assert [r["risk"] for r in rows][:3] == ["overdue"] * 3
    summary = summarize(rows, Filters())
    assert summary["counts"]["overdue"] == 3  # due 1 h ago, 30 min ago and right now
    assert summary["counts"]["at_risk"] >= 4
    assert summary["counts"]["on_track"] > 0
    late = rows[0]
    assert late["deadline"]["left"].endswith("late")
    alarm = next(r for r in rows if r["public_id"] == "ORD-BULK000010")
    assert alarm["open_alerts"] == 1 and alarm["worst_alert"] == "alarm"
    only = summarize(rows, Filters(risk="overdue"))
    assert only["matching"] == 3 and {r["risk"] for r in only["rows"]} == {"overdue"}
    found = summarize(rows, Filters(q="bulk000007"))
    assert [r["public_id"] for r in found["rows"]] == ["ORD-BULK000007"]


def test_a_coordinator_elsewhere_sees_none_of_these_journeys(new_uow, world, clock, uow):
    bulk_journeys(new_uow, world, clock.now(), start=0, count=5)
    assert active_journeys(uow.session, world.principals["coord2"], now=clock.now()) == []
    assert len(active_journeys(uow.session, world.principals["admin"], now=clock.now())) == 5


def test_the_clock_follows_real_deadlines_and_time_left(new_uow, world, clock, uow):
    now = clock.now()
    order = make_order(new_uow, world, now)
    with new_uow() as unit:
        deadlines.set_deadline(
            uow=unit,
            kind=DeadlineKind.pickup_by,
            due_at=now + timedelta(hours=3),
            warn_at=now + timedelta(hours=2),
            site_id=world.sites["CC1"].id,
            dedupe_key="t:pickup",
            order_id=order.id,
            now=now,
        )
        unit.commit()
    [row] = active_journeys(uow.session, world.principals["coord"], now=now)
    assert row["risk"] == "on_track" and row["deadline"]["left"] == "3 h 00 min"
    [row] = active_journeys(uow.session, world.principals["coord"], now=now + timedelta(hours=2))
    assert row["risk"] == "at_risk"
    [row] = active_journeys(uow.session, world.principals["coord"], now=now + timedelta(hours=4))
    assert row["risk"] == "overdue" and row["deadline"]["left"] == "1 h 00 min late"


def test_today_means_each_sites_own_day(new_uow, world, uow):
    # 03:30 UTC is still "yesterday" in New York (CC1) but already "today" in Amsterdam.
    late_evening = datetime(2026, 3, 3, 3, 30, tzinfo=UTC)
    order = make_order(new_uow, world, late_evening - timedelta(days=2))
    bag = make_bag(new_uow, world, order, late_evening - timedelta(days=2))
    make_label_print(new_uow, world, bag, late_evening - timedelta(hours=1))
    with new_uow() as unit:
        for to in (S.labelled, S.collected):
            custody.change_item_state(
                uow=unit,
                principal=world.principals["nurse"],
                item_public_id=bag.public_id,
                to_state=to,
                now=late_evening - timedelta(minutes=30),
            )
        unit.commit()
    # Collected at 22:00 New York time on March 2nd: today there until local midnight.
    board = today_board(uow.session, world.principals["coord"], now=late_evening)
    assert [c["order"] for c in board["collections"]] == [order.public_id]
    assert board["collections"][0]["done_at"] is not None
    later = late_evening + timedelta(hours=6)  # 01:30 in New York on March 3rd
    assert today_board(uow.session, world.principals["coord"], now=later)["collections"] == []


def test_the_partials_refresh_themselves_with_the_filters_kept(client, new_uow, world, clock):
    bulk_journeys(new_uow, world, clock.now(), start=0, count=3)
    login(client, "coord")
    page = client.get("/dashboard?risk=overdue&q=BULK").get_data(as_text=True)
    poll = re.search(r'hx-get="(/dashboard/journeys[^"]*)" hx-trigger="every (\d+)s"', page)
    assert poll is not None and int(poll.group(2)) <= 10
    assert "risk=overdue" in poll.group(1) and "q=BULK" in poll.group(1)
    partial = client.get(poll.group(1).replace("&amp;", "&")).get_data(as_text=True)
    assert partial.lstrip().startswith('<section id="journeys"')
    assert "<html" not in partial
    side = client.get("/dashboard/side").get_data(as_text=True)
    assert 'data-testid="inbox"' in side and 'hx-trigger="every' in side


def test_logging_in_lands_on_the_dashboard(client, world):
    _, resp = login(client, "coord")
    assert resp.headers["Location"].endswith("/dashboard")
    assert client.get("/").headers["Location"].endswith("/dashboard")


def test_bags_of_bulk_journeys_are_real_rows(new_uow, world, clock, uow):
    bulk_journeys(new_uow, world, clock.now(), start=0, count=3)
    assert uow.session.scalar(select(Item.din).where(Item.public_id == "BAG-BULK000001"))


def test_a_planned_journey_shows_its_next_planned_date(new_uow, world, clock, uow):
    from schedules import service
    from tests.factories_schedules import build_capacity

    build_capacity(new_uow, world, clock.now())
    order = make_order(new_uow, world, clock.now())
    with new_uow() as unit:
        service.book_plan(
            uow=unit,
            principal=world.principals["coord"],
            order_public_id=order.public_id,
            earliest_collection=clock.now() + timedelta(days=1),
            now=clock.now(),
            tentative=True,
        )
        unit.commit()
    [row] = active_journeys(uow.session, world.principals["coord"], now=clock.now())
    assert row["deadline"] is not None and row["deadline"]["due_at"] > clock.now()
    assert row["risk"] in ("on_track", "at_risk")


def test_background_refreshes_do_not_keep_an_idle_session_alive(client, world, clock, settings):
    login(client, "coord")
    poll = {"HX-Request": "true", "X-Tracker-Poll": "1"}
    idle = timedelta(minutes=settings.idle_timeout_minutes)
    clock.advance(idle - timedelta(minutes=1))
    assert client.get("/dashboard/journeys", headers=poll).status_code == 200
    clock.advance(timedelta(minutes=2))  # only refreshes since the person last did anything
    resp = client.get("/dashboard/journeys", headers=poll)
    assert resp.status_code == 204
    assert resp.headers["HX-Redirect"].startswith("/login")


def test_a_logged_out_refresh_sends_the_whole_page_to_the_login(client, world):
    resp = client.get("/dashboard/side", headers={"HX-Request": "true"})
    assert resp.status_code == 204 and resp.headers["HX-Redirect"].startswith("/login")
    plain = client.get("/dashboard")
    assert plain.status_code == 302 and "/login?next=/dashboard" in plain.headers["Location"]
