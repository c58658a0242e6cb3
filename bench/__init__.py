"""Offload benchmarks: ``make bench`` (``python -m bench``).

Three measurements, each taken side by side with its reference in the same run on the same machine,
because the development machine is shared and noisy and only same-run ratios are comparable
(``performance-notes.md``):

1. :mod:`bench.api`: ``POST /v1/jobs`` accepted per second and latency at concurrency 32, against a
   no-op Flask endpoint served by the same gunicorn/gevent setup (the ceiling).
2. :mod:`bench.drain`: how fast the real worker drains ``system.noop`` jobs with full status
   tracking, against bare Dramatiq draining no-op messages from the same broker.
3. :mod:`bench.latency`: enqueue→start latency on an idle worker, against bare Dramatiq's.

The benchmark reports; it never fails because a target was missed.
"""

from __future__ import annotations
