"""Reading a source video's headers with ffprobe, and refusing what the video jobs must not decode.

The order matters: the first bytes are sniffed for playlists (HLS, ffconcat, SDP and the like, whose
demuxers open other files or URLs); ffprobe then reads the headers with only the ``file`` protocol
and only the allow-listed demuxers (``-format_whitelist``), so even a playlist the sniff missed
is refused by ffmpeg itself before it follows a single entry; last, the probed container, codecs,
duration, resolution, frame rate and stream count are checked against the settings. Only a file
that passes all three is ever decoded, with its demuxer forced to the probed one.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from offload.errors import PermanentJobError
from offload_media.video import child
from offload_media.video.models import StreamInfo, VideoInfo

#: Demuxers that read other files or URLs named inside the input: never allowed, whatever the settings say.
PLAYLIST_DEMUXERS = frozenset({"hls", "applehttp", "concat", "dash", "sdp", "rtsp", "ffmetadata", "image2", "tee"})
#: First bytes of text formats that point elsewhere (checked case-insensitively, after a BOM and spaces).
PLAYLIST_MAGIC = (b"#extm3u", b"#ext-x-", b"ffconcat", b"file ", b"file'", b"<?xml", b"<mpd", b"v=0", b"[playlist]")
#: The largest side a frame may claim, whatever the pixel limit (a 1 × 10⁸ frame is hostile too).
MAX_SIDE = 8192


@dataclass(frozen=True)
class Rules:
    """What a source must be to be decoded (from the media worker's settings)."""

    containers: frozenset[str]
    codecs: frozenset[str]
    max_duration: float
    max_pixels: int
    max_fps: float
    max_streams: int


@dataclass(frozen=True)
class Probed:
    """A probed source: its description and the demuxer to force when decoding it."""

    info: VideoInfo
    demuxer: str
    #: The problem that makes it too large to decode (None: within the limits).
    too_large: str | None

    def require_within_limits(self) -> None:
        """Stop here if the source is over a limit.

        Raises:
            PermanentJobError: ``input_too_large``, naming the limit.
        """
        if self.too_large is not None:
            raise PermanentJobError(self.too_large, code="input_too_large")

    @property
    def display_height(self) -> int:
        """The height of the first video stream as shown (rotation applied)."""
        return self.info.height or 0


def refuse_playlists(path: Path) -> None:
    """Refuse a file whose first bytes announce a playlist or another text format that points elsewhere.

    Raises:
        PermanentJobError: ``unsupported_input``.
    """
    with open(path, "rb") as handle:
        head = handle.read(64)
    text = head.removeprefix(b"\xef\xbb\xbf").lstrip().lower()
    if not head:
        raise PermanentJobError("The source file is empty.", code="unsupported_input")
    if text.startswith(PLAYLIST_MAGIC):
        raise PermanentJobError(
            "Playlists and files that refer to other files (HLS, concat, DASH, SDP) are not accepted; "
            "send the video itself.",
            code="unsupported_input",
        )


def probe_command(ffprobe: str, path: Path, rules: Rules) -> list[str]:
    """The ffprobe command line that reads ``path``'s headers, confined to the file and the allowed demuxers."""
    return [
        ffprobe,
        *("-v", "error", "-hide_banner"),
        *("-protocol_whitelist", "file", "-format_whitelist", ",".join(sorted(rules.containers - PLAYLIST_DEMUXERS))),
        *("-probesize", "10000000", "-analyzeduration", "10000000"),
        *("-show_format", "-show_streams", "-of", "json"),
        *("-i", f"file:{path}"),
    ]


def probe(ffprobe: str, path: Path, rules: Rules, *, limits: child.Limits, messages: Path) -> Probed:
    """Read and vet ``path``'s headers.

    Raises:
        PermanentJobError: ``unsupported_input`` (a playlist, a container or codec not on the
            allow-list, not a video at all, or unreadable headers), ``resource_limit``.
        TransientJobError: ffprobe is not installed (``ffmpeg_unavailable``).
    """
    refuse_playlists(path)
    finished = child.run(probe_command(ffprobe, path, rules), limits=limits, messages=messages)
    if finished.returncode != 0:
        if finished.returncode < 0:
            raise child.failure(finished, doing="reading the video's headers")
        raise PermanentJobError(
            "The source is not a video in an accepted container (or its headers are damaged).",
            code="unsupported_input",
        )
    try:
        document = json.loads(finished.output)
    except ValueError:
        raise PermanentJobError("The video's headers could not be read.", code="unsupported_input") from None
    return vet(document, rules, size=path.stat().st_size)


def vet(document: dict[str, Any], rules: Rules, *, size: int) -> Probed:
    """Check ffprobe's description of a file against ``rules``: allow-lists first, then limits.

    Raises:
        PermanentJobError: ``unsupported_input`` (container or codec not accepted, no video stream).
    """
    fmt = document.get("format") or {}
    names = str(fmt.get("format_name", "")).split(",")
    demuxer = next((name for name in names if name in rules.containers), None)
    if demuxer is None or any(name in PLAYLIST_DEMUXERS for name in names):
        raise PermanentJobError(f"Container {names[0]!r} is not accepted.", code="unsupported_input")
    streams = [_stream(raw) for raw in document.get("streams") or []]
    for stream in streams:
        if stream.kind in ("video", "audio") and stream.codec not in rules.codecs:
            raise PermanentJobError(
                f"The {stream.kind} codec {stream.codec!r} is not accepted.", code="unsupported_input"
            )
    videos = [stream for stream in streams if stream.kind == "video"]
    if not videos:
        raise PermanentJobError("The source has no video stream.", code="unsupported_input")
    video = videos[0]
    raw_video = next(raw for raw in document["streams"] if raw.get("codec_type") == "video")
    width, height = video.width or 0, video.height or 0
    if _rotation(raw_video) % 180 == 90:
        width, height = height, width
    audio = next((stream for stream in streams if stream.kind == "audio"), None)
    info = VideoInfo(
        container=demuxer,
        duration=_duration(fmt, raw_video),
        bytes=size,
        bit_rate=_int(fmt.get("bit_rate")),
        width=width,
        height=height,
        frame_rate=video.frame_rate,
        video_codec=video.codec,
        audio_codec=audio.codec if audio else None,
        streams=streams,
    )
    return Probed(info=info, demuxer=demuxer, too_large=_too_large(info, streams, rules))


def _too_large(info: VideoInfo, streams: list[StreamInfo], rules: Rules) -> str | None:
    width, height = info.width or 0, info.height or 0
    if len(streams) > rules.max_streams:
        return f"The video has {len(streams)} streams; at most {rules.max_streams} are accepted."
    if not math.isfinite(info.duration) or info.duration > rules.max_duration:
        return f"The video lasts {info.duration:.0f} s; at most {rules.max_duration:.0f} s are accepted."
    if width <= 0 or height <= 0:
        return "The video's frame size is missing from its headers."
    if width * height > rules.max_pixels or max(width, height) > MAX_SIDE:
        return f"The video's frames are {width}×{height}; at most {rules.max_pixels:,} pixels are accepted."
    if info.frame_rate is not None and info.frame_rate > rules.max_fps:
        return f"The video has {info.frame_rate:g} frames a second; at most {rules.max_fps:g} are accepted."
    return None


def _stream(raw: dict[str, Any]) -> StreamInfo:
    kind = str(raw.get("codec_type") or "data")
    return StreamInfo(
        index=int(raw.get("index", 0)),
        kind=kind,
        codec=str(raw.get("codec_name") or "unknown"),
        width=_int(raw.get("width")) if kind == "video" else None,
        height=_int(raw.get("height")) if kind == "video" else None,
        frame_rate=_rate(raw.get("avg_frame_rate")) or _rate(raw.get("r_frame_rate")) if kind == "video" else None,
        sample_rate=_int(raw.get("sample_rate")) if kind == "audio" else None,
        channels=_int(raw.get("channels")) if kind == "audio" else None,
    )


def _duration(fmt: dict[str, Any], video: dict[str, Any]) -> float:
    """The longest duration the headers claim (a file may claim less in one place than another)."""
    claims = [_float(fmt.get("duration")), _float(video.get("duration"))]
    found = [claim for claim in claims if claim is not None]
    return max(found) if found else math.inf


def _rotation(video: dict[str, Any]) -> int:
    for side in video.get("side_data_list") or []:
        if "rotation" in side:
            return int(abs(_float(side["rotation"]) or 0))
    return int(abs(_float((video.get("tags") or {}).get("rotate")) or 0))


def _rate(value: object) -> float | None:
    if not isinstance(value, str) or "/" not in value:
        return None
    numerator, denominator = (_float(part) for part in value.split("/", 1))
    if not numerator or not denominator:
        return None
    return round(numerator / denominator, 3)


def _int(value: object) -> int | None:
    try:
        return int(str(value))
    except ValueError:
        return None


def _float(value: object) -> float | None:
    try:
        number = float(str(value))
    except ValueError:
        return None
    return number if math.isfinite(number) else None
