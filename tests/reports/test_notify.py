"""The report → email chain: ``notify`` sends ``report_ready`` with a link that downloads the report."""

from __future__ import annotations

import io
import re
from urllib.parse import urlsplit

import dramatiq
from openpyxl import load_workbook

from offload.publish import Publisher
from tests.helpers import wait_for
from tests.reports.test_build import COLUMNS, _rows
from tests.support import Api
from tests.support.email import Sink
from tests.support.media import run_job


def test_notify_sends_report_ready_with_a_working_signed_link_once(
    api: Api,
    publisher: Publisher,
    reports_worker: dramatiq.Worker,
    email_worker: dramatiq.Worker,
    smtp_sink: tuple[Sink, int],
) -> None:
    sink, _ = smtp_sink
    payload = {
        "title": "Weekly orders",
        "columns": COLUMNS,
        "rows": _rows(12),
        "notify": {"email": "ada@example.com", "name": "Ada"},
    }
    record = run_job(api, publisher, "report.build", payload)
    assert record.state == "succeeded", record
    email_job = record.result["notify_job_id"]
    notified = publisher.wait(email_job, timeout=30)
    assert notified is not None and notified.state == "succeeded" and notified.parent_id == record.id
    wait_for(lambda: len(sink.messages) == 1, timeout=10)
    message = sink.messages[0]
    assert message["To"] == "Ada <ada@example.com>" and "Weekly orders" in message["Subject"]
    text = message.get_body(preferencelist=("plain",)).get_content()
    link = re.search(r"https?://\S+", text)
    assert link is not None, text
    parts = urlsplit(link.group(0))
    download = api.anonymous_get(f"{parts.path}?{parts.query}")
    assert download.status_code == 200
    sheet = load_workbook(io.BytesIO(download.data))["Weekly orders"]
    assert sheet.max_row == 13
    assert len(sink.messages) == 1
