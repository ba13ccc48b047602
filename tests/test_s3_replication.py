"""The S3 Replication double (tests/s3_replication.py) replicates as S3 documents: new versions with their
version ids, bytes, metadata and checksum, in the rule's storage class, into a bucket of another account and
region; never delete markers, deletions of versions, or what was written before the rule."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from typing import Any

import pytest

from tests.offsite_world import VAULT_ACCOUNT, VAULT_REGION, assumed_client
from tests.s3_replication import Replication

SOURCE, VAULT = "acme-backup-documents", "acme-vault-documents"


def rules(*rules: dict[str, Any]) -> dict[str, Any]:
    return {"Role": "arn:aws:iam::123456789012:role/replication", "Rules": list(rules)}


def rule(prefix: str, storage_class: str | None = "STANDARD_IA", status: str = "Enabled", priority: int = 1) -> dict[str, Any]:
    destination: dict[str, Any] = {"Bucket": f"arn:aws:s3:::{VAULT}", "Account": VAULT_ACCOUNT}
    if storage_class:
        destination["StorageClass"] = storage_class
    return {"ID": f"r{priority}", "Priority": priority, "Status": status, "Filter": {"Prefix": prefix},
            "DeleteMarkerReplication": {"Status": "Disabled"}, "Destination": destination}


@pytest.fixture
def world(s3: Any) -> Iterator[tuple[Any, Any, Replication]]:
    s3.create_bucket(Bucket=SOURCE)
    s3.put_bucket_versioning(Bucket=SOURCE, VersioningConfiguration={"Status": "Enabled"})
    vault = assumed_client("s3")
    vault.create_bucket(Bucket=VAULT, CreateBucketConfiguration={"LocationConstraint": VAULT_REGION})
    vault.put_bucket_versioning(Bucket=VAULT, VersioningConfiguration={"Status": "Enabled"})
    with Replication() as replication:
        yield s3, vault, replication


def versions(client: Any, bucket: str) -> list[tuple[str, str]]:
    listing = client.list_object_versions(Bucket=bucket)
    return sorted((v["Key"], v["VersionId"]) for v in listing.get("Versions", []) + listing.get("DeleteMarkers", []))


def test_put_copy_and_multipart_versions_reach_the_vault_with_their_ids_bytes_metadata_and_checksum(world: Any) -> None:
    s3, vault, replication = world
    s3.put_bucket_replication(Bucket=SOURCE, ReplicationConfiguration=rules(
        rule("data/"), rule("meta/", storage_class=None, priority=2), rule("data/cold/", "DEEP_ARCHIVE", priority=3)))
    body = b"report\n" * 100
    put = s3.put_object(Bucket=SOURCE, Key="data/docs/a.txt", Body=body, Metadata={"source-etag": "abc"},
                        ContentType="text/plain", ChecksumAlgorithm="SHA256")
    copy = s3.copy_object(Bucket=SOURCE, Key="data/docs/b.txt", CopySource={"Bucket": SOURCE, "Key": "data/docs/a.txt"})
    upload = s3.create_multipart_upload(Bucket=SOURCE, Key="meta/snapshots/documents/1.jsonl.gz")
    part = s3.upload_part(Bucket=SOURCE, Key="meta/snapshots/documents/1.jsonl.gz", UploadId=upload["UploadId"],
                          PartNumber=1, Body=b"manifest")
    done = s3.complete_multipart_upload(Bucket=SOURCE, Key="meta/snapshots/documents/1.jsonl.gz", UploadId=upload["UploadId"],
                                        MultipartUpload={"Parts": [{"PartNumber": 1, "ETag": part["ETag"]}]})
    assert versions(vault, VAULT) == versions(s3, SOURCE)
    assert {v for _, v in versions(vault, VAULT)} == {put["VersionId"], copy["VersionId"], done["VersionId"]}

    replica = vault.get_object(Bucket=VAULT, Key="data/docs/a.txt", VersionId=put["VersionId"], ChecksumMode="ENABLED")
    assert replica["Body"].read() == body
    assert (replica["Metadata"], replica["ContentType"], replica["ETag"]) == ({"source-etag": "abc"}, "text/plain", put["ETag"])
    assert replica["ChecksumSHA256"] == put["ChecksumSHA256"]
    assert (replica["StorageClass"], replica["ReplicationStatus"]) == ("STANDARD_IA", "REPLICA")
    # Of two matching rules, the higher priority's class; a replica in Deep Archive is not readable at once.
    cold = s3.put_object(Bucket=SOURCE, Key="data/cold/c.txt", Body=b"cold")["VersionId"]
    assert vault.head_object(Bucket=VAULT, Key="data/cold/c.txt", VersionId=cold)["StorageClass"] == "DEEP_ARCHIVE"
    with pytest.raises(vault.exceptions.InvalidObjectState):
        vault.get_object(Bucket=VAULT, Key="data/cold/c.txt", VersionId=cold)
    # A rule without a storage class keeps the source's; the manifest's rule is the other one.
    manifest = vault.head_object(Bucket=VAULT, Key="meta/snapshots/documents/1.jsonl.gz")
    assert "StorageClass" not in manifest and manifest["ETag"] == done["ETag"]
    assert s3.head_object(Bucket=SOURCE, Key="data/docs/a.txt")["ReplicationStatus"] == "COMPLETED"
    assert hashlib.sha256(vault.get_object(Bucket=VAULT, Key="data/docs/b.txt")["Body"].read()).digest() == hashlib.sha256(body).digest()


def test_only_new_versions_an_enabled_rule_matches_are_replicated(world: Any) -> None:
    s3, vault, replication = world
    s3.put_object(Bucket=SOURCE, Key="data/docs/before.txt", Body=b"written before the rule")
    s3.put_bucket_replication(Bucket=SOURCE, ReplicationConfiguration=rules(
        rule("data/"), rule("meta/snapshots/", status="Disabled", priority=2)))
    s3.put_object(Bucket=SOURCE, Key="meta/snapshots/documents/1.jsonl.gz", Body=b"disabled rule")
    s3.put_object(Bucket=SOURCE, Key="meta/locks/documents.json", Body=b"no rule")
    s3.put_object(Bucket=SOURCE, Key="data/docs/before.txt", Body=b"a new version after the rule")
    assert [(r.key, r.storage_class) for r in replication.replicated] == [("data/docs/before.txt", "STANDARD_IA")]
    listed = vault.list_object_versions(Bucket=VAULT)["Versions"]
    assert len(listed) == 1 and vault.get_object(Bucket=VAULT, Key="data/docs/before.txt")["Body"].read() == b"a new version after the rule"
    assert "ReplicationStatus" not in s3.head_object(Bucket=SOURCE, Key="meta/locks/documents.json")


def test_deletions_and_delete_markers_never_reach_the_vault(world: Any) -> None:
    s3, vault, replication = world
    s3.put_bucket_replication(Bucket=SOURCE, ReplicationConfiguration=rules(rule("data/")))
    first = s3.put_object(Bucket=SOURCE, Key="data/docs/a.txt", Body=b"one")["VersionId"]
    s3.put_object(Bucket=SOURCE, Key="data/docs/a.txt", Body=b"two")
    s3.delete_object(Bucket=SOURCE, Key="data/docs/a.txt")  # a delete marker
    s3.delete_object(Bucket=SOURCE, Key="data/docs/a.txt", VersionId=first)  # a version's deletion
    listing = vault.list_object_versions(Bucket=VAULT)
    assert "DeleteMarkers" not in listing and len(listing["Versions"]) == 2
    assert vault.get_object(Bucket=VAULT, Key="data/docs/a.txt", VersionId=first)["Body"].read() == b"one"


def test_the_vaults_default_retention_locks_each_replica(world: Any) -> None:
    s3, vault, replication = world
    locked = "acme-vault-locked"
    vault.create_bucket(Bucket=locked, CreateBucketConfiguration={"LocationConstraint": VAULT_REGION}, ObjectLockEnabledForBucket=True)
    vault.put_object_lock_configuration(Bucket=locked, ObjectLockConfiguration={
        "ObjectLockEnabled": "Enabled", "Rule": {"DefaultRetention": {"Mode": "COMPLIANCE", "Days": 30}}})
    to_locked = rule("data/")
    to_locked["Destination"]["Bucket"] = f"arn:aws:s3:::{locked}"
    s3.put_bucket_replication(Bucket=SOURCE, ReplicationConfiguration=rules(to_locked))
    version = s3.put_object(Bucket=SOURCE, Key="data/docs/a.txt", Body=b"one")["VersionId"]
    head = vault.head_object(Bucket=locked, Key="data/docs/a.txt", VersionId=version)
    assert head["ObjectLockMode"] == "COMPLIANCE"
    with pytest.raises(vault.exceptions.ClientError, match="AccessDenied"):
        vault.delete_object(Bucket=locked, Key="data/docs/a.txt", VersionId=version)


def test_a_destination_without_versioning_fails_the_version_and_writes_nothing(world: Any) -> None:
    s3, vault, replication = world
    plain = "acme-vault-plain"
    vault.create_bucket(Bucket=plain, CreateBucketConfiguration={"LocationConstraint": VAULT_REGION})
    to_plain = rule("data/")
    to_plain["Destination"]["Bucket"] = f"arn:aws:s3:::{plain}"
    s3.put_bucket_replication(Bucket=SOURCE, ReplicationConfiguration=rules(to_plain))
    s3.put_object(Bucket=SOURCE, Key="data/docs/a.txt", Body=b"one")
    assert s3.head_object(Bucket=SOURCE, Key="data/docs/a.txt")["ReplicationStatus"] == "FAILED"
    assert "Contents" not in vault.list_objects_v2(Bucket=plain) and replication.replicated == []


def test_held_versions_stay_pending_until_released(world: Any) -> None:
    s3, vault, replication = world
    s3.put_bucket_replication(Bucket=SOURCE, ReplicationConfiguration=rules(rule("data/")))
    with replication.held():
        s3.put_object(Bucket=SOURCE, Key="data/docs/a.txt", Body=b"one")
    assert s3.head_object(Bucket=SOURCE, Key="data/docs/a.txt")["ReplicationStatus"] == "PENDING"
    assert "Versions" not in vault.list_object_versions(Bucket=VAULT)
    replication.release()
    assert s3.head_object(Bucket=SOURCE, Key="data/docs/a.txt")["ReplicationStatus"] == "COMPLETED"
    assert vault.get_object(Bucket=VAULT, Key="data/docs/a.txt")["Body"].read() == b"one"
