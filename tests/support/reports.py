"""A reports worker in-process, a local data source for URL rows, and the API for downloads."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import dramatiq
import pytest

from offload.publish import Publisher
from offload.testing import serving
from offload_reports.settings import ReportSettings
from offload_reports.worker import SPEC
from tests.support import make_settings


def report_settings(**overrides: Any) -> ReportSettings:
    """Settings of a reports worker for the tests (``overrides`` lower the limits)."""
    return ReportSettings(**{**make_settings().model_dump(), **overrides})


@pytest.fixture
def reports_settings(servers) -> ReportSettings:
    return report_settings()


@pytest.fixture
def reports_worker(reports_settings: ReportSettings, publisher: Publisher) -> Iterator[dramatiq.Worker]:
    with serving(SPEC, reports_settings, threads=2, stop_timeout_ms=20_000) as worker:
        yield worker
