"""Colour handling of the image pipeline: CMYK, palettes, alpha and ICC profiles (pure, no worker)."""

from __future__ import annotations

import io

import pytest
from PIL import Image, ImageCms

from offload.contracts.media import ImageFormat, TargetSize
from offload_media import images

LIMITS = images.Limits(max_pixels=40_000_000, max_frames=10)


def _swapped_primaries_profile() -> bytes:
    """sRGB with its red and green primaries swapped: pure red in it is pure green in sRGB."""
    profile = bytearray(ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes())
    count = int.from_bytes(profile[128:132], "big")
    entries = {bytes(profile[132 + 12 * i : 136 + 12 * i]): 132 + 12 * i for i in range(count)}
    red, green = entries[b"rXYZ"], entries[b"gXYZ"]
    profile[red + 4 : red + 12], profile[green + 4 : green + 12] = (
        profile[green + 4 : green + 12],
        profile[red + 4 : red + 12],
    )
    return bytes(profile)


def _outputs(data: bytes, fmt: ImageFormat, *, srgb: bool = False) -> Image.Image:
    image = images.open_image(io.BytesIO(data), LIMITS)
    _, decoded, _ = images.load(image, image.size, srgb=srgb)
    [variant] = images.variants(decoded, [TargetSize(width=image.width)], [fmt], quality=95, enlarge=False)
    out = Image.open(io.BytesIO(variant.data))
    out.load()
    return out


def _save(image: Image.Image, fmt: str, **options: object) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt, **options)
    return buffer.getvalue()


def test_an_embedded_rgb_profile_is_preserved_by_default_and_converted_to_srgb_when_asked() -> None:
    profile = _swapped_primaries_profile()
    red = _save(Image.new("RGB", (64, 64), (255, 0, 0)), "PNG", icc_profile=profile)
    kept = _outputs(red, "png")
    assert kept.info.get("icc_profile") == profile and kept.getpixel((5, 5)) == (255, 0, 0)
    converted = _outputs(red, "png", srgb=True)
    pixel = converted.getpixel((5, 5))
    assert "icc_profile" not in converted.info
    assert isinstance(pixel, tuple) and pixel[1] > 200 and pixel[0] < 60  # it was green all along


def test_cmyk_becomes_rgb() -> None:
    cyan = _save(Image.new("CMYK", (64, 64), (255, 0, 0, 0)), "JPEG", quality=95)
    out = _outputs(cyan, "jpeg")
    pixel = out.getpixel((5, 5))
    assert out.mode == "RGB" and isinstance(pixel, tuple) and pixel[0] < 60 and min(pixel[1:]) > 200


@pytest.mark.parametrize(("fmt", "mode"), [("png", "RGBA"), ("webp", "RGBA"), ("avif", "RGBA"), ("jpeg", "RGB")])
def test_a_transparent_palette_image_keeps_its_alpha_where_the_format_has_one(fmt: ImageFormat, mode: str) -> None:
    palette = Image.new("P", (64, 64), 1)
    palette.putpalette([0, 0, 0, 200, 30, 30] + [0] * 762)
    palette.paste(0, (0, 0, 32, 64))
    out = _outputs(_save(palette, "PNG", transparency=0), fmt)
    assert out.mode == mode
    left = out.getpixel((5, 5))
    assert isinstance(left, tuple)
    if mode == "RGBA":
        assert left[3] == 0
    else:
        assert left[:3] == (255, 255, 255)  # flattened onto white, not black


def test_grey_with_alpha_becomes_rgba() -> None:
    out = _outputs(_save(Image.new("LA", (32, 32), (90, 128)), "PNG"), "png")
    assert out.mode == "RGBA" and out.getpixel((1, 1)) == (90, 90, 90, 128)
