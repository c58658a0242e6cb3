"""Choosing the square an avatar is cut from: the centre, or the part with the most detail.

The smart crop is the entropy strategy libvips and thumbor offer (no face detection, so nothing
to train, ship or explain): on a small grey copy, slide a square along the long side and keep the
position whose histogram has the most entropy. Flat backgrounds score low, a subject's texture
and edges score high, so a portrait standing off-centre keeps its head.
"""

from __future__ import annotations

from typing import Literal

from PIL import Image

#: The short side of the grey copy the search runs on: enough to tell a subject from a background,
#: small enough that the search costs about a millisecond.
PROBE_SIDE = 64
#: How many window positions the search tries along the long side (at most).
PROBE_STEPS = 32

Box = tuple[int, int, int, int]


def square_box(image: Image.Image, strategy: Literal["centre", "smart"]) -> Box:
    """The ``(left, top, right, bottom)`` of the largest square in ``image`` to keep."""
    width, height = image.size
    side = min(width, height)
    if width == height:
        return (0, 0, side, side)
    offset = (max(width, height) - side) // 2
    if strategy == "smart":
        offset = _busiest_offset(image, side)
    return (offset, 0, offset + side, side) if width > height else (0, offset, side, offset + side)


def _busiest_offset(image: Image.Image, side: int) -> int:
    """The offset along the long side of the square window with the most entropy (full-size pixels)."""
    scale = PROBE_SIDE / side
    probe_size = (max(PROBE_SIDE, round(image.width * scale)), max(PROBE_SIDE, round(image.height * scale)))
    probe = image.convert("L").resize(probe_size, Image.Resampling.BOX)
    long_side = max(probe.size)
    slack = long_side - PROBE_SIDE
    if slack <= 0:
        return (max(image.size) - side) // 2
    step = max(1, slack // PROBE_STEPS)
    best_offset, best_score = slack // 2, -1.0
    for offset in (*range(0, slack + 1, step), slack):
        box = (
            (offset, 0, offset + PROBE_SIDE, PROBE_SIDE)
            if probe.width > probe.height
            else (0, offset, PROBE_SIDE, offset + PROBE_SIDE)
        )
        score = probe.crop(box).entropy()
        # Ties (a uniform image) go to the position nearest the centre.
        if score > best_score + 1e-9 or (
            abs(score - best_score) <= 1e-9 and abs(offset - slack / 2) < abs(best_offset - slack / 2)
        ):
            best_offset, best_score = offset, score
    return min(round(best_offset / scale), max(image.size) - side)
