"""Least-privilege IAM policies, one per function, generated from the plans.

Chalice's automatic policy only reads `app.py`, so with the logic in `chalicelib/` it would grant nothing
useful; `autogen_policy` is off and this module writes `.chalice/policy-<stage>-<function>.json` for every
stage and function, which `.chalice/config.json` names per function
(`stages.<stage>.lambda_functions.<function>.iam_policy_file`):

    python -m chalicelib.deploy.policy            # every stage of .chalice/config.json
    python -m chalicelib.deploy.policy --stage dev
    python -m chalicelib.deploy.policy --check    # exit 1 when a file is out of date or not referenced

What a function may do is `roles.ROLES`: the grant tables of `grants.py` it is made of, scoped to the stage
(`scope.py`). `permissions.py` maps an AWS API call to the IAM actions and resources it needs and evaluates a
policy for one of them; the test suite checks every call the code makes against the generated policy of the
function that made it.

Never granted, whatever a table says: the actions in `FORBIDDEN_ACTIONS` (a role that can change lifecycle
rules, versioning, retention or bucket policies, or delete versions, can destroy every backup) and any action
with a wildcard. The one exception: the prune roles (`roles.DELETES_VERSIONS`) delete versions, and only
under data/ and meta/snapshots/.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

from chalicelib.deploy.grants import Grant, statement
from chalicelib.deploy.roles import DELETES_VERSIONS, FUNCTIONS, ROLES
from chalicelib.deploy.scope import Scope, settings_scope, stage_scope

__all__ = [
    "FORBIDDEN_ACTIONS",
    "FUNCTIONS",
    "PolicyError",
    "Scope",
    "check_actions",
    "config_problems",
    "generate",
    "main",
    "policy_path",
    "render",
    "settings_scope",
    "stage_scope",
    "union",
    "write_stage",
]

FORBIDDEN_ACTIONS = frozenset(
    {
        "s3:DeleteObjectVersion",
        "s3:DeleteBucket",
        "s3:PutLifecycleConfiguration",
        "s3:PutBucketVersioning",
        "s3:PutBucketPolicy",
        "s3:DeleteBucketPolicy",
        "s3:PutBucketPublicAccessBlock",
        "s3:PutEncryptionConfiguration",
        "s3:PutBucketObjectLockConfiguration",
        # Redirecting or narrowing the inventory would feed verification and the prune a report of S3's
        # writing, but not of the whole bucket.
        "s3:PutInventoryConfiguration",
        # Disabling or redirecting replication would stop the vault's copy, or send the backups elsewhere.
        "s3:PutReplicationConfiguration",
        "s3:PutObjectRetention",
        "s3:PutObjectLegalHold",
        "s3:BypassGovernanceRetention",
    }
)


class PolicyError(Exception):
    """A grant table asks for something a function must never have, or a function has no role."""


# The one forbidden action the prune roles are allowed: deleting the versions no kept snapshot names.
PRUNE_ACTION = "s3:DeleteObjectVersion"


def check_actions(actions: Iterable[str], deletes_versions: bool = False) -> None:
    for action in actions:
        if action == PRUNE_ACTION and deletes_versions:
            continue
        if action in FORBIDDEN_ACTIONS:
            raise PolicyError(f"{action} must never be granted to the backup functions")
        if "*" in action or "?" in action or ":" not in action:
            raise PolicyError(f"{action!r}: actions are named one by one, never with wildcards")


def generate(scope: Scope, function: str) -> dict[str, Any]:
    """The IAM policy document of `function` (a Chalice function name, e.g. `backup_worker`) in `scope`."""
    if function not in ROLES:
        raise PolicyError(f"function {function!r} has no role in chalicelib/deploy/roles.py; the roles are {', '.join(FUNCTIONS)}")
    scope = replace(scope, function=function)
    statements: list[dict[str, Any]] = []
    for concern in ROLES[function]:
        if callable(concern):
            statements.extend(concern(scope))
            continue
        for grant in concern:
            statements.extend(_grant_statements(grant, scope))
    for found in statements:
        check_actions(found["Action"], deletes_versions=function in DELETES_VERSIONS)
    sids = [found["Sid"] for found in statements]
    duplicated = sorted({sid for sid in sids if sids.count(sid) > 1})
    if duplicated:
        raise PolicyError(f"function {function!r}: statement id(s) {', '.join(duplicated)} appear twice; rename a grant")
    return {"Version": "2012-10-17", "Statement": statements}


def _grant_statements(grant: Grant, scope: Scope) -> list[dict[str, Any]]:
    resources = grant.resources(scope)
    return [statement(grant.sid, grant.actions, resources, grant.statement_condition(scope))] if resources else []


def union(policies: Iterable[Mapping[str, Any]]) -> dict[str, Any]:
    """One document allowing what any of `policies` allows (the operator's tool needs no more than the
    functions together). A statement several of them share appears once."""
    statements: dict[str, dict[str, Any]] = {}
    for policy in policies:
        for found in policy["Statement"]:
            statements.setdefault(json.dumps(found, sort_keys=True), found)
    return {"Version": "2012-10-17", "Statement": list(statements.values())}


def render(policy: Mapping[str, Any]) -> str:
    return json.dumps(policy, indent=2) + "\n"


def policy_file_name(stage: str, function: str) -> str:
    return f"policy-{stage}-{function}.json"


def policy_path(stage: str, function: str, project_dir: str | Path | None = None) -> Path:
    from chalicelib.stages import PROJECT_DIR

    return Path(project_dir or PROJECT_DIR) / ".chalice" / policy_file_name(stage, function)


def config_problems(stage: str, project_dir: str | Path | None = None) -> list[str]:
    """Where `.chalice/config.json` does not give a function of the stage its own policy file: Chalice would
    then fall back to a stage-wide file that does not exist, or another function's role."""
    from chalicelib.stages import PROJECT_DIR, read_config

    config = read_config(project_dir or PROJECT_DIR)
    stage_config = config.get("stages", {}).get(stage, {})
    problems = []
    for function in FUNCTIONS:
        wanted = policy_file_name(stage, function)
        found = stage_config.get("lambda_functions", {}).get(function, {}).get("iam_policy_file")
        if found != wanted:
            problems.append(
                f".chalice/config.json: stages.{stage}.lambda_functions.{function}.iam_policy_file is "
                f"{found!r}, must be {wanted!r}"
            )
    if config.get("autogen_policy") is not False and stage_config.get("autogen_policy") is not False:
        problems.append(".chalice/config.json: autogen_policy must be false (Chalice's own policy cannot see chalicelib/)")
    return problems


# Command line ----------------------------------------------------------------------------------------


def write_stage(stage: str, project_dir: str | Path | None = None) -> list[tuple[Path, bool]]:
    """Write the stage's policy files, one per function; returns each path and whether it changed."""
    scope = stage_scope(stage, project_dir)
    written = []
    for function in FUNCTIONS:
        path = policy_path(stage, function, project_dir)
        text = render(generate(scope, function))
        old = path.read_text(encoding="utf-8") if path.exists() else None
        if old != text:
            path.write_text(text, encoding="utf-8")
        written.append((path, old != text))
    return written


def check_stage(stage: str, project_dir: str | Path | None = None) -> list[str]:
    """What is wrong with the stage's committed policy files and their references (nothing: [])."""
    scope = stage_scope(stage, project_dir)
    problems = config_problems(stage, project_dir)
    for function in FUNCTIONS:
        path = policy_path(stage, function, project_dir)
        current = path.read_text(encoding="utf-8") if path.exists() else ""
        if current != render(generate(scope, function)):
            problems.append(f"{path} is out of date: run `make policies`")
    return problems


def main(argv: Sequence[str] | None = None) -> int:
    from chalicelib.errors import BackupError
    from chalicelib.stages import stage_names

    parser = argparse.ArgumentParser(
        prog="python -m chalicelib.deploy.policy", description="Write .chalice/policy-<stage>-<function>.json."
    )
    parser.add_argument("--stage", action="append", help="a stage of .chalice/config.json (default: every stage)")
    parser.add_argument("--check", action="store_true", help="write nothing; exit 1 if a policy file is out of date")
    args = parser.parse_args(argv)
    status = 0
    try:
        for stage in args.stage or stage_names():
            if args.check:
                for problem in check_stage(stage):
                    print(problem, file=sys.stderr)
                    status = 1
                continue
            for path, changed in write_stage(stage):
                print(f"{path}: {'written' if changed else 'unchanged'}")
            for problem in config_problems(stage):
                print(problem, file=sys.stderr)
                status = 1
    except (BackupError, PolicyError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return status


if __name__ == "__main__":
    sys.exit(main())
