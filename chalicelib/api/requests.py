"""Parsing and validating API requests: bodies, query parameters, times. Every problem is a `BadRequest`
(or `PayloadTooLarge`, `UnsupportedMediaType`) that says what was wrong and how to fix it."""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any

from chalicelib.errors import BadRequest, PayloadTooLarge, UnsupportedMediaType
from chalicelib.plans_file import BUCKET_NAME, TABLE_NAME
from chalicelib.restore.requests import DEFAULT_TIER, ORIGINS, TIERS, RestoreRequest, Target

MAX_BODY_BYTES = 64 * 1024
MAX_LIMIT = 100
_RFC3339 = re.compile(
    r"^(\d{4}-\d{2}-\d{2})(?:[Tt](\d{2}:\d{2}:\d{2})(?:\.(\d+))?([Zz]|[+-]\d{2}:\d{2}))?$"
)
CONTROL_CHARACTERS = re.compile(r"[\x00-\x1f\x7f]")


# -------------------------------------------------------------------------------------------- the body


def check_body(raw_body: bytes | None, content_type: str | None) -> bytes:
    """The body, if it is small enough and JSON (an empty body needs no content type)."""
    body = raw_body or b""
    if len(body) > MAX_BODY_BYTES:
        raise PayloadTooLarge(
            f"the request body is {len(body)} bytes; the limit is {MAX_BODY_BYTES} bytes (64 KiB): send only the "
            "documented fields (a long list of keys to restore is better given as a prefix)"
        )
    if body.strip() and content_type is not None:
        media_type = content_type.split(";", 1)[0].strip().lower()
        if media_type != "application/json" and not media_type.endswith("+json"):
            raise UnsupportedMediaType(
                f"the request body must be JSON sent with 'Content-Type: application/json', got {content_type!r}; "
                "with curl add -H 'Content-Type: application/json'"
            )
    return body


def query(params: Mapping[str, Any] | None, allowed: Iterable[str]) -> dict[str, str]:
    """Query parameters as single strings; unknown or repeated parameters are refused by name."""
    params = params or {}
    allowed = tuple(allowed)
    unknown = sorted(set(params) - set(allowed))
    if unknown:
        takes = ", ".join(allowed) if allowed else "no query parameters"
        raise BadRequest(f"unknown query parameter(s) {', '.join(map(repr, unknown))}; this route takes {takes}")
    values: dict[str, str] = {}
    for name in params:
        many = params.getlist(name) if hasattr(params, "getlist") else [params[name]]
        if len(many) != 1:
            raise BadRequest(f"query parameter {name!r} is given {len(many)} times; give it once")
        values[name] = str(many[0])
    return values


def parse_limit(value: str | None, default: int, maximum: int = MAX_LIMIT) -> int:
    if value is None:
        return default
    if not re.fullmatch(r"\d{1,6}", value) or not 1 <= int(value) <= maximum:
        raise BadRequest(f"limit must be a whole number from 1 to {maximum}, got {value!r}")
    return int(value)


def parse_time(name: str, value: str | None, end_of_day: bool = False) -> datetime | None:
    """An RFC 3339 (ISO 8601) time such as 2026-11-26T13:47:35Z, or a date (midnight UTC; with `end_of_day`,
    the last instant of that day, so `until=2026-11-26` includes all of the 26th)."""
    if value is None:
        return None
    match = _RFC3339.match(value)
    hint = (
        f"{name} must be an ISO 8601 time with a time zone, like 2026-11-26T13:47:35Z or "
        f"2026-11-26T14:47:35%2B01:00 (write '+' as %2B in a URL), or a date like 2026-11-26; got {value!r}"
    )
    if not match:
        raise BadRequest(hint)
    day, clock, fraction, zone = match.groups()
    try:
        if clock is None:
            moment = datetime.fromisoformat(day).replace(tzinfo=timezone.utc)
            return moment + timedelta(days=1) - timedelta(microseconds=1) if end_of_day else moment
        micro = (fraction or "0")[:6].ljust(6, "0")
        zone = "+00:00" if zone in ("Z", "z") else zone
        return datetime.fromisoformat(f"{day}T{clock}.{micro}{zone}").astimezone(timezone.utc)
    except ValueError:
        raise BadRequest(hint) from None


@dataclass(frozen=True)
class BackupRequest:
    plans: list[str] | None = None
    dry_run: bool = False
    # Plans whose deletions may pass the mass-deletion guard in this one backup.
    allow_deletions: list[str] | None = None


# No documented body nests more than three deep. JSON's parser recurses once per bracket, so a body of a few
# thousand nested arrays (60 KB fits in the size limit) would end in a RecursionError: it is measured first.
MAX_NESTING = 32
_OPEN, _CLOSE, _QUOTE, _BACKSLASH = frozenset(b"[{"), frozenset(b"]}"), ord('"'), ord("\\")


def nesting(body: bytes) -> int:
    """How deep the body's arrays and objects nest (brackets inside strings do not count): one pass over
    the bytes, whatever they hold."""
    if body.count(b"[") + body.count(b"{") <= MAX_NESTING:
        return 0  # too few brackets to go deeper than allowed: not worth a scan
    depth = deepest = 0
    in_string = escaped = False
    for byte in body:
        if in_string:
            if escaped:
                escaped = False
            elif byte == _BACKSLASH:
                escaped = True
            elif byte == _QUOTE:
                in_string = False
        elif byte == _QUOTE:
            in_string = True
        elif byte in _OPEN:
            depth += 1
            deepest = max(deepest, depth)
        elif byte in _CLOSE:
            depth -= 1
    return deepest


def parse_json_object(raw_body: bytes | None) -> dict[str, Any]:
    """The body as a JSON object; an empty body is `{}`."""
    if not raw_body or not raw_body.strip():
        return {}
    depth = nesting(raw_body)
    if depth > MAX_NESTING:
        raise BadRequest(
            f"the request body nests arrays or objects {depth} deep; no request of this API nests more than {MAX_NESTING}"
        )
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
    reject_unknown_fields(data, {"plans", "dry_run", "allow_deletions"})
    plans = parse_plan_names(data)
    dry_run = data.get("dry_run", False)
    if not isinstance(dry_run, bool):
        raise BadRequest("'dry_run' must be true or false")
    allow = _allow_list(data, "allow_deletions", "whose deletions may pass the mass-deletion guard in this backup")
    return BackupRequest(plans=plans, dry_run=dry_run, allow_deletions=allow)


def _allow_list(data: dict[str, Any], name: str, meaning: str) -> list[str] | None:
    allow = data.get(name)
    if allow is not None and (not isinstance(allow, list) or not allow or not all(isinstance(n, str) for n in allow)):
        raise BadRequest(f"'{name}' must be a non-empty list of plan names {meaning}, e.g. {{\"{name}\": [\"documents\"]}}")
    return allow


@dataclass(frozen=True)
class PruneRequest:
    plans: list[str] | None = None
    dry_run: bool = False
    # Plans whose prune may pass the prune guard in this one run.
    allow_large_prune: list[str] | None = None


def parse_prune_request(raw_body: bytes | None) -> PruneRequest:
    """A `POST /prune` body: optional `plans`, `dry_run` and `allow_large_prune`."""
    data = parse_json_object(raw_body)
    reject_unknown_fields(data, {"plans", "dry_run", "allow_large_prune"})
    dry_run = data.get("dry_run", False)
    if not isinstance(dry_run, bool):
        raise BadRequest("'dry_run' must be true or false")
    allow = _allow_list(data, "allow_large_prune", "whose prune may pass the prune guard in this run")
    return PruneRequest(plans=parse_plan_names(data), dry_run=dry_run, allow_large_prune=allow)


@dataclass(frozen=True)
class VerifyRequest:
    plans: list[str] | None = None
    sample_percent: float = 0


def parse_verify_request(raw_body: bytes | None) -> VerifyRequest:
    """A `POST /backups/{id}/verify` body: optional `plans` and `sample_percent` (0-100)."""
    data = parse_json_object(raw_body)
    reject_unknown_fields(data, {"plans", "sample_percent"})
    plans = parse_plan_names(data)
    percent = data.get("sample_percent", 0)
    if isinstance(percent, bool) or not isinstance(percent, (int, float)) or not 0 <= percent <= 100:
        raise BadRequest(f"'sample_percent' must be a number from 0 to 100, got {percent!r}")
    return VerifyRequest(plans=plans, sample_percent=float(percent))


# ------------------------------------------------------------------------------------------- restores


def check_key_text(value: str, name: str) -> str:
    """A key or prefix that cannot climb out of where it is put: no '..' segment, no control character."""
    if CONTROL_CHARACTERS.search(value):
        raise BadRequest(f"{name} {value!r} contains a control character")
    if ".." in value.replace("\\", "/").split("/"):
        raise BadRequest(f"{name} {value!r} contains a '..' segment")
    if value.startswith("/"):
        raise BadRequest(f"{name} {value!r} must be relative (no leading '/')")
    return value


_REQUEST_FIELDS = {"backup_id", "plan", "prefix", "keys", "target", "overwrite", "tier", "dry_run", "from"}
_TARGET_FIELDS = {"bucket", "prefix", "table"}


def parse_restore_request(raw_body: bytes | None, allow_path: bool = False) -> RestoreRequest:
    """Validate a `POST /restores` body. `allow_path` admits a local folder target (the command line only)."""
    data = parse_json_object(raw_body)
    return restore_request_from_dict(data, allow_path=allow_path)


def restore_origin(params: Mapping[str, Any] | None) -> str:
    """`GET /restores/{id}?from=offsite`: where the restore is recorded ("backup" when not given)."""
    origin = query(params, ("from",)).get("from", "backup")
    if origin not in ORIGINS:
        raise BadRequest(f"query parameter 'from' must be 'backup' or 'offsite', got {origin!r}")
    return origin


def restore_request_from_dict(data: dict[str, Any], allow_path: bool = False) -> RestoreRequest:
    reject_unknown_fields(data, _REQUEST_FIELDS)
    backup_id = data.get("backup_id")
    if not isinstance(backup_id, str) or not backup_id:
        raise BadRequest("'backup_id' is required, e.g. \"20261126T134735123Z-9f2c4a1b\"")
    plan = data.get("plan")
    if not isinstance(plan, str) or not plan:
        raise BadRequest("'plan' is required: the name of the plan whose snapshot to restore")
    prefix = data.get("prefix")
    keys = data.get("keys")
    if prefix is not None and keys is not None:
        raise BadRequest("give either 'prefix' or 'keys', not both")
    if prefix is not None:
        if not isinstance(prefix, str):
            raise BadRequest("'prefix' must be a string")
        check_key_text(prefix, "'prefix'")
    if keys is not None:
        if not isinstance(keys, list) or not keys or not all(isinstance(k, str) and k for k in keys):
            raise BadRequest("'keys' must be a non-empty list of object keys")
        for key in keys:
            check_key_text(key, "key")
    target = _parse_target(data.get("target"), allow_path)
    overwrite = data.get("overwrite", False)
    if not isinstance(overwrite, bool):
        raise BadRequest("'overwrite' must be true or false")
    dry_run = data.get("dry_run", False)
    if not isinstance(dry_run, bool):
        raise BadRequest("'dry_run' must be true or false")
    tier = data.get("tier", DEFAULT_TIER)
    if tier not in TIERS:
        raise BadRequest(f"'tier' must be one of {', '.join(TIERS)}, got {tier!r}")
    origin = data.get("from", "backup")
    if origin not in ORIGINS:
        raise BadRequest(f"'from' must be 'backup' (the backup bucket) or 'offsite' (the plan's vault), got {origin!r}")
    return RestoreRequest(
        backup_id=backup_id,
        plan=plan,
        target=target,
        prefix=prefix,
        keys=tuple(keys) if keys is not None else None,
        overwrite=overwrite,
        tier=tier,
        dry_run=dry_run,
        origin=origin,
    )


def _parse_target(raw: Any, allow_path: bool) -> Target:
    allowed = _TARGET_FIELDS | ({"path"} if allow_path else set())
    example = '{"bucket": "restore-bucket", "prefix": "restored/"} or {"table": "orders-restored"}'
    if not isinstance(raw, dict) or not raw:
        raise BadRequest(f"'target' is required: an object such as {example}")
    unknown = sorted(set(raw) - allowed)
    if unknown:
        raise BadRequest(f"unknown target field(s) {', '.join(map(repr, unknown))}; allowed: {', '.join(sorted(allowed))}")
    bucket = raw.get("bucket")
    table = raw.get("table")
    path = raw.get("path")
    prefix = raw.get("prefix", "")
    if bucket is None and table is None and path is None:
        raise BadRequest(f"'target' needs a bucket or a table, e.g. {example}")
    if bucket is not None and (not isinstance(bucket, str) or not BUCKET_NAME.match(bucket) or ".." in bucket):
        raise BadRequest(f"target bucket {bucket!r} is not a valid S3 bucket name")
    if table is not None and (not isinstance(table, str) or not TABLE_NAME.match(table)):
        raise BadRequest(f"target table {table!r} is not a valid DynamoDB table name (3-255 of A-Z a-z 0-9 _ . -)")
    if not isinstance(prefix, str):
        raise BadRequest("target 'prefix' must be a string")
    check_key_text(prefix, "target prefix")
    if path is not None and (not isinstance(path, str) or not path or CONTROL_CHARACTERS.search(path)):
        raise BadRequest(f"target path {path!r} is not a usable folder path")
    if bucket is not None and path is not None:
        raise BadRequest("target takes a bucket or a local path, not both")
    return Target(bucket=bucket, prefix=prefix, table=table, path=path)
