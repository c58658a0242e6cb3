"""Every contract, checked: names, queues, limits against consumer_timeout, who serves it, shipped schemas."""

from __future__ import annotations

import importlib
import json
from importlib.metadata import entry_points
from pathlib import Path

import pytest
from pydantic import BaseModel

from offload.contracts import BUILT_IN, SYSTEM_QUEUE, JobContract, Payload, Registry
from offload.errors import ConfigError, UnknownJobType
from offload.jobs import ENTRY_POINT_GROUP, installed_specs
from offload.settings import Settings
from offload.worker.app import check_contract
from offload.worker.system import SYSTEM_JOBS

ROOT = Path(__file__).resolve().parents[2]
REGISTRY = BUILT_IN
#: The worker packages of this repository's services (not the examples), as their entry points name them.
SERVICE_MODULES = {
    point.name: importlib.import_module(point.module)
    for point in entry_points(group=ENTRY_POINT_GROUP)
    if (ROOT / "services") in Path(str(importlib.import_module(point.module).__file__)).resolve().parents
}
WORKERS = {name: spec for name, spec in installed_specs().items() if name in SERVICE_MODULES}


def test_every_service_with_a_worker_names_its_spec_as_an_entry_point() -> None:
    packages = {path.parent.name for path in (ROOT / "services").glob("*/src/*/worker.py")}
    assert {f"offload_{name}" for name in WORKERS} == packages


@pytest.mark.parametrize("contract", list(REGISTRY), ids=lambda c: c.name)
def test_each_contract_fits_under_the_default_consumer_timeout(contract: JobContract) -> None:
    check_contract(contract, Settings())


@pytest.mark.parametrize("contract", list(REGISTRY), ids=lambda c: c.name)
def test_each_contract_is_served_by_exactly_the_workers_that_consume_its_queue(contract: JobContract) -> None:
    system = {job_type.name for job_type in SYSTEM_JOBS}
    serving = [name for name, spec in WORKERS.items() if contract.name in {*system, *(c.name for c in spec.contracts)}]
    consuming = [name for name, spec in WORKERS.items() if contract.queue in spec.queues]
    expected = list(WORKERS) if contract.queue == SYSTEM_QUEUE else consuming
    assert serving == expected and (contract.queue == SYSTEM_QUEUE or len(serving) == 1)


@pytest.mark.parametrize("contract", list(REGISTRY), ids=lambda c: c.name)
def test_the_shipped_json_schema_of_each_payload_is_up_to_date(contract: JobContract) -> None:
    shipped = ROOT / "schemas" / f"{contract.name}.json"
    assert shipped.exists(), f"run `make schemas` to add {shipped.name}"
    assert json.loads(shipped.read_text()) == contract.json_schema(), f"run `make schemas` to refresh {shipped.name}"


def test_no_stale_schema_files_are_shipped() -> None:
    assert {p.stem for p in (ROOT / "schemas").glob("*.json")} == set(REGISTRY.names)


def test_a_contract_too_long_for_consumer_timeout_is_refused_at_startup() -> None:
    slow = JobContract(name="system.slow", queue="system", payload=Payload, description="x", time_limit=1800)
    with pytest.raises(ConfigError, match="OFFLOAD_CONSUMER_TIMEOUT"):
        check_contract(slow, Settings())


@pytest.mark.parametrize("name", ["Email.Send", "email", "email.send.now", "email-send", ""])
def test_bad_type_names_are_refused(name: str) -> None:
    with pytest.raises(ValueError, match="domain.verb"):
        JobContract(name=name, queue="email", payload=Payload, description="x")


def test_a_registry_refuses_duplicate_names_and_looks_up_by_exact_name() -> None:
    contract = next(iter(REGISTRY))
    with pytest.raises(ValueError, match="twice"):
        Registry([contract, contract])
    with pytest.raises(UnknownJobType):
        REGISTRY.get(contract.name.upper())


def test_payload_models_are_strict_and_closed() -> None:
    for contract in REGISTRY:
        config = contract.payload.model_config
        assert config.get("strict") and config.get("extra") == "forbid", contract.name
        assert contract.result is None or issubclass(contract.result, BaseModel)


def test_every_built_in_contract_is_served_and_every_other_served_type_is_declared_beside_its_handler() -> None:
    """A service's type is either built in (``offload.contracts``) or declared with ``@job`` in its own package.

    The second kind (the video jobs) reaches the API through the worker's registration, as an
    outside worker's does; it must not hide in the core library under another name.
    """
    served = {job_type.name for job_type in SYSTEM_JOBS} | {c.name for spec in WORKERS.values() for c in spec.contracts}
    assert set(BUILT_IN.names) <= served
    for name, spec in WORKERS.items():
        package = SERVICE_MODULES[name].__name__.split(".")[0]
        for job_type in spec.jobs:
            if job_type.name not in BUILT_IN.names:
                modules = (job_type.handler.__module__, job_type.contract.payload.__module__)
                assert all(module.split(".")[0] == package for module in modules), (job_type.name, modules)
