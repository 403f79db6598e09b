"""The FHIR R5 export of an order: every resource parses with fhir.resources (R5), references
resolve inside the Bundle, and identity data appears only for callers who may read it."""

from __future__ import annotations

import json

import fhir.resources
import pytest
from fhir.resources import get_fhir_model_class
from fhir.resources.bundle import Bundle
from pydantic import ValidationError

from schedules import service as schedules_service
from tests.api_seed import seed_api_world
from tests.e2e.test_api import login


def validate_r5(bundle: dict) -> dict[str, list[dict]]:
    """Parse the Bundle and each resource with the R5 models; fail on the first invalid one."""
    assert fhir.resources.__fhir_version__ == "5.0.0"
    Bundle.model_validate(bundle)
    by_type: dict[str, list[dict]] = {}
    for entry in bundle["entry"]:
        resource = entry["resource"]
        get_fhir_model_class(resource["resourceType"]).model_validate(resource)
        by_type.setdefault(resource["resourceType"], []).append(resource)
    return by_type


@pytest.fixture
def seeded(world, new_uow, settings, clock):  # type: ignore[no-untyped-def]
    seeded = seed_api_world(new_uow, world, settings, clock.now())
    with new_uow() as uow:
        schedules_service.book_plan(
            uow=uow,
            principal=world.principals["coord"],
            order_public_id=seeded.order.public_id,
            earliest_collection=clock.now(),
            now=clock.now(),
        )
        uow.commit()
    return seeded


def export(client, order):  # type: ignore[no-untyped-def]
    resp = client.get(f"/api/v1/orders/{order}/fhir")
    assert resp.status_code == 200, resp.get_json()
    assert resp.mimetype == "application/fhir+json"
    return resp.get_json()


def test_the_export_is_a_valid_r5_collection_whose_references_resolve(client, seeded):
    login(client, "coord")
    bundle = export(client, seeded.order.public_id)
    assert bundle["type"] == "collection"
    resources = validate_r5(bundle)
    assert set(resources) >= {
        "Patient",
        "BiologicallyDerivedProduct",
        "Schedule",
        "Slot",
        "Appointment",
        "Observation",
        "Provenance",
    }
    urls = {entry["fullUrl"] for entry in bundle["entry"]}
    refs = [m for m in _references(bundle) if m.startswith("urn:uuid:")]
    assert refs and set(refs) <= urls


def _references(value):  # type: ignore[no-untyped-def]
    if isinstance(value, dict):
        for key, item in value.items():
            if key == "reference":
                yield item
            else:
                yield from _references(item)
    elif isinstance(value, list):
        for item in value:
            yield from _references(item)


def _by_id(bundle):  # type: ignore[no-untyped-def]
    return {e["resource"]["id"]: (e["fullUrl"], e["resource"]) for e in bundle["entry"]}


def test_bags_carry_din_coi_parent_product_code_status_expiry_and_storage(client, seeded):
    login(client, "coord")
    bundle = export(client, seeded.order.public_id)
    entries = _by_id(bundle)
    apheresis_url, apheresis = entries[seeded.apheresis.public_id]
    _, final = entries[seeded.final.public_id]
    din = {"system": "http://127.0.0.1:5000/fhir/sid/isbt128-din", "value": seeded.apheresis.din}
    assert din in apheresis["identifier"] and apheresis["biologicalSourceEvent"] == din
    coi = {"system": "http://127.0.0.1:5000/fhir/sid/coi", "value": seeded.order.coi}
    assert coi in apheresis["identifier"] and coi in final["identifier"]
    assert final["parent"] == [{"reference": apheresis_url}]
    assert final["productCode"]["coding"][0]["code"] == seeded.final.product_code
    assert final["expirationDate"] == "2026-11-27"  # registered 2026-03-02, 270 days shelf life
    assert final["storageTempRequirements"]["high"]["value"] == -150
    assert apheresis["storageTempRequirements"]["low"]["value"] == 2.0
    assert apheresis["expirationDate"].endswith("Z")  # fresh: by the hour
    # The excursion put the apheresis bag on QA hold.
    assert apheresis["productStatus"]["code"] == "unavailable"
    assert final["productStatus"]["code"] == "available"


def test_bookings_excursions_and_custody_are_linked_to_the_bags(client, seeded):
    login(client, "coord")
    bundle = export(client, seeded.order.public_id)
    resources = validate_r5(bundle)
    entries = _by_id(bundle)
    apheresis_url = entries[seeded.apheresis.public_id][0]
    kinds = {a["serviceType"][0]["concept"]["coding"][0]["code"] for a in resources["Appointment"]}
    assert kinds == {"collection", "manufacturing", "infusion"}
    assert {a["status"] for a in resources["Appointment"]} == {"pending"}  # a tentative hold
    slot_urls = {entries[s["id"]][0] for s in resources["Slot"]}
    assert {a["slot"][0]["reference"] for a in resources["Appointment"]} == slot_urls
    excursion = next(o for o in resources["Observation"] if o["id"].startswith("excursion-"))
    assert excursion["focus"] == [{"reference": apheresis_url}]
    assert excursion["interpretation"][0]["coding"][0]["code"] == "H"
    custody = [p for p in resources["Provenance"] if p["id"].startswith("custody-")]
    detail = client.get(f"/api/v1/orders/{seeded.order.public_id}").get_json()
    assert len(custody) == len(detail["timeline"])
    first = custody[0]
    assert first["target"] == [{"reference": apheresis_url}]
    assert first["recorded"] and first["agent"][0]["who"]["display"]
    signed = [p for p in resources["Provenance"] if p["id"].startswith("signature-")]
    assert len(signed) == 1
    assert signed[0]["signature"][0]["who"] == {"display": "Coord User"}
    assert signed[0]["activity"]["coding"][0]["code"] == "review"


def test_without_the_right_to_read_identity_the_patient_is_only_a_pseudonym(client, seeded):
    login(client, "qa")  # QA at the manufacturer sees the order but not who the patient is
    bundle = export(client, seeded.order.public_id)
    resources = validate_r5(bundle)
    assert "Patient" not in resources
    text = json.dumps(bundle)
    for secret in ("MRN-1", "1970-01-02", "Test", '"family"'):
        assert secret not in text
    _, apheresis = _by_id(bundle)[seeded.apheresis.public_id]
    source = apheresis["collection"]["source"]
    pseudonym = client.get(f"/api/v1/orders/{seeded.order.public_id}").get_json()["patient"]
    assert source["identifier"]["value"] == pseudonym["public_id"]
    assert "reference" not in source


def test_an_order_the_caller_cannot_see_is_not_found(client, seeded):
    login(client, "coord2")
    resp = client.get(f"/api/v1/orders/{seeded.order.public_id}/fhir")
    assert resp.status_code == 404 and resp.get_json()["reason"] == "not_found"


def test_the_validator_refuses_an_invalid_resource():
    """The check above has teeth: a wrong element type fails R5 parsing."""
    broken = {
        "resourceType": "Bundle",
        "type": "collection",
        "entry": [
            {
                "fullUrl": "urn:uuid:0f0c5b5e-1111-4a4a-9b9b-000000000001",
                "resource": {
                    "resourceType": "BiologicallyDerivedProduct",
                    "id": "BAG-1",
                    "productStatus": "available",  # a Coding, not a string
                },
            }
        ],
    }
    with pytest.raises(ValidationError):
        validate_r5(broken)
