"""Issue 7, must-show 3: the admin page in headless Chromium (Debian's, driven by Playwright).

Sign in, find a failed job, retry it and watch it succeed, purge the dead letters; page through 55
dead letters with a malformed one among them (issue 27), requeue all but it and purge it alone. A
screenshot of each page is kept in ``test-artifacts/admin/``.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page, expect

from offload.publish import Publisher
from offload.settings import Settings
from tests.admin.test_dead_letters_page import publish_raw_dead_letter
from tests.helpers import wait_for
from tests.support import KEYS, RunningWorker, queue_depth
from tests.support.wire import BrokerUser, publish_as, wire_message

ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts" / "admin"


@pytest.fixture
def settings(wire_settings: Settings) -> Settings:
    """Wire messages come from a mapped publisher (``orders``)."""
    return wire_settings


def _shot(page: Page, name: str) -> None:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)


def test_an_admin_retries_a_failed_job_to_success_and_purges_the_dead_letters(
    browser: Browser, served: str, publisher: Publisher, worker: RunningWorker
) -> None:
    # A job that fails on its only attempt (and would succeed on a second), and one that fails for good.
    flaky = publisher.publish("system.fail", {"succeed_on_attempt": 2}, tenant="acme", max_retries=0).job_id
    broken = publisher.publish("system.fail", {"permanent": True}, tenant="globex").job_id
    batch_id = publisher.submit_batch([{"type": "system.noop"}] * 3, tenant="acme").batch_id
    wait_for(lambda: all(publisher.get(j).state == "failed" for j in (flaky, broken)), timeout=20)

    page = browser.new_page()
    errors: list[str] = []
    page.on("console", lambda message: errors.append(message.text) if message.type == "error" else None)
    page.goto(f"{served}/admin/jobs")
    expect(page).to_have_url(f"{served}/admin/login?next=/admin/jobs")
    _shot(page, "01-login")
    page.fill("#key", KEYS["admin"])
    page.click("button[type=submit]")
    expect(page.locator("h1")).to_have_text("Jobs")

    page.select_option("select[name=state]", "failed")
    page.click("text=Find")
    rows = page.locator("#jobs tbody tr")
    expect(rows).to_have_count(2)
    _shot(page, "02-failed-jobs")
    page.click(f"a.job-link[href='/admin/jobs/{flaky}']")
    expect(page.locator("#state")).to_have_text("failed")
    expect(page.locator("#error")).to_contain_text("Failing on purpose")
    _shot(page, "03-failed-job")

    page.click("#retry")
    # The page follows the job by itself (admin.js follows its event stream and reloads) until it has succeeded.
    expect(page.locator("#state")).to_have_text("succeeded", timeout=20_000)
    expect(page.locator("#attempts")).to_contain_text("2")
    _shot(page, "04-retried-job")
    assert publisher.get(flaky).state == "succeeded"

    page.click("text=Dead letters")
    page.click("a[href='/admin/dead-letters?queue=system']")
    expect(page.locator("#dead-system")).to_have_text("2")  # both failures were dead-lettered
    _shot(page, "05-dead-letters")
    # Requeue one: the permanently broken job runs again (and is dead-lettered again).
    page.locator("tr", has=page.locator(f"a[href='/admin/jobs/{broken}']")).locator("button.requeue-one").click()
    expect(page.locator(".flash")).to_contain_text(f"Requeued the dead letter of job {broken[:8]}")
    wait_for(lambda: publisher.get(broken).attempts == 2 and publisher.get(broken).state == "failed", timeout=20)
    page.reload()
    expect(page.locator("#dead-system")).to_have_text("2")
    page.fill("#confirm", "wrong")
    page.click("#purge")
    expect(page.locator(".flash")).to_contain_text("Type the queue name")
    page.fill("#confirm", "system")
    page.click("#purge")
    expect(page.locator(".flash")).to_contain_text("Purged 2 dead letter(s) of system")
    expect(page.locator("#dead-system")).to_have_text("0")
    _shot(page, "06-purged")

    page.click("text=Batches")
    expect(page.locator("#batches tbody tr")).to_have_count(1)
    page.click("#batches a")
    expect(page.locator("h1")).to_contain_text(batch_id)
    page.click("text=Schedules")
    expect(page.locator("h1")).to_contain_text("Schedules")
    page.click("text=Queues")
    expect(page.locator("h1")).to_have_text("Queues")
    _shot(page, "07-queues")
    assert not [e for e in errors if "Content Security Policy" in e], errors  # nothing the CSP blocked


def test_an_admin_pages_through_55_dead_letters_requeues_all_but_the_malformed_one_and_purges_it(
    orders: BrokerUser, browser: Browser, served: str, settings: Settings, publisher: Publisher
) -> None:
    # Given a job refused for a bad field, 53 jobs that failed the same way, then a malformed letter
    running = RunningWorker(settings, publisher)
    try:
        publish_as(orders, "system", wire_message("system.sleep", "system", {"ms": "soon"}))
        wait_for(lambda: queue_depth("system.XQ") == 1, timeout=10)
        for _ in range(53):
            publisher.publish("system.fail", {"permanent": True}, tenant="acme")
        wait_for(lambda: queue_depth("system.XQ") == 54, timeout=30)
    finally:
        running.stop()  # nothing consumes what is requeued: it stays countable
    publish_raw_dead_letter(b"\xff\xfe<img src=x onerror=alert(1)> not json")

    page = browser.new_page()
    problems: list[str] = []
    page.on(
        "console", lambda m: problems.append(m.text) if m.type == "error" and "favicon" not in str(m.location) else None
    )
    page.on("dialog", lambda dialog: problems.append(f"dialog: {dialog.message}"))
    page.goto(f"{served}/admin/dead-letters")
    page.fill("#key", KEYS["admin"])
    page.click("button[type=submit]")
    page.click("a[href='/admin/dead-letters?queue=system']")
    expect(page.locator("#dead-system")).to_have_text("55")
    expect(page.locator("#letters tbody tr")).to_have_count(50)
    expect(page.locator(".page-info").first).to_have_text("Page 1 of 2")
    # The reasons Offload recorded, identical ones counted together
    expect(page.locator("#reasons tr.reason-permanent_error .count")).to_have_text("53")
    expect(page.locator("#reasons tr.reason-validation_failed .count")).to_have_text("1")
    expect(page.locator("#reasons tr.reason-malformed .count")).to_have_text("1")
    expect(page.locator("#letter-1 td.reason")).to_contain_text("validation_failed")
    expect(page.locator("#letter-1 td.reason")).to_contain_text("payload.ms: ")
    _shot(page, "08-dead-letters-page-1")

    page.locator("a.older").first.click()
    expect(page.locator("#letters tbody tr")).to_have_count(5)
    expect(page.locator(".page-info").first).to_have_text("Page 2 of 2")
    malformed = page.locator("#letter-55.malformed")
    expect(malformed.locator("code.raw")).to_have_text("\\xff\\xfe<img src=x onerror=alert(1)> not json")
    expect(malformed.locator("td.reason")).to_contain_text("malformed")
    expect(malformed.locator("button.requeue-one")).to_have_count(0)
    _shot(page, "09-dead-letters-page-2")

    page.click("#requeue")
    expect(page.locator(".flash")).to_contain_text("Requeued 54 dead letter(s) of system. Skipped 1 malformed one(s)")
    expect(page.locator("#dead-system")).to_have_text("1")
    expect(page.locator("#letters tbody tr.malformed")).to_have_count(1)
    expect(page.locator("#letters tbody tr")).to_have_count(1)
    assert queue_depth("system") == 54
    _shot(page, "10-requeued-all-but-the-malformed-one")

    page.locator("#letters tr.malformed button.purge-one").click()
    expect(page.locator(".flash")).to_contain_text("Purged that dead letter.")
    expect(page.locator("#dead-system")).to_have_text("0")
    expect(page.locator("#letters tbody")).to_contain_text("No dead letters.")
    _shot(page, "11-purged-the-malformed-one")
    assert not problems, problems  # no markup of the letter ran, nothing the CSP blocked
