"""Objects in a bucket of an S3-compatible server: the backend for processes on different hosts.

A write becomes visible whole or not at all, as S3 shows an object only once its PUT (or the
completion of its multipart upload) succeeds. A file larger than one part goes up as a multipart
upload, so a process never holds more than one part in memory; a write that fails aborts its
upload and leaves nothing. ``discard_partials`` aborts the uploads a killed worker left unfinished,
the bucket's counterpart of LocalStorage's ``.part`` files.

Errors become Offload's own: a missing object is ``FileNotFoundError`` (as on disk); a server that
cannot be reached, times out or refuses us is :class:`~offload.errors.StorageUnavailable` (503 in
the API, retried by workers). Its message names the operation and S3's error code, never the
endpoint, a key pair or a bucket.
"""

from __future__ import annotations

import io
import itertools
import logging
import re
import tempfile
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, BinaryIO, cast

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from offload.errors import FileTooLarge, StorageUnavailable
from offload.storage.base import CHUNK, KEY_PART, Cleanup, SizedWriter, StoredFile, make_key

if TYPE_CHECKING:
    from _typeshed import WriteableBuffer
    from botocore.response import StreamingBody
    from types_boto3_s3 import S3Client
    from types_boto3_s3.type_defs import CompletedPartTypeDef, ObjectIdentifierTypeDef, ObjectTypeDef

    from offload.settings import Settings

logger = logging.getLogger(__name__)

#: Bytes per part of a multipart upload, and what a write holds in memory at most. S3 wants at
#: least 5 MiB for every part but the last.
PART_SIZE = 8 * 1024 * 1024
#: Keys per DeleteObjects request (S3's maximum).
DELETE_BATCH = 1000
#: S3 error codes that mean "no such object".
_MISSING = frozenset({"404", "NoSuchKey", "NotFound"})


class S3Storage:
    """Files as objects ``<prefix><tenant>/<owner>/<name>`` in one (private) bucket."""

    def __init__(self, client: S3Client, bucket: str, *, prefix: str = "", part_size: int = PART_SIZE) -> None:
        self.client = client
        self.bucket = bucket
        self.prefix = prefix
        self.part_size = part_size

    @classmethod
    def from_settings(cls, settings: Settings) -> S3Storage:
        """A client for the settings' endpoint, region and keys (empty keys: boto3's own credential chain).

        Timeouts are short and retries S3's standard ones, so an unreachable server fails a request
        in seconds. A custom endpoint (MinIO, Ceph, a test server) gets path-style addressing, which
        needs no wildcard DNS, and checksums only where S3 requires them, which every compatible
        server understands.
        """
        options: dict[str, Any] = {
            "connect_timeout": 5,
            "read_timeout": 60,
            "retries": {"max_attempts": 4, "mode": "standard"},
            "max_pool_connections": 32,
        }
        if settings.s3_endpoint_url:
            options["s3"] = {"addressing_style": "path"}
            options["request_checksum_calculation"] = "when_required"
            options["response_checksum_validation"] = "when_required"
        client = boto3.session.Session().client(
            "s3",
            endpoint_url=settings.s3_endpoint_url or None,
            region_name=settings.s3_region,
            aws_access_key_id=settings.s3_access_key_id.get_secret_value() or None,
            aws_secret_access_key=settings.s3_secret_access_key.get_secret_value() or None,
            config=Config(**options),
        )
        return cls(client, settings.s3_bucket, prefix=settings.s3_prefix)

    def put(self, key: str, chunks: Iterable[bytes], *, max_bytes: int | None = None) -> StoredFile:
        """Upload ``chunks`` as one object (a multipart upload past one part).

        Raises:
            FileTooLarge: more than ``max_bytes`` arrived (the upload is aborted, nothing is left).
            PermanentJobError: the key is malformed (``invalid_key``).
            StorageUnavailable: the server is unreachable or refused.
        """
        return StoredFile(key, self._upload(self._name(key), _limited(chunks, max_bytes)))

    @contextmanager
    def writer(self, key: str, *, max_bytes: int | None = None) -> Iterator[SizedWriter]:
        """A seekable file to write ``key`` through, uploaded when the block ends without an error.

        Zip writers (XLSX) seek back, which an upload cannot, so the file is spooled: in memory up
        to one part, then in a temporary file on local disk. When the block raises, nothing is
        uploaded.

        Raises:
            FileTooLarge: the writes reached past ``max_bytes`` (nothing is uploaded).
            PermanentJobError: the key is malformed (``invalid_key``).
            StorageUnavailable: the server is unreachable or refused.
        """
        name = self._name(key)
        with tempfile.SpooledTemporaryFile(max_size=self.part_size) as spool:
            yield SizedWriter(cast(BinaryIO, spool), max_bytes)
            spool.seek(0)
            self._upload(name, iter(lambda: spool.read(CHUNK), b""))

    def open(self, key: str) -> BinaryIO:
        """A buffered, non-seekable reader streaming the object's body.

        Raises:
            FileNotFoundError: no such object.
            PermanentJobError: the key is malformed.
            StorageUnavailable: the server is unreachable or refused.
        """
        name = self._name(key)
        with _errors("read a file", missing=key):
            reply = self.client.get_object(Bucket=self.bucket, Key=name)
        return cast(BinaryIO, io.BufferedReader(_Body(reply["Body"]), buffer_size=CHUNK))

    def size(self, key: str) -> int | None:
        """The object's size in bytes, or None if there is none (or the key is malformed).

        Raises:
            StorageUnavailable: the server is unreachable or refused.
        """
        if not _well_formed(key):
            return None
        try:
            with _errors("look up a file", missing=key):
                return self.client.head_object(Bucket=self.bucket, Key=self.prefix + key)["ContentLength"]
        except FileNotFoundError:
            return None

    def delete_prefix(self, tenant: str, owner: str) -> int:
        """Delete the objects (and unfinished uploads) of one job or upload; returns how many.

        Raises:
            StorageUnavailable: the server is unreachable or refused.
        """
        folder = self._folder(tenant, owner)
        names = [item["Key"] for item in self._objects(folder)]
        self._delete(names)
        return len(names) + self._abort_uploads(folder)

    def discard_partials(self, tenant: str, owner: str) -> int:
        """Abort the multipart uploads an interrupted attempt left unfinished; returns how many.

        Raises:
            StorageUnavailable: the server is unreachable or refused.
        """
        return self._abort_uploads(self._folder(tenant, owner))

    def remove_older_than(self, cutoff: float, *, dry_run: bool = False) -> Cleanup:
        """Delete every upload's or job's objects whose newest write (``LastModified``) is before ``cutoff``.

        A folder goes as a whole, so a job's outputs stay a complete set until they all go. The
        listing is in key order, so one folder's objects come together and only they are held at
        once. A folder holding any key not shaped like Offload's is never touched; unfinished uploads
        started before ``cutoff`` are aborted too (a bucket lifecycle rule may do it as well).

        Raises:
            StorageUnavailable: the server is unreachable or refused.
        """
        folders = files = size = 0
        for folder, group in itertools.groupby(self._objects(self.prefix), key=self._folder_of):
            objects = list(group)
            if folder is None or not all(_well_formed(item["Key"][len(self.prefix) :]) for item in objects):
                continue  # not (only) what Offload writes: never touched
            if max(item["LastModified"].timestamp() for item in objects) >= cutoff:
                continue
            folders += 1
            files += len(objects)
            size += sum(item["Size"] for item in objects)
            if not dry_run:
                self._delete([item["Key"] for item in objects])
        if not dry_run:
            self._abort_uploads(self.prefix, before=cutoff)
        return Cleanup(folders=folders, files=files, bytes=size)

    # -- helpers --------------------------------------------------------------------------------

    def _name(self, key: str) -> str:
        """The object name of ``key`` (checked, with the prefix)."""
        tenant, owner, name = key.split("/") if key.count("/") == 2 else ("", "", "")
        return self.prefix + make_key(tenant, owner, name)

    def _folder(self, tenant: str, owner: str) -> str:
        return self.prefix + make_key(tenant, owner, "x")[:-1]

    def _folder_of(self, item: ObjectTypeDef) -> str | None:
        """The ``<tenant>/<owner>/`` an object's key starts with (None if it has fewer parts).

        Every key under one such prefix is in it, well-formed or not, so that a folder is judged
        (and kept) whole even when something else put a key inside it.
        """
        parts = item["Key"][len(self.prefix) :].split("/", 2)
        return f"{parts[0]}/{parts[1]}/" if len(parts) == 3 else None

    def _upload(self, name: str, chunks: Iterable[bytes]) -> int:
        """Store ``chunks`` as object ``name``: one PUT if they fit in a part, else a multipart upload."""
        parts = _parts(chunks, self.part_size)
        first = next(parts)
        if len(first) < self.part_size:
            with _errors("store a file"):
                self.client.put_object(Bucket=self.bucket, Key=name, Body=first)
            return len(first)
        return self._multipart(name, itertools.chain([first], parts))

    def _multipart(self, name: str, parts: Iterator[bytes]) -> int:
        with _errors("start an upload"):
            upload_id = self.client.create_multipart_upload(Bucket=self.bucket, Key=name)["UploadId"]
        size = 0
        done: list[CompletedPartTypeDef] = []
        try:
            for number, part in enumerate(parts, start=1):
                with _errors("store a file"):
                    reply = self.client.upload_part(
                        Bucket=self.bucket, Key=name, UploadId=upload_id, PartNumber=number, Body=part
                    )
                done.append({"ETag": reply["ETag"], "PartNumber": number})
                size += len(part)
            with _errors("store a file"):
                self.client.complete_multipart_upload(
                    Bucket=self.bucket, Key=name, UploadId=upload_id, MultipartUpload={"Parts": done}
                )
        except BaseException:
            self._abort(name, upload_id)
            raise
        return size

    def _abort(self, name: str, upload_id: str) -> None:
        """Abort an upload, best effort: one that stays behind is aborted by ``discard_partials`` later."""
        try:
            self.client.abort_multipart_upload(Bucket=self.bucket, Key=name, UploadId=upload_id)
        except (BotoCoreError, ClientError) as exc:
            logger.warning("Could not abort an unfinished upload (%s).", type(exc).__name__)

    def _abort_uploads(self, prefix: str, *, before: float | None = None) -> int:
        aborted = 0
        with _errors("list unfinished uploads"):
            for page in self.client.get_paginator("list_multipart_uploads").paginate(Bucket=self.bucket, Prefix=prefix):
                for upload in page.get("Uploads", []):
                    if before is None or upload["Initiated"].timestamp() < before:
                        self._abort(upload["Key"], upload["UploadId"])
                        aborted += 1
        return aborted

    def _objects(self, prefix: str) -> Iterator[ObjectTypeDef]:
        with _errors("list files"):
            for page in self.client.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=prefix):
                yield from page.get("Contents", [])

    def _delete(self, names: list[str]) -> None:
        for start in range(0, len(names), DELETE_BATCH):
            batch: list[ObjectIdentifierTypeDef] = [{"Key": name} for name in names[start : start + DELETE_BATCH]]
            with _errors("delete files"):
                reply = self.client.delete_objects(Bucket=self.bucket, Delete={"Objects": batch, "Quiet": True})
            if reply.get("Errors"):
                code = _safe_code(reply["Errors"][0].get("Code", ""))
                raise StorageUnavailable(f"Object storage refused to delete {len(reply['Errors'])} files ({code}).")


class _Body(io.RawIOBase):
    """A raw, read-only file over an object's streaming body, so callers get a plain ``BinaryIO``."""

    def __init__(self, body: StreamingBody) -> None:
        super().__init__()
        self.body = body

    def readable(self) -> bool:
        """Always: this file is for reading."""
        return True

    def readinto(self, buffer: WriteableBuffer) -> int:
        """Read up to ``len(buffer)`` bytes of the body into ``buffer``.

        Raises:
            StorageUnavailable: the connection broke or timed out mid-body.
        """
        view = memoryview(buffer).cast("B")
        with _errors("read a file"):
            data = self.body.read(len(view))
        view[: len(data)] = data
        return len(data)

    def close(self) -> None:
        """Release the connection."""
        if not self.closed:
            self.body.close()
        super().close()


@contextmanager
def _errors(action: str, *, missing: str | None = None) -> Iterator[None]:
    """Turn boto3's errors into Offload's, with messages free of endpoints and credentials.

    Raises:
        FileNotFoundError: the object does not exist (only where ``missing`` names the key).
        StorageUnavailable: any other failure.
    """
    try:
        yield
    except ClientError as exc:
        code = _safe_code(str(exc.response.get("Error", {}).get("Code", "")))
        if missing is not None and code in _MISSING:
            raise FileNotFoundError(missing) from None
        raise StorageUnavailable(f"Object storage refused to {action} ({code}).") from None
    except BotoCoreError as exc:
        raise StorageUnavailable(f"Object storage could not be reached to {action} ({type(exc).__name__}).") from None


def _safe_code(code: str) -> str:
    """An S3 error code as shown in messages: letters and digits only, bounded."""
    return re.sub(r"[^A-Za-z0-9]", "", code)[:40] or "unknown"


def _well_formed(key: str) -> bool:
    parts = key.split("/")
    return len(parts) == 3 and all(KEY_PART.match(part) for part in parts)


def _parts(chunks: Iterable[bytes], size: int) -> Iterator[bytes]:
    """``chunks`` regrouped into parts of ``size`` bytes and a shorter last one (at least one part)."""
    buffer = bytearray()
    sent = False
    for chunk in chunks:
        buffer += chunk
        while len(buffer) >= size:
            yield bytes(buffer[:size])
            del buffer[:size]
            sent = True
    if buffer or not sent:
        yield bytes(buffer)


def _limited(chunks: Iterable[bytes], max_bytes: int | None) -> Iterator[bytes]:
    """``chunks``, raising :class:`FileTooLarge` once more than ``max_bytes`` have passed."""
    seen = 0
    for chunk in chunks:
        seen += len(chunk)
        if max_bytes is not None and seen > max_bytes:
            raise FileTooLarge(f"The file is larger than {max_bytes} bytes.")
        yield chunk
