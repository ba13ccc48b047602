"""A pytest plugin that makes moto evaluate the backup buckets' policy as S3 does, as far as it can.

moto evaluates bucket policies for object requests, but with no request context, only the StringEquals
condition operator, and a condition that does not hold counts as an explicit deny: the backup buckets'
`Deny ... Bool aws:SecureTransport false` statement then denies every request, although in AWS it denies
only plain-HTTP ones. Every request in the tests goes to an https endpoint, so statements conditioned on
aws:SecureTransport are evaluated here for a TLS request before moto sees the policy.

moto has no request context at all, so it cannot evaluate the create-only statements (conditioned on the
`s3:if-none-match` header and `s3:ObjectCreationOperation`), and it takes a delete of one version for
s3:DeleteObject where AWS asks for s3:DeleteObjectVersion: those statements are left out of moto's
evaluation, and the suite checks every request the system sends against them instead
(tests/record_calls.py, with `chalicelib.deploy.permissions.denies`).
"""

from __future__ import annotations

import json
from typing import Any

from moto.iam.access_control import IAMPolicy, PermissionResult
from moto.s3.models import FakeBucket

SECURE_TRANSPORT = "aws:SecureTransport"
# Condition keys only a real request has: statements using them are checked by the suite, not by moto.
REQUEST_KEYS = ("s3:if-none-match", "s3:if-match", "s3:ObjectCreationOperation")


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


def _needs_request(statement: dict[str, Any]) -> bool:
    if statement.get("Effect") == "Deny" and statement.get("Action") in ("s3:DeleteObject", ["s3:DeleteObject"]):
        # moto checks s3:DeleteObject for every delete, also one of a given version, which AWS authorizes as
        # s3:DeleteObjectVersion: the suite checks these statements on every request instead.
        return True
    return any(key in REQUEST_KEYS for keys in statement.get("Condition", {}).values() for key in keys)


def _get_permission(self: FakeBucket, action: str, resource: str) -> Any:
    if self.policy is None:
        return PermissionResult.NEUTRAL
    document = json.loads(self.policy.decode())
    statements = document.get("Statement", [])
    statements = statements if isinstance(statements, list) else [statements]
    kept = [_without_tls_condition(s) for s in statements if _applies_over_tls(s) and not _needs_request(s)]
    if not kept:
        return PermissionResult.NEUTRAL
    return IAMPolicy(json.dumps({**document, "Statement": kept})).is_action_permitted(action, resource)


FakeBucket.get_permission = _get_permission  # type: ignore[method-assign]
