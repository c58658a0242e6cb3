"""The items of a ``validation_failed`` error: which field, where, which rule it broke, and what is wrong.

Each item is a JSON object with four members:

* ``field``: the field's path as people write it, ``payload.to[0].email``; for a query parameter,
  a header or a form field, its name;
* ``pointer``: the same place as a JSON Pointer (RFC 6901) into the submitted JSON document,
  ``/payload/to/0/email`` (``""`` is the whole document), or None for a field that is not in a
  JSON body (a query parameter, a header, a form field);
* ``rule``: the rule it broke, stable and machine-readable: pydantic's error type for a schema rule
  (``missing``, ``int_parsing``, ``greater_than_equal``, ``extra_forbidden``, ...) or Offload's own
  (``url_not_allowed``, ``domain_not_allowed``, ...);
* ``problem``: one phrase for people, which never repeats the value sent.

A 422 lists them in ``errors``; a job published on the wire and refused at adoption keeps them in
its record's ``error.errors``. Every place that builds one goes through this module, so the two
paths always name the same place.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

#: A place in a JSON document: object member names and array indexes, outermost first.
Location = tuple[str | int, ...]

#: One step of a field path as Offload writes them: ``.name`` or ``[index]``.
_STEP = re.compile(r"\.?([^.\[\]]+)|\[(\d+)\]")


def field_path(location: Location) -> str:
    """``("payload", "to", 0, "email")`` → ``payload.to[0].email``; the empty location is ``body``."""
    path = ""
    for part in location:
        path += f"[{part}]" if isinstance(part, int) else (f".{part}" if path else part)
    return path or "body"


def json_pointer(location: Location) -> str:
    """``("payload", "to", 0, "email")`` → ``/payload/to/0/email`` (RFC 6901: ``~`` and ``/`` escaped)."""
    return "".join("/" + str(part).replace("~", "~0").replace("/", "~1") for part in location)


def location_of(field: str) -> Location:
    """The location a field path written by Offload names: ``options.then[0].payload`` → its steps.

    Offload writes these paths from model field names and indexes (never from a client's keys),
    so a name holds no ``.`` or ``[``; ``body`` is the whole document.

    Raises:
        ValueError: ``field`` is not such a path.
    """
    if field == "body":
        return ()
    steps = list(_STEP.finditer(field))
    if not steps or "".join(step.group(0) for step in steps) != field or field.startswith((".", "[")):
        raise ValueError(f"{field!r} is not a field path.")
    return tuple(int(step.group(2)) if step.group(2) else step.group(1) for step in steps)


def located(location: Location, rule: str, problem: str) -> dict[str, Any]:
    """The item for the field at ``location`` in the submitted JSON document."""
    return {"field": field_path(location), "pointer": json_pointer(location), "rule": rule, "problem": problem}


def in_body(field: str, rule: str, problem: str) -> dict[str, Any]:
    """The item for the field of the submitted JSON document that Offload's path ``field`` names."""
    return located(location_of(field), rule, problem)


def parameter(name: str, rule: str, problem: str) -> dict[str, Any]:
    """The item for a query parameter, header or form field ``name``: no JSON body holds it, so no pointer."""
    return {"field": name, "pointer": None, "rule": rule, "problem": problem}


def nested(items: Iterable[dict[str, Any]], under: str) -> list[dict[str, Any]]:
    """``items`` of a document that sits at path ``under`` of a larger one (a batch's ``jobs[2]``).

    An item that names no place in a body (no pointer) is kept as it is.
    """
    prefix = location_of(under)
    moved = []
    for item in items:
        if item["pointer"] is None:
            moved.append(item)
            continue
        field = field_path(prefix) if item["pointer"] == "" else f"{field_path(prefix)}.{item['field']}"
        moved.append({**item, "field": field, "pointer": json_pointer(prefix) + item["pointer"]})
    return moved


def value_location(loc: Iterable[str | int], document: Any, *, missing: bool) -> Location:
    """The location of what a pydantic error's ``loc`` names in ``document``, the input it validated.

    Besides member names and indexes, pydantic's ``loc`` names the member of a union that was
    tried (``int``, ``constrained-str``, a model's name) and marks a bad dict key (``[key]``);
    neither is in the document. So ``loc`` is followed through ``document`` and a step that is not
    there is dropped, except the last of a ``missing`` error: the member that should have been.
    """
    steps = list(loc)
    found: list[str | int] = []
    node = document
    for index, step in enumerate(steps):
        if isinstance(node, dict) and isinstance(step, str) and step in node:
            node = node[step]
        elif isinstance(node, list) and isinstance(step, int) and 0 <= step < len(node):
            node = node[step]
        elif not (missing and index == len(steps) - 1):
            continue
        found.append(step)
    return tuple(found)
