"""The ffmpeg command lines of the video jobs, built from a probed source and a request.

Pure functions, so the benchmark can run the very command a job runs, and a test can read it.
Every command reads only its one input file (``-protocol_whitelist file``), with the demuxer the
probe found forced (``-f``, ``-format_whitelist``), never reads standard input (``-nostdin``) and
reports progress as ``key=value`` lines on standard output (``-progress pipe:1``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from offload_media.video.models import PosterFormat, Rendition, VideoFormat

#: Video bitrate (kbit/s) by output height when a rendition names none.
DEFAULT_KBPS = {144: 150, 240: 300, 360: 600, 480: 1000, 720: 2500, 1080: 4500, 1440: 8000, 2160: 14000}
#: Encoders by output format: (video, audio, the codec names a result reports).
ENCODERS: dict[VideoFormat, tuple[tuple[str, ...], str, str, str]] = {
    # x264 "veryfast": most of the quality of "medium" at a third of the CPU; +faststart puts the
    # index first so a browser plays while it downloads.
    "mp4": (("-c:v", "libx264", "-preset", "veryfast", "-profile:v", "high"), "aac", "h264", "aac"),
    # libvpx at "good" quality with cpu-used 5 and row threading: the usual speed for VOD on few cores.
    "webm": (("-c:v", "libvpx-vp9", "-deadline", "good", "-cpu-used", "5", "-row-mt", "1"), "libopus", "vp9", "opus"),
}
#: Seconds of video searched for a frame that is not black before the first frame is taken instead.
BLACK_SEARCH_S = 60
#: A frame is black when this percentage of its pixels is darker than :data:`BLACK_LUMA`.
BLACK_AMOUNT = 98
BLACK_LUMA = 32


@dataclass(frozen=True)
class Planned:
    """One output as it will be made: its file name, size and bitrate."""

    rendition: Rendition
    name: str
    width: int
    height: int
    video_kbps: int
    note: str | None


def plan(renditions: Sequence[Rendition], width: int, height: int) -> list[Planned]:
    """Each rendition's real size: the asked height, or the source's if smaller (never upscaled).

    Heights and widths are even (4:2:0 video needs it); the width keeps the source's aspect ratio.
    """
    planned = []
    for rendition in renditions:
        out_height = min(rendition.height, height) // 2 * 2
        out_width = max(2, round(width * out_height / height / 2) * 2)
        note = None
        if out_height < rendition.height:
            note = f"{rendition.height}p was asked; the source is {height}p, so the output keeps {out_height}p."
        kbps = rendition.video_kbps or DEFAULT_KBPS[_nearest(out_height)]
        name = f"{out_height}p-{kbps}k.{rendition.format}"
        planned.append(Planned(rendition, name, out_width, out_height, kbps, note))
    return planned


def _nearest(height: int) -> int:
    return min(DEFAULT_KBPS, key=lambda known: abs(known - height))


def input_args(source: Path, demuxer: str, *, seek: float | None = None, duration: float | None = None) -> list[str]:
    """The options that open ``source``: the file protocol only, the probed demuxer only."""
    args = ["-protocol_whitelist", "file", "-format_whitelist", demuxer, "-f", demuxer]
    if seek is not None:
        args += ["-ss", f"{seek:.3f}"]
    if duration is not None:
        args += ["-t", f"{duration:.3f}"]
    return [*args, "-i", f"file:{source}"]


def _head(ffmpeg: str, threads: int, *, level: str = "error") -> list[str]:
    return [ffmpeg, "-nostdin", "-hide_banner", "-v", level, "-y", "-threads", str(threads)]


def transcode_command(
    ffmpeg: str,
    source: Path,
    demuxer: str,
    outputs: Sequence[tuple[Planned, Path]],
    *,
    threads: int,
    duration: float | None = None,
) -> list[str]:
    """One ffmpeg run that decodes ``source`` once and writes every planned output.

    With ``duration`` (the probed one), reading stops a second past it: a header that claims a
    short video over hours of frames does not get hours of decoding.
    """
    cap = None if duration is None else duration + 1
    args = [*_head(ffmpeg, threads), *input_args(source, demuxer, duration=cap)]
    args += ["-progress", "pipe:1", "-nostats", "-stats_period", "0.25"]
    for planned, path in outputs:
        fmt = planned.rendition.format
        video, audio, _, _ = ENCODERS[fmt]
        kbps = planned.video_kbps
        args += ["-map", "0:v:0", "-map", "0:a:0?", "-sn", "-dn", "-map_metadata", "-1", "-map_chapters", "-1"]
        args += ["-vf", f"scale={planned.width}:{planned.height}:flags=bicubic,format=yuv420p", *video]
        args += ["-b:v", f"{kbps}k", "-maxrate", f"{kbps * 3 // 2}k", "-bufsize", f"{kbps * 2}k"]
        args += ["-threads", str(threads), "-c:a", audio, "-b:a", f"{planned.rendition.audio_kbps}k", "-ac", "2"]
        if fmt == "mp4":
            args += ["-movflags", "+faststart", "-f", "mp4"]
        else:
            args += ["-f", "webm"]
        args.append(f"file:{path}")
    return args


def poster_command(
    ffmpeg: str,
    source: Path,
    demuxer: str,
    out: Path,
    *,
    at: float | None,
    height: int,
    fmt: PosterFormat,
    quality: int,
    threads: int,
) -> list[str]:
    """One frame as an image: the frame at ``at`` seconds, or (``at`` None) the first that is not black.

    The search for a frame that is not black runs ``blackframe`` on every frame (with ``amount=0``
    it measures each one) and keeps the first darker on fewer than 98 % of its pixels; ``showinfo``
    prints its time for the result.
    """
    if at is None:
        args = [*_head(ffmpeg, threads, level="info"), *input_args(source, demuxer, duration=BLACK_SEARCH_S)]
        select = (
            f"blackframe=amount=0:threshold={BLACK_LUMA},"
            f"metadata=mode=select:key=lavfi.blackframe.pblack:value={BLACK_AMOUNT}:function=less,"
        )
    else:
        args = [*_head(ffmpeg, threads, level="info"), *input_args(source, demuxer, seek=at)]
        select = ""
    args += ["-map", "0:v:0", "-an", "-sn", "-dn", "-map_metadata", "-1", "-frames:v", "1"]
    args += ["-vf", f"{select}showinfo,scale=-2:{height}:flags=bicubic"]
    if fmt == "jpeg":
        args += ["-c:v", "mjpeg", "-pix_fmt", "yuvj420p", "-q:v", str(_jpeg_qscale(quality)), "-f", "image2"]
    else:
        args += ["-c:v", "libwebp", "-quality", str(quality), "-f", "webp"]
    return [*args, "-update", "1", f"file:{out}"] if fmt == "jpeg" else [*args, f"file:{out}"]


def _jpeg_qscale(quality: int) -> int:
    """Ffmpeg's JPEG scale (2 best, 31 worst) for a 1-100 quality."""
    return max(2, min(31, round(31 - (quality / 100) * 29)))
