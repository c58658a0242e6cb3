"""reliability-security.md §7.10, rows 54-59: misconfiguration (OWASP API8).

What can run here runs for real, on loopback: a private RabbitMQ node set up by
``deploy/rabbitmq/init.sh`` itself, a private Redis started with the compose file's own arguments,
the API with metrics on, the admin pages, the API against a closed Redis or broker port, and a
worker process started with the pickle encoder. What only a deployment decides (published ports,
the pod network) is read from ``docker-compose.yml``, ``.env.example``, ``deploy/k8s`` and
``scripts/up.sh``.
"""

from __future__ import annotations

import base64
import logging
import os
import re
import secrets
import socket
import subprocess
import urllib.error
import urllib.request
from collections.abc import Iterator
from functools import cache
from pathlib import Path
from typing import Any

import pika
import pika.exceptions
import pytest
import redis
import yaml
from flask import Flask

from offload.errors import ConfigError
from offload.publish import Publisher
from offload.worker.app import _dramatiq_prometheus
from offload_api.app import create_app
from offload_email.worker import SPEC as EMAIL_SPEC
from tests.admin.test_pages import _token
from tests.deploy.test_compose import APP_SERVICES, WORKERS
from tests.deploy.test_compose import compose_config as _compose_config
from tests.deploy.test_kubernetes import render
from tests.helpers import ROOT, VENV_BIN, free_port, kill_tree, port_open, spawn, stop, wait_for
from tests.support import KEYS, make_settings
from tests.support.security import CheckedApi
from tests.system.stack import PrivateRabbitMQ, stack_env


@cache
def compose_config() -> dict[str, Any]:
    """docker-compose.yml as compose resolves it with .env.example (read once: compose is slow to start)."""
    return _compose_config()


# -- row 54: RabbitMQ -------------------------------------------------------------------------------------


@pytest.fixture
def rabbitmq_node(servers: None, tmp_path: Path) -> Iterator[tuple[PrivateRabbitMQ, int]]:
    """A private node with the broker's own defaults (``loopback_users`` untouched) and the management API."""
    node = PrivateRabbitMQ(tmp_path / "rabbitmq")
    management = free_port()
    (node.base / "rabbitmq.conf").write_text(
        f"listeners.tcp.default = 127.0.0.1:{node.port}\n"
        f"management.tcp.ip = 127.0.0.1\nmanagement.tcp.port = {management}\n"
    )
    (node.base / "enabled_plugins").write_text("[rabbitmq_management].\n")
    node.start()
    try:
        wait_for(lambda: port_open(management), timeout=60, interval=0.25)
        yield node, management
    finally:
        assert node.process is not None
        kill_tree(node.process)  # a throwaway node: no need to wait for a graceful stop


def _management(port: int, user: str, password: str, path: str) -> int:
    request = urllib.request.Request(f"http://127.0.0.1:{port}/api/{path}")
    request.add_header("Authorization", "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode())
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return int(response.status)
    except urllib.error.HTTPError as exc:
        return exc.code


@pytest.mark.slow
def test_row54_guest_is_loopback_only_and_the_app_user_is_confined_to_its_vhost_and_queues(
    rabbitmq_node: tuple[PrivateRabbitMQ, int], tmp_path: Path
) -> None:
    node, management = rabbitmq_node
    # Real: the node's effective setting keeps guest to loopback (compose does not change it).
    assert node.ctl("eval", "application:get_env(rabbit, loopback_users).").strip() == '{ok,[<<"guest">>]}'
    # Real: init.sh, exactly as compose runs it, pointed at this node's management API.
    script = (ROOT / "deploy" / "rabbitmq" / "init.sh").read_text()
    assert 'api="http://rabbitmq:15672/api"' in script
    local = tmp_path / "init.sh"
    local.write_text(script.replace("http://rabbitmq:15672/api", f"http://127.0.0.1:{management}/api"))
    password = secrets.token_urlsafe(18)
    env = {
        "PATH": os.environ["PATH"],
        "RABBITMQ_DEFAULT_USER": "guest",  # this node's administrator (compose's is RABBITMQ_DEFAULT_USER)
        "RABBITMQ_DEFAULT_PASS": "guest",
        "OFFLOAD_RABBITMQ_PASSWORD": password,
    }
    subprocess.run(["sh", str(local)], env=env, check=True, capture_output=True, timeout=60)
    app_url = f"amqp://offload:{password}@127.0.0.1:{node.port}/offload"
    connection = pika.BlockingConnection(pika.URLParameters(app_url))
    try:
        channel = connection.channel()
        for queue in (*EMAIL_SPEC.queues, "email.DQ", "email.XQ", "system"):  # Offload's queues: allowed
            channel.queue_declare(queue, durable=True)
        channel.basic_publish("", "email", b"{}")
        assert channel.basic_get("email", auto_ack=True)[2] == b"{}"
        with pytest.raises(pika.exceptions.ChannelClosedByBroker) as other_queue:
            connection.channel().queue_declare("evil", durable=True)
        assert other_queue.value.reply_code == 403  # configure only on its queues
        with pytest.raises(pika.exceptions.ChannelClosedByBroker) as other_exchange:
            connection.channel().exchange_declare("evil.exchange", "fanout")
        assert other_exchange.value.reply_code == 403
    finally:
        connection.close()
    with pytest.raises(pika.exceptions.AMQPConnectionError):  # no other vhost
        pika.BlockingConnection(pika.URLParameters(f"amqp://offload:{password}@127.0.0.1:{node.port}/%2F"))
    assert _management(management, "offload", password, "overview") == 401  # no tags: no management
    assert _management(management, "guest", "guest", "overview") == 200  # (from loopback, the admin can)
    # Static: compose never uses guest (its administrator is a required variable, the app a user of its own).
    compose = compose_config()
    rabbit = compose["services"]["rabbitmq"]
    assert rabbit["environment"]["RABBITMQ_DEFAULT_USER"] not in ("", "guest")
    assert "loopback_users" not in yaml.safe_dump(rabbit)
    for name in APP_SERVICES:
        assert compose["services"][name]["environment"]["OFFLOAD_BROKER_URL"].startswith("amqp://offload:")
    assert [p["host_ip"] for p in rabbit.get("ports", [])] == ["127.0.0.1"]  # the UI on loopback; AMQP unpublished


# -- row 55: Redis ----------------------------------------------------------------------------------------


@pytest.fixture
def compose_redis(tmp_path: Path) -> Iterator[tuple[int, str]]:
    """redis-server with the compose file's own arguments (plus a loopback port and a private folder)."""
    command = compose_config()["services"]["redis"]["command"]
    password = command[command.index("--requirepass") + 1]
    port = free_port()
    args = [*command, "--port", str(port), "--bind", "127.0.0.1", "--dir", str(tmp_path), "--save", ""]
    process = spawn(args, env={}, log=tmp_path / "redis.log")
    try:
        wait_for(lambda: port_open(port), timeout=20)
        yield port, password
    finally:
        stop(process)


@pytest.mark.slow
def test_row55_redis_as_compose_runs_it_answers_noauth_without_the_password(compose_redis: tuple[int, str]) -> None:
    port, password = compose_redis
    with socket.create_connection(("127.0.0.1", port), timeout=2) as anonymous:  # any client, no password
        anonymous.sendall(b"PING\r\nGET offload:job:x\r\nAUTH guessed\r\n")
        replies = b""
        while replies.count(b"\r\n") < 3:
            replies += anonymous.recv(1024)
    assert [line.split()[0] for line in replies.splitlines()] == [b"-NOAUTH", b"-NOAUTH", b"-WRONGPASS"], replies
    client = redis.Redis(port=port, password=password, socket_timeout=2, decode_responses=True)
    assert client.ping()
    assert client.config_get("protected-mode") == {"protected-mode": "yes"}  # not turned off by compose
    assert client.config_get("bind")["bind"].split() == ["127.0.0.1"]
    # Static: Redis is not published off the compose network, and every app URL carries the password.
    compose = compose_config()
    assert "ports" not in compose["services"]["redis"]
    for name in APP_SERVICES:
        assert f":{password}@redis:6379" in compose["services"][name]["environment"]["OFFLOAD_REDIS_URL"]


def test_rows_54_55_the_kubernetes_overlays_never_use_guest_or_a_redis_without_a_password() -> None:
    """Even the development overlay's own RabbitMQ and Redis pods get a user and a password."""
    for overlay in ("dev", "prod"):
        docs = render(overlay)
        for doc in docs:
            if doc["kind"] == "Secret":
                values = {k: base64.b64decode(v).decode() for k, v in doc.get("data", {}).items()}
                values |= doc.get("stringData", {})
                broker, redis_url = values.get("OFFLOAD_BROKER_URL", ""), values.get("OFFLOAD_REDIS_URL", "")
                assert "guest" not in broker, (overlay, doc["metadata"]["name"])
                assert not redis_url or re.match(r"rediss?://[^@/]*:[^@/]+@", redis_url), (overlay, redis_url)
        if overlay == "dev":
            pods = {
                d["metadata"]["name"]: d["spec"]["template"]["spec"]["containers"][0]
                for d in docs
                if d["kind"] == "Deployment"
            }
            assert "--requirepass" in pods["redis"]["args"]
            assert {e["name"] for e in pods["rabbitmq"]["env"]} >= {"RABBITMQ_DEFAULT_USER", "RABBITMQ_DEFAULT_PASS"}


# -- row 56: metrics --------------------------------------------------------------------------------------


def test_row56_api_metrics_need_the_admin_key_and_carry_no_keys_emails_or_job_ids(
    servers: None, redis_client: Any, clean_broker: None
) -> None:
    settings = make_settings(metrics=True)
    publisher = Publisher.from_settings(settings)
    try:
        api = CheckedApi(create_app(settings, publisher=publisher).test_client())
        email = {"to": [{"email": "secret.person@example.com"}], "template": "welcome", "vars": {"name": "S"}}
        job_id = api.submit("email.send", email).get_json()["id"]
        api.get(f"/v1/jobs/{job_id}")
        api.submit("email.send", {**email, "to": [{"email": "not-an-address"}]})
        anonymous = api.client.get("/metrics")
        assert anonymous.status_code == 401 and "WWW-Authenticate" in anonymous.headers
        assert api.get("/metrics").status_code == 403  # a client key
        scraped = api.as_("admin").get("/metrics")
        assert scraped.status_code == 200
        text = scraped.get_data(as_text=True)
        labels = set(re.findall(r'="([^"]*)"', text))
        assert labels and "/v1/jobs/<job_id>" in labels  # the route pattern, not the id
        secrets_ = [job_id, "secret.person@example.com", "not-an-address", "acme", *KEYS.values()]
        assert [s for s in secrets_ if any(s in label for label in labels)] == []
    finally:
        publisher.close()


def test_row56_worker_metrics_stay_on_loopback_or_the_pod_network_and_are_never_published(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Real: a production worker without an explicit exposition address refuses to start (it would be 0.0.0.0).
    monkeypatch.delenv("dramatiq_prom_host", raising=False)
    with pytest.raises(ConfigError, match="dramatiq_prom_host"):
        _dramatiq_prometheus(make_settings(env="production"))
    # Static: make up binds it to 127.0.0.1; compose and Kubernetes publish no worker port.
    assert "export dramatiq_prom_host=127.0.0.1" in (ROOT / "scripts" / "up.sh").read_text()
    compose = compose_config()
    for name in WORKERS:
        assert "ports" not in compose["services"][name], name
    api_ports = compose["services"]["api"]["ports"]
    assert [p["host_ip"] for p in api_ports] == ["127.0.0.1"]  # /metrics is on the API, which needs a key
    for path in (ROOT / "deploy" / "k8s").rglob("*.yaml"):
        for document in yaml.safe_load_all(path.read_text()):
            if document and document.get("kind") in ("Service", "Ingress"):
                assert "9191" not in yaml.safe_dump(document), f"{path} exposes worker metrics"


# -- row 57: dashboard ------------------------------------------------------------------------------------


@pytest.mark.parametrize("public_url", ["https://offload.example"], ids=["row57-https-deployment"])
def test_row57_the_dashboard_needs_a_login_csrf_tokens_and_safe_cookies(
    servers: None, redis_client: Any, clean_broker: None, public_url: str
) -> None:
    settings = make_settings(public_url=public_url)
    publisher = Publisher.from_settings(settings)
    try:
        app: Flask = create_app(settings, publisher=publisher)
        client = app.test_client()
        page = client.get("/admin/jobs")
        assert page.status_code == 302 and page.headers["Location"].startswith("/admin/login")
        for action in ("/admin/jobs/x/retry", "/admin/dead-letters/system/purge"):
            assert client.post(action).status_code == 403  # no session: nothing changes
        token = _token(client.get("/admin/login").get_data(as_text=True))
        signed = client.post("/admin/login", data={"key": KEYS["admin"], "csrf_token": token})
        assert signed.status_code == 302
        cookie = signed.headers["Set-Cookie"]
        assert all(flag in cookie for flag in ("HttpOnly", "Secure", "SameSite=Lax")), cookie
        for action, form in (
            ("/admin/jobs/x/retry", {}),
            ("/admin/dead-letters/system/purge", {"confirm": "system"}),
        ):
            for forged in ({}, {"csrf_token": "wrong"}):
                refused = client.post(action, data={**form, **forged})
                assert (refused.status_code, refused.get_json()["error"]) == (403, "csrf_failed"), action
    finally:
        publisher.close()


# -- row 58: broken dependencies --------------------------------------------------------------------------


def _closed_port_url(scheme: str, path: str) -> str:
    port = free_port()  # nothing listens there
    return f"{scheme}://guest:guest@127.0.0.1:{port}/{path}"


@pytest.mark.parametrize(
    ("broken", "code"),
    [("redis_url", "status_store_unavailable"), ("broker_url", "broker_unavailable")],
    ids=["row58-redis-down", "row58-broker-down"],
)
def test_row58_a_dependency_that_is_down_gets_a_generic_503_with_details_only_in_logs(
    servers: None, redis_client: Any, clean_broker: None, caplog: pytest.LogCaptureFixture, broken: str, code: str
) -> None:
    url = _closed_port_url("redis", "0") if broken == "redis_url" else _closed_port_url("amqp", "%2F")
    settings = make_settings(**{broken: url}, publish_timeout=1.0)
    publisher = Publisher.from_settings(settings)
    try:
        api = CheckedApi(create_app(settings, publisher=publisher).test_client())
        with caplog.at_level(logging.WARNING):
            response = api.submit("system.noop")
        body = response.get_json()
        assert (response.status_code, body["error"]) == (503, code), body
        assert set(body) == {"error", "detail", "retry_after"} and int(response.headers["Retry-After"]) > 0
        assert url.split("@")[1] not in response.get_data(as_text=True)  # not even the address
        assert caplog.records, "the details go to the logs"
    finally:
        publisher.close()


def test_row58_a_corrupt_answer_from_redis_is_a_generic_500_with_a_request_id_logged(
    api: CheckedApi, publisher: Publisher, caplog: pytest.LogCaptureFixture
) -> None:
    job_id = api.submit("system.noop").get_json()["id"]
    store = publisher.store
    store.client.hset(store.keys.job(job_id), "result", "{not json")  # a dependency answering garbage
    with caplog.at_level(logging.ERROR):
        response = api.get(f"/v1/jobs/{job_id}")
    body = response.get_json()
    assert (response.status_code, body["error"]) == (500, "internal_error"), body
    assert set(body) == {"error", "detail", "request_id"} and "json" not in body["detail"].lower()
    logged = [r for r in caplog.records if body["request_id"] in r.getMessage()]
    assert logged and logged[0].exc_info is not None  # the details, traceback included, only in the log


# -- row 59: encoder --------------------------------------------------------------------------------------


@pytest.mark.slow
def test_row59_a_worker_with_the_pickle_encoder_refuses_to_start(
    servers: None, redis_client: Any, clean_broker: None, tmp_path: Path
) -> None:
    (tmp_path / "pickled_worker.py").write_text(
        "import dramatiq\n"
        "dramatiq.set_encoder(dramatiq.PickleEncoder())\n"
        "from offload_email.worker import setup  # noqa: E402,F401\n"
    )
    from tests.support import AMQP_URL, REDIS_URL

    env = {**stack_env(AMQP_URL, REDIS_URL), "PYTHONPATH": str(tmp_path)}
    log = tmp_path / "worker.log"
    process = spawn([str(VENV_BIN / "dramatiq"), "pickled_worker:setup", "--processes", "1"], env=env, log=log)
    try:
        assert process.wait(timeout=60) != 0, log.read_text()[-2000:]
    finally:
        stop(process)
    text = log.read_text()
    assert "Offload only runs with JSONEncoder" in text and "Worker process is ready for action" not in text
