"""F20: an image worker under a memory limit meets images that need more than it may use: those
jobs end ``failed: resource_limit`` after at most 3 attempts, normal images beside them all succeed,
and the email worker keeps its pace (reliability-security.md §6.1).

A real media worker process (2 threads) runs with ``RLIMIT_AS`` set by ``prlimit`` on the worker
process the test started: its address space at start plus 512 MB (§6.1 says 512 MB in all; an
idle Dramatiq worker already maps ~0.5–1 GB of address space here, so the limit is the headroom
above that). The test supervises it: a worker that dies is started again and limited again. Jobs
go through the real API: 40 MP RGBA PNGs resized to three sizes near full size (about 160 MB
decoded, and each output as large again) mixed with normal 2 MP JPEG resizes, while a real email
worker sends to tests/email's SMTP sink.

Promised, and checked:

- every oversized job ends ``failed`` with ``resource_limit`` (a ``MemoryError`` is retryable, then
  final) after ≤ 3 attempts; if instead the process died, it is quarantined ``dead`` after 3
  deliveries (F1 plus D6) — reported, and allowed only with that code;
- every normal image job succeeds; no job is lost;
- the email queue keeps ≥ 90% of its baseline throughput while images are still being worked on
  (each rate the mean of two bursts after a warm-up one; floor asserted at 75% in the default run,
  whose bursts of 150 emails last about a second and vary by ±20% alone, and at 90% at
  ``OFFLOAD_CHAOS_SCALE`` ≥ 10). The media worker runs at ``OFFLOAD_WORKER_NICE`` 15 and the
  email worker at 5, their defaults: at equal priority the images took their share of the two
  cores and email fell to 60-80%;
- the media worker builds a normal image at once afterwards (recovery s).

Backoffs are scaled (``OFFLOAD_RETRY_BACKOFF_SCALE=0.05``).
"""

from __future__ import annotations

import io
import resource
import threading
import time
from pathlib import Path
from typing import Any

import pytest
import redis
from PIL import Image

from tests.chaos.harness import SCALE, Submitter, assert_common, drain
from tests.chaos.ledger import TERMINAL, Ledger, finished, report, seconds_until_progress, wait_all_finished
from tests.chaos.sinks import children, memory_kb
from tests.chaos.smtp_server import SmtpServerProcess
from tests.support import REDIS_URL
from tests.support.media import photo
from tests.system.stack import Api, Worker

OVERSIZED = 2 * SCALE
NORMAL = 20 * SCALE
EMAILS = 150 * SCALE
HEADROOM = 512 * 1024**2


def _big_png() -> bytes:
    """8000×5000 RGBA (40 MP, the most allowed), compressing to a small upload."""
    image = Image.new("RGBA", (8000, 5000), (200, 30, 30, 255))
    image.paste((30, 30, 200, 128), (0, 0, 2000, 1250))
    buffer = io.BytesIO()
    image.save(buffer, "PNG", compress_level=9)
    return buffer.getvalue()


def _resize(upload_id: str, widths: list[int], formats: list[str]) -> dict[str, Any]:
    sizes = [{"width": w} for w in widths]
    return {"type": "image.resize", "payload": {"source": {"upload_id": upload_id}, "sizes": sizes, "formats": formats}}


def _email(n: int) -> dict[str, Any]:
    return {
        "type": "email.send",
        "payload": {"to": [{"email": f"user{n}@example.com"}], "template": "welcome", "vars": {"name": "Ann"}},
    }


class Supervisor:
    """Keeps the media worker running under its memory limit (what systemd or Kubernetes would do,
    with ``LimitAS=`` or a memory limit): restarts it when it exits, and limits every new process."""

    def __init__(self, worker: Worker) -> None:
        self.worker = worker
        self.restarts = 0
        self.limited: set[int] = set()
        self.stopping = threading.Event()
        self.limit()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def limit(self) -> None:
        assert self.worker.process is not None
        for pid in children(self.worker.process.pid):
            if pid not in self.limited:
                size = memory_kb(pid, "VmSize") * 1024
                resource.prlimit(pid, resource.RLIMIT_AS, (size + HEADROOM, size + HEADROOM))
                self.limited.add(pid)

    def _run(self) -> None:
        while not self.stopping.wait(0.2):
            process = self.worker.process
            if process is not None and process.poll() is not None:
                self.restarts += 1
                self.worker.start()
            try:
                self.limit()
            except (ProcessLookupError, FileNotFoundError):
                continue

    def stop(self) -> None:
        self.stopping.set()
        self.thread.join(timeout=5)


def _emails_rate(api: Api, ledger: Ledger, client: redis.Redis) -> float:
    mine = Ledger()
    started = time.monotonic()
    Submitter(api, mine).burst(EMAILS, _email(0))
    wait_all_finished(mine, client, timeout=60 * SCALE)
    rate = EMAILS / (time.monotonic() - started)
    for entry in mine.entries:
        ledger.record(entry.key, entry.status, entry.job_id)
    return rate


@pytest.mark.serial  # it measures throughput or latency: it runs alone (scripts/test.sh)
def test_f20_images_past_the_memory_limit_fail_resource_limit_while_normal_ones_and_email_carry_on(
    env: dict[str, str], logs: Path, tmp_path: Path
) -> None:
    env = {**env, "OFFLOAD_STORAGE_DIR": str(tmp_path / "storage"), "OFFLOAD_RETRY_BACKOFF_SCALE": "0.05"}
    smtp = SmtpServerProcess(logs)  # its own process: throughput is Offload's, not the test's
    smtp.start()
    api = Api(env, logs)
    mailer = Worker({**env, "OFFLOAD_SMTP_PORT": str(smtp.port), "OFFLOAD_SMTP_RATE_PER_SECOND": "0"}, logs, "email")
    media = Worker(env, logs, domain="media", threads=2)
    supervisor = Supervisor(media)
    client = redis.Redis.from_url(REDIS_URL)
    ledger = Ledger()
    submitter = Submitter(api, ledger)
    try:
        big = api.upload(_big_png())
        small = api.upload(photo(1600, 1200, gps=False))
        _emails_rate(api, ledger, client)  # warm-up: connections, templates
        baseline = (_emails_rate(api, ledger, client) + _emails_rate(api, ledger, client)) / 2
        kinds: dict[str, list[str]] = {"big": [], "normal": []}
        for n in range(max(OVERSIZED, NORMAL)):
            if n < OVERSIZED:
                submitter.submit(_resize(big, [7900, 7000, 6000], ["png"]))
                kinds["big"].append(ledger.entries[-1].job_id or "")
            submitter.submit(_resize(small, [800, 400], ["jpeg"]))
            kinds["normal"].append(ledger.entries[-1].job_id or "")
        during = (_emails_rate(api, ledger, client) + _emails_rate(api, ledger, client)) / 2
        states = [client.hget(f"offload:job:{j}", "state") for j in kinds["big"] + kinds["normal"]]
        images_left = len([state for state in states if state is None or state.decode() not in TERMINAL])
        verdict = drain(ledger, client, timeout=120 * SCALE)
        records = {
            kind: [{k.decode(): v.decode() for k, v in client.hgetall(f"offload:job:{j}").items()} for j in ids]
            for kind, ids in kinds.items()
        }
        fresh = Ledger()
        Submitter(api, fresh).submit(_resize(small, [300], ["jpeg"]))
        recovery = seconds_until_progress(lambda: finished(fresh, client), total=1, timeout=30)
        healthy = drain(fresh, client, timeout=30)
        big_ends = sorted({f"{r['state']}:{r.get('error_code', '')}" for r in records["big"]})
        report(
            "F20",
            verdict,
            double_effects=0,  # outputs are written by atomic rename under the job's id (test_media_crash)
            recovery_s=recovery,
            faults=OVERSIZED,
            oversized_ends=big_ends,
            oversized_attempts=sorted({int(r.get("attempts", 0)) for r in records["big"]}),
            normal_ends=sorted({r["state"] for r in records["normal"]}),
            worker_restarts=supervisor.restarts,
            email_throughput=f"{during / baseline:.0%} of baseline ({during:.0f} vs {baseline:.0f}/s)",
            images_left_after_emails=images_left,
        )
        assert_common(verdict)
        assert set(big_ends) <= {"failed:resource_limit", "dead:too_many_deliveries"}, big_ends
        assert all(int(r["attempts"]) <= 3 for r in records["big"])
        assert "failed:resource_limit" in big_ends, f"no MemoryError was turned into resource_limit: {big_ends}"
        assert {r["state"] for r in records["normal"]} == {"succeeded"}
        assert images_left > 0, "the images were done before the emails: nothing was measured"
        assert during >= (0.9 if SCALE >= 10 else 0.75) * baseline, (during, baseline)
        assert healthy.terminal == {"succeeded": 1} and recovery <= 30
    finally:
        supervisor.stop()
        api.stop()
        mailer.stop()
        media.stop()
        smtp.stop()
