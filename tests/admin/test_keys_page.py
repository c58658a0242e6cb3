"""The admin page's API keys (issue 23) in headless Chromium: make a key (its secret shown once),
rotate it, revoke it, each obeyed by the API at once, and read all of it in the audit log."""

from __future__ import annotations

from playwright.sync_api import Browser, expect

from tests.support import KEYS, Api


def test_an_admin_makes_rotates_and_revokes_a_key_and_reads_the_audit_log(
    browser: Browser, served: str, api: Api
) -> None:
    page = browser.new_page()
    page.goto(f"{served}/admin/keys")
    page.fill("#key", KEYS["admin"])
    page.click("button[type=submit]")
    expect(page.locator("h1")).to_have_text("API keys")

    page.fill("input[name=name]", "page key")
    page.fill("input[name=tenant]", "acme")
    page.fill("input[name=scopes]", "system.*")
    page.click("#create-key")
    secret = page.locator("#secret").inner_text()
    assert secret.startswith("ofk_")
    assert api.get("/v1/jobs", headers={"Authorization": f"Bearer {secret}"}).status_code == 200
    page.reload()  # sends the form again: it is refused, and the secret is not shown again
    expect(page.locator(".flash")).to_contain_text("already sent")
    expect(page.locator("#secret")).to_have_count(0)
    expect(page.locator("#keys tbody tr")).to_have_count(1)
    row = page.locator("#keys tbody tr").first
    expect(row).to_contain_text("page key")
    expect(row).to_contain_text("system.*")

    row.locator("input[name=overlap_seconds]").fill("0")
    row.locator("button", has_text="Rotate").click()
    rotated = page.locator("#secret").inner_text()
    assert rotated != secret
    assert api.get("/v1/jobs", headers={"Authorization": f"Bearer {secret}"}).status_code == 401
    assert api.get("/v1/jobs", headers={"Authorization": f"Bearer {rotated}"}).status_code == 200

    page.locator("#keys tbody tr").first.locator("button", has_text="Revoke").click()
    expect(page.locator(".flash")).to_contain_text("Revoked page key")
    assert api.get("/v1/jobs", headers={"Authorization": f"Bearer {rotated}"}).status_code == 401

    page.click("text=Audit log")
    rows = page.locator("#audit tbody tr")
    expect(rows.nth(0)).to_contain_text("key.revoke")
    expect(rows.nth(1)).to_contain_text("key.rotate")
    expect(rows.nth(2)).to_contain_text("key.create")
    expect(rows.nth(3)).to_contain_text("admin.sign_in")
    expect(rows.nth(0)).to_contain_text("admin page, env key of ops")
    expect(rows.nth(0)).to_contain_text("127.0.0.1")
