"""What every storage backend shares: keys, the ``Storage`` protocol, size-limited writers.

Keys are made by the server, never taken from a client: ``<tenant>/<id>/<name>``, each part from a
small safe alphabet, so a key means the same folder-like prefix on a disk and in a bucket.
"""

from __future__ import annotations

import io
import os
import re
from collections.abc import Iterable, Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import BinaryIO, Protocol

from offload.errors import FileTooLarge, PermanentJobError

#: One part of a key: letters, digits, dot, dash, underscore; not starting with a dot.
KEY_PART = re.compile(r"^[A-Za-z0-9_-][A-Za-z0-9._-]{0,127}$")
CHUNK = 64 * 1024


@dataclass(frozen=True)
class Cleanup:
    """What a retention sweep removed (or, in a dry run, would remove)."""

    folders: int
    files: int
    bytes: int


@dataclass(frozen=True)
class StoredFile:
    """A file in storage: its key and size in bytes."""

    key: str
    size: int


def make_key(tenant: str, owner: str, name: str) -> str:
    """The key of file ``name`` of job or upload ``owner`` of ``tenant``.

    Raises:
        PermanentJobError: a part is not of the safe alphabet (code ``invalid_key``).
    """
    for part in (tenant, owner, name):
        if not KEY_PART.match(part):
            raise PermanentJobError(f"{part[:40]!r} cannot be part of a storage key.", code="invalid_key")
    return f"{tenant}/{owner}/{name}"


def split_key(key: str) -> tuple[str, str, str]:
    """The tenant, owner and name of a key made by :func:`make_key`.

    Raises:
        PermanentJobError: the key is malformed (code ``invalid_key``).
    """
    parts = key.split("/")
    if len(parts) != 3 or not all(KEY_PART.match(part) for part in parts):
        raise PermanentJobError("Malformed storage key.", code="invalid_key")
    return parts[0], parts[1], parts[2]


class Storage(Protocol):
    """Where job inputs and outputs live (``offload.storage.build_storage`` picks the backend).

    Every backend promises the same: a file becomes visible whole or not at all, a failed write
    leaves nothing a reader could see, and the files of one upload or job (``<tenant>/<owner>/``)
    are removed together.
    """

    def put(self, key: str, chunks: Iterable[bytes], *, max_bytes: int | None = None) -> StoredFile:
        """Store ``chunks`` under ``key``, atomically."""
        ...

    def writer(self, key: str, *, max_bytes: int | None = None) -> AbstractContextManager[SizedWriter]:
        """A seekable file to write ``key`` through, made visible only when the block ends without an error."""
        ...

    def open(self, key: str) -> BinaryIO:
        """Open the file for reading (raises ``FileNotFoundError`` if there is none)."""
        ...

    def size(self, key: str) -> int | None:
        """The file's size, or None if there is no such file."""
        ...

    def delete_prefix(self, tenant: str, owner: str) -> int:
        """Delete every file of ``tenant``/``owner``; returns how many."""
        ...

    def discard_partials(self, tenant: str, owner: str) -> int:
        """Delete half-written files an interrupted attempt left; returns how many."""
        ...

    def remove_older_than(self, cutoff: float, *, dry_run: bool = False) -> Cleanup:
        """Delete every upload's or job's files whose newest write is before ``cutoff`` (Unix time)."""
        ...


class SizedWriter(io.RawIOBase):
    """A writable, seekable file that refuses to grow past a limit and remembers its size."""

    def __init__(self, raw: BinaryIO, max_bytes: int | None) -> None:
        super().__init__()
        self.raw = raw
        self.max_bytes = max_bytes
        #: The furthest byte written so far.
        self.size = 0

    def writable(self) -> bool:
        """Always: this file is for writing."""
        return True

    def seekable(self) -> bool:
        """Always: zip writers go back to fill in headers."""
        return True

    def write(self, data: bytes | bytearray | memoryview) -> int:  # type: ignore[override]
        """Write ``data``.

        Raises:
            FileTooLarge: the file would pass ``max_bytes``.
        """
        end = self.raw.tell() + memoryview(data).nbytes
        if self.max_bytes is not None and end > self.max_bytes:
            raise FileTooLarge(f"The file is larger than {self.max_bytes} bytes.")
        written = self.raw.write(data)
        self.size = max(self.size, end)
        return written

    def seek(self, offset: int, whence: int = os.SEEK_SET) -> int:
        """Move the write position (as the underlying file does)."""
        return self.raw.seek(offset, whence)

    def tell(self) -> int:
        """The write position."""
        return self.raw.tell()

    def flush(self) -> None:
        """Flush the underlying file."""
        self.raw.flush()


def read_chunks(handle: BinaryIO, size: int = CHUNK) -> Iterator[bytes]:
    """Yield a file's content in chunks."""
    while chunk := handle.read(size):
        yield chunk
