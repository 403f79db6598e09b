"""The quality gates through the JSON API and the release certificate PDF."""

from __future__ import annotations

import pypdfium2
import pytest
import zxingcpp
from sqlalchemy import select

from tests import scanning as sc
from tests.e2e.test_api import api
from tests.e2e.test_api import login
from tracker.models import PatientIdentity


@pytest.fixture
def driver(new_uow, world, clock, settings):  # type: ignore[no-untyped-def]
    return sc.Driver(new_uow, world, clock, settings, sc.make_scanners(new_uow, world, clock.now()))


def received(driver):  # type: ignore[no-untyped-def]
    j = sc.new_journey(driver, bags=1)
    for play in (sc.collect, sc.pack, sc.pickup, sc.receive):
        play(driver, j)
    return j


def measurements(**override):  # type: ignore[no-untyped-def]
    base = {k: {"value": v, "unit": u} for k, (v, u) in sc.GOOD_MATERIAL.items()}
    return base | override


def test_acceptance_through_the_api_decides_refuses_bad_units_and_needs_the_right_site(
    client, driver
):
    j = received(driver)
    token, _ = login(client, "coord")
    path = f"/api/v1/orders/{j.order.public_id}/acceptances"
    refused = api(client, token, "POST", path, {"measurements": measurements()})
    assert refused.status_code == 403 and refused.get_json()["reason"] == "forbidden"
    token, _ = login(client, "operator")
    bad_unit = api(
        client,
        token,
        "POST",
        path,
        {"measurements": measurements(volume={"value": 2, "unit": "%"})},
    )
    assert bad_unit.status_code == 400 and bad_unit.get_json()["reason"] == "unit_mismatch"
    resp = client.post(
        path,
        json={"measurements": measurements(viability={"value": 0.7, "unit": "fraction"})},
        headers={"X-CSRFToken": token, "Idempotency-Key": "acc-1"},
    )
    body = resp.get_json()
    assert resp.status_code == 201 and body["decision"] == "accepted_with_deviation"
    assert [f["criterion"] for f in body["failed"]] == ["viability"]
    assert body["deviation"].startswith("DVN-")
    again = client.post(
        path,
        json={"measurements": measurements(viability={"value": 0.7, "unit": "fraction"})},
        headers={"X-CSRFToken": token, "Idempotency-Key": "acc-1"},
    )
    assert again.get_json() == body  # replayed, not decided twice
    view = client.get(f"/api/v1/orders/{j.order.public_id}/quality").get_json()
    assert view["decision"] == "accepted_with_deviation" and len(view["acceptances"]) == 1
    assert {m["criterion"]: m["outcome"] for m in view["acceptances"][0]["measurements"]} == {
        "tnc": "pass",
        "viability": "fail",
        "cd3_fraction": "pass",
        "volume": "pass",
        "age": "pass",
    }


def test_results_reviews_and_the_lot_through_the_api(client, driver):
    j = received(driver)
    sc.manufacture(driver, j)
    code = sc.lot_code(driver, j)
    token, _ = login(client, "operator")
    path = f"/api/v1/lots/{code}/results"
    first = api(client, token, "POST", path, {"test": "potency", "value": "45", "unit": "pg/mL"})
    assert first.status_code == 201 and first.get_json()["outcome"] == "oos"
    no_reason = api(
        client,
        token,
        "POST",
        path,
        {"test": "potency", "value": "450", "unit": "pg/mL", "supersedes": first.get_json()["id"]},
    )
    assert no_reason.status_code == 400 and no_reason.get_json()["reason"] == "reason_required"
    fixed = api(
        client,
        token,
        "POST",
        path,
        {
            "test": "potency",
            "value": "450",
            "unit": "pg/mL",
            "supersedes": first.get_json()["id"],
            "reason": "dilution factor missed",
        },
    ).get_json()
    assert fixed["outcome"] == "pass"
    own = api(client, token, "POST", f"/api/v1/results/{fixed['id']}/review")
    assert own.status_code == 403
    token, _ = login(client, "qa")
    reviewed = api(client, token, "POST", f"/api/v1/results/{fixed['id']}/review")
    assert reviewed.status_code == 200
    lot = client.get(f"/api/v1/lots/{code}").get_json()
    potency = next(t for t in lot["tests"] if t["code"] == "potency")
    assert [(r["value"], r["current"]) for r in potency["results"]] == [
        ("45", False),
        ("450", True),
    ]
    assert potency["results"][1]["reason"] == "dilution factor missed"
    assert potency["status"] == "pass" and lot["readiness"] == "pending"
    listed = client.get("/api/v1/lots").get_json()["lots"]
    assert [row["code"] for row in listed] == [code]


def test_the_release_certificate_pdf_shows_results_and_scannable_identifiers_only(
    client, driver, new_uow
):
    j = received(driver)
    sc.manufacture(driver, j)
    sc.release(driver, j)
    login(client, "qa")
    resp = client.get(f"/api/v1/release-certificates/{j.certificate}.pdf")
    assert resp.status_code == 200 and resp.mimetype == "application/pdf"
    document = pypdfium2.PdfDocument(resp.data)
    try:
        page = document[0]
        text = page.get_textpage().get_text_range()
        image = page.render(scale=300 / 72).to_pil().convert("L")
    finally:
        document.close()
    for test, (value, _unit) in sc.PASSING_RESULTS.items():
        assert test in text and value in text
    assert "Release for infusion" in text and j.certificate in text
    found = {(b.bytes, b.symbology_identifier) for b in zxingcpp.read_barcodes(image)}
    assert (j.certificate.encode(), "]C0") in found
    dins = {data for data, _ in found if data.startswith(b"=")}
    assert dins and all(j.products[0].din.encode() in d for d in dins)
    assert not any(b.format == zxingcpp.BarcodeFormat.QRCode for b in zxingcpp.read_barcodes(image))
    with new_uow() as uow:
        identity = uow.session.scalar(
            select(PatientIdentity).where(PatientIdentity.patient_id == j.order.patient_id)
        )
        full_name = f"{identity.given_name} {identity.family_name}"
        dob = identity.date_of_birth.isoformat()
        assert full_name not in text and identity.mrn not in text and dob not in text
