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


def render(rows: list[Row], notes: list[str], header: str) -> str:
    """The table as aligned plain text, followed by its notes."""
    cells = [COLUMNS, *[(r.measure, r.ours, r.reference, r.ratio, r.target, r.met) for r in rows]]
    widths = [max(len(line[i]) for line in cells) for i in range(len(COLUMNS))]
    lines = [header, ""]
    for index, line in enumerate(cells):
        lines.append("  ".join(cell.ljust(width) for cell, width in zip(line, widths, strict=True)).rstrip())
        if index == 0:
            lines.append("  ".join("-" * width for width in widths))
    if notes:
        lines.append("")
        lines.extend(f"- {note}" for note in notes)
    return "\n".join(lines)


def write_json(path: Path, rows: list[Row], notes: list[str], meta: dict[str, Any], raw: dict[str, Any]) -> None:
    """Write the table, its notes, the run's settings and every raw figure to ``path``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    document = {"meta": meta, "rows": [asdict(row) for row in rows], "notes": notes, "raw": raw}
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
