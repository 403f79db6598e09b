"""Labels over HTTP: the JSON API, the pages, the QR link, with loopback socket printers."""

from __future__ import annotations

import io
import re
import socket

import pytest
import zxingcpp
from PIL import Image
from sqlalchemy import select

from tests.e2e.test_api import api
from tests.e2e.test_api import login
from tests.factories import make_bag
from tests.factories import make_order
from tests.unit.labels.test_label_printers import FakeZebra
from tracker.models import AuditEntry

pytestmark = pytest.mark.enable_socket


@pytest.fixture
def bag(new_uow, world, clock):
    order = make_order(new_uow, world, clock.now())
    return make_bag(new_uow, world, order, clock.now())


@pytest.fixture
def zebra():
    server = FakeZebra()
    yield server
    server.close()


@pytest.fixture
def closed_port():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))  # bound, never listening: connections are refused
        yield probe.getsockname()[1]


def add_printer(client, port, name="Bench", site="CC1", **extra):
    token, _ = login(client, "admin")
    body = {"site": site, "name": name, "host": "127.0.0.1", "port": port, **extra}
    resp = api(client, token, "POST", "/api/v1/printers", body)
    assert resp.status_code == 201, resp.get_json()
    client.post("/logout", data={"csrf_token": token})
    return resp.get_json()


def test_administrators_add_and_change_printers_and_site_staff_list_them(
    client, world, new_uow, zebra
):
    printer = add_printer(client, zebra.port, dpi=300, default_size="4x6")
    assert (printer["site"], printer["port"], printer["dpi"]) == ("CC1", zebra.port, 300)
    token, _ = login(client, "admin")
    resp = api(client, token, "PATCH", f"/api/v1/printers/{printer['public_id']}", {"port": 9101})
    assert resp.status_code == 200 and resp.get_json()["port"] == 9101
    resp = api(client, token, "PATCH", f"/api/v1/printers/{printer['public_id']}", {"dpi": 600})
    assert resp.status_code == 400
    with new_uow() as uow:
        audit = uow.session.scalar(
            select(AuditEntry).where(
                AuditEntry.action == "update", AuditEntry.entity_type == "printer"
            )
        )
        assert audit.changes == {"port": [zebra.port, 9101]}
    client.post("/logout", data={"csrf_token": token})
    token, _ = login(client, "nurse")
    assert [p["name"] for p in client.get("/api/v1/printers").get_json()["printers"]] == ["Bench"]
    resp = api(client, token, "POST", "/api/v1/printers", {"site": "CC1", "name": "x", "host": "h"})
    assert resp.status_code == 403 and resp.get_json()["reason"] == "forbidden"
    token, _ = login(client, "operator")
    assert client.get("/api/v1/printers").get_json()["printers"] == []


def test_printing_over_the_api_reaches_the_printer_and_reprints_need_a_reason(
    client, world, bag, zebra
):
    printer = add_printer(client, zebra.port)
    token, _ = login(client, "nurse")
    body = {"kind": "apheresis_bag", "target": bag.public_id, "printer": printer["public_id"]}
    resp = api(client, token, "POST", "/api/v1/labels/print", body)
    assert resp.status_code == 201, resp.get_json()
    first = resp.get_json()
    assert (first["status"], first["reprint"], first["din_flags"]) == ("done", False, "00")
    assert (first["printer"], first["size"], first["by"]) == ("Bench", "4x2", "Nurse User")
    resp = api(client, token, "POST", "/api/v1/labels/print", body)
    assert resp.status_code == 409 and resp.get_json()["reason"] == "label_already_printed"
    resp = api(client, token, "POST", "/api/v1/labels/print", {**body, "reprint": True})
    assert resp.status_code == 400 and resp.get_json()["reason"] == "reprint_reason_required"
    resp = api(
        client, token, "POST", "/api/v1/labels/print",
        {**body, "reprint": True, "reason": "torn while spiking the bag", "copies": 2},
    )  # fmt: skip
    assert resp.status_code == 201
    assert (resp.get_json()["din_flags"], resp.get_json()["copies"]) == ("05", 2)
    zebra.close()
    assert len(zebra.received) == 2 and zebra.received[1].count(b"^XA") == 2
    history = client.get(f"/api/v1/items/{bag.public_id}/label-prints").get_json()["prints"]
    assert [(h["reprint"], h["reason"]) for h in history] == [
        (True, "torn while spiking the bag"),
        (False, None),
    ]


def test_a_printer_that_is_off_answers_502_and_the_attempt_is_on_record(
    client, world, bag, closed_port
):
    printer = add_printer(client, closed_port)
    token, _ = login(client, "nurse")
    body = {"kind": "apheresis_bag", "target": bag.public_id, "printer": printer["public_id"]}
    resp = api(client, token, "POST", "/api/v1/labels/print", body)
    assert resp.status_code == 502
    error = resp.get_json()
    assert error["reason"] == "printer_unreachable" and "127.0.0.1" in error["message"]
    (attempt,) = client.get(f"/api/v1/items/{bag.public_id}/label-prints").get_json()["prints"]
    assert (attempt["id"], attempt["status"]) == (error["print_id"], "failed")
    resp = api(
        client, token, "POST", f"/api/v1/items/{bag.public_id}/transitions",
        {"to_state": "labelled"},
    )  # fmt: skip
    assert resp.status_code == 409 and resp.get_json()["reason"] == "label_not_printed"


def test_a_download_is_a_recorded_print_and_unlocks_label_applied(client, world, bag):
    token, _ = login(client, "nurse")
    resp = api(
        client, token, "POST", f"/api/v1/items/{bag.public_id}/transitions",
        {"to_state": "labelled"},
    )  # fmt: skip
    assert resp.status_code == 409 and resp.get_json()["reason"] == "label_not_printed"
    resp = api(
        client, token, "POST", "/api/v1/labels/download",
        {"kind": "apheresis_bag", "target": bag.public_id, "format": "png", "size": "4x2"},
    )  # fmt: skip
    assert resp.status_code == 201 and resp.mimetype == "image/png"
    assert resp.headers["X-Label-Print-Id"].startswith("TRKLBL")
    assert "attachment" in resp.headers["Content-Disposition"]
    read = zxingcpp.read_barcodes(Image.open(io.BytesIO(resp.data)))
    assert f"={bag.din}00".encode() in {r.bytes for r in read}
    resp = api(
        client, token, "POST", f"/api/v1/items/{bag.public_id}/transitions",
        {"to_state": "labelled"},
    )  # fmt: skip
    assert resp.status_code == 201, resp.get_json()


def test_print_requests_from_a_browser_session_need_the_csrf_token(client, world, bag):
    login(client, "nurse")
    resp = client.post(
        "/api/v1/labels/download", json={"kind": "apheresis_bag", "target": bag.public_id}
    )
    assert resp.status_code == 403 and resp.get_json()["reason"] == "csrf_failed"


def test_the_api_document_describes_label_files_as_binary(client):
    doc = client.get("/api/openapi.json").get_json()
    ok = doc["paths"]["/api/v1/labels/download"]["post"]["responses"]["201"]
    assert ok["content"]["application/pdf"]["schema"]["format"] == "binary"
    assert "502" in doc["paths"]["/api/v1/labels/print"]["post"]["responses"]
    assert "label_not_printed" in doc["x-reason-codes"]


# --- pages ----------------------------------------------------------------------------------


def test_the_labels_page_lists_bags_with_their_label_status(client, world, bag):
    login(client, "nurse")
    page = client.get("/labels")
    assert page.status_code == 200
    assert bag.public_id.encode() in page.data and b"not printed" in page.data
    assert b'href="/labels"' in client.get("/orders").data  # in the navigation


def test_the_preview_is_stamped_and_never_recorded(client, world, bag):
    login(client, "nurse")
    page = client.get(f"/labels/apheresis_bag/{bag.public_id}")
    assert page.status_code == 200
    src = re.search(rb'data-testid="preview" src="([^"]+)"', page.data).group(1).decode()
    svg = client.get(src.replace("&amp;", "&"))
    assert svg.mimetype == "image/svg+xml" and b"PREVIEW - NOT A LABEL" in svg.data
    png = client.get(f"/labels/apheresis_bag/{bag.public_id}/preview.png?size=4x6")
    assert png.mimetype == "image/png" and png.headers["Cache-Control"] == "no-store"
    assert client.get(f"/api/v1/items/{bag.public_id}/label-prints").get_json()["prints"] == []


def form_token(page: bytes) -> str:
    return re.search(rb'name="csrf_token" value="([^"]+)"', page).group(1).decode()


def test_the_page_prints_and_then_offers_only_a_reprint_with_a_reason(client, world, bag, zebra):
    printer = add_printer(client, zebra.port)
    login(client, "nurse")
    url = f"/labels/apheresis_bag/{bag.public_id}"
    token = form_token(client.get(url).data)
    resp = client.post(
        f"{url}/print",
        data={"csrf_token": token, "printer": printer["public_id"], "size": "4x6", "copies": "1"},
        headers={"HX-Request": "true"},
    )
    assert resp.status_code == 200
    assert b'role="status"' in resp.data and b"Printed on Bench" in resp.data
    assert b'data-testid="reprint-note"' in resp.data and b'name="reason"' in resp.data
    assert b"<html" not in resp.data  # htmx gets the panel only
    resp = client.post(
        f"{url}/print",
        data={"csrf_token": token, "printer": printer["public_id"], "reprint": "1", "reason": ""},
    )
    assert resp.status_code == 400 and b'data-reason="reprint_reason_required"' in resp.data


def test_the_page_shows_a_printer_failure_with_its_reason_code(client, world, bag, closed_port):
    printer = add_printer(client, closed_port)
    login(client, "nurse")
    url = f"/labels/apheresis_bag/{bag.public_id}"
    token = form_token(client.get(url).data)
    resp = client.post(
        f"{url}/print",
        data={"csrf_token": token, "printer": printer["public_id"]},
        headers={"HX-Request": "true"},
    )
    assert resp.status_code == 200  # so that htmx swaps the message in
    assert b'role="alert" data-reason="printer_unreachable"' in resp.data
    assert b"failed: printer_unreachable" in resp.data  # in the history table


def test_a_downloaded_sheet_from_the_page_is_a_pdf_and_a_recorded_print(client, world, bag):
    login(client, "nurse")
    url = f"/labels/apheresis_bag/{bag.public_id}"
    token = form_token(client.get(url).data)
    resp = client.post(
        f"{url}/download",
        data={"csrf_token": token, "format": "pdf", "size": "a4", "dpi": "300", "copies": "2"},
    )
    assert resp.status_code == 200 and resp.data.startswith(b"%PDF")
    (row,) = client.get(f"/api/v1/items/{bag.public_id}/label-prints").get_json()["prints"]
    assert (row["output"], row["size"], row["dpi"], row["copies"]) == ("pdf", "a4", 300, 2)


def test_a_label_qr_link_needs_a_login_and_leads_to_the_items_order(client, world, bag):
    token, _ = login(client, "nurse")
    resp = api(
        client, token, "POST", "/api/v1/labels/download",
        {"kind": "apheresis_bag", "target": bag.public_id},
    )  # fmt: skip
    label = resp.headers["X-Label-Print-Id"]
    resp = client.get(f"/i/{label}")
    assert resp.status_code == 302
    assert resp.headers["Location"].endswith(f"#item-{bag.public_id}")
    assert "/orders/ORD-" in resp.headers["Location"] or "/orders/" in resp.headers["Location"]
    client.post("/logout", data={"csrf_token": token})
    anonymous = client.get(f"/i/{label}")
    assert anonymous.status_code == 302 and "/login" in anonymous.headers["Location"]
    login(client, "coord2")  # another treatment site: the order is not visible
    assert client.get(f"/i/{label}").status_code == 404
