"""Image pipelines with Pillow: open safely, decode once at reduced size, make every variant.

Safety first (reliability-security.md §7.4): only JPEG, PNG, GIF and WebP are opened (never EPS,
which would run Ghostscript); the pixel count is checked from the header before anything is
decoded; animated images are refused or reduced to their first frame; truncated files fail.
Speed next: JPEGs are decoded at the smallest scale that still covers the largest output
(``draft``), and every size is resampled from that one decode (``reducing_gap`` shrinks by whole
factors before the final Lanczos pass).
"""

from __future__ import annotations

import io
import math
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from typing import BinaryIO

from PIL import Image, ImageCms, ImageOps, UnidentifiedImageError

from offload.contracts.media import ImageFormat, TargetSize
from offload.errors import PermanentJobError

#: Formats Pillow may open: an allow-list, so nothing else (EPS, PSD, FITS...) is ever parsed.
ALLOWED_FORMATS = ("JPEG", "PNG", "GIF", "WEBP")
EXTENSIONS = {"jpeg": "jpg", "png": "png", "webp": "webp"}
RESAMPLE = Image.Resampling.LANCZOS
_SRGB = ImageCms.createProfile("sRGB")


@dataclass(frozen=True)
class Limits:
    """Bounds for one image."""

    max_pixels: int
    max_frames: int


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
        upright = ImageOps.exif_transpose(image)
        upright.load()
    except (OSError, SyntaxError, ValueError) as exc:
        raise PermanentJobError(f"The image data is truncated or corrupt: {exc}.", code="invalid_image") from None
    return _normalise(upright)


def _normalise(image: Image.Image) -> Image.Image:
    icc = image.info.get("icc_profile")
    if image.mode == "CMYK":
        if icc:
            source = ImageCms.ImageCmsProfile(io.BytesIO(icc))
            converted = ImageCms.profileToProfile(image, source, _SRGB, outputMode="RGB")
            if converted is not None:
                converted.info.pop("icc_profile", None)
                return converted
        return image.convert("RGB")
    if image.mode == "P":
        return image.convert("RGBA" if "transparency" in image.info else "RGB")
    if image.mode in ("LA", "PA"):
        return image.convert("RGBA")
    if image.mode not in ("RGB", "RGBA", "L"):
        return image.convert("RGB")
    return image


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
    """Each target in each format, from one decoded image (yielded one size at a time, for progress)."""
    icc = image.info.get("icc_profile")
    seen: set[str] = set()
    for target in targets:
        rw, rh, bw, bh = output_size(image.size, target, enlarge=enlarge)
        resized = image if (rw, rh) == image.size else image.resize((rw, rh), RESAMPLE, reducing_gap=3.0)
        framed = _frame(resized, target, (bw, bh))
        for fmt in formats:
            name = f"{framed.width}x{framed.height}.{EXTENSIONS[fmt]}"
            if name in seen:
                continue
            seen.add(name)
            yield Variant(
                name, fmt, framed.width, framed.height, encode(framed, fmt, quality=quality, icc=icc, exif=exif)
            )


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


def encode(image: Image.Image, fmt: ImageFormat, *, quality: int, icc: bytes | None, exif: bytes | None) -> bytes:
    """Encode ``image``; metadata is written only when given (stripped otherwise)."""
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
        image.save(buffer, "JPEG", quality=quality, progressive=True, optimize=False, **extra)
    elif fmt == "webp":
        image.save(buffer, "WEBP", quality=quality, method=4, **extra)
    else:
        image.save(buffer, "PNG", compress_level=6, **extra)
    return buffer.getvalue()
