"""Settings of the media worker: the common ``OFFLOAD_*`` ones plus image and video limits."""

from __future__ import annotations

from typing import Annotated

from pydantic import Field, field_validator
from pydantic_settings import NoDecode

from offload.settings import Settings


class MediaSettings(Settings):
    """Limits that keep hostile images from hurting the worker (reliability-security.md §7.4)."""

    #: Most pixels (width × height) an image may have; checked from the header, before decoding.
    max_pixels: int = Field(default=40_000_000, ge=1_000_000, le=178_956_970)
    #: Most frames an animated image may have (when its first frame is used).
    max_frames: int = Field(default=1000, ge=1)
    #: Largest source image in bytes (uploads are limited by OFFLOAD_MAX_UPLOAD_BYTES).
    max_source_bytes: int = Field(default=50 * 1024 * 1024, ge=1024)
    #: Megabytes of decoded pixels one worker process holds at once, all threads together (a 12 MP
    #: photo needs about 58); a job that does not fit waits for one to finish.
    memory_budget_mb: int = Field(default=64, ge=16, le=65_536)
    #: Seconds to fetch a source URL.
    fetch_timeout: float = Field(default=20.0, gt=0, le=120)
    #: Niceness of image worker processes: decoding is CPU work that can wait a moment for an email
    #: (``offload.worker.priority``).
    worker_nice: int = Field(default=15, ge=0, le=19)

    # -- video (ffmpeg/ffprobe children; docs/video.md) ------------------------------------------
    #: Largest source video in bytes, fetched from a URL or read from an upload (uploads are also
    #: limited by the API's OFFLOAD_MAX_VIDEO_UPLOAD_BYTES).
    video_max_source_bytes: int = Field(default=512 * 1024 * 1024, ge=1024)
    #: Longest source video in seconds (from the probed header, before decoding).
    video_max_duration: float = Field(default=900.0, gt=0, le=24 * 3600)
    #: Most pixels of a source frame (width × height; 4K UHD by default), from the header.
    video_max_pixels: int = Field(default=3840 * 2160, ge=64 * 64)
    #: Highest source frame rate, frames per second.
    video_max_fps: float = Field(default=120.0, gt=0, le=1000)
    #: Most streams (video, audio, subtitles, data) a source may have.
    video_max_streams: int = Field(default=8, ge=1, le=64)
    #: Demuxers a source may be read with (ffmpeg's names; playlists such as hls and concat are
    #: refused whatever this says).
    video_containers: Annotated[list[str], NoDecode] = Field(default_factory=lambda: ["mov", "matroska", "avi"])
    #: Codecs a source's video and audio streams may have (ffmpeg's names).
    video_codecs: Annotated[list[str], NoDecode] = Field(
        default_factory=lambda: [
            *("h264", "hevc", "vp8", "vp9", "av1", "mpeg4", "mjpeg"),
            *("aac", "mp3", "opus", "vorbis", "flac", "alac", "pcm_s16le", "pcm_s24le"),
        ]
    )
    #: CPU seconds one ffmpeg or ffprobe child may use (RLIMIT_CPU); past it the child is killed.
    video_cpu_seconds: int = Field(default=3600, ge=1)
    #: Megabytes of address space one ffmpeg or ffprobe child may map (RLIMIT_AS).
    video_memory_mb: int = Field(default=3072, ge=256)
    #: Threads one ffmpeg child encodes with (``-threads``).
    video_threads: int = Field(default=2, ge=1, le=64)
    #: Folder a video job keeps its source and outputs in while it runs (empty: the system's
    #: temporary folder). Give a disk with room for a few sources and their outputs, not a tmpfs.
    video_work_dir: str = ""
    #: The ffmpeg and ffprobe programs (a name found on PATH, or a path).
    ffmpeg: str = "ffmpeg"
    ffprobe: str = "ffprobe"

    @field_validator("video_containers", "video_codecs", mode="before")
    @classmethod
    def _comma_separated(cls, value: object) -> object:
        if isinstance(value, str):
            return [item.strip() for item in value.split(",") if item.strip()]
        return value
