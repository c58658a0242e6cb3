"""deploy/k8s rendered with kustomize (kubectl's) and validated offline: Kubernetes schemas
(kubernetes-validate) and KEDA's CRD schemas (jsonschema), plus what must agree with the code (issue 8)."""

from __future__ import annotations

import copy
import subprocess
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
import yaml

from tests.deploy.kubectl_oldest import VERSION, oldest_kubectl
from tests.deploy.test_compose import WORKERS, procfile
from tests.helpers import VENV_BIN

ROOT = Path(__file__).resolve().parents[2]
K8S = ROOT / "deploy" / "k8s"
KEDA_KINDS = {
    "ScaledObject": "keda.sh_scaledobjects.yaml",
    "TriggerAuthentication": "keda.sh_triggerauthentications.yaml",
}


def render(overlay: str, kubectl: Path = VENV_BIN / "kubectl") -> list[dict[str, Any]]:
    """``kubectl kustomize`` of an overlay, as objects (the newest kubectl unless told)."""
    result = subprocess.run(
        [str(kubectl), "kustomize", str(K8S / "overlays" / overlay)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    return [doc for doc in yaml.safe_load_all(result.stdout) if doc]


def keda_schema(kind: str, version: str) -> dict[str, Any]:
    crd = yaml.safe_load((K8S / "crds" / "keda" / KEDA_KINDS[kind]).read_text())
    [found] = [v for v in crd["spec"]["versions"] if v["name"] == version]
    return dict(found["schema"]["openAPIV3Schema"])


def validate(doc: dict[str, Any]) -> None:
    """Raise if ``doc`` breaks its schema (KEDA's CRD for KEDA kinds, Kubernetes 1.37's otherwise)."""
    if doc["kind"] in KEDA_KINDS:
        jsonschema.validate(doc, keda_schema(doc["kind"], doc["apiVersion"].split("/")[1]))
    else:
        kubernetes_validate.validate(doc, "1.37", strict=True)


@pytest.mark.parametrize("overlay", ["dev", "prod"])
def test_each_overlay_renders_and_every_object_validates(overlay: str) -> None:
    docs = render(overlay)
    kinds = {doc["kind"] for doc in docs}
    assert {
        "Deployment",
        "Service",
        "ConfigMap",
        "PodDisruptionBudget",
        "ScaledObject",
        "TriggerAuthentication",
    } <= kinds
    for doc in docs:
        validate(doc)


@pytest.mark.parametrize("overlay", ["dev", "prod"])
def test_the_oldest_supported_kubectl_renders_the_same_objects_as_the_newest(overlay: str) -> None:
    """deploy/k8s/README.md states the minimum; kustomize up to v5.6 once panicked on the prod overlay."""
    assert f"kubectl {VERSION.removeprefix('v').rsplit('.', 1)[0]}" in (K8S / "README.md").read_text()
    newest = render(overlay)
    assert render(overlay, oldest_kubectl()) == newest


def test_an_invalid_keda_object_is_caught() -> None:
    [scaled] = [d for d in render("prod") if d["kind"] == "ScaledObject" and d["metadata"]["name"].endswith("media")]
    broken = copy.deepcopy(scaled)
    broken["spec"]["minReplicaCount"] = "zero"
    with pytest.raises(jsonschema.ValidationError):
        validate(broken)
    missing = copy.deepcopy(scaled)
    del missing["spec"]["scaleTargetRef"]
    with pytest.raises(jsonschema.ValidationError):
        validate(missing)


def test_workers_run_the_procfile_commands_scale_on_their_own_queues_and_outlive_their_shutdown() -> None:
    docs = render("prod")
    deployments = {d["metadata"]["name"]: d for d in docs if d["kind"] == "Deployment"}
    scaled = {d["spec"]["scaleTargetRef"]["name"]: d for d in docs if d["kind"] == "ScaledObject"}
    processes = procfile()
    for name in (*WORKERS, "api", "scheduler"):
        deployment = deployments[f"offload-{name}"]
        container = deployment["spec"]["template"]["spec"]["containers"][0]
        assert container["command"] == processes[name][1], name
        if not name.startswith("worker-"):
            continue
        argv = container["command"]
        queues = set(argv[argv.index("--queues") + 1 : argv.index("--processes")]) - {"system"}
        triggers = {t["metadata"]["queueName"] for t in scaled[f"offload-{name}"]["spec"]["triggers"]}
        assert triggers == queues, name
        shutdown_s = int(argv[argv.index("--worker-shutdown-timeout") + 1]) / 1000
        assert deployment["spec"]["template"]["spec"]["terminationGracePeriodSeconds"] > shutdown_s, name
    assert deployments["offload-scheduler"]["spec"]["replicas"] == 2  # one active, one standby


def test_prod_keeps_files_in_a_bucket_with_no_shared_volume_and_only_storage_pods_get_its_keys(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from offload.settings import Settings
    from offload.storage import build_storage
    from offload.storage.s3 import S3Storage

    # With no keys, boto3 would look for an instance role at the metadata address: never from a test.
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    docs = render("prod")
    assert [d for d in docs if d["kind"] == "PersistentVolumeClaim"] == []
    [config] = [d for d in docs if d["kind"] == "ConfigMap" and d["metadata"]["name"] == "offload-config"]
    values = {k.removeprefix("OFFLOAD_").lower(): v for k, v in config["data"].items() if k.startswith("OFFLOAD_")}
    assert isinstance(build_storage(Settings(**values)), S3Storage)  # the settings load and pick S3
    for deployment in (d for d in docs if d["kind"] == "Deployment"):
        pod = deployment["spec"]["template"]["spec"]
        assert not any("persistentVolumeClaim" in volume for volume in pod.get("volumes", []))
        secrets = {ref["secretRef"]["name"] for ref in pod["containers"][0]["envFrom"] if "secretRef" in ref}
        storage_pod = deployment["metadata"]["name"] in (
            "offload-api",
            "offload-worker-media",
            "offload-worker-reports",
        )
        assert secrets == ({"offload-secrets", "offload-s3"} if storage_pod else {"offload-secrets"})
