"""Provisioning the backup buckets: every protective setting, idempotent, and never silently overriding
an existing bucket's different choices."""

from __future__ import annotations

import dataclasses
import json
from typing import Any

import pytest

from chalicelib.deploy.bucket_differences import denies_insecure_transport, differences
from chalicelib.deploy.bucket_settings import (
    PUBLIC_ACCESS_BLOCK,
    BucketConflict,
    create_only_statements,
    lifecycle_rules,
)
from chalicelib.deploy.bucket_state import read_state
from chalicelib.deploy.provision import main, provision
from chalicelib.plans_file import parse_plans


def make_plan(**overrides: Any) -> Any:
    plan = {
        "name": "vault",
        "bucket": "test-vault-backup",
        "sources": [{"type": "s3", "name": "files", "bucket": "test-vault-source"}],
        "lifecycle": {"transitions": [{"days": 30, "storage_class": "GLACIER"}, {"days": 180, "storage_class": "DEEP_ARCHIVE"}]},
    }
    plan.update(overrides)
    return parse_plans({"version": 1, "plans": [plan]}, {}).plans[0]


def test_new_bucket_gets_every_setting(s3: Any, plans: Any) -> None:
    plan = plans.get("documents")
    changes = provision(s3, plan)
    assert changes[0] == "created bucket"
    bucket = plan.bucket
    assert s3.get_bucket_versioning(Bucket=bucket)["Status"] == "Enabled"
    rules = s3.get_bucket_lifecycle_configuration(Bucket=bucket)["Rules"]
    assert len(rules) == 2
    rule, manifests = rules
    # The kept manifests over 128 KB move to GLACIER_IR (the shipped plans' 10 days); nothing else under meta/.
    assert manifests == {
        "ID": "documents-manifest-tiering",
        "Filter": {"And": {"Prefix": "meta/snapshots/documents/", "ObjectSizeGreaterThan": 131072}},
        "Status": "Enabled",
        "Transitions": [{"Days": 10, "StorageClass": "GLACIER_IR"}],
    }
    assert rule["Filter"] == {"Prefix": "data/"} and rule["Status"] == "Enabled"
    assert rule["Transitions"] == [{"Days": 30, "StorageClass": "GLACIER"}, {"Days": 180, "StorageClass": "DEEP_ARCHIVE"}]
    assert rule["NoncurrentVersionTransitions"] == [
        {"NoncurrentDays": 30, "StorageClass": "GLACIER"},
        {"NoncurrentDays": 180, "StorageClass": "DEEP_ARCHIVE"},
    ]
    assert rule["AbortIncompleteMultipartUpload"] == {"DaysAfterInitiation": 7}
    assert "NoncurrentVersionExpiration" not in rule
    encryption = s3.get_bucket_encryption(Bucket=bucket)["ServerSideEncryptionConfiguration"]["Rules"][0]
    assert encryption["ApplyServerSideEncryptionByDefault"]["SSEAlgorithm"] == "AES256"
    assert s3.get_public_access_block(Bucket=bucket)["PublicAccessBlockConfiguration"] == PUBLIC_ACCESS_BLOCK
    ownership = s3.get_bucket_ownership_controls(Bucket=bucket)["OwnershipControls"]["Rules"]
    assert ownership == [{"ObjectOwnership": "BucketOwnerEnforced"}]
    policy = json.loads(s3.get_bucket_policy(Bucket=bucket)["Policy"])
    assert denies_insecure_transport(policy, bucket)
    statement, *create_only = policy["Statement"]
    assert statement["Effect"] == "Deny" and statement["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}
    assert sorted(statement["Resource"]) == [f"arn:aws:s3:::{bucket}", f"arn:aws:s3:::{bucket}/*"]
    # Manifests, sealed records and tampering markers: created once, never replaced or hidden.
    assert create_only == create_only_statements(bucket)


@pytest.mark.parametrize(
    "small_objects, setting", [("standard", "all_storage_classes_128K"), ("archive", "varies_by_storage_class")]
)
def test_the_small_objects_choice_is_set_explicitly_and_provisioning_puts_it_back(s3: Any, small_objects: str, setting: str) -> None:
    transitions = [{"days": 30, "storage_class": "GLACIER"}, {"days": 180, "storage_class": "DEEP_ARCHIVE"}]
    plan = make_plan(lifecycle={"transitions": transitions, "small_objects": small_objects})
    calls: list[dict[str, Any]] = []
    s3.meta.events.register("before-call.s3.PutBucketLifecycleConfiguration", lambda params, **_: calls.append(params))
    changes = provision(s3, plan)
    # Sent with the request, never left to S3's default.
    assert calls[0]["headers"]["x-amz-transition-default-minimum-object-size"] == setting
    assert f"set lifecycle rules (objects under 128 KB: {setting})" in changes
    assert s3.get_bucket_lifecycle_configuration(Bucket=plan.bucket)["TransitionDefaultMinimumObjectSize"] == setting
    assert read_state(s3, plan.bucket).transition_default_minimum_object_size == setting
    assert provision(s3, plan) == []
    # Someone changes it: a conflict naming both values, put back only when forced.
    other = "varies_by_storage_class" if setting == "all_storage_classes_128K" else "all_storage_classes_128K"
    s3.put_bucket_lifecycle_configuration(
        Bucket=plan.bucket, LifecycleConfiguration={"Rules": lifecycle_rules(plan)}, TransitionDefaultMinimumObjectSize=other
    )
    with pytest.raises(BucketConflict, match=f"TransitionDefaultMinimumObjectSize is {other}, plan wants {setting}"):
        provision(s3, plan)
    provision(s3, plan, force=True)
    assert s3.get_bucket_lifecycle_configuration(Bucket=plan.bucket)["TransitionDefaultMinimumObjectSize"] == setting


def test_database_plan_has_its_own_days(s3: Any, plans: Any) -> None:
    plan = plans.get("database")
    provision(s3, plan)
    rule, manifests = s3.get_bucket_lifecycle_configuration(Bucket=plan.bucket)["Rules"]
    assert rule["Transitions"] == [{"Days": 7, "StorageClass": "GLACIER"}]
    assert rule["NoncurrentVersionTransitions"] == [{"NoncurrentDays": 7, "StorageClass": "GLACIER"}]
    assert manifests["Filter"]["And"]["Prefix"] == "meta/snapshots/database/"


def test_a_plan_that_keeps_its_manifests_in_standard_gets_no_manifest_rule_and_a_changed_day_is_drift(s3: Any) -> None:
    plan = make_plan()
    assert plan.lifecycle.manifest_glacier_ir_days is None
    provision(s3, plan)
    (rule,) = s3.get_bucket_lifecycle_configuration(Bucket=plan.bucket)["Rules"]
    assert rule["Filter"] == {"Prefix": "data/"}
    tiered = dataclasses.replace(plan, lifecycle=dataclasses.replace(plan.lifecycle, manifest_glacier_ir_days=20))
    lifecycle = [d.message for d in differences(tiered, read_state(s3, plan.bucket)) if d.setting == "lifecycle"]
    assert lifecycle == ["lifecycle rule 'vault-manifest-tiering' removed"]
    provision(s3, tiered, force=True)
    assert not [d for d in differences(tiered, read_state(s3, plan.bucket)) if d.setting == "lifecycle"]
    later = dataclasses.replace(plan, lifecycle=dataclasses.replace(plan.lifecycle, manifest_glacier_ir_days=30))
    (changed,) = [d.message for d in differences(later, read_state(s3, plan.bucket)) if d.setting == "lifecycle"]
    assert "lifecycle rule 'vault-manifest-tiering' changed" in changed and "GLACIER_IR after 20 days" in changed


def test_second_run_changes_nothing_and_says_so(s3: Any, plans: Any, caplog: pytest.LogCaptureFixture) -> None:
    for plan in plans.plans:
        assert provision(s3, plan)
    caplog.clear()
    caplog.set_level("INFO", logger="chalicelib.deploy.provision")
    for plan in plans.plans:
        assert provision(s3, plan) == []
        assert differences(plan, read_state(s3, plan.bucket)) == []
    assert sum("nothing changed" in message for message in caplog.messages) == 3


def test_kms_plan_uses_the_key_with_a_bucket_key(s3: Any) -> None:
    plan = make_plan(kms_key_id="arn:aws:kms:us-east-1:123456789012:key/1234abcd-12ab-34cd-56ef-1234567890ab")
    provision(s3, plan)
    rule = s3.get_bucket_encryption(Bucket=plan.bucket)["ServerSideEncryptionConfiguration"]["Rules"][0]
    assert rule["ApplyServerSideEncryptionByDefault"] == {"SSEAlgorithm": "aws:kms", "KMSMasterKeyID": plan.kms_key_id}
    assert rule["BucketKeyEnabled"] is True
    assert provision(s3, plan) == []


def test_noncurrent_expiration_from_the_plan(s3: Any) -> None:
    plan = make_plan(lifecycle={"transitions": [{"days": 30, "storage_class": "GLACIER"}], "noncurrent_expiration_days": 400})
    provision(s3, plan)
    (rule,) = s3.get_bucket_lifecycle_configuration(Bucket=plan.bucket)["Rules"]
    assert rule["NoncurrentVersionExpiration"] == {"NoncurrentDays": 400}
    assert lifecycle_rules(plan)[0]["NoncurrentVersionExpiration"] == {"NoncurrentDays": 400}


def test_object_lock_default_retention_for_a_new_bucket(s3: Any) -> None:
    plan = make_plan(object_lock={"mode": "COMPLIANCE", "days": 30})
    assert "set object lock default retention" in provision(s3, plan)
    config = s3.get_object_lock_configuration(Bucket=plan.bucket)["ObjectLockConfiguration"]
    assert config["ObjectLockEnabled"] == "Enabled"
    assert config["Rule"]["DefaultRetention"]["Mode"] == "COMPLIANCE"
    assert config["Rule"]["DefaultRetention"]["Days"] == 30
    assert provision(s3, plan) == []


def test_existing_bucket_missing_settings_gets_them_without_force(s3: Any) -> None:
    plan = make_plan()
    s3.create_bucket(Bucket=plan.bucket)
    changes = provision(s3, plan)
    assert "created bucket" not in changes
    assert "enabled versioning" in changes and "blocked all public access" in changes
    assert differences(plan, read_state(s3, plan.bucket)) == []


def test_existing_policy_statements_are_kept(s3: Any) -> None:
    plan = make_plan()
    s3.create_bucket(Bucket=plan.bucket)
    mine = {
        "Sid": "AuditorRead",
        "Effect": "Allow",
        "Principal": {"AWS": "arn:aws:iam::123456789012:role/auditor"},
        "Action": "s3:GetObject",
        "Resource": f"arn:aws:s3:::{plan.bucket}/*",
    }
    s3.put_bucket_policy(Bucket=plan.bucket, Policy=json.dumps({"Version": "2012-10-17", "Statement": [mine]}))
    provision(s3, plan)
    statements = json.loads(s3.get_bucket_policy(Bucket=plan.bucket)["Policy"])["Statement"]
    assert [s["Sid"] for s in statements] == ["AuditorRead", "DenyInsecureTransport", "CreateOnlyMetadata", "NoDeleteMarkersOnMetadata", "NoReplicasOverMetadata", "NoMultipartUploadsOfMetadata"]


def conflicting_bucket(s3: Any, plan: Any) -> None:
    s3.create_bucket(Bucket=plan.bucket)
    s3.put_bucket_versioning(Bucket=plan.bucket, VersioningConfiguration={"Status": "Suspended"})
    s3.put_bucket_lifecycle_configuration(
        Bucket=plan.bucket,
        LifecycleConfiguration={
            "Rules": [{"ID": "expire-all", "Filter": {"Prefix": ""}, "Status": "Enabled", "Expiration": {"Days": 1}}]
        },
    )
    s3.put_public_access_block(
        Bucket=plan.bucket, PublicAccessBlockConfiguration={**PUBLIC_ACCESS_BLOCK, "BlockPublicPolicy": False}
    )
    s3.put_bucket_ownership_controls(Bucket=plan.bucket, OwnershipControls={"Rules": [{"ObjectOwnership": "ObjectWriter"}]})


def test_conflicting_bucket_is_reported_and_left_alone(s3: Any) -> None:
    plan = make_plan()
    conflicting_bucket(s3, plan)
    with pytest.raises(BucketConflict) as caught:
        provision(s3, plan)
    message = str(caught.value)
    assert plan.bucket in message and "'vault'" in message and "nothing was changed" in message
    assert any("versioning is suspended" in d for d in caught.value.differences)
    assert any("unexpected lifecycle rule 'expire-all'" in d for d in caught.value.differences)
    assert any("lifecycle rule 'vault-data-tiering' removed" in d for d in caught.value.differences)
    assert any("BlockPublicPolicy" in d for d in caught.value.differences)
    assert any("ObjectWriter" in d for d in caught.value.differences)
    # Nothing changed, not even the settings that were merely missing.
    assert s3.get_bucket_versioning(Bucket=plan.bucket)["Status"] == "Suspended"
    assert s3.get_bucket_lifecycle_configuration(Bucket=plan.bucket)["Rules"][0]["ID"] == "expire-all"
    with pytest.raises(Exception, match="NoSuchBucketPolicy"):
        s3.get_bucket_policy(Bucket=plan.bucket)


def test_force_applies_the_plan(s3: Any) -> None:
    plan = make_plan()
    conflicting_bucket(s3, plan)
    changes = provision(s3, plan, force=True)
    assert "set lifecycle rules (objects under 128 KB: all_storage_classes_128K)" in changes and "enabled versioning" in changes
    assert differences(plan, read_state(s3, plan.bucket)) == []
    assert [r["ID"] for r in s3.get_bucket_lifecycle_configuration(Bucket=plan.bucket)["Rules"]] == ["vault-data-tiering"]


def test_changed_lifecycle_days_are_a_conflict_naming_both(s3: Any) -> None:
    plan = make_plan()
    provision(s3, plan)
    shorter = make_plan(lifecycle={"transitions": [{"days": 7, "storage_class": "GLACIER"}]})
    with pytest.raises(BucketConflict) as caught:
        provision(s3, shorter)
    (difference,) = caught.value.differences
    assert "GLACIER after 30 days" in difference and "GLACIER after 7 days" in difference


def test_kms_bucket_is_not_downgraded_without_force(s3: Any) -> None:
    kms = make_plan(kms_key_id="alias/backups")
    provision(s3, kms)
    with pytest.raises(BucketConflict, match="aws:kms"):
        provision(s3, make_plan())


def test_existing_bucket_without_object_lock_is_a_conflict(s3: Any) -> None:
    provision(s3, make_plan())
    with pytest.raises(BucketConflict, match="object lock is not enabled"):
        provision(s3, make_plan(object_lock={"mode": "GOVERNANCE", "days": 10}))


def test_provision_command_for_a_stage(s3: Any, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--stage", "dev"]) == 0
    first = capsys.readouterr().out
    assert "acme-backup-dev-documents (plan documents): created bucket" in first
    assert main(["--stage", "dev"]) == 0
    second = capsys.readouterr().out.splitlines()
    assert len(second) == 4 and all("nothing changed" in line for line in second)
    assert second[-1] == "inventory acme-backup-dev-inventory: already as planned, nothing changed"
    s3.put_bucket_versioning(Bucket="acme-backup-dev-photos", VersioningConfiguration={"Status": "Suspended"})
    assert main(["--stage", "dev"]) == 1
    assert "versioning is suspended" in capsys.readouterr().err
    assert main(["--stage", "dev", "--force", "--plan", "photos"]) == 0
    assert "enabled versioning" in capsys.readouterr().out


def test_unknown_stage_is_refused(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--stage", "nope"]) == 2
    assert "stage 'nope'" in capsys.readouterr().err


# Plans whose lifecycle or retention can't work are refused before any bucket is touched.
IMPOSSIBLE = {
    "deep archive before glacier": (
        {"lifecycle": {"transitions": [{"days": 90, "storage_class": "DEEP_ARCHIVE"}, {"days": 180, "storage_class": "GLACIER"}]}},
        ["plan 'vault'", "transitions[1]", "'storage_class'", "colder"],
    ),
    "leaves glacier before its minimum": (
        {"lifecycle": {"transitions": [{"days": 30, "storage_class": "GLACIER"}, {"days": 60, "storage_class": "DEEP_ARCHIVE"}]}},
        ["plan 'vault'", "transitions[1]", "'days'", "90-day minimum", "at least 120"],
    ),
    "expires before the minimum": (
        {"lifecycle": {"transitions": [{"days": 30, "storage_class": "GLACIER"}, {"days": 180, "storage_class": "DEEP_ARCHIVE"}], "noncurrent_expiration_days": 200}},
        ["plan 'vault'", "'noncurrent_expiration_days'", "180-day", "at least 360"],
    ),
    "unknown storage class": (
        {"lifecycle": {"transitions": [{"days": 30, "storage_class": "ICE"}]}},
        ["plan 'vault'", "'storage_class'", "'ICE'"],
    ),
    "lock outlasts expiration": (
        {"lifecycle": {"transitions": [], "noncurrent_expiration_days": 30}, "object_lock": {"mode": "COMPLIANCE", "days": 365}},
        ["plan 'vault'", "'object_lock'", "365 days", "noncurrent_expiration_days"],
    ),
    "unknown lock mode": ({"object_lock": {"mode": "FOREVER", "days": 1}}, ["plan 'vault'", "'mode'", "FOREVER"]),
    "lock beyond 100 years": ({"object_lock": {"mode": "GOVERNANCE", "days": 40000}}, ["plan 'vault'", "'days'", "36500"]),
    "not a kms key": ({"kms_key_id": "my key"}, ["plan 'vault'", "'kms_key_id'", "'my key'"]),
}


@pytest.mark.parametrize("case", sorted(IMPOSSIBLE))
def test_impossible_lifecycle_or_retention_is_refused(case: str) -> None:
    from chalicelib.errors import PlanError

    overrides, fragments = IMPOSSIBLE[case]
    with pytest.raises(PlanError) as caught:
        make_plan(**overrides)
    for fragment in fragments:
        assert fragment in str(caught.value), f"{fragment!r} missing from {caught.value}"


@pytest.mark.parametrize(
    "key",
    ["1234abcd-12ab-34cd-56ef-1234567890ab", "alias/backups", "arn:aws:kms:eu-west-1:123456789012:alias/backups", "mrk-1234abcd12ab34cd56ef1234567890ab"],
)
def test_every_spelling_of_a_kms_key_is_accepted(key: str) -> None:
    assert make_plan(kms_key_id=key).kms_key_id == key
