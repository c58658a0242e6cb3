"""The web push demo page in headless Chromium (Debian's, driven by Playwright), and what production refuses.

What a browser can do without reaching a push service is tested: the page loads under its CSP,
registers its service worker, fetches the VAPID public key and calls ``pushManager.subscribe()``,
which needs the browser vendor's push service (FCM for Chromium) and so cannot succeed offline;
the page reports that step, whatever its outcome. The service worker's own part (a push message
becomes a notification) is driven through the DevTools protocol, which delivers a message to it
as a push service would.
"""

from __future__ import annotations

import json
import secrets
import threading
from collections.abc import Iterator

import pytest
from flask import Flask
from playwright.sync_api import Browser, expect
from werkzeug.serving import make_server

from offload.errors import ConfigError
from offload.publish import Publisher
from offload.settings import load_settings
from offload.status.push import PushSubscriptions
from offload.vapid import new_private_key, public_key_of
from offload_api.app import create_app
from offload_email.settings import EmailSettings
from tests.support import KEYS, make_settings


@pytest.fixture
def served(app: Flask) -> Iterator[str]:
    """The app on a free loopback port (werkzeug's threaded server); yields its base URL."""
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}"
    server.shutdown()


def test_the_demo_page_registers_its_service_worker_under_its_csp_and_asks_for_the_key(
    browser: Browser, served: str, publisher: Publisher
) -> None:
    key = public_key_of(new_private_key())
    PushSubscriptions(publisher.store).register_public_key(key)
    context = browser.new_context()
    context.grant_permissions(["notifications"], origin=served)
    page = context.new_page()
    problems: list[str] = []
    page.on("console", lambda m: problems.append(m.text) if "Content Security Policy" in m.text else None)
    requests: list[str] = []
    page.on("request", lambda r: requests.append(r.url))
    response = page.goto(f"{served}/push-demo")
    assert response is not None and response.status == 200
    assert "script-src 'self'" in response.headers["content-security-policy"]
    page.fill("#key", KEYS["acme"])
    page.fill("#user", "ada")
    page.click("button[type=submit]")
    expect(page.locator("li[data-step=service-worker]")).to_have_class("ok", timeout=15_000)
    expect(page.locator("li[data-step=service-worker]")).to_contain_text(f"{served}/push-demo")
    expect(page.locator("li[data-step=public-key]")).to_have_text(f"VAPID public key: {key}")
    # subscribe() was called with the key: offline, Chromium cannot reach its push service.
    # Headless Chromium has no push service to register with: it answers "AbortError: Registration failed -
    # permission denied" (seen with Debian's chromium); a browser that can reach its push service subscribes.
    step = page.locator("li[data-step=subscribe]")
    expect(step).to_be_visible(timeout=30_000)
    assert (step.text_content() or "").startswith(("pushManager.subscribe(): ", "Subscribed at "))
    assert f"{served}/v1/push/vapid-public-key" in requests
    script = page.evaluate(
        "navigator.serviceWorker.getRegistration('/push-demo').then(r => r && r.active && r.active.scriptURL)"
    )
    assert script == f"{served}/push-demo/sw.js"
    assert problems == []
    context.close()


def test_the_service_worker_shows_a_push_message_as_its_notification(browser: Browser, served: str) -> None:
    context = browser.new_context()
    context.grant_permissions(["notifications"], origin=served)
    page = context.new_page()
    page.goto(f"{served}/push-demo")
    page.evaluate(
        "navigator.serviceWorker.register('/push-demo/sw.js', {scope: '/push-demo'})"
        ".then(() => navigator.serviceWorker.ready).then(() => true)"
    )
    cdp = context.new_cdp_session(page)
    registrations: list[dict[str, object]] = []
    cdp.on("ServiceWorker.workerRegistrationUpdated", lambda e: registrations.extend(e["registrations"]))
    cdp.send("ServiceWorker.enable")  # reports the registrations there are
    for _ in range(50):  # the session's events arrive while Playwright waits
        if any(str(r["scopeURL"]).endswith("/push-demo") for r in registrations):
            break
        page.wait_for_timeout(100)
    registration = next(r for r in registrations if str(r["scopeURL"]).endswith("/push-demo"))
    message = {"title": "Your order shipped", "body": "Parcel 42", "url": "https://shop.example.com/orders/42"}
    cdp.send(
        "ServiceWorker.deliverPushMessage",
        {"origin": served, "registrationId": registration["registrationId"], "data": json.dumps(message)},
    )
    shown = "navigator.serviceWorker.ready.then(r => r.getNotifications()).then(ns => ns.map(n => [n.title, n.body]))"
    page.wait_for_function(f"{shown}.then(found => found.length > 0)", timeout=10_000)
    assert page.evaluate(shown) == [["Your order shipped", "Parcel 42"]]
    context.close()


def test_production_serves_no_demo_page(publisher: Publisher) -> None:
    app = create_app(make_settings(env="production"), publisher=publisher)
    client = app.test_client()
    assert client.get("/push-demo").status_code == 404
    assert client.get("/push-demo/sw.js").status_code == 404
    assert create_app(make_settings(), publisher=publisher).test_client().get("/push-demo").status_code == 200


def _production(**overrides: object) -> EmailSettings:
    values: dict[str, object] = {
        "env": "production",
        "broker_url": f"amqp://offload:{secrets.token_urlsafe(24)}@127.0.0.1:5672/offload",
        "redis_url": f"redis://:{secrets.token_urlsafe(24)}@127.0.0.1:6379/0",
        "api_keys": f"{secrets.token_urlsafe(32)}=ops:admin",
        "signing_key": secrets.token_urlsafe(32),
        **overrides,
    }
    return load_settings(EmailSettings, **values)


def test_production_refuses_the_email_service_without_a_vapid_key_and_any_bad_key() -> None:
    with pytest.raises(ConfigError, match="OFFLOAD_VAPID_PRIVATE_KEY"):
        _production()
    with pytest.raises(ConfigError, match="OFFLOAD_VAPID_PRIVATE_KEY") as caught:
        load_settings(EmailSettings, vapid_private_key="not-a-key")
    assert "not-a-key" not in str(caught.value)
    with pytest.raises(ConfigError, match="OFFLOAD_VAPID_SUBJECT"):
        load_settings(EmailSettings, vapid_subject="ops@example.com")
    _production(vapid_private_key=new_private_key())  # a key made by `offload push keys` passes


def test_offload_push_keys_prints_a_key_the_settings_take_and_appends_it_once(tmp_path, capsys) -> None:
    from offload.cli import main

    assert main(["push", "keys"]) == 0
    printed = capsys.readouterr().out
    line = next(row for row in printed.splitlines() if row.startswith("OFFLOAD_VAPID_PRIVATE_KEY="))
    private = line.partition("=")[2]
    assert public_key_of(private) in printed
    assert EmailSettings(vapid_private_key=private).vapid_private_key.get_secret_value() == private
    env = tmp_path / ".env"
    env.write_text("OFFLOAD_ENV=development")
    assert main(["push", "keys", "--env-file", str(env)]) == 0
    assert env.read_text().startswith("OFFLOAD_ENV=development\n#") and oct(env.stat().st_mode)[-3:] == "600"
    assert main(["push", "keys", "--env-file", str(env)]) == 1  # never replaces a key
    assert env.read_text().count("OFFLOAD_VAPID_PRIVATE_KEY=") == 1
