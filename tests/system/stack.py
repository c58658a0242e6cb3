"""The real suite as processes: ``offload-api`` (gunicorn + gevent), Dramatiq workers, a private RabbitMQ.

These are what ``make up`` runs, started by the tests on free loopback ports and stopped by PID.
"""

from __future__ import annotations

import http.client
import json
import os
import re
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from tests.helpers import VENV_BIN, free_port, kill_tree, port_open, spawn, stop, wait_for
from tests.s3_server import storage_env
from tests.support import API_KEYS, KEYS, queue_depth


class Api:
    """An ``offload-api`` server process."""

    def __init__(self, env: dict[str, str], logs: Path, workers: int = 1) -> None:
        self.port = free_port()
        self.log = logs / f"api-{self.port}.log"
        self.process = spawn(
            [str(VENV_BIN / "offload-api"), "--bind", f"127.0.0.1:{self.port}", "--workers", str(workers)],
            env=env,
            log=self.log,
        )
        wait_for(self._healthy, timeout=20, message=lambda: f"API did not start:\n{self.log.read_text()[-2000:]}")

    def _healthy(self) -> bool:
        if self.process.poll() is not None:
            raise AssertionError(f"API exited:\n{self.log.read_text()[-2000:]}")
        return port_open(self.port)

    def request(
        self,
        method: str,
        path: str,
        body: Any = None,
        *,
        who: str = "acme",
        headers: dict[str, str] | None = None,
        timeout: float = 10,
    ) -> tuple[int, dict[str, str], Any]:
        connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)
        all_headers = {"Authorization": f"Bearer {KEYS[who]}", **(headers or {})}
        data = json.dumps(body) if body is not None else None
        if data is not None:
            all_headers["Content-Type"] = "application/json"
        try:
            connection.request(method, path, body=data, headers=all_headers)
            response = connection.getresponse()
            raw = response.read()
            return response.status, dict(response.getheaders()), json.loads(raw) if raw else None
        finally:
            connection.close()

    def upload(self, data: bytes, *, who: str = "acme", timeout: float = 60) -> str:
        """Upload ``data`` as raw bytes; returns the upload id (asserting a 201)."""
        connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)
        try:
            headers = {"Authorization": f"Bearer {KEYS[who]}", "Content-Type": "application/octet-stream"}
            connection.request("POST", "/v1/uploads", body=data, headers=headers)
            response = connection.getresponse()
            body = json.loads(response.read())
            assert response.status == 201, body
            return str(body["id"])
        finally:
            connection.close()

    def events(
        self, job_id: str, *, last_event_id: int | None = None, who: str = "acme", timeout: float = 30
    ) -> Iterator[dict[str, Any]]:
        """Read the job's SSE stream until the server closes it, yielding ``{"id", "event", "data"}``."""
        connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)
        headers = {"Authorization": f"Bearer {KEYS[who]}", "Accept": "text/event-stream"}
        if last_event_id is not None:
            headers["Last-Event-ID"] = str(last_event_id)
        connection.request("GET", f"/v1/jobs/{job_id}/events", headers=headers)
        response = connection.getresponse()
        assert response.status == 200 and response.getheader("Content-Type", "").startswith("text/event-stream")
        event: dict[str, Any] = {}
        try:
            for raw_line in response:
                line = raw_line.decode().rstrip("\n")
                if not line:
                    if "data" in event:
                        yield event
                    event = {}
                elif not line.startswith(":") and ":" in line:
                    field, _, value = line.partition(":")
                    value = value.lstrip()
                    event[field] = json.loads(value) if field == "data" else value
        finally:
            connection.close()

    def stop(self, *, graceful: bool = True) -> None:
        """Stop the API: gracefully (SIGTERM: open requests finish, up to gunicorn's 20 s), or at once
        (SIGINT: gunicorn's quick shutdown, for a test done with it whose clients may have left
        streams open)."""
        stop(self.process, sig=signal.SIGTERM if graceful else signal.SIGINT)


class Worker:
    """A ``dramatiq offload_<domain>.worker:setup`` process."""

    def __init__(
        self,
        env: dict[str, str],
        logs: Path,
        domain: str = "email",
        threads: int = 4,
        processes: int = 1,
        queues: tuple[str, ...] | None = None,
    ) -> None:
        self.env, self.logs, self.domain, self.threads, self.processes = env, logs, domain, threads, processes
        #: The queues consumed: the domain's and ``system`` unless given (the email worker's
        #: ``webhooks`` queue is opted into).
        self.queues = queues or (domain, "system")
        self.process: subprocess.Popen[bytes] | None = None
        self.start()

    def start(self) -> None:
        self.log = self.logs / f"worker-{self.domain}-{time.monotonic_ns()}.log"
        args = [
            str(VENV_BIN / "dramatiq"),
            f"offload_{self.domain}.worker:setup",
            "--queues",
            *self.queues,
            "--processes",
            str(self.processes),
            "--threads",
            str(self.threads),
        ]
        self.process = spawn(args, env=self.env, log=self.log)
        wait_for(
            lambda: self.log.read_text().count("Worker process is ready for action") >= self.processes,
            timeout=30,
            message=lambda: f"worker did not start:\n{self.log.read_text()[-2000:]}",
        )

    def kill(self) -> None:
        """SIGKILL the worker's main process and its children: no shutdown, no acks."""
        assert self.process is not None
        kill_tree(self.process)

    def stop(self) -> None:
        if self.process is not None:
            stop(self.process, timeout=30)


def stack_env(broker_url: str, redis_url: str, **extra: str) -> dict[str, str]:
    """The ``OFFLOAD_*`` environment the processes of a test stack share."""
    return {
        "OFFLOAD_ENV": "test",
        "OFFLOAD_BROKER_URL": broker_url,
        "OFFLOAD_REDIS_URL": redis_url,
        "OFFLOAD_API_KEYS": API_KEYS,
        "OFFLOAD_LOG_FORMAT": "text",
        "OFFLOAD_URL_ALLOW_HOSTS": "127.0.0.1",
        "OFFLOAD_METRICS": "false",  # tests/system/test_metrics.py turns them on, with ports of its own
        **storage_env(),  # OFFLOAD_TEST_STORAGE=s3: the session's S3 server instead of OFFLOAD_STORAGE_DIR
        **extra,
    }


#: Where the Debian package keeps RabbitMQ's own applications and its plugins, side by side.
RABBITMQ_APPS = Path("/usr/lib/rabbitmq/lib")


def rabbit_applications(into: Path, enabled: list[str]) -> Path:
    """A plugins directory holding only the broker, the ``enabled`` plugins and what they need, linked.

    The package's directory also holds some fifty optional plugins (management, MQTT, shovel...)
    whose modules a node loads and scans at boot even when none is enabled: a private node boots
    on a quarter less CPU without them (3.8 s instead of 5.1 s here), and the tests boot a dozen.
    """
    found = {entry.name.rsplit("-", 1)[0]: entry for entry in RABBITMQ_APPS.glob("rabbitmq_server-*/plugins/*-*")}
    wanted: set[str] = set()
    pending = ["rabbit", *enabled]
    while pending:
        name = pending.pop()
        if name in wanted or name not in found:
            continue  # seen, or one of Erlang/OTP's own
        wanted.add(name)
        listed = re.search(r"\{applications,\s*\[([^\]]*)\]", (found[name] / "ebin" / f"{name}.app").read_text())
        pending += [app.strip() for app in listed.group(1).split(",")] if listed else []
    shutil.rmtree(into, ignore_errors=True)
    into.mkdir(parents=True)
    for name in wanted:
        (into / found[name].name).symlink_to(found[name])
    return into


class PrivateRabbitMQ:
    """A RabbitMQ node of the test's own (own port, data directory and node name), to stop and restart.

    The machine's shared broker is never stopped; this node has ``consumer_timeout`` lowered to one
    minute, as reliability-security.md §6.0 suggests for test runs.
    """

    def __init__(self, base: Path) -> None:
        if shutil.which("rabbitmq-server") is None:
            raise RuntimeError("rabbitmq-server is not installed")
        self.base = base
        self.port = free_port()
        self.dist_port = free_port()
        self.node = f"offloadtest{self.port}@localhost"
        base.mkdir(parents=True, exist_ok=True)
        (base / "rabbitmq.conf").write_text(
            f"listeners.tcp.default = 127.0.0.1:{self.port}\nconsumer_timeout = 60000\nloopback_users = none\n"
        )
        (base / "enabled_plugins").write_text("[].\n")
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"amqp://guest:guest@127.0.0.1:{self.port}/%2F"

    @property
    def enabled_plugins(self) -> list[str]:
        """The plugins named in the node's ``enabled_plugins`` file (``[a,b].``), which a test may rewrite."""
        listed = (self.base / "enabled_plugins").read_text().strip().removeprefix("[").removesuffix("].")
        return [name.strip() for name in listed.split(",") if name.strip()]

    def start(self, timeout: float = 90) -> None:
        env = {
            "RABBITMQ_NODENAME": self.node,
            "RABBITMQ_NODE_IP_ADDRESS": "127.0.0.1",
            "RABBITMQ_NODE_PORT": str(self.port),
            "RABBITMQ_DIST_PORT": str(self.dist_port),
            "RABBITMQ_MNESIA_BASE": str(self.base / "mnesia"),
            "RABBITMQ_LOG_BASE": str(self.base / "log"),
            "RABBITMQ_CONFIG_FILE": str(self.base / "rabbitmq"),
            "RABBITMQ_ENABLED_PLUGINS_FILE": str(self.base / "enabled_plugins"),
            "RABBITMQ_PLUGINS_DIR": str(rabbit_applications(self.base / "plugins", self.enabled_plugins)),
            "RABBITMQ_PID_FILE": str(self.base / "pid"),
            "HOME": str(self.base),
            "ERL_CRASH_DUMP": str(self.base / "erl_crash.dump"),  # beside its logs, not in the checkout
        }
        (self.base / "pid").unlink(missing_ok=True)
        self.process = spawn(["/usr/lib/rabbitmq/bin/rabbitmq-server"], env=env, log=self.base / "server.log")
        wait_for(
            lambda: port_open(self.port),
            timeout=timeout,
            interval=0.25,
            message=lambda: f"private RabbitMQ did not start:\n{(self.base / 'server.log').read_text()[-2000:]}",
        )

    @property
    def beam_pid(self) -> int:
        return int((self.base / "pid").read_text().strip())

    def stop(self) -> None:
        """Stop the node the way an operator would (SIGTERM to the VM), and wait until it is gone."""
        if self.process is None or self.process.poll() is not None:
            return
        os.kill(self.beam_pid, signal.SIGTERM)
        self.process.wait(timeout=60)
        wait_for(lambda: not port_open(self.port), timeout=10)

    def pause(self) -> None:
        """Freeze the node (SIGSTOP): it accepts TCP but answers nothing, like a hung broker."""
        os.kill(self.beam_pid, signal.SIGSTOP)

    def resume(self) -> None:
        os.kill(self.beam_pid, signal.SIGCONT)

    def ctl(self, *args: str) -> str:
        """Run ``rabbitmqctl`` against this node (``set_disk_free_limit``, ``list_alarms``...)."""
        result = subprocess.run(
            ["/usr/lib/rabbitmq/bin/rabbitmqctl", "-n", self.node, *args],
            env={**os.environ, "HOME": str(self.base)},
            capture_output=True,
            text=True,
            timeout=60,
            check=True,
        )
        return result.stdout

    def queue_depth(self, queue: str) -> int:
        return queue_depth(queue, self.url)


class PrivateRedis:
    """A redis-server of the test's own on a free port, to stop and start again."""

    def __init__(self, base: Path, *, fsync: str = "always") -> None:
        if shutil.which("redis-server") is None:
            raise RuntimeError("redis-server is not installed")
        self.base = base
        self.fsync = fsync  # appendfsync: "always", or "everysec" (may lose the last second on a crash)
        self.port = free_port()
        base.mkdir(parents=True, exist_ok=True)
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        args = [
            "redis-server",
            "--bind",
            "127.0.0.1",
            "--port",
            str(self.port),
            "--save",
            "",
            "--appendonly",
            "yes",
            "--appendfsync",
            self.fsync,
            "--dir",
            str(self.base),
        ]
        self.process = spawn(args, env={}, log=self.base / "redis.log")
        wait_for(self._loaded, timeout=60, interval=0.1)

    def _loaded(self) -> bool:
        """Answering commands: listening, and done loading its append-only file."""
        import redis

        try:
            return bool(redis.Redis(port=self.port, socket_timeout=1).ping())
        except redis.RedisError:
            return False

    def stop(self) -> None:
        if self.process is not None:
            stop(self.process)
            wait_for(lambda: not port_open(self.port), timeout=10)

    def kill(self) -> None:
        """SIGKILL the server: no shutdown save, only what the append-only file already holds."""
        assert self.process is not None
        self.process.kill()
        self.process.wait(timeout=10)
        wait_for(lambda: not port_open(self.port), timeout=10)
