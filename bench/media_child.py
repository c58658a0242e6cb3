"""``python -m bench.media_child``: one system's image work, timed in a process of its own.

``--system pillow`` runs the media worker's own pipeline (``offload_media.images.load`` then
``variants``: open with the allow-list and limits, decode once at reduced size, each size from
that decode, progressive JPEG); ``--system vips`` runs pyvips' ``thumbnail`` per size (shrink-on-load,
libvips' own fast path), saved as progressive JPEG at the same quality, with libvips' operation
cache off so a repeated file is really decoded again. Each image is timed alone, one after the
other, on one thread (``VIPS_CONCURRENCY=1`` for libvips, so both use one core); with
``--threads T`` the same work runs on T threads at once, for the peak RSS a worker with T threads
would reach (through the worker's memory budget
and allocator settings, as in the worker). Writes ``{"ms": [...], "peak_rss_mb": ..., "bytes": ...}`` to ``--out``.
"""

from __future__ import annotations

import argparse
import json
import resource
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

SIZES = {"sizes": ((2048, 85), (1024, 85), (256, 85)), "thumb": ((400, 80),)}


#: The media worker's default budget (``OFFLOAD_MEMORY_BUDGET_MB``), shared by the threads of a run.
BUDGET_MB = 64
_budget = None


def pillow_once(path: Path, task: str) -> int:
    """The worker's pipeline on ``path`` (the steps of ``MediaHandlers.resize``); returns the bytes written."""
    global _budget
    from offload.contracts.media import TargetSize
    from offload_media import images

    _budget = _budget or images.MemoryBudget(BUDGET_MB * 2**20)
    sizes = SIZES[task]
    targets = [TargetSize(width=side, height=side) for side, _ in sizes]
    limits = images.Limits(max_pixels=40_000_000, max_frames=1000)
    with path.open("rb") as source:
        image = images.open_image(source, limits)
        needed = images.needed_size(images.upright_size(image), targets, enlarge=False)
        with _budget.reserve(images.decoded_bytes(image, needed)):
            _, decoded, _ = images.load(image, needed)
            variants = images.variants(decoded, targets, ["jpeg"], quality=sizes[0][1], enlarge=False)
            return sum(len(v.data) for v in variants)


def vips_once(path: Path, task: str) -> int:
    """pyvips ``thumbnail`` for each size (one open each, shrink-on-load); returns the bytes written."""
    import pyvips

    total = 0
    for side, quality in SIZES[task]:
        image = pyvips.Image.thumbnail(str(path), side, height=side)
        total += len(image.jpegsave_buffer(Q=quality, interlace=True, keep="none"))
    return total


def peak_rss_kib() -> int:
    """This process's peak resident set (``VmHWM``; ``ru_maxrss`` would include the parent's at fork)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def main() -> None:
    """Time ``--n`` runs (after one warm-up) and write the result."""
    parser = argparse.ArgumentParser(prog="python -m bench.media_child")
    parser.add_argument("--system", choices=("pillow", "vips"), required=True)
    parser.add_argument("--task", choices=tuple(SIZES), required=True)
    parser.add_argument("--file", type=Path, required=True)
    parser.add_argument("--n", type=int, default=10)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    if args.system == "vips":
        import pyvips

        pyvips.cache_set_max(0)
    if args.system == "pillow":
        from offload_media.memory import tune_allocator

        tune_allocator()  # what the worker's setup() does
    once = pillow_once if args.system == "pillow" else vips_once
    written = once(args.file, args.task)  # warm-up: imports, codec set-up
    times: list[float] = []
    if args.threads == 1:
        for _ in range(args.n):
            started = time.perf_counter()
            written = once(args.file, args.task)
            times.append((time.perf_counter() - started) * 1000)
    else:
        with ThreadPoolExecutor(args.threads) as pool:
            started = time.perf_counter()
            list(pool.map(lambda _: once(args.file, args.task), range(args.n)))
            times.append((time.perf_counter() - started) * 1000 / args.n)
    peak_mb = peak_rss_kib() / 1024
    args.out.write_text(json.dumps({"ms": times, "peak_rss_mb": peak_mb, "bytes": written}))


if __name__ == "__main__":
    main()
