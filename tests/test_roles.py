"""What each function's role refuses to whoever holds its credentials, evaluated with `allows` over the
generated policies of a deployed stage: every attack is the AWS call an attacker would make, mapped to the
permissions it needs by `required_permissions`. Beside each list of attacks, the function's own job is
allowed, so a refusal never passes because a role allows nothing."""

from __future__ import annotations

from typing import Any

import pytest

from chalicelib.config import Settings
from chalicelib.deploy.permissions import Permission, allows, required_permissions
from chalicelib.deploy.policy import FUNCTIONS, generate, settings_scope, stage_scope
from chalicelib.deploy.scope import (
    API_HANDLER,
    BACKUP_WORKER,
    DAILY_BACKUP,
    DAILY_PRUNE,
    HEARTBEAT as HEARTBEAT_FUNCTION,
    NOTIFIER,
    PRUNE_WORKER,
    RESTORE_WORKER,
    RESUME_RESTORES,
    VERIFY_WORKER,
)
from chalicelib.notify.metrics import namespace
from tests.conftest import ROOT

STAGE = "dev"
ACCOUNT = "123456789012"
CATALOG = "acme-backup-dev-documents"
PHOTOS = "acme-backup-dev-photos"
DATABASE = "acme-backup-dev-database"
SOURCE = "acme-dev-documents"
TABLE = "acme-dev-orders"
RESTORES = "acme-dev-restores"
TOPIC = "arn:aws:sns:us-east-1:123456789012:org-backup-alerts-dev"
FUNCTION = "arn:aws:lambda:us-east-1:123456789012:function:org-backup-dev-"
BACKUP_WRITERS = {DAILY_BACKUP, BACKUP_WORKER}
RESTORERS = {RESTORE_WORKER, RESUME_RESTORES}
PRUNERS = {DAILY_PRUNE, PRUNE_WORKER}

Call = tuple[str, str, dict[str, Any]]


def may(function: str, call: Call, stage: str = STAGE) -> bool:
    """Whether `function`'s role allows every permission the call needs."""
    policy = generate(stage_scope(stage, ROOT), function)
    service, operation, params = call
    return all(allows(policy, p) for p in required_permissions(service, operation, params, "us-east-1", ACCOUNT))


def s3(operation: str, **params: Any) -> Call:
    return ("s3", operation, params)


# The calls an attacker would make, by what they would achieve.
WRITE_DATA = s3("PutObject", Bucket=PHOTOS, Key="data/photos/2026/a.png")
COPY_INTO_DATA = s3("CopyObject", Bucket=PHOTOS, Key="data/photos/2026/a.png", CopySource={"Bucket": SOURCE, "Key": "a.png"})
# A copy whose source the API and the restorers may read: only writing data/ can refuse it.
COPY_META_INTO_DATA = s3("CopyObject", Bucket=PHOTOS, Key="data/photos/2026/a.png", CopySource={"Bucket": CATALOG, "Key": "meta/backups/x"})
DELETE_MARKER = s3("DeleteObjects", Bucket=PHOTOS, Delete={"Objects": [{"Key": "data/photos/2026/a.png"}]})
TAG_DATA = s3("PutObjectTagging", Bucket=PHOTOS, Key="data/photos/2026/a.png", Tagging={"TagSet": []})
FORGE_MANIFEST = s3("PutObject", Bucket=PHOTOS, Key="meta/snapshots/photos/20261126T000000000Z-x.jsonl.gz")
FORGE_BACKUP_RECORD = s3("PutObject", Bucket=CATALOG, Key="meta/backups/0001_20261126T000000000Z-x.json")
FORGE_RESTORE_RECORD = s3("PutObject", Bucket=CATALOG, Key="meta/restores/0001_20261126T000000000Z-x.json")
ENQUEUE_RESTORE = s3("PutObject", Bucket=CATALOG, Key="meta/restore-queue/20261126T000000000Z-x")
FORGE_VERIFICATION = s3("PutObject", Bucket=CATALOG, Key="meta/verifications/0001_verify-x.json")
DELETE_MANIFEST = s3("DeleteObject", Bucket=PHOTOS, Key="meta/snapshots/photos/20261126T000000000Z-x.jsonl.gz")
DESTROY_VERSION = s3("DeleteObject", Bucket=PHOTOS, Key="data/photos/2026/a.png", VersionId="v1")
THAW_DATA = s3("RestoreObject", Bucket=PHOTOS, Key="data/photos/2026/a.png", VersionId="v1", RestoreRequest={"Days": 1})
READ_SOURCE = s3("GetObject", Bucket=SOURCE, Key="a.txt")
WRITE_SOURCE = s3("PutObject", Bucket=SOURCE, Key="a.txt")
WRITE_RESTORE_BUCKET = s3("PutObject", Bucket=RESTORES, Key="a.txt")
WRITE_OTHER_BUCKET = s3("PutObject", Bucket="attacker-bucket", Key="a.txt")
EXFILTRATE_VERSION = s3("CopyObject", Bucket="attacker-bucket", Key="a", CopySource={"Bucket": PHOTOS, "Key": "data/x", "VersionId": "v"})
SCAN_SOURCE = ("dynamodb", "Scan", {"TableName": TABLE})
WRITE_SOURCE_TABLE = ("dynamodb", "PutItem", {"TableName": TABLE})
CREATE_TABLE = ("dynamodb", "CreateTable", {"TableName": "restored-orders"})
CREATE_UNPREFIXED_TABLE = ("dynamodb", "CreateTable", {"TableName": "orders"})
HEARTBEAT = ("cloudwatch", "PutMetricData", {"Namespace": namespace(CATALOG), "MetricData": []})
ALERT = ("sns", "Publish", {"TopicArn": TOPIC, "Message": "all fine"})
CHANGE_LIFECYCLE = s3("PutBucketLifecycleConfiguration", Bucket=PHOTOS)
# Retention's own writes and deletions, and what no role may destroy.
MARK_PRUNED = s3("PutObject", Bucket=CATALOG, Key="meta/pruned/8000_20261126T000000000Z-x/photos.json")
DESTROY_MANIFEST_VERSION = s3("DeleteObject", Bucket=PHOTOS, Key="meta/snapshots/photos/20261126T000000000Z-x.jsonl.gz", VersionId="v1")
DESTROY_RECORD = s3("DeleteObject", Bucket=CATALOG, Key="meta/backups/0001_20261126T000000000Z-x.json", VersionId="v1")
DESTROY_SEALED = s3("DeleteObject", Bucket=CATALOG, Key="meta/sealed/backups/0001_20261126T000000000Z-x.json", VersionId="v1")
DESTROY_MARKER = s3("DeleteObject", Bucket=CATALOG, Key="meta/pruned/8000_20261126T000000000Z-x/photos.json", VersionId="v1")
BYPASS_LOCK = s3("DeleteObject", Bucket=PHOTOS, Key="data/photos/2026/a.png", VersionId="v1", BypassGovernanceRetention=True)
READ_DATA = s3("GetObject", Bucket=PHOTOS, Key="data/photos/2026/a.png", VersionId="v1")
# A finding's marker created ahead of the finding: its alert would never go out.
SILENCE_FINDING = s3("PutObject", Bucket=CATALOG, Key="meta/tampering/" + "0" * 64 + ".json", IfNoneMatch="*")


def invoke(function: str) -> Call:
    return ("lambda", "Invoke", {"FunctionName": f"org-backup-dev-{function}"})


ATTACKS: dict[str, list[Call]] = {
    # The internet-facing function: no backup data, no deletion, no source, no table, no restore target,
    # no heartbeat, no manifest.
    API_HANDLER: [
        WRITE_DATA, COPY_INTO_DATA, COPY_META_INTO_DATA, DELETE_MARKER, TAG_DATA, FORGE_MANIFEST, FORGE_VERIFICATION, DELETE_MANIFEST,
        DESTROY_VERSION, THAW_DATA, READ_SOURCE, WRITE_SOURCE, SCAN_SOURCE, CREATE_TABLE, WRITE_RESTORE_BUCKET,
        WRITE_OTHER_BUCKET, EXFILTRATE_VERSION, HEARTBEAT, CHANGE_LIFECYCLE, MARK_PRUNED, DESTROY_MANIFEST_VERSION,
    ],
    # The backup writer: nothing of restores (records, queue, targets, tables), no version destroyed.
    DAILY_BACKUP: [
        FORGE_RESTORE_RECORD, ENQUEUE_RESTORE, WRITE_RESTORE_BUCKET, WRITE_OTHER_BUCKET, EXFILTRATE_VERSION,
        CREATE_TABLE, WRITE_SOURCE, WRITE_SOURCE_TABLE, DELETE_MANIFEST, DESTROY_VERSION, THAW_DATA,
        CHANGE_LIFECYCLE, invoke(RESTORE_WORKER), MARK_PRUNED, DESTROY_MANIFEST_VERSION, invoke(PRUNE_WORKER),
    ],
    # The restorers: nothing written into the backup buckets but their own records, no source read.
    RESTORE_WORKER: [
        WRITE_DATA, COPY_INTO_DATA, COPY_META_INTO_DATA, DELETE_MARKER, TAG_DATA, FORGE_MANIFEST, FORGE_BACKUP_RECORD,
        FORGE_VERIFICATION, DELETE_MANIFEST, DESTROY_VERSION, READ_SOURCE, SCAN_SOURCE, WRITE_SOURCE_TABLE,
        WRITE_OTHER_BUCKET, EXFILTRATE_VERSION, CREATE_UNPREFIXED_TABLE, HEARTBEAT, CHANGE_LIFECYCLE,
        invoke(BACKUP_WORKER), MARK_PRUNED, DESTROY_MANIFEST_VERSION,
    ],
    # The weekly check: read-only but for its own records.
    VERIFY_WORKER: [
        WRITE_DATA, COPY_INTO_DATA, DELETE_MARKER, TAG_DATA, FORGE_MANIFEST, FORGE_BACKUP_RECORD, FORGE_RESTORE_RECORD,
        ENQUEUE_RESTORE, DELETE_MANIFEST, DESTROY_VERSION, THAW_DATA, READ_SOURCE, SCAN_SOURCE, CREATE_TABLE,
        WRITE_RESTORE_BUCKET, WRITE_OTHER_BUCKET, EXFILTRATE_VERSION, HEARTBEAT, CHANGE_LIFECYCLE, invoke(BACKUP_WORKER),
        MARK_PRUNED, DESTROY_MANIFEST_VERSION,
    ],
    # Retention: deletes versions under data/ and meta/snapshots/ and nothing else; writes nothing but its
    # markers and records; reads no data and no source.
    DAILY_PRUNE: [
        WRITE_DATA, COPY_INTO_DATA, COPY_META_INTO_DATA, DELETE_MARKER, TAG_DATA, FORGE_MANIFEST, FORGE_BACKUP_RECORD,
        FORGE_RESTORE_RECORD, ENQUEUE_RESTORE, FORGE_VERIFICATION, DELETE_MANIFEST, DESTROY_RECORD, DESTROY_SEALED,
        DESTROY_MARKER, BYPASS_LOCK, READ_DATA, THAW_DATA, READ_SOURCE, SCAN_SOURCE, WRITE_SOURCE, CREATE_TABLE,
        WRITE_RESTORE_BUCKET, WRITE_OTHER_BUCKET, EXFILTRATE_VERSION, HEARTBEAT, CHANGE_LIFECYCLE,
        invoke(BACKUP_WORKER), invoke(RESTORE_WORKER),
    ],
}
# The notifier: alerts, and remembers what it alerted; nothing of the backups.
ATTACKS[NOTIFIER] = [
    WRITE_DATA, FORGE_MANIFEST, FORGE_BACKUP_RECORD, FORGE_VERIFICATION, DELETE_MANIFEST, DESTROY_VERSION, READ_DATA,
    READ_SOURCE, HEARTBEAT, MARK_PRUNED, CHANGE_LIFECYCLE, invoke(BACKUP_WORKER), invoke(NOTIFIER),
]
# The heartbeat: reads sealed records, publishes its metric; writes nothing, alerts nothing.
ATTACKS[HEARTBEAT_FUNCTION] = [
    WRITE_DATA, FORGE_MANIFEST, FORGE_BACKUP_RECORD, FORGE_VERIFICATION, SILENCE_FINDING, READ_DATA, READ_SOURCE,
    ALERT, MARK_PRUNED, invoke(BACKUP_WORKER), invoke(NOTIFIER),
]
ATTACKS[PRUNE_WORKER] = ATTACKS[DAILY_PRUNE]
ATTACKS[BACKUP_WORKER] = ATTACKS[DAILY_BACKUP]
ATTACKS[RESUME_RESTORES] = ATTACKS[RESTORE_WORKER]

# What each function is there to do.
JOBS: dict[str, list[Call]] = {
    API_HANDLER: [
        FORGE_BACKUP_RECORD, FORGE_RESTORE_RECORD, ENQUEUE_RESTORE,
        s3("GetObject", Bucket=PHOTOS, Key="meta/snapshots/photos/x.jsonl.gz"),
        s3("HeadObject", Bucket=PHOTOS, Key="data/photos/2026/a.png", VersionId="v1"),
        s3("ListObjectsV2", Bucket=CATALOG, Prefix="meta/backups/"),
        s3("DeleteObject", Bucket=CATALOG, Key="meta/locks/photos.json"),
        s3("PutObject", Bucket=CATALOG, Key="meta/verifications/0001_check-20261126T000000000Z-x.json", IfNoneMatch="*"),
        s3("PutObject", Bucket=CATALOG, Key="meta/prunes/0001_prune-20261126T000000000Z-x.json"),
        invoke(BACKUP_WORKER), invoke(RESTORE_WORKER), invoke(VERIFY_WORKER), invoke(PRUNE_WORKER),
        # Tampering found on the way is handed to the notifier by whichever function finds it.
        invoke(NOTIFIER),
    ],
    DAILY_BACKUP: [
        WRITE_DATA, DELETE_MARKER, FORGE_MANIFEST, FORGE_BACKUP_RECORD, READ_SOURCE, SCAN_SOURCE, ALERT, invoke(NOTIFIER),
        s3("CopyObject", Bucket=PHOTOS, Key="data/documents/a.txt", CopySource={"Bucket": SOURCE, "Key": "a.txt"}),
        invoke(BACKUP_WORKER), invoke(VERIFY_WORKER),
    ],
    RESTORE_WORKER: [
        THAW_DATA, WRITE_RESTORE_BUCKET, CREATE_TABLE, FORGE_RESTORE_RECORD,
        s3("CopyObject", Bucket=RESTORES, Key="a.png", CopySource={"Bucket": PHOTOS, "Key": "data/photos/a.png", "VersionId": "v"}),
        # The queue of unfinished restores is theirs to keep (an entry put back when a last save loses), and
        # a first pass too long for one invocation is carried on by the restore worker.
        s3("DeleteObject", Bucket=CATALOG, Key="meta/restore-queue/20261126T000000000Z-x"), ENQUEUE_RESTORE,
        invoke(RESTORE_WORKER),
        ("dynamodb", "BatchWriteItem", {"RequestItems": {"restored-orders": []}}),
    ],
    VERIFY_WORKER: [
        FORGE_VERIFICATION, ALERT, invoke(VERIFY_WORKER),
        s3("HeadObject", Bucket=PHOTOS, Key="data/photos/2026/a.png", VersionId="v1"),
        s3("GetObject", Bucket=DATABASE, Key="data/orders/acme-dev-orders.jsonl.gz", VersionId="v1"),
        s3("GetObject", Bucket=PHOTOS, Key="meta/snapshots/photos/x.jsonl.gz"),
    ],
}
JOBS[DAILY_PRUNE] = JOBS[PRUNE_WORKER] = [
    DESTROY_VERSION, DESTROY_MANIFEST_VERSION, MARK_PRUNED, ALERT, invoke(PRUNE_WORKER),
    s3("PutObject", Bucket=CATALOG, Key="meta/prunes/8000_prune-x.json"),
    s3("ListObjectVersions", Bucket=PHOTOS, Prefix="data/"),
    s3("ListObjectVersions", Bucket=PHOTOS, Prefix="meta/snapshots/photos/"),
    s3("ListObjectsV2", Bucket=CATALOG, Prefix="meta/sealed/backups/"),
    s3("GetObject", Bucket=PHOTOS, Key="meta/snapshots/photos/x.jsonl.gz", VersionId="v1"),
]
JOBS[NOTIFIER] = [SILENCE_FINDING, ALERT, s3("GetObject", Bucket=CATALOG, Key="meta/tampering/" + "0" * 64 + ".json")]
JOBS[HEARTBEAT_FUNCTION] = [
    HEARTBEAT,
    s3("ListObjectsV2", Bucket=CATALOG, Prefix="meta/sealed/backups/"),
    s3("GetObject", Bucket=CATALOG, Key="meta/sealed/backups/0001_20261126T000000000Z-x.json"),
]
JOBS[BACKUP_WORKER] = [call for call in JOBS[DAILY_BACKUP]]
JOBS[RESUME_RESTORES] = JOBS[RESTORE_WORKER]


def describe(call: Call) -> str:
    service, operation, params = call
    target = params.get("Key") or params.get("TableName") or params.get("Namespace") or params.get("FunctionName") or ""
    return f"{service} {operation} {params.get('Bucket', '')} {target}".strip()


@pytest.mark.parametrize("function", FUNCTIONS)
def test_each_role_refuses_what_its_function_never_does(function: str) -> None:
    allowed = [describe(call) for call in ATTACKS[function] if may(function, call)]
    assert allowed == [], f"{function} may: {allowed}"


@pytest.mark.parametrize("function", FUNCTIONS)
def test_each_role_allows_its_own_job(function: str) -> None:
    refused = [describe(call) for call in JOBS[function] if not may(function, call)]
    assert refused == [], f"{function} may not: {refused}"


@pytest.mark.parametrize("call", [WRITE_DATA, COPY_INTO_DATA, DELETE_MARKER, TAG_DATA], ids=describe)
def test_no_role_but_the_backup_writer_writes_data(call: Call) -> None:
    assert {function for function in FUNCTIONS if may(function, call)} == BACKUP_WRITERS


@pytest.mark.parametrize("call", [DESTROY_VERSION, DESTROY_MANIFEST_VERSION], ids=describe)
def test_only_the_prune_roles_destroy_versions(call: Call) -> None:
    assert {function for function in FUNCTIONS if may(function, call)} == PRUNERS


def test_no_role_destroys_the_catalog_or_bypasses_object_lock() -> None:
    for call in (DESTROY_RECORD, DESTROY_SEALED, DESTROY_MARKER, BYPASS_LOCK):
        assert not any(may(function, call) for function in FUNCTIONS), describe(call)


def test_only_the_daily_backup_takes_plan_locks_besides_the_api() -> None:
    lock = s3("PutObject", Bucket=CATALOG, Key="meta/locks/photos.json")
    assert {function for function in FUNCTIONS if may(function, lock)} == {API_HANDLER, DAILY_BACKUP}


def test_only_the_heartbeat_may_publish_the_heartbeat() -> None:
    """No role that writes backups can keep the 26-hour alarm quiet."""
    assert {function for function in FUNCTIONS if may(function, HEARTBEAT)} == {HEARTBEAT_FUNCTION}
    # ... and only in its own stage's namespace: not the shared one, not another stage's.
    for other in ("OrgBackup", namespace("acme-backup-prod-documents"), "Other"):
        metric = ("cloudwatch", "PutMetricData", {"Namespace": other, "MetricData": []})
        assert not any(may(function, metric) for function in FUNCTIONS), other
    assert may(HEARTBEAT_FUNCTION, ("cloudwatch", "PutMetricData", {"Namespace": namespace("acme-backup-prod-documents")}), "prod")


def test_only_the_notifier_may_remember_a_finding() -> None:
    """No role that could tamper can create a finding's marker ahead of it; each may hand findings on."""
    assert {function for function in FUNCTIONS if may(function, SILENCE_FINDING)} == {NOTIFIER}
    assert {function for function in FUNCTIONS if may(function, invoke(NOTIFIER))} == set(FUNCTIONS) - {NOTIFIER, HEARTBEAT_FUNCTION}


def test_only_the_restorers_write_restore_targets_and_create_tables() -> None:
    copy_out = s3("CopyObject", Bucket=RESTORES, Key="a", CopySource={"Bucket": PHOTOS, "Key": "data/x", "VersionId": "v"})
    for call in (WRITE_RESTORE_BUCKET, copy_out, CREATE_TABLE):
        assert {function for function in FUNCTIONS if may(function, call)} == RESTORERS, describe(call)


# ------------------------------------------------------------------------------------- the resource account


def owned_statements(policy: dict[str, Any], buckets: set[str]) -> list[dict[str, Any]]:
    arns = {f"arn:aws:s3:::{b}" for b in buckets}
    return [
        s for s in policy["Statement"]
        if any(r.split("/", 1)[0] in arns for r in s["Resource"])
    ]


@pytest.mark.parametrize("function", FUNCTIONS)
def test_statements_on_backup_and_restore_buckets_are_pinned_to_the_account(function: str) -> None:
    policy = generate(stage_scope(STAGE, ROOT), function)
    owned = owned_statements(policy, {CATALOG, PHOTOS, DATABASE, RESTORES})
    assert owned, function
    for found in owned:
        assert found["Condition"]["StringEquals"]["s3:ResourceAccount"] == ACCOUNT, found["Sid"]
    # The sources may live in other accounts: never pinned.
    for found in owned_statements(policy, {SOURCE}):
        assert "s3:ResourceAccount" not in str(found.get("Condition", {})), found["Sid"]


def test_a_bucket_of_the_same_name_in_another_account_is_refused() -> None:
    policy = generate(stage_scope(STAGE, ROOT), BACKUP_WORKER)
    key = f"arn:aws:s3:::{PHOTOS}/data/photos/a.png"
    assert allows(policy, Permission("s3:PutObject", key, (("s3:ResourceAccount", ACCOUNT),)))
    assert not allows(policy, Permission("s3:PutObject", key, (("s3:ResourceAccount", "999999999999"),)))
    # A request naming another owner (so reaching another account's bucket) needs that account.
    (elsewhere,) = required_permissions(
        "s3", "PutObject", {"Bucket": PHOTOS, "Key": "data/photos/a.png", "ExpectedBucketOwner": "999999999999"}, "us-east-1", ACCOUNT
    )
    assert elsewhere.context[0] == ("s3:ResourceAccount", "999999999999")
    assert not allows(policy, elsewhere)
    (here,) = required_permissions("s3", "PutObject", {"Bucket": PHOTOS, "Key": "data/photos/a.png"}, "us-east-1", ACCOUNT)
    assert allows(policy, here)
    # Reading a source in another account still works: sources are not pinned.
    (source,) = required_permissions("s3", "GetObject", {"Bucket": SOURCE, "Key": "a.txt"}, "us-east-1", "999999999999")
    assert allows(policy, source)


def test_a_stage_without_a_known_account_pins_nothing(stage_env: dict[str, str]) -> None:
    settings = Settings.from_environ({**stage_env, "ALERT_TOPIC_ARN": ""})
    assert settings.account is None and settings.bucket_owner is None
    policy = generate(settings_scope("org-backup", "test", settings), BACKUP_WORKER)
    assert "s3:ResourceAccount" not in str(policy)
    assert allows(policy, Permission("s3:PutObject", "arn:aws:s3:::test-backup-photos/data/a", (("s3:ResourceAccount", "1"),)))


def test_only_the_prune_writes_its_kept_index_which_the_cost_report_reads() -> None:
    # What the prune deletes follows its own index: no other role may write one; the cost report's roles
    # (the API's, and the daily backup's, where the report is computed) read it instead of every manifest.
    forge = s3("PutObject", Bucket=PHOTOS, Key="meta/prune-index/photos/20261126T000000000Z-x-0123.jsonl.gz")
    read = s3("GetObject", Bucket=PHOTOS, Key="meta/prune-index/photos/20261126T000000000Z-x-0123.jsonl.gz")
    assert {function for function in FUNCTIONS if may(function, forge)} == PRUNERS
    assert {API_HANDLER, DAILY_BACKUP, BACKUP_WORKER} | PRUNERS <= {function for function in FUNCTIONS if may(function, read)}
