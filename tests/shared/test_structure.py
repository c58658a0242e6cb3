"""The shape the code keeps: one tree of errors, and no class in ``status/`` or ``publish/`` over 15 public methods.

``status/keys.py`` is the exception: a table naming one Redis key shape per member, with no behaviour.
"""

from __future__ import annotations

import ast
from pathlib import Path

import offload.errors

ROOT = Path(__file__).resolve().parents[2]
ERRORS = {name for name, value in vars(offload.errors).items() if isinstance(value, type)}


def _classes(folder: Path) -> list[tuple[Path, ast.ClassDef]]:
    return [
        (path, node)
        for path in sorted(folder.rglob("*.py"))
        for node in ast.walk(ast.parse(path.read_text()))
        if isinstance(node, ast.ClassDef)
    ]


def _base_names(node: ast.ClassDef) -> set[str]:
    return {base.id if isinstance(base, ast.Name) else getattr(base, "attr", "") for base in node.bases}


def test_every_error_class_is_in_the_errors_module() -> None:
    found = [
        f"{path.relative_to(ROOT)}: {node.name}"
        for folder in (ROOT / "shared" / "src", ROOT / "services")
        for path, node in _classes(folder)
        if path != Path(offload.errors.__file__)
        and _base_names(node) & (ERRORS | {"Exception", "BaseException", "ValueError", "RuntimeError"})
    ]
    assert not found, "Declare these in offload/errors.py:\n" + "\n".join(found)


def test_no_class_of_status_or_publish_has_more_than_15_public_methods() -> None:
    keys = ROOT / "shared" / "src" / "offload" / "status" / "keys.py"
    found = []
    for folder in ("status", "publish"):
        for path, node in _classes(ROOT / "shared" / "src" / "offload" / folder):
            if path == keys:
                continue  # the table of key names: one member per key shape, no behaviour
            public = [f.name for f in node.body if isinstance(f, ast.FunctionDef) and not f.name.startswith("_")]
            if len(public) > 15:
                found.append(f"{path.relative_to(ROOT)}: {node.name} has {len(public)}")
    assert not found, "\n".join(found)


def _store_expression(node: ast.expr) -> bool:
    """Whether ``node`` names a status store (``store``, ``self.store``, ``publisher.store``, ...)."""
    name = node.id if isinstance(node, ast.Name) else node.attr if isinstance(node, ast.Attribute) else ""
    return "store" in name.lower()


def redis_outside_status(source: str) -> list[str]:
    """What in ``source`` touches Redis itself: an import of redis, a store's raw client, a key named."""
    found = []
    tree = ast.parse(source)
    called = {id(node.func) for node in ast.walk(tree) if isinstance(node, ast.Call)}  # a dict's .keys() is no key
    for node in ast.walk(tree):
        if isinstance(node, ast.Import) and any(a.name.split(".")[0] == "redis" for a in node.names):
            found.append(f"{node.lineno}: imports redis")
        elif isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] == "redis":
            found.append(f"{node.lineno}: imports from redis")
        elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("dramatiq.rate_limits.backends"):
            found.append(f"{node.lineno}: a Redis backend of its own")
        elif isinstance(node, ast.Attribute) and node.attr == "client" and _store_expression(node.value):
            found.append(f"{node.lineno}: a store's raw client")
        elif isinstance(node, ast.ImportFrom) and node.module == "offload.status.keys":
            found.append(f"{node.lineno}: imports the key names")
        elif (
            isinstance(node, ast.Attribute)
            and node.attr == "keys"
            and id(node) not in called
            and _store_expression(node.value)
        ):
            found.append(f"{node.lineno}: names a key")
    return found


def test_the_scan_finds_raw_redis_use() -> None:
    source = "import redis\nx = self.store.client.get(store.keys.job('1'))\nfrom offload.status.keys import Keys\n"
    assert sorted(redis_outside_status(source)) == [
        "1: imports redis",
        "2: a store's raw client",
        "2: names a key",
        "3: imports the key names",
    ]
    assert redis_outside_status("record = store.queries.get(job_id)\nnames = stores.keys()\n") == []


def test_only_the_status_package_touches_redis_or_builds_keys() -> None:
    status = ROOT / "shared" / "src" / "offload" / "status"
    product = [*(ROOT / "shared" / "src").rglob("*.py"), *(ROOT / "services").glob("*/src/**/*.py")]
    found = [
        f"{path.relative_to(ROOT)}:{problem}"
        for path in sorted(product)
        if status not in path.parents
        for problem in redis_outside_status(path.read_text())
    ]
    assert not found, "Only offload.status owns the Redis layout:\n" + "\n".join(found)
