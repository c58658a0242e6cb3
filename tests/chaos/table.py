"""``python -m tests.chaos.table``: the chaos scenarios' rows of the last run, as one table."""

from __future__ import annotations

import json
import sys

from tests.chaos.ledger import RESULTS


def main() -> int:
    """Print every scenario's row; exit 1 if any lost, unexpected or unmarked count is not 0."""
    rows = [json.loads(p.read_text()) for p in sorted(RESULTS.glob("*.json"))]
    if not rows:
        sys.stderr.write("No chaos results yet: run make chaos.\n")
        return 1
    columns = list(dict.fromkeys(key for row in rows for key in row))
    widths = {c: max(len(c), *(len(str(row.get(c, ""))) for row in rows)) for c in columns}
    lines = ["  ".join(c.ljust(widths[c]) for c in columns), "  ".join("-" * widths[c] for c in columns)]
    lines += ["  ".join(str(row.get(c, "")).ljust(widths[c]) for c in columns) for row in rows]
    sys.stdout.write("\n".join(lines) + "\n")
    bad = [r["scenario"] for r in rows if r.get("lost") or r.get("unexpected") or r.get("unmarked")]
    return 1 if bad else 0


if __name__ == "__main__":
    raise SystemExit(main())
