"""Jobs consumed by services/worker-media: image variants made with Pillow from an upload or a URL.

Each image job is a source plus options; the options models are shared with ``image.batch``,
which applies one operation to many sources and reports per item.
"""

from __future__ import annotations

from typing import ClassVar, Literal

from pydantic import BaseModel, Field, model_validator

from offload.contracts._base import JobContract, Payload, RetryPolicy

MEDIA_QUEUE = "media"

ImageFormat = Literal["jpeg", "png", "webp", "avif"]
Fit = Literal["inside", "cover", "contain"]
Animated = Literal["reject", "first_frame"]
#: ``preserve`` keeps an embedded ICC profile in the outputs (CMYK is always converted to sRGB);
#: ``srgb`` converts the pixels to sRGB and drops the profile: smaller files that look the same.
Colour = Literal["preserve", "srgb"]
#: The most sources one ``image.batch`` job may carry.
MAX_BATCH_ITEMS = 100


class ImageSource(Payload):
    """Where the image comes from: an upload id (``POST /v1/uploads``) or a public URL, never bytes."""

    #: The URL the worker fetches: vetted by the SSRF guard at submission and again when fetched.
    fetched_urls: ClassVar[tuple[str, ...]] = ("url",)
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


def _avatar_sizes() -> list[int]:
    return [32, 64, 128, 256]


class ResizeOptions(Payload):
    """Several sizes of one image, in one or more formats, from a single decode."""

    sizes: list[TargetSize] = Field(min_length=1, max_length=10)
    formats: list[ImageFormat] = Field(default_factory=_jpeg_only, min_length=1, max_length=4)
    quality: int = Field(default=85, ge=1, le=100)
    enlarge: bool = Field(default=False, description="Allow outputs larger than the source.")
    keep_metadata: bool = Field(default=False, description="Keep EXIF (orientation is applied either way).")
    animated: Animated = "reject"
    colour: Colour = "preserve"


class ThumbnailOptions(Payload):
    """One small image, fast: the longest side becomes ``size``."""

    size: int = Field(default=400, ge=16, le=1024)
    format: ImageFormat = "jpeg"
    quality: int = Field(default=80, ge=1, le=100)
    colour: Colour = "preserve"


class AvatarOptions(Payload):
    """A set of square images of exactly the given sizes (small sources are enlarged to fill them).

    ``centre`` crops the middle square; ``smart`` keeps the square with the most detail (an entropy
    search, no face detection), which keeps a subject that is off-centre.
    """

    sizes: list[int] = Field(default_factory=_avatar_sizes, min_length=1, max_length=8)
    crop: Literal["centre", "smart"] = "centre"
    format: ImageFormat = "webp"
    quality: int = Field(default=85, ge=1, le=100)
    colour: Colour = "preserve"

    @model_validator(mode="after")
    def _sizes_in_range(self) -> AvatarOptions:
        bad = [size for size in self.sizes if not 16 <= size <= 1024]
        if bad:
            raise ValueError(f"avatar sizes must be 16 to 1024 pixels, not {bad}")
        if len(set(self.sizes)) != len(self.sizes):
            raise ValueError("avatar sizes must be distinct")
        return self


class OptimizeOptions(Payload):
    """Re-encode to save bytes, at full size.

    ``same`` keeps the source's format (a GIF becomes a PNG). If the re-encoded file is not smaller,
    the original bytes are kept instead, with metadata removed losslessly where the format allows
    (JPEG, PNG); a source whose metadata cannot be removed that way gets the re-encoded file even
    if larger, so stripping is never silently skipped.
    """

    format: Literal["same", "jpeg", "png", "webp", "avif"] = "same"
    quality: int = Field(default=80, ge=1, le=100)
    keep_metadata: bool = Field(default=False, description="Keep EXIF (orientation is applied either way).")
    colour: Colour = "preserve"


class ResizePayload(ResizeOptions):
    """``image.resize``: several sizes of one image, in one or more formats, from a single decode."""

    source: ImageSource


class ThumbnailPayload(ThumbnailOptions):
    """``image.thumbnail``: one small image, fast."""

    source: ImageSource


class AvatarPayload(AvatarOptions):
    """``image.avatar``: a square set such as 32/64/128/256."""

    source: ImageSource


class OptimizePayload(OptimizeOptions):
    """``image.optimize``: the same image in fewer bytes."""

    source: ImageSource


class BatchOperation(Payload):
    """What ``image.batch`` does to every source: exactly one of the operations, with its options."""

    resize: ResizeOptions | None = None
    thumbnail: ThumbnailOptions | None = None
    avatar: AvatarOptions | None = None
    optimize: OptimizeOptions | None = None

    @model_validator(mode="after")
    def _exactly_one(self) -> BatchOperation:
        given = [name for name in ("resize", "thumbnail", "avatar", "optimize") if getattr(self, name) is not None]
        if len(given) != 1:
            raise ValueError("give exactly one of resize, thumbnail, avatar and optimize")
        return self


class BatchPayload(Payload):
    """``image.batch``: one operation applied to many sources, each with its own outcome."""

    sources: list[ImageSource] = Field(min_length=1, max_length=MAX_BATCH_ITEMS)
    operation: BatchOperation


class CleanupPayload(Payload):
    """Remove uploads and outputs whose last write is older than ``older_than`` seconds."""

    older_than: int | None = Field(
        default=None, ge=3600, description="Seconds; defaults to the OFFLOAD_STORAGE_RETENTION setting."
    )
    dry_run: bool = Field(default=False, description="Count what would go without removing it.")


class CleanupResult(BaseModel):
    """What ``storage.cleanup`` removed."""

    folders: int
    files: int
    bytes: int
    dry_run: bool


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


class OptimizeResult(ImageResult):
    """What ``image.optimize`` returns: one output, and what it saved."""

    bytes_before: int
    bytes_after: int
    kept_original: bool = Field(description="True when re-encoding would not have saved bytes.")


class ItemError(BaseModel):
    """Why one item of a batch failed."""

    code: str
    message: str
    retryable: bool = Field(description="True when the same item may succeed if submitted again later.")


class BatchItemResult(BaseModel):
    """The outcome for one source of a batch (in the order they were given)."""

    index: int
    status: Literal["succeeded", "failed"]
    result: OptimizeResult | ImageResult | None = None
    error: ItemError | None = None


class BatchResult(BaseModel):
    """What ``image.batch`` returns."""

    succeeded: int
    failed: int
    items: list[BatchItemResult]


def _image_job(
    name: str, payload: type[Payload], result: type[BaseModel], description: str, limit: float
) -> JobContract:
    return JobContract(
        name=name,
        queue=MEDIA_QUEUE,
        payload=payload,
        result=result,
        description=description,
        retry=RetryPolicy(max_retries=2, min_backoff=2, max_backoff=60),
        time_limit=limit,
    )


RESIZE = _image_job(
    "image.resize",
    ResizePayload,
    ImageResult,
    "Resizes an image to several sizes and formats (EXIF orientation applied, metadata stripped).",
    120,
)
THUMBNAIL = _image_job(
    "image.thumbnail", ThumbnailPayload, ImageResult, "Makes one small thumbnail, decoding JPEGs at reduced size.", 60
)
AVATAR = _image_job(
    "image.avatar", AvatarPayload, ImageResult, "Makes a set of square avatars, centre- or smart-cropped.", 60
)
OPTIMIZE = _image_job(
    "image.optimize",
    OptimizePayload,
    OptimizeResult,
    "Re-encodes an image to save bytes, keeping the original when that would not shrink it.",
    120,
)
BATCH = _image_job(
    "image.batch",
    BatchPayload,
    BatchResult,
    f"Applies one image operation to up to {MAX_BATCH_ITEMS} sources, with a result per source.",
    900,
)

#: The retention sweep of the storage the media worker mounts; Offload's own (the scheduler runs it).
CLEANUP = JobContract(
    name="storage.cleanup",
    queue=MEDIA_QUEUE,
    payload=CleanupPayload,
    result=CleanupResult,
    description="Removes uploads and job outputs older than the retention setting.",
    retry=RetryPolicy(max_retries=1, min_backoff=60, max_backoff=300),
    time_limit=900,
    internal=True,
)

CONTRACTS = (RESIZE, THUMBNAIL, AVATAR, OPTIMIZE, BATCH, CLEANUP)
