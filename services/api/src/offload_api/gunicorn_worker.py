"""gunicorn's gevent worker, accepting new connections in batches rather than one per loop turn (F14).

With more than one worker, gunicorn's gevent worker sets gevent's ``max_accept`` to 1, so that
connections spread evenly: each worker accepts one connection per turn of its event loop. Under
load a turn runs every ready request and takes tens of milliseconds, so a burst of new connections
waited *seconds* just to be accepted, before any limit could answer them. Measured at 2× capacity
on 2 cores: requests on open connections were answered in ~50 ms (202 or 503 ``overloaded``) while
the first request of each of ~300 new connections waited up to 5 s. Accepting up to
:data:`ACCEPT_BATCH` per turn keeps that wait to a few turns; the workers still share new
connections, since the less busy one turns more often and so accepts more.

``offload_api.gunicorn_conf`` names this class; nothing else changes from gunicorn's worker.
"""

from __future__ import annotations

from typing import Any

from gevent.server import StreamServer
from gunicorn.workers import ggevent

#: Connections a worker accepts per turn of its event loop (gevent's default is 100, gunicorn's 1).
ACCEPT_BATCH = 16


class _BatchAcceptServer(StreamServer):  # type: ignore[misc]
    """gevent's ``StreamServer``, where gunicorn's ``max_accept = 1`` becomes :data:`ACCEPT_BATCH`."""

    def __setattr__(self, name: str, value: Any) -> None:
        if name == "max_accept":
            value = max(int(value), ACCEPT_BATCH)
        super().__setattr__(name, value)


class GeventWorker(ggevent.GeventWorker):  # type: ignore[misc]
    """gunicorn's gevent worker whose servers accept in batches of :data:`ACCEPT_BATCH`."""

    def init_process(self) -> None:
        # gunicorn's run() builds its servers from the module's StreamServer; this runs in the
        # worker process only, after the fork, so the arbiter and other programs are untouched.
        ggevent.StreamServer = _BatchAcceptServer
        super().init_process()
