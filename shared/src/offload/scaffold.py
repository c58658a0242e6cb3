"""``offload new-worker NAME``: a new worker package, outside any Offload checkout, that passes its own test.

It writes what a team needs to run its own job types on Offload: a ``pyproject.toml`` that
depends only on the ``offload`` library and names the worker's spec as an entry point, one
sample job type in ``worker.py``, a test against real RabbitMQ and Redis (through the
:mod:`offload.testing` fixtures), a Dockerfile, a Kubernetes Deployment with a KEDA
ScaledObject scaling on the worker's queue, and a compose override. Nothing in Offload itself
is edited: the worker registers its contracts when it starts, and the API picks them up.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from string import Template

#: A worker's name: its domain, the first part of its job types' names (``text`` in ``text.wordcount``).
NAME = re.compile(r"[a-z][a-z0-9_]{0,30}")

_PYPROJECT = """\
[project]
name = "offload-worker-${name}"
version = "0.1.0"
description = "An Offload worker serving the ${name}.* job types."
requires-python = ">=3.11"
dependencies = ["offload"]

[project.optional-dependencies]
test = ["pytest>=8"]

# How Offload's tools find this worker's spec.
[project.entry-points."offload.workers"]
${name} = "offload_${name}.worker:SPEC"

[build-system]
requires = ["hatchling"]
build-backend = "hatchling.build"

[tool.hatch.build.targets.wheel]
packages = ["src/offload_${name}"]

[tool.pytest.ini_options]
testpaths = ["tests"]
pythonpath = ["src"]
"""

_INIT = '''\
"""The ${name} worker: job types served by ``dramatiq offload_${name}.worker:setup``."""
'''

_WORKER = '''\
"""The ${name} worker's job types: ``dramatiq offload_${name}.worker:setup`` serves them.

Each job type is a function declared with ``@job``: its name, queue, limits, and payload and
result models (read from the annotations). When the worker starts it registers them with
Offload, and the API accepts them within seconds. See Offload's docs/writing-jobs.md.
"""

from __future__ import annotations

from pydantic import BaseModel, Field

from offload import JobContext, Payload, WorkerSpec, job


class Greet(Payload):
    """Who to greet."""

    name: str = Field(min_length=1, max_length=100, description="The name to greet.")


class Greeting(BaseModel):
    """The greeting composed."""

    message: str


@job("${name}.greet", queue="${name}", time_limit=30)
def greet(ctx: JobContext, payload: Greet) -> Greeting:
    """Greet someone: the sample job type of a new worker; replace it with your own."""
    ctx.progress(50, "composing")
    return Greeting(message=f"Hello, {payload.name}!")


#: Everything this worker serves; ``setup`` is what the ``dramatiq`` command calls.
SPEC = WorkerSpec(name="${name}", jobs=(greet,))
setup = SPEC.setup
'''

_TEST = '''\
"""The ${name} worker's job types on a real worker, RabbitMQ and Redis (fixtures of offload.testing).

Run with RabbitMQ and Redis on loopback (or set OFFLOAD_TEST_BROKER_URL and OFFLOAD_TEST_REDIS_URL).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from offload.errors import ValidationFailed
from offload_${name}.worker import SPEC


def test_greet_runs_to_success_on_a_real_worker(
    offload_worker: Callable[..., Any], offload_wait: Callable[..., Any]
) -> None:
    with offload_worker(SPEC) as publisher:
        job = publisher.publish("${name}.greet", {"name": "Ada"})
        record = offload_wait(publisher, job.job_id, "succeeded")
    assert record.result == {"message": "Hello, Ada!"}


def test_a_bad_payload_is_refused_naming_the_field(offload_worker: Callable[..., Any]) -> None:
    with offload_worker(SPEC) as publisher, pytest.raises(ValidationFailed) as refused:
        publisher.publish("${name}.greet", {"name": ""})
    assert [item["field"] for item in refused.value.errors] == ["payload.name"]
'''

_DOCKERFILE = """\
# The ${name} worker. The offload library comes from your package index (or a wheel built
# from the Offload repository with `uv build shared`, copied in beside this file).
FROM python:3.11-slim-bookworm
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PYTHONUNBUFFERED=1 PYTHONDONTWRITEBYTECODE=1 OFFLOAD_LOG_FORMAT=json
RUN groupadd --system --gid 10001 offload \\
 && useradd --system --uid 10001 --gid offload --home-dir /app --shell /usr/sbin/nologin offload
WORKDIR /app
COPY pyproject.toml ./
COPY src/ src/
RUN pip install --no-cache-dir .
USER 10001:10001
# Dramatiq's metrics exposition server; Prometheus scrapes it.
EXPOSE 9191
STOPSIGNAL SIGTERM
CMD ${command}
"""

_KUBERNETES = """\
# The ${name} worker beside an Offload deployment (its offload-config and offload-secrets).
apiVersion: apps/v1
kind: Deployment
metadata:
  name: offload-worker-${dashed}
  labels: {app.kubernetes.io/name: offload-worker-${dashed}}
spec:
  replicas: 1  # KEDA owns the count from here on
  selector:
    matchLabels: {app.kubernetes.io/name: offload-worker-${dashed}}
  template:
    metadata:
      labels: {app.kubernetes.io/name: offload-worker-${dashed}}
      annotations:
        prometheus.io/scrape: "true"
        prometheus.io/port: "9191"
    spec:
      # Running jobs finish within --worker-shutdown-timeout (60 s) after SIGTERM.
      terminationGracePeriodSeconds: 90
      securityContext: {runAsNonRoot: true, runAsUser: 10001, runAsGroup: 10001}
      containers:
        - name: worker
          image: offload-worker-${dashed}
          command: ${command}
          env:
            - {name: dramatiq_prom_host, value: "0.0.0.0"}
          ports:
            - {name: metrics, containerPort: 9191}
          envFrom:
            - configMapRef: {name: offload-config}
            - secretRef: {name: offload-secrets}
          readinessProbe:
            httpGet: {path: /, port: metrics}
            periodSeconds: 10
          resources:
            requests: {cpu: 100m, memory: 128Mi}
            limits: {cpu: "1", memory: 512Mi}
          securityContext: {allowPrivilegeEscalation: false, readOnlyRootFilesystem: true, capabilities: {drop: [ALL]}}
          volumeMounts:
            - {name: tmp, mountPath: /tmp}
      volumes:
        - name: tmp
          emptyDir: {}
---
# One replica per 10 jobs waiting in the ${name} queue, between 0 and 4.
apiVersion: keda.sh/v1alpha1
kind: ScaledObject
metadata:
  name: offload-worker-${dashed}
spec:
  scaleTargetRef:
    name: offload-worker-${dashed}
  minReplicaCount: 0
  maxReplicaCount: 4
  cooldownPeriod: 300
  triggers:
    - type: rabbitmq
      authenticationRef: {name: offload-rabbitmq}
      metadata:
        protocol: amqp
        mode: QueueLength
        queueName: ${name}
        value: "10"
"""

_COMPOSE = """\
# Run beside Offload's docker-compose.yml:
#   docker compose -f docker-compose.yml -f path/to/offload-worker-${name}/compose.override.yml up
services:
  worker-${dashed}:
    build: {context: path/to/offload-worker-${name}}
    command: ${command}
    env_file: [.env]
    environment:
      dramatiq_prom_host: 0.0.0.0
    depends_on: [rabbitmq, redis]
    stop_grace_period: 90s
    restart: unless-stopped
"""

_README = """\
# offload-worker-${name}

An Offload worker serving the `${name}.*` job types from the `${name}` queue.

- `src/offload_${name}/worker.py`: the job types (`@job`) and the worker's `SPEC`.
- `tests/`: run `pytest` with RabbitMQ and Redis on loopback (`OFFLOAD_TEST_BROKER_URL`,
  `OFFLOAD_TEST_REDIS_URL` to point elsewhere).
- Run it: `dramatiq offload_${name}.worker:setup --queues ${name} system` with the deployment's
  `OFFLOAD_BROKER_URL` and `OFFLOAD_REDIS_URL`. It registers its job types when it starts; the API
  accepts them within seconds, with no restart and no edit to Offload.
- Deploy: `Dockerfile`, `k8s.yaml` (Deployment + KEDA ScaledObject), `compose.override.yml`.
"""

FILES = {
    "pyproject.toml": _PYPROJECT,
    "README.md": _README,
    "src/offload_${name}/__init__.py": _INIT,
    "src/offload_${name}/py.typed": "",
    "src/offload_${name}/worker.py": _WORKER,
    "tests/test_worker.py": _TEST,
    "Dockerfile": _DOCKERFILE,
    "k8s.yaml": _KUBERNETES,
    "compose.override.yml": _COMPOSE,
}


def new_worker(name: str, into: Path) -> Path:
    """Write the package of a new worker named ``name`` into ``into/offload-worker-<name>``; returns its folder.

    Raises:
        ValueError: the name is not a lower-case domain (``[a-z][a-z0-9_]*``, at most 31
            characters), or the folder exists already.
    """
    if not NAME.fullmatch(name):
        raise ValueError(f"{name!r} is not a worker name: lower-case letters, digits and _, starting with a letter.")
    root = into / f"offload-worker-{name}"
    if root.exists():
        raise ValueError(f"{root} exists already; nothing was written.")
    command = ["dramatiq", f"offload_{name}.worker:setup", "--queues", name, "system"]
    command += ["--processes", "1", "--threads", "8", "--worker-shutdown-timeout", "60000"]
    values = {"name": name, "dashed": name.replace("_", "-"), "command": json.dumps(command)}
    for path, text in FILES.items():
        target = root / Template(path).substitute(values)
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(Template(text).substitute(values))
    return root
