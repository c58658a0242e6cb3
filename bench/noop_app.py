"""The ceiling for the API measurement: a Flask app whose POST does nothing.

Served exactly like the API (``python -m bench.noop_server``: gevent patched first, then gunicorn
with ``offload_api.gunicorn_conf``: 2 gevent workers, same keep-alive and connection limits), so the
difference between the two is what ``POST /v1/jobs`` itself costs: auth, validation, the Redis
record and the confirmed publish.
"""

from __future__ import annotations

import uuid

from flask import Flask, Response, jsonify, request

app = Flask(__name__)


@app.post("/v1/jobs")
def accept() -> tuple[Response, int]:
    """Read the JSON body and answer 202 with a made-up id, like the real endpoint's shape."""
    request.get_json(silent=True)
    return jsonify({"id": str(uuid.uuid4()), "state": "queued"}), 202


@app.get("/healthz")
def healthz() -> Response:
    """200 while the process answers (the benchmark waits for it before loading)."""
    return jsonify({"status": "ok"})
