"""A small OpenAPI 3.1 registry: each API view declares its body and response models once.

Chosen over APIFlask to keep one request-parsing path (strict Pydantic) and one error shape,
with the document generated from the same models the views validate with.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from dataclasses import field
from functools import wraps
from typing import Any

from flask import Blueprint
from flask import request
from pydantic import BaseModel

from tracker.domain.errors import REASONS


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
    produces: tuple[str, ...] = ()
    int_params: tuple[str, ...] = ()


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
        errors: tuple[int, ...] = (400, 401, 403, 404),
        produces: tuple[str, ...] = (),
    ) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
        """Register a view; its parsed body arrives as the ``payload`` keyword argument.

        ``produces`` lists the media types of a binary success response (files, images).
        """

        def decorator(view: Callable[..., Any]) -> Callable[..., Any]:
            @wraps(view)
            def wrapper(**kwargs: Any) -> Any:
                if body is not None:
                    raw = request.get_data(cache=True) or b"{}"
                    kwargs["payload"] = body.model_validate_json(raw)
                return view(**kwargs)

            bp.add_url_rule(rule, view.__name__, wrapper, methods=[method])
            path = (bp.url_prefix or "") + rule
            for conv in ("<int:", "<"):
                path = path.replace(conv, "{")
            path = path.replace(">", "}")
            ints = tuple(re.findall(r"<int:(\w+)>", rule))
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
                    produces=produces,
                    int_params=ints,
                )
            )
            return wrapper

        return decorator

    def document(self, *, title: str, version: str) -> dict[str, Any]:
        schemas: dict[str, Any] = {"Error": _error_schema()}
        paths: dict[str, Any] = {}
        for op in self.operations:
            entry: dict[str, Any] = {
                "summary": op.summary,
                "operationId": f"{op.method}_{op.path.strip('/').replace('/', '_')}",
                "tags": [op.tag],
                "responses": {},
            }
            params = [seg[1:-1] for seg in op.path.split("/") if seg.startswith("{")]
            if params:
                entry["parameters"] = [
                    {
                        "name": p,
                        "in": "path",
                        "required": True,
                        "schema": {"type": "integer" if p in op.int_params else "string"},
                    }
                    for p in params
                ]
            if op.body is not None:
                entry["requestBody"] = {
                    "required": True,
                    "content": {"application/json": {"schema": _ref(op.body, schemas)}},
                }
            ok: dict[str, Any] = {"description": "Success"}
            if op.response is not None:
                ok["content"] = {"application/json": {"schema": _ref(op.response, schemas)}}
            elif op.produces:
                binary = {"schema": {"type": "string", "format": "binary"}}
                ok["content"] = {media: binary for media in op.produces}
            entry["responses"][str(op.status)] = ok
            for code in sorted({*op.errors, 500}):
                entry["responses"][str(code)] = {
                    "description": "Error (see reason codes)",
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
                "description": "Errors carry a stable `reason` code; see x-reason-codes.",
            },
            "paths": paths,
            "components": {
                "schemas": schemas,
                "securitySchemes": {
                    "session": {"type": "apiKey", "in": "cookie", "name": "session"},
                    "deviceToken": {"type": "http", "scheme": "bearer"},
                },
            },
            "security": [{"session": []}, {"deviceToken": []}],
            "x-reason-codes": REASONS,
        }


def _ref(model: type[BaseModel], schemas: dict[str, Any]) -> dict[str, str]:
    schema = model.model_json_schema(ref_template="#/components/schemas/{model}")
    for name, sub in schema.pop("$defs", {}).items():
        schemas[name] = sub
    schemas[model.__name__] = schema
    return {"$ref": f"#/components/schemas/{model.__name__}"}


def _error_schema() -> dict[str, Any]:
    return {
        "type": "object",
        "required": ["status", "reason", "message"],
        "properties": {
            "status": {"const": "error"},
            "reason": {"type": "string", "enum": sorted(REASONS)},
            "message": {"type": "string"},
            "problems": {"type": "array", "items": {"type": "object"}},
        },
    }
