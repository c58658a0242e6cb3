"""``/push-demo``: a page that subscribes a browser to web push, served in development only.

It registers a service worker (``sw.js``, which shows each push message as a notification),
fetches the VAPID public key, calls ``pushManager.subscribe()`` and posts the subscription to
``/v1/push/subscriptions`` with the API key typed in. Production never serves it (``create_app``
registers this blueprint only outside production). Everything is a file of this package; the
Content-Security-Policy allows scripts, styles and requests from this origin only.
"""

from __future__ import annotations

from importlib.resources import files

from flask import Blueprint, Response

from offload_api.openapi_meta import HTML_PAGE, Content, Operation, documented

bp = Blueprint("push_demo", __name__, url_prefix="/push-demo")

CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
    "worker-src 'self'; form-action 'none'; frame-ancestors 'none'; base-uri 'none'"
)
_SCRIPT: Content = {"text/javascript": {"type": "string"}}
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


_PAGE = "Development only (not served in production). "


@bp.get("")
@documented(
    Operation(
        "Web push demo page (development only)",
        description=_PAGE + "Subscribes this browser for a user of your tenant and saves the subscription.",
        tag="push",
        public=True,
        responses={200: ("An HTML page.", HTML_PAGE)},
    )
)
def page() -> Response:
    """The demo page."""
    return _file("index.html")


@bp.get("/demo.js")
@documented(
    Operation(
        "The demo page's script",
        description=_PAGE + "Registers the service worker, fetches the key, subscribes and posts the subscription.",
        tag="push",
        public=True,
        responses={200: ("JavaScript.", _SCRIPT)},
    )
)
def script() -> Response:
    """The demo page's script."""
    return _file("demo.js")


@bp.get("/sw.js")
@documented(
    Operation(
        "The demo's service worker",
        description=_PAGE + "Shows each push message (JSON: title, body, url, icon) as a notification.",
        tag="push",
        public=True,
        responses={200: ("JavaScript.", _SCRIPT)},
    )
)
def service_worker() -> Response:
    """The demo's service worker, allowed to control the page above its folder (``/push-demo``)."""
    response = _file("sw.js")
    response.headers["Service-Worker-Allowed"] = "/push-demo"
    return response


@bp.get("/demo.css")
@documented(
    Operation(
        "The demo page's style sheet",
        description=_PAGE + "Its style.",
        tag="push",
        public=True,
        responses={200: ("CSS.", {"text/css": {"type": "string"}})},
    )
)
def style() -> Response:
    """The demo page's style sheet."""
    return _file("demo.css")
