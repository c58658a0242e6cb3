"""Small statistics helpers (percentiles, median) used by every measurement."""

from __future__ import annotations

from collections.abc import Sequence


def percentile(values: Sequence[float], q: float) -> float:
    """The ``q``-th percentile (0-100) by linear interpolation; NaN for no values."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    rank = (len(ordered) - 1) * q / 100
    low = int(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def median(values: Sequence[float]) -> float:
    """The median; NaN for no values."""
    return percentile(values, 50)


def steady_rate(times: Sequence[float], low: float = 5, high: float = 95) -> float:
    """Completions per second between the ``low``-th and ``high``-th percentile completion times.

    This leaves out both the boot of the worker processes (which do not start consuming at the same
    instant) and the last stragglers, so it is the rate the workers sustain once all are running.
    """
    if len(times) < 20:
        return float("nan")
    ordered = sorted(times)
    first = ordered[int(len(ordered) * low / 100)]
    last = ordered[int(len(ordered) * high / 100) - 1]
    span = last - first
    count = int(len(ordered) * high / 100) - int(len(ordered) * low / 100) - 1
    return count / span if span > 0 else float("nan")
