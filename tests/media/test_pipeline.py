"""The image pipeline without a worker: metadata never leaks; CMYK, palettes, alpha, 16 bits, ICC profiles."""

from __future__ import annotations

import io

import pytest
from PIL import Image, ImageCms, PngImagePlugin

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


SECRETS = (b"SECRET-XMP", b"SECRET-COMMENT", b"OffloadCam", b"SECRET-TEXT")


@pytest.mark.parametrize("source_format", ["JPEG", "PNG", "WEBP"])
@pytest.mark.parametrize("fmt", ["jpeg", "png", "webp", "avif"])
def test_no_exif_xmp_comment_or_text_reaches_an_output(source_format: str, fmt: ImageFormat) -> None:
    exif = Image.Exif()
    exif[0x010F] = "OffloadCam"
    options: dict[str, object] = {"exif": exif}
    if source_format != "PNG":
        options["xmp"] = b'<x:xmpmeta xmlns:x="adobe:ns:meta/">SECRET-XMP</x:xmpmeta>'
    if source_format == "JPEG":
        options["comment"] = b"SECRET-COMMENT"
    if source_format == "PNG":
        text = PngImagePlugin.PngInfo()
        text.add_text("Comment", "SECRET-TEXT")
        options["pnginfo"] = text
    data = _save(Image.new("RGB", (120, 90), (10, 120, 200)), source_format, **options)
    assert any(secret in data for secret in SECRETS)
    image = images.open_image(io.BytesIO(data), LIMITS)
    _, decoded, _ = images.load(image, image.size)
    for target in (TargetSize(width=120), TargetSize(width=60)):  # same size (no resample) and smaller
        [variant] = images.variants(decoded, [target], [fmt], quality=80, enlarge=False)
        assert not [secret for secret in SECRETS if secret in variant.data]


def test_sixteen_bit_grey_is_scaled_not_clipped() -> None:
    out = _outputs(_save(Image.new("I;16", (16, 16), 40_000), "PNG"), "png")
    assert out.mode == "L" and abs(out.getpixel((1, 1)) - 155) <= 1  # type: ignore[operator]


def test_a_colour_key_becomes_alpha() -> None:
    keyed = Image.new("RGB", (16, 16), (0, 255, 0))
    keyed.paste((200, 30, 30), (8, 0, 16, 16))
    out = _outputs(_save(keyed, "PNG", transparency=(0, 255, 0)), "webp")
    assert out.mode == "RGBA" and out.getpixel((1, 1))[3] == 0 and out.getpixel((12, 1))[3] == 255  # type: ignore[index]


def test_a_cmyk_image_with_a_broken_profile_is_still_converted() -> None:
    out = _outputs(_save(Image.new("CMYK", (16, 16), (255, 0, 0, 0)), "JPEG", icc_profile=b"not a profile"), "jpeg")
    assert out.mode == "RGB" and "icc_profile" not in out.info
