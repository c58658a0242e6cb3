"""``python -m tests.chaos.table``: the chaos scenarios' rows of the last run, as one table."""

from __future__ import annotations

import json
import re
import sys
from typing import Any

from tests.chaos.ledger import RESULTS

#: The columns every scenario has (issue 9: jobs, lost, duplicated-marked, double effects, recovery s).
COLUMNS = ["scenario", "jobs", "lost", "duplicated (marked)", "unmarked", "unexpected", "double effects", "recovery s"]


def _order(row: dict[str, Any]) -> tuple[int, str]:
    """F1, F2, ..., F10, ..., then anything else (fuzz, overload) by name."""
    match = re.fullmatch(r"F(\d+)", str(row["scenario"]))
    return (int(match.group(1)), "") if match else (1000, str(row["scenario"]))


def render(rows: list[dict[str, Any]]) -> str:
    """The fixed columns, then each scenario's own measurements as ``name=value`` notes."""
    rows = sorted(rows, key=_order)
    cells = [
        [str(row.get(c, "")) for c in COLUMNS]
        + [", ".join(f"{k}={v}" for k, v in row.items() if k not in COLUMNS and v is not None)]
        for row in rows
    ]
    header = [*COLUMNS, "notes"]
    widths = [max(len(header[i]), *(len(r[i]) for r in cells)) for i in range(len(header) - 1)]
    lines = ["  ".join(h.ljust(w) for h, w in zip(header, [*widths, 0], strict=True)).rstrip()]
    lines.append("  ".join("-" * w for w in widths) + "  -----")
    lines += ["  ".join(c.ljust(w) for c, w in zip(r, [*widths, 0], strict=True)).rstrip() for r in cells]
    return "\n".join(lines) + "\n"


def main() -> int:
    """Print every scenario's row; exit 1 if any lost, unexpected, unmarked or double effect is not 0."""
    rows = [json.loads(p.read_text()) for p in sorted(RESULTS.glob("*.json"))]
    if not rows:
        sys.stderr.write("No chaos results yet: run make chaos.\n")
        return 1
    sys.stdout.write(render(rows))
    bad = [r for r in rows if r.get("lost") or r.get("unexpected") or r.get("unmarked") or r.get("double effects")]
    return 1 if bad else 0


if __name__ == "__main__":
    raise SystemExit(main())
