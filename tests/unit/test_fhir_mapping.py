"""The FHIR mapping functions on hand-made facts: no database, R5-valid output."""

from datetime import UTC
from datetime import date
from datetime import datetime

from fhir.resources.biologicallyderivedproduct import BiologicallyDerivedProduct
from fhir.resources.bundle import Bundle
from fhir.resources.provenance import Provenance

from tracker.services.fhir_export import BagFacts
from tracker.services.fhir_export import EventFacts
from tracker.services.fhir_export import OrderFacts
from tracker.services.fhir_export import Systems
from tracker.services.fhir_export import bundle

T = datetime(2026, 3, 2, 14, 0, tzinfo=UTC)
SYSTEMS = Systems("https://tracker.test")


def _order(**overrides):  # type: ignore[no-untyped-def]
    bag = BagFacts(
        public_id="BAG-FINAL",
        kind="final_product_bag",
        state="stored",
        din="W999926000001",
        product_code="S1001100",
        parent="BAG-APH",
        lot="LOT-1",
        container=1,
        site="MF1",
        registered_at=T,
        expires=date(2026, 11, 27),
        temperature_low_c=None,
        temperature_high_c=-150.0,
        on_hold=False,
    )
    event = EventFacts(
        id=7,
        seq=1,
        event_type="transition",
        item="BAG-FINAL",
        shipment_items=(),
        from_state="registered",
        to_state="stored",
        site="MF1",
        actor=None,
        device="DEV-1",
        occurred_at=T,
        recorded_at=T,
        reason=None,
        hash="ab" * 32,
    )
    fields = {
        "public_id": "ORD-1",
        "coi": "CH9999260000015",
        "patient": "PAT-XYZ",
        "product_code": "S1001100",
        "product_name": "Anti-CD19",
        "manufacturing_site": "MF1",
        "collection_site": "CC1",
        "treatment_site": "TC1",
        "bags": [bag],
        "events": [event],
    }
    return OrderFacts(**(fields | overrides))


def test_a_final_product_bag_maps_to_a_valid_r5_product_without_patient_identity():
    out = bundle(_order(), SYSTEMS, now=T)
    Bundle.model_validate(out)
    product = out["entry"][0]["resource"]
    BiologicallyDerivedProduct.model_validate(product)
    assert product["expirationDate"] == "2026-11-27"
    assert product["storageTempRequirements"] == {
        "high": {
            "value": -150.0,
            "unit": "°C",
            "system": "http://unitsofmeasure.org",
            "code": "Cel",
        }
    }
    assert product["collection"]["source"]["identifier"]["value"] == "PAT-XYZ"
    # The parent is not in this bundle: the reference still names its stable urn.
    assert product["parent"][0]["reference"].startswith("urn:uuid:")


def test_a_device_event_becomes_a_provenance_with_the_device_as_agent():
    out = bundle(_order(), SYSTEMS, now=T)
    provenance = out["entry"][-1]["resource"]
    Provenance.model_validate(provenance)
    assert provenance["agent"][0]["who"] == {
        "identifier": {"system": "https://tracker.test/fhir/sid/device", "value": "DEV-1"}
    }
    assert provenance["activity"]["text"] == "transition: registered -> stored"


def test_the_same_order_exports_with_the_same_full_urls():
    first = [e["fullUrl"] for e in bundle(_order(), SYSTEMS, now=T)["entry"]]
    again = [e["fullUrl"] for e in bundle(_order(), SYSTEMS, now=T)["entry"]]
    assert first == again
