"""``python -m bench [--quick] [--duration S] [--jobs N] [--rounds R] [--enqueues N] [--only SECTIONS]``.

SECTIONS: a comma-separated subset of api, drain, enqueue, latency, email, webhooks, media, video, reports, scale,
validate, orders.

Runs the measurements in one go on this machine, each beside its reference, prints one table with
ratios and writes it to ``bench/results/latest.json``. The email and webhook rows take the
``system.noop`` drain rate of the same run as their reference, so ``drain`` runs before them. Exits 0 whether or not the
targets are met: the benchmark reports, it does not assert. A measurement that breaks is reported
as such and the others still run.

BullMQ is the anchor beside ours in api (Fastify + BullMQ), drain (as a third system in every
round), enqueue (``queue.add`` and ``addBulk`` beside the SDK's ``submit`` and ``submit_many``),
latency and scale; its Node scripts are in ``bench/bullmq/`` and are installed from its lock file
(``npm ci``) when a section needs them. The drain, enqueue and api sections also fill a second,
small table: µs of CPU per job of each process group (worker, RabbitMQ, Redis, API server, client),
written to the JSON as ``cpu_per_job``.
"""

from __future__ import annotations

import argparse
import logging
import os
import platform
import signal
import subprocess
import sys
import time
import traceback
from collections.abc import Callable
from datetime import UTC, datetime
from types import FrameType
from typing import Any

from bench import api, cpu, drain, enqueue, infra, latency, media, notify, orders, reports, scale, validate, video
from bench.config import RESULTS, ROOT, BenchConfig, isolate_environment
from bench.drain import finite
from bench.procs import QUIET_LOG, QUIET_WAIT, Child
from bench.stats import median
from bench.table import Row, met, num, render, write_json

#: Targets from the spec.
API_MIN_RATE = 1_000
API_MAX_P99_MS = 50
API_MIN_RATIO = 0.4
API_MIN_BULLMQ = 0.5
DRAIN_MIN_RATIO = 0.85
DRAIN_MIN_BULLMQ = 0.6
DRAIN_MOONSHOT_BULLMQ = 1.0
LATENCY_MAX_P99_MS = 5
ENQUEUE_MIN_RATIO = 1.0
BATCH_ENQUEUE_MIN_RATIO = 0.5
EMAIL_MIN_RATE = 300
BATCH_MIN_RATE = 1_500
WEBHOOK_MIN_RATE = 500
THUMB_MIN_RATIO = 1.0
SIZES_MAX_RATIO = 1.3
MEDIA_MAX_RSS_MB = 150
VIDEO_MIN_RATIO = 0.95
CSV_MAX_RATIO = 1.2
XLSX_MAX_RATIO = 1.1
REPORT_RSS_GROWTH_MB = 20
SCALE_MAX_BYTES = 1_000
SCALE_SIZES = "10000,100000,1000000"
SCALE_MAX_LIST_MS = 100
#: Every measurement, in the order they run (the email and webhook rows compare with the drain's).
MEASUREMENTS = (
    "api",
    "drain",
    "enqueue",
    "latency",
    "email",
    "webhooks",
    "media",
    "video",
    "reports",
    "scale",
    "validate",
    "orders",
)


def parse_args(argv: list[str]) -> BenchConfig:
    """The run's configuration from the command line."""
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="short smoke run (~3 s loads, 3,000 jobs, 1 round)")
    parser.add_argument("--duration", type=float, help="seconds of each measured HTTP run (default 15; quick 3)")
    parser.add_argument("--jobs", type=int, help="jobs per drain (default 20,000; quick 3,000)")
    parser.add_argument("--rounds", type=int, help="interleaved drain rounds (default 2; quick 1)")
    parser.add_argument(
        "--enqueues", type=int, help="jobs sent one at a time per enqueue run (default 5,000; quick 1,000)"
    )
    parser.add_argument("--probes", type=int, help="latency probes per system (default 200; quick 100)")
    parser.add_argument("--concurrency", type=int, default=32, help="HTTP connections (default 32)")
    parser.add_argument("--emails", type=int, help="email.send jobs (default 3,000; quick 500)")
    parser.add_argument("--batches", type=int, help="email.batch jobs of 100 recipients (default 30; quick 5)")
    parser.add_argument("--webhooks", type=int, help="jobs with a callback_url (default 2,000; quick 300)")
    parser.add_argument(
        "--scale-sizes", help="retained jobs the scale reads are timed at (default 10000,100000,1000000; quick 10000)"
    )
    parser.add_argument("--scale-soak", type=int, help="succeeded jobs of the scale soak (100,000; quick 5,000)")
    parser.add_argument("--scale-retention", type=int, help="seconds the soak's jobs are kept (default 60; quick 5)")
    parser.add_argument(
        "--bare-priority", action="store_true", help="declare the bare reference's queue with x-max-priority=3 too"
    )
    parser.add_argument(
        "--quiet-wait",
        type=float,
        help="most seconds to wait for an idle machine before each measurement (60; quick 5)",
    )
    parser.add_argument(
        "--only", default=",".join(MEASUREMENTS), help=f"comma-separated subset of {','.join(MEASUREMENTS)}"
    )
    args = parser.parse_args(argv)
    only = frozenset(part.strip() for part in args.only.split(",") if part.strip())
    unknown = only - set(MEASUREMENTS)
    if unknown:
        parser.error(f"unknown measurement(s): {sorted(unknown)}")
    QUIET_WAIT["seconds"] = args.quiet_wait if args.quiet_wait is not None else (5.0 if args.quick else 60.0)
    os.environ.pop("BENCH_BARE_MAX_PRIORITY", None)
    if args.bare_priority:
        os.environ["BENCH_BARE_MAX_PRIORITY"] = "3"
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    logs = RESULTS / "logs" / stamp
    logs.mkdir(parents=True, exist_ok=True)
    quick = args.quick
    return BenchConfig(
        quick=quick,
        duration=args.duration or (3.0 if quick else 15.0),
        warmup=1.0 if quick else 3.0,
        concurrency=args.concurrency,
        jobs=args.jobs or (3_000 if quick else 20_000),
        rounds=args.rounds or (1 if quick else 2),
        probes=args.probes or (100 if quick else 200),
        probe_interval=0.02,
        processes=2,
        threads=8,
        emails=args.emails or (500 if quick else 3_000),
        batches=args.batches or (5 if quick else 30),
        webhooks=args.webhooks or (300 if quick else 2_000),
        enqueues=args.enqueues or (1_000 if quick else 5_000),
        scale_sizes=tuple(int(s) for s in (args.scale_sizes or ("10000" if quick else SCALE_SIZES)).split(",")),
        scale_bytes_jobs=5_000 if quick else 20_000,
        scale_soak=args.scale_soak or (5_000 if quick else 100_000),
        scale_retention=args.scale_retention or (5 if quick else 60),
        only=only,
        logs=logs,
    )


def library_state() -> str:
    """The commit measured and how many files of the library and services differ from it."""
    try:
        head = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True, timeout=10, check=False
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--", "shared", "services"],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=10,
            check=False,
        ).stdout.splitlines()
    except (OSError, subprocess.TimeoutExpired):
        return "unknown"
    return f"{head or 'unknown'}" + (f" + {len(dirty)} uncommitted file(s) in shared/ services/" if dirty else "")


def api_rows(result: api.ApiResult, cfg: BenchConfig) -> list[Row]:
    """Accepted/s, latency and error rows of the API measurement."""
    ours, noop = result.ours.load, result.noop.load
    rate, ceiling, ratio = ours.rate(202), noop.rate(202), result.ratio
    p99_ratio = ours.p99_ms / noop.p99_ms if noop.p99_ms else float("nan")
    return [
        Row(
            f"API accepted/s (c={cfg.concurrency})",
            f"{num(rate)}/s",
            f"{num(ceiling)}/s no-op",
            num(ratio, 2),
            f"≥{API_MIN_RATE:,}/s, ≥{API_MIN_RATIO}×",
            met(rate >= API_MIN_RATE and ratio >= API_MIN_RATIO),
            {"ours_per_s": rate, "noop_per_s": ceiling, "ratio": ratio},
        ),
        Row(
            "API p50 / p99",
            f"{num(ours.p50_ms, 1)} / {num(ours.p99_ms, 1)} ms",
            f"{num(noop.p50_ms, 1)} / {num(noop.p99_ms, 1)} ms no-op",
            num(p99_ratio, 1) + "× p99",
            f"p99 ≤{API_MAX_P99_MS} ms",
            met(ours.p99_ms <= API_MAX_P99_MS),
            {
                "ours_p50_ms": ours.p50_ms,
                "ours_p99_ms": ours.p99_ms,
                "noop_p50_ms": noop.p50_ms,
                "noop_p99_ms": noop.p99_ms,
            },
        ),
        Row(
            "API non-202 / socket errors",
            f"{ours.other(202):,} / {ours.socket_errors:,}",
            f"{noop.other(202):,} / {noop.socket_errors:,} no-op",
            "",
            "0",
            met(ours.other(202) + ours.socket_errors == 0),
            {
                "ours_non_202": ours.other(202),
                "ours_socket_errors": ours.socket_errors,
                "ours_statuses": {str(k): v for k, v in ours.statuses.items()},
                "noop_non_202": noop.other(202),
                "noop_socket_errors": noop.socket_errors,
            },
        ),
    ]


def api_bullmq_rows(result: api.ApiResult, cfg: BenchConfig) -> list[Row]:
    """Accepted/s beside Fastify + BullMQ, and both p50 / p99."""
    ours, theirs = result.ours.load, result.bullmq.load if result.bullmq else None
    if theirs is None:
        return [
            Row(
                f"API accepted/s ÷ Fastify+BullMQ (c={cfg.concurrency})",
                f"{num(ours.rate(202))}/s",
                "not measured",
                "",
                f"≥{API_MIN_BULLMQ}",
                "?",
                {"error": result.bullmq_problem},
            )
        ]
    rate, anchor, ratio = ours.rate(202), theirs.rate(202), result.bullmq_ratio
    clean = theirs.other(202) + theirs.socket_errors == 0
    return [
        Row(
            f"API accepted/s ÷ Fastify+BullMQ (c={cfg.concurrency})",
            f"{num(rate)}/s",
            f"{num(anchor)}/s Fastify+BullMQ"
            + ("" if clean else f" ({theirs.other(202) + theirs.socket_errors:,} errors)"),
            num(ratio, 2),
            f"≥{API_MIN_BULLMQ}",
            met(ratio >= API_MIN_BULLMQ if clean else None),
            {
                "ours_per_s": rate,
                "bullmq_per_s": anchor,
                "ratio": ratio,
                "bullmq_non_202": theirs.other(202),
                "bullmq_socket_errors": theirs.socket_errors,
            },
        ),
        Row(
            "API p50 / p99 beside Fastify+BullMQ",
            f"{num(ours.p50_ms, 1)} / {num(ours.p99_ms, 1)} ms",
            f"{num(theirs.p50_ms, 1)} / {num(theirs.p99_ms, 1)} ms Fastify+BullMQ",
            num(ours.p99_ms / theirs.p99_ms, 1) + "× p99" if theirs.p99_ms else "",
            "(reported)",
            "",
            {
                "ours_p50_ms": ours.p50_ms,
                "ours_p99_ms": ours.p99_ms,
                "bullmq_p50_ms": theirs.p50_ms,
                "bullmq_p99_ms": theirs.p99_ms,
            },
        ),
    ]


def drain_rows(result: drain.DrainResult, cfg: BenchConfig) -> list[Row]:
    """The drain rows (medians of the rounds): ours ÷ bare Dramatiq, and ours ÷ BullMQ."""
    ratio, bull_ratio = median(finite(result.ratios)), median(finite(result.bullmq_ratios))
    ours, bare, bull = result.median_rate("ours"), result.median_rate("bare"), result.median_rate("bullmq")
    broke = {run.system for r in result.rounds for run in r.runs() if run.problem}
    rounds = f" (median of {len(result.rounds)})" if len(result.rounds) > 1 else ""
    shape = f"{cfg.processes}×{cfg.threads}, n={cfg.jobs:,}"
    return [
        Row(
            f"drain system.noop ({shape})",
            f"{num(ours)}/s",
            f"{num(bare)}/s bare" + (" (prio)" if os.environ.get("BENCH_BARE_MAX_PRIORITY") else ""),
            num(ratio, 2) + rounds,
            f"≥{DRAIN_MIN_RATIO}",
            met(None if broke & {"ours", "bare"} else ratio >= DRAIN_MIN_RATIO),
            {
                "ours_per_s": ours,
                "bare_per_s": bare,
                "ratio": ratio,
                "ratios": result.ratios,
                "steady_ratios": result.steady_ratios,
            },
        ),
        Row(
            f"drain ours ÷ BullMQ ({shape})",
            f"{num(ours)}/s",
            f"{num(bull)}/s BullMQ",
            num(bull_ratio, 2) + rounds,
            f"≥{DRAIN_MIN_BULLMQ} (moonshot ≥{DRAIN_MOONSHOT_BULLMQ})",
            met(None if broke & {"ours", "bullmq"} else bull_ratio >= DRAIN_MIN_BULLMQ),
            {
                "ours_per_s": ours,
                "bullmq_per_s": bull,
                "ratio": bull_ratio,
                "ratios": result.bullmq_ratios,
                "steady_ratios": result.bullmq_steady_ratios,
                "moonshot_met": bull_ratio >= DRAIN_MOONSHOT_BULLMQ,
            },
        ),
    ]


def enqueue_rows(result: enqueue.EnqueueResult, cfg: BenchConfig) -> list[Row]:
    """SDK publish ÷ ``queue.add`` one at a time, and batch ÷ ``addBulk`` (medians of the rounds)."""
    rounds = f" (median of {len(result.rounds)})" if len(result.rounds) > 1 else ""
    broke = {(r.system, r.mode) for runs in result.rounds for r in runs if r.problem}
    shapes = (
        ("single", f"enqueue one by one, confirmed (1 process, n={cfg.enqueues:,})", "queue.add", ENQUEUE_MIN_RATIO),
        ("batch", f"enqueue batches of 1,000 (1 process, n={cfg.jobs:,})", "addBulk", BATCH_ENQUEUE_MIN_RATIO),
    )
    rows = []
    for mode, measure, call, target in shapes:
        ours, theirs = result.median_rate("ours", mode), result.median_rate("bullmq", mode)
        ratio = median(finite(result.ratios(mode)))
        rows.append(
            Row(
                measure,
                f"{num(ours)}/s",
                f"{num(theirs)}/s BullMQ {call}",
                num(ratio, 2) + rounds,
                f"≥{target}",
                met(None if {("ours", mode), ("bullmq", mode)} & broke else ratio >= target),
                {"ours_per_s": ours, "bullmq_per_s": theirs, "ratio": ratio, "ratios": result.ratios(mode)},
            )
        )
    return rows


def latency_rows(result: latency.LatencyResult) -> list[Row]:
    """The enqueue→start rows: ours beside bare Dramatiq, and beside BullMQ."""
    ours, bare, bull = result.ours, result.bare, result.bullmq
    p99_ratio = ours.p(99) / bare.p(99) if bare.p(99) else float("nan")
    bull_ratio = ours.p(99) / bull.p(99) if bull.p(99) else float("nan")
    return [
        Row(
            "enqueue→start p50 / p99 (idle)",
            f"{num(ours.p(50), 1)} / {num(ours.p(99), 1)} ms",
            f"{num(bare.p(50), 1)} / {num(bare.p(99), 1)} ms bare",
            num(p99_ratio, 2) + "× p99",
            f"p99 ≤{LATENCY_MAX_P99_MS} ms",
            met(None if ours.problem else ours.p(99) <= LATENCY_MAX_P99_MS),
            {"ours": ours.as_dict(), "bare": bare.as_dict()},
        ),
        Row(
            "enqueue→start p50 / p99 (idle) beside BullMQ",
            f"{num(ours.p(50), 1)} / {num(ours.p(99), 1)} ms",
            f"{num(bull.p(50), 1)} / {num(bull.p(99), 1)} ms BullMQ",
            num(bull_ratio, 2) + "× p99",
            f"p99 ≤{LATENCY_MAX_P99_MS} ms and ≤ BullMQ's (moonshot)",
            met(None if ours.problem or bull.problem else ours.p(99) <= min(LATENCY_MAX_P99_MS, bull.p(99))),
            {"ours": ours.as_dict(), "bullmq": bull.as_dict()},
        ),
    ]


def notify_rows(result: notify.NotifyResult, cfg: BenchConfig, noop_rate: float | None) -> list[Row]:
    """One row per email or webhook run, beside the ``system.noop`` drain rate of this run (if it ran)."""
    workers = f"{cfg.processes}×{cfg.threads}"
    shapes = {
        "email.send": (f"email.send emails/s ({workers}, n={cfg.emails:,})", EMAIL_MIN_RATE),
        "email.batch": (
            f"email.batch recipients/s ({workers}, {cfg.batches:,}×{notify.BATCH_SIZE})",
            BATCH_MIN_RATE,
        ),
        "webhook.deliver": (f"webhooks/s ({workers}, n={cfg.webhooks:,})", WEBHOOK_MIN_RATE),
    }
    rows = []
    for run in result.runs:
        measure, target = shapes[run.name]
        rate = run.rate
        ratio = rate / noop_rate if noop_rate else float("nan")
        rows.append(
            Row(
                measure,
                f"{num(rate)}/s",
                f"{num(noop_rate)}/s system.noop" if noop_rate else "—",
                num(ratio, 2) if noop_rate else "",
                f"≥{target:,}/s",
                met(None if run.problem else rate >= target),
                {"per_s": rate, "noop_per_s": noop_rate, "ratio": ratio if noop_rate else None, **run.as_dict()},
            )
        )
    return rows


def media_rows(result: media.MediaResult) -> list[Row]:
    """3 sizes (time ratio), thumbnail (throughput ratio) and peak RSS, each beside libvips."""
    ours, vips = result.runs[("pillow", "sizes")], result.runs[("vips", "sizes")]
    sizes_ratio = ours.median_ms / vips.median_ms
    thumb_ours, thumb_vips = result.runs[("pillow", "thumb")], result.runs[("vips", "thumb")]
    ours_rate, vips_rate = 1000 / thumb_ours.median_ms, 1000 / thumb_vips.median_ms
    rss_ours, rss_vips = result.rss["pillow"].peak_rss_mb, result.rss["vips"].peak_rss_mb
    return [
        Row(
            "image 12 MP JPEG → 2048/1024/256 (1 core)",
            f"{num(ours.median_ms, 0)} ms",
            f"{num(vips.median_ms, 0)} ms pyvips",
            f"{num(sizes_ratio, 2)}× time",
            f"≤{SIZES_MAX_RATIO}× time",
            met(sizes_ratio <= SIZES_MAX_RATIO),
            {"ours_ms": ours.median_ms, "vips_ms": vips.median_ms, "ratio": sizes_ratio},
        ),
        Row(
            "image thumbnail 400 px (1 core)",
            f"{num(ours_rate, 1)}/s",
            f"{num(vips_rate, 1)}/s pyvips",
            num(ours_rate / vips_rate, 2),
            f"≥{THUMB_MIN_RATIO}×",
            met(ours_rate / vips_rate >= THUMB_MIN_RATIO),
            {"ours_per_s": ours_rate, "vips_per_s": vips_rate, "ratio": ours_rate / vips_rate},
        ),
        Row(
            f"media peak RSS ({media.THREADS_FOR_RSS} threads, 3 sizes)",
            f"{num(rss_ours, 0)} MB",
            f"{num(rss_vips, 0)} MB pyvips",
            "",
            f"≤{MEDIA_MAX_RSS_MB} MB",
            met(rss_ours <= MEDIA_MAX_RSS_MB),
            {"ours_mb": rss_ours, "vips_mb": rss_vips},
        ),
    ]


def report_rows(result: reports.ReportsResult) -> list[Row]:
    """Time ratios beside the bare libraries, and the RSS growth from a tenth of the rows to all."""
    rows = []
    targets = {"csv": CSV_MAX_RATIO, "xlsx": XLSX_MAX_RATIO, "pdf": None}
    for fmt, count in result.sizes.items():
        ours, raw = result.median_seconds("ours", fmt), result.median_seconds("raw", fmt)
        target = targets[fmt]
        library = {"csv": "csv", "xlsx": "openpyxl", "pdf": "fpdf2"}[fmt]
        rows.append(
            Row(
                f"report {fmt.upper()} {count // 1000}k rows × 10",
                f"{num(count / ours)}/s",
                f"{num(count / raw)}/s {library}",
                f"{num(ours / raw, 2)}× time",
                f"≤{target}× time" if target else "(reported)",
                met(ours / raw <= target) if target else "",
                {"ours_s": ours, "raw_s": raw, "ratio": ours / raw},
            )
        )
    for fmt in ("csv", "xlsx"):
        small, large = result.peak_rss(fmt, result.small), result.peak_rss(fmt, result.sizes[fmt])
        rows.append(
            Row(
                f"report {fmt.upper()} peak RSS {result.small // 1000}k → {result.sizes[fmt] // 1000}k rows",
                f"{num(small, 0)} → {num(large, 0)} MB",
                "",
                f"{large - small:+.1f} MB",
                f"≤+{REPORT_RSS_GROWTH_MB} MB",
                met(large - small <= REPORT_RSS_GROWTH_MB),
                {"small_mb": small, "large_mb": large},
            )
        )
    return rows


def video_rows(result: video.VideoResult) -> list[Row]:
    """The transcode job's time beside the bare ffmpeg command's (each side's best round), as bare ÷ job."""
    job_s = min(result.job_s) if result.job_s else float("nan")
    bare_s = min(result.bare_s) if result.bare_s else float("nan")
    ratio = result.ratio
    return [
        Row(
            f"video.transcode {video.SECONDS} s {video.SIZE} → MP4 720p + WebM 360p",
            f"{num(job_s, 1)} s best",
            f"{num(bare_s, 1)} s bare ffmpeg",
            f"{num(ratio, 3)} (bare ÷ job)",
            f"≥{VIDEO_MIN_RATIO}",
            met(ratio >= VIDEO_MIN_RATIO if ratio == ratio else None),
            result.as_dict(),
        )
    ]


def validate_rows(result: validate.ValidateResult) -> list[Row]:
    """Per case: jsonschema-rs (what the catalogue uses) beside the model, jsonschema and fastjsonschema."""
    rows = []
    for case, validity in sorted({(case, validity) for case, validity, _ in result.us}):
        us = {name: value for (c, v, name), value in result.us.items() if (c, v) == (case, validity)}
        ours, model = us["jsonschema-rs"], us["pydantic model"]
        others = ", ".join(
            f"{name} {num(value, 1)} µs" for name, value in sorted(us.items()) if name != "jsonschema-rs"
        )
        rows.append(
            Row(
                f"validate {case} ({validity}) by its JSON Schema",
                f"{num(ours, 1)} µs",
                others,
                f"{num(ours / model, 2)}× model",
                "≤1.0× model",
                met(ours <= model),
                {"us": us},
            )
        )
    return rows


def scale_rows(result: scale.ScaleResult, cfg: BenchConfig) -> list[Row]:
    """Bytes per retained job beside BullMQ's, read p99s at each size, the expiry and the soak."""
    rows = []
    for state, theirs_key in (("succeeded", "succeeded"), ("failed", "failed")):
        ours, theirs = result.bytes_ours.get(state, float("nan")), result.bytes_bullmq.get(theirs_key, float("nan"))
        target = SCALE_MAX_BYTES if state == "succeeded" else None
        rows.append(
            Row(
                f"Redis bytes per retained {state} no-op",
                f"{num(ours)} B",
                f"{num(theirs)} B BullMQ",
                num(ours / theirs, 2) if theirs else "",
                f"≤{SCALE_MAX_BYTES:,} B" if target else "(reported)",
                met(ours <= target) if target else "",
                {"ours": ours, "bullmq": theirs},
            )
        )
    for size, reads in sorted(result.reads.items()):
        bull = result.bullmq_reads.get(size, {})
        lists = {k: v for k, v in reads.items() if k.startswith("list")}
        worst = max(lists, key=lambda k: lists[k])
        rows.append(
            Row(
                f"get p99 at {size:,}",
                f"{num(reads['get'], 2)} ms",
                f"{num(bull.get('get_p99_ms', float('nan')), 2)} ms BullMQ getJob",
                "",
                "(reported)",
                "",
                {"ours_ms": reads["get"], "bullmq_ms": bull.get("get_p99_ms")},
            )
        )
        rows.append(
            Row(
                f"list first page p99 at {size:,} (worst of {len(lists)}: {worst})",
                f"{num(lists[worst], 1)} ms",
                f"{num(bull.get('list_p99_ms', float('nan')), 1)} ms BullMQ getJobs",
                "",
                f"≤{SCALE_MAX_LIST_MS} ms each",
                met(max(lists.values()) <= SCALE_MAX_LIST_MS),
                {"ours_ms": lists, "bullmq_ms": bull.get("list_p99_ms")},
            )
        )
    if result.expiry:
        largest = max(cfg.scale_sizes)
        before, after = result.expiry["first page before trim p99 ms"], result.expiry["first page after trim p99 ms"]
        rows.append(
            Row(
                f"first list page after {largest:,} expired (before / after trim)",
                f"{num(before, 1)} / {num(after, 1)} ms",
                "",
                "",
                f"≤{SCALE_MAX_LIST_MS} ms",
                met(max(before, after) <= SCALE_MAX_LIST_MS),
                result.expiry,
            )
        )
        rows.append(
            Row(
                f"trim of {num(result.expiry['trim removed'])} expired entries / with nothing to do",
                f"{num(result.expiry['trim s'] * 1000)} / {num(result.expiry['trim idle s'] * 1000, 1)} ms",
                "",
                "",
                "(reported; once a minute)",
                "",
                result.expiry,
            )
        )
    if result.soak:
        back, retention = result.soak["seconds to 90% back"], result.soak["retention s"]
        rows.append(
            Row(
                f"soak: {cfg.scale_soak:,} succeeded kept {retention:.0f} s, 90% of memory back after",
                f"{num(back)} s",
                f"{num(result.soak['failed still listed'])} failed still listed",
                "",
                f"≤{retention + 300:.0f} s",
                met(back == back and back <= retention + 300),
                result.soak,
            )
        )
    return rows


def failed_row(name: str, exc: BaseException) -> Row:
    """A row saying a measurement broke."""
    return Row(name, "ERROR", "", "", "", "?", {"error": f"{type(exc).__name__}: {exc}"})


def _interrupt(signum: int, _frame: FrameType | None) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def run(cfg: BenchConfig) -> int:  # noqa: C901 - one branch per measurement's result type
    """Run the selected measurements, print the table, write the JSON."""
    rows: list[Row] = []
    notes: list[str] = []
    #: (measurement, cores other users' processes took during it)
    disturbed: list[tuple[str, float]] = []
    raw: dict[str, Any] = {}
    cpu_lines: list[cpu.CpuLine] = []
    started = time.monotonic()
    steps: list[tuple[str, str, Callable[[], object]]] = [
        ("api", "API (POST /v1/jobs vs no-op)", lambda: api.measure(cfg)),
        ("drain", "drain", lambda: drain.measure(cfg)),
        ("enqueue", "enqueue from one process (SDK vs BullMQ)", lambda: enqueue.measure(cfg)),
        ("latency", "enqueue→start", lambda: latency.measure(cfg)),
        ("email", "email (email.send, email.batch)", lambda: notify.measure_email(cfg)),
        ("webhooks", "webhooks (webhook.deliver)", lambda: notify.measure_webhooks(cfg)),
        ("media", "media (Pillow vs pyvips)", lambda: media.measure(cfg)),
        ("video", "video (video.transcode vs bare ffmpeg)", lambda: video.measure(cfg)),
        ("reports", "reports (writers vs bare csv, openpyxl, fpdf2)", lambda: reports.measure(cfg)),
        ("scale", "scale (the status store at 10k-1M jobs, beside BullMQ)", lambda: scale.measure(cfg)),
        ("validate", "validate (a registered type's JSON Schema vs its model)", validate.measure),
        ("orders", "orders (examples/orders: 202 latency, a 30 s gateway outage)", lambda: orders.measure(cfg)),
    ]
    #: The ``system.noop`` drain rate of this run: the email and webhook rows' reference.
    noop_rate: float | None = None
    for key, title, step in steps:
        if key not in cfg.only:
            continue
        print(f">> {title}", flush=True)
        try:
            result = step()
        except KeyboardInterrupt:
            raise
        except Exception as exc:
            traceback.print_exc()
            rows.append(failed_row(title, exc))
            notes.append(f"{title}: FAILED: {type(exc).__name__}: {exc}")
            Child.stop_all()
            continue
        if isinstance(result, api.ApiResult):
            rows += api_rows(result, cfg) + api_bullmq_rows(result, cfg)
            cpu_lines += cpu.api_lines(result)
            disturbed += [(f"API {run.name}", run.cpu.other) for run in result.runs()]
            notes += api.notes(result)
            raw["api"] = {
                "ours": result.ours.as_dict(),
                "noop": result.noop.as_dict(),
                "bullmq": result.bullmq.as_dict() if result.bullmq else None,
                "bullmq_problem": result.bullmq_problem,
            }
        elif isinstance(result, drain.DrainResult):
            rows += drain_rows(result, cfg)
            cpu_lines = cpu.drain_lines(result) + cpu_lines
            disturbed += [
                (f"drain {run.system} {index}", run.cpu.other)
                for index, drain_round in enumerate(result.rounds, start=1)
                for run in drain_round.runs()
                if run.cpu
            ]
            notes += drain.notes(result)
            raw["drain"] = [drain_round.as_dict() for drain_round in result.rounds]
            ours_rate = result.median_rate("ours")
            noop_rate = ours_rate if ours_rate == ours_rate and ours_rate > 0 else None
        elif isinstance(result, enqueue.EnqueueResult):
            rows += enqueue_rows(result, cfg)
            cpu_lines += cpu.enqueue_lines(result)
            disturbed += [
                (f"enqueue {run.system} {run.mode} {index}", run.cpu.other)
                for index, runs in enumerate(result.rounds, start=1)
                for run in runs
                if run.cpu
            ]
            notes += enqueue.notes(result)
            raw["enqueue"] = [[run.as_dict() for run in runs] for runs in result.rounds]
        elif isinstance(result, latency.LatencyResult):
            rows += latency_rows(result)
            notes += latency.notes(result)
            raw["latency"] = {
                "ours": result.ours.as_dict(),
                "bare": result.bare.as_dict(),
                "bullmq": result.bullmq.as_dict(),
                "ours_ms": result.ours.latencies,
                "bare_ms": result.bare.latencies,
                "bullmq_ms": result.bullmq.latencies,
            }
        elif isinstance(result, media.MediaResult):
            rows += media_rows(result)
            notes += media.notes(result)
            raw["media"] = {
                "runs": [run.as_dict() for run in result.runs.values()],
                "rss": [run.as_dict() for run in result.rss.values()],
            }
        elif isinstance(result, video.VideoResult):
            rows += video_rows(result)
            notes += video.notes(result)
            raw["video"] = result.as_dict()
        elif isinstance(result, reports.ReportsResult):
            rows += report_rows(result)
            notes += reports.notes(result)
            raw["reports"] = [run.as_dict() for run in result.runs]
        elif isinstance(result, scale.ScaleResult):
            rows += scale_rows(result, cfg)
            notes += scale.notes(result)
            raw["scale"] = result.as_dict()
        elif isinstance(result, validate.ValidateResult):
            rows += validate_rows(result)
            notes += validate.notes(result)
            raw["validate"] = {"|".join(key): us for key, us in result.us.items()}
        elif isinstance(result, orders.OrdersResult):
            rows += orders.rows(result)
            notes += orders.notes(result)
            raw["orders"] = {"latency": result.latency, "outage": result.outage}
        elif isinstance(result, notify.NotifyResult):
            rows += notify_rows(result, cfg, noop_rate)
            disturbed += [(run.name, run.cpu.other) for run in result.runs if run.cpu]
            notes += notify.notes(result)
            raw[key] = [run.as_dict() for run in result.runs]
    elapsed = time.monotonic() - started
    library = library_state()
    noisy = [(label, waited, busy) for label, waited, busy in QUIET_LOG if busy >= 0.2]
    waits = sum(waited for _, waited, _ in QUIET_LOG)
    notes.append(
        f"machine noise: waited {waits:.0f} s in all for an idle machine (<20% busy) before measurements"
        + (
            "; started anyway while busy: " + ", ".join(f"{label} {busy:.0%}" for label, _, busy in noisy)
            if noisy
            else ""
        )
        + "; 'other' in the CPU notes is what other users' processes took during each measurement"
    )
    noisy_runs = [(label, other) for label, other in disturbed if other >= 0.25]
    if noisy_runs:
        notes.append(
            "DISTURBED (other users took ≥0.25 of a core; compare with care): "
            + ", ".join(f"{label} {other:.2f} cores" for label, other in noisy_runs)
        )
    raw["quiet"] = [
        {"label": label, "waited_s": round(waited, 1), "busy": round(busy, 3)} for label, waited, busy in QUIET_LOG
    ]
    load = os.getloadavg()
    header = (
        f"Offload benchmark ({'quick' if cfg.quick else 'full'}; {os.cpu_count()} cores; "
        f"HTTP {cfg.duration:g} s per run at c={cfg.concurrency}; drain n={cfg.jobs:,} × {cfg.rounds} round(s); "
        f"{cfg.probes} latency probes; {cfg.emails:,} emails, {cfg.batches:,}×{notify.BATCH_SIZE} batch recipients, "
        f"{cfg.webhooks:,} webhooks; took {elapsed:.0f} s; load avg {load[0]:.1f})\n"
        f"library measured: the working tree at {library}"
    )
    print()
    print(render(rows, notes, header))
    if cpu_lines:
        print()
        print(cpu.render(cpu_lines))
    meta = {
        "at": datetime.now(UTC).isoformat(timespec="seconds"),
        "quick": cfg.quick,
        "duration_s": cfg.duration,
        "warmup_s": cfg.warmup,
        "concurrency": cfg.concurrency,
        "jobs": cfg.jobs,
        "rounds": cfg.rounds,
        "probes": cfg.probes,
        "probe_interval_s": cfg.probe_interval,
        "processes": cfg.processes,
        "threads": cfg.threads,
        "emails": cfg.emails,
        "batches": cfg.batches,
        "batch_size": notify.BATCH_SIZE,
        "webhooks": cfg.webhooks,
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "elapsed_s": round(elapsed, 1),
        "bare_max_priority": os.environ.get("BENCH_BARE_MAX_PRIORITY"),
        "library": library,
        "logs": str(cfg.logs),
    }
    out = RESULTS / "latest.json"
    write_json(out, rows, notes, meta, raw, {"cpu_per_job": [line.as_dict() for line in cpu_lines]})
    root = RESULTS.parent.parent
    print(f"\n(written to {out.relative_to(root)}; children's logs in {cfg.logs.relative_to(root)})")
    return 0


def main(argv: list[str] | None = None) -> int:
    """Entry point: isolate the environment, run, always clean up."""
    cfg = parse_args(sys.argv[1:] if argv is None else argv)
    isolate_environment()
    # The SDK logs a normal connection close at WARNING; keep the table's output readable.
    logging.getLogger("offload.publish.amqp").setLevel(logging.ERROR)
    signal.signal(signal.SIGTERM, _interrupt)
    try:
        infra.reset()
        return run(cfg)
    except KeyboardInterrupt:
        print("\ninterrupted; stopping the benchmark's processes", file=sys.stderr)
        return 130
    finally:
        Child.stop_all()
        try:
            infra.reset()
        except Exception as exc:  # the servers went away: nothing left to clean
            print(f"cleanup: {exc}", file=sys.stderr)


if __name__ == "__main__":
    sys.exit(main())
