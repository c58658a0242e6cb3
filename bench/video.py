"""Measurement: ``video.transcode`` by the real media worker beside the bare ffmpeg command line.

A 30 s 720p clip (ffmpeg's ``testsrc2`` pattern and a tone, made here) is transcoded to H.264/AAC
MP4 at 720p and VP9/Opus WebM at 360p, in alternating rounds:

- **job**: ``dramatiq offload_media.worker:setup`` (one process, one thread) runs a
  ``video.transcode`` job published with the SDK, its source an upload in local storage. Timed
  from the job's start to its end as its record says: fetching the source into the job's folder,
  ffprobe and the checks, ffmpeg with its progress read and reported to Redis, the outputs copied
  into storage.
- **bare**: the same ffmpeg command line (:func:`offload_media.video.commands.transcode_command`,
  so the same encoders, bitrates and threads), run by hand on the same file, scheduled as the
  worker's children are (its niceness, in a session of its own at that niceness), timed from
  start to exit.

Target (issue 20): bare time ÷ job time ≥ 0.95 (the job costs at most about 5 % more), each
side's best of 3 rounds.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

from bench import infra
from bench.config import TENANT, BenchConfig, child_env, settings
from bench.procs import Child, wait_quiet
from bench.stats import median

#: The clip: seconds, size, frame rate.
SECONDS, SIZE, RATE = 30, "1280x720", 30
#: The renditions asked of the job (and made by the bare command).
OUTPUTS = [{"format": "mp4", "height": 720}, {"format": "webm", "height": 360}]
#: Niceness of the media worker (and so of its ffmpeg children) in this measurement; the bare run's too.
NICE = 15


@dataclass
class VideoResult:
    """Seconds per transcode of each side, by round."""

    job_s: list[float] = field(default_factory=list)
    bare_s: list[float] = field(default_factory=list)
    #: The job's seconds from publishing to its end (queueing and the worker's pick-up included).
    job_end_to_end_s: list[float] = field(default_factory=list)
    problem: str | None = None

    @property
    def ratio(self) -> float:
        """Bare best ÷ job best (1.0: the job costs nothing over ffmpeg).

        The best of the rounds, not their median: on a shared machine another user's work only
        ever adds time, to whichever side it lands on, so each side's fastest round is the one
        nearest its own cost.
        """
        if not self.job_s or not self.bare_s:
            return float("nan")
        return min(self.bare_s) / min(self.job_s)

    def as_dict(self) -> dict[str, object]:
        """JSON form."""
        return {
            "job_s": [round(s, 3) for s in self.job_s],
            "bare_s": [round(s, 3) for s in self.bare_s],
            "job_end_to_end_s": [round(s, 3) for s in self.job_end_to_end_s],
            "ratio": round(self.ratio, 3) if self.ratio == self.ratio else None,
            "median_ratio": round(median(self.bare_s) / median(self.job_s), 3) if self.job_s and self.bare_s else None,
            "problem": self.problem,
        }


def make_clip(path: Path) -> Path:
    """The source clip: H.264/AAC in MP4, near-lossless so that decoding costs what a camera file would."""
    subprocess.run(
        [
            *("ffmpeg", "-nostdin", "-v", "error", "-y"),
            *("-f", "lavfi", "-i", f"testsrc2=size={SIZE}:rate={RATE}:duration={SECONDS}"),
            *("-f", "lavfi", "-i", f"sine=frequency=440:sample_rate=48000:duration={SECONDS}"),
            *("-c:v", "libx264", "-preset", "ultrafast", "-crf", "20", "-pix_fmt", "yuv420p", "-c:a", "aac"),
            *("-shortest", str(path)),
        ],
        check=True,
        timeout=300,
    )
    return path


def bare_command(source: Path, out: Path) -> list[str]:
    """The command the job runs for :data:`OUTPUTS` on ``source``, writing into ``out``."""
    from offload_media.settings import MediaSettings
    from offload_media.video.commands import plan, transcode_command
    from offload_media.video.jobs import VideoTools
    from offload_media.video.models import Rendition
    from offload_media.video.probe import probe

    media = MediaSettings()
    tools = VideoTools(sources=None, storage=None, signer=None, settings=media)  # type: ignore[arg-type]
    probed = probe(media.ffprobe, source, tools.rules, limits=tools.limits, messages=out / "probe.log")
    planned = plan([Rendition(**o) for o in OUTPUTS], probed.info.width or 0, probed.info.height or 0)  # type: ignore[arg-type]
    outputs = [(p, out / p.name) for p in planned]
    threads, duration = media.video_threads, probed.info.duration
    return transcode_command(media.ffmpeg, source, probed.demuxer, outputs, threads=threads, duration=duration)


def _as_the_worker_runs_it() -> None:
    """In the child: the worker's niceness, in a session whose autogroup has it too (as the job's ffmpeg)."""
    from offload_media.video.child import keep_niceness

    os.nice(NICE)
    keep_niceness()


def run_bare(argv: list[str]) -> float:
    """Seconds the command takes, scheduled as the job's ffmpeg is, its progress read and dropped."""
    started = time.perf_counter()
    subprocess.run(
        argv,
        stdout=subprocess.DEVNULL,
        check=True,
        timeout=1800,
        start_new_session=True,
        preexec_fn=_as_the_worker_runs_it,
    )
    return time.perf_counter() - started


def upload(storage_dir: Path, source: Path) -> str:
    """Store ``source`` as an upload of the bench's tenant, as ``POST /v1/uploads`` does."""
    from offload.publish import Publisher
    from offload.status.uploads import Uploads
    from offload.storage import make_key, read_chunks
    from offload.storage.local import LocalStorage

    upload_id = str(uuid.uuid4())
    key = make_key(TENANT, upload_id, "source")
    with open(source, "rb") as handle:
        stored = LocalStorage(storage_dir).put(key, read_chunks(handle))
    publisher = Publisher.from_settings(settings())
    try:
        record: dict[str, str | int] = {"id": upload_id, "tenant": TENANT, "key": key, "size": stored.size}
        record |= {"content_type": "video/mp4", "filename": "", "created_at": int(time.time() * 1000)}
        Uploads(publisher.store).record(upload_id, record, ttl_s=3600)
    finally:
        publisher.close()
    return upload_id


def run_job(upload_id: str) -> tuple[float, float]:
    """Publish one transcode and wait for it; (start-to-end seconds, publish-to-end seconds)."""
    from offload.contracts import BUILT_IN
    from offload.publish import Publisher
    from offload_media.worker import SPEC

    publisher = Publisher.from_settings(settings(), local=[*BUILT_IN, *SPEC.contracts])
    try:
        published = time.time()
        payload = {"source": {"upload_id": upload_id}, "outputs": OUTPUTS}
        job = publisher.publish("video.transcode", payload, tenant=TENANT)
        record = publisher.wait(job.job_id, timeout=1800)
        if record is None or record.state != "succeeded":
            raise RuntimeError(f"the transcode job ended {record.state if record else 'never'}: {record}")
        assert record.started_at is not None and record.finished_at is not None
        return (record.finished_at - record.started_at) / 1000, record.finished_at / 1000 - published
    finally:
        publisher.close()


def measure(cfg: BenchConfig) -> VideoResult:
    """Alternate bare and job rounds (1 with ``--quick``, 3 otherwise) on one generated clip."""
    result = VideoResult()
    rounds = 1 if cfg.quick else 3
    with tempfile.TemporaryDirectory(prefix="offload-bench-video-") as folder:
        work = Path(folder)
        storage_dir = work / "storage"
        source = make_clip(work / "clip.mp4")
        (work / "bare").mkdir()
        argv = bare_command(source, work / "bare")
        infra.reset()
        upload_id = upload(storage_dir, source)
        env = child_env(OFFLOAD_STORAGE_DIR=str(storage_dir), OFFLOAD_WORKER_NICE=str(NICE))
        dramatiq = str(Path(sys.executable).parent / "dramatiq")
        worker = Child(
            "worker-video",
            [dramatiq, "offload_media.worker:setup", "--queues", "media", "--processes", "1", "--threads", "1"],
            env=env,
            logs=cfg.logs,
        )
        try:
            run_job(upload_id)  # warm-up: imports, registration, the disk cache
            for index in range(rounds):
                wait_quiet(f"video bare {index + 1}")
                result.bare_s.append(run_bare(argv))
                wait_quiet(f"video job {index + 1}")
                job_s, end_to_end = run_job(upload_id)
                result.job_s.append(job_s)
                result.job_end_to_end_s.append(end_to_end)
        finally:
            worker.stop()
            infra.reset()
            with infra.rabbit() as conn:
                conn.delete(("media", "media.DQ", "media.XQ"))
    return result


def notes(result: VideoResult) -> list[str]:
    """What the video rows measured."""
    return [
        f"video: a {SECONDS} s {SIZE} clip to MP4 720p + WebM 360p; job (worker, start to end, fetch, probe, "
        f"progress and storage included) vs the same ffmpeg command by hand, both at nice {NICE}; "
        f"job publish-to-end {', '.join(f'{s:.1f}' for s in result.job_end_to_end_s)} s"
    ]
