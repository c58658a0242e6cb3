"""``/push-demo/``: a page that subscribes a browser to web push, served in development only.

It registers a service worker (``sw.js``, which shows each push message as a notification),
fetches the VAPID public key, calls ``pushManager.subscribe()`` and posts the subscription to
``/v1/push/subscriptions`` with the API key typed in. Production never serves it (``create_app``
registers this blueprint only outside production). Everything is a file of this package; the
Content-Security-Policy allows scripts, styles and requests from this origin only.
"""

from __future__ import annotations

from importlib.resources import files

from flask import Blueprint, Response

bp = Blueprint("push_demo", __name__, url_prefix="/push-demo")

CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
    "worker-src 'self'; form-action 'none'; frame-ancestors 'none'; base-uri 'none'"
)
_TYPES = {
    "index.html": "text/html; charset=utf-8",
    "demo.js": "text/javascript; charset=utf-8",
    "sw.js": "text/javascript; charset=utf-8",
    "demo.css": "text/css; charset=utf-8",
}


def _file(name: str) -> Response:
    response = Response(files("offload_api.push_demo").joinpath(name).read_bytes(), content_type=_TYPES[name])
    response.headers["Content-Security-Policy"] = CSP
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["Cache-Control"] = "no-store"
    return response


@bp.get("/")
def page() -> Response:
    """The demo page."""
    return _file("index.html")


@bp.get("/<any('demo.js', 'sw.js', 'demo.css'):name>")
def asset(name: str) -> Response:
    """Its script, its service worker and its style sheet."""
    return _file(name)
