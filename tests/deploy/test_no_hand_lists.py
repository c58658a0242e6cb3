"""Job types and queues are declared once, in the worker specs: no other list of them is kept by hand.

The deploy files that must name queues (the ``--queues`` of each worker command, KEDA's
triggers) are checked against the specs by ``test_compose`` and ``test_kubernetes``; this file
checks that nothing else holds a copy: the Grafana dashboards take their queues and types from
Prometheus's ``label_values``, and no Python file of the repository (tests included) spells a
list of queue or type names that the specs already give.
"""

from __future__ import annotations

import ast
import json
import re
from pathlib import Path

from offload.jobs import installed_specs
from offload.worker.system import SYSTEM_JOBS

ROOT = Path(__file__).resolve().parents[2]
SPECS = installed_specs()
QUEUES = {"system", *(queue for spec in SPECS.values() for queue in spec.queues)}
TYPES = {job.name for job in SYSTEM_JOBS} | {contract.name for spec in SPECS.values() for contract in spec.contracts}
NAMES = QUEUES | TYPES | {f"{queue}.{suffix}" for queue in QUEUES for suffix in ("DQ", "XQ")}


def hand_lists(source: str) -> list[tuple[int, list[str]]]:
    """The list, tuple and set literals of ``source`` made only of queue or type names, two or more of them."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.List | ast.Tuple | ast.Set):
            strings = [e.value for e in node.elts if isinstance(e, ast.Constant) and isinstance(e.value, str)]
            named = [value for value in strings if value in NAMES]
            if len({value.split(".")[0] for value in named if value in QUEUES or "." in value}) >= 3 and len(
                named
            ) == len(strings):
                found.append((node.lineno, named))
    return found


def test_the_scan_finds_a_hand_kept_list_and_passes_one_built_from_the_specs() -> None:
    assert hand_lists('QUEUES = ("email", "media", "reports")\n') == [(1, ["email", "media", "reports"])]
    assert hand_lists('for q in {*BUILT_IN.queues, "email", "media", "webhooks"}: pass\n')
    assert hand_lists("QUEUES = (*SPEC.queues, 'system')\nMEASURE = ('api', 'email', 'media', 'reports')\n") == []


def test_no_python_file_keeps_a_list_of_queues_or_job_types() -> None:
    found = []
    for folder in ("shared/src", "services", "tests", "bench", "examples"):
        for path in sorted((ROOT / folder).rglob("*.py")):
            if path == Path(__file__).resolve():
                continue  # its own examples of what the scan finds
            found += [f"{path.relative_to(ROOT)}:{line}: {names}" for line, names in hand_lists(path.read_text())]
    assert not found, "Derive these from the worker specs (offload.jobs.installed_specs):\n" + "\n".join(found)


def test_grafana_dashboards_take_queues_and_types_from_prometheus() -> None:
    literal = re.compile(r'\b(queue|type|actor_name|queue_name)\s*=~?\s*"([^"$]+)"')
    for path in sorted((ROOT / "deploy" / "grafana" / "dashboards").glob("*.json")):
        dashboard = json.loads(path.read_text())
        for variable in dashboard.get("templating", {}).get("list", []):
            assert variable["type"] == "query", f"{path.name}: variable {variable['name']} is a fixed list"
            query = variable["query"]["query"] if isinstance(variable["query"], dict) else variable["query"]
            assert query.startswith("label_values("), f"{path.name}: {variable['name']} is not from label_values"
        exprs = re.findall(r'"expr":\s*"((?:[^"\\]|\\.)*)"', path.read_text())
        for expr in exprs:
            fixed = [value for _, value in literal.findall(expr.replace('\\"', '"')) if value in NAMES]
            assert not fixed, f"{path.name}: a panel names {fixed}; use a variable"
