"""Measurement 6: the media worker's Pillow pipeline beside libvips (pyvips ``thumbnail``).

The same 12 MP JPEG (4000×3000, a synthetic photo made here: gradients, shapes, blur and grain, so
it compresses like a photograph) goes through both systems, each in a fresh process of its own
(:mod:`bench.media_child`), one image at a time on one core (``VIPS_CONCURRENCY=1``):

- **3 sizes**: 2048, 1024 and 256 px on the long side, progressive JPEG at quality 85.
  Ours: the worker's ``images.load`` + ``variants`` (one decode, smaller sizes from larger ones).
  libvips: ``thumbnail`` per size (shrink-on-load each time). Per-image time, median of N.
- **thumbnail**: 400 px, quality 80. Ours: the same pipeline (the JPEG ``draft`` decode does most
  of the work); libvips: one ``thumbnail``. Reported as images per second.
- **peak RSS**: the 3-size work on 4 threads at once in one process (as a worker with
  ``--threads 4`` runs it), the process's peak resident set, imports included.

Targets (issue 5): thumbnail throughput ≥ 1.0× libvips', 3 sizes ≤ 1.3× libvips' time, RSS ≤ 150 MB.
"""

from __future__ import annotations

import json
import random
import sys
from dataclasses import dataclass
from pathlib import Path

from bench.config import BenchConfig, child_env
from bench.procs import Child, wait_quiet
from bench.stats import median

THREADS_FOR_RSS = 4


@dataclass(frozen=True)
class MediaRun:
    """One system's figures for one task."""

    system: str
    task: str
    ms: list[float]
    peak_rss_mb: float
    bytes_out: int

    @property
    def median_ms(self) -> float:
        """Median milliseconds per image."""
        return median(self.ms)

    def as_dict(self) -> dict[str, object]:
        """JSON form."""
        return {
            "system": self.system,
            "task": self.task,
            "ms": [round(m, 2) for m in self.ms],
            "median_ms": round(self.median_ms, 2),
            "peak_rss_mb": round(self.peak_rss_mb, 1),
            "bytes_out": self.bytes_out,
        }


@dataclass(frozen=True)
class MediaResult:
    """Both systems on both tasks, and the peak RSS of each on 4 threads."""

    runs: dict[tuple[str, str], MediaRun]
    rss: dict[str, MediaRun]


def make_photo(path: Path, width: int = 4000, height: int = 3000) -> Path:
    """A photo-like JPEG (quality 90) at ``path``, made once per run from a fixed seed."""
    from PIL import Image, ImageDraw, ImageFilter

    rnd = random.Random(7)
    noise = Image.effect_noise((width // 4, height // 4), 60).resize((width, height), Image.Resampling.BICUBIC)
    gradient = Image.linear_gradient("L").resize((width, height))
    image = Image.merge("RGB", (gradient, noise, gradient.transpose(Image.Transpose.FLIP_LEFT_RIGHT)))
    draw = ImageDraw.Draw(image)
    for _ in range(300):
        x, y, r = rnd.randrange(width), rnd.randrange(height), rnd.randrange(20, 300)
        draw.ellipse((x, y, x + r, y + r), fill=(rnd.randrange(256), rnd.randrange(256), rnd.randrange(256)))
    image = image.filter(ImageFilter.GaussianBlur(1.5))
    grain = Image.effect_noise((width, height), 18).convert("RGB")
    Image.blend(image, grain, 0.12).save(path, quality=90)
    return path


def run_child(cfg: BenchConfig, photo: Path, system: str, task: str, n: int, threads: int = 1) -> MediaRun:
    """One :mod:`bench.media_child` process; its figures."""
    out = cfg.logs / f"media-{system}-{task}-{threads}.json"
    argv = [sys.executable, "-m", "bench.media_child", "--system", system, "--task", task]
    argv += ["--file", str(photo), "--n", str(n), "--threads", str(threads), "--out", str(out)]
    child = Child(f"media-{system}-{task}-{threads}", argv, env=child_env(VIPS_CONCURRENCY="1"), logs=cfg.logs)
    code = child.proc.wait(timeout=600)
    if code != 0:
        raise RuntimeError(f"{child.name} exited with {code}:\n{child.tail()}")
    data = json.loads(out.read_text())
    return MediaRun(system, task, data["ms"], data["peak_rss_mb"], data["bytes"])


def measure(cfg: BenchConfig) -> MediaResult:
    """Each system on each task, interleaved, then the 4-thread peak RSS of each."""
    photo = make_photo(cfg.logs / "photo-12mp.jpg")
    n = 5 if cfg.quick else 15
    runs: dict[tuple[str, str], MediaRun] = {}
    for task in ("sizes", "thumb"):
        for system in ("vips", "pillow"):
            wait_quiet(f"media {system} {task}")
            print(f">> media: {system} {task} × {n * (4 if task == 'thumb' else 1)}", flush=True)
            runs[(system, task)] = run_child(cfg, photo, system, task, n * (4 if task == "thumb" else 1))
    rss = {}
    for system in ("vips", "pillow"):
        print(f">> media: {system} 3 sizes on {THREADS_FOR_RSS} threads (peak RSS)", flush=True)
        rss[system] = run_child(cfg, photo, system, "sizes", 2 * THREADS_FOR_RSS, threads=THREADS_FOR_RSS)
    return MediaResult(runs, rss)


def notes(result: MediaResult) -> list[str]:
    """Per task: both medians and the spread; the bytes each wrote."""
    lines = []
    for (system, task), run in sorted(result.runs.items()):
        lines.append(
            f"media {task} {system}: median {run.median_ms:,.1f} ms per image (min {min(run.ms):,.1f}, "
            f"max {max(run.ms):,.1f}, n={len(run.ms)}); {run.bytes_out:,} bytes out; peak RSS {run.peak_rss_mb:,.0f} MB"
        )
    for system, run in result.rss.items():
        lines.append(
            f"media RSS {system}: 3 sizes on {THREADS_FOR_RSS} threads, {run.median_ms:,.0f} ms per image "
            f"({THREADS_FOR_RSS} at once), peak RSS {run.peak_rss_mb:,.0f} MB"
        )
    return lines
