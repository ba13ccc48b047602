"""The IAM permissions an operator needs to run the dashboard against a stage, as a policy to attach to the
operator's user or role:

    python -m chalicelib.dashboard.access --stage prod [--account 123456789012] [--region us-east-1]

The dashboard runs with the operator's own credentials and makes exactly the calls below (a test records
every call the pages and buttons make and checks each against this policy, and that each statement is used).
The rows are `Grant`s like the functions' roles (chalicelib/deploy/grants.py), scoped the same way
(`settings_scope`), so the operator's statements are pinned to the stage's account like the functions' are:

- reading the catalog under meta/ (backup records, manifests, verification, prune and restore records,
  pruned markers, plan locks) and HEADs of stored versions (storage class, restore quotes);
- listing data/ versions for the storage-per-class panel (what S3 says each version is stored as);
- "Back up now": the plan locks, the backup record and the asynchronous invocation of the backup worker,
  which does the backup itself with its own role;
- "Verify": the record of the check and the asynchronous invocation of the verify worker.

It never writes backup data and never deletes anything but a plan lock it took for a backup that then could
not be started.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from dataclasses import replace
from typing import Any

from chalicelib.config import Settings
from chalicelib.deploy.grants import Grant, statement
from chalicelib.deploy.scope import (
    BACKUP_WORKER,
    VERIFY_WORKER,
    Scope,
    bucket_arn,
    kms_arn,
    object_arns,
    settings_scope,
    table_arn,
)
from chalicelib.layout import DATA_PREFIX, LOCKS_PREFIX, META_PREFIX, RECORDS_PREFIX, SNAPSHOTS_PREFIX, VERIFICATIONS_PREFIX
from chalicelib.stages import stage_environment


def _catalog(scope: Scope, *prefixes: str) -> list[str]:
    return object_arns([scope.catalog_bucket], *prefixes) if scope.catalog_bucket else []


OPERATOR_GRANTS: tuple[Grant, ...] = (
    # Backups, verification jobs, prunes and their markers, unfinished restores: listings of meta/ only.
    Grant(
        "DashboardCatalogList",
        ("s3:ListBucket",),
        lambda s: [bucket_arn(b) for b in s.backup_buckets],
        lambda s: {"StringLike": {"s3:prefix": [META_PREFIX + "*"]}},
        owned=True,
    ),
    Grant("DashboardCatalogRead", ("s3:GetObject",), lambda s: object_arns(s.backup_buckets, META_PREFIX), owned=True),
    # Storage per class: every version under data/ with the class S3 reports for it. A manifest is read at
    # the version its sealed record names, found among the versions of its key.
    Grant(
        "DashboardVersionsList",
        ("s3:ListBucketVersions",),
        lambda s: [bucket_arn(b) for b in s.backup_buckets],
        lambda s: {"StringLike": {"s3:prefix": [DATA_PREFIX + "*", SNAPSHOTS_PREFIX + "*"]}},
        owned=True,
    ),
    # HEAD of an exact version: its storage class on a snapshot's page, a quote's thaw state; a manifest at
    # its recorded version.
    Grant(
        "DashboardReadVersions",
        ("s3:GetObjectVersion",),
        lambda s: object_arns(s.backup_buckets, DATA_PREFIX, SNAPSHOTS_PREFIX),
        owned=True,
    ),
    # "Back up now" records the backup and takes the plan locks, as POST /backup does; "Verify" records the
    # check, as POST /backups/{id}/verify does.
    Grant(
        "DashboardRecordsWrite",
        ("s3:PutObject",),
        lambda s: _catalog(s, RECORDS_PREFIX, LOCKS_PREFIX, VERIFICATIONS_PREFIX),
        owned=True,
    ),
    Grant("DashboardReleaseLocks", ("s3:DeleteObject",), lambda s: _catalog(s, LOCKS_PREFIX), owned=True),
    # A quote checks that the target bucket exists and what it already holds, or that the new table does not.
    Grant("DashboardQuoteTargets", ("s3:ListBucket",), lambda s: [bucket_arn(b) for b in s.restore_buckets], owned=True),
    Grant(
        "DashboardQuoteTables",
        ("dynamodb:DescribeTable",),
        lambda s: [table_arn(s, s.restore_table_prefix + "*")] if s.restore_table_prefix else [],
    ),
    Grant("DashboardStartWorkers", ("lambda:InvokeFunction",), lambda s: s.invoked(BACKUP_WORKER, VERIFY_WORKER)),
    # Manifests of plans encrypted with a customer key.
    Grant("DashboardKeysDecrypt", ("kms:Decrypt",), lambda s: [kms_arn(s, k) for k in s.kms_keys]),
)


def operator_policy(settings: Settings, region: str, account: str) -> dict[str, Any]:
    """The least-privilege policy for the dashboard of the stage whose settings these are."""
    # The app and stage names only name log groups, which the operator's tool does not write.
    scope = replace(settings_scope("org-backup", "operator", settings), region=region, account=account)
    statements = [
        statement(grant.sid, grant.actions, resources, grant.statement_condition(scope))
        for grant in OPERATOR_GRANTS
        if (resources := grant.resources(scope))
    ]
    return {"Version": "2012-10-17", "Statement": statements}


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Print the IAM policy an operator needs for the dashboard.")
    parser.add_argument("--stage", default="prod")
    parser.add_argument("--region", default="us-east-1")
    parser.add_argument("--account", default="123456789012", help="the AWS account id of the stage")
    args = parser.parse_args(argv)
    settings = Settings.from_environ(stage_environment(args.stage))
    json.dump(operator_policy(settings, args.region, args.account), sys.stdout, indent=2)
    print()
    return 0


if __name__ == "__main__":
    sys.exit(main())
