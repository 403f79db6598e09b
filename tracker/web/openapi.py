"""A small OpenAPI 3.1 registry: each API view declares its body and response models once.

Chosen over APIFlask to keep one request-parsing path (strict Pydantic) and one error shape,
with the document generated from the same models the views validate with.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from dataclasses import field
from datetime import UTC
from datetime import datetime
from functools import wraps
from typing import Annotated
from typing import Any
from typing import Literal

from flask import Blueprint
from flask import request
from pydantic import AwareDatetime
from pydantic import BaseModel
from pydantic import BeforeValidator
from pydantic import ConfigDict
from pydantic import Field
from pydantic.json_schema import JsonSchemaMode
from pydantic.json_schema import models_json_schema
from werkzeug.routing import IntegerConverter
from werkzeug.routing import Map

from tracker.domain.errors import REASONS
from tracker.domain.errors import TrackerError


class Strict(BaseModel):
    """Request and response bodies: no coercion ("3" is not 3), no unknown fields, no NaN."""

    model_config = ConfigDict(strict=True, extra="forbid", allow_inf_nan=False)


class Query(BaseModel):
    """Query strings arrive as text: numbers are parsed, unknown parameters ignored."""

    model_config = ConfigDict(extra="ignore", allow_inf_nan=False)


_RFC3339 = re.compile(
    r"^([0-9]{4}-[0-9]{2}-[0-9]{2})[Tt]([0-9]{2}:[0-9]{2}:[0-9]{2})(\.[0-9]+)?([Zz]|[+-][0-9]{2}:[0-9]{2})?$"
)


def _rfc3339(value: object) -> object:
    """Parse RFC 3339 text; pydantic alone also takes "2026-03-02T14:00Z" or "+0100"."""
    if not isinstance(value, str):
        return value  # a datetime built by our own code (responses)
    match = _RFC3339.match(value)
    if match is None:
        raise ValueError("not an RFC 3339 date-time (YYYY-MM-DDTHH:MM:SS with Z or +HH:MM)")
    day, clock, fraction, offset = match.groups()
    # A missing offset parses to a naive value, which AwareDatetime reports (naive_datetime).
    text = f"{day}T{clock}{(fraction or '')[:7]}{(offset or '').upper().replace('Z', '+00:00')}"
    parsed = datetime.fromisoformat(text)
    # Year 1 or 9999 with an offset cannot even be turned into UTC; nothing here is that old.
    if not 1900 <= parsed.year <= 2999 or (
        parsed.tzinfo is not None and not 1900 <= parsed.astimezone(UTC).year <= 2999
    ):
        raise ValueError("date-times from 1900 to 2999 only")
    return parsed


# An instant with its UTC offset, written as RFC 3339 (the JSON Schema "date-time" format).
UtcDateTime = Annotated[AwareDatetime, BeforeValidator(_rfc3339)]

# Row ids are 32-bit integers in PostgreSQL: a larger id in a path or body would be a
# database error, not a missing record.
MAX_DB_ID = 2**31 - 1
DbId = Annotated[int, Field(ge=1, le=MAX_DB_ID)]


class RowIdConverter(IntegerConverter):
    """``<int:...>`` URL parts that fit a row id; anything larger does not match (404)."""

    def __init__(self, url_map: Map, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("max", MAX_DB_ID)
        super().__init__(url_map, *args, **kwargs)


_UNSTORABLE_CHARS = re.compile("[\x00\ud800-\udfff]")


def storable_text(value: object) -> bool:
    """False for text PostgreSQL cannot store: NUL characters or unpaired surrogates."""
    if isinstance(value, str):
        return _UNSTORABLE_CHARS.search(value) is None
    if isinstance(value, dict):
        return all(storable_text(k) and storable_text(v) for k, v in value.items())
    if isinstance(value, list):
        return all(storable_text(v) for v in value)
    return True


# Blueprints whose writes honour Idempotency-Key (tracker.web.idempotency.protect fills this):
# blueprint name -> endpoints exempted.
IDEMPOTENT: dict[str, frozenset[str]] = {}

WRITES = frozenset({"post", "put", "patch", "delete"})
# What any operation may answer besides its own codes: a refused body or parameter, no or an
# expired login, a role/site or CSRF refusal, an unknown or invisible record, a server fault.
COMMON_ERRORS = (400, 401, 403, 404, 500)
# Writes may also meet a concurrent change (version counters) or a body over the size limit.
WRITE_ERRORS = (409, 413)

Caller = Literal["anyone", "person", "device"]


@dataclass
class Operation:
    path: str
    method: str
    summary: str
    body: type[BaseModel] | None
    response: type[BaseModel] | None
    status: int
    tag: str
    errors: tuple[int, ...]
    endpoint: str = ""
    produces: tuple[str, ...] = ()
    int_params: tuple[str, ...] = ()
    query: type[BaseModel] | None = None
    caller: Caller = "anyone"
    media_type: str = "application/json"

    def error_codes(self) -> list[int]:
        codes = {*COMMON_ERRORS, *self.errors}
        if self.method in WRITES:
            codes.update(WRITE_ERRORS)
        if _idempotent(self):
            codes.add(422)
        return sorted(codes)


@dataclass
class Registry:
    operations: list[Operation] = field(default_factory=list)

    def route(
        self,
        bp: Blueprint,
        rule: str,
        method: str,
        *,
        summary: str,
        body: type[BaseModel] | None = None,
        response: type[BaseModel] | None = None,
        status: int = 200,
        tag: str = "tracker",
        errors: tuple[int, ...] = (),
        produces: tuple[str, ...] = (),
        query: type[BaseModel] | None = None,
        caller: Caller = "anyone",
        media_type: str = "application/json",
    ) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
        """Register a view; its parsed body arrives as ``payload``, its query as ``params``.

        ``produces`` lists the media types of a binary success response (files, images).
        ``errors`` adds status codes beyond the common ones (``COMMON_ERRORS``). ``caller``
        documents who may call: anyone authenticated, only a person (session), or a device.
        ``media_type`` is that of the ``response`` model's JSON (FHIR answers differ).
        """

        def decorator(view: Callable[..., Any]) -> Callable[..., Any]:
            @wraps(view)
            def wrapper(**kwargs: Any) -> Any:
                if not storable_text(kwargs):
                    raise TrackerError("not_found", "no record has that name")
                if body is not None:
                    raw = request.get_data(cache=True)
                    if not raw.strip():
                        raise TrackerError("invalid_request", "a JSON request body is required")
                    payload = body.model_validate_json(raw)
                    if not storable_text(json.loads(raw)):
                        raise TrackerError("invalid_request", _UNSTORABLE)
                    kwargs["payload"] = payload
                if query is not None:
                    args = request.args.to_dict()
                    if not storable_text(args):
                        raise TrackerError("invalid_request", _UNSTORABLE)
                    kwargs["params"] = query.model_validate(args)
                return view(**kwargs)

            bp.add_url_rule(rule, view.__name__, wrapper, methods=[method])
            path = re.sub(r"<(?:\w+:)?(\w+)>", r"{\1}", (bp.url_prefix or "") + rule)
            self.operations.append(
                Operation(
                    path,
                    method.lower(),
                    summary,
                    body,
                    response,
                    status,
                    tag,
                    errors,
                    endpoint=f"{bp.name}.{view.__name__}",
                    produces=produces,
                    int_params=tuple(re.findall(r"<int:(\w+)>", rule)),
                    query=query,
                    caller=caller,
                    media_type=media_type,
                )
            )
            return wrapper

        return decorator

    def document(self, *, title: str, version: str) -> dict[str, Any]:
        refs, schemas = self._schemas()
        schemas["Error"] = _error_schema()
        paths: dict[str, Any] = {}
        for op in self.operations:
            entry: dict[str, Any] = {
                "summary": op.summary,
                "operationId": op.endpoint,
                "tags": [op.tag],
                "security": _security(op),
                "responses": {},
            }
            parameters = [
                {
                    "name": p,
                    "in": "path",
                    "required": True,
                    "schema": {"type": "integer", "minimum": 0, "maximum": MAX_DB_ID}
                    if p in op.int_params
                    else {"type": "string", "minLength": 1},
                }
                for p in re.findall(r"\{(\w+)\}", op.path)
            ]
            if op.query is not None:
                parameters += _query_parameters(op.query)
            if _idempotent(op):
                parameters.append(
                    {
                        "name": "Idempotency-Key",
                        "in": "header",
                        "required": False,
                        "description": "Replays the first answer; 409 while it runs, 422 if "
                        "reused for a different request.",
                        "schema": {"type": "string", "minLength": 1, "maxLength": 255},
                    }
                )
            if parameters:
                entry["parameters"] = parameters
            if op.body is not None:
                entry["requestBody"] = {
                    "required": True,
                    "content": {"application/json": {"schema": refs[(op.body, "validation")]}},
                }
            ok: dict[str, Any] = {"description": "Success"}
            if op.response is not None:
                schema = refs[(op.response, "serialization")]
                ok["content"] = {op.media_type: {"schema": schema}}
            elif op.produces:
                binary = {"schema": {"type": "string", "format": "binary"}}
                ok["content"] = {media: binary for media in op.produces}
            entry["responses"][str(op.status)] = ok
            for code in op.error_codes():
                entry["responses"][str(code)] = {
                    "description": "Error: see `reason` (x-reason-codes)",
                    "content": {
                        "application/json": {"schema": {"$ref": "#/components/schemas/Error"}}
                    },
                }
            paths.setdefault(op.path, {})[op.method] = entry
        return {
            "openapi": "3.1.0",
            "info": {
                "title": title,
                "version": version,
                "description": (
                    "Errors carry a stable `reason` code; see x-reason-codes. People call with "
                    "their session cookie (writes add the `X-CSRFToken` header); scanners and "
                    "loggers with their device token as a Bearer token."
                ),
            },
            "paths": paths,
            "components": {
                "schemas": schemas,
                "securitySchemes": {
                    "session": {"type": "apiKey", "in": "cookie", "name": "session"},
                    "csrf": {"type": "apiKey", "in": "header", "name": "X-CSRFToken"},
                    "deviceToken": {"type": "http", "scheme": "bearer"},
                },
            },
            "x-reason-codes": REASONS,
        }

    def _schemas(
        self,
    ) -> tuple[dict[tuple[type[BaseModel], JsonSchemaMode], dict[str, Any]], dict[str, Any]]:
        """One JSON Schema per model, named once for the whole document.

        Pydantic names the schemas together, so two models with the same class name in
        different modules get distinct names instead of overwriting each other.
        """
        wanted: dict[tuple[type[BaseModel], JsonSchemaMode], None] = {}
        for op in self.operations:
            if op.body is not None:
                wanted[(op.body, "validation")] = None
            if op.response is not None:
                wanted[(op.response, "serialization")] = None
        refs, top = models_json_schema(list(wanted), ref_template="#/components/schemas/{model}")
        by_model = {(model, mode): ref for (model, mode), ref in refs.items()}
        return by_model, dict(top.get("$defs", {}))  # type: ignore[return-value]


def _idempotent(op: Operation) -> bool:
    blueprint = op.endpoint.split(".", 1)[0]
    return (
        op.method in WRITES and blueprint in IDEMPOTENT and op.endpoint not in IDEMPOTENT[blueprint]
    )


_UNSTORABLE = "text may not contain NUL characters or unpaired UTF-16 surrogates"


def _security(op: Operation) -> list[dict[str, list[str]]]:
    session: dict[str, list[str]] = {"session": []}
    if op.method in WRITES:
        session["csrf"] = []
    if op.caller == "person":
        return [session]
    if op.caller == "device":
        return [{"deviceToken": []}]
    return [session, {"deviceToken": []}]


def _query_parameters(model: type[BaseModel]) -> list[dict[str, Any]]:
    schema = model.model_json_schema()
    required = set(schema.get("required", []))
    return [
        {"name": name, "in": "query", "required": name in required, "schema": prop}
        for name, prop in schema.get("properties", {}).items()
    ]


def _error_schema() -> dict[str, Any]:
    return {
        "type": "object",
        "required": ["status", "reason", "message"],
        "properties": {
            "status": {"const": "error"},
            "reason": {"type": "string", "enum": sorted(REASONS)},
            "message": {"type": "string"},
            "problems": {
                "type": "array",
                "items": {
                    "type": "object",
                    "properties": {"field": {"type": "string"}, "problem": {"type": "string"}},
                },
            },
        },
    }
