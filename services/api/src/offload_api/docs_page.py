"""A self-contained HTML reference rendered from the OpenAPI document (no CDN, no scripts)."""

from __future__ import annotations

import json
from html import escape
from typing import Any

_STYLE = """
body{font:15px/1.5 system-ui,sans-serif;max-width:960px;margin:2rem auto;padding:0 1rem;color:#1d2330}
h1{margin-bottom:0}code,pre{font:13px ui-monospace,monospace;background:#f4f5f7;border-radius:4px}
pre{padding:.75rem;overflow:auto}code{padding:.1rem .3rem}.op{border-top:1px solid #dde;padding:.5rem 0}
.m{display:inline-block;min-width:4.5rem;font-weight:700}.get{color:#1a7f37}.post{color:#0969da}
details{margin:.25rem 0}summary{cursor:pointer}
"""


def render_docs(document: dict[str, Any]) -> str:
    """The API reference page: every operation, the webhooks Offload sends, every job type with its payload schema."""
    parts = [
        "<!doctype html><html lang=en><head><meta charset=utf-8><title>Offload API</title>",
        f"<style>{_STYLE}</style></head><body>",
        f"<h1>{escape(document['info']['title'])}</h1><p>{escape(document['info']['description'])}</p>",
        "<p>Authenticate with <code>Authorization: Bearer &lt;key&gt;</code>. "
        "Machine-readable: <a href=/openapi.json>/openapi.json</a>.</p><h2>Endpoints</h2>",
    ]
    for path, methods in document["paths"].items():
        for method, op in methods.items():
            statuses = ", ".join(op["responses"])
            parts.append(
                f"<div class=op><span class='m {method}'>{method.upper()}</span> <code>{escape(path)}</code> "
                f"— {escape(op['summary'])} <small>({escape(statuses)})</small></div>"
            )
    parts.append("<h2>Webhooks</h2>")
    for name, methods in document.get("webhooks", {}).items():
        for method, op in methods.items():
            headers = ", ".join(p["name"] for p in op["parameters"])
            parts.append(
                f"<div class=op><span class='m {method}'>{method.upper()}</span> <code>{escape(name)}</code> "
                f"— {escape(op['summary'])} <small>(headers {escape(headers)}; body WebhookEvent)</small>"
                f"<p>{escape(op['description'])}</p></div>"
            )
    parts.append("<h2>Job types</h2>")
    schemas = document["components"]["schemas"]
    for name, ref in schemas["JobRequest"]["discriminator"]["mapping"].items():
        variant = schemas[ref.rsplit("/", 1)[-1]]
        payload_ref = variant["properties"]["payload"]["$ref"].rsplit("/", 1)[-1]
        schema = json.dumps(schemas.get(payload_ref, {}), indent=2)
        parts.append(
            f"<details><summary><code>{escape(name)}</code> — {escape(variant.get('description', ''))}</summary>"
            f"<pre>{escape(schema)}</pre></details>"
        )
    parts.append("</body></html>")
    return "".join(parts)
