"""The vault's own retention: a lifecycle rule of the vault account expires a version once it has been replaced
for longer than the plan's retention horizon, and never sooner than its lock; `verify --from offsite`'s vault
drift names a rule removed or changed. No role of the backup account (the functions', the replication role, its
administrators) may delete, expire or unlock anything there: neither their own policies nor the vault's bucket
policy let them, evaluated with `permissions.allows` and `permissions.admits`."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from chalicelib.config import Settings
from chalicelib.deploy.offsite import replication_role_arn, restore_reader_arns, role_policy
from chalicelib.deploy.permissions import admits, allows, required_permissions
from chalicelib.deploy.policy import FUNCTIONS, generate, settings_scope
from chalicelib.deploy.vault_bucket import provision_vault, vault_drift, vault_expiration_days, vault_policy
from chalicelib.plans import PlanSet
from chalicelib.stages import stage_environment
from tests.conftest import ACCOUNT, ROOT
from tests.offsite_world import VAULT_ACCOUNT, assumed_client, with_vaults

VAULT_PLANS = ROOT / "scripts" / "plans-with-vault.json"


@pytest.fixture
def vaulted(backup_buckets: PlanSet) -> PlanSet:
    return with_vaults(backup_buckets)


def test_replaced_versions_expire_in_the_vault_after_the_horizon_and_a_changed_rule_is_drift(vaulted: PlanSet) -> None:
    vault = assumed_client("s3")
    for plan in vaulted.plans:
        assert plan.offsite is not None
        role_arn = replication_role_arn(plan, ACCOUNT)
        assert any("lifecycle" in change for change in provision_vault(vault, plan, role_arn))
        assert provision_vault(vault, plan, role_arn) == []  # a second run changes nothing
        rules = vault.get_bucket_lifecycle_configuration(Bucket=plan.offsite.bucket)["Rules"]
        assert len(rules) == 1 and "Expiration" not in rules[0] and "Transitions" not in rules[0], rules
        days = rules[0]["NoncurrentVersionExpiration"]["NoncurrentDays"]
        assert days == vault_expiration_days(plan)
        # Longer than any kept snapshot's age, and no shorter than the lock (S3 expires no locked version).
        assert days > plan.retention.horizon_days() and days >= plan.offsite.object_lock_days
        assert vault_drift(vault, plan, role_arn) == []

    plan = vaulted.get("documents")
    assert plan.offsite is not None
    role_arn = replication_role_arn(plan, ACCOUNT)
    sooner = {"ID": "tidy", "Status": "Enabled", "Filter": {"Prefix": ""}, "NoncurrentVersionExpiration": {"NoncurrentDays": 30}}
    vault.put_bucket_lifecycle_configuration(Bucket=plan.offsite.bucket, LifecycleConfiguration={"Rules": [sooner]})
    [line] = vault_drift(vault, plan, role_arn)
    assert "lifecycle rules are not the provisioned ones" in line and "after 30 days" in line, line
    vault.delete_bucket_lifecycle(Bucket=plan.offsite.bucket)
    assert vault_drift(vault, plan, role_arn) == [f"vault {plan.offsite.bucket}: has no lifecycle rule: nothing expires there, "
                                                   "storage grows with every version replaced"]
    assert provision_vault(vault, plan, role_arn) == [f"set its lifecycle: replaced versions expire after {vault_expiration_days(plan)} days"]
    assert vault_drift(vault, plan, role_arn) == []


def test_the_vault_expiry_outlasts_a_lock_longer_than_the_horizon(vaulted: PlanSet) -> None:
    from dataclasses import replace

    plan = vaulted.get("database")
    assert plan.offsite is not None
    longer = replace(plan, offsite=replace(plan.offsite, object_lock_days=plan.retention.horizon_days() + 100))
    assert vault_expiration_days(longer) == plan.retention.horizon_days() + 100
    assert vault_expiration_days(plan) == plan.retention.horizon_days() + 1


# --- what the backup account may do to the vault ---------------------------------------------------------


def vault_attacks(bucket: str) -> dict[str, tuple[str, dict[str, Any]]]:
    """The calls that would remove, expire or unlock the vault's versions, or open the vault to do so."""
    key = "data/documents/README.txt"
    return {
        "delete a version": ("DeleteObject", {"Bucket": bucket, "Key": key, "VersionId": "v1"}),
        "hide a version behind a delete marker": ("DeleteObject", {"Bucket": bucket, "Key": key}),
        "delete versions in bulk": ("DeleteObjects", {"Bucket": bucket, "Delete": {"Objects": [{"Key": key, "VersionId": "v1"}]}}),
        "expire everything by lifecycle": ("PutBucketLifecycleConfiguration", {"Bucket": bucket, "LifecycleConfiguration": {"Rules": []}}),
        "remove the vault's lifecycle": ("DeleteBucketLifecycle", {"Bucket": bucket}),
        "shorten a version's lock": ("PutObjectRetention", {"Bucket": bucket, "Key": key, "VersionId": "v1", "Retention": {}}),
        "bypass a lock": ("DeleteObject", {"Bucket": bucket, "Key": key, "VersionId": "v1", "BypassGovernanceRetention": True}),
        "change the default lock": ("PutObjectLockConfiguration", {"Bucket": bucket}),
        "suspend versioning": ("PutBucketVersioning", {"Bucket": bucket}),
        "rewrite the bucket policy": ("PutBucketPolicy", {"Bucket": bucket, "Policy": "{}"}),
        "remove the bucket policy": ("DeleteBucketPolicy", {"Bucket": bucket}),
        "delete the vault": ("DeleteBucket", {"Bucket": bucket}),
        # What the vault's own prune does (org-backup prune --from offsite), which only the vault account may.
        "prune a replicated manifest": ("DeleteObject", {"Bucket": bucket, "Key": "meta/snapshots/documents/b.jsonl.gz", "VersionId": "v1"}),
        "prune what the source deleted": ("DeleteObjects", {"Bucket": bucket, "Delete": {"Objects": [
            {"Key": "data/documents/gone.txt", "VersionId": "v1"}, {"Key": "meta/sealed/backups/b.json", "VersionId": "v2"}]}}),
    }


@pytest.fixture(scope="module")
def vault_stage() -> tuple[Settings, dict[str, dict[str, Any]]]:
    """The dev stage with the local stack's vault plans, and its functions' generated policies."""
    settings = Settings.from_environ({**stage_environment("dev", ROOT), "PLANS_FILE": str(Path(VAULT_PLANS))})
    scope = settings_scope("org-backup", "dev", settings)
    return settings, {function: generate(scope, function) for function in FUNCTIONS}


def test_no_role_of_the_backup_account_may_delete_or_expire_anything_in_the_vault(
    vault_stage: tuple[Settings, dict[str, dict[str, Any]]],
) -> None:
    settings, policies = vault_stage
    account = settings.account
    assert account is not None and account != VAULT_ACCOUNT
    for plan in settings.plans.plans:
        assert plan.offsite is not None
        replication_role = replication_role_arn(plan, account)
        identities = {**{f"the {function} function": policy for function, policy in policies.items()},
                      "the replication role": role_policy(plan)}
        # As provisioned: the stage's restore functions may read and thaw there (and nothing more).
        readers = restore_reader_arns(account, "org-backup", "dev")
        bucket_policy = vault_policy(plan, replication_role, readers)
        # The vault's policy with a careless grant of everything added: its deny still holds for the backup account.
        careless = {**bucket_policy, "Statement": [*bucket_policy["Statement"], {
            "Effect": "Allow", "Principal": {"AWS": "*"}, "Action": "s3:*", "Resource": ["*"]}]}
        principals = [replication_role, f"arn:aws:iam::{account}:root",
                      *(f"arn:aws:iam::{account}:role/org-backup-dev-{function}" for function in FUNCTIONS)]
        for attack, (operation, params) in vault_attacks(plan.offsite.bucket).items():
            permissions = required_permissions("s3", operation, params, "us-east-1", account)
            for who, policy in identities.items():
                assert not all(allows(policy, p) for p in permissions), f"{who} may {attack} in {plan.offsite.bucket}"
            for principal in principals:
                for policy in (bucket_policy, careless):
                    assert not all(admits(policy, principal, p) for p in permissions), f"{principal} may {attack}"
        # Nor may they record a prune there: the vault's policy lets no principal of theirs write.
        for key in ("meta/pruned/1_b/documents.json", "meta/prunes/1_p.json", "meta/locks/prune/documents.json"):
            write = required_permissions("s3", "PutObject", {"Bucket": plan.offsite.bucket, "Key": key}, "us-east-1", account)
            assert not any(all(allows(policy, p) for p in write) for policy in identities.values()), key
            assert not any(all(admits(bucket_policy, principal, p) for p in write) for principal in principals), key

        # The evaluation can say yes: the replication role writes replicas, and the vault account's own
        # principals are not caught by the deny.
        replicate = required_permissions("s3", "ReplicateObject", {"Bucket": plan.offsite.bucket, "Key": "data/x"}, "us-east-1", account)
        assert all(admits(bucket_policy, replication_role, p) for p in replicate)
        assert all(allows(role_policy(plan), p) for p in replicate)
        expire = required_permissions("s3", "PutBucketLifecycleConfiguration", {"Bucket": plan.offsite.bucket}, "eu-central-1", VAULT_ACCOUNT)
        assert all(admits(careless, f"arn:aws:iam::{VAULT_ACCOUNT}:role/vault-admin", p) for p in expire)
