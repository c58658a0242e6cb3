"""The one table the benchmark prints, and the same as JSON in ``bench/results/latest.json``."""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

COLUMNS = ("measure", "ours", "reference", "ratio", "target", "met")


@dataclass(frozen=True)
class Row:
    """One line of the table (already formatted), plus the raw numbers for the JSON."""

    measure: str
    ours: str
    reference: str
    ratio: str
    target: str
    met: str
    values: dict[str, Any]


def num(value: float, digits: int = 0) -> str:
    """``1,234`` style, or ``n/a`` for NaN."""
    return "n/a" if math.isnan(value) else f"{value:,.{digits}f}"


def met(ok: bool | None) -> str:
    """``yes`` / ``NO`` / ``?`` (not measurable)."""
    return "?" if ok is None else ("yes" if ok else "NO")


def grid(columns: tuple[str, ...], cells: list[tuple[str, ...]]) -> str:
    """``cells`` under the ``columns`` headings as aligned plain text, a rule under the headings."""
    table = [columns, *cells]
    widths = [max(len(line[i]) for line in table) for i in range(len(columns))]
    lines = []
    for index, line in enumerate(table):
        lines.append("  ".join(cell.ljust(width) for cell, width in zip(line, widths, strict=True)).rstrip())
        if index == 0:
            lines.append("  ".join("-" * width for width in widths))
    return "\n".join(lines)


def render(rows: list[Row], notes: list[str], header: str) -> str:
    """The table as aligned plain text, followed by its notes."""
    lines = [header, "", grid(COLUMNS, [(r.measure, r.ours, r.reference, r.ratio, r.target, r.met) for r in rows])]
    if notes:
        lines.append("")
        lines.extend(f"- {note}" for note in notes)
    return "\n".join(lines)


def write_json(
    path: Path,
    rows: list[Row],
    notes: list[str],
    meta: dict[str, Any],
    raw: dict[str, Any],
    tables: dict[str, Any] | None = None,
) -> None:
    """Write the table, its notes, the run's settings, every raw figure and any further ``tables`` to ``path``.

    Each of ``tables`` is a top-level key of the document beside ``rows``.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    document = {"meta": meta, "rows": [asdict(row) for row in rows], "notes": notes, "raw": raw, **(tables or {})}
    path.write_text(json.dumps(_clean(document), indent=2, default=str, allow_nan=False) + "\n")


def _clean(value: Any) -> Any:
    """NaN and infinities become null (JSON has neither)."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _clean(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_clean(v) for v in value]
    return value
