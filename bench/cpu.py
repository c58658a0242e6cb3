"""The CPU-per-job table: µs of CPU each process group spent per job, for ours, bare Dramatiq and BullMQ.

Built from what the drain, enqueue and API measurements metered (:class:`bench.procs.CpuMeter`),
as medians over the rounds. A group's figure is its CPU seconds over the metered window divided by
the jobs completed (drain), sent (enqueue) or accepted with a 202 (API) in that window. Left out:
other users' processes, the benchmark's own polling, the load generator (wrk), and RabbitMQ in
BullMQ's lines (it plays no part there; it only idles). The table is printed after the main one
and written to ``latest.json`` as ``cpu_per_job``.
"""

from __future__ import annotations

from dataclasses import dataclass

from bench.api import ApiResult, ServerRun
from bench.drain import DrainResult
from bench.enqueue import MODES, EnqueueResult
from bench.table import grid, num

#: The groups, in column order: the metered group names each is read from, and its heading.
COLUMNS = {
    "worker": "worker",
    "rabbitmq": "RabbitMQ",
    "redis": "Redis",
    "api": "API server",
    "client": "client",
}
SYSTEMS = {"ours": "ours", "bare": "bare Dramatiq", "bullmq": "BullMQ"}


@dataclass(frozen=True)
class CpuLine:
    """One line of the table: µs of CPU per job of each group (only those that took part)."""

    measure: str
    system: str
    us: dict[str, float]

    @property
    def total(self) -> float:
        """µs per job of every group on the line."""
        return sum(self.us.values())

    def as_dict(self) -> dict[str, object]:
        """JSON form: ``<group>_us`` per group that took part, and ``total_us``."""
        return {
            "measure": self.measure,
            "system": self.system,
            **{f"{name}_us": round(value, 1) for name, value in self.us.items()},
            "total_us": round(self.total, 1),
        }


def _own(system: str, us: dict[str, float]) -> dict[str, float]:
    """The groups of ``us`` that belong to ``system`` (BullMQ has no broker besides Redis)."""
    return {
        name: value for name, value in us.items() if name in COLUMNS and not (system == "bullmq" and name == "rabbitmq")
    }


def drain_lines(result: DrainResult) -> list[CpuLine]:
    """Worker, RabbitMQ and Redis per job completed, each system's median over the rounds."""
    lines = []
    for system, label in SYSTEMS.items():
        us = result.median_cpu(system)
        if us:
            lines.append(CpuLine("drain", label, _own(system, us)))
    return lines


def enqueue_lines(result: EnqueueResult) -> list[CpuLine]:
    """Client, RabbitMQ and Redis per job sent, for each way of enqueueing and each system."""
    lines = []
    for mode in MODES:
        measure = "enqueue one by one" if mode == "single" else "enqueue batches"
        for system in ("ours", "bullmq"):
            us = result.median_cpu(system, mode)
            if us:
                lines.append(CpuLine(measure, SYSTEMS[system], _own(system, us)))
    return lines


def _server_line(run: ServerRun, measure: str, system: str, label: str) -> CpuLine | None:
    accepted = run.load.count(202)
    if not accepted:
        return None
    per_job = run.cpu.wall / accepted * 1e6
    groups = {"api" if name == "server" else name: cores * per_job for name, cores in run.cpu.groups.items()}
    return CpuLine(measure, label, _own(system, groups))


def api_lines(result: ApiResult) -> list[CpuLine]:
    """API server, RabbitMQ and Redis per 202, for our API and Fastify + BullMQ."""
    measure = f"API (c={result.concurrency}, per 202)"
    found = [_server_line(result.ours, measure, "ours", "ours")]
    if result.bullmq:
        found.append(_server_line(result.bullmq, measure, "bullmq", "Fastify+BullMQ"))
    return [line for line in found if line]


def render(lines: list[CpuLine]) -> str:
    """The table as aligned text under its title (empty for no lines)."""
    if not lines:
        return ""
    used = [name for name in COLUMNS if any(name in line.us for line in lines)]
    cells = [
        (line.measure, line.system, *(num(line.us[name]) if name in line.us else "—" for name in used), num(line.total))
        for line in lines
    ]
    title = "CPU per job (µs; medians of the rounds; other users' processes, the benchmark's polling and wrk left out)"
    return title + "\n\n" + grid(("measure", "system", *(COLUMNS[name] for name in used), "total"), cells)
