"""Uploads in (``POST /v1/uploads``) and signed downloads out (``GET /v1/files/<key>``).

Uploads are streamed to storage under a key the server makes (``<tenant>/<upload id>/source``);
the client's file name is kept only as sanitised metadata and the type is sniffed from the bytes,
never taken from the name (reliability-security.md §7.4-7.5). Downloads need a signed, unexpired
link; the answer is always an attachment with ``nosniff``, so a stored polyglot cannot run in a
browser (§7.9).
"""

from __future__ import annotations

import mimetypes
import re
import time
import unicodedata
import uuid
from collections.abc import Iterator
from typing import BinaryIO, cast

from flask import Blueprint, Response, jsonify, request, send_file
from werkzeug.exceptions import RequestEntityTooLarge

from offload import problems
from offload.errors import (
    BadPath,
    ClientError,
    DependencyError,
    FileTooLarge,
    NotFound,
    Unauthorized,
    UnsupportedFormat,
    ValidationFailed,
)
from offload.status import iso
from offload.status.uploads import Uploads
from offload.storage import make_key, read_chunks
from offload_api.auth import authenticate, caller, requires
from offload_api.extension import services
from offload_api.openapi_meta import Operation, documented

bp = Blueprint("files", __name__)

#: Magic numbers of the formats we accept, and the type each means.
SIGNATURES: tuple[tuple[bytes, int, str], ...] = (
    (b"\xff\xd8\xff", 0, "image/jpeg"),
    (b"\x89PNG\r\n\x1a\n", 0, "image/png"),
    (b"GIF87a", 0, "image/gif"),
    (b"GIF89a", 0, "image/gif"),
    (b"WEBP", 8, "image/webp"),
    (b"ftyp", 4, "video/mp4"),  # ISO base media: MP4, QuickTime (qt brand), 3GP
    (b"\x1a\x45\xdf\xa3", 0, "video/x-matroska"),  # EBML: Matroska and WebM
    (b"AVI ", 8, "video/x-msvideo"),
)
_UNSAFE_NAME = re.compile(r"[\x00-\x1f\x7f/\\\u202a-\u202e\u2066-\u2069]")


#: ISO base media brands of still images (HEIF, AVIF): an ``ftyp`` box with one of these is not a video.
IMAGE_BRANDS = frozenset({b"heic", b"heix", b"heim", b"heis", b"mif1", b"msf1", b"avif", b"avis"})


def sniff(head: bytes) -> str | None:
    """The content type the first bytes of a file announce, or None if not accepted."""
    for magic, offset, content_type in SIGNATURES:
        riff = content_type in ("image/webp", "video/x-msvideo")
        if head[offset : offset + len(magic)] == magic and (not riff or head[:4] == b"RIFF"):
            if content_type == "video/mp4" and head[8:12] in IMAGE_BRANDS:
                return None
            return content_type
    return None


def clean_filename(raw: str | None) -> str | None:
    """The client's file name as harmless metadata: last path part, no control or bidi characters."""
    if not raw:
        return None
    name = unicodedata.normalize("NFC", raw).replace("\\", "/").rsplit("/", 1)[-1]
    name = _UNSAFE_NAME.sub("", name).strip().lstrip(".")
    return name[:200] or None


@bp.post("/v1/uploads")
@requires("client")
@documented(
    Operation(
        "Upload a file (an image or a video) to use in jobs",
        description=(
            "Stores an image or a video, sent as the raw body or as the `file` part of a multipart form, and "
            "answers its upload id, which image and video jobs take as their source. Its type is judged from its "
            "bytes (JPEG, PNG, GIF or WebP; MP4, QuickTime, WebM, Matroska or AVI), never from its name. Videos "
            "have their own size limit (`OFFLOAD_MAX_VIDEO_UPLOAD_BYTES`)."
        ),
        tag="files",
        request_content={
            "application/octet-stream": {"type": "string", "format": "binary"},
            "multipart/form-data": {
                "type": "object",
                "properties": {"file": {"type": "string", "format": "binary"}},
                "required": ["file"],
            },
        },
        query=(("filename", {"type": "string"}, "The file's name, kept as metadata (raw bodies)."),),
        headers=(
            (
                "X-Filename",
                {"type": "string"},
                "The file's name, kept as metadata (raw bodies; the query parameter wins).",
            ),
        ),
        responses={
            201: ("Stored; use the id in media jobs.", "Upload"),
            413: ("Too large.", "Error"),
            422: ("Not an accepted format.", "Error"),
            401: ("Missing or invalid API key.", "Error"),
            503: ("Redis or the storage unavailable.", "Error"),
        },
    )
)
def upload() -> tuple[Response, int]:
    """Store the body (raw, or the ``file`` part of a multipart form) and return its upload id."""
    found = services()
    limits = {"image": found.settings.max_upload_bytes, "video": found.settings.max_video_upload_bytes}
    request.max_content_length = max(limits.values())  # the sniffed type's own limit applies below
    upload_id = str(uuid.uuid4())
    tenant = caller().tenant
    try:
        stream, filename = _incoming()
        head = stream.read(32)
        content_type = sniff(head)
        if content_type is None:
            raise UnsupportedFormat(
                "The file is not a JPEG, PNG, GIF or WebP image, nor an MP4, QuickTime, WebM, Matroska or AVI "
                "video (judged from its content)."
            )
        limit = limits[content_type.split("/")[0]]
        if request.content_length is not None and request.content_length > limit:
            raise FileTooLarge(f"The upload is larger than the limit for its type ({limit:,} bytes).")
        key = make_key(tenant, upload_id, "source")
        stored = found.storage.put(key, _prefixed(head, stream), max_bytes=limit)
    except RequestEntityTooLarge:
        raise FileTooLarge(
            f"The upload is larger than the limit ({limits['image']:,} bytes for images, "
            f"{limits['video']:,} for videos)."
        ) from None
    created_at = int(time.time() * 1000)
    Uploads(found.store).record(
        upload_id,
        {
            "id": upload_id,
            "tenant": tenant,
            "key": key,
            "content_type": content_type,
            "size": stored.size,
            "filename": filename or "",
            "created_at": created_at,
        },
        ttl_s=found.settings.retention_failed,
    )
    return jsonify(
        {
            "id": upload_id,
            "content_type": content_type,
            "size": stored.size,
            "filename": filename,
            "created_at": iso(created_at),
        }
    ), 201


def _incoming() -> tuple[BinaryIO, str | None]:
    if request.mimetype == "multipart/form-data":
        part = request.files.get("file")
        if part is None:
            raise ValidationFailed(
                "Send the file in a form field named 'file'.",
                errors=[problems.parameter("file", "missing", "missing")],
            )
        return cast(BinaryIO, part.stream), clean_filename(part.filename)
    name = request.args.get("filename") or request.headers.get("X-Filename")
    return cast(BinaryIO, request.stream), clean_filename(name)


def _prefixed(head: bytes, stream: BinaryIO) -> Iterator[bytes]:
    yield head
    yield from read_chunks(stream)


@bp.get("/v1/files/<path:key>")
@documented(
    Operation(
        "Download a file by its signed link",
        description=(
            "Serves a stored file (an upload, a job's output) to whoever holds a valid, unexpired signed link, such "
            "as those in a job's result: no API key is needed. If a key is sent, only its own tenant's files are "
            "served. The answer is always an attachment."
        ),
        tag="files",
        public=True,
        query=(("expires", {"type": "integer"}, "From the link."), ("sig", {"type": "string"}, "From the link.")),
        responses={
            200: (
                "The file, as an attachment. Its content type comes from its name (image/png, text/csv, "
                "application/pdf, ...), application/octet-stream when the name says none.",
                # Any type; application/octet-stream named first for generators that know no range
                # (openapi-python-client makes the answer bytes by it, whatever the type).
                {
                    "application/octet-stream": {"type": "string", "format": "binary"},
                    "*/*": {"type": "string", "format": "binary"},
                },
            ),
            400: ("Not a file path.", "Error"),
            403: ("Tampered link.", "Error"),
            404: ("No such file (or another tenant's).", "Error"),
            410: ("Expired link.", "Error"),
            429: (
                "A key was sent with the link, and its tenant is over its request rate (rate_limited), or too "
                "many invalid keys came from this address this minute (too_many_attempts).",
                "Error",
            ),
            503: ("The storage is unavailable (storage_unavailable).", "Error"),
        },
    )
)
def download(key: str) -> Response:
    """Serve a stored file to whoever holds a valid link (and, if a key is sent, only its own tenant's).

    The file is streamed from whichever storage backend is configured, the S3 bucket included: we
    keep our own signed links rather than hand out presigned S3 URLs, so the bucket stays private
    and never reachable by clients, links keep one format and lifetime (``OFFLOAD_LINK_TTL``, up to
    days, where a presigned URL signed with an IAM role's session keys dies with the session), the
    answer stays an attachment with ``nosniff`` whatever the bucket's metadata says, and an API key
    sent with a link is checked against the file's tenant as everywhere else. The cost is that
    downloads pass through the API (streamed in chunks, never held whole).
    """
    found = services()
    parts = key.split("/")
    raw = (request.environ.get("RAW_URI") or request.environ.get("REQUEST_URI") or "").split("?", 1)[0].lower()
    encoded = any(code in raw for code in ("%2f", "%2e", "%5c", "%00"))
    if len(parts) != 3 or any(part in ("", ".", "..") for part in parts) or "%" in key or encoded:
        raise BadPath("This is not a file path.")
    found.signer.verify(key, request.args.get("expires", ""), request.args.get("sig", ""))
    if request.headers.get("Authorization"):
        try:
            who = authenticate()
        except Unauthorized:
            raise NotFound("No such file.") from None
        if not who.is_admin and who.tenant != parts[0]:
            raise NotFound("No such file.")
    try:
        handle = found.storage.open(key)
    except (FileNotFoundError, ClientError):
        raise NotFound("No such file.") from None
    except DependencyError:
        raise  # the bucket is unreachable: 503 with Retry-After, not a missing file
    except Exception:
        raise NotFound("No such file.") from None
    mimetype = mimetypes.guess_type(parts[2])[0] or "application/octet-stream"
    response = send_file(handle, mimetype=mimetype, as_attachment=True, download_name=parts[2], max_age=0)
    response.headers["X-Content-Type-Options"] = "nosniff"
    return response
