"""Jobs consumed by services/worker-media: image variants made with Pillow from an upload or a URL."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field, model_validator

from offload.contracts._base import JobContract, Payload, RetryPolicy

MEDIA_QUEUE = "media"

ImageFormat = Literal["jpeg", "png", "webp"]
Fit = Literal["inside", "cover", "contain"]


class ImageSource(Payload):
    """Where the image comes from: an upload id (``POST /v1/uploads``) or a public URL, never bytes."""

    upload_id: str | None = Field(default=None, pattern=r"^[0-9a-f-]{36}$")
    url: str | None = Field(default=None, max_length=2048)

    @model_validator(mode="after")
    def _exactly_one(self) -> ImageSource:
        if (self.upload_id is None) == (self.url is None):
            raise ValueError("give exactly one of upload_id and url")
        return self


class TargetSize(Payload):
    """One output size.

    ``inside`` keeps the aspect ratio within the box; ``cover`` fills it and crops the centre;
    ``contain`` fits inside and pads to the box.
    """

    width: int | None = Field(default=None, ge=1, le=8192)
    height: int | None = Field(default=None, ge=1, le=8192)
    fit: Fit = "inside"

    @model_validator(mode="after")
    def _some_side(self) -> TargetSize:
        if self.width is None and self.height is None:
            raise ValueError("give a width, a height or both")
        if self.fit != "inside" and (self.width is None or self.height is None):
            raise ValueError(f"fit {self.fit!r} needs both width and height")
        return self


def _jpeg_only() -> list[ImageFormat]:
    return ["jpeg"]


class ResizePayload(Payload):
    """Several sizes of one image, in one or more formats, from a single decode."""

    source: ImageSource
    sizes: list[TargetSize] = Field(min_length=1, max_length=10)
    formats: list[ImageFormat] = Field(default_factory=_jpeg_only, min_length=1, max_length=3)
    quality: int = Field(default=85, ge=1, le=100)
    enlarge: bool = Field(default=False, description="Allow outputs larger than the source.")
    keep_metadata: bool = Field(default=False, description="Keep EXIF (orientation is applied either way).")
    animated: Literal["reject", "first_frame"] = "reject"


class ThumbnailPayload(Payload):
    """One small image, fast: the longest side becomes ``size``."""

    source: ImageSource
    size: int = Field(default=400, ge=16, le=1024)
    format: ImageFormat = "jpeg"
    quality: int = Field(default=80, ge=1, le=100)


class ImageOutput(BaseModel):
    """One file a media job wrote."""

    name: str
    format: str
    width: int
    height: int
    bytes: int
    url: str = Field(description="A signed, expiring download link (relative to the API).")


class ImageResult(BaseModel):
    """What the image jobs return."""

    source: dict[str, int | str]
    outputs: list[ImageOutput]


RESIZE = JobContract(
    name="image.resize",
    queue=MEDIA_QUEUE,
    payload=ResizePayload,
    result=ImageResult,
    description="Resizes an image to several sizes and formats (EXIF orientation applied, metadata stripped).",
    retry=RetryPolicy(max_retries=2, min_backoff=2, max_backoff=60),
    time_limit=120,
)

THUMBNAIL = JobContract(
    name="image.thumbnail",
    queue=MEDIA_QUEUE,
    payload=ThumbnailPayload,
    result=ImageResult,
    description="Makes one small thumbnail, decoding JPEGs at reduced size.",
    retry=RetryPolicy(max_retries=2, min_backoff=2, max_backoff=60),
    time_limit=60,
)

CONTRACTS = (RESIZE, THUMBNAIL)
