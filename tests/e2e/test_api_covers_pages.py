"""Everything a page can do, the JSON API can do: each page route names its API operations.

A new page route fails ``test_every_page_route_names_its_api_operations`` until it is listed
here, with the API operation(s) that show or do the same thing, or with the reason it has none.
"""

from __future__ import annotations

import pytest

from tests.api_seed import seed_api_world
from tests.e2e.test_api import api
from tests.e2e.test_api import login

PAGE_TO_API: dict[str, list[str]] = {
    "ui.orders": ["GET /api/v1/orders"],
    "ui.order": ["GET /api/v1/orders/{public_id}"],
    "ui.order_timeline": ["GET /api/v1/orders/{public_id}"],
    "labels.index": ["GET /api/v1/labels"],
    "labels.label": ["GET /api/v1/labels/{kind}/{target}"],
    "labels.print_label": ["POST /api/v1/labels/print"],
    "labels.download": ["POST /api/v1/labels/download"],
    "labels.preview": ["GET /api/v1/labels/{kind}/{target}/preview"],
    "labels.link": ["GET /api/v1/label-links/{token}"],
    "alerts.alert_list": [
        "GET /api/v1/alerts",
        "GET /api/v1/sms-opt-outs",
        "GET /api/v1/deviations",
    ],
    "alerts.alert_page": ["GET /api/v1/alerts/{alert_id}"],
    "alerts.acknowledge": ["POST /api/v1/alerts/{alert_id}/acknowledgements"],
    "alerts.dispose": ["POST /api/v1/items/{public_id}/dispositions"],
    "alerts.logger_list": ["GET /api/v1/loggers", "GET /api/v1/logger-imports"],
    "alerts.upload": ["POST /api/v1/logger-imports"],
    "alerts.import_page": ["GET /api/v1/logger-imports/{import_id}"],
    "alerts.import_progress": ["GET /api/v1/logger-imports/{import_id}"],
    "alerts.exposure": ["GET /api/v1/items/{public_id}/exposure"],
    "schedules.index": ["GET /api/v1/schedule-overview"],
    "schedules.calendar": ["GET /api/v1/sites/{site_code}/calendar"],
    "schedules.site_ics": ["GET /api/v1/sites/{site_code}/calendar.ics"],
    "schedules.issue_feed": ["POST /api/v1/sites/{site_code}/calendar-feeds"],
    "schedules.waitlist": ["GET /api/v1/sites/{site_code}/waitlist"],
    "schedules.order_plan": [
        "GET /api/v1/orders/{public_id}/plan",
        "POST /api/v1/orders/{public_id}/plan-proposals",
    ],
    "schedules.book": ["POST /api/v1/orders/{public_id}/plans"],
    "schedules.confirm": ["POST /api/v1/plans/{plan_id}/confirmation"],
    "schedules.cancel": ["POST /api/v1/plans/{plan_id}/cancellation"],
    "schedules.reschedule_preview": ["POST /api/v1/plans/{plan_id}/reschedule-previews"],
    "schedules.reschedule": ["POST /api/v1/plans/{plan_id}/reschedules"],
    "schedules.join_waitlist": ["POST /api/v1/orders/{public_id}/waitlist"],
    "schedules.update_entry": ["PATCH /api/v1/waitlist/{entry_id}"],
    "schedules.notifications": ["GET /api/v1/notifications"],
    "schedules.read_notification": ["POST /api/v1/notifications/{notification_id}/read"],
    "schedules.profiles": ["GET /api/v1/product-profiles"],
    "schedules.profile": ["GET /api/v1/product-profiles/{code}/journey"],
    "schedules.save_profile": ["PUT /api/v1/product-profiles/{code}/journey"],
    "scanner.page": [
        "GET /api/v1/scanners/{device}/worklist",
        "POST /api/v1/scans",
        "POST /api/v1/runs/{run}/answers",
        "POST /api/v1/runs/{run}/signatures",
    ],
    "scanner.worklist": ["GET /api/v1/scanners/{device}/worklist"],
    "scanner.close_deviation": ["POST /api/v1/deviations/{public_id}/close"],
    "cockpit.dashboard": ["GET /api/v1/dashboard"],
    "cockpit.journeys_partial": ["GET /api/v1/dashboard"],
    "cockpit.side_partial": ["GET /api/v1/dashboard"],
    "journey.journey": [
        "GET /api/v1/orders/{public_id}/timeline",
        "GET /api/v1/orders/{public_id}/quality",
    ],
    "quality.index": ["GET /api/v1/lots"],
    "quality.acceptance": ["GET /api/v1/orders/{public_id}/quality"],
    "quality.record_acceptance": ["POST /api/v1/orders/{public_id}/acceptances"],
    "quality.lot": ["GET /api/v1/lots/{code}"],
    "quality.record_result": ["POST /api/v1/lots/{code}/results"],
    "quality.review_result": ["POST /api/v1/results/{result_id}/review"],
    "quality.acknowledge": ["POST /api/v1/lots/{code}/physician-acknowledgements"],
    "quality.certificate_pdf": ["GET /api/v1/release-certificates/{code}.pdf"],
    "journey.chain_status": ["GET /api/v1/orders/{public_id}/chain"],
    "journey.shipment": ["GET /api/v1/shipments/{public_id}"],
    "journey.temperatures": ["GET /api/v1/shipments/{public_id}/temperatures"],
    "audit.audit_page": ["GET /api/v1/audit-entries"],
    "audit.audit_csv": ["GET /api/v1/audit-entries.csv"],
    "audit.audit_pdf": ["GET /api/v1/audit-entries.pdf"],
    "audit.reviews": ["GET /api/v1/audit-reviews"],
    "audit.sign_review": ["POST /api/v1/audit-reviews"],
    "audit.certificate_json": ["GET /api/v1/orders/{public_id}/certificate"],
    "audit.certificate_pdf": ["GET /api/v1/orders/{public_id}/certificate.pdf"],
    "audit.sign_certificate": ["POST /api/v1/orders/{public_id}/certificate/signatures"],
    "admin.site_list": ["GET /api/v1/sites"],
    "admin.site_create": ["POST /api/v1/sites"],
    "admin.site_update": ["PATCH /api/v1/sites/{site_code}"],
    "admin.user_list": ["GET /api/v1/users"],
    "admin.user_create": ["POST /api/v1/users"],
    "admin.user_page": ["GET /api/v1/users/{username}"],
    "admin.user_update": ["PATCH /api/v1/users/{username}"],
    "admin.role_grant": ["POST /api/v1/users/{username}/roles"],
    "admin.role_revoke": ["POST /api/v1/users/{username}/roles/{assignment_id}/revocation"],
    "admin.user_active": ["POST /api/v1/users/{username}/activation"],
    "admin.user_unlock": ["POST /api/v1/users/{username}/unlock"],
    "admin.user_sign_out": ["POST /api/v1/users/{username}/session-revocation"],
    "admin.profile_list": ["GET /api/v1/product-profiles"],
    "admin.ladder_list": ["GET /api/v1/sites/{site_code}/ladder"],
    "admin.ladder_update": ["PUT /api/v1/sites/{site_code}/ladder"],
    "admin.printer_list": ["GET /api/v1/printers"],
    "admin.printer_create": ["POST /api/v1/printers"],
    "admin.printer_update": ["PATCH /api/v1/printers/{public_id}"],
    "admin.device_list": ["GET /api/v1/devices"],
    "admin.device_create": ["POST /api/v1/devices"],
    "admin.device_active": ["PATCH /api/v1/devices/{public_id}"],
    "comparability.page": ["GET /api/v1/comparability"],
    "comparability.csv_export": ["GET /api/v1/comparability.csv"],
}

NO_API: dict[str, str] = {
    "scanner.session_state": "refreshes the CSRF token of a scanner page opened offline",
    "scanner.service_worker": "the scanner page's service worker script",
    "ui.index": "a redirect to the dashboard",
    "admin.index": "a redirect to the first administration page",
    "auth.login": "people sign in on the page (CSRF, lockout); devices hold tokens",
    "auth.logout": "ends the browser session the page holds",
    "schedules.feed": "the secret feed URL is itself the credential, for calendar apps",
    "health.healthz": "operations endpoint, not a page",
    "health.readyz": "operations endpoint, not a page",
    "twilio.inbound": "Twilio webhook, signed by Twilio",
    "twilio.status_callback": "Twilio webhook, signed by Twilio",
}


def _page_endpoints(app):  # type: ignore[no-untyped-def]
    return {
        rule.endpoint
        for rule in app.url_map.iter_rules()
        if not rule.rule.startswith("/api/") and not rule.endpoint.endswith("static")
    }


def test_every_page_route_names_its_api_operations(app, client):
    pages = _page_endpoints(app)
    unmapped = pages - set(PAGE_TO_API) - set(NO_API)
    assert not unmapped, f"page routes without an API counterpart: {sorted(unmapped)}"
    assert not (set(PAGE_TO_API) | set(NO_API)) - pages, "stale entries"
    doc = client.get("/api/openapi.json").get_json()
    documented = {f"{m.upper()} {p}" for p, ops in doc["paths"].items() for m in ops}
    for endpoint, operations in PAGE_TO_API.items():
        assert set(operations) <= documented, endpoint


@pytest.fixture
def seeded(world, new_uow, settings, clock):  # type: ignore[no-untyped-def]
    return seed_api_world(new_uow, world, settings, clock.now())


def test_the_labels_overview_and_one_labels_page_through_the_api(client, seeded):
    login(client, "nurse")
    overview = client.get("/api/v1/labels").get_json()
    bags = {i["public_id"]: i for o in overview["orders"] for i in o["items"]}
    assert bags[seeded.apheresis.public_id]["labels"][0]["prints"] == 1
    page = client.get(f"/api/v1/labels/apheresis_bag/{seeded.apheresis.public_id}")
    assert page.status_code == 200
    body = page.get_json()
    assert body["printed_before"] is True and body["history"][0]["status"] == "done"
    preview = client.get(
        f"/api/v1/labels/apheresis_bag/{seeded.apheresis.public_id}/preview?format=svg"
    )
    assert preview.status_code == 200 and preview.mimetype == "image/svg+xml"
    bad = client.get(f"/api/v1/labels/apheresis_bag/{seeded.apheresis.public_id}/preview?dpi=7")
    assert bad.status_code == 400 and bad.get_json()["reason"] == "invalid_request"
    token = body["history"][0]["id"]
    link = client.get(f"/api/v1/label-links/{token}").get_json()
    assert link == {"order": seeded.order.public_id, "anchor": f"item-{seeded.apheresis.public_id}"}


def test_an_alert_its_loggers_and_opt_outs_through_the_api(client, seeded):
    login(client, "coord")
    alert = client.get(f"/api/v1/alerts/{seeded.alert_id}").get_json()
    assert alert["excursion"]["bags"][0]["public_id"] == seeded.apheresis.public_id
    assert alert["excursion"]["duration"] > 0
    login(client, "admin")
    loggers = client.get("/api/v1/loggers").get_json()["loggers"]
    assert [row["serial"] for row in loggers] == ["LOG-T1"]  # its last reading is hours old
    assert loggers[0]["status"] == "silent" and loggers[0]["interval"] == 300
    assert client.get("/api/v1/logger-imports").get_json() == {"imports": []}
    assert client.get("/api/v1/sms-opt-outs").get_json() == {"opt_outs": []}


def test_an_orders_plan_the_overview_profiles_and_the_ics_through_the_api(client, seeded):
    token, _ = login(client, "coord")
    plan = client.get(f"/api/v1/orders/{seeded.planned_order.public_id}/plan").get_json()
    assert plan["plan"]["public_id"] == seeded.plan_id and plan["plan"]["status"] == "booked"
    assert plan["history"] == [] and plan["waiting"] is None
    cancelled = api(
        client,
        token,
        "POST",
        f"/api/v1/plans/{seeded.plan_id}/cancellation",
        {"reason": "patient unwell"},
    )
    assert cancelled.status_code == 200
    after = client.get(f"/api/v1/orders/{seeded.planned_order.public_id}/plan").get_json()
    assert after["plan"] is None and after["history"][0]["reason"] == "patient unwell"
    overview = client.get("/api/v1/schedule-overview").get_json()
    assert {s["code"] for s in overview["sites"]} == {"TC1", "CC1"}
    profiles = client.get("/api/v1/product-profiles").get_json()["profiles"]
    assert [p["code"] for p in profiles] == ["CD19-FRESH"]
    ics = client.get("/api/v1/sites/CC1/calendar.ics")
    assert ics.status_code == 200 and ics.mimetype == "text/calendar"


def test_the_order_detail_answers_with_rfc_3339_times(client, seeded):
    login(client, "coord")
    detail = client.get(f"/api/v1/orders/{seeded.order.public_id}").get_json()
    assert detail["timeline"][0]["occurred_at"].endswith("Z")
    assert detail["patient"]["identity"]["mrn"] == "MRN-1"  # a coordinator may read identity
