"""docker-compose.yml checked without a Docker engine: it parses (compose's own parser), its app services
run Procfile.dev's commands, and what they run matches the code and the images (issue 8)."""

from __future__ import annotations

import copy
import importlib
import json
import re
import shlex
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from offload.settings import Settings
from tests.helpers import VENV_BIN

ROOT = Path(__file__).resolve().parents[2]
WORKERS = ("worker-email", "worker-webhooks", "worker-push", "worker-media", "worker-reports")
APP_SERVICES = ("api", *WORKERS, "scheduler")
#: The image (Dockerfile folder) each app service runs.
IMAGES = {
    "api": "api",
    "worker-email": "worker-email",
    "worker-webhooks": "worker-email",
    "worker-push": "worker-email",
    "worker-media": "worker-media",
    "worker-reports": "worker-reports",
    "scheduler": "api",
}


def compose_config() -> dict[str, Any]:
    """The compose file as compose itself resolves it (anchors, defaults, .env.example's values)."""
    result = subprocess.run(
        [
            str(VENV_BIN / "docker-compose"),
            "-f",
            "docker-compose.yml",
            "--env-file",
            ".env.example",
            "config",
            "--format",
            "json",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    # The wrapper's exit status is always 0: an error shows only on stderr.
    assert result.returncode == 0 and "error" not in result.stderr.lower(), result.stderr
    return dict(json.loads(result.stdout))


def procfile() -> dict[str, tuple[dict[str, str], list[str]]]:
    """Procfile.dev's processes: the ``env VAR=value`` prefix and the command."""
    processes = {}
    for line in (ROOT / "Procfile.dev").read_text().splitlines():
        name, _, command = line.partition(":")
        argv = shlex.split(command)
        env = {}
        if argv and argv[0] == "env":
            argv = argv[1:]
            while argv and "=" in argv[0]:
                key, _, value = argv.pop(0).partition("=")
                env[key] = value
        processes[name.strip()] = (env, argv)
    return processes


def dockerfile(folder: str) -> tuple[list[str], set[str]]:
    """A service image's CMD and its exposed ports."""
    text = (ROOT / "services" / folder / "Dockerfile").read_text()
    cmd = json.loads(re.findall(r"^CMD (\[.*\])$", text, re.M)[-1])
    return cmd, set(re.findall(r"^EXPOSE (\d+)$", text, re.M))


def _settings_fields() -> set[str]:
    """Every ``OFFLOAD_*`` variable some service reads (the core settings and each worker's own)."""
    classes: list[type[Settings]] = [Settings]
    for domain in ("offload_email", "offload_media", "offload_reports"):
        module = importlib.import_module(f"{domain}.settings")
        classes += [v for v in vars(module).values() if isinstance(v, type) and issubclass(v, Settings)]
    return {f"OFFLOAD_{field.upper()}" for cls in classes for field in cls.model_fields}


SETTINGS = _settings_fields()


def problems(compose: dict[str, Any], processes: dict[str, tuple[dict[str, str], list[str]]]) -> list[str]:
    """Every way the compose file, Procfile.dev, the images and the code disagree."""
    found = []
    services = compose["services"]
    scrape = yaml.safe_load((ROOT / "deploy" / "prometheus" / "prometheus.compose.yml").read_text())
    scrape_ports = {c["job_name"]: c for c in scrape["scrape_configs"]}
    consumed: dict[str, set[str]] = {}  # by worker module, over all its services
    served: dict[str, set[str]] = {}
    for name in APP_SERVICES:
        if name not in services or name not in processes:
            found.append(f"{name}: missing from {'docker-compose.yml' if name not in services else 'Procfile.dev'}")
            continue
        service, (_, argv) = services[name], processes[name]
        if service.get("command") != argv:
            found.append(f"{name}: compose runs {service.get('command')}, Procfile.dev runs {argv}")
        cmd, exposed = dockerfile(IMAGES[name])
        if IMAGES[name] == name and cmd != service.get("command"):
            found.append(f"{name}: the image's CMD {cmd} is not the compose command")
        environment = service.get("environment", {})
        found += [
            f"{name}: {key} is not a setting any service reads"
            for key in environment
            if key.startswith("OFFLOAD_") and key not in SETTINGS
        ]
        if argv[0] == "dramatiq":
            try:
                module = importlib.import_module(argv[1].split(":")[0])
            except ImportError:
                found.append(f"{name}: {argv[1]} cannot be imported")
                continue
            if not callable(getattr(module, argv[1].split(":")[1], None)):
                found.append(f"{name}: {argv[1]} is not a function")
            queues = argv[argv.index("--queues") + 1 : argv.index("--processes")]
            if "system" not in queues or not set(queues) <= {*module.SPEC.queues, "system"}:
                found.append(f"{name}: consumes {queues}, the code serves {module.SPEC.queues} + system")
            consumed.setdefault(module.__name__, set()).update(queues)
            served[module.__name__] = {*module.SPEC.queues, "system"}
            port = environment.get("dramatiq_prom_port")
            if port not in exposed:
                found.append(f"{name}: metrics port {port} is not the image's EXPOSE {exposed}")
            job = scrape_ports.get(f"offload-{name}")
            if job is None or str(job["dns_sd_configs"][0]["port"]) != port:
                found.append(f"{name}: Prometheus does not scrape it on port {port}")
        elif name == "api":
            published = {str(p["target"]) for p in service.get("ports", [])}
            if (
                published != exposed
                or f"api:{next(iter(exposed))}" not in scrape_ports["offload-api"]["static_configs"][0]["targets"]
            ):
                found.append(f"api: publishes {published}, the image exposes {exposed}")
    found += [
        f"{module}: no service consumes {served[module] - queues}"
        for module, queues in consumed.items()
        if queues != served[module]
    ]
    return found


def test_compose_parses_and_agrees_with_the_procfile_the_images_and_the_code() -> None:
    assert problems(compose_config(), procfile()) == []


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (
            lambda c, p: c["services"]["worker-media"]["command"].__setitem__(1, "offload_images.worker:setup"),
            "worker-media: compose runs",
        ),
        (lambda c, p: p["worker-media"][1].__setitem__(1, "offload_images.worker:setup"), "worker-media: compose runs"),
        (
            lambda c, p: c["services"]["worker-email"]["environment"].__setitem__("dramatiq_prom_port", "9999"),
            "metrics port 9999",
        ),
        (
            lambda c, p: c["services"]["api"].__setitem__("ports", [{"target": 8080, "published": "8080"}]),
            "api: publishes",
        ),
        (
            lambda c, p: c["services"]["api"]["environment"].__setitem__("OFFLOAD_SIGNNG_KEY", "x"),
            "OFFLOAD_SIGNNG_KEY is not a setting",
        ),
        (lambda c, p: c["services"].pop("scheduler"), "scheduler: missing"),
        (  # both sides agree, but nothing consumes the webhooks queue any more
            lambda c, p: (
                c["services"]["worker-webhooks"]["command"].__setitem__(3, "email"),
                p["worker-webhooks"][1].__setitem__(3, "email"),
            ),
            "offload_email.worker: no service consumes {'webhooks'}",
        ),
    ],
)
def test_a_change_on_one_side_only_is_caught(change: Any, expected: str) -> None:
    compose, processes = copy.deepcopy(compose_config()), copy.deepcopy(procfile())
    change(compose, processes)
    found = problems(compose, processes)
    assert any(expected in problem for problem in found), found


def test_every_dockerfile_passes_hadolint() -> None:
    dockerfiles = sorted(str(p) for p in (ROOT / "services").glob("*/Dockerfile"))
    assert len(dockerfiles) == 4
    result = subprocess.run([str(VENV_BIN / "hadolint"), *dockerfiles], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr


def test_required_secrets_are_refused_when_missing(tmp_path: Path) -> None:
    empty = tmp_path / ".env"
    empty.write_text("")
    result = subprocess.run(
        [str(VENV_BIN / "docker-compose"), "-f", "docker-compose.yml", "--env-file", str(empty), "config"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert re.search(r"required variable (\w+) is missing a value: set \1 in \.env", result.stderr), result.stderr


def test_env_example_documents_every_setting() -> None:
    text = (ROOT / ".env.example").read_text()
    documented = set(re.findall(r"^#? ?(OFFLOAD_[A-Z0-9_]+)=", text, re.M))
    assert SETTINGS - documented == set()
