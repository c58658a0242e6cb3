"""Getting a job's source: from an upload (same tenant only) or a URL through the SSRF guard.

Images are read into memory; videos are streamed to a file of the job's (ffmpeg reads a path).
"""

from __future__ import annotations

import io
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Protocol

from offload.contracts.media import ImageSource
from offload.errors import PermanentJobError
from offload.outbound import fetch_source
from offload.status import StatusStore
from offload.status.uploads import Uploads
from offload.storage import Storage, read_chunks
from offload.urls import UrlPolicy


class SourceRef(Protocol):
    """A source as payloads give it: exactly one of an upload id and a URL."""

    @property
    def upload_id(self) -> str | None: ...
    @property
    def url(self) -> str | None: ...


@dataclass(frozen=True)
class Sources:
    """Opens sources for the media handlers."""

    store: StatusStore
    storage: Storage
    url_policy: UrlPolicy
    max_bytes: int
    timeout: float

    def save(self, source: SourceRef, *, tenant: str, into: Path, max_bytes: int) -> int:
        """Stream the source into the file ``into`` (created, never followed if a link); returns its size.

        Raises:
            PermanentJobError: as :meth:`open`, and ``input_too_large`` past ``max_bytes``.
            TransientJobError: the URL could not be fetched now.
        """
        with open(into, "xb") as out:
            if source.upload_id is not None:
                with self._upload(source.upload_id, tenant) as handle:
                    _copy(read_chunks(handle), out, max_bytes)
            else:
                assert source.url is not None
                with fetch_source(source.url, policy=self.url_policy, read_timeout=self.timeout) as response:
                    _copy(response.iter_content(256 * 1024), out, max_bytes)
            return out.tell()

    def open(self, source: ImageSource, *, tenant: str) -> BinaryIO:
        """The source's bytes as a file.

        Raises:
            PermanentJobError: unknown upload, another tenant's upload, URL not allowed, too large,
                or the server refused it.
            TransientJobError: the URL could not be fetched now.
        """
        if source.upload_id is not None:
            return self._upload(source.upload_id, tenant)
        assert source.url is not None
        return self._fetch(source.url)

    def _upload(self, upload_id: str, tenant: str) -> BinaryIO:
        record = Uploads(self.store).get(upload_id)
        if not record or record.get("tenant") != tenant:
            raise PermanentJobError(f"Upload {upload_id!r} does not exist (or has expired).", code="upload_not_found")
        try:
            return self.storage.open(record["key"])
        except FileNotFoundError:
            raise PermanentJobError(f"Upload {upload_id!r} is gone.", code="upload_not_found") from None

    def _fetch(self, url: str) -> BinaryIO:
        with fetch_source(url, policy=self.url_policy, read_timeout=self.timeout) as response:
            buffer = io.BytesIO()
            for chunk in response.iter_content(64 * 1024):
                buffer.write(chunk)
                if buffer.tell() > self.max_bytes:
                    raise PermanentJobError("The source image is larger than the limit.", code="source_too_large")
        buffer.seek(0)
        return buffer


def _copy(chunks: Iterable[bytes], out: BinaryIO, max_bytes: int) -> None:
    for chunk in chunks:
        out.write(chunk)
        if out.tell() > max_bytes:
            raise PermanentJobError(
                f"The source is larger than the limit of {max_bytes:,} bytes.", code="input_too_large"
            )
