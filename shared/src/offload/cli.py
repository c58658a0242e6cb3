"""The ``offload`` command.

Demo, SDK submissions, schema export, storage cleanup, layout migration, the job-type catalogue,
new worker packages, VAPID keys for web push and wire message checks.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from offload.contracts import BUILT_IN

DEMO_JOBS: list[dict[str, Any]] = [
    {"type": "system.noop", "payload": {"echo": "hello from Offload"}},
    {"type": "system.sleep", "payload": {"ms": 2000, "steps": 4}},
    {"type": "system.fail", "payload": {"succeed_on_attempt": 2}, "options": {"max_retries": 2}},
    {"type": "system.noop", "payload": {"echo": "delayed 3 s"}, "options": {"delay": 3}},
    {
        "type": "email.send",
        "payload": {
            "to": [{"email": "ada@example.com", "name": "Ada"}],
            "template": "welcome",
            "vars": {"name": "Ada", "product": "Offload"},
        },
    },
]


def _request(url: str, key: str, body: Any = None) -> Any:
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(url, data=data, method="POST" if data else "GET")
    request.add_header("Authorization", f"Bearer {key}")
    if data:
        request.add_header("Content-Type", "application/json")
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.loads(response.read())


def demo(api: str, key: str) -> int:
    """Submit a few jobs over HTTP, follow them by polling, print each state change."""
    if not key:
        print("No API key: run `make up` first (it prints one), or pass --key.", file=sys.stderr)
        return 2
    try:
        accepted = [_request(f"{api}/v1/jobs", key, job) for job in DEMO_JOBS]
    except (urllib.error.URLError, OSError) as exc:
        print(f"Cannot reach the API at {api}: {exc}. Is `make up` running?", file=sys.stderr)
        return 1
    seen: dict[str, str] = {}
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        for job, answer in zip(DEMO_JOBS, accepted, strict=True):
            record = _request(answer["status_url"], key)
            line = f"{record['state']:<9} {record['progress']['percent']:>3}%  attempt {record['attempts']}"
            if seen.get(answer["id"]) != line:
                seen[answer["id"]] = line
                print(
                    f"{answer['id'][:8]}  {job['type']:<13} {line}  {json.dumps(record['result'] or record['error'])}"
                )
        if all(v.split()[0] in {"succeeded", "failed", "dead", "cancelled"} for v in seen.values()):
            print("All demo jobs finished.")
            return 0
        time.sleep(0.25)
    print("Some demo jobs did not finish within 30 s; are the workers running?", file=sys.stderr)
    return 1


def submit(job_type: str, payload: str, tenant: str) -> int:
    """Publish one job with the Python SDK (no HTTP), printing its id."""
    from offload.publish import Publisher
    from offload.settings import load_settings

    publisher = Publisher.from_settings(load_settings())
    try:
        submitted = publisher.publish(job_type, json.loads(payload), tenant=tenant)
    finally:
        publisher.close()
    print(json.dumps({"id": submitted.job_id, "state": submitted.state}))
    return 0


def export_schemas(out: Path) -> int:
    """Write one JSON Schema file per job type into ``out``."""
    out.mkdir(parents=True, exist_ok=True)
    for contract in BUILT_IN:
        path = out / f"{contract.name}.json"
        path.write_text(json.dumps(contract.json_schema(), indent=2, sort_keys=True) + "\n")
    print(f"Wrote {len(BUILT_IN)} schemas to {out}/")
    return 0


def cleanup(older_than: int | None, *, dry_run: bool) -> int:
    """Remove (or with ``dry_run`` count) stored files past retention, as the ``storage.cleanup`` job does."""
    from offload.settings import load_settings
    from offload.storage import build_storage

    settings = load_settings()
    age = older_than or settings.storage_retention
    swept = build_storage(settings).remove_older_than(time.time() - age, dry_run=dry_run)
    print(json.dumps({"folders": swept.folders, "files": swept.files, "bytes": swept.bytes, "dry_run": dry_run}))
    return 0


def migrate() -> int:
    """Bring the Redis layout of an older Offload to this one's (workers also do it when they start)."""
    from offload.settings import load_settings
    from offload.status import StatusStore

    settings = load_settings()
    store = StatusStore.from_url(settings.redis_url.get_secret_value(), prefix=settings.redis_prefix)
    migrated = store.janitor.migrate_layout()
    print(json.dumps({"migrated": migrated, "note": None if migrated is not None else "nothing to do, or running"}))
    return 0


def job_types(action: str, name: str | None, *, force: bool) -> int:
    """List the catalogue (every type workers registered, who serves it), or retire one type."""
    from offload.catalogue import RETIRE_OUTCOMES, retire
    from offload.settings import load_settings
    from offload.status import StatusStore
    from offload.status.catalogue import ContractStore

    settings = load_settings()
    status = StatusStore.from_url(settings.redis_url.get_secret_value(), prefix=settings.redis_prefix)
    store = ContractStore(status)
    if action == "list":
        _, cards = store.cards()
        live = store.live_workers(sorted(cards))
        for type_name, found in sorted(cards.items()):
            print(
                json.dumps(
                    {
                        "type": type_name,
                        "service": found.get("service"),
                        "queue": found.get("queue"),
                        "schema_hash": found.get("schema_hash"),
                        "live_workers": live[type_name],
                    }
                )
            )
        return 0
    assert name is not None
    outcome = retire(store, name, force=force)
    told = RETIRE_OUTCOMES[outcome].format(name=name)
    if outcome == "live":
        told = told.removesuffix(".") + ", or pass --force."
    print(told, file=sys.stdout if outcome == "retired" else sys.stderr)
    return 0 if outcome == "retired" else 1


def check_message(body_file: Path, properties_file: Path | None) -> int:
    """Check a wire message (and its AMQP properties) as a worker would adopt it; print "ok" or each problem."""
    from offload.catalogue import Catalogue
    from offload.message_check import MessageCheck
    from offload.publish.publisher import http_links_allowed, settings_url_policy
    from offload.settings import load_settings
    from offload.status import StatusStore
    from offload.status.catalogue import ContractStore
    from offload.submission import Preparer
    from offload.wire_checks import WireChecks

    try:
        body = body_file.read_bytes()
        properties = json.loads(properties_file.read_text()) if properties_file is not None else None
    except (OSError, ValueError) as exc:
        print(f"Cannot read the message or its properties: {exc}", file=sys.stderr)
        return 2
    settings = load_settings()
    status = StatusStore.from_url(settings.redis_url.get_secret_value(), prefix=settings.redis_prefix)
    registry = Catalogue(ContractStore(status), BUILT_IN)  # the built-in contracts when Redis is out of reach
    preparer = Preparer(registry, settings_url_policy(settings), settings.max_delay, http_links_allowed(settings))
    checks = WireChecks(preparer, settings.wire_access, max_message_bytes=settings.max_body_bytes)
    problems = MessageCheck(registry, checks).problems(body, properties)
    print("\n".join(problems) if problems else "ok")
    return 1 if problems else 0


def new_worker(name: str, into: Path) -> int:
    """Write a new worker package that passes its own test (see :mod:`offload.scaffold`)."""
    from offload.scaffold import new_worker as scaffold

    try:
        root = scaffold(name, into)
    except ValueError as exc:
        print(exc, file=sys.stderr)
        return 2
    print(f"Wrote {root}/: run `pytest` there (RabbitMQ and Redis on loopback), then edit worker.py.")
    return 0


def push_keys(env_file: Path | None) -> int:
    """Make a VAPID key pair: print the private key as settings take it, or append it to ``env_file``."""
    from offload.vapid import new_private_key, public_key_of

    private = new_private_key()
    line = f"OFFLOAD_VAPID_PRIVATE_KEY={private}\n"
    note = f"# its public key (GET /v1/push/vapid-public-key serves it): {public_key_of(private)}\n"
    if env_file is None:
        sys.stdout.write(note + line)
        return 0
    existing = env_file.read_text() if env_file.exists() else ""
    if any(row.startswith("OFFLOAD_VAPID_PRIVATE_KEY=") for row in existing.splitlines()):
        print(f"{env_file} already sets OFFLOAD_VAPID_PRIVATE_KEY; not replacing it.", file=sys.stderr)
        return 1
    with env_file.open("a") as out:
        out.write(("" if not existing or existing.endswith("\n") else "\n") + note + line)
    env_file.chmod(0o600)
    print(f"Wrote OFFLOAD_VAPID_PRIVATE_KEY to {env_file}.")
    return 0


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``offload`` command."""
    parser = argparse.ArgumentParser(prog="offload", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    demo_cmd = commands.add_parser("demo", help="send a few jobs to a running suite and watch them")
    demo_cmd.add_argument("--api", default="http://127.0.0.1:8000")
    demo_cmd.add_argument("--key", default="")
    submit_cmd = commands.add_parser("submit", help="publish one job with the SDK (reads OFFLOAD_* settings)")
    submit_cmd.add_argument("type")
    submit_cmd.add_argument("payload", nargs="?", default="{}")
    submit_cmd.add_argument("--tenant", default="default")
    schemas_cmd = commands.add_parser("schemas", help="write the JSON Schema of every job payload")
    schemas_cmd.add_argument("--out", type=Path, default=Path("schemas"))
    cleanup_cmd = commands.add_parser("cleanup", help="remove uploads and outputs past OFFLOAD_STORAGE_RETENTION")
    cleanup_cmd.add_argument("--older-than", type=int, default=None, metavar="SECONDS")
    cleanup_cmd.add_argument("--dry-run", action="store_true", help="only count what would be removed")
    commands.add_parser("migrate", help="bring job records written by an older Offload to this Redis layout")
    types_cmd = commands.add_parser("job-types", help="list the job types workers registered, or retire one")
    types_actions = types_cmd.add_subparsers(dest="action", required=True)
    types_actions.add_parser("list", help="every registered type, its service and its live workers (JSON lines)")
    retire_cmd = types_actions.add_parser("retire", help="remove a type from the catalogue (its workers stopped)")
    retire_cmd.add_argument("name")
    retire_cmd.add_argument("--force", action="store_true", help="retire it even while workers serve it")
    check_cmd = commands.add_parser("check-message", help="check a wire message as a worker would adopt it")
    check_cmd.add_argument("file", type=Path, help="the message body (JSON)")
    check_cmd.add_argument("--headers", type=Path, default=None, help="its AMQP properties: user_id, priority, headers")
    new_cmd = commands.add_parser("new-worker", help="write a new worker package (job type, test, Dockerfile, k8s)")
    new_cmd.add_argument("name", help="the worker's domain: its job types are named <name>.<verb>")
    new_cmd.add_argument("--into", type=Path, default=Path(), help="the folder to write it in (default: here)")
    push_cmd = commands.add_parser("push", help="web push: make the VAPID key pair the push workers sign with")
    push_actions = push_cmd.add_subparsers(dest="action", required=True)
    keys_cmd = push_actions.add_parser("keys", help="print a new OFFLOAD_VAPID_PRIVATE_KEY (or append it to a file)")
    keys_cmd.add_argument("--env-file", type=Path, default=None, help="append it to this file (mode 600)")
    args = parser.parse_args(argv)
    if args.command == "push":
        return push_keys(args.env_file)
    if args.command == "new-worker":
        return new_worker(args.name, args.into)
    if args.command == "check-message":
        return check_message(args.file, args.headers)
    if args.command == "job-types":
        return job_types(args.action, getattr(args, "name", None), force=getattr(args, "force", False))
    if args.command == "migrate":
        return migrate()
    if args.command == "demo":
        return demo(args.api.rstrip("/"), args.key)
    if args.command == "submit":
        return submit(args.type, args.payload, args.tenant)
    if args.command == "cleanup":
        return cleanup(args.older_than, dry_run=args.dry_run)
    return export_schemas(args.out)


if __name__ == "__main__":
    raise SystemExit(main())
