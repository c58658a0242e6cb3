"""``offload keys create|list|rotate|revoke``: the managed API keys, straight in Redis (issue 23).

The same store as ``/v1/keys`` and the admin page (:class:`offload.status.api_keys.ApiKeyStore`),
reached with the ``OFFLOAD_*`` settings, for bootstrapping the first admin key and for operators
with shell access. Every API process takes a change within about a second. Each change is in the
audit log, by ``cli (<user>@<host>)`` from ``cli``. A secret is printed once, on stdout.
"""

from __future__ import annotations

import argparse
import getpass
import json
import socket
import sys
from typing import Any

from pydantic import ValidationError

from offload.api_keys import DEFAULT_OVERLAP, MAX_OVERLAP, ApiKeyRequest


def add_commands(commands: Any) -> None:
    """Add ``keys`` and its actions to the ``offload`` command's subparsers."""
    keys_cmd = commands.add_parser("keys", help="managed API keys: create, list, rotate, revoke (in Redis)")
    actions = keys_cmd.add_subparsers(dest="action", required=True)
    create = actions.add_parser("create", help="make a key; prints it with its secret (shown once)")
    create.add_argument("--name", required=True, help="what the key is for")
    create.add_argument("--tenant", required=True)
    create.add_argument("--role", default="client", choices=["reader", "client", "admin"])
    create.add_argument("--scope", action="append", default=None, help="a job type (glob) it may submit; repeat")
    create.add_argument("--expires-at", default=None, help="ISO 8601 time with an offset; default: never")
    actions.add_parser("list", help="every managed key, newest first (JSON lines; never a secret)")
    rotate = actions.add_parser("rotate", help="a new secret; the old one works --overlap seconds more")
    rotate.add_argument("id")
    rotate.add_argument("--overlap", type=int, default=DEFAULT_OVERLAP, metavar="SECONDS")
    revoke = actions.add_parser("revoke", help="stop a key for good")
    revoke.add_argument("id")


def run(args: argparse.Namespace) -> int:
    """Run ``offload keys <action>``: 0 done, 1 no such key, refused or Redis down, 2 bad input."""
    from offload.errors import OffloadError
    from offload.settings import load_settings
    from offload.status import StatusStore
    from offload.status.api_keys import ApiKeyStore
    from offload.status.audit import AuditEntry, AuditLog

    settings = load_settings()
    status = StatusStore.from_url(settings.redis_url.get_secret_value(), prefix=settings.redis_prefix)
    store = ApiKeyStore(status)
    log = AuditLog(status, retention=settings.audit_retention, max_entries=settings.audit_max_entries)
    who = f"cli ({getpass.getuser()}@{socket.gethostname()})"

    def audit(action: str, target: str, outcome: str) -> None:
        log.record(AuditEntry(who, action, target, outcome, "cli"))

    try:
        if args.action == "list":
            for key in store.all():
                print(json.dumps(key.public()))
            return 0
        if args.action == "create":
            request = _request(args)
            if request is None:
                return 2
            key, secret = store.create(request, by=who)
            audit("key.create", key.id, f"ok: {key.name} ({key.tenant}, {key.role})")
            print(json.dumps({**key.public(), "secret": secret}))
            return 0
        if args.action == "rotate":
            if not 0 <= args.overlap <= MAX_OVERLAP:
                print(f"--overlap must be from 0 to {MAX_OVERLAP} seconds.", file=sys.stderr)
                return 2
            rotated = store.rotate(args.id, overlap_seconds=args.overlap)
            if rotated is None:
                return _missing(args.id, audit, "key.rotate")
            audit("key.rotate", args.id, f"ok: old secret works {args.overlap} s more")
            print(json.dumps({**rotated[0].public(), "secret": rotated[1]}))
            return 0
        revoked = store.revoke(args.id)
        if revoked is None:
            return _missing(args.id, audit, "key.revoke")
        audit("key.revoke", args.id, f"ok: {revoked.name}")
        print(json.dumps(revoked.public()))
        return 0
    except OffloadError as exc:  # refused (a revoked key, too many keys), or Redis unreachable
        print(exc.message, file=sys.stderr)
        return 1
    finally:
        status.close()


def _request(args: argparse.Namespace) -> ApiKeyRequest | None:
    fields = {"name": args.name, "tenant": args.tenant, "role": args.role, "scopes": args.scope}
    if args.expires_at:
        fields["expires_at"] = args.expires_at
    try:
        return ApiKeyRequest.model_validate(fields)
    except ValidationError as exc:
        for error in exc.errors():
            where = ".".join(str(part) for part in error["loc"]).replace("scopes", "--scope").replace("_", "-")
            print(f"{where if where.startswith('--') else '--' + where}: {error['msg']}", file=sys.stderr)
        return None


def _missing(key_id: str, audit: Any, action: str) -> int:
    audit(action, key_id[:64], "not_found")
    print(f"No API key {key_id[:64]!r}.", file=sys.stderr)
    return 1
