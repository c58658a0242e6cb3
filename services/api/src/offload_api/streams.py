"""The Server-Sent Event streams one API process keeps open, shared fairly between tenants.

A stream holds a connection and a Redis subscription for as long as its job runs, mostly idle, so
each process caps them (``OFFLOAD_MAX_EVENT_STREAMS``). One cap for everyone let one tenant's idle
streams take every slot: with the cap at 2, tenant A's two streams made every request of tenant B
a 503 (issue 29, item 10). So the cap is shared the way the admission gate shares requests in
progress (``offload_api.admission``): below the cap any tenant may open a stream; at the cap a
tenant holding less than its share (the cap divided by the tenants with streams open, counting
it) may still open one, up to twice the cap in all. A tenant alone may use the whole cap; with
others it keeps at most its share once the process is full.
"""

from __future__ import annotations

import threading


class StreamSlots:
    """The open event streams of one process, counted per tenant."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        #: Open streams by tenant (tenants with none are left out).
        self._by_tenant: dict[str, int] = {}
        self._open = 0

    @property
    def open(self) -> int:
        """Streams open in this process now."""
        return self._open

    def take(self, tenant: str, cap: int) -> bool:
        """Count a new stream of ``tenant`` if the cap (or ``tenant``'s share of it) allows; else False."""
        with self._lock:
            mine = self._by_tenant.get(tenant, 0)
            if self._open >= cap:
                tenants = len(self._by_tenant) + (0 if mine else 1)
                if mine >= cap / tenants or self._open >= 2 * cap:
                    return False
            self._by_tenant[tenant] = mine + 1
            self._open += 1
            return True

    def give_back(self, tenant: str) -> None:
        """Count a stream of ``tenant`` as closed."""
        with self._lock:
            left = self._by_tenant.get(tenant, 0) - 1
            if left > 0:
                self._by_tenant[tenant] = left
            else:
                self._by_tenant.pop(tenant, None)
            self._open -= 1
