"""openapi.yaml as the documentation tests read it: which operation a concrete path is, and whether a body
follows the schema of its request or of one of its answers."""

from __future__ import annotations

import functools
import re
from typing import Any

import yaml
from openapi_schema_validator import OAS30Validator

from tests.docs_examples import ROOT

SPEC = ROOT / "openapi.yaml"
METHODS = ("get", "put", "post", "delete", "patch", "head", "options")


@functools.cache
def spec() -> dict[str, Any]:
    document: dict[str, Any] = yaml.safe_load(SPEC.read_text(encoding="utf-8"))
    return document


def operations() -> set[tuple[str, str]]:
    """Every (METHOD, path template) the contract lists."""
    return {(method.upper(), path) for path, item in spec()["paths"].items() for method in item if method in METHODS}


def template_of(path: str) -> str | None:
    """The contract's path template a concrete path (`/backups/2026.../objects`) or template falls under."""
    path = path.split("?", 1)[0].rstrip("/") or "/"
    for template in spec()["paths"]:
        pattern = "^" + re.sub(r"\\\{[^}]+\\\}", r"[^/]+", re.escape(template)) + "$"
        if path == template or re.match(pattern, path):
            return str(template)
    return None


def operation(method: str, path: str) -> dict[str, Any] | None:
    template = template_of(path)
    if template is None:
        return None
    found: dict[str, Any] | None = spec()["paths"][template].get(method.lower())
    return found


def _resolve(node: Any) -> Any:
    """The schema with every `$ref` replaced by what it names (the contract has no recursive schema)."""
    if isinstance(node, dict):
        if "$ref" in node:
            target: Any = spec()
            for part in node["$ref"].lstrip("#/").split("/"):
                target = target[part]
            return _resolve(target)
        return {key: _resolve(value) for key, value in node.items()}
    if isinstance(node, list):
        return [_resolve(item) for item in node]
    return node


def query_parameters(method: str, path: str) -> set[str]:
    found = operation(method, path) or {}
    return {p["name"] for p in _resolve(found.get("parameters", [])) if p["in"] == "query"}


def request_problems(method: str, path: str, body: Any) -> list[str]:
    found = operation(method, path)
    if found is None:
        return [f"{method} {path} is not in openapi.yaml"]
    content = _resolve(found.get("requestBody", {})).get("content", {}).get("application/json")
    if content is None:
        return [f"{method} {path} takes no JSON body in openapi.yaml"]
    return [error.message for error in OAS30Validator(content["schema"]).iter_errors(body)]


def answer_problems(method: str, path: str, status: int, body: Any) -> list[str]:
    found = operation(method, path)
    if found is None:
        return [f"{method} {path} is not in openapi.yaml"]
    response = _resolve(found["responses"]).get(str(status))
    if response is None:
        return [f"{method} {path} answers {status}, which openapi.yaml does not list"]
    content = response.get("content", {}).get("application/json")
    if content is None:
        return []
    return [f"{'.'.join(map(str, e.absolute_path))}: {e.message}" for e in OAS30Validator(content["schema"]).iter_errors(body)]
