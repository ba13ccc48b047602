"""The stage's plans with a vault each, in a second moto account and region, and clients of that account (moto
keeps each account's state apart and knows the account from the request's credentials)."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from typing import Any

import boto3

from chalicelib.plans import Offsite, PlanSet

VAULT_ACCOUNT = "210987654321"
VAULT_REGION = "eu-central-1"
VAULT_ROLE_ARN = f"arn:aws:iam::{VAULT_ACCOUNT}:role/vault-admin"


def with_vaults(plans: PlanSet, storage_class: str = "GLACIER_IR") -> PlanSet:
    """Every plan with a vault `<bucket>-vault`, locked for its retention's horizon."""
    return replace(plans, plans=tuple(
        replace(plan, offsite=Offsite(VAULT_ACCOUNT, VAULT_REGION, f"{plan.bucket}-vault",
                                      plan.retention.horizon_days(), storage_class))
        for plan in plans.plans
    ))


def stage_env_with_vaults(tmp_path: Path, stage_env: dict[str, str], storage_class: str) -> dict[str, str]:
    """The stage's environment with the shipped plans, each with a vault `<bucket>-vault` in the second account
    and region, its data replicated in `storage_class`, locked for the plan's retention horizon."""
    from chalicelib.plans_file import DEFAULT_PLANS_FILE

    document = json.loads(DEFAULT_PLANS_FILE.read_text())
    for plan in document["plans"]:
        days = 386 if plan["name"] == "database" else 2576  # each retention's horizon
        plan["offsite"] = {"account": "${VAULT_ACCOUNT}", "region": "${VAULT_REGION}", "bucket": plan["bucket"] + "-vault",
                           "storage_class": storage_class, "object_lock_days": days}
    path = tmp_path / "plans.json"
    path.write_text(json.dumps(document))
    return {**stage_env, "PLANS_FILE": str(path), "VAULT_ACCOUNT": VAULT_ACCOUNT, "VAULT_REGION": VAULT_REGION,
            "OFFSITE_ROLE_ARN": VAULT_ROLE_ARN}


def assumed_client(service: str, account: str = VAULT_ACCOUNT, region: str = VAULT_REGION) -> Any:
    """A client with the credentials of a role of `account`, as an administrator would assume it."""
    sts = boto3.client("sts", region_name=region)
    credentials = sts.assume_role(RoleArn=f"arn:aws:iam::{account}:role/vault-admin", RoleSessionName="vault-admin")["Credentials"]
    return boto3.client(
        service, region_name=region, aws_access_key_id=credentials["AccessKeyId"],
        aws_secret_access_key=credentials["SecretAccessKey"], aws_session_token=credentials["SessionToken"],
    )


def delete_bucket(s3: Any, bucket: str) -> None:
    """What an administrator (or an attacker) holding the backup account can do: every version, then the bucket."""
    for page in s3.get_paginator("list_object_versions").paginate(Bucket=bucket):
        doomed = [{"Key": v["Key"], "VersionId": v["VersionId"]} for v in page.get("Versions", []) + page.get("DeleteMarkers", [])]
        if doomed:
            s3.delete_objects(Bucket=bucket, Delete={"Objects": doomed})
    s3.delete_bucket(Bucket=bucket)
