"""``build_storage(settings)``: the one place that turns settings into a storage backend."""

from __future__ import annotations

from typing import TYPE_CHECKING

from offload.storage.local import LocalStorage

if TYPE_CHECKING:
    from offload.settings import Settings
    from offload.storage.base import Storage


def build_storage(settings: Settings) -> Storage:
    """The storage backend ``OFFLOAD_STORAGE_BACKEND`` names, configured from ``settings``.

    boto3 is imported only when the S3 backend is chosen, so a publisher-only install of the core
    library does not need it (it comes with the ``offload[s3]`` extra).
    """
    if settings.storage_backend == "s3":
        from offload.storage.s3 import S3Storage

        return S3Storage.from_settings(settings)
    return LocalStorage(settings.storage_dir)
