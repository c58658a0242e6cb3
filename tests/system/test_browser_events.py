"""Issue 22, must-show 4: a web page follows 100 jobs of a tag in Chromium's ``EventSource``, with a token.

Real processes throughout: the API (gunicorn) and an email/system worker run the jobs; the page is
served from another origin (another port), allowed by ``OFFLOAD_CORS_ORIGINS``. The page holds
no API key: only a tag's browser token, which it passes as ``?token=``. It follows the tag's feed
until all 100 jobs have ended, then shows that the same token is refused for a job's status URL
and for another tag, and that an expired token is refused, with the API's JSON problem bodies
readable across origins. The API's access log, turned on here, never shows a token.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler
from pathlib import Path

import pytest
from playwright.sync_api import Browser

from offload.signing import ReadTokens
from tests.helpers import serve_http, wait_for
from tests.system.stack import Api, Worker

JOBS = 100
#: The API's signing key here, so that the test can make an expired token the API would have made.
SIGNING_KEY = "browser-events-test-signing-key-0123456789"

PAGE = """<!doctype html>
<meta charset="utf-8">
<title>following</title>
<pre id="log"></pre>
<script>
const params = new URLSearchParams(location.search);
const api = params.get("api"), token = params.get("token"), tag = params.get("tag");
window.seen = {};           // job id -> the states it went through, in order
window.ended = 0;
window.opened = false;
const source = new EventSource(`${api}/v1/events?tag=${tag}&token=${encodeURIComponent(token)}`);
source.onopen = () => { window.opened = true; };
source.addEventListener("state", (event) => {
  const change = JSON.parse(event.data);
  (window.seen[change.job_id] = window.seen[change.job_id] || []).push(change.state);
  if (["succeeded", "failed", "cancelled", "dead"].includes(change.state)) window.ended += 1;
  document.getElementById("log").textContent = `${window.ended} ended`;
});
source.addEventListener("overflow", () => { window.overflowed = true; });
// What the API answers this page's token elsewhere (CORS lets the page read the problem body).
window.ask = async (path) => {
  const response = await fetch(`${api}${path}`);
  return {status: response.status, body: await response.json()};
};
</script>
"""


class _Page(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        body = PAGE.encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/html; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        return


@pytest.fixture
def page_origin() -> Iterator[str]:
    with serve_http(_Page) as port:
        yield f"http://127.0.0.1:{port}"


def test_a_page_follows_100_jobs_of_a_tag_to_their_end_with_a_token_that_opens_nothing_else(
    browser: Browser, env: dict[str, str], logs: Path, page_origin: str
) -> None:
    api_env = {
        **env,
        "OFFLOAD_CORS_ORIGINS": page_origin,
        "GUNICORN_CMD_ARGS": "--access-logfile -",
        # A stream whose page closed ends at its next keep-alive: the API then stops at once.
        "OFFLOAD_SSE_KEEPALIVE": "1",
        "OFFLOAD_SIGNING_KEY": SIGNING_KEY,
    }
    api, worker = Api(api_env, logs), Worker(env, logs)
    page = browser.new_page()
    try:
        status, _, made = api.request("POST", "/v1/events/token", {"tag": "wave-1", "ttl": 300})
        assert status == 201 and made["scope"] == "tag:wave-1"
        token = made["token"]
        base = f"http://127.0.0.1:{api.port}"
        page.goto(f"{page_origin}/?api={base}&tag=wave-1&token={token}")
        page.wait_for_function("window.opened === true", timeout=10_000)

        jobs = [{"type": "system.noop", "options": {"tags": ["wave-1"]}} for _ in range(JOBS)]
        status, _, batch = api.request("POST", "/v1/batches", {"jobs": jobs})
        assert status == 202, batch
        ids = {job["id"] for job in batch["jobs"]}
        api.request("POST", "/v1/jobs", {"type": "system.noop", "options": {"tags": ["wave-2"]}})

        page.wait_for_function(f"window.ended >= {JOBS}", timeout=45_000)
        seen: dict[str, list[str]] = page.evaluate("window.seen")
        assert set(seen) == ids  # every job of the tag, and no other
        assert all(states == ["queued", "running", "succeeded"] for states in seen.values()), seen
        assert page.evaluate("window.overflowed === undefined")

        # The same token reads nothing else: a job's status URL, another tag, the whole feed.
        one = next(iter(ids))
        refused = [
            page.evaluate("(path) => window.ask(path)", path)
            for path in (
                f"/v1/jobs/{one}?token={token}",
                f"/v1/events?tag=wave-2&token={token}",
                f"/v1/events?token={token}",
            )
        ]
        assert [(r["status"], r["body"]["error"]) for r in refused] == [(403, "token_scope")] * 3
        # And once expired, not even its own tag.
        tokens = ReadTokens(SIGNING_KEY)
        expired = tokens.encode(tokens.issue("acme", "tag:wave-1", ttl=10, now=time.time() - 11))
        answer = page.evaluate("(path) => window.ask(path)", f"/v1/events?tag=wave-1&token={expired}")
        assert (answer["status"], answer["body"]["error"]) == (401, "token_expired")

        # The access log has the requests, never the token.
        wait_for(lambda: "/v1/events?tag=wave-1" in api.log.read_text(), timeout=5)
        assert token not in api.log.read_text() and "token=[redacted]" in api.log.read_text()
    finally:
        page.close()
        worker.stop()
        api.stop()
