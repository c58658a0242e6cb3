"""A real S3-compatible server for the tests, and the switch that puts the suite's files in it.

The server is moto's standalone one (``python -m moto.server``), a real HTTP process on 127.0.0.1
(no MinIO binary can be installed here). It starts on first use and stops, by its PID, when the
session ends (``tests/conftest.py``). ``OFFLOAD_TEST_STORAGE=s3`` (``make test-s3``) makes
``make_settings`` and ``stack_env`` select the S3 backend with this server, so the same tests run
against either backend; the helpers below read stored files through whichever is selected.
"""

from __future__ import annotations

import atexit
import os
import tempfile
import uuid
from pathlib import Path
from typing import TYPE_CHECKING, Any

import boto3
from botocore.config import Config

from offload.settings import Settings
from offload.storage import LocalStorage, build_storage
from tests.helpers import VENV_BIN, free_port, port_open, spawn, stop, wait_for

if TYPE_CHECKING:
    import subprocess

    from types_boto3_s3 import S3Client

#: ``local`` (the default) or ``s3``: the storage backend the suite's settings and stacks select.
TEST_BACKEND = os.environ.get("OFFLOAD_TEST_STORAGE", "local")
#: The bucket the suite's settings use in S3 mode.
TEST_BUCKET = "offload-test"
#: moto accepts any key pair; these only have to be the same everywhere.
ACCESS_KEY, SECRET_KEY = "offload-test-access-key", "offload-test-secret-key"


class MotoServer:
    """moto's S3 server as a process of its own on a free loopback port."""

    def __init__(self, log: Path) -> None:
        self.port = free_port()
        self.log = log
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        """The endpoint URL."""
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 30) -> None:
        """Start it and wait until it listens."""
        args = [str(VENV_BIN / "python"), "-m", "moto.server", "-H", "127.0.0.1", "-p", str(self.port)]
        self.process = spawn(args, env={}, log=self.log)
        wait_for(lambda: port_open(self.port), timeout=timeout, interval=0.1, message="moto server did not start")

    def client(self) -> S3Client:
        """A boto3 client for this server."""
        return boto3.client(
            "s3",
            endpoint_url=self.url,
            region_name="us-east-1",
            aws_access_key_id=ACCESS_KEY,
            aws_secret_access_key=SECRET_KEY,
            config=Config(s3={"addressing_style": "path"}),
        )

    def new_bucket(self, name: str | None = None) -> str:
        """Create a bucket (a fresh random one if no name is given) and return its name."""
        name = name or f"test-{uuid.uuid4().hex[:16]}"
        self.client().create_bucket(Bucket=name)
        return name

    def stop(self) -> None:
        """Stop it (by the process group ``spawn`` gave it)."""
        if self.process is not None:
            stop(self.process, timeout=10)


_server: MotoServer | None = None


def s3_server() -> MotoServer:
    """The session's server with the suite's bucket, started on first use."""
    global _server
    if _server is None:
        server = MotoServer(Path(tempfile.gettempdir()) / f"offload-test-moto-{os.getpid()}.log")
        server.start()
        atexit.register(server.stop)  # the session fixture stops it first; this covers an aborted run
        server.new_bucket(TEST_BUCKET)
        _server = server
    return _server


def stop_s3_server() -> None:
    """Stop the session's server if it was started."""
    global _server
    if _server is not None:
        _server.stop()
        _server = None


def s3_settings(bucket: str = TEST_BUCKET) -> dict[str, Any]:
    """Settings fields that select the S3 backend on the session's server."""
    return {
        "storage_backend": "s3",
        "s3_bucket": bucket,
        "s3_endpoint_url": s3_server().url,
        "s3_access_key_id": ACCESS_KEY,
        "s3_secret_access_key": SECRET_KEY,
    }


def storage_overrides() -> dict[str, Any]:
    """Settings fields that select the suite's storage backend (none for the local default)."""
    return s3_settings() if TEST_BACKEND == "s3" else {}


def storage_env() -> dict[str, str]:
    """The same, as ``OFFLOAD_*`` variables for the processes of a test stack."""
    return {f"OFFLOAD_{name.upper()}": str(value) for name, value in storage_overrides().items()}


def stored(settings: Settings | dict[str, str], tenant: str, owner: str) -> dict[str, float]:
    """The files of one upload or job, name to last-write time, in whichever backend ``settings`` select.

    ``settings`` may also be a stack's environment (``OFFLOAD_*`` variables).
    """
    settings = _settings(settings)
    storage = build_storage(settings)
    if isinstance(storage, LocalStorage):
        folder = storage.root / tenant / owner
        return {p.name: p.stat().st_mtime for p in folder.iterdir()} if folder.is_dir() else {}
    client, prefix = s3_server().client(), f"{settings.s3_prefix}{tenant}/{owner}/"
    listed = client.list_objects_v2(Bucket=settings.s3_bucket, Prefix=prefix).get("Contents", [])
    return {item["Key"][len(prefix) :]: item["LastModified"].timestamp() for item in listed}


def _settings(source: Settings | dict[str, str]) -> Settings:
    """``source``, or the settings a stack's ``OFFLOAD_*`` environment gives its processes."""
    if isinstance(source, Settings):
        return source
    values: dict[str, Any] = {name.removeprefix("OFFLOAD_").lower(): value for name, value in source.items()}
    return Settings(**values)


def read_stored(settings: Settings | dict[str, str], key: str) -> bytes:
    """A stored file's bytes, through the storage backend ``settings`` (or a stack's environment) select."""
    settings = _settings(settings)
    with build_storage(settings).open(key) as handle:
        return handle.read()
