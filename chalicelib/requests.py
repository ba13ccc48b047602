"""Parsing and validating API request bodies. Every problem is a `BadRequest` that says what to fix."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from chalicelib.errors import BadRequest


@dataclass(frozen=True)
class BackupRequest:
    plans: list[str] | None = None
    dry_run: bool = False


def parse_json_object(raw_body: bytes | None) -> dict[str, Any]:
    """The body as a JSON object; an empty body is `{}`."""
    if not raw_body or not raw_body.strip():
        return {}
    try:
        data = json.loads(raw_body)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise BadRequest(f"the request body is not valid JSON: {exc}") from exc
    if not isinstance(data, dict):
        raise BadRequest(f"the request body must be a JSON object, got {type(data).__name__}")
    return data


def reject_unknown_fields(data: dict[str, Any], allowed: set[str] | frozenset[str]) -> None:
    """A misspelt field must be an error, not silently ignored."""
    unknown = sorted(set(data) - set(allowed))
    if unknown:
        raise BadRequest(
            f"unknown field(s) {', '.join(map(repr, unknown))}; allowed: {', '.join(map(repr, sorted(allowed)))}"
        )


def parse_plan_names(data: dict[str, Any]) -> list[str] | None:
    """A body's optional `plans`: absent means every plan; anything else must be a non-empty list of names."""
    if "plans" not in data:
        return None
    plans = data["plans"]
    # An explicit null is a mistake, not a wildcard.
    if not isinstance(plans, list) or not plans or not all(isinstance(name, str) for name in plans):
        raise BadRequest("'plans' must be a non-empty list of plan names, e.g. {\"plans\": [\"photos\"]}")
    return plans


def parse_backup_request(raw_body: bytes | None) -> BackupRequest:
    data = parse_json_object(raw_body)
    reject_unknown_fields(data, {"plans", "dry_run"})
    plans = parse_plan_names(data)
    dry_run = data.get("dry_run", False)
    if not isinstance(dry_run, bool):
        raise BadRequest("'dry_run' must be true or false")
    return BackupRequest(plans=plans, dry_run=dry_run)
