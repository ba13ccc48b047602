"""The S3 Inventory as deployed: provisioning the inventory bucket and each backup bucket's configuration
(idempotent, conflicts named, forced on request), and drift detection of both."""

from __future__ import annotations

import json
from typing import Any

import pytest

from chalicelib.deploy import inventory_bucket as inv
from chalicelib.deploy.bucket_settings import PUBLIC_ACCESS_BLOCK, TLS_STATEMENT_SID, BucketConflict
from chalicelib.deploy.drift import find_drift
from chalicelib.inventory import configuration as conf
from tests.conftest import ACCOUNT

CONFIG_ID = conf.DEFAULT_CONFIGURATION_ID


def _policy(s3: Any, bucket: str) -> dict[str, Any]:
    return json.loads(s3.get_bucket_policy(Bucket=bucket)["Policy"])


@pytest.fixture
def photos_without_inventory(s3: Any, plans: Any) -> Any:
    """Every backup bucket provisioned, the photos bucket without its inventory configuration. (moto has no
    DeleteBucketInventoryConfiguration: it takes the request for a DeleteBucket, and deletes an empty bucket.)"""
    from chalicelib.deploy.provision import provision

    for plan in plans.plans:
        provision(s3, plan)
    inv.provision_inventory(s3, plans, ACCOUNT, ["documents", "database"])
    return plans


def _drift(s3: Any, plans: Any, account: str | None = ACCOUNT) -> list[str]:
    return [line for plan in plans.plans for line in find_drift(s3, plan, plans, account)]


def test_provisioning_creates_a_private_encrypted_bucket_only_s3_writes_to(s3: Any, backup_buckets: Any) -> None:
    inventory = backup_buckets.inventory
    assert inventory is not None and inventory.bucket == "test-backup-inventory" and inventory.frequency == "Weekly"
    bucket = inventory.bucket
    assert s3.get_public_access_block(Bucket=bucket)["PublicAccessBlockConfiguration"] == PUBLIC_ACCESS_BLOCK
    assert s3.get_bucket_ownership_controls(Bucket=bucket)["OwnershipControls"]["Rules"] == [{"ObjectOwnership": "BucketOwnerEnforced"}]
    (rule,) = s3.get_bucket_encryption(Bucket=bucket)["ServerSideEncryptionConfiguration"]["Rules"]
    assert rule["ApplyServerSideEncryptionByDefault"]["SSEAlgorithm"] == "AES256"
    (expiry,) = s3.get_bucket_lifecycle_configuration(Bucket=bucket)["Rules"]
    # The newest two weekly reports: the older is at most 14 days old, plus S3's 48 hours to deliver.
    assert expiry["Filter"] == {"Prefix": "inventory/"} and expiry["Expiration"]["Days"] >= 14 + 2
    statements = {s["Sid"]: s for s in _policy(s3, bucket)["Statement"]}
    assert set(statements) == {TLS_STATEMENT_SID, "InventoryReportsFromS3", "InventoryReportsOnlyFromS3"}
    allow = statements["InventoryReportsFromS3"]
    assert allow["Principal"] == {"Service": "s3.amazonaws.com"} and allow["Resource"] == f"arn:aws:s3:::{bucket}/inventory/*"
    assert allow["Condition"]["ArnLike"]["aws:SourceArn"] == sorted(f"arn:aws:s3:::{p.bucket}" for p in backup_buckets.plans)
    assert allow["Condition"]["StringEquals"]["aws:SourceAccount"] == ACCOUNT
    assert statements["InventoryReportsOnlyFromS3"]["Effect"] == "Deny"


def test_every_backup_bucket_reports_every_version_there(s3: Any, backup_buckets: Any) -> None:
    wanted = inv.configuration(backup_buckets.inventory, ACCOUNT)
    for plan in backup_buckets.plans:
        stored = s3.get_bucket_inventory_configuration(Bucket=plan.bucket, Id=CONFIG_ID)["InventoryConfiguration"]
        assert stored["IncludedObjectVersions"] == "All" and stored["Schedule"] == {"Frequency": "Weekly"}
        target = stored["Destination"]["S3BucketDestination"]
        assert (target["Bucket"], target["AccountId"], target["Prefix"]) == ("arn:aws:s3:::test-backup-inventory", ACCOUNT, "inventory")
        assert set(stored["OptionalFields"]) == set(wanted["OptionalFields"])


def test_provisioning_again_changes_nothing(s3: Any, backup_buckets: Any) -> None:
    assert inv.provision_inventory(s3, backup_buckets, ACCOUNT) == []
    assert _drift(s3, backup_buckets) == []


def test_plans_without_an_inventory_provision_nothing(s3: Any, plans: Any) -> None:
    from dataclasses import replace

    assert inv.provision_inventory(s3, replace(plans, inventory=None), ACCOUNT) == []
    assert "test-backup-inventory" not in {b["Name"] for b in s3.list_buckets()["Buckets"]}


def test_settings_changed_by_hand_are_a_conflict_until_forced(s3: Any, backup_buckets: Any) -> None:
    bucket = backup_buckets.inventory.bucket
    s3.put_bucket_lifecycle_configuration(
        Bucket=bucket, LifecycleConfiguration={"Rules": [{"ID": "keep", "Filter": {"Prefix": ""}, "Status": "Enabled", "Expiration": {"Days": 2}}]}
    )
    documents = backup_buckets.get("documents").bucket
    daily = inv.configuration(backup_buckets.inventory, ACCOUNT) | {"Schedule": {"Frequency": "Daily"}}
    s3.put_bucket_inventory_configuration(Bucket=documents, Id=CONFIG_ID, InventoryConfiguration=daily)
    with pytest.raises(BucketConflict) as raised:
        inv.provision_inventory(s3, backup_buckets, ACCOUNT)
    assert any("lifecycle rules differ" in line for line in raised.value.differences)
    assert any(line.startswith(f"bucket {documents}: inventory Schedule.Frequency is 'Daily'") for line in raised.value.differences)
    assert s3.get_bucket_lifecycle_configuration(Bucket=bucket)["Rules"][0]["ID"] == "keep"
    changes = inv.provision_inventory(s3, backup_buckets, ACCOUNT, force=True)
    assert f"put inventory configuration {CONFIG_ID} (Weekly) on {documents}" in changes
    assert any("expire after" in change for change in changes)
    assert inv.provision_inventory(s3, backup_buckets, ACCOUNT) == []


def test_a_removed_policy_statement_is_put_back_beside_the_others(s3: Any, backup_buckets: Any) -> None:
    bucket = backup_buckets.inventory.bucket
    policy = _policy(s3, bucket)
    other = {"Sid": "Auditors", "Effect": "Deny", "Principal": "*", "Action": "s3:DeleteBucket", "Resource": f"arn:aws:s3:::{bucket}"}
    policy["Statement"] = [s for s in policy["Statement"] if s["Sid"] != "InventoryReportsOnlyFromS3"] + [other]
    s3.put_bucket_policy(Bucket=bucket, Policy=json.dumps(policy))
    assert inv.provision_inventory(s3, backup_buckets, ACCOUNT) == [
        "set the inventory bucket's policy: TLS only, reports written by S3 alone"
    ]
    sids = {s["Sid"] for s in _policy(s3, bucket)["Statement"]}
    assert {"Auditors", "InventoryReportsOnlyFromS3"} <= sids


# Drift ------------------------------------------------------------------------------------------------


def test_a_missing_or_changed_configuration_is_drift(s3: Any, photos_without_inventory: Any) -> None:
    plans = photos_without_inventory
    documents = plans.get("documents").bucket
    photos = plans.get("photos").bucket
    # (moto answers IncludedObjectVersions 'All' whatever was stored: `differences` itself is tested on it.)
    daily = inv.configuration(plans.inventory, ACCOUNT) | {"Schedule": {"Frequency": "Daily"}}
    s3.put_bucket_inventory_configuration(Bucket=documents, Id=CONFIG_ID, InventoryConfiguration=daily)
    assert _drift(s3, plans) == [
        f"bucket {documents}: Schedule.Frequency is 'Daily', should be 'Weekly'",
        f"bucket {photos}: inventory configuration '{CONFIG_ID}' is missing",
    ]
    assert f"put inventory configuration {CONFIG_ID} (Weekly) on {photos}" in inv.provision_inventory(s3, plans, ACCOUNT, force=True)
    assert _drift(s3, plans) == []


def test_reports_no_longer_limited_to_s3_are_drift(s3: Any, backup_buckets: Any) -> None:
    bucket = backup_buckets.inventory.bucket
    policy = _policy(s3, bucket)
    for statement in policy["Statement"]:
        if statement["Sid"] == "InventoryReportsOnlyFromS3":
            statement["Condition"] = {"Bool": {"aws:PrincipalIsAWSService": "true"}}
    policy["Statement"] = [s for s in policy["Statement"] if s["Sid"] != TLS_STATEMENT_SID]
    s3.put_bucket_policy(Bucket=bucket, Policy=json.dumps(policy))
    found = find_drift(s3, backup_buckets.get("database"), backup_buckets, ACCOUNT)
    assert found == [
        f"inventory bucket {bucket}: the bucket policy no longer denies requests without TLS",
        f"inventory bucket {bucket}: policy statement InventoryReportsOnlyFromS3 was changed: reports are no longer "
        "limited to S3's own writes",
    ]
    s3.delete_bucket_policy(Bucket=bucket)
    assert find_drift(s3, backup_buckets.get("database"), backup_buckets, None) == [
        f"inventory bucket {bucket} has no bucket policy: reports are not limited to S3's own writes"
    ]


def test_without_a_known_account_the_provisioned_one_is_taken_and_other_drift_still_shows(s3: Any, backup_buckets: Any) -> None:
    assert _drift(s3, backup_buckets, account=None) == []
    documents = backup_buckets.get("documents").bucket
    filtered = inv.configuration(backup_buckets.inventory, ACCOUNT) | {"Filter": {"Prefix": "data/"}}
    s3.put_bucket_inventory_configuration(Bucket=documents, Id=CONFIG_ID, InventoryConfiguration=filtered)
    assert _drift(s3, backup_buckets, account=None) == [
        f"bucket {documents}: Filter {{'Prefix': 'data/'}} leaves versions out of the reports, should be none"
    ]
    assert f"bucket {documents}: Destination.AccountId is '{ACCOUNT}', should be '210987654321'" in _drift(
        s3, backup_buckets, account="210987654321"
    )


def test_reports_encryption_is_what_s3_applies(s3: Any, backup_buckets: Any) -> None:
    # moto answers an SSE-S3 configuration with an empty Encryption (and CloudFormation cannot state one):
    # the reports then get the destination bucket's default, SSE-S3, as wanted.
    documents = backup_buckets.get("documents").bucket
    stored = s3.get_bucket_inventory_configuration(Bucket=documents, Id=CONFIG_ID)["InventoryConfiguration"]
    assert "SSES3" not in stored["Destination"]["S3BucketDestination"].get("Encryption", {})
    assert _drift(s3, backup_buckets) == []
    # A default moved to a KMS key changes what the reports get: drift, on every backup bucket.
    key = "arn:aws:kms:us-east-1:123456789012:key/other"
    rule = {"ApplyServerSideEncryptionByDefault": {"SSEAlgorithm": "aws:kms", "KMSMasterKeyID": key}}
    s3.put_bucket_encryption(Bucket=backup_buckets.inventory.bucket, ServerSideEncryptionConfiguration={"Rules": [rule]})
    found = _drift(s3, backup_buckets)
    assert found == [
        f"bucket {p.bucket}: Destination.Encryption is 'SSE-KMS {key}', should be 'SSE-S3'" for p in backup_buckets.plans
    ]
    # A configuration that names its own encryption is taken as it is.
    target = inv.configuration(backup_buckets.inventory, ACCOUNT)
    target["Destination"]["S3BucketDestination"]["Encryption"] = {"SSEKMS": {"KeyId": key}}
    assert inv.configuration_differences(target, backup_buckets.inventory, ACCOUNT, None) == [
        f"Destination.Encryption is 'SSE-KMS {key}', should be 'SSE-S3'"
    ]


def test_a_backup_reports_inventory_drift(app_client: Any, photos_without_inventory: Any, sources: Any, topic_queue: str) -> None:
    photos = photos_without_inventory.get("photos").bucket
    response = app_client.http.post("/backup", headers={"Content-Type": "application/json"}, body=b"{}")
    backup_id = json.loads(response.body)["backup_id"]
    record = json.loads(app_client.http.get(f"/backups/{backup_id}").body)
    assert {name: result["status"] for name, result in record["plans"].items()} == {
        "documents": "SUCCEEDED",
        "photos": "PARTIAL",
        "database": "SUCCEEDED",
    }
    assert record["plans"]["photos"]["drift"] == [f"bucket {photos}: inventory configuration '{CONFIG_ID}' is missing"]


def test_a_removed_public_access_block_is_put_back_without_forcing(s3: Any, backup_buckets: Any) -> None:
    s3.delete_public_access_block(Bucket=backup_buckets.inventory.bucket)
    assert inv.provision_inventory(s3, backup_buckets, ACCOUNT) == ["blocked all public access to the inventory bucket"]


def test_a_bucket_dropped_from_the_plans_may_still_be_admitted_but_a_new_one_must_be(s3: Any, backup_buckets: Any) -> None:
    from dataclasses import replace

    shrunk = replace(backup_buckets, plans=backup_buckets.plans[1:])
    assert [line for plan in shrunk.plans for line in find_drift(s3, plan, shrunk, ACCOUNT)] == []
    grown = replace(backup_buckets, plans=(*backup_buckets.plans, replace(backup_buckets.plans[0], name="more", bucket="test-backup-more")))
    assert inv.policy_differences(grown, _policy(s3, backup_buckets.inventory.bucket), ACCOUNT) == [
        "inventory bucket test-backup-inventory: policy statement InventoryReportsFromS3 was changed: S3 may no "
        "longer deliver every backup bucket's reports, or may deliver others'"
    ]
