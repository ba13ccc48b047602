"""A pytest plugin that makes moto evaluate the TLS-only bucket policy as S3 does.

moto evaluates bucket policies for object requests, but with no request context, only the StringEquals
condition operator, and a condition that does not hold counts as an explicit deny: the backup buckets'
`Deny ... Bool aws:SecureTransport false` statement then denies every request, although in AWS it denies
only plain-HTTP ones. Every request in the tests goes to an https endpoint, so statements conditioned on
aws:SecureTransport are evaluated here for a TLS request before moto sees the policy.
"""

from __future__ import annotations

import json
from typing import Any

from moto.iam.access_control import IAMPolicy, PermissionResult
from moto.s3.models import FakeBucket

SECURE_TRANSPORT = "aws:SecureTransport"


def _applies_over_tls(statement: dict[str, Any]) -> bool:
    for operator, keys in statement.get("Condition", {}).items():
        if operator.replace("IfExists", "") != "Bool" or SECURE_TRANSPORT not in keys:
            continue
        expected = keys[SECURE_TRANSPORT]
        values = expected if isinstance(expected, list) else [expected]
        if "true" not in [str(value).lower() for value in values]:
            return False
    return True


def _without_tls_condition(statement: dict[str, Any]) -> dict[str, Any]:
    conditions = {}
    for operator, keys in statement.get("Condition", {}).items():
        rest = {k: v for k, v in keys.items() if not (operator.replace("IfExists", "") == "Bool" and k == SECURE_TRANSPORT)}
        if rest:
            conditions[operator] = rest
    trimmed = {k: v for k, v in statement.items() if k != "Condition"}
    if conditions:
        trimmed["Condition"] = conditions
    return trimmed


def _get_permission(self: FakeBucket, action: str, resource: str) -> Any:
    if self.policy is None:
        return PermissionResult.NEUTRAL
    document = json.loads(self.policy.decode())
    statements = document.get("Statement", [])
    statements = statements if isinstance(statements, list) else [statements]
    kept = [_without_tls_condition(s) for s in statements if _applies_over_tls(s)]
    if not kept:
        return PermissionResult.NEUTRAL
    return IAMPolicy(json.dumps({**document, "Statement": kept})).is_action_permitted(action, resource)


FakeBucket.get_permission = _get_permission  # type: ignore[method-assign]
