"""Provisioning the second copy: the vault with the vault account's credentials (versioned, Object Lock in
COMPLIANCE mode, public access blocked, a policy letting in only the replication role), the replication role
and configuration with the backup account's; a second run changes nothing."""

from __future__ import annotations

import json
from dataclasses import replace
from typing import Any

import boto3
import pytest

from chalicelib.deploy.offsite import (
    REPLICATED_PREFIXES,
    VaultError,
    provision_replication,
    read_replication,
    replication_role_arn,
    replication_role_name,
    role_policy,
)
from chalicelib.deploy.provision import provision_offsite
from chalicelib.plans_file import DEFAULT_PLANS_FILE
from chalicelib.deploy.vault_bucket import provision_vault
from tests.conftest import ACCOUNT, REGION
from tests.offsite_world import VAULT_ACCOUNT, VAULT_REGION, VAULT_ROLE_ARN, assumed_client, with_vaults


@pytest.fixture
def vaulted(backup_buckets: Any) -> Any:
    return with_vaults(backup_buckets, storage_class="DEEP_ARCHIVE")


def test_both_sides_are_provisioned_once_and_a_second_run_changes_nothing(s3: Any, vaulted: Any, monkeypatch: Any) -> None:
    monkeypatch.setenv("OFFSITE_ROLE_ARN", VAULT_ROLE_ARN)
    session = boto3.session.Session(region_name=REGION)
    assert provision_offsite(session, s3, vaulted, ACCOUNT, None) == 0
    vault = assumed_client("s3")
    iam = boto3.client("iam", region_name=REGION)
    for plan in vaulted.plans:
        bucket = plan.offsite.bucket
        assert vault.get_bucket_location(Bucket=bucket)["LocationConstraint"] == VAULT_REGION
        assert vault.get_bucket_versioning(Bucket=bucket)["Status"] == "Enabled"
        lock = vault.get_object_lock_configuration(Bucket=bucket)["ObjectLockConfiguration"]
        retention = lock["Rule"]["DefaultRetention"]
        assert (retention["Mode"], retention["Days"], retention.get("Years", 0)) == ("COMPLIANCE", plan.retention.horizon_days(), 0)
        assert all(vault.get_public_access_block(Bucket=bucket)["PublicAccessBlockConfiguration"].values())
        policy = json.loads(vault.get_bucket_policy(Bucket=bucket)["Policy"])
        allowed = [s for s in policy["Statement"] if s["Effect"] == "Allow"]
        assert {s["Principal"]["AWS"] for s in allowed} == {replication_role_arn(plan, ACCOUNT)}
        denied = {s["Sid"]: s for s in policy["Statement"] if s["Effect"] == "Deny"}
        assert denied["NoReplicatedDeletes"]["Action"] == "s3:ReplicateDelete"
        assert denied["OnlyTheReplicationRoleReplicates"]["Condition"] == {
            "StringNotEquals": {"aws:PrincipalArn": replication_role_arn(plan, ACCOUNT)}}
        # The source side: one enabled rule per replicated prefix, no delete markers, data in the vault's class.
        configuration = read_replication(s3, plan.bucket)
        assert configuration is not None and configuration["Role"] == replication_role_arn(plan, ACCOUNT)
        rules = {r["Filter"]["Prefix"]: r for r in configuration["Rules"]}
        assert set(rules) == {prefix for prefix, _ in REPLICATED_PREFIXES}
        assert {r["Status"] for r in rules.values()} == {"Enabled"}
        assert {r["DeleteMarkerReplication"]["Status"] for r in rules.values()} == {"Disabled"}
        assert rules["data/"]["Destination"] == {"Bucket": f"arn:aws:s3:::{bucket}", "StorageClass": "DEEP_ARCHIVE"}
        assert rules["meta/snapshots/"]["Destination"]["StorageClass"] == "STANDARD"
        trust = iam.get_role(RoleName=replication_role_name(plan))["Role"]["AssumeRolePolicyDocument"]
        assert trust["Statement"][0]["Principal"] == {"Service": "s3.amazonaws.com"}
        # Nothing of the vault is in the backup account.
        assert bucket not in {b["Name"] for b in s3.list_buckets()["Buckets"]}
    iam_role = vaulted.plans[0]
    assert provision_replication(iam, s3, iam_role, ACCOUNT) == []
    assert provision_vault(vault, iam_role, replication_role_arn(iam_role, ACCOUNT)) == []


def test_the_vaults_alone_are_provisioned_before_a_stack_that_carries_the_source_side(
    s3: Any, vaulted: Any, monkeypatch: Any
) -> None:
    monkeypatch.setenv("OFFSITE_ROLE_ARN", VAULT_ROLE_ARN)
    session = boto3.session.Session(region_name=REGION)
    assert provision_offsite(session, s3, vaulted, ACCOUNT, None, source_side=False) == 0
    vault = assumed_client("s3")
    iam = boto3.client("iam", region_name=REGION)
    for plan in vaulted.plans:
        # The vault lets in the role by its ARN; the role and the replication are left to the stack.
        policy = json.loads(vault.get_bucket_policy(Bucket=plan.offsite.bucket)["Policy"])
        assert {s["Principal"]["AWS"] for s in policy["Statement"] if s["Effect"] == "Allow"} == {replication_role_arn(plan, ACCOUNT)}
        assert read_replication(s3, plan.bucket) is None
        with pytest.raises(iam.exceptions.NoSuchEntityException):
            iam.get_role(RoleName=replication_role_name(plan))


def test_the_replication_role_may_read_its_bucket_and_write_its_vault_and_no_more(vaulted: Any) -> None:
    plan = vaulted.plans[0]
    statements = role_policy(plan)["Statement"]
    granted = {(action, resource) for s in statements for action in s["Action"]
               for resource in ([s["Resource"]] if isinstance(s["Resource"], str) else s["Resource"])}
    prefixes = [prefix for prefix, _ in REPLICATED_PREFIXES]
    expected = {("s3:GetReplicationConfiguration", f"arn:aws:s3:::{plan.bucket}"), ("s3:ListBucket", f"arn:aws:s3:::{plan.bucket}")}
    expected |= {(a, f"arn:aws:s3:::{plan.bucket}/{p}*") for p in prefixes
                 for a in ("s3:GetObjectVersionForReplication", "s3:GetObjectVersionAcl", "s3:GetObjectVersionTagging")}
    expected |= {(a, f"arn:aws:s3:::{plan.offsite.bucket}/{p}*") for p in prefixes for a in ("s3:ReplicateObject", "s3:ReplicateTags")}
    assert granted == expected
    assert all(s["Effect"] == "Allow" for s in statements)
    # A backup bucket with Object Lock: S3 reads each version's retention to replicate it.
    from chalicelib.plans import ObjectLock

    locked = role_policy(replace(plan, object_lock=ObjectLock("COMPLIANCE", 30)))["Statement"][1]["Action"]
    assert set(locked) - set(statements[1]["Action"]) == {"s3:GetObjectRetention", "s3:GetObjectLegalHold"}


def test_a_vault_without_object_lock_is_reported_and_left_alone(vaulted: Any) -> None:
    plan = vaulted.plans[0]
    vault = assumed_client("s3")
    vault.create_bucket(Bucket=plan.offsite.bucket, CreateBucketConfiguration={"LocationConstraint": VAULT_REGION})
    with pytest.raises(VaultError, match="exists without Object Lock; nothing was changed"):
        provision_vault(vault, plan, replication_role_arn(plan, ACCOUNT))
    assert vault.get_bucket_versioning(Bucket=plan.offsite.bucket).get("Status") is None


def test_provisioning_refuses_the_wrong_vault_credentials_and_a_vault_beside_the_stage(
    s3: Any, vaulted: Any, monkeypatch: Any, capsys: Any
) -> None:
    session = boto3.session.Session(region_name=REGION)
    assert provision_offsite(session, s3, vaulted, ACCOUNT, None) == 1
    assert "set OFFSITE_PROFILE" in capsys.readouterr().err
    monkeypatch.setenv("OFFSITE_ROLE_ARN", "arn:aws:iam::111122223333:role/vault-admin")
    assert provision_offsite(session, s3, vaulted, ACCOUNT, None) == 1
    assert f"the vault credentials are account 111122223333's, the plan's vault is in {VAULT_ACCOUNT}" in capsys.readouterr().err
    vault_session = boto3.session.Session(region_name=VAULT_REGION)
    assert provision_offsite(vault_session, s3, vaulted, VAULT_ACCOUNT, None) == 1
    assert "in the stage's own account" in capsys.readouterr().err
    assert read_replication(s3, vaulted.plans[0].bucket) is None


def test_the_backup_reports_replication_that_no_longer_reaches_the_vault(
    app_client: Any, s3: Any, sources: Any, stage_env: Any, tmp_path: Any, monkeypatch: Any, backup_buckets: Any,
) -> None:
    """Drift after a backup: a rule disabled, and the storage class changed, each named; the plan is PARTIAL."""
    from chalicelib.deploy.offsite import replication_configuration, replication_drift

    plan = with_vaults(backup_buckets, storage_class="DEEP_ARCHIVE").plans[0]
    configuration = replication_configuration(plan, ACCOUNT)
    s3.put_bucket_replication(Bucket=plan.bucket, ReplicationConfiguration=configuration)
    assert replication_drift(s3, plan, ACCOUNT) == []
    configuration["Rules"][1]["Status"] = "Disabled"
    configuration["Rules"][0]["Destination"]["StorageClass"] = "STANDARD"
    s3.put_bucket_replication(Bucket=plan.bucket, ReplicationConfiguration=configuration)
    assert replication_drift(s3, plan, ACCOUNT) == [
        f"bucket {plan.bucket}: the rule replicating data/ writes replicas in STANDARD, not DEEP_ARCHIVE",
        f"bucket {plan.bucket}: the rule replicating meta/snapshots/ is Disabled: nothing there reaches the vault",
    ]
    assert replication_drift(s3, replace(plan, bucket="test-backup-photos"), None) == [
        "bucket test-backup-photos: has no replication configuration: nothing reaches the vault test-backup-documents-vault"]
    # Through a backup: the stage's plans file with the vault; the backup function reads the rules.
    path = tmp_path / "plans.json"
    document = json.loads(DEFAULT_PLANS_FILE.read_text())
    document["plans"][0]["offsite"] = {"account": VAULT_ACCOUNT, "region": VAULT_REGION, "bucket": plan.offsite.bucket,
                                       "storage_class": "DEEP_ARCHIVE", "object_lock_days": 2576}
    path.write_text(json.dumps(document))
    stage_env["PLANS_FILE"] = str(path)
    project = json.loads((tmp_path / "project" / ".chalice" / "config.json").read_text())
    project["stages"]["local"]["environment_variables"] = stage_env
    (tmp_path / "project" / ".chalice" / "config.json").write_text(json.dumps(project))
    response = app_client.http.post("/backup", headers={"Content-Type": "application/json"}, body=json.dumps({"plans": ["documents"]}))
    record = app_client.http.get(f"/backups/{response.json_body['backup_id']}").json_body
    assert record["plans"]["documents"]["status"] == "PARTIAL"
    assert [line for line in record["plans"]["documents"]["drift"] if "replicat" in line] == replication_drift(s3, plan, ACCOUNT)


def test_the_vaults_drift_is_named_with_the_vault_accounts_credentials(vaulted: Any) -> None:
    from chalicelib.deploy.vault_bucket import vault_drift

    plan = vaulted.plans[0]
    vault = assumed_client("s3")
    role = replication_role_arn(plan, ACCOUNT)
    assert vault_drift(vault, plan, role) == [f"vault {plan.offsite.bucket}: does not exist: nothing is replicated"]
    provision_vault(vault, plan, role)
    assert vault_drift(vault, plan, role) == vault_drift(vault, plan) == []
    vault.put_object_lock_configuration(Bucket=plan.offsite.bucket, ObjectLockConfiguration={
        "ObjectLockEnabled": "Enabled", "Rule": {"DefaultRetention": {"Mode": "GOVERNANCE", "Days": 30}}})
    vault.delete_bucket_policy(Bucket=plan.offsite.bucket)
    assert vault_drift(vault, plan, role) == [
        f"vault {plan.offsite.bucket}: its default retention is GOVERNANCE for 30 days and 0 years, not COMPLIANCE for 2576 days",
        f"vault {plan.offsite.bucket}: its policy is not the one provisioned (it may let in more than the replication role)",
    ]
    # A vault made without Object Lock.
    other = replace(plan, offsite=replace(plan.offsite, bucket="unlocked-vault"))
    vault.create_bucket(Bucket="unlocked-vault", CreateBucketConfiguration={"LocationConstraint": VAULT_REGION})
    assert "vault unlocked-vault: has no Object Lock: whoever holds the vault account can delete every replica" in vault_drift(vault, other)


def test_a_vault_name_another_account_owns_is_reported(s3: Any, vaulted: Any, monkeypatch: Any, capsys: Any) -> None:
    monkeypatch.setenv("OFFSITE_ROLE_ARN", VAULT_ROLE_ARN)
    stranger = assumed_client("s3", account="111122223333")
    stranger.create_bucket(Bucket=vaulted.plans[0].offsite.bucket, CreateBucketConfiguration={"LocationConstraint": VAULT_REGION})
    assert provision_offsite(boto3.session.Session(region_name=REGION), s3, vaulted, ACCOUNT, None) == 1
    assert f"vault {vaulted.plans[0].offsite.bucket} (plan documents): " in capsys.readouterr().err
    # Nothing is replicated towards a bucket the vault account does not own.
    assert read_replication(s3, vaulted.plans[0].bucket) is None


def test_replication_time_control_is_the_plans_setting_provisioned_packaged_and_checked(
    s3: Any, vaulted: Any, stage_env: dict[str, str],
) -> None:
    from chalicelib.deploy.offsite import replication_configuration, replication_drift, rtc_destination
    from chalicelib.deploy.template import replication_resources
    from chalicelib.errors import PlanError
    from chalicelib.plans_file import parse_plans

    plan = vaulted.plans[0]
    assert plan.offsite is not None and plan.offsite.rtc is False
    fast = replace(plan, offsite=replace(plan.offsite, rtc=True))
    # As S3 requires: RTC and its metrics together, 15 minutes each (the one value it takes); off, neither is
    # sent (metrics with a threshold but no RTC are refused).
    both = {"ReplicationTime": {"Status": "Enabled", "Time": {"Minutes": 15}},
            "Metrics": {"Status": "Enabled", "EventThreshold": {"Minutes": 15}}}
    assert rtc_destination(True) == both and rtc_destination(False) == {}
    for rule in replication_configuration(fast, ACCOUNT)["Rules"]:
        assert {k: rule["Destination"][k] for k in both} == both
    assert all(not set(both) & set(r["Destination"]) for r in replication_configuration(plan, ACCOUNT)["Rules"])
    # The template carries what make provision sets.
    packaged, _ = replication_resources(fast)
    assert all({k: r["Destination"][k] for k in both} == both for r in packaged["Rules"])

    iam = boto3.client("iam", region_name=REGION)
    assert provision_replication(iam, s3, fast, ACCOUNT)  # made
    assert provision_replication(iam, s3, fast, ACCOUNT) == []  # read back as written: nothing to change
    assert replication_drift(s3, fast, ACCOUNT) == []
    # The plan says off, the bucket says on: drift, one line per rule.
    found = replication_drift(s3, plan, ACCOUNT)
    assert len(found) == len(REPLICATED_PREFIXES) and found[0].endswith(
        "has Replication Time Control on (15 minutes, metrics Enabled at 15 minutes), not off as the plan says"), found
    assert provision_replication(iam, s3, plan, ACCOUNT) == [f"set replication into the vault {plan.offsite.bucket}"]
    assert replication_drift(s3, plan, ACCOUNT) == []

    # The plans file: `offsite.rtc`, true or false (default false).
    document = json.loads(DEFAULT_PLANS_FILE.read_text())
    offsite = {"account": "210987654321", "region": "eu-central-1", "bucket": "vault-of-documents", "object_lock_days": 2576}
    document["plans"] = [{**document["plans"][0], "offsite": {**offsite, "rtc": True}}]
    assert parse_plans(document, stage_env).plans[0].offsite.rtc is True
    document["plans"][0]["offsite"]["rtc"] = "yes"
    with pytest.raises(PlanError, match="'rtc'"):
        parse_plans(document, stage_env)
