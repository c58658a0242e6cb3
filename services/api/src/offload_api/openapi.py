"""The OpenAPI 3.1 document, generated from the app's routes and the contract registry.

Paths come from ``app.url_map`` and each view's :class:`~offload_api.openapi_meta.Operation`;
request schemas from the contracts' payload models; response schemas from :mod:`offload_api.schemas`.
Nothing here is written by hand per job type, so a new contract appears with no edit.
"""

from __future__ import annotations

import re
from typing import Any

from flask import Flask
from pydantic.json_schema import models_json_schema

from offload.contracts import Registry
from offload.submission import JobOptions
from offload_api.openapi_meta import Operation
from offload_api.schemas import RESPONSE_MODELS

REF = "#/components/schemas/{model}"
_PATH_PARAM = re.compile(r"<(?:[a-z]+:)?([a-z_]+)>")


def build_openapi(app: Flask, registry: Registry) -> dict[str, Any]:
    """The whole document for ``app`` serving ``registry``."""
    schemas = _model_schemas(registry)
    schemas.update(_request_schemas(registry, app.config.get("OFFLOAD_MAX_BATCH_JOBS", 500)))
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "Offload API",
            "version": "1",
            "description": "Submit background jobs and follow them by polling, Server-Sent Events or webhooks.",
        },
        "paths": _paths(app),
        "components": {
            "schemas": schemas,
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer", "description": "An Offload API key."}},
        },
        "security": [{"bearer": []}],
    }


def _model_schemas(registry: Registry) -> dict[str, Any]:
    models = [(m, "serialization") for m in RESPONSE_MODELS] + [(JobOptions, "validation")]
    models += [(c.payload, "validation") for c in registry]
    _, top = models_json_schema(models, ref_template=REF)  # type: ignore[arg-type]
    definitions: dict[str, Any] = top.get("$defs", {})
    return definitions


def _request_schemas(registry: Registry, max_batch: int) -> dict[str, Any]:
    variants = []
    for contract in registry.public:
        variants.append(
            {
                "type": "object",
                "title": contract.name,
                "description": contract.description,
                "properties": {
                    "type": {"const": contract.name},
                    "payload": {"$ref": REF.format(model=contract.payload.__name__)},
                    "options": {"$ref": REF.format(model="JobOptions")},
                },
                "required": ["type"],
                "additionalProperties": False,
            }
        )
    return {
        "JobRequest": {
            "oneOf": variants,
            "discriminator": {"propertyName": "type"},
            "description": "A job to run: its type, its payload and options.",
        },
        "BatchRequest": {
            "type": "object",
            "properties": {
                "jobs": {
                    "type": "array",
                    "items": {"$ref": REF.format(model="JobRequest")},
                    "minItems": 1,
                    "maxItems": max_batch,
                }
            },
            "required": ["jobs"],
            "additionalProperties": False,
        },
    }


def _paths(app: Flask) -> dict[str, Any]:
    paths: dict[str, Any] = {}
    for rule in sorted(app.url_map.iter_rules(), key=lambda r: r.rule):
        operation: Operation | None = getattr(app.view_functions[rule.endpoint], "openapi", None)
        if operation is None:
            continue
        path = _PATH_PARAM.sub(r"{\1}", rule.rule)
        for method in sorted((rule.methods or set()) - {"HEAD", "OPTIONS"}):
            paths.setdefault(path, {})[method.lower()] = _operation(rule.endpoint, rule.arguments, operation)
    return paths


def _operation(endpoint: str, arguments: set[str], op: Operation) -> dict[str, Any]:
    parameters: list[dict[str, Any]] = [
        {"name": name, "in": "path", "required": True, "schema": {"type": "string"}} for name in sorted(arguments)
    ]
    parameters += [{"name": n, "in": "query", "required": False, "schema": s, "description": d} for n, s, d in op.query]
    parameters += [
        {"name": n, "in": "header", "required": False, "schema": {"type": "string"}, "description": d}
        for n, d in op.headers
    ]
    document: dict[str, Any] = {
        "operationId": endpoint.replace(".", "_"),
        "summary": op.summary,
        "tags": [op.tag],
        "parameters": parameters,
        "responses": {
            str(status): _response(desc, schema, op.stream and status == 200)
            for status, (desc, schema) in sorted(op.responses.items())
        },
    }
    if op.request:
        document["requestBody"] = {
            "required": True,
            "content": {"application/json": {"schema": {"$ref": REF.format(model=op.request)}}},
        }
    if op.public:
        document["security"] = []
    return document


def _response(description: str, schema: str | None, stream: bool) -> dict[str, Any]:
    if stream:
        return {"description": description, "content": {"text/event-stream": {"schema": {"type": "string"}}}}
    if schema is None:
        return {"description": description}
    return {"description": description, "content": {"application/json": {"schema": {"$ref": REF.format(model=schema)}}}}
