"""What the recorded calls are checked against, and the check itself (used by `record_calls.py`): each
function's generated policy for the configurations the tests ran with, and one report line per permission a
call needs that its function's policy does not give."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from tests.call_owner import OPERATOR, UNATTRIBUTED


def policies_for(configurations: Iterable[Any], topics: Iterable[str], account: str) -> dict[str, dict[str, Any]]:
    """Each function's policy for everything the system ran with during the tests (`configurations`: every
    Plan, PlanSet, Settings and source seen): the generated policy of each configuration, combined (a call
    passes when one of them allows it); the operator, and calls no function claims, get the union of all."""
    from chalicelib.config import Settings
    from chalicelib.deploy.policy import FUNCTIONS, Scope, generate, settings_scope, union
    from chalicelib.plans import DirectorySource, DynamoDBSource, Lifecycle, Plan, PlanSet, S3Source

    scopes: list[Scope] = []
    plans: set[Plan] = set()
    sources: set[Any] = set()
    topic_arns = tuple(sorted(topics))
    for item in configurations:
        if isinstance(item, Settings):
            scopes.append(settings_scope("org-backup", "test", item))
        elif isinstance(item, Plan):
            plans.add(item)
        elif isinstance(item, PlanSet):
            plans.update(item.plans)
            # A plans document used without settings still has its catalog, which records are scoped to, and
            # its inventory bucket.
            scopes.append(_test_scope(item.plans, topic_arns, account, item.catalog_bucket, item.inventory))
        elif isinstance(item, (S3Source, DynamoDBSource, DirectorySource)):
            sources.add(item)
    # Plans and readers used on their own (without settings) get exactly the grants their plan or source would.
    known = {source for plan in plans for source in plan.sources}
    loose = tuple(sorted(sources - known, key=repr))
    if loose:
        plans.add(Plan(name="loose-sources", bucket="loose-sources.invalid", sources=loose, lifecycle=Lifecycle(())))
    scopes.append(_test_scope(tuple(sorted(plans, key=repr)), topic_arns, account))
    policies = {function: union(generate(scope, function) for scope in scopes) for function in FUNCTIONS}
    everything = union(policies.values())
    return {**policies, OPERATOR: everything, UNATTRIBUTED: everything}


def _test_scope(plans: Any, topics: tuple[str, ...], account: str, catalog_bucket: str = "", inventory: Any = None) -> Any:
    from chalicelib.deploy.policy import Scope

    return Scope(
        app_name="org-backup",
        stage="test",
        plans=tuple(plans),
        topic_arns=topics,
        region="us-east-1",
        account=account,
        catalog_bucket=catalog_bucket,
        inventory=inventory,
    )


def _general(resource: str) -> str:
    """An object ARN shown by its bucket and top-level prefix, so one missing grant is one report line."""
    if resource.startswith("arn:aws:s3:::") and "/" in resource:
        bucket, _, key = resource[len("arn:aws:s3:::") :].partition("/")
        top = key.split("/", 1)[0] + "/" if "/" in key else ""
        return f"arn:aws:s3:::{bucket}/{top}*"
    return resource


def violations(calls: Iterable[Any], policy: dict[str, Any], account: str) -> list[str]:
    """One line per missing grant (function, action and resource, objects grouped by top-level prefix), or
    per use of a forbidden action. `policy`: one policy document for every call, or one per function;
    `account`: the account the calls were made in (and the buckets are owned by)."""
    from chalicelib.deploy.permissions import allows, required_permissions
    from chalicelib.deploy.policy import FORBIDDEN_ACTIONS, PRUNE_ACTION
    from chalicelib.deploy.roles import DELETES_VERSIONS

    from chalicelib.deploy.policy import union

    single = "Statement" in policy
    if not single and UNATTRIBUTED not in policy:
        policy = {**policy, UNATTRIBUTED: union(policy.values())}
    problems: dict[tuple[str, str, str], list[Any]] = {}
    checked: set[tuple[str, str, str, tuple[tuple[str, str], ...]]] = set()
    for call in calls:
        role = policy if single else policy.get(call.function, policy[UNATTRIBUTED])
        for permission in required_permissions(call.service, call.operation, call.params, call.region, account):
            key = (call.function, permission.action, permission.resource, permission.context)
            if key in checked:
                continue
            checked.add(key)
            # The prune roles, and the operator running `org-backup prune` with their own credentials.
            forbidden = permission.action in FORBIDDEN_ACTIONS and not (
                permission.action == PRUNE_ACTION and (call.function in DELETES_VERSIONS or call.function == OPERATOR)
            )
            if forbidden or not allows(role, permission):
                group = problems.setdefault(
                    (call.function, permission.action, _general(permission.resource)), [0, call, permission, forbidden]
                )
                group[0] += 1
    lines = []
    for (function, action, resource), (count, call, permission, forbidden) in problems.items():
        what = "FORBIDDEN" if forbidden else "not allowed by its generated policy:"
        context = f" with {dict(permission.context)}" if permission.context else ""
        lines.append(
            f"{function}: {what} {action} on {resource}{context} ({count} resource(s), e.g. {permission.resource}): "
            f"{call.service} {call.operation} from {call.origin}"
        )
    return lines
