"""mkdocs hooks: the REST and WebSocket reference rendered from notifyd's OpenAPI document, and the changelog.

The document is built in this process from the route table (the one `/openapi.json` serves), so the
reference cannot drift from the routes and the build needs no network and no running server. A page
asks for the reference with the marker below on a line of its own.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from mkdocs.config.defaults import MkDocsConfig
from mkdocs.structure.files import File, Files
from mkdocs.structure.pages import Page

MARKER = "<!-- openapi-reference -->"
CHANGELOG = Path(__file__).resolve().parents[2] / "CHANGELOG.md"


def on_files(files: Files, config: MkDocsConfig) -> Files:
    """CHANGELOG.md lives at the top of the repository; the site shows it as changelog.md."""
    files.append(File.generated(config, "changelog.md", content=CHANGELOG.read_text()))
    return files


def on_page_markdown(markdown: str, page: Page, config: MkDocsConfig, files: Files) -> str:
    if MARKER not in markdown:
        return markdown
    from notifyd.app import OPENAPI  # imported here: only the reference page needs the app

    return markdown.replace(MARKER, render(OPENAPI))


def _cell(text: Any) -> str:
    return " ".join(str(text).split()).replace("|", "\\|")


def _type(schema: dict[str, Any]) -> str:
    """A JSON Schema in a few words: `string (uuid)`, `integer ≤ 100`, `array of NotificationOut`, …"""
    if "$ref" in schema:
        name = schema["$ref"].rsplit("/", 1)[-1]
        return f"[{name}](#schema-{name.lower()})"
    for combinator in ("anyOf", "oneOf"):
        if combinator in schema:
            kinds = [_type(s) for s in schema[combinator] if s.get("type") != "null"]
            nullable = any(s.get("type") == "null" for s in schema[combinator])
            return " or ".join(kinds or ["object"]) + (" or null" if nullable else "")
    if "const" in schema:
        return f"`{schema['const']}`"
    if "enum" in schema:
        return " \\| ".join(f"`{v}`" for v in schema["enum"])
    kind = schema.get("type", "any")
    if kind == "array":
        return f"array of {_type(schema.get('items', {}))}"
    words = [str(kind)]
    if "format" in schema:
        words.append(f"({schema['format']})")
    for key, sign in (("minimum", "≥"), ("maximum", "≤"), ("minLength", "length ≥"), ("maxLength", "length ≤")):
        if key in schema:
            words.append(f"{sign} {schema[key]}")
    if "pattern" in schema:
        words.append(f"matching `{schema['pattern']}`")
    return " ".join(words)


def _description(schema: dict[str, Any]) -> str:
    text = schema.get("description") or next(
        (s["description"] for s in schema.get("anyOf", []) if "description" in s), ""
    )
    if "default" in schema and schema["default"] is not None:
        text = f"{text} (default `{schema['default']}`)".strip()
    return _cell(text)


def _operation(method: str, path: str, op: dict[str, Any]) -> list[str]:
    lines = [f"### {method.upper()} `{path}`", "", f"{op['summary']}.", ""]
    security = op.get("security") or []
    who = " or ".join(" + ".join(f"`{name}`" for name in s) for s in security) or "none (public)"
    lines += [f"operationId `{op['operationId']}` · credentials: {who}", ""]
    if op.get("parameters"):
        lines += ["| parameter | in | type | required | description |", "|---|---|---|---|---|"]
        for p in op["parameters"]:
            required = "yes" if p.get("required") else "no"
            description = _cell(p.get("description", "")) or _description(p["schema"])
            lines.append(f"| `{p['name']}` | {p['in']} | {_type(p['schema'])} | {required} | {description} |")
        lines.append("")
    if "requestBody" in op:
        media, body = next(iter(op["requestBody"]["content"].items()))
        optional = "" if op["requestBody"].get("required") else " (may be left out)"
        lines += [f"Body{optional}: {_type(body['schema'])} as `{media}`.", ""]
    lines += ["| status | meaning | body |", "|---|---|---|"]
    for code, response in op["responses"].items():
        content = response.get("content", {})
        body = ", ".join(f"{_type(c['schema'])} as `{m}`" for m, c in content.items()) or "—"
        lines.append(f"| {code} | {_cell(response['description'])} | {body} |")
    return [*lines, ""]


def _fields(message: dict[str, Any]) -> str:
    return ", ".join(f"`{name}`: {_cell(text)}" for name, text in message["fields"].items()) or "—"


def _websocket(ws: dict[str, Any]) -> list[str]:
    lines = [f"### WebSocket `{ws['path']}`", "", ws["description"], "", f"Authentication: {ws['authentication']}", ""]
    lines += ["| client → server: `type` | fields | answer |", "|---|---|---|"]
    for kind, message in ws["client_messages"].items():
        lines.append(f"| `{kind}` | {_fields(message)} | {_cell(message['answer'])} |")
    lines += ["", "| server → client: `type` | fields |", "|---|---|"]
    lines += [f"| `{kind}` | {_fields(message)} |" for kind, message in ws["server_messages"].items()]
    lines.append("")
    lines += ["| close code | meaning |", "|---|---|"]
    lines += [f"| {code} | {_cell(text)} |" for code, text in ws["close_codes"].items()]
    return [*lines, ""]


def _schema(name: str, schema: dict[str, Any]) -> list[str]:
    lines = [f"### {name} {{#schema-{name.lower()}}}", ""]
    if schema.get("description"):
        lines += [_cell(schema["description"]), ""]
    properties = schema.get("properties", {})
    if not properties:
        return [*lines, f"{_type(schema)}.", ""]
    required = set(schema.get("required", []))
    lines += ["| field | type | required | description |", "|---|---|---|---|"]
    for field, prop in properties.items():
        flag = "yes" if field in required else "no"
        lines.append(f"| `{field}` | {_type(prop)} | {flag} | {_description(prop)} |")
    for alternative in schema.get("anyOf", []):
        if "required" in alternative:
            lines.append("")
            lines.append("One of these is required: " + ", ".join(f"`{f}`" for f in alternative["required"]) + ".")
    return [*lines, ""]


def render(doc: dict[str, Any]) -> str:
    """The Markdown of the reference: one chapter per tag, its operations, then the schemas."""
    server = doc["servers"][0]
    lines = [
        f"OpenAPI {doc['openapi']}, notifyd {doc['info']['version']}. Paths are relative to `{server['url']}`: "
        f"{server['description']}. {doc['info']['description']}",
        "",
    ]
    for tag in doc["tags"]:
        lines += [f"## {tag['name'].capitalize()}", "", tag["description"], ""]
        for path, operations in doc["paths"].items():
            for method, op in operations.items():
                if tag["name"] in op["tags"]:
                    lines += _operation(method, path, op)
        if doc["x-websocket"]["tag"] == tag["name"]:
            lines += _websocket(doc["x-websocket"])
    lines += ["## Schemas", ""]
    for name, schema in sorted(doc["components"]["schemas"].items()):
        lines += _schema(name, schema)
    return "\n".join(lines)
