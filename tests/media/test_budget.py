"""The media worker's memory budget: big decodes take turns, small ones share, a huge one runs alone."""

from __future__ import annotations

import threading
import time

from PIL import Image

from offload_media.images import MemoryBudget, decoded_bytes


def test_reservations_that_do_not_fit_together_take_turns_and_an_oversized_one_runs_alone() -> None:
    budget = MemoryBudget(100)
    inside: list[int] = []
    most = [0]
    lock = threading.Lock()

    def job(size: int) -> None:
        with budget.reserve(size):
            with lock:
                inside.append(size)
                most[0] = max(most[0], sum(inside))
            time.sleep(0.05)
            with lock:
                inside.remove(size)

    threads = [threading.Thread(target=job, args=(size,)) for size in (60, 60, 30, 250)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    assert not any(t.is_alive() for t in threads)  # the 250 ran (alone) rather than never
    assert most[0] == 250 or most[0] <= 100
    assert budget.held == 0


def test_a_jpeg_is_budgeted_at_its_reduced_decode_size() -> None:
    jpeg = Image.new("RGB", (4000, 3000))
    jpeg.format = "JPEG"
    png = Image.new("RGB", (4000, 3000))
    png.format = "PNG"
    assert decoded_bytes(jpeg, (400, 300)) == decoded_bytes(png, (400, 300)) // 64  # 1/8 scale per side
    assert decoded_bytes(jpeg, (2048, 1536)) == decoded_bytes(png, (2048, 1536))  # 1/2 would be too small
