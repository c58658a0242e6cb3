"""Settings of the media worker: the common ``OFFLOAD_*`` ones plus image limits."""

from __future__ import annotations

from pydantic import Field

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
