"""Getting a job's source image: from an upload (same tenant only) or a URL through the SSRF guard."""

from __future__ import annotations

import io
from dataclasses import dataclass
from typing import BinaryIO

from offload.contracts.media import ImageSource
from offload.errors import PermanentJobError
from offload.outbound import fetch_source
from offload.status import StatusStore
from offload.status.uploads import Uploads
from offload.storage import Storage
from offload.urls import UrlPolicy


@dataclass(frozen=True)
class Sources:
    """Opens sources for the media handlers."""

    store: StatusStore
    storage: Storage
    url_policy: UrlPolicy
    max_bytes: int
    timeout: float

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
