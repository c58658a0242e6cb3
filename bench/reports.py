"""Measurement 7: the reports worker's writers beside the bare libraries writing the same rows.

Each run is a fresh process (:mod:`bench.reports_child`) writing one report of generated order
rows (10 columns: integers, numbers, text, a date) in one format; ``ours`` and ``raw`` alternate,
and each figure is the median of the rounds. ``raw`` writes the same bytes for CSV (the same
``QUOTE_NONNUMERIC`` dialect) and the same cells for XLSX; for PDF it is fpdf2 with a header per
page but none of ours' fitting, alignment or page numbers.

Targets (issue 6): ≤ 1.2× raw csv time, ≤ 1.1× raw openpyxl write-only time, and peak RSS flat
(within 20 MB) between 20k and 200k rows. PDF is reported, not targeted (fpdf2 lays a document out
in memory, so PDF reports are capped at OFFLOAD_REPORT_PDF_MAX_ROWS).
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass

from bench.config import BenchConfig, child_env
from bench.procs import Child, wait_quiet
from bench.stats import median


@dataclass(frozen=True)
class ReportRun:
    """One report written by one system."""

    system: str
    fmt: str
    rows: int
    seconds: float
    peak_rss_mb: float
    bytes_out: int

    def as_dict(self) -> dict[str, object]:
        """JSON form."""
        return {
            "system": self.system,
            "format": self.fmt,
            "rows": self.rows,
            "seconds": round(self.seconds, 3),
            "peak_rss_mb": round(self.peak_rss_mb, 1),
            "bytes": self.bytes_out,
        }


@dataclass(frozen=True)
class ReportsResult:
    """Every run: the timed rounds per format and system, and the small runs for the RSS check."""

    runs: list[ReportRun]
    sizes: dict[str, int]
    small: int

    def median_seconds(self, system: str, fmt: str) -> float:
        """Median seconds of ``system`` on ``fmt`` at the full row count."""
        return median([r.seconds for r in self.runs if (r.system, r.fmt, r.rows) == (system, fmt, self.sizes[fmt])])

    def peak_rss(self, fmt: str, rows: int) -> float:
        """Highest peak RSS of ours on ``fmt`` at ``rows``."""
        return max(r.peak_rss_mb for r in self.runs if (r.system, r.fmt, r.rows) == ("ours", fmt, rows))


def run_child(cfg: BenchConfig, system: str, fmt: str, rows: int, index: int) -> ReportRun:
    """One :mod:`bench.reports_child` process; its figures."""
    out = cfg.logs / f"report-{system}-{fmt}-{rows}-{index}.json"
    argv = [sys.executable, "-m", "bench.reports_child", "--system", system, "--format", fmt]
    argv += ["--rows", str(rows), "--out", str(out)]
    child = Child(f"report-{system}-{fmt}-{rows}", argv, env=child_env(), logs=cfg.logs)
    code = child.proc.wait(timeout=900)
    if code != 0:
        raise RuntimeError(f"{child.name} exited with {code}:\n{child.tail()}")
    data = json.loads(out.read_text())
    return ReportRun(system, fmt, rows, data["seconds"], data["peak_rss_mb"], data["bytes"])


def measure(cfg: BenchConfig) -> ReportsResult:
    """Each format: ours and raw alternating for the rounds; then ours at a tenth of the rows, for RSS."""
    scale = 10 if cfg.quick else 1
    sizes = {"csv": 200_000 // scale, "xlsx": 200_000 // scale, "pdf": 5_000 // scale}
    rounds = 1 if cfg.quick else 3
    small = sizes["csv"] // 10
    runs: list[ReportRun] = []
    for fmt, rows in sizes.items():
        for index in range(rounds):
            for system in ("raw", "ours") if index % 2 else ("ours", "raw"):
                wait_quiet(f"report {system} {fmt}")
                print(f">> reports: {system} {fmt} × {rows:,} rows (round {index + 1}/{rounds})", flush=True)
                runs.append(run_child(cfg, system, fmt, rows, index))
    for fmt in ("csv", "xlsx"):
        print(f">> reports: ours {fmt} × {small:,} rows (peak RSS)", flush=True)
        runs.append(run_child(cfg, "ours", fmt, small, 0))
    return ReportsResult(runs, sizes, small)


def notes(result: ReportsResult) -> list[str]:
    """Every run's time, size and peak RSS."""
    lines = []
    for fmt, rows in result.sizes.items():
        for system in ("ours", "raw"):
            picked = [r for r in result.runs if (r.system, r.fmt, r.rows) == (system, fmt, rows)]
            times = ", ".join(f"{r.seconds:.2f}" for r in picked)
            lines.append(
                f"report {fmt} {system}: {rows:,} rows in {times} s (median {result.median_seconds(system, fmt):.2f}); "
                f"{picked[0].bytes_out:,} bytes; peak RSS {max(r.peak_rss_mb for r in picked):.0f} MB"
            )
    return lines
