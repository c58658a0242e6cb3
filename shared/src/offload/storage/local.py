"""Files under one directory: the local-filesystem storage backend.

A file is written to a temporary name and renamed into place, so a reader (or a retried job) never
sees half a file; paths are checked to stay under the tenant's root, and symbolic links are refused
(``O_NOFOLLOW``), so a planted link cannot send a write elsewhere (reliability-security.md §7.5).
"""

from __future__ import annotations

import os
import secrets
import shutil
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO

from offload.errors import PermanentJobError
from offload.storage.base import Cleanup, SizedWriter, StoredFile, make_key, split_key


class LocalStorage:
    """Files under one directory (a volume shared by the API and the workers)."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root).resolve()
        self.root.mkdir(parents=True, exist_ok=True)

    def path(self, key: str) -> Path:
        """The file's path, checked to stay inside its tenant's folder.

        Raises:
            PermanentJobError: the key is malformed or escapes the root (code ``invalid_key``).
        """
        tenant, owner, name = split_key(key)
        tenant_root = self.root / tenant
        path = tenant_root / owner / name
        if not str(path.resolve(strict=False)).startswith(str(tenant_root.resolve(strict=False)) + os.sep):
            raise PermanentJobError("The storage key escapes its tenant's folder.", code="invalid_key")
        return path

    def put(self, key: str, chunks: Iterable[bytes], *, max_bytes: int | None = None) -> StoredFile:
        """Write to a temporary file beside the target, then rename it into place.

        Raises:
            FileTooLarge: more than ``max_bytes`` arrived (nothing is left behind).
            PermanentJobError: the key is malformed, or a symlink is in the way (``invalid_key``).
        """
        with self.writer(key, max_bytes=max_bytes) as handle:
            for chunk in chunks:
                handle.write(chunk)
        return StoredFile(key, handle.size)

    @contextmanager
    def writer(self, key: str, *, max_bytes: int | None = None) -> Iterator[SizedWriter]:
        """A file to write ``key`` through, for producers that write rather than yield chunks.

        The file is a temporary beside the target, renamed into place when the block ends without
        an error and removed when it raises (a full disk, a limit, a crash of the producer), so a
        reader never sees half a file. It may be sought (zip writers do); its ``size`` is the
        furthest byte written.

        Raises:
            FileTooLarge: the writes reached past ``max_bytes`` (nothing is left behind).
            PermanentJobError: the key is malformed, or a symlink is in the way (``invalid_key``).
        """
        path = self.path(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        if path.parent.is_symlink() or path.is_symlink():
            raise PermanentJobError("A symbolic link is in the way of a storage write.", code="invalid_key")
        temporary = path.with_name(f".{path.name}.{secrets.token_hex(6)}.part")
        descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o640)
        try:
            with os.fdopen(descriptor, "w+b") as raw:
                handle = SizedWriter(raw, max_bytes)
                yield handle
                raw.flush()
                os.fsync(raw.fileno())
            os.replace(temporary, path)
        except BaseException:
            temporary.unlink(missing_ok=True)
            raise

    def open(self, key: str) -> BinaryIO:
        """Open for reading, refusing symbolic links.

        Raises:
            FileNotFoundError: no such file.
            PermanentJobError: the key is malformed.
        """
        try:
            descriptor = os.open(self.path(key), os.O_RDONLY | os.O_NOFOLLOW)
        except OSError as exc:
            raise FileNotFoundError(key) from exc
        return os.fdopen(descriptor, "rb")

    def size(self, key: str) -> int | None:
        """The size in bytes, or None."""
        try:
            stat = self.path(key).lstat()
        except (FileNotFoundError, PermanentJobError):
            return None
        return stat.st_size if not os.path.islink(self.path(key)) else None

    def discard_partials(self, tenant: str, owner: str) -> int:
        """Delete the temporary files of writes that never finished (a worker killed mid-write)."""
        folder = self.path(make_key(tenant, owner, "x")).parent
        if not folder.is_dir() or folder.is_symlink():
            return 0
        partials = [entry for entry in folder.iterdir() if entry.name.startswith(".") and entry.name.endswith(".part")]
        for entry in partials:
            entry.unlink(missing_ok=True)
        return len(partials)

    def delete_prefix(self, tenant: str, owner: str) -> int:
        """Delete the files of one job or upload."""
        folder = self.path(make_key(tenant, owner, "x")).parent
        removed = 0
        for entry in folder.iterdir() if folder.is_dir() and not folder.is_symlink() else ():
            entry.unlink(missing_ok=True)
            removed += 1
        if folder.is_dir():
            folder.rmdir()
        return removed

    def remove_older_than(self, cutoff: float, *, dry_run: bool = False) -> Cleanup:
        """Delete the folder of every upload or job whose newest write is before ``cutoff`` (Unix time).

        A folder goes as a whole, so a job's outputs stay a complete set until they all go.
        Symbolic links are removed, never followed; tenant folders stay (a concurrent upload may be
        creating its folder in one).
        """
        folders = files = size = 0
        for tenant in _folders(self.root):
            for owner in _folders(Path(tenant.path)):
                entries = list(os.scandir(owner.path))
                stats = [entry.stat(follow_symlinks=False) for entry in entries]
                newest = max([owner.stat(follow_symlinks=False).st_mtime, *(stat.st_mtime for stat in stats)])
                if newest >= cutoff:
                    continue
                folders += 1
                files += len(entries)
                size += sum(stat.st_size for stat in stats)
                if dry_run:
                    continue
                for entry in entries:
                    if entry.is_dir(follow_symlinks=False):
                        shutil.rmtree(entry.path, ignore_errors=True)  # never made by Offload; rmtree skips links
                    else:
                        os.unlink(entry.path)
                os.rmdir(owner.path)
        return Cleanup(folders=folders, files=files, bytes=size)


def _folders(path: Path) -> list[os.DirEntry[str]]:
    """The real sub-folders of ``path`` (symbolic links are not followed)."""
    try:
        return [entry for entry in os.scandir(path) if entry.is_dir(follow_symlinks=False)]
    except FileNotFoundError:
        return []
