"""The IAM permissions an operator needs to run the dashboard against a stage, as a policy to attach to the
operator's user or role:

    python -m chalicelib.dashboard.access --stage prod [--account 123456789012] [--region us-east-1]

The dashboard runs with the operator's own credentials and makes exactly the calls below (a test records
every call the pages and buttons make and checks each against this policy, and that each statement is used):
reading the catalog and manifests, HEADs of stored versions (storage class, verification, quotes), and, for
"Back up now", the plan locks, the backup record and the asynchronous invocation of the backup worker, which
does the backup itself with its own role. It never writes backup data and never deletes anything but a plan
lock it took for a backup that then could not be started.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from typing import Any

from chalicelib.config import Settings
from chalicelib.deploy.policy import bucket_arn, function_arn
from chalicelib.layout import (
    DATA_PREFIX,
    LOCKS_PREFIX,
    RECORDS_PREFIX,
    RESTORES_PREFIX,
    SNAPSHOTS_PREFIX,
    VERIFICATIONS_PREFIX,
)
from chalicelib.stages import stage_environment


def operator_policy(settings: Settings, region: str, account: str) -> dict[str, Any]:
    """The least-privilege policy for the dashboard of the stage whose settings these are."""
    catalog = bucket_arn(settings.plans.catalog_bucket)
    backup_buckets = sorted({plan.bucket for plan in settings.plans.plans})
    statements: list[dict[str, Any]] = [
        # Listing backups, verification jobs and unfinished restores (the catalog's meta/restore-queue/);
        # quoting a restore checks the target bucket exists and what is already there.
        _statement("DashboardList", ["s3:ListBucket"], [catalog] + [bucket_arn(b) for b in settings.restore_buckets]),
        _statement(
            "DashboardReadCatalog",
            ["s3:GetObject"],
            [f"{catalog}/{prefix}*" for prefix in (RECORDS_PREFIX, VERIFICATIONS_PREFIX, RESTORES_PREFIX, LOCKS_PREFIX)]
            + [f"{bucket_arn(b)}/{SNAPSHOTS_PREFIX}*" for b in backup_buckets],
        ),
        # HEAD of an exact version: its storage class, the verification's checks, a quote's thaw state.
        _statement("DashboardReadVersions", ["s3:GetObjectVersion"], [f"{bucket_arn(b)}/{DATA_PREFIX}*" for b in backup_buckets]),
        # "Back up now": take the plan locks and record the backup, as POST /backup does.
        _statement("DashboardStartBackup", ["s3:PutObject"], [f"{catalog}/{RECORDS_PREFIX}*", f"{catalog}/{LOCKS_PREFIX}*"]),
        _statement("DashboardReleaseLocks", ["s3:DeleteObject"], [f"{catalog}/{LOCKS_PREFIX}*"]),
    ]
    if settings.worker_mode == "lambda" and settings.worker_function:
        statements.append(
            _statement("DashboardInvokeWorker", ["lambda:InvokeFunction"], [function_arn(region, account, settings.worker_function)])
        )
    if settings.restore_table_prefix:
        # A quote for the database plan checks that the new table does not exist yet.
        statements.append(
            _statement(
                "DashboardQuoteTables",
                ["dynamodb:DescribeTable"],
                [f"arn:aws:dynamodb:{region}:{account}:table/{settings.restore_table_prefix}*"],
            )
        )
    return {"Version": "2012-10-17", "Statement": statements}


def _statement(sid: str, actions: list[str], resources: list[str]) -> dict[str, Any]:
    return {"Sid": sid, "Effect": "Allow", "Action": actions, "Resource": resources}


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
