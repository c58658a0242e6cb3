"""Removing metadata from an image file without decoding it (lossless), for ``image.optimize``.

When re-encoding would make a file larger, the optimiser keeps the original bytes, but those may
carry GPS positions, camera serial numbers or an editor's history. JPEG and PNG are plain lists of
segments or chunks, so the metadata ones can be dropped and the pixels left exactly as they were:

- JPEG keeps JFIF (APP0), the ICC profile (APP2 ``ICC_PROFILE``), Adobe's colour transform (APP14)
  and every coding segment; it drops EXIF and XMP (APP1), IPTC (APP13), other APPn, comments, and
  anything after the end of the image (the extra pictures of MPF files). A non-default
  orientation is written back as a minimal EXIF block holding only that tag, so the image still
  displays upright.
- PNG drops ``eXIf``, ``tEXt``, ``zTXt``, ``iTXt`` and ``tIME``.

Other formats (WebP, GIF) are returned as they are when they carry no metadata, and refused
(``None``) when they do, so the caller falls back to the re-encoded file.
"""

from __future__ import annotations

import io
import zlib

from PIL import Image

_SOI, _EOI, _SOS = 0xD8, 0xD9, 0xDA
_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_PNG_METADATA = frozenset({b"eXIf", b"tEXt", b"zTXt", b"iTXt", b"tIME"})
#: Keys of ``Image.info`` that hold metadata in WebP and GIF files.
_OTHER_METADATA = ("exif", "xmp", "XML:com.adobe.xmp", "comment")


def without_metadata(data: bytes) -> bytes | None:
    """``data`` minus its metadata, or None if that cannot be done losslessly.

    ``data`` is an image file already vetted by ``images.open_image``; only its header is read.
    """
    with Image.open(io.BytesIO(data), formats=("JPEG", "PNG", "GIF", "WEBP")) as image:
        orientation = int(image.getexif().get(0x0112, 1))
        if image.format == "JPEG":
            return strip_jpeg(data, orientation)
        if image.format == "PNG":
            return strip_png(data, orientation)
        carries = bool(image.getexif()) or any(key in image.info for key in _OTHER_METADATA)
    return None if carries else data


def _keep_jpeg_segment(marker: int, body: bytes) -> bool:
    if marker == 0xE2:
        return body.startswith(b"ICC_PROFILE\x00")
    if marker in (0xE0, 0xEE):
        return True
    return not (0xE1 <= marker <= 0xEF or marker == 0xFE)


def _orientation_segment(orientation: int) -> bytes:
    exif = Image.Exif()
    exif[0x0112] = orientation
    payload = exif.tobytes()  # starts with b"Exif\0\0", as APP1 wants
    return b"\xff\xe1" + (len(payload) + 2).to_bytes(2, "big") + payload


def strip_jpeg(data: bytes, orientation: int = 1) -> bytes | None:
    """The JPEG without metadata segments, or None if it is not a well-formed JPEG."""
    if not data.startswith(b"\xff\xd8"):
        return None
    out = [b"\xff\xd8"]
    orientation_pending = orientation != 1
    pos = 2
    while pos + 1 < len(data):
        if data[pos] != 0xFF:
            return None
        marker = data[pos + 1]
        if marker == 0xFF:  # fill byte
            pos += 1
            continue
        if marker == _EOI:
            out.append(b"\xff\xd9")
            return b"".join(out)
        if 0xD0 <= marker <= 0xD7 or marker == 0x01:
            out.append(data[pos : pos + 2])
            pos += 2
            continue
        if orientation_pending and marker != 0xE0:  # after JFIF's APP0, which must come first
            out.append(_orientation_segment(orientation))
            orientation_pending = False
        length = int.from_bytes(data[pos + 2 : pos + 4], "big")
        end = pos + 2 + length
        if length < 2 or end > len(data):
            return None
        if _keep_jpeg_segment(marker, data[pos + 4 : end]):
            out.append(data[pos:end])
        pos = end
        if marker == _SOS:
            scan_end = _end_of_scan(data, pos)
            if scan_end is None:
                return None
            out.append(data[pos:scan_end])
            pos = scan_end
    return None  # no end-of-image marker: truncated


def _end_of_scan(data: bytes, pos: int) -> int | None:
    """Where the entropy-coded data starting at ``pos`` ends: the next marker that is not stuffing or a restart."""
    while True:
        pos = data.find(b"\xff", pos)
        if pos < 0 or pos + 1 >= len(data):
            return None
        following = data[pos + 1]
        if following == 0x00 or 0xD0 <= following <= 0xD7 or following == 0xFF:
            pos += 1
            continue
        return pos


def strip_png(data: bytes, orientation: int = 1) -> bytes | None:
    """The PNG without text, time and EXIF chunks, or None if malformed or its orientation lives in ``eXIf``."""
    if not data.startswith(_PNG_SIGNATURE):
        return None
    out = [_PNG_SIGNATURE]
    pos = len(_PNG_SIGNATURE)
    while pos + 12 <= len(data):
        length = int.from_bytes(data[pos : pos + 4], "big")
        kind = data[pos + 4 : pos + 8]
        end = pos + 12 + length
        if end > len(data) or zlib.crc32(data[pos + 4 : end - 4]) != int.from_bytes(data[end - 4 : end], "big"):
            return None
        if kind == b"eXIf" and orientation != 1:
            return None  # removing it would turn the image; let the caller re-encode upright instead
        if kind not in _PNG_METADATA:
            out.append(data[pos:end])
        pos = end
        if kind == b"IEND":
            return b"".join(out)
    return None
