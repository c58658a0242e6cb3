"""Payloads and results of the video jobs (``video.probe``, ``video.transcode``, ``video.poster``).

Declared here, beside their handlers, rather than in :mod:`offload.contracts`: the API learns
them from the media worker's registration (docs/writing-jobs.md).
"""

from __future__ import annotations

from typing import ClassVar, Literal

from pydantic import BaseModel, Field, model_validator

from offload.contracts import Payload

#: Output heights a transcode may ask for (a source smaller than one keeps its own height).
Height = Literal[144, 240, 360, 480, 720, 1080, 1440, 2160]
VideoFormat = Literal["mp4", "webm"]
PosterFormat = Literal["jpeg", "webp"]
#: Most renditions one ``video.transcode`` job may ask for.
MAX_RENDITIONS = 6


class VideoSource(Payload):
    """Where the video comes from: an upload id (``POST /v1/uploads``) or a public URL, never bytes."""

    #: The URL the worker fetches: vetted by the SSRF guard at submission and again when fetched.
    fetched_urls: ClassVar[tuple[str, ...]] = ("url",)
    upload_id: str | None = Field(default=None, pattern=r"^[0-9a-f-]{36}$")
    url: str | None = Field(default=None, max_length=2048)

    @model_validator(mode="after")
    def _exactly_one(self) -> VideoSource:
        if (self.upload_id is None) == (self.url is None):
            raise ValueError("give exactly one of upload_id and url")
        return self


class ProbePayload(Payload):
    """``video.probe``: what a video holds, read from its headers."""

    source: VideoSource


class Rendition(Payload):
    """One output of a transcode: H.264/AAC in MP4 or VP9/Opus in WebM, at a height, never upscaled."""

    format: VideoFormat = "mp4"
    height: Height = 360
    video_kbps: int | None = Field(
        default=None, ge=100, le=20_000, description="Video bitrate; by default one suited to the height."
    )
    audio_kbps: Literal[48, 64, 96, 128, 160, 192] = 96


def _one_rendition() -> list[Rendition]:
    return [Rendition()]


class TranscodePayload(Payload):
    """``video.transcode``: one or more renditions of a video from a single decode."""

    source: VideoSource
    outputs: list[Rendition] = Field(default_factory=_one_rendition, min_length=1, max_length=MAX_RENDITIONS)


class PosterPayload(Payload):
    """``video.poster``: one frame as an image, at a time or (by default) the first that is not black."""

    source: VideoSource
    at: float | None = Field(
        default=None, ge=0, le=86_400, description="Seconds into the video; omitted: the first non-black frame."
    )
    format: PosterFormat = "jpeg"
    height: int | None = Field(default=None, ge=16, le=2160, description="Output height; never above the source's.")
    quality: int = Field(default=85, ge=1, le=100)


class StreamInfo(BaseModel):
    """One stream of a probed file."""

    index: int
    kind: str
    codec: str
    width: int | None = None
    height: int | None = None
    frame_rate: float | None = None
    sample_rate: int | None = None
    channels: int | None = None


class VideoInfo(BaseModel):
    """What ffprobe read from a file's headers: container, duration, size and streams."""

    container: str
    duration: float
    bytes: int
    bit_rate: int | None = None
    width: int | None = Field(default=None, description="Of the first video stream, as displayed (rotation applied).")
    height: int | None = None
    frame_rate: float | None = None
    video_codec: str | None = None
    audio_codec: str | None = None
    streams: list[StreamInfo]


class ProbeResult(VideoInfo):
    """``video.probe``'s result: the file's description, and whether transcode and poster jobs would take it."""

    within_limits: bool
    limit_problem: str | None = Field(default=None, description="Why a transcode would refuse it (input_too_large).")


class VideoOutput(BaseModel):
    """One file a transcode wrote."""

    name: str
    format: VideoFormat
    video_codec: str
    audio_codec: str | None
    width: int
    height: int
    requested_height: int
    video_kbps: int
    bytes: int
    url: str
    note: str | None = Field(default=None, description="Set when the output differs from the request (no upscaling).")


class TranscodeResult(BaseModel):
    """``video.transcode``'s result: the source's description and each rendition, in the order asked."""

    source: VideoInfo
    outputs: list[VideoOutput]


class PosterResult(BaseModel):
    """``video.poster``'s result: the frame's time and the stored image."""

    source: VideoInfo
    name: str
    format: PosterFormat
    time: float
    width: int
    height: int
    bytes: int
    url: str
    note: str | None = None
