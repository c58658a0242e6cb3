"""Uploads' records in Redis (``upload:<id>``): who uploaded what, where it is stored, how big it is."""

from __future__ import annotations

from typing import TYPE_CHECKING, cast

from redis.typing import EncodableT, FieldT

from offload.status.scripts import redis_errors

if TYPE_CHECKING:
    from offload.status.store import StatusStore


class Uploads:
    """The records of files clients uploaded, kept as long as failed jobs are."""

    def __init__(self, store: StatusStore) -> None:
        self.client = store.client
        self.keys = store.keys

    def record(self, upload_id: str, fields: dict[str, str | int], *, ttl_s: int) -> None:
        """Write the record of an upload, kept ``ttl_s`` seconds.

        Raises:
            StatusStoreUnavailable: Redis is unavailable.
        """
        key = self.keys.upload(upload_id)
        with redis_errors(), self.client.pipeline(transaction=True) as pipe:
            pipe.hset(key, mapping=cast(dict[FieldT, EncodableT], fields))
            pipe.expire(key, ttl_s)
            pipe.execute()

    def get(self, upload_id: str) -> dict[str, str]:
        """The upload's record, or an empty dict if it is unknown or expired.

        Raises:
            StatusStoreUnavailable: Redis is unavailable.
        """
        with redis_errors():
            return cast(dict[str, str], self.client.hgetall(self.keys.upload(upload_id)))
