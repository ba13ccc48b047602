"""The vault's own prune (`org-backup prune --from offsite`, with the vault account's credentials): the same prune,
reading the vault's replicated sealed records and manifests. Delete markers are not replicated, so an object
deleted at the source stays current in the vault; the prune deletes its versions once no kept snapshot in the
vault names them, after the grace period and never while the vault's lock holds them, and every kept snapshot
stays restorable there by version id. The markers replicated from the backup bucket's `meta/pruned/` decide
nothing there: the vault prune writes and honours its own (`meta/vault-pruned/`), and a restore from the vault
refuses what it marked."""

from __future__ import annotations

import dataclasses
import json
from datetime import datetime, timedelta, timezone
from typing import Any

import boto3
import pytest
import time_machine

from chalicelib.aws import Clients
from chalicelib.backup.service import BackupService
from chalicelib.bootstrap import System
from chalicelib.catalog.pruned import PrunedMarkers
from chalicelib.errors import Pruned
from chalicelib.layout import PRUNED_PREFIX, VAULT_PRUNED_PREFIX
from chalicelib.catalog.records import new_backup_id
from chalicelib.config import Settings
from chalicelib.deploy.permissions import Permission, denies
from chalicelib.deploy.offsite import provision_replication, replication_role_arn
from chalicelib.deploy.provision import provision
from chalicelib.deploy.vault_bucket import provision_vault
from chalicelib.prices import load_prices
from chalicelib.plans import Lifecycle, Offsite, Plan, PlanSet, S3Source
from chalicelib.restore.requests import RestoreRequest, Target
from chalicelib.retention import RetentionPolicy
from tests.conftest import ACCOUNT, REGION
from tests.offsite_world import VAULT_ACCOUNT, VAULT_REGION, VAULT_ROLE_ARN, assumed_client
from tests.s3_replication import Replication
from tests.stored import entries_of

SOURCE = "vault-prune-source"
BUCKET = "vault-prune-backup"
VAULT = "vault-prune-backup-vault"
TARGET = "vault-prune-restored"
DAY0 = datetime(2026, 3, 2, 2, 0, tzinfo=timezone.utc)
RETENTION = RetentionPolicy(keep_last=1)
LOCK_DAYS = RETENTION.horizon_days()  # the shortest lock the plans file allows


def settings() -> Settings:
    plan = Plan(
        name="docs", bucket=BUCKET, sources=(S3Source(name="src", bucket=SOURCE),), lifecycle=Lifecycle(transitions=()),
        retention=RETENTION, max_delete_fraction=1.0, offsite=Offsite(VAULT_ACCOUNT, VAULT_REGION, VAULT, LOCK_DAYS, "STANDARD"),
    )
    return Settings(plans=PlanSet(plans=(plan,), catalog_bucket=BUCKET), topic_arn=None, worker_mode="inline",
                    worker_function=None, max_workers=4)


def backup(config: Settings) -> str:
    service = BackupService(config, Clients())
    backup_id = new_backup_id()
    service.start(None, trigger="api", backup_id=backup_id)
    record = service.run(backup_id)
    assert record.status == "SUCCEEDED", [(p.errors, p.drift, p.warnings) for p in record.plans.values()]
    return backup_id


def versions(s3: Any, bucket: str, prefix: str = "data/") -> set[tuple[str, str]]:
    listed = s3.list_object_versions(Bucket=bucket, Prefix=prefix)
    return {(v["Key"], v["VersionId"]) for v in listed.get("Versions", [])}


def as_the_vault_account(original: Any) -> Any:
    """moto's check of a bucket policy before a DeleteObjects (`FakeBucket.get_permission`) applies a Deny
    whatever its principal and condition: the vault's "no other account deletes" would refuse the vault
    account its own prune, which S3 allows. Here the policy is evaluated as S3 would for the only principal
    deleting in the vault in this test, the vault account's role (`permissions.denies`, conditions included).
    Other buckets keep moto's check."""
    from moto.iam.access_control import PermissionResult

    def permission(bucket: Any, action: str, resource: str) -> Any:
        if bucket.name != VAULT or bucket.policy is None:
            return original(bucket, action, resource)
        caller = (("aws:PrincipalAccount", VAULT_ACCOUNT), ("aws:PrincipalArn", VAULT_ROLE_ARN))
        denied = denies(json.loads(bucket.policy), Permission(action, resource, caller))
        return PermissionResult.DENIED if denied else PermissionResult.NEUTRAL

    return permission


def test_the_vault_prunes_by_its_own_markers_what_the_source_deleted_once_no_kept_snapshot_names_it(
    aws: None, s3: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from moto.s3.models import FakeBucket

    monkeypatch.setattr(FakeBucket, "get_permission", as_the_vault_account(FakeBucket.get_permission))
    monkeypatch.setenv("OFFSITE_ROLE_ARN", VAULT_ROLE_ARN)
    config = settings()
    (plan,) = config.plans.plans
    vault = assumed_client("s3")
    with time_machine.travel(DAY0, tick=True) as clock:
        s3.create_bucket(Bucket=SOURCE)
        provision(s3, plan)
        provision_vault(vault, plan, replication_role_arn(plan, ACCOUNT))
        provision_replication(boto3.client("iam", region_name=REGION), s3, plan, ACCOUNT)
        with Replication():
            s3.put_object(Bucket=SOURCE, Key="kept.txt", Body=b"the same every day")
            s3.put_object(Bucket=SOURCE, Key="gone.txt", Body=b"deleted at the source after the first backup")
            first = backup(config)
            clock.shift(timedelta(days=1))
            s3.delete_object(Bucket=SOURCE, Key="gone.txt")
            s3.put_object(Bucket=SOURCE, Key="new.txt", Body=b"written after the first backup")
            second = backup(config)
            # Anyone who may write the backup bucket's meta/pruned/ marks the snapshot the vault keeps; the marker
            # is replicated into the vault.
            PrunedMarkers(s3, BUCKET).mark("docs", second, "planted", DAY0)
        gone = {(e.data_key, e.version_id) for e in entries_of(s3, BUCKET, "docs", first) if e.key == "gone.txt"}
        kept = entries_of(s3, BUCKET, "docs", second)
        assert len(gone) == 1 and gone <= versions(vault, VAULT)
        # Delete markers are not replicated: the deleted object is still current in the vault.
        (gone_key, _), = gone
        assert vault.head_object(Bucket=VAULT, Key=gone_key)["ContentLength"] > 0
        backup_side = versions(s3, BUCKET, "")
        bytes_named = {(e.data_key, e.version_id): vault.get_object(Bucket=VAULT, Key=e.data_key, VersionId=e.version_id)["Body"].read()
                       for e in kept}

        # With list prices, as the command line reads them: the prune could weigh repacking.
        system = System(dataclasses.replace(config, prices=load_prices(environ={})), Clients(), operator=True)
        prunes = system.vault_prunes
        # A vault keeps its versions as replicated: its prune never looks for packs to repack.
        from chalicelib.prune import repack

        counted: list[str] = []
        live_objects = repack.live_objects
        monkeypatch.setattr(repack, "live_objects", lambda s3, plan, *rest: counted.append(plan.bucket) or live_objects(s3, plan, *rest))
        in_vault = system.vault_clients.s3
        assert PrunedMarkers(in_vault, VAULT, PRUNED_PREFIX).get("docs", second) is not None
        # Past the grace period, inside the vault's lock: nothing goes, what is locked is counted.
        clock.shift(timedelta(days=3))
        early = prunes.run(prunes.start(["docs"], trigger="cli", dry_run=True, allow_large=["docs"]).prune_id)
        work = early.plans["docs"]
        assert work.removing == [first] and work.object_locked >= 1 and work.would_delete["versions"] == 0, work

        # Past the lock: the first snapshot is removed from the vault, and what only it named with it.
        clock.shift(timedelta(days=LOCK_DAYS))
        record = prunes.run(prunes.start(["docs"], trigger="cli", allow_large=["docs"]).prune_id)
        work = record.plans["docs"]
        assert record.status == "SUCCEEDED", work.errors
        assert work.removing == [first] and work.deleted["versions"] >= 1
        assert not gone & versions(vault, VAULT)
        # The vault prune marked the first snapshot under its own prefix, and nothing under the replicated one.
        assert PrunedMarkers(in_vault, VAULT, VAULT_PRUNED_PREFIX).get("docs", first) is not None
        assert PrunedMarkers(in_vault, VAULT, PRUNED_PREFIX).get("docs", first) is None
        # A restore from the vault refuses what the vault pruned.
        vault.create_bucket(Bucket=TARGET, CreateBucketConfiguration={"LocationConstraint": VAULT_REGION})
        with pytest.raises(Pruned, match=f"backup {first}"):
            system.restores_from("offsite").start(RestoreRequest(backup_id=first, plan="docs", target=Target(bucket=TARGET)))
    assert counted == []
    # The snapshot the planted marker named is kept whole in the vault: each version its manifest names is
    # still there by version id, holding its bytes.
    assert {e.key for e in kept} == {"kept.txt", "new.txt"}
    assert {(e.data_key, e.version_id) for e in kept} <= versions(vault, VAULT)
    for entry in kept:
        body = vault.get_object(Bucket=VAULT, Key=entry.data_key, VersionId=entry.version_id)["Body"].read()
        assert body and body == bytes_named[(entry.data_key, entry.version_id)]
    assert vault.head_object(Bucket=VAULT, Key=f"meta/snapshots/docs/{second}.jsonl.gz")["ContentLength"] > 0
    # The backup bucket is not the vault prune's: everything there is as it was.
    assert versions(s3, BUCKET, "") >= backup_side - {(k, v) for k, v in backup_side if "/locks/" in k}
