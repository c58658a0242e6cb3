"""The OpenAPI 3.1 document, generated from the app's routes and the contract registry.

Paths come from ``app.url_map`` and each view's :class:`~offload_api.openapi_meta.Operation`;
request schemas from the contracts' payload models; response schemas from :mod:`offload_api.schemas`.
Nothing here is written by hand per job type, so a new contract appears with no edit.

An event stream (``text/event-stream``) is described one event at a time, as OpenAPI 3.2's
``itemSchema`` does. The document stays 3.1, whose Media Type Object has no ``itemSchema``, so
its ``schema`` describes one event: that is how schemathesis (4.32) reads ``schema`` on a stream
in a document before 3.2 (in a 3.2 one it reads it as the whole stream). An event is an object
with the fields of the SSE format (``event``, ``id``, ``data``); ``data`` is a JSON document,
described by ``contentMediaType`` and ``contentSchema``, and a ``oneOf`` on the event name gives
each name its own.
"""

from __future__ import annotations

import copy
import re
from typing import Any

from flask import Flask
from pydantic import BaseModel
from pydantic.json_schema import models_json_schema

from offload.contracts import JobContract, Registry
from offload.contracts.push import NewPushSubscription
from offload.contracts.registered import RegisteredContract
from offload.flows import MAX_NODES, NAME, POLICIES
from offload.submission import JobOptions
from offload.user_schedules import ScheduleRequest
from offload_api.admission import EXEMPT
from offload_api.openapi_meta import HTML_PAGE, Content, EventStream, Link, Operation
from offload_api.openapi_webhooks import webhooks
from offload_api.schemas import RESPONSE_MODELS, EventsTokenRequest, JobTokenRequest
from offload_api.schemas_keys import REQUESTS as KEY_REQUESTS
from offload_api.schemas_keys import RESPONSES as KEY_RESPONSES
from offload_api.schemas_ops import REQUESTS as OPS_REQUESTS
from offload_api.schemas_ops import RESPONSES as OPS_RESPONSES

REF = "#/components/schemas/{model}"
#: gunicorn's ``limit_request_line`` (its default): a longer request line is answered 414 before the app.
MAX_REQUEST_LINE = 4094
_PATH_PARAM = re.compile(r"<(?:[a-z]+:)?([a-z_]+)>")

#: The groups operations are listed in (each operation's ``tag``), in the order the docs show them.
TAGS = {
    "jobs": "Submit jobs and follow them (their record, event stream and log), cancel and retry them; statistics.",
    "batches": "Many jobs in one request, validated all or none, and followed as one.",
    "flows": "Graphs of jobs in one request: a node runs once the nodes it needs have ended, and reads their "
    "results; followed, streamed and cancelled as one.",
    "files": "Uploads that image jobs take as their source, and downloads of jobs' outputs by signed link.",
    "webhooks": "The secret your tenant's webhook deliveries are signed with (the deliveries are under `webhooks`).",
    "push": "Web push: browsers' subscriptions per user, and the VAPID public key they subscribe with "
    "(`push.send` jobs notify them).",
    "meta": "What this API serves: the job types with their payload schemas, this document.",
    "schedules": "Jobs run on a cron expression or an interval: the shipped ones, and your tenant's own to make, "
    "change, pause, resume, run now and delete.",
    "operations": "Queues (depths, consumers, jobs by state; pause and resume, admin keys) and bulk operations on "
    "the jobs a filter matches, run in the background and followed by id.",
    "keys": "Managed API keys (made, listed, rotated, revoked; effective on every API process within seconds) and "
    "the audit log of admin actions (admins).",
    "dead-letters": "Each queue's dead letters with the reason Offload recorded: listed, requeued, purged (admins).",
    "health": "Liveness and readiness probes.",
}


def build_openapi(app: Flask, registry: Registry, *, server_url: str = "/") -> dict[str, Any]:
    """The whole document for ``app`` serving ``registry`` at ``server_url``.

    ``server_url`` is the API's public base URL when one is configured; otherwise ``/``, which a
    client resolves against the address it fetched this document from (the API itself).
    """
    schemas = _model_schemas(registry)
    schemas.update(_request_schemas(registry, app.config.get("OFFLOAD_MAX_BATCH_JOBS", 500)))
    for stream in _streams(app):
        schemas.update(_event_schemas(stream))
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "Offload API",
            "version": "1",
            "description": "Submit background jobs and follow them by polling, Server-Sent Events or webhooks.",
        },
        "servers": [{"url": server_url, "description": "This API."}],
        "tags": [{"name": name, "description": description} for name, description in TAGS.items()],
        "paths": _paths(app),
        "webhooks": webhooks(registry),
        "components": {
            "schemas": schemas,
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer", "description": "An Offload API key."}},
        },
        "security": [{"bearer": []}],
    }


def _model_schemas(registry: Registry) -> dict[str, Any]:
    """The response models, and the request models of the job types clients may submit.

    An internal job type's payload (a webhook delivery, a cleanup) is Offload's own business: no
    request of the API carries one, so it is left out rather than published unused.
    """
    models = [(m, "serialization") for m in (*RESPONSE_MODELS, *OPS_RESPONSES, *KEY_RESPONSES)]
    models += [(JobOptions, "validation")]
    requests: tuple[type[BaseModel], ...] = (NewPushSubscription, JobTokenRequest, EventsTokenRequest, *OPS_REQUESTS)
    requests += KEY_REQUESTS
    models += [(m, "validation") for m in requests]
    models += [(c.payload, "validation") for c in registry.public if not isinstance(c, RegisteredContract)]
    _, top = models_json_schema(models, ref_template=REF)  # type: ignore[arg-type]
    definitions: dict[str, Any] = top.get("$defs", {})
    for contract in registry.public:
        if isinstance(contract, RegisteredContract):
            definitions.update(_registered_schemas(contract))
    return definitions


def _payload_name(contract: JobContract) -> str:
    """The name of a job type's payload schema: its model's, or ``<Type>Payload`` for a registered type."""
    if isinstance(contract, RegisteredContract):
        return f"{_camel(contract.name)}Payload"
    return contract.payload.__name__


def _registered_schemas(contract: RegisteredContract) -> dict[str, Any]:
    """A registered type's payload schema and its definitions, named apart from every other type's.

    A worker's schema keeps its definitions under ``$defs``; here each becomes a component named
    after the type (``TextWordcountOptions``), and every local reference follows it.
    """
    prefix = _camel(contract.name)
    schema = copy.deepcopy(contract.json_schema())
    definitions = schema.pop("$defs", {}) if isinstance(schema.get("$defs"), dict) else {}

    def relink(node: Any) -> Any:
        if isinstance(node, dict):
            ref = node.get("$ref")
            if isinstance(ref, str) and ref.startswith("#/$defs/"):
                node = {**node, "$ref": REF.format(model=prefix + ref.removeprefix("#/$defs/"))}
            return {key: relink(value) for key, value in node.items()}
        if isinstance(node, list):
            return [relink(item) for item in node]
        return node

    found = {f"{prefix}{name}": relink(definition) for name, definition in definitions.items()}
    found[_payload_name(contract)] = relink(schema)
    return found


def _payload_required(contract: JobContract) -> bool:
    if isinstance(contract, RegisteredContract):
        return bool(contract.json_schema().get("required"))
    return _requires_fields(contract.payload)


def _requires_fields(model: type[BaseModel]) -> bool:
    return any(field.is_required() for field in model.model_fields.values())


def _camel(name: str) -> str:
    """``system.sleep`` → ``SystemSleep``, ``cancel_requested`` → ``CancelRequested``: a schema name's part."""
    return "".join(word.capitalize() for word in re.split(r"[._]", name))


def _request_schemas(registry: Registry, max_batch: int) -> dict[str, Any]:
    """``JobRequest`` and ``FollowUp``, unions of one named schema per public job type, and ``BatchRequest``.

    A follow-up (``options.then``) names a job type and its payload just as a submission does, so
    it is described the same way, with the options a follow-up takes: its payload is required
    where its type requires one. ``FollowUp`` replaces the loose ``{type, payload}`` pydantic
    derives from :class:`offload.submission.FollowUp`, which the API checks against the contract.
    """
    return {
        **_schedule_schemas(),
        **_job_union(
            registry,
            "JobRequest",
            "JobOptions",
            "A job to run: its type, its payload and options.",
            extra={"token": _TOKEN_FLAG},
        ),
        **_job_union(
            registry,
            "FollowUp",
            "FollowUpOptions",
            "A job to run when its parent succeeds (its handler can read the parent's result): its type, its "
            "payload and options.",
        ),
        "BatchRequest": {
            "type": "object",
            "properties": {
                "jobs": {
                    "type": "array",
                    "items": {"$ref": REF.format(model="JobRequest")},
                    "minItems": 1,
                    "maxItems": max_batch,
                },
                "then": {
                    "$ref": REF.format(model="JobRequest"),
                    "description": "A job to run once every job of the batch has ended (it reads their results).",
                },
            },
            "required": ["jobs"],
            "additionalProperties": False,
        },
        **_flow_schemas(),
    }


def _flow_schemas() -> dict[str, Any]:
    """``FlowRequest``: nodes, each a job submission with a name and the nodes it needs (``offload.flows``)."""
    need = {
        "oneOf": [
            {"type": "string", "description": "Another node's name; its failure fails this node (on_failure: fail)."},
            {
                "type": "object",
                "properties": {
                    "node": {"type": "string", "description": "Another node's name."},
                    "on_failure": {
                        "type": "string",
                        "enum": list(POLICIES),
                        "default": "fail",
                        "description": "If that node does not succeed: fail this node and cancel what has not "
                        "started (fail), run without its result (ignore), or run with its failure in "
                        "ctx.child_results (continue).",
                    },
                },
                "required": ["node"],
                "additionalProperties": False,
            },
        ]
    }
    node = {
        "type": "object",
        "description": "A job of the flow: a job submission (type, payload, options as in JobRequest) with a name, "
        "unique in the flow, and the nodes it needs; it starts once they have all ended.",
        "properties": {
            "name": {"type": "string", "pattern": NAME.pattern},
            "type": {"type": "string", "description": "The job type (see GET /v1/job-types)."},
            "payload": {"type": "object", "description": "The payload, as the type's schema says (see JobRequest)."},
            "options": {"$ref": REF.format(model="JobOptions")},
            "needs": {"type": "array", "items": need, "default": []},
        },
        "required": ["name", "type"],
        "additionalProperties": False,
    }
    return {
        "FlowNodeRequest": node,
        "FlowRequest": {
            "type": "object",
            "properties": {
                "nodes": {
                    "type": "array",
                    "items": {"$ref": REF.format(model="FlowNodeRequest")},
                    "minItems": 1,
                    "maxItems": MAX_NODES,
                }
            },
            "required": ["nodes"],
            "additionalProperties": False,
        },
    }


def _schedule_schemas() -> dict[str, Any]:
    """``ScheduleRequest`` (its ``job`` a ``JobRequest``) and ``SchedulePatch``, the same with nothing required."""
    request = ScheduleRequest.model_json_schema(ref_template=REF, mode="validation")
    request["properties"]["job"] = {
        "$ref": REF.format(model="JobRequest"),
        "description": request["properties"]["job"]["description"],
    }
    request["additionalProperties"] = False
    patch = {key: value for key, value in copy.deepcopy(request).items() if key not in ("required", "title")}
    patch["description"] = "The fields of a schedule to change; the others keep their values."
    return {"ScheduleRequest": request, "SchedulePatch": patch}


#: ``JobRequest``'s ``token``: HTTP only, so not part of the options a follow-up or the SDK takes.
_TOKEN_FLAG = {
    "type": "boolean",
    "default": False,
    "description": "Answer with a read-only browser token for the job (token, token_expires_at).",
}


def _job_union(
    registry: Registry, union: str, options: str, description: str, *, extra: dict[str, Any] | None = None
) -> dict[str, Any]:
    """``union``, a ``oneOf`` on ``type`` of one schema per public job type (``<union><Type>``), and those schemas.

    Each variant is a schema of its own, referenced from the ``oneOf`` and named in the
    discriminator's mapping: a discriminator only selects a named schema, and client generators
    make one class per variant from it (an inline variant gives them nothing to name).
    """
    variants: dict[str, Any] = {}
    for contract in registry.public:
        variants[f"{union}{_camel(contract.name)}"] = {
            "type": "object",
            "description": contract.description,
            "properties": {
                "type": {"type": "string", "const": contract.name},
                "payload": {"$ref": REF.format(model=_payload_name(contract))},
                "options": {"$ref": REF.format(model=options)},
                **(extra or {}),
            },
            # The API reads a missing payload as {}, which is only valid if no field is required.
            "required": ["type", "payload"] if _payload_required(contract) else ["type"],
            "additionalProperties": False,
        }
    mapping = {contract.name: REF.format(model=f"{union}{_camel(contract.name)}") for contract in registry.public}
    return {
        **variants,
        union: {
            "oneOf": [{"$ref": ref} for ref in mapping.values()],
            "discriminator": {"propertyName": "type", "mapping": mapping},
            "description": description,
        },
    }


def _streams(app: Flask) -> list[EventStream]:
    operations: list[Operation | None] = [getattr(view, "openapi", None) for view in app.view_functions.values()]
    return [op.stream for op in operations if op is not None and op.stream is not None]


def _event_schemas(stream: EventStream) -> dict[str, Any]:
    """One event of ``stream``, named ``stream.name``: a ``oneOf`` of one schema per event name.

    Each is an SSE event as a client parses it: its name, its id (unless the event has none: a
    client then keeps the last id it saw) and its ``data``, a JSON document of the event's schema.
    """
    variants = {f"{stream.name}{_camel(event.name)}": event for event in stream.events}
    found: dict[str, Any] = {
        stream.name: {
            "oneOf": [{"$ref": REF.format(model=name)} for name in variants],
            "discriminator": {
                "propertyName": "event",
                "mapping": {event.name: REF.format(model=name) for name, event in variants.items()},
            },
            "description": (
                "One Server-Sent Event of the stream (what OpenAPI 3.2 calls its itemSchema): its name (event), "
                "its id and its data, a JSON document whose schema depends on the name."
            ),
        }
    }
    for name, event in variants.items():
        found[name] = {  # no title: generators name a class by it, and "error" or "progress" is taken
            "type": "object",
            "description": f"A {event.name} event.",
            "properties": {
                "event": {"type": "string", "const": event.name},
                "id": {"type": "string", "pattern": stream.id_pattern, "description": stream.id_description},
                "data": {
                    "type": "string",
                    "contentMediaType": "application/json",
                    "contentSchema": {"$ref": REF.format(model=event.data)},
                },
            },
            "required": ["event", "id", "data"] if event.with_id else ["event", "data"],
            "additionalProperties": False,
        }
    return found


def _paths(app: Flask) -> dict[str, Any]:
    paths: dict[str, Any] = {}
    for rule in sorted(app.url_map.iter_rules(), key=lambda r: r.rule):
        view = app.view_functions[rule.endpoint]
        operation: Operation | None = getattr(view, "openapi", None)
        if operation is None:
            continue
        if operation.tag not in TAGS:
            raise ValueError(f"The view {rule.endpoint!r} has the undeclared tag {operation.tag!r}.")
        path = _PATH_PARAM.sub(r"{\1}", rule.rule)
        role: str | None = getattr(view, "required_role", None)
        for method in sorted((rule.methods or set()) - {"HEAD", "OPTIONS"}):
            paths.setdefault(path, {})[method.lower()] = _operation(
                rule.endpoint, rule.arguments, operation, _responses(rule.rule, operation, role)
            )
    _check_links(app, paths)
    return paths


def _operation_id(endpoint: str) -> str:
    return endpoint.replace(".", "_")


def _check_links(app: Flask, paths: dict[str, Any]) -> None:
    """Refuse a link to a view that is not documented or to a path parameter it does not have.

    Raises:
        ValueError: naming the link.
    """
    documented = {op["operationId"]: op for item in paths.values() for op in item.values()}
    for view in app.view_functions.values():
        operation: Operation | None = getattr(view, "openapi", None)
        for links in (operation.links if operation is not None else {}).values():
            for name, link in links.items():
                target = documented.get(_operation_id(link.endpoint))
                path_params = {p["name"] for p in target["parameters"] if p["in"] == "path"} if target else set()
                if target is None or set(link.parameters) != path_params:
                    raise ValueError(f"The link {name!r} names {link.endpoint!r} or its path parameters wrongly.")


def _gate_responses(path: str, op: Operation, role: str | None) -> dict[int, tuple[str, str | Content | None]]:
    """The answers given before a view runs, which each view's own list leaves out.

    * gunicorn, on every path: 414 for a request line over its ``limit_request_line``.
    * :class:`~offload_api.admission.Admission`, on every path but the health probes and
      ``/metrics``: 503 ``overloaded`` (the process is at capacity) and 429 ``rate_limited`` (a
      valid key's tenant is over its request rate).
    * :func:`offload_api.auth.requires`, on a view that needs ``role``: 401 (no key, an unknown
      one), 429 ``too_many_attempts`` (too many invalid keys from this address this minute) and,
      when the view needs more than ``reader``, 403.
    * :func:`offload_api.browser.readable_with_token`, on a view taking ``?token=``: 401 (an invalid or
      expired token) and 403 (a token of another scope).
    """
    found: dict[int, tuple[str, str | Content | None]] = {
        414: (
            f"The request line (method, path and query) is longer than {MAX_REQUEST_LINE} bytes: refused by the "
            "HTTP server (gunicorn) before the API, as an HTML page.",
            HTML_PAGE,
        )
    }
    if path not in EXEMPT:
        found[429] = ("A key's tenant is over its request rate (rate_limited); see Retry-After.", "Error")
        found[503] = ("This API process is at capacity (overloaded); retry after Retry-After.", "Error")
    if not op.public and role is not None:
        found[401] = ("Missing or invalid API key.", "Error")
        found[429] = (
            "The key's tenant is over its request rate (rate_limited), or this address sent too many invalid "
            "keys this minute (too_many_attempts); see Retry-After.",
            "Error",
        )
        if role != "reader":
            found[403] = (f"The key's role may not do this (it needs {role}).", "Error")
    if op.query and any(name == "token" for name, _, _ in op.query):
        found[401] = ("Missing or invalid API key, or an invalid or expired browser token.", "Error")
        found[403] = ("The browser token is for another job or tag (token_scope).", "Error")
    return found


def _responses(path: str, op: Operation, role: str | None) -> dict[int, tuple[str, str | Content | None]]:
    """The view's own responses and :func:`_gate_responses`, descriptions joined where both name a status."""
    merged = dict(op.responses)
    for status, (description, schema) in _gate_responses(path, op, role).items():
        if status not in merged:
            merged[status] = (description, schema)
        elif description not in merged[status][0]:
            merged[status] = (f"{merged[status][0]} Or: {description}", merged[status][1])
    return dict(sorted(merged.items()))


def _operation(
    endpoint: str, arguments: set[str], op: Operation, responses: dict[int, tuple[str, str | Content | None]]
) -> dict[str, Any]:
    parameters: list[dict[str, Any]] = [
        {"name": name, "in": "path", "required": True, "schema": {"type": "string"}} for name in sorted(arguments)
    ]
    parameters += [{"name": n, "in": "query", "required": False, "schema": s, "description": d} for n, s, d in op.query]
    parameters += [
        {"name": n, "in": "header", "required": False, "schema": s, "description": d} for n, s, d in op.headers
    ]
    document: dict[str, Any] = {
        "operationId": _operation_id(endpoint),
        "summary": op.summary,
        "description": op.description,
        "tags": [op.tag],
        "parameters": parameters,
        "responses": {
            str(status): _response(desc, schema, op.stream if status == 200 else None, op.links.get(status, {}))
            for status, (desc, schema) in responses.items()
        },
    }
    if op.request:
        document["requestBody"] = {
            "required": True,
            "content": {"application/json": {"schema": {"$ref": REF.format(model=op.request)}}},
        }
    elif op.request_content:
        document["requestBody"] = {
            "required": True,
            "content": {media: {"schema": schema} for media, schema in op.request_content.items()},
        }
    if op.public:
        document["security"] = []
    return document


def _response(
    description: str, body: str | Content | None, stream: EventStream | None, links: dict[str, Link]
) -> dict[str, Any]:
    found: dict[str, Any] = {"description": description}
    if stream is not None:
        found["content"] = {"text/event-stream": {"schema": {"$ref": REF.format(model=stream.name)}}}
    elif isinstance(body, str):
        found["content"] = {"application/json": {"schema": {"$ref": REF.format(model=body)}}}
    elif body is not None:
        found["content"] = {media: {"schema": schema} for media, schema in body.items()}
    if links:
        found["links"] = {
            name: {
                "operationId": _operation_id(link.endpoint),
                "parameters": link.parameters,
                "description": link.description,
            }
            for name, link in links.items()
        }
    return found
