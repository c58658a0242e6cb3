"""The video job types, declared beside their handlers: ``video.probe``, ``video.transcode``, ``video.poster``.

Each job works in a private temporary folder: the source is streamed there, probed and vetted
(:mod:`offload_media.video.probe`), ffmpeg writes its outputs there (:mod:`offload_media.video.child`),
and only complete files are copied into storage under the job's id, so a retried or redelivered
job replaces its outputs and never leaves half of one. The folder goes when the job ends.
"""

from __future__ import annotations

import logging
import re
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from offload.errors import PermanentJobError
from offload.jobs import job
from offload.signing import LinkSigner
from offload.storage import Storage, make_key, read_chunks
from offload.worker import JobContext
from offload_media.settings import MediaSettings
from offload_media.sources import Sources
from offload_media.video import child, commands
from offload_media.video.models import (
    PosterPayload,
    PosterResult,
    ProbePayload,
    ProbeResult,
    TranscodePayload,
    TranscodeResult,
    VideoOutput,
    VideoSource,
)
from offload_media.video.probe import Probed, Rules, probe

logger = logging.getLogger(__name__)

QUEUE = "media"
_OUT_TIME = re.compile(r"^out_time_us=(\d+)$")
#: A transcode that ends before this share of the probed duration had a truncated or damaged source.
TRUNCATED = 0.9
_PTS_TIME = re.compile(r"\bpts_time:\s*([0-9.]+)")


@dataclass(frozen=True)
class VideoTools:
    """What the video handlers share in a worker process: sources, storage, links and limits."""

    sources: Sources
    storage: Storage
    signer: LinkSigner
    settings: MediaSettings

    @property
    def rules(self) -> Rules:
        """What a source must be to be decoded."""
        settings = self.settings
        return Rules(
            containers=frozenset(settings.video_containers),
            codecs=frozenset(settings.video_codecs),
            max_duration=settings.video_max_duration,
            max_pixels=settings.video_max_pixels,
            max_fps=settings.video_max_fps,
            max_streams=settings.video_max_streams,
        )

    @property
    def limits(self) -> child.Limits:
        """What one ffmpeg or ffprobe child may use."""
        return child.Limits(self.settings.video_cpu_seconds, self.settings.video_memory_mb * 2**20)

    @contextmanager
    def workspace(self, ctx: JobContext, source: VideoSource) -> Iterator[tuple[Path, Probed]]:
        """A private folder holding the fetched, probed and vetted source; removed when the block ends.

        Raises:
            PermanentJobError: the source cannot be had, is too large, or is not an accepted video.
            TransientJobError: a URL source could not be fetched now; ffprobe is not installed.
        """
        if self.storage.discard_partials(ctx.tenant, ctx.job_id):
            logger.info("Discarded the half-written outputs of an interrupted attempt.")
        work = Path(self.settings.video_work_dir or tempfile.gettempdir())
        for stale in work.glob(f"offload-video-{ctx.job_id}-*"):
            shutil.rmtree(stale, ignore_errors=True)  # the folder of an attempt whose worker was killed
        folder = Path(tempfile.mkdtemp(prefix=f"offload-video-{ctx.job_id}-", dir=work))
        try:
            path = folder / "source"
            size = self.sources.save(
                source, tenant=ctx.tenant, into=path, max_bytes=self.settings.video_max_source_bytes
            )
            ctx.log(f"source: {size:,} bytes")
            ctx.progress(3, "fetched")
            probed = probe(self.settings.ffprobe, path, self.rules, limits=self.limits, messages=folder / "probe.log")
            ctx.progress(5, "probed")
            yield path, probed
        finally:
            shutil.rmtree(folder, ignore_errors=True)

    def run(
        self, ctx: JobContext, argv: list[str], *, doing: str, duration: float, span: tuple[float, float]
    ) -> tuple[str, float]:
        """Run ffmpeg, mapping its ``out_time_us`` over ``duration`` into ``span`` of the job's progress.

        Returns its messages (stderr's tail) and the last time it reported writing, in seconds. A
        cancel kills its process group and ends the job ``cancelled``; so does the job's time limit
        (as ``timed_out``).

        Raises:
            PermanentJobError: ffmpeg failed (``corrupt_input``) or hit a limit (``resource_limit``).
            JobCancelled: the job was cancelled.
        """
        start, end = span
        reached = [0.0]

        def on_line(line: str) -> None:
            found = _OUT_TIME.match(line)
            if found:
                reached[0] = max(reached[0], int(found.group(1)) / 1e6)
            if found and duration > 0:
                done = min(1.0, reached[0] / duration)
                ctx.progress(start + (end - start) * done, f"{doing}: {done:.0%}")

        messages = Path(argv[-1].removeprefix("file:")).parent / "ffmpeg.log"
        finished = child.run(
            argv, limits=self.limits, messages=messages, on_line=on_line, should_stop=lambda: ctx.cancelled
        )
        if finished.returncode != 0:
            if finished.messages.strip():  # its last words, without the worker's folder names
                last = finished.messages.strip().splitlines()[-1].replace(f"{messages.parent}/", "")
                ctx.log(f"ffmpeg: {last[:400]}")
            raise child.failure(finished, doing=doing)
        return finished.messages, reached[0]

    def store(self, ctx: JobContext, name: str, path: Path) -> tuple[int, str]:
        """Copy a finished output into storage under the job's id; its size and signed link."""
        key = make_key(ctx.tenant, ctx.job_id, name)
        with open(path, "rb") as handle:
            stored = self.storage.put(key, read_chunks(handle))
        return stored.size, self.signer.path(key)


@job("video.probe", queue=QUEUE, time_limit=120)
def probe_video(ctx: JobContext, payload: ProbePayload) -> ProbeResult:
    """Describe a video from its headers: container, duration, size, streams, codecs, resolution, frame rate.

    Raises:
        PermanentJobError: not an accepted video (``unsupported_input``), or a source that cannot be had.
    """
    tools = ctx.resource(VideoTools)
    with tools.workspace(ctx, payload.source) as (_, probed):
        return ProbeResult(
            **probed.info.model_dump(), within_limits=probed.too_large is None, limit_problem=probed.too_large
        )


@job("video.transcode", queue=QUEUE, time_limit=1200)
def transcode(ctx: JobContext, payload: TranscodePayload) -> TranscodeResult:
    """Transcode a video to H.264/AAC MP4 and/or VP9/Opus WebM at the asked heights (never upscaled).

    Raises:
        PermanentJobError: ``unsupported_input``, ``input_too_large``, ``corrupt_input``,
            ``resource_limit``, or a source that cannot be had.
    """
    tools = ctx.resource(VideoTools)
    with tools.workspace(ctx, payload.source) as (source, probed):
        probed.require_within_limits()
        info = probed.info
        planned = commands.plan(payload.outputs, info.width or 0, info.height or 0)
        unique = {item.name: item for item in planned}  # renditions that come out the same are made once
        paths = {name: source.parent / name for name in unique}
        argv = commands.transcode_command(
            tools.settings.ffmpeg,
            source,
            probed.demuxer,
            [(item, paths[name]) for name, item in unique.items()],
            threads=tools.settings.video_threads,
            duration=info.duration,
        )
        for item in planned:
            if item.note:
                ctx.log(item.note)
        _, reached = tools.run(ctx, argv, doing="transcoding", duration=info.duration, span=(5, 95))
        if reached < info.duration * TRUNCATED:
            raise PermanentJobError(
                f"The video ends after {reached:.1f} s of the {info.duration:.1f} s its headers claim: it is "
                "truncated or damaged.",
                code="corrupt_input",
            )
        stored = {name: tools.store(ctx, name, paths[name]) for name in unique}
        outputs = []
        for item in planned:
            size, url = stored[item.name]
            _, _, video_codec, audio_codec = commands.ENCODERS[item.rendition.format]
            outputs.append(
                VideoOutput(
                    name=item.name,
                    format=item.rendition.format,
                    video_codec=video_codec,
                    audio_codec=audio_codec if info.audio_codec else None,
                    width=item.width,
                    height=item.height,
                    requested_height=item.rendition.height,
                    video_kbps=item.video_kbps,
                    bytes=size,
                    url=url,
                    note=item.note,
                )
            )
        ctx.progress(100, f"{len(unique)} files")
        return TranscodeResult(source=info, outputs=outputs)


@job("video.poster", queue=QUEUE, time_limit=300)
def poster(ctx: JobContext, payload: PosterPayload) -> PosterResult:
    """Take one frame of a video as a JPEG or WebP image: at a time, or the first that is not black.

    Raises:
        PermanentJobError: as ``video.transcode``, and ``time_out_of_range`` for a time past the end.
    """
    tools = ctx.resource(VideoTools)
    with tools.workspace(ctx, payload.source) as (source, probed):
        probed.require_within_limits()
        info = probed.info
        if payload.at is not None and payload.at >= info.duration:
            raise PermanentJobError(
                f"The video lasts {info.duration:.2f} s; there is no frame at {payload.at:g} s.",
                code="time_out_of_range",
            )
        height = min(payload.height or info.height or 0, info.height or 0) // 2 * 2
        width = max(2, round((info.width or 0) * height / (info.height or 1) / 2) * 2)
        name = f"poster.{'jpg' if payload.format == 'jpeg' else 'webp'}"
        out = source.parent / name
        note = None
        messages, _ = _frame(tools, ctx, source, probed, out, payload, at=payload.at, height=height)
        if payload.at is None and not out.exists():
            note = f"Every frame of the first {commands.BLACK_SEARCH_S} s is black; the first frame is used."
            messages, _ = _frame(tools, ctx, source, probed, out, payload, at=0.0, height=height)
        if not out.exists():
            raise PermanentJobError("No frame could be decoded from the video.", code="corrupt_input")
        shown = _PTS_TIME.findall(messages)
        time = (payload.at or 0.0) + (float(shown[0]) if shown else 0.0)
        size, url = tools.store(ctx, name, out)
        ctx.progress(100, name)
        return PosterResult(
            source=info,
            name=name,
            format=payload.format,
            time=round(time, 3),
            width=width,
            height=height,
            bytes=size,
            url=url,
            note=note,
        )


def _frame(
    tools: VideoTools,
    ctx: JobContext,
    source: Path,
    probed: Probed,
    out: Path,
    payload: PosterPayload,
    *,
    at: float | None,
    height: int,
) -> tuple[str, float]:
    argv = commands.poster_command(
        tools.settings.ffmpeg,
        source,
        probed.demuxer,
        out,
        at=at,
        height=height,
        fmt=payload.format,
        quality=payload.quality,
        threads=tools.settings.video_threads,
    )
    span = min(probed.info.duration, commands.BLACK_SEARCH_S) if at is None else 0.0
    return tools.run(ctx, argv, doing="finding a frame", duration=span, span=(5, 95))


#: The video job types, in the order the worker lists them.
JOBS = (probe_video, transcode, poster)
