"""Issue 29: what a security review from outside found, each finding replayed against the live API.

The review tried 471 attacks; these are the ones that did not hold, each as the reviewer sent it
(or as close as an in-process request gets), with the answer the fix gives. The bad-input shapes
are also fuzzed against the real server process in ``tests/fuzz/test_properties.py``.
"""

from __future__ import annotations

import base64
import hashlib
import itertools
import json
import logging
import math
import re
import secrets
import subprocess
import time
from pathlib import Path
from typing import Any
from urllib.parse import quote

import dramatiq
import pytest
from flask import Flask
from flask.testing import FlaskClient

from bench.config import API_KEY as BENCH_KEY
from offload.contracts.email import Recipient
from offload.errors import ConfigError, PermanentJobError
from offload.logs import NoPayloads
from offload.publish import Publisher
from offload.settings import Settings, load_settings
from offload.signing import LinkSigner
from offload.status.pauses import Pauses
from offload_api.app import create_app
from tests.admin.test_pages import _token
from tests.api.test_files import JPEG
from tests.helpers import ROOT, free_port, wait_for
from tests.support import AMQP_URL, KEYS, REDIS_URL, make_settings
from tests.support.email import Sink
from tests.support.security import CheckedApi
from tests.system.stack import Worker, stack_env

# -- 6: absolute URLs come from OFFLOAD_PUBLIC_URL, never the Host header ----------------------------------


def test_6_a_batchs_location_and_status_url_come_from_the_public_url_not_the_host_header(
    servers: None, redis_client: Any, clean_broker: None
) -> None:
    settings = make_settings(public_url="https://offload.example")
    publisher = Publisher.from_settings(settings)
    try:
        api = CheckedApi(create_app(settings, publisher=publisher).test_client())
        evil = {"Host": "evil.example"}
        batch = api.post("/v1/batches", json={"jobs": [{"type": "system.noop"}]}, headers=evil)
        body = batch.get_json()
        assert batch.status_code == 202, body
        assert batch.headers["Location"] == body["status_url"] == f"https://offload.example/v1/batches/{body['id']}"
        assert body["jobs"][0]["status_url"].startswith("https://offload.example/v1/jobs/")
        single = api.post("/v1/jobs", json={"type": "system.noop"}, headers=evil)
        assert single.headers["Location"].startswith("https://offload.example/v1/jobs/")
        assert "evil.example" not in batch.get_data(as_text=True) + single.get_data(as_text=True)
    finally:
        publisher.close()


# -- 7: /metrics labels come from known sets --------------------------------------------------------------


def test_7_any_http_method_sent_without_a_key_is_counted_under_other_not_as_a_label_of_its_own(
    servers: None, redis_client: Any, clean_broker: None
) -> None:
    settings = make_settings(metrics=True)
    publisher = Publisher.from_settings(settings)
    try:
        api = CheckedApi(create_app(settings, publisher=publisher).test_client())
        invented = [f"X{n}FUZZ" for n in range(20)] + ["PROPFIND", "get", "TRACE"]
        for method in invented:
            api.client.open("/v1/jobs", method=method)
            api.client.open("/nowhere", method=method)
        api.client.get("/v1/jobs")
        text = api.as_("admin").get("/metrics").get_data(as_text=True)
        methods = set(re.findall(r'offload_api_request[a-z_]*\{[^}]*method="([^"]*)"', text))
        assert methods and methods <= {"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "other"}, methods
        assert "other" in methods
    finally:
        publisher.close()


# -- 5: bad input is a 4xx (or ignored, where the protocol says so), never a 500 or a 503 ------------------

#: Texts that ``str.isdigit()`` accepts but are no number a client should send: superscript and
#: circled digits (``int()`` refuses them), other scripts' and full-width digits (``int()`` reads
#: them), and more digits than ``int()`` converts (Python refuses over 4,300).
NOT_ASCII_NUMBERS = ["²", "①", "١٢", "１０", "9" * 5000]


def _admin(app: Flask) -> FlaskClient:
    """A test client signed in to the admin pages with the admin key."""
    client = app.test_client()
    token = _token(client.get("/admin/login").get_data(as_text=True))
    assert client.post("/admin/login", data={"key": KEYS["admin"], "csrf_token": token}).status_code == 302
    return client


def _cursor(text: str) -> str:
    return base64.urlsafe_b64encode(text.encode()).decode().rstrip("=")


@pytest.mark.parametrize("raw", NOT_ASCII_NUMBERS, ids=["superscript", "circled", "arabic", "fullwidth", "5000"])
def test_5_a_limit_that_is_not_ascii_digits_is_422(api: CheckedApi, raw: str) -> None:
    response = api.get(f"/v1/jobs?limit={quote(raw)}")
    assert (response.status_code, response.get_json()["errors"][0]["field"]) == (422, "limit")


@pytest.mark.parametrize("raw", NOT_ASCII_NUMBERS, ids=["superscript", "circled", "arabic", "fullwidth", "5000"])
def test_5_a_last_event_id_that_is_not_ascii_digits_is_ignored_as_a_malformed_one_always_was(
    api: CheckedApi, raw: str
) -> None:
    job_id = api.post("/v1/jobs", json={"type": "system.noop", "options": {"delay": 600}}).get_json()["id"]
    api.post(f"/v1/jobs/{job_id}/cancel")  # ended: its stream sends the history and closes at once
    for request in ({"headers": {"Last-Event-ID": raw}}, {"query_string": {"last_event_id": raw}}):
        response = api.get(f"/v1/jobs/{job_id}/events", **request)
        text = response.get_data(as_text=True)
        assert response.status_code == 200 and "event: state" in text and '"cancelled"' in text, text[:300]


@pytest.mark.parametrize("expires", ["²", "١٢٣٤٥٦٧٨٩٠", "9" * 5000], ids=["superscript", "arabic", "5000"])
def test_5_a_signed_link_whose_expires_is_not_ascii_digits_is_403_even_with_a_matching_signature(
    api: CheckedApi, app: Flask, expires: str
) -> None:
    upload = api.post("/v1/uploads", data=JPEG, headers={"Content-Type": "application/octet-stream"})
    key = f"acme/{upload.get_json()['id']}/source"
    signer: LinkSigner = app.extensions["offload"].signer
    sig = signer._signer().get_signature(f"{key}|{expires}").decode()  # as if signed by us
    response = api.anonymous_get(f"/v1/files/{key}?expires={quote(expires)}&sig={sig}")
    assert (response.status_code, response.get_json()["error"]) == (403, "invalid_signature")


@pytest.mark.parametrize(
    "query",
    [
        "to=0001-01-01T00:00:00",
        "from=0001-01-01T00:00:00&to=0001-01-02T00:00:00",
        "from=0001-01-01T00:00:00%2B14:00&to=2030-01-01T00:00:00",
        "to=9999-12-31T23:59:59-14:00",
    ],
    ids=["to-year-1", "range-in-year-1", "year-1-east-of-utc", "year-9999-west-of-utc"],
)
def test_5_stats_times_outside_what_the_arithmetic_holds_are_422(api: CheckedApi, query: str) -> None:
    response = api.get(f"/v1/stats?{query}")
    assert response.status_code == 422, response.get_json()


@pytest.mark.parametrize("text", ["nan:x", "inf:x", "-inf:x", "1e999:x", "²:x", "12:"])
def test_5_a_crafted_cursor_is_422_not_an_outage(api: CheckedApi, text: str) -> None:
    response = api.get(f"/v1/jobs?cursor={_cursor(text)}")
    assert (response.status_code, response.get_json()["errors"][0]["field"]) == (422, "cursor")


@pytest.mark.parametrize("raw", NOT_ASCII_NUMBERS, ids=["superscript", "circled", "arabic", "fullwidth", "5000"])
def test_5_an_admin_page_number_that_is_not_ascii_digits_is_the_first_page(app: Flask, raw: str) -> None:
    page = _admin(app).get(f"/admin/dead-letters?queue=system&page={quote(raw)}")
    assert page.status_code == 200 and "Dead letters" in page.get_data(as_text=True)


@pytest.mark.parametrize(
    "target",
    ["/admin/%0D%0ASet-Cookie:%20x=1", "/admin/jobs%0A", "/admin/%E2%80%A8x", "/admin/%00", "/admin/\\\\evil.example"],
    ids=["crlf-header", "lf", "line-separator", "nul", "backslashes"],
)
def test_5_a_sign_in_whose_next_is_no_plain_admin_path_goes_to_the_queues_page(app: Flask, target: str) -> None:
    client = app.test_client()
    token = _token(client.get("/admin/login").get_data(as_text=True))
    signed = client.post(f"/admin/login?next={target}", data={"key": KEYS["admin"], "csrf_token": token})
    assert (signed.status_code, signed.headers["Location"]) == (302, "/admin/")
    assert "x=1" not in signed.headers.get("Set-Cookie", "")


# -- 2: production refuses published and weak keys and secrets ----------------------------------------------

#: Files the project publishes that hold (or could hold) example keys and secrets.
PUBLISHED = [".env.example", "docker-compose.yml", "README.md", "Procfile.dev", "deploy", "docs", "scripts", "bench"]
#: ``NAME=value`` or ``NAME: value`` where the name says it is a key, a password or a secret.
ASSIGNED = re.compile(r"\b(\w*(?:KEY|KEYS|PASSWORD|PASS|SECRET)\w*)[ \t]*[=:][ \t]*[\"']?([^\s\"'$<{},?]+)")
#: The password of a URL with credentials (``scheme://user:password@host``).
URL_PASSWORD = re.compile(r"\w+://[^:/@\s]*:([^@\s<>${}]+)@")


def published_secrets() -> set[str]:
    """Every key, password and secret written in a file the project publishes (and the tests' keys)."""
    found = set(KEYS.values()) | {BENCH_KEY}
    # What the project publishes is what git tracks (not, say, bench/bullmq/node_modules).
    tracked = {
        ROOT / line
        for line in subprocess.run(
            ["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True, timeout=30
        ).stdout.splitlines()
    }
    for name in PUBLISHED:
        paths = [ROOT / name] if (ROOT / name).is_file() else sorted((ROOT / name).rglob("*"))
        for path in paths:
            if path not in tracked or path.suffix not in ("", ".example", ".yml", ".yaml", ".md", ".sh", ".py", ".dev"):
                continue
            text = path.read_text(errors="replace")
            found |= set(URL_PASSWORD.findall(text))
            for variable, value in ASSIGNED.findall(text):
                if variable.endswith("API_KEYS"):
                    found |= {entry.partition("=")[0] for entry in value.split(",")}
                elif "://" not in value:
                    found.add(value)
    # What is left of a name's value that is no secret: a user name, a Redis key name, an ellipsis.
    return {
        secret for secret in found if len(secret) >= 4 and ":" not in secret and secret.strip(".") and secret != "admin"
    }


def production(**overrides: Any) -> Settings:
    """The settings loader in production, with strong random credentials unless ``overrides`` says otherwise."""
    values: dict[str, Any] = {
        "env": "production",
        "broker_url": f"amqp://offload:{secrets.token_urlsafe(24)}@127.0.0.1:5672/offload",
        "redis_url": f"redis://:{secrets.token_urlsafe(24)}@127.0.0.1:6379/0",
        "api_keys": f"{secrets.token_urlsafe(32)}=ops:admin",
        "signing_key": secrets.token_urlsafe(32),
        **overrides,
    }
    return load_settings(**values)


def test_2_production_refuses_the_env_examples_placeholders_naming_the_setting_and_not_the_value() -> None:
    example = dict(
        line.split("=", 1) for line in (ROOT / ".env.example").read_text().splitlines() if re.match(r"\w+=", line)
    )
    for setting, value in [("api_keys", example["OFFLOAD_API_KEYS"]), ("signing_key", example["OFFLOAD_SIGNING_KEY"])]:
        with pytest.raises(ConfigError, match=f"OFFLOAD_{setting.upper()}") as caught:
            production(**{setting: value})
        assert value.partition("=")[0] not in str(caught.value)
    password = example["OFFLOAD_RABBITMQ_PASSWORD"]
    with pytest.raises(ConfigError, match="OFFLOAD_BROKER_URL") as caught:
        production(broker_url=f"amqp://offload:{password}@rabbitmq:5672/offload")
    assert password not in str(caught.value)
    production()  # strong random values pass


def test_2_production_refuses_every_key_and_secret_the_project_publishes_wherever_it_is_used() -> None:
    published = published_secrets()
    assert {"change-me-admin-key-0123456789", "dev-signing-key-not-for-production-0123", "change-me-redis"} <= published
    for secret in sorted(published):
        with pytest.raises(ConfigError, match="OFFLOAD_SIGNING_KEY"):
            production(signing_key=secret)
        if len(secret) >= 16:  # shorter ones are no key anywhere
            with pytest.raises(ConfigError, match="OFFLOAD_API_KEYS entry 2"):
                production(api_keys=f"{secrets.token_urlsafe(32)}=ops:admin,{secret}=acme:client")
        if re.fullmatch(r"[\w.~-]+", secret):
            with pytest.raises(ConfigError, match="OFFLOAD_REDIS_URL"):
                production(redis_url=f"redis://:{secret}@127.0.0.1:6379/0")


@pytest.mark.parametrize(
    "secret",
    ["x" * 64, "7" * 32, secrets.token_urlsafe(16)[:31], "offload-production-key-CHANGE-ME-" + "a" * 20],
    ids=["one-character", "one-digit", "31-characters", "placeholder-word"],
)
def test_2_production_refuses_weak_keys_and_signing_keys(secret: str) -> None:
    with pytest.raises(ConfigError, match="OFFLOAD_SIGNING_KEY"):
        production(signing_key=secret)
    with pytest.raises(ConfigError, match="OFFLOAD_API_KEYS entry 1"):
        production(api_keys=f"{secret}=ops:admin")
    make_settings(signing_key=secret)  # development and tests take any key of the right shape


# -- 9: links in emails are https (or http where the deployment allows it) ----------------------------------

RESET: dict[str, Any] = {
    "to": [{"email": "ann@example.com"}],
    "template": "password_reset",
    "vars": {"name": "Ann", "reset_url": "https://app.example/reset?t=1"},
}


@pytest.mark.parametrize(
    ("job_type", "payload", "field"),
    [
        ("email.send", {**RESET, "vars": {**RESET["vars"], "reset_url": url}}, "payload.vars.reset_url")
        for url in (
            "javascript:alert(document.domain)",
            "JaVaScRiPt:alert(1)",
            " javascript:alert(1)",
            "java\tscript:alert(1)",
            "data:text/html,<script>alert(1)</script>",
            "vbscript:msgbox(1)",
            "//evil.example/reset",
            "/reset",
            "https://",
            "https://user@evil.example/",
            "https://app.example/\r\nX: y",
        )
    ]
    + [
        ("email.send", {**RESET, "vars": {**RESET["vars"], "reset_url": 7}}, "payload.vars.reset_url"),
        (
            "email.send",
            {**RESET, "template": "welcome", "vars": {"name": "A", "login_url": "javascript:x"}},
            "payload.vars.login_url",
        ),
        (
            "email.batch",
            {
                "template": "report_ready",
                "recipients": [{"email": "a@example.com"}],
                "vars": {"title": "T", "download_url": "javascript:x"},
            },
            "payload.vars.download_url",
        ),
        (
            "email.batch",
            {
                "template": "order_confirmation",
                "vars": {"name": "A", "order_id": "1"},
                "recipients": [{"email": "a@example.com", "vars": {"order_url": "javascript:x"}}],
            },
            "payload.recipients[0].vars.order_url",
        ),
    ],
)
def test_9_a_link_variable_that_is_not_an_http_url_is_422_naming_it(
    api: CheckedApi, job_type: str, payload: dict[str, Any], field: str
) -> None:
    response = api.submit(job_type, payload)
    body = response.get_json()
    assert response.status_code == 422 and [e["field"] for e in body["errors"]] == [field], body


def test_9_plain_http_links_are_refused_in_production_unless_its_public_url_is_http(
    servers: None, redis_client: Any, clean_broker: None
) -> None:
    http_link = {**RESET, "vars": {**RESET["vars"], "reset_url": "http://app.example/reset"}}
    for public_url, status in (("https://offload.example", 422), ("http://127.0.0.1:8000", 202), ("", 422)):
        settings = make_settings(env="production", public_url=public_url)
        publisher = Publisher.from_settings(settings)
        try:
            response = CheckedApi(create_app(settings, publisher=publisher).test_client()).submit(
                "email.send", http_link
            )
            assert response.status_code == status, (public_url, response.get_json())
            if status == 422:
                assert response.get_json()["error"] == "scheme_not_allowed"
        finally:
            publisher.close()


def test_9_the_email_worker_refuses_to_render_a_link_that_is_not_http_whatever_reached_it() -> None:
    from offload_email.compose import compose_message

    with pytest.raises(PermanentJobError) as refused:
        compose_message(
            "password_reset",
            {"name": "Ann", "reset_url": "javascript:alert(1)"},
            to=[Recipient(email="ann@example.com")],
            job_id="j1",
            message_id="<j1@offload.local>",
            sender="Offload <no-reply@offload.local>",
        )
    assert refused.value.code == "scheme_not_allowed"


# -- 8: no payloads in logs -------------------------------------------------------------------------------


@pytest.mark.slow
def test_8_a_failed_jobs_payload_is_not_in_the_workers_log_its_id_type_and_tenant_are(
    api: CheckedApi, publisher: Publisher, tmp_path: Path
) -> None:
    from aiosmtpd.controller import Controller

    sink, port = Sink(reject={"victim@example.com": "550 5.1.1 No such user"}), free_port()
    controller = Controller(sink, hostname="127.0.0.1", port=port)
    controller.start()
    env = stack_env(
        AMQP_URL, REDIS_URL, OFFLOAD_SMTP_HOST="127.0.0.1", OFFLOAD_SMTP_PORT=str(port), OFFLOAD_LOG_FORMAT="json"
    )
    worker = Worker(env, tmp_path, domain="email")
    try:
        token = secrets.token_hex(16)
        reset = {**RESET, "to": [{"email": "victim@example.com"}]}
        reset["vars"] = {"name": "Ann Secret", "reset_url": f"https://app.example/reset?token={token}"}
        job_id = api.submit("email.send", reset).get_json()["id"]
        assert publisher.wait(job_id, timeout=30).state == "failed"  # 550: refused for good
        wait_for(lambda: "Failed to process message" in worker.log.read_text(), timeout=10)
    finally:
        worker.stop()
        controller.stop()
    lines = [json.loads(line) for line in worker.log.read_text().splitlines() if line.startswith("{")]
    failed = [line for line in lines if "Failed to process message" in line["msg"]]
    assert failed and f"email.send(job {job_id}, tenant acme)" in failed[0]["msg"], failed
    logged = worker.log.read_text()
    assert token not in logged and "Ann Secret" not in logged and "reset_url" not in logged


def test_8_at_debug_a_message_shows_its_payloads_shape_never_a_value() -> None:
    message: dramatiq.Message[Any] = dramatiq.Message(
        queue_name="email",
        actor_name="email.send",
        args=(),
        kwargs={"job_id": "j1", "payload": {"to": [{"email": "ann@example.com"}], "vars": {"reset_url": "https://x"}}},
        options={"offload": {"tenant": "acme"}},
        message_id="j1",
    )
    shown: dict[int, str] = {}
    for level in (logging.DEBUG, logging.INFO):
        record = logging.LogRecord(
            "dramatiq.worker", level, __file__, 1, "Received message %s with id %r.", (message, "j1"), None
        )
        NoPayloads().filter(record)
        shown[level] = record.getMessage()
    assert shown[logging.INFO] == "Received message email.send(job j1, tenant acme) with id 'j1'."
    assert shown[logging.DEBUG] == (
        "Received message email.send(job j1, tenant acme) payload {to: list 1, vars: dict 1} with id 'j1'."
    )


# -- 10: a tenant's share of the event-stream cap ---------------------------------------------------------


def test_10_with_the_cap_at_2_one_tenants_idle_streams_leave_another_tenant_a_stream(
    servers: None, redis_client: Any, clean_broker: None
) -> None:
    settings = make_settings(max_event_streams=2)
    publisher = Publisher.from_settings(settings)
    opened: list[Any] = []

    def stream(who: str, job_id: str) -> int:
        """Open the job's event stream as ``who``; a stream that opened is started and left open, idle."""
        response = client.get(f"/v1/jobs/{job_id}/events", headers=acme.as_(who).headers(), buffered=False)
        if response.status_code == 200:
            assert next(iter(response.response)) == b"retry: 2000\n\n"
            opened.append(response)
        else:
            assert response.get_json()["error"] == "service_busy"
        return int(response.status_code)

    try:
        client = create_app(settings, publisher=publisher).test_client()
        acme = CheckedApi(client)
        waiting = {"type": "system.noop", "options": {"delay": 600}}  # a job that stays scheduled: its stream idles
        job_a = acme.post("/v1/jobs", json=waiting).get_json()["id"]
        job_b = acme.as_("globex").post("/v1/jobs", json=waiting).get_json()["id"]
        assert [stream("acme", job_a), stream("acme", job_a)] == [200, 200]
        assert stream("acme", job_a) == 503  # alone, acme may take the whole cap, and no more
        for _ in range(6):  # the review's six tries: each gets its stream while acme's two idle on
            assert stream("globex", job_b) == 200
            opened.pop().close()
        assert stream("globex", job_b) == 200
        assert stream("globex", job_b) == 503  # globex holds its share (half the cap) of a full process
        assert stream("acme", job_a) == 503  # and acme holds more than its share
        opened.pop().close()  # globex's ends: back to acme's two, at the cap
        assert stream("acme", job_a) == 503 and stream("globex", job_b) == 200
    finally:
        for response in reversed(opened):  # the test client's request contexts end last in, first out
            response.close()
        publisher.close()


# -- 3 and 4: admin sessions live on the server; the cookie is an opaque id ----------------------------------


def _admin_forms(app: Flask, job_id: str) -> list[tuple[str, dict[str, str]]]:
    """Every admin form (``POST`` route), filled in as the page would fill it."""
    filled = {
        "job_id": job_id,
        "queue": "system",
        "name": "system",
        "action": "pause",
        "schedule_id": "none",
        "operation_id": "none",
        "key_id": "key_none",
    }
    forms = []
    for rule in app.url_map.iter_rules():
        if rule.rule.startswith("/admin/") and "POST" in (rule.methods or ()) and rule.endpoint != "admin.login":
            path = re.sub(r"<(?:\w+:)?(\w+)>", lambda m: filled[m.group(1)], rule.rule)
            forms.append((path, {"confirm": "system", "digest": "0" * 64}))
    return forms


def _admin_pages(app: Flask, job_id: str) -> list[str]:
    """Every admin page (``GET`` route but the sign-in form and static files)."""
    filled = {"job_id": job_id, "filename": "admin.css", "operation_id": "none", "schedule_id": "none"}
    return [
        re.sub(r"<(?:\w+:)?(\w+)>", lambda m: filled[m.group(1)], rule.rule)
        for rule in app.url_map.iter_rules()
        if rule.rule.startswith("/admin")
        and "GET" in (rule.methods or ())
        and rule.endpoint not in ("admin.login", "admin.static")
    ]


def test_3_a_signed_out_sessions_saved_cookie_is_refused_on_every_admin_page_and_form(
    app: Flask, publisher: Publisher, redis_client: Any
) -> None:
    job_id = publisher.publish("system.noop", {}, tenant="acme").job_id
    client = _admin(app)
    saved = client.get_cookie("offload_admin", path="/admin")
    assert saved is not None
    token = _token(client.get("/admin/jobs").get_data(as_text=True))
    pages, forms = _admin_pages(app, job_id), _admin_forms(app, job_id)
    assert len(pages) >= 6 and len(forms) >= 6, (pages, forms)
    # the session opens them all (a page of an operation that does not exist says so)
    assert all(client.get(page).status_code == (404 if page.endswith("/none") else 200) for page in pages)
    signed_out = client.post("/admin/logout", data={"csrf_token": token})
    assert signed_out.status_code == 302 and "offload_admin=;" in signed_out.headers["Set-Cookie"]

    replay = app.test_client()  # whoever kept a copy of the cookie
    replay.set_cookie("offload_admin", saved.value, path="/admin")
    for page in pages:
        answer = replay.get(page)
        assert answer.status_code == 302 and answer.headers["Location"].startswith("/admin/login"), page
    for path, form in forms:
        assert replay.post(path, data={**form, "csrf_token": token}).status_code == 403, path
    assert Pauses(publisher.store).paused() == {}  # the pause form paused nothing
    assert redis_client.keys("offload:admin-session:*") == []


def test_4_the_admin_cookie_is_a_random_id_replaced_at_sign_in_carrying_nothing_from_the_key(app: Flask) -> None:
    client = app.test_client()
    token = _token(client.get("/admin/login").get_data(as_text=True))
    before = client.get_cookie("offload_admin", path="/admin")
    signed = client.post("/admin/login", data={"key": KEYS["admin"], "csrf_token": token})
    after = client.get_cookie("offload_admin", path="/admin")
    assert signed.status_code == 302 and before is not None and after is not None
    assert re.fullmatch(r"[A-Za-z0-9_-]{43}", after.value) and after.value != before.value  # no fixation
    digest = hashlib.sha256(KEYS["admin"].encode()).digest()
    for form in (digest.hex(), base64.urlsafe_b64encode(digest).decode().rstrip("="), KEYS["admin"], "key"):
        assert form not in after.value and form not in signed.headers["Set-Cookie"]
    assert client.get("/admin/jobs").status_code == 200


def test_3_removing_the_key_from_the_settings_ends_its_sessions(
    app: Flask, publisher: Publisher, redis_client: Any
) -> None:
    client = _admin(app)
    saved = client.get_cookie("offload_admin", path="/admin")
    assert saved is not None and client.get("/admin/jobs").status_code == 200
    without = make_settings(api_keys=f"{KEYS['acme']}=acme:client,{secrets.token_urlsafe(32)}=ops:admin")
    restarted = create_app(without, publisher=publisher).test_client()  # the next deploy, on the same Redis
    restarted.set_cookie("offload_admin", saved.value, path="/admin")
    assert restarted.get("/admin/jobs").status_code == 302
    assert redis_client.keys("offload:admin-session:*") == []  # ended, not merely refused
    assert client.get("/admin/jobs").status_code == 302  # nor does the old configuration take it back


# -- 1: failed admin sign-ins are limited, delayed and logged ------------------------------------------------


def _sign_in(client: FlaskClient, key: str, address: str = "127.0.0.1") -> Any:
    token = _token(client.get("/admin/login").get_data(as_text=True))
    return client.post("/admin/login", data={"key": key, "csrf_token": token}, environ_base={"REMOTE_ADDR": address})


def test_1_sixty_wrong_admin_keys_in_a_row_meet_429_and_then_not_even_the_right_key_is_checked(
    app: Flask, caplog: pytest.LogCaptureFixture
) -> None:
    client = app.test_client()
    token = _token(client.get("/admin/login").get_data(as_text=True))
    started = time.monotonic()
    with caplog.at_level(logging.WARNING, logger="offload_api.admin.attempts"):
        answers = [
            client.post("/admin/login", data={"key": f"guessed-admin-key-{n:04d}-0123456789", "csrf_token": token})
            for n in range(60)
        ]
    elapsed = time.monotonic() - started
    statuses = [answer.status_code for answer in answers]
    assert statuses[:5] == [200, 200, 200, 200, 429], statuses  # the 4th failure makes the next try wait
    assert "Too many failed sign-ins" in answers[4].get_data(as_text=True)
    assert all(0 < int(a.headers["Retry-After"]) <= 300 for a in answers if a.status_code == 429)
    # Past the 4th, a key is checked only once the last wait (1 s, then 2, 4...) is over.
    assert statuses.count(200) - 4 <= math.log2(elapsed + 1), (statuses, elapsed)
    failures = [r for r in caplog.records if r.getMessage().startswith("Failed admin sign-in from 127.0.0.1")]
    assert len(failures) == statuses.count(200) and "guessed" not in caplog.text  # logged, never the key

    # From another client: four wrong keys, then the right one at once is refused unchecked.
    other = "198.51.100.7"
    for n in range(4):
        assert _sign_in(client, f"other-guess-{n:04d}-0123456789", other).status_code == 200
    right = _sign_in(client, KEYS["admin"], other)
    assert (right.status_code, right.headers["Retry-After"]) == (429, "1")  # it tells a guesser nothing
    time.sleep(1.05)
    assert _sign_in(client, KEYS["admin"], other).status_code == 302


def test_1_a_key_prefix_guessed_from_many_addresses_waits_too_and_each_failure_doubles_the_wait(app: Flask) -> None:
    client = app.test_client()
    guesses = (f"change-me-admin-key-{n:010d}" for n in itertools.count())  # .env.example's, with other digits
    addresses = (f"203.0.113.{n}" for n in itertools.count(1))  # a new address for every try
    assert [_sign_in(client, next(guesses), next(addresses)).status_code for _ in range(4)] == [200] * 4
    refused = _sign_in(client, next(guesses), next(addresses))
    assert (refused.status_code, refused.headers["Retry-After"]) == (429, "1")  # after the 4th failure
    assert _sign_in(client, "another-prefix-key-0123456789", next(addresses)).status_code == 200
    time.sleep(1.1)
    assert _sign_in(client, next(guesses), next(addresses)).status_code == 200  # checked: the 5th failure
    refused = _sign_in(client, next(guesses), next(addresses))
    assert (refused.status_code, refused.headers["Retry-After"]) == (429, "2")


def test_1_failed_sign_ins_count_toward_the_apis_bad_key_limit(app: Flask) -> None:
    if time.time() % 60 > 55:  # the API's count is per clock minute: do not straddle two
        time.sleep(61 - time.time() % 60)
    client = app.test_client()
    for n in range(3):
        assert _sign_in(client, f"guessed-admin-key-{n:04d}-0123456789").status_code == 200
    bad = {"Authorization": "Bearer guessed-key-0000000000"}
    statuses = [client.get("/v1/jobs", headers=bad).status_code for _ in range(48)]
    assert statuses == [401] * 47 + [429]  # 3 sign-ins and 47 keys make the 50 a minute allows
