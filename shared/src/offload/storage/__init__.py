"""Files that jobs read and write: the ``Storage`` protocol and its two backends.

``LocalStorage`` keeps files under one directory (a volume the API and workers share, on one host);
``S3Storage`` keeps them in a bucket of an S3-compatible server, so processes on different hosts
share them. ``build_storage(settings)`` picks one from ``OFFLOAD_STORAGE_BACKEND``; the API, the
workers and the CLI call nothing else.
"""

from __future__ import annotations

from offload.errors import FileTooLarge
from offload.storage.base import (
    CHUNK,
    KEY_PART,
    Cleanup,
    SizedWriter,
    Storage,
    StoredFile,
    make_key,
    read_chunks,
    split_key,
)
from offload.storage.factory import build_storage
from offload.storage.local import LocalStorage

__all__ = [
    "CHUNK",
    "KEY_PART",
    "Cleanup",
    "FileTooLarge",
    "LocalStorage",
    "SizedWriter",
    "Storage",
    "StoredFile",
    "build_storage",
    "make_key",
    "read_chunks",
    "split_key",
]
