"""The shape the code keeps: one tree of errors, and no class in ``status/`` or ``publish/`` over 15 public methods."""

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
    found = []
    for folder in ("status", "publish"):
        for path, node in _classes(ROOT / "shared" / "src" / "offload" / folder):
            public = [f.name for f in node.body if isinstance(f, ast.FunctionDef) and not f.name.startswith("_")]
            if len(public) > 15:
                found.append(f"{path.relative_to(ROOT)}: {node.name} has {len(public)}")
    assert not found, "\n".join(found)
