"""Lossless metadata removal (``offload_media.metadata``) and the avatar crop (``offload_media.crop``)."""

from __future__ import annotations

import io
import random

import pytest
from PIL import Image, PngImagePlugin

from offload_media.crop import square_box
from offload_media.metadata import strip_jpeg, strip_png, without_metadata

XMP = b'<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF/></x:xmpmeta>'


def _textured(size: tuple[int, int] = (320, 240)) -> Image.Image:
    rng = random.Random(1)
    return Image.frombytes("RGB", size, bytes(rng.randrange(256) for _ in range(size[0] * size[1] * 3)))


def _jpeg(**options: object) -> bytes:
    exif = Image.Exif()
    exif[0x010F] = "OffloadCam"
    exif.get_ifd(0x8825).update({1: "N", 2: (52.0, 31.0, 12.0)})
    buffer = io.BytesIO()
    _textured().save(buffer, "JPEG", exif=exif, comment=b"secret note", xmp=XMP, **options)
    return buffer.getvalue()


@pytest.mark.parametrize("options", [{}, {"progressive": True}, {"restart_marker_blocks": 4}])
def test_a_jpeg_loses_exif_xmp_and_comments_and_keeps_every_pixel(options: dict[str, object]) -> None:
    original = _jpeg(**options)
    stripped = strip_jpeg(original)
    assert stripped is not None and len(stripped) < len(original)
    for secret in (b"OffloadCam", b"secret note", b"xmpmeta", b"Exif"):
        assert secret not in stripped
    before, after = Image.open(io.BytesIO(original)), Image.open(io.BytesIO(stripped))
    assert after.tobytes() == before.tobytes()


def test_a_jpeg_keeps_its_orientation_its_icc_profile_and_nothing_after_the_image() -> None:
    icc = b"\x00" * 128  # Pillow writes the bytes as given; only their survival matters here
    buffer = io.BytesIO()
    _textured().save(buffer, "JPEG", icc_profile=icc, exif=Image.Exif())
    stripped = strip_jpeg(buffer.getvalue() + b"TRAILING PICTURE WITH GPS", orientation=6)
    assert stripped is not None and stripped.endswith(b"\xff\xd9")
    image = Image.open(io.BytesIO(stripped))
    assert dict(image.getexif()) == {0x0112: 6} and image.info.get("icc_profile") == icc
    assert image.info.get("jfif") is not None  # JFIF stays the first segment


def test_a_truncated_or_foreign_file_is_not_stripped() -> None:
    original = _jpeg()
    assert strip_jpeg(original[: len(original) // 2]) is None
    assert strip_jpeg(b"GIF89a" + original) is None


def test_a_png_loses_its_text_and_time_chunks_and_keeps_every_pixel() -> None:
    info = PngImagePlugin.PngInfo()
    info.add_text("Author", "Ada")
    info.add_itxt("Location", "Berlin", zip=True)
    info.add(b"tIME", b"\x07\xe8\x01\x01\x00\x00\x00")
    buffer = io.BytesIO()
    _textured().save(buffer, "PNG", pnginfo=info)
    stripped = strip_png(buffer.getvalue())
    assert stripped is not None and b"Ada" not in stripped and b"tIME" not in stripped and b"iTXt" not in stripped
    assert Image.open(io.BytesIO(stripped)).tobytes() == _textured().tobytes()


def test_a_png_whose_orientation_lives_in_exif_or_whose_crc_is_wrong_is_left_to_the_re_encoder() -> None:
    exif = Image.Exif()
    exif[0x0112] = 6
    buffer = io.BytesIO()
    _textured().save(buffer, "PNG", exif=exif)
    assert strip_png(buffer.getvalue(), orientation=6) is None
    assert strip_png(buffer.getvalue(), orientation=1) is not None
    corrupt = bytearray(buffer.getvalue())
    corrupt[40] ^= 0xFF
    assert strip_png(bytes(corrupt)) is None


def test_other_formats_are_kept_only_when_they_carry_no_metadata() -> None:
    plain, tagged = io.BytesIO(), io.BytesIO()
    exif = Image.Exif()
    exif[0x010F] = "OffloadCam"
    _textured().save(plain, "WEBP")
    _textured().save(tagged, "WEBP", exif=exif)
    assert without_metadata(plain.getvalue()) == plain.getvalue()
    assert without_metadata(tagged.getvalue()) is None


def test_the_square_crop_is_centred_or_follows_the_detail() -> None:
    wide = Image.new("L", (300, 100), 128)
    wide.paste(_textured((100, 100)).convert("L"), (0, 0))  # detail on the left
    assert square_box(wide, "centre") == (100, 0, 200, 100)
    assert square_box(wide, "smart") == (0, 0, 100, 100)
    tall = wide.transpose(Image.Transpose.ROTATE_90)  # detail at the bottom
    assert square_box(tall, "smart") == (0, 200, 100, 300)
    assert square_box(Image.new("L", (300, 100), 0), "smart") == (100, 0, 200, 100)  # nothing to choose: centre
    assert square_box(Image.new("L", (50, 50)), "smart") == (0, 0, 50, 50)
