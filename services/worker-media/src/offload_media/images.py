"""Image pipelines with Pillow: open safely, decode once at reduced size, make every variant.

Safety first (reliability-security.md §7.4): only JPEG, PNG, GIF and WebP are opened (never EPS,
which would run Ghostscript); the pixel count is checked from the header before anything is
decoded; animated images are refused or reduced to their first frame; truncated files fail.
Speed next: JPEGs are decoded at the smallest scale that still covers the largest output
(``draft``), every size comes from that one decode (``reducing_gap`` shrinks by whole factors
before the final bicubic pass), and small sizes from larger outputs already made.
"""

from __future__ import annotations

import io
import math
import threading
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import BinaryIO

from PIL import Image, ImageCms, ImageOps, UnidentifiedImageError

from offload.contracts.media import ImageFormat, TargetSize
from offload.errors import PermanentJobError

#: Formats Pillow may open: an allow-list, so nothing else (EPS, PSD, FITS...) is ever parsed.
ALLOWED_FORMATS = ("JPEG", "PNG", "GIF", "WEBP")
EXTENSIONS = {"jpeg": "jpg", "png": "png", "webp": "webp", "avif": "avif", "gif": "gif"}
#: Pillow's bicubic is an area-aware convolution when shrinking (support 2 source pixels per output
#: pixel and side); Lanczos (support 3) costs 1.5× as much for a barely sharper result.
RESAMPLE = Image.Resampling.BICUBIC
_SRGB = ImageCms.createProfile("sRGB")


@dataclass(frozen=True)
class Limits:
    """Bounds for one image."""

    max_pixels: int
    max_frames: int


class MemoryBudget:
    """Bounds the decoded pixels a worker process holds at once, shared by its threads.

    A 12 MP photo is 36 MB once decoded, plus the intermediate sizes made from it; four threads
    doing that together would take a worker far past its memory target. Each job reserves what
    its decode will need (:func:`decoded_bytes`) before decoding and gives it back when its outputs
    are written; a job that does not fit waits. One job may always run, however large (so an image
    bigger than the budget runs alone rather than never). Small images (thumbnails decoded at 1/8
    scale) fit many at a time.
    """

    def __init__(self, limit_bytes: int) -> None:
        self.limit = limit_bytes
        self.held = 0
        self.condition = threading.Condition()

    @contextmanager
    def reserve(self, nbytes: int) -> Iterator[None]:
        """Hold ``nbytes`` of the budget for the duration of the block (waiting for room if needed)."""
        with self.condition:
            self.condition.wait_for(lambda: self.held == 0 or self.held + nbytes <= self.limit)
            self.held += nbytes
        try:
            yield
        finally:
            with self.condition:
                self.held -= nbytes
                self.condition.notify_all()


def decoded_bytes(image: Image.Image, needed: tuple[int, int]) -> int:
    """What decoding ``image`` for outputs up to ``needed`` will hold: the decode and its intermediates.

    JPEGs decode at the smallest 1/1, 1/2, 1/4 or 1/8 scale that still covers ``needed`` (``draft``);
    other formats decode whole. The factor 1.6 covers the resized copies made from the decode.
    """
    width, height = image.size
    scale = 1
    if image.format == "JPEG":
        longest_needed = max(needed)
        while scale < 8 and max(width, height) // (scale * 2) >= longest_needed:
            scale *= 2
    channels = 4 if image.mode in ("RGBA", "CMYK", "LA", "PA") else 3
    return int((width // scale) * (height // scale) * channels * 1.6)


@dataclass(frozen=True)
class Variant:
    """One encoded output."""

    name: str
    format: ImageFormat
    width: int
    height: int
    data: bytes


def open_image(source: BinaryIO, limits: Limits, *, first_frame: bool = False) -> Image.Image:
    """Open ``source`` lazily (header only) and check it against ``limits``.

    Raises:
        PermanentJobError: ``unsupported_format``, ``image_too_large``, ``animated_image`` or
            ``too_many_frames``.
    """
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image = Image.open(source, formats=ALLOWED_FORMATS)
    except UnidentifiedImageError:
        raise PermanentJobError("The file is not a JPEG, PNG, GIF or WebP image.", code="unsupported_format") from None
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise PermanentJobError("The image has too many pixels.", code="image_too_large") from None
    width, height = image.size
    if width * height > limits.max_pixels:
        raise PermanentJobError(
            f"The image is {width}×{height} pixels, more than the {limits.max_pixels:,} allowed.",
            code="image_too_large",
        )
    frames = getattr(image, "n_frames", 1)
    if frames > 1 and not first_frame:
        raise PermanentJobError("The image is animated; ask for its first frame to use it.", code="animated_image")
    if frames > limits.max_frames:
        raise PermanentJobError(
            f"The image has {frames} frames, more than {limits.max_frames}.", code="too_many_frames"
        )
    return image


def decode(image: Image.Image, needed: tuple[int, int]) -> Image.Image:
    """Decode (at reduced size if the format allows), apply EXIF orientation, normalise the mode.

    ``needed`` is the largest output, in the displayed orientation.

    Raises:
        PermanentJobError: ``invalid_image`` for truncated or corrupt data.
    """
    try:
        if image.format == "JPEG":
            rotated = image.getexif().get(0x0112, 1) in (5, 6, 7, 8)
            image.draft("RGB", (needed[1], needed[0]) if rotated else needed)
        if image.getexif().get(0x0112, 1) in (2, 3, 4, 5, 6, 7, 8):
            upright = ImageOps.exif_transpose(image)  # a rotated copy
        else:
            upright = image  # already upright: no copy of the pixels
        upright.load()
    except (OSError, SyntaxError, ValueError) as exc:
        raise PermanentJobError(f"The image data is truncated or corrupt: {exc}.", code="invalid_image") from None
    return _normalise(upright)


#: The largest colour profile outputs inherit. RGB working-space and display profiles are a few
#: kilobytes (sRGB 3 KB, Display P3 0.5 KB, calibrated displays tens of KB); a bigger one would be
#: copied into every output, however small (reliability-security.md §7.4 row 30), so its effect is
#: applied to the pixels instead (converted to sRGB) and the profile dropped.
MAX_ICC_BYTES = 128 * 1024
#: The most EXIF kept on request (``keep_metadata``): what one JPEG APP1 segment can hold. Larger
#: EXIF (possible in PNG and WebP) is dropped rather than failing the encoder or bloating outputs.
MAX_EXIF_BYTES = 65_533

#: What of ``Image.info`` outputs may inherit: the colour profile. Everything else (EXIF, XMP,
#: comments, Photoshop blocks, text chunks) is metadata, and Pillow's encoders would copy some of
#: it (a JPEG's comment) from ``info`` into the output.
KEPT_INFO = ("icc_profile",)


def _normalise(image: Image.Image) -> Image.Image:
    """``image`` in RGB, RGBA or L, with nothing in ``info`` but its colour profile."""
    converted = _to_output_mode(image)
    kept = {key: converted.info[key] for key in KEPT_INFO if key in converted.info}
    converted.info.clear()
    converted.info.update(kept)
    return converted


def _to_output_mode(image: Image.Image) -> Image.Image:
    icc = image.info.get("icc_profile")
    if image.mode == "CMYK":
        if icc:
            try:
                source = ImageCms.ImageCmsProfile(io.BytesIO(icc))
                converted = ImageCms.profileToProfile(image, source, _SRGB, outputMode="RGB")
            except (ImageCms.PyCMSError, OSError):
                converted = None  # an unreadable profile: the naive conversion below
            if converted is not None:
                converted.info.pop("icc_profile", None)
                return converted
        rgb = image.convert("RGB")
        rgb.info.pop("icc_profile", None)  # a CMYK profile does not describe RGB pixels
        return rgb
    if image.mode.startswith("I"):  # 16- or 32-bit grey: scale to 8 bits (convert would clip at 255)
        image = image.convert("I").point(lambda v: v * (1 / 257)).convert("L")
        image.info.pop("transparency", None)  # a 16-bit colour key matches no 8-bit value
    if "transparency" in image.info and image.mode in ("P", "L", "RGB"):
        return image.convert("RGBA")  # a palette entry or colour key marks the transparent pixels
    if image.mode == "P":
        return image.convert("RGB")
    if image.mode in ("LA", "PA"):
        return image.convert("RGBA")
    if image.mode not in ("RGB", "RGBA", "L"):
        return image.convert("RGB")
    return image


def load(
    image: Image.Image,
    needed: tuple[int, int],
    *,
    keep_metadata: bool = False,
    srgb: bool = False,
) -> tuple[dict[str, int | str], Image.Image, bytes | None]:
    """Decode ``image`` (opened by :func:`open_image`) once, for outputs up to ``needed`` (:func:`needed_size`).

    Returns the source's size and format, the decoded upright image (converted to sRGB when
    ``srgb``, or when its profile is over :data:`MAX_ICC_BYTES`), and the EXIF to write into
    outputs (only when ``keep_metadata`` and at most :data:`MAX_EXIF_BYTES`; its orientation reset,
    since the pixels are upright).

    Raises:
        PermanentJobError: ``invalid_image`` for truncated or corrupt data.
    """
    original: dict[str, int | str] = {
        "width": image.width,
        "height": image.height,
        "format": (image.format or "").lower(),
    }
    exif = None
    if keep_metadata:
        kept = image.getexif()
        kept[0x0112] = 1
        exif = bytes(kept.tobytes())
        if len(exif) > MAX_EXIF_BYTES:
            exif = None
    decoded = decode(image, needed)
    oversized = len(decoded.info.get("icc_profile") or b"") > MAX_ICC_BYTES
    return original, to_srgb(decoded) if srgb or oversized else decoded, exif


def to_srgb(image: Image.Image) -> Image.Image:
    """``image`` converted from its embedded ICC profile to sRGB, without the profile.

    An image without a profile is taken to be sRGB already (as browsers do); an unreadable
    profile is dropped and the pixels kept as they are.
    """
    icc = image.info.pop("icc_profile", None)
    if not icc or image.mode not in ("RGB", "RGBA"):
        return image
    try:
        source = ImageCms.ImageCmsProfile(io.BytesIO(icc))
        converted = ImageCms.profileToProfile(image, source, _SRGB, outputMode=image.mode)
    except (ImageCms.PyCMSError, OSError):
        return image
    if converted is None:
        return image
    converted.info.pop("icc_profile", None)  # Pillow attaches the sRGB profile; sRGB is what untagged means
    return converted


def upright_size(image: Image.Image) -> tuple[int, int]:
    """The size ``image`` will have once its EXIF orientation is applied."""
    rotated = image.getexif().get(0x0112, 1) in (5, 6, 7, 8)
    return (image.height, image.width) if rotated else image.size


def output_size(source: tuple[int, int], target: TargetSize, *, enlarge: bool) -> tuple[int, int, int, int]:
    """``(resize_w, resize_h, box_w, box_h)``: the resampled size and the final canvas for ``target``."""
    sw, sh = source
    bw = target.width or math.inf
    bh = target.height or math.inf
    if target.fit == "cover":
        scale = max(bw / sw, bh / sh)
    else:
        scale = min(bw / sw, bh / sh)
    if not enlarge:
        scale = min(scale, 1.0)
    rw, rh = max(1, round(sw * scale)), max(1, round(sh * scale))
    if target.fit == "inside":
        return rw, rh, rw, rh
    box = (int(bw), int(bh))
    if not enlarge and target.fit == "cover" and scale == 1.0 and (sw < box[0] or sh < box[1]):
        ratio = min(sw / box[0], sh / box[1])  # crop to the box's shape without upscaling
        box = (max(1, round(box[0] * ratio)), max(1, round(box[1] * ratio)))
    return rw, rh, box[0], box[1]


def needed_size(source: tuple[int, int], targets: list[TargetSize], *, enlarge: bool) -> tuple[int, int]:
    """The largest resampled size any target needs: what to decode for."""
    sizes = [output_size(source, t, enlarge=enlarge)[:2] for t in targets]
    return max(w for w, _ in sizes), max(h for _, h in sizes)


def variants(
    image: Image.Image,
    targets: list[TargetSize],
    formats: list[ImageFormat],
    *,
    quality: int,
    enlarge: bool,
    exif: bytes | None = None,
) -> Iterator[Variant]:
    """Each target in each format, from one decoded image, largest first (one size at a time, for progress).

    Smaller sizes are resampled from a larger output already made when it is at least twice their
    size (2048 px to 1024 px costs a quarter of doing it from 12 MP again). Output names are unique
    per size and format.
    """
    icc = image.info.get("icc_profile")
    seen: set[str] = set()
    plans = [(target, output_size(image.size, target, enlarge=enlarge)) for target in targets]
    plans.sort(key=lambda plan: -(plan[1][0] * plan[1][1]))
    made: list[Image.Image] = []
    for target, (rw, rh, bw, bh) in plans:
        resized = _resample(image, made, (rw, rh))
        made.append(resized)
        framed = _frame(resized, target, (bw, bh))
        for fmt in formats:
            name = f"{framed.width}x{framed.height}.{EXTENSIONS[fmt]}"
            if name in seen:
                continue
            seen.add(name)
            yield Variant(
                name, fmt, framed.width, framed.height, encode(framed, fmt, quality=quality, icc=icc, exif=exif)
            )


def _resample(image: Image.Image, made: list[Image.Image], size: tuple[int, int]) -> Image.Image:
    """``image`` at ``size``, from the smallest earlier output at least twice as large, if any."""
    if image.size == size:
        return image
    larger = [m for m in made if m.width >= 2 * size[0] and m.height >= 2 * size[1]]
    if larger:
        source = min(larger, key=lambda m: m.width * m.height)
        return source.resize(size, RESAMPLE, reducing_gap=3.0)
    return image.resize(size, RESAMPLE, reducing_gap=3.0)


def _frame(image: Image.Image, target: TargetSize, box: tuple[int, int]) -> Image.Image:
    if target.fit == "cover" and image.size != box:
        left = (image.width - box[0]) // 2
        top = (image.height - box[1]) // 2
        return image.crop((left, top, left + box[0], top + box[1]))
    if target.fit == "contain" and image.size != box:
        canvas = Image.new("RGBA" if image.mode == "RGBA" else "RGB", box, (255, 255, 255, 0))
        canvas.paste(image, ((box[0] - image.width) // 2, (box[1] - image.height) // 2))
        return canvas
    return image


def encode(
    image: Image.Image,
    fmt: ImageFormat,
    *,
    quality: int,
    icc: bytes | None,
    exif: bytes | None,
    smallest: bool = False,
) -> bytes:
    """Encode ``image``; metadata is written only when given (stripped otherwise).

    ``smallest`` spends more encoder time for fewer bytes (``image.optimize``): optimised Huffman
    tables for JPEG, zlib level 9 for PNG, the slowest WebP method, a slower AVIF speed.
    """
    buffer = io.BytesIO()
    extra: dict[str, object] = {}
    if icc:
        extra["icc_profile"] = icc
    if exif:
        extra["exif"] = exif
    if fmt == "jpeg":
        if image.mode in ("RGBA", "LA", "P"):
            background = Image.new("RGB", image.size, (255, 255, 255))
            background.paste(image, mask=image.convert("RGBA").split()[-1])
            image = background
        image.save(buffer, "JPEG", quality=quality, progressive=True, optimize=smallest, **extra)
    elif fmt == "webp":
        image.save(buffer, "WEBP", quality=quality, method=6 if smallest else 4, **extra)
    elif fmt == "avif":
        # libavif's speed 8 encodes a 1 MP image in ~40 ms at about WebP's cost; 6 saves ~5 % more
        # bytes for 5x the time, worth it only when asked for the smallest file.
        image = image if image.mode in ("RGB", "RGBA") else image.convert("RGB")
        image.save(buffer, "AVIF", quality=quality, speed=6 if smallest else 8, **extra)
    else:
        image.save(buffer, "PNG", compress_level=9 if smallest else 6, **extra)
    return buffer.getvalue()
