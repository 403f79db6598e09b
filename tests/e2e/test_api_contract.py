"""The API contract: a valid OpenAPI 3.1 document that describes every /api/v1 rule completely,
strict request types, and the refusals schemathesis first found as server errors."""

from __future__ import annotations

import re

import pytest
from openapi_spec_validator import validate

from tests.alert_helpers import ingest
from tests.alert_helpers import on_the_road
from tests.alert_helpers import series
from tests.e2e.test_api import api
from tests.e2e.test_api import login
from tests.factories import make_bag
from tests.factories import make_order


@pytest.fixture
def document(client):  # type: ignore[no-untyped-def]
    resp = client.get("/api/openapi.json")
    assert resp.status_code == 200
    return resp.get_json()


def _operations(document):  # type: ignore[no-untyped-def]
    for path, ops in document["paths"].items():
        for method, op in ops.items():
            yield path, method, op


def test_the_document_is_valid_openapi_3_1(document):
    validate(document)  # raises on any structural or schema error
    assert document["openapi"] == "3.1.0"


def test_every_api_rule_and_method_is_documented_and_nothing_else(app, document):
    rules = set()
    for rule in app.url_map.iter_rules():
        if not rule.rule.startswith("/api/v1"):
            continue
        path = re.sub(r"<(?:\w+:)?(\w+)>", r"{\1}", rule.rule)
        for method in rule.methods - {"HEAD", "OPTIONS"}:
            rules.add((path, method.lower()))
    documented = {(path, method) for path, method, _ in _operations(document)}
    assert rules == documented


def test_every_operation_documents_its_body_answer_errors_parameters_and_security(document):
    ids = set()
    schemes = set(document["components"]["securitySchemes"])
    for path, method, op in _operations(document):
        where = f"{method.upper()} {path}"
        assert op["operationId"] not in ids, where
        ids.add(op["operationId"])
        assert op["security"] and all(set(req) <= schemes for req in op["security"]), where
        if method in ("post", "put", "patch"):
            assert all("csrf" in req for req in op["security"] if "session" in req), where
        declared = {p["name"] for p in op.get("parameters", []) if p["in"] == "path"}
        assert declared == set(re.findall(r"\{(\w+)\}", path)), where
        for p in op.get("parameters", []):
            assert "schema" in p, where
        success = [code for code in op["responses"] if code.startswith("2")]
        assert len(success) == 1, where
        content = op["responses"][success[0]].get("content")
        assert content, f"{where}: no success schema"
        assert all("schema" in media for media in content.values()), where
        for code in ("400", "401", "403", "404", "500"):
            schema = op["responses"][code]["content"]["application/json"]["schema"]
            assert schema == {"$ref": "#/components/schemas/Error"}, where
        if method in ("post", "put", "patch", "delete"):
            assert "409" in op["responses"], where
        body = op.get("requestBody")
        if body is not None:
            assert body["required"] is True, where
            assert "application/json" in body["content"], where


def test_every_schema_reference_resolves(document):
    text = str(document)
    names = set(re.findall(r"#/components/schemas/([\w.-]+)", text))
    assert names <= set(document["components"]["schemas"])


def test_request_bodies_refuse_unknown_fields_and_lax_values(document):
    schemas = document["components"]["schemas"]
    patient = schemas["PatientIn"]
    assert patient["additionalProperties"] is False
    shipment = schemas["ShipmentIn"]
    pickup = shipment["properties"]["planned_pickup_at"]["anyOf"][0]
    assert pickup == {"type": "string", "format": "date-time"}


def test_the_document_shows_a_qa_disposition_is_e_signed_and_a_chain_answer_has_its_head(
    document,
):
    schemas = document["components"]["schemas"]
    op = document["paths"]["/api/v1/items/{public_id}/dispositions"]["post"]
    assert op["requestBody"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/DispositionIn"
    }
    assert "password" in schemas["DispositionIn"]["required"]
    assert {"401", "423"} <= set(op["responses"])  # wrong password; locked out
    out = schemas["DispositionOut"]
    assert "signature" in out["required"]
    assert out["properties"]["signature"] == {"$ref": "#/components/schemas/SignatureOut"}
    signed = set(schemas["SignatureOut"]["required"])
    assert {"printed_name", "meaning", "signed_at", "record_hash"} <= signed
    chain = document["paths"]["/api/v1/orders/{public_id}/chain"]["get"]["responses"]["200"]
    assert chain["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/ChainOut"
    }
    assert {"events", "head_hash"} <= set(schemas["ChainOut"]["required"])
    assert schemas["ChainOut"]["properties"]["head_hash"]["pattern"] == "^[0-9a-f]{64}$"


@pytest.mark.parametrize(
    "occurred_at",
    [
        "2026-03-02T14:00Z",  # no seconds
        "2026-03-02T14:00:00+0100",  # offset without a colon
        "2026-03-02 14:00:00Z",  # space instead of T
        1772460000,  # a number of seconds
        "2026-02-30T14:00:00Z",  # no such day
    ],
)
def test_date_times_must_be_rfc_3339_text(client, world, new_uow, clock, occurred_at):
    order = make_order(new_uow, world, clock.now())
    token, _ = login(client, "nurse")
    resp = api(
        client,
        token,
        "POST",
        f"/api/v1/orders/{order.public_id}/bags",
        {"kind": "apheresis_bag", "occurred_at": occurred_at},
    )
    assert resp.status_code == 400
    assert resp.get_json()["reason"] == "invalid_request"


@pytest.mark.parametrize("container", ["2", True, 2.5])
def test_integers_refuse_strings_booleans_and_fractions(client, world, new_uow, clock, container):
    order = make_order(new_uow, world, clock.now())
    token, _ = login(client, "nurse")
    resp = api(
        client,
        token,
        "POST",
        f"/api/v1/orders/{order.public_id}/bags",
        {"kind": "apheresis_bag", "container": container},
    )
    assert resp.status_code == 400 and resp.get_json()["reason"] == "invalid_request"


def test_a_write_without_a_body_is_refused_not_defaulted(client, world):
    token, _ = login(client, "admin")
    resp = client.patch("/api/v1/printers/PRN-NONE", headers={"X-CSRFToken": token})
    assert resp.status_code == 400 and resp.get_json()["reason"] == "invalid_request"


def test_a_disposition_naming_an_excursion_of_another_bag_is_not_found(
    client, new_uow, world, clock
):
    trip = on_the_road(new_uow, world, clock.now())
    ingest(new_uow, trip, series(trip.packed_at, [9.0] * 8 + [5.0]), clock.now())
    token, _ = login(client, "qa")
    resp = api(
        client,
        token,
        "POST",
        f"/api/v1/items/{trip.bag.public_id}/dispositions",
        {
            "decision": "quarantine",
            "comment": "hold",
            "excursion_id": 987654,
            "password": world.password,
        },
    )
    assert resp.status_code == 404 and resp.get_json()["reason"] == "not_found"


def test_a_second_resource_with_the_same_name_at_a_site_is_a_conflict(client, world):
    token, _ = login(client, "admin")
    body = {"kind": "infusion_bed", "name": "Beds"}
    assert api(client, token, "POST", "/api/v1/sites/TC1/resources", body).status_code == 201
    again = api(client, token, "POST", "/api/v1/sites/TC1/resources", body)
    assert again.status_code == 409 and again.get_json()["reason"] == "conflict"


def test_a_concurrent_change_answers_409_conflict_not_500(settings):
    from sqlalchemy.orm.exc import StaleDataError

    from tracker.web import create_app

    app = create_app(settings)

    @app.get("/api/v1/_stale")
    def _stale():  # type: ignore[no-untyped-def]
        raise StaleDataError("version counter moved")

    resp = app.test_client().get("/api/v1/_stale")
    assert resp.status_code == 409 and resp.get_json()["reason"] == "conflict"


def test_ids_beyond_a_32_bit_row_id_are_not_found_rather_than_a_database_error(client, world):
    token, _ = login(client, "admin")
    for path in ("/api/v1/logger-imports/116119430033781504", "/api/v1/alerts/6504740410"):
        resp = client.get(path)
        assert resp.status_code == 404 and resp.get_json()["reason"] == "not_found", path
    big = api(client, token, "POST", "/api/v1/notifications/99999999999/read")
    assert big.status_code == 404


def test_text_postgresql_cannot_store_is_refused_in_bodies_paths_and_queries(
    client, world, new_uow, clock
):
    order = make_order(new_uow, world, clock.now())
    make_bag(new_uow, world, order, clock.now())
    token, _ = login(client, "coord")
    detail = client.get(f"/api/v1/orders/{order.public_id}").get_json()
    event = detail["timeline"][0]["id"]
    for correction in ({"note": "a\u0000b"}, {"\ud800": "lone surrogate"}):
        resp = api(
            client,
            token,
            "POST",
            f"/api/v1/events/{event}/corrections",
            {"reason": "typo in the note", "correction": correction},
        )
        assert resp.status_code == 400 and resp.get_json()["reason"] == "invalid_request"
    assert client.get("/api/v1/orders/ORD-%00").status_code == 404
    calendar = client.get("/api/v1/sites/TC1/calendar?start=%00")
    assert calendar.status_code == 400


def test_a_body_id_beyond_a_32_bit_row_id_is_refused(client, world, new_uow, clock):
    trip = on_the_road(new_uow, world, clock.now())
    token, _ = login(client, "qa")
    resp = api(
        client,
        token,
        "POST",
        f"/api/v1/items/{trip.bag.public_id}/dispositions",
        {
            "decision": "quarantine",
            "comment": "hold",
            "excursion_id": 2**40,
            "password": world.password,
        },
    )
    assert resp.status_code == 400 and resp.get_json()["reason"] == "invalid_request"
