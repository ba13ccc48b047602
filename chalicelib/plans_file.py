"""Reading the plans file (`chalicelib/plans.json`, or the one PLANS_FILE names) into a `PlanSet`.

`${VARIABLE}` placeholders are filled in from the stage's environment when a handler runs. Every mistake
is reported as a `PlanError` naming the plan and the field, never as a KeyError; `check_plans_file` checks
everything that does not depend on the stage when the app is imported.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any

from chalicelib.errors import PlanError
from chalicelib.json_fields import AnyVariable, FieldReader, read_json_file
from chalicelib.plans import (
    InventoryPlan,
    ARCHIVED_CHOICES,
    DEFAULT_RETENTION,
    MINIMUM_STORAGE_DAYS,
    MINIMUM_TRANSITION_DAYS,
    OBJECT_LOCK_MODES,
    DEFAULT_PACK_TARGET_BYTES,
    DEFAULT_PACK_THRESHOLD_BYTES,
    MANIFEST_STORAGE_CLASS,
    MAX_PACK_THRESHOLD_BYTES,
    MIN_MANIFEST_GLACIER_IR_DAYS,
    MIN_PACK_TARGET_BYTES,
    REPLICA_STORAGE_CLASSES,
    SMALL_OBJECT_ARCHIVE_CLASSES,
    SMALL_OBJECT_SETTINGS,
    STORAGE_CLASS_ORDER,
    DirectorySource,
    DynamoDBSource,
    Lifecycle,
    ObjectLock,
    Offsite,
    Plan,
    PlanSet,
    S3Source,
    Source,
    Transition,
)
from chalicelib.retention import RetentionPolicy, parse_retention
from chalicelib.schedule import parse_schedule

DEFAULT_PLANS_FILE = Path(__file__).with_name("plans.json")
MAX_SCAN_SEGMENTS = 64

PLAN_NAME = re.compile(r"^[a-z0-9][a-z0-9_-]{0,62}$")
SOURCE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
BUCKET_NAME = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")
TABLE_NAME = re.compile(r"^[A-Za-z0-9_.-]{3,255}$")
KMS_KEY = re.compile(
    r"^(arn:aws[a-z-]*:kms:[a-z0-9-]+:\d{12}:(key/[A-Za-z0-9-]+|alias/[A-Za-z0-9/_-]+)"
    r"|alias/[A-Za-z0-9/_-]+|[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}|mrk-[0-9a-f]{32})$"
)
ACCOUNT_ID = re.compile(r"^\d{12}$")
# A commercial, GovCloud, China or ISO partition region: us-east-1, eu-central-2, us-gov-west-1, cn-north-1...
REGION_NAME = re.compile(r"^[a-z]{2}(-gov|-iso[a-z]?)?-[a-z]+-\d{1,2}$")
# S3 Object Lock retention is at most 100 years.
MAX_RETENTION_DAYS = 36500
# The largest share of a plan one prune may remove without being allowed for that run.
MAX_PRUNE_FRACTION = 0.5


def _kms_key_id(reader: FieldReader, environ: Mapping[str, str]) -> str | None:
    """The optional `kms_key_id` field: a KMS key id, key ARN, alias name or alias ARN; None when absent or empty."""
    kms_key_id = reader.text("kms_key_id", None)
    # (Skipped by the import-time shape check, where every ${VARIABLE} reads "placeholder".)
    if kms_key_id and not isinstance(environ, AnyVariable) and not KMS_KEY.match(kms_key_id):
        raise reader.fail("kms_key_id", f"{kms_key_id!r} is not a KMS key id, key ARN, alias name or alias ARN")
    return kms_key_id or None


def _parse_source(data: Any, where: str, environ: Mapping[str, str]) -> Source:
    reader = FieldReader(data, where, environ)
    kind = reader.raw("type", kind=str)
    name = reader.text("name", pattern=SOURCE_NAME, what="a source name (letters, digits, '.', '_', '-')")
    source: Source
    if kind == "s3":
        bucket = reader.text("bucket", pattern=BUCKET_NAME, what="a valid S3 bucket name")
        prefix = reader.text("prefix", "")
        if ".." in prefix.split("/") or prefix.startswith("/"):
            raise reader.fail("prefix", f"{prefix!r} must be a relative key prefix without '..'")
        plain = reader.raw("plain_prefix", False, bool)
        if prefix and not prefix.endswith("/") and not plain:
            # 'docs' would also take 'docs-old/' and 'docs.txt': a folder is written 'docs/'.
            raise reader.fail(
                "prefix",
                f"{prefix!r} does not end in '/', so it would also take keys such as {prefix + '-old/'!r}; write "
                f"{prefix + '/'!r} for a folder, or set \"plain_prefix\": true to take every key starting with {prefix!r}",
            )
        archived = reader.raw("archived", "skip", str)
        if archived not in ARCHIVED_CHOICES:
            raise reader.fail("archived", f"must be 'skip' or 'thaw', got {archived!r}")
        kms_key_id = _kms_key_id(reader, environ)
        source = S3Source(name=name, bucket=bucket, prefix=prefix, archived=archived, kms_key_id=kms_key_id)
    elif kind == "dynamodb":
        table = reader.text("table", pattern=TABLE_NAME, what="a valid DynamoDB table name")
        segments = reader.integer("segments", 4, minimum=1)
        # Each segment is scanned by its own thread into its own temporary file.
        if segments > MAX_SCAN_SEGMENTS:
            raise reader.fail("segments", f"must be at most {MAX_SCAN_SEGMENTS}, got {segments}")
        source = DynamoDBSource(name=name, table=table, segments=segments)
    elif kind == "directory":
        path = reader.text("path")
        if not path:
            raise reader.fail("path", "must not be empty")
        source = DirectorySource(name=name, path=path, hash_contents=reader.raw("hash_contents", False, bool))
    else:
        raise reader.fail("type", f"unknown source type {kind!r}; expected one of 's3', 'dynamodb', 'directory'")
    reader.finish()
    return source


def _parse_lifecycle(data: Any, where: str, environ: Mapping[str, str]) -> Lifecycle:
    reader = FieldReader(data, where, environ)
    raw_transitions = reader.raw("transitions", [], list)
    transitions: list[Transition] = []
    for index, item in enumerate(raw_transitions):
        item_reader = FieldReader(item, f"{where}, transitions[{index}]", environ)
        days = item_reader.integer("days", minimum=0)
        storage_class = item_reader.raw("storage_class", kind=str)
        if storage_class not in STORAGE_CLASS_ORDER:
            raise item_reader.fail(
                "storage_class", f"unknown storage class {storage_class!r}; expected one of {', '.join(STORAGE_CLASS_ORDER)}"
            )
        floor = MINIMUM_TRANSITION_DAYS.get(storage_class, 0)
        if days < floor:
            raise item_reader.fail("days", f"S3 does not move objects to {storage_class} before day {floor}, got {days}")
        item_reader.finish()
        if transitions:
            before = transitions[-1]
            if STORAGE_CLASS_ORDER.index(storage_class) <= STORAGE_CLASS_ORDER.index(before.storage_class):
                raise item_reader.fail(
                    "storage_class", f"{storage_class} must be colder than the previous transition's {before.storage_class}"
                )
            if days <= before.days:
                raise item_reader.fail(
                    "days", f"{storage_class} after {days} days must be later than {before.storage_class} after {before.days} days"
                )
            # Moving a version on before its minimum duration in the previous class is billed as if it stayed.
            stay = MINIMUM_STORAGE_DAYS[before.storage_class]
            if days - before.days < stay:
                raise item_reader.fail(
                    "days",
                    f"{storage_class} after {days} days leaves {before.storage_class} after {days - before.days} days, "
                    f"before its {stay}-day minimum storage duration; use at least {before.days + stay}",
                )
        transitions.append(Transition(days=days, storage_class=storage_class))
    expiration = reader.integer("noncurrent_expiration_days", None, minimum=1)
    if expiration is not None and transitions:
        # A version is only ever deleted once it has stayed its minimum duration in its last storage class.
        last = transitions[-1]
        earliest = last.days + MINIMUM_STORAGE_DAYS[last.storage_class]
        if expiration < earliest:
            raise reader.fail(
                "noncurrent_expiration_days",
                f"{expiration} days would delete versions before their {MINIMUM_STORAGE_DAYS[last.storage_class]}-day "
                f"minimum in {last.storage_class} (reached after {last.days} days); use at least {earliest}",
            )
    small_objects = reader.raw("small_objects", "standard", str)
    if small_objects not in SMALL_OBJECT_SETTINGS:
        raise reader.fail(
            "small_objects",
            f"must be 'standard' (objects under 128 KB stay in STANDARD), 'archive' (they transition too) or "
            f"'pack' (small objects are stored inside packs, which transition), got {small_objects!r}",
        )
    if small_objects == "archive" and not any(t.storage_class in SMALL_OBJECT_ARCHIVE_CLASSES for t in transitions):
        # The setting would change nothing: say so rather than let the plan read as if small objects were archived.
        moves = ", ".join(t.storage_class for t in transitions) or "nothing"
        raise reader.fail(
            "small_objects",
            f"'archive' moves objects under 128 KB only to {' or '.join(SMALL_OBJECT_ARCHIVE_CLASSES)}, and this "
            f"lifecycle moves versions to {moves}: they would stay in STANDARD all the same; use 'standard', or "
            "add a GLACIER or DEEP_ARCHIVE transition",
        )
    threshold, target = _pack_sizes(reader, small_objects)
    manifest_days = reader.integer("manifest_glacier_ir_days", None, minimum=0)
    if manifest_days is not None and manifest_days < MIN_MANIFEST_GLACIER_IR_DAYS:
        raise reader.fail(
            "manifest_glacier_ir_days",
            f"must be at least {MIN_MANIFEST_GLACIER_IR_DAYS} (the jobs read the manifests of the last 9 days, which "
            f"would each be billed per GB read in {MANIFEST_STORAGE_CLASS}), got {manifest_days}",
        )
    reader.finish()
    return Lifecycle(
        transitions=tuple(transitions),
        noncurrent_expiration_days=expiration,
        small_objects=small_objects,
        pack_threshold_bytes=threshold,
        pack_target_bytes=target,
        manifest_glacier_ir_days=manifest_days,
    )


def _pack_sizes(reader: FieldReader, small_objects: str) -> tuple[int, int]:
    """`pack_threshold_bytes` and `pack_target_bytes`: only with `small_objects` 'pack'; the target at least
    128 KiB (every full pack transitions), the threshold above 0, at most 16 MiB and at most the target."""
    threshold = reader.integer("pack_threshold_bytes", DEFAULT_PACK_THRESHOLD_BYTES, minimum=1)
    target = reader.integer("pack_target_bytes", DEFAULT_PACK_TARGET_BYTES, minimum=0)
    if small_objects != "pack":
        for name in ("pack_threshold_bytes", "pack_target_bytes"):
            if name in reader.data:
                raise reader.fail(name, f"applies only with small_objects 'pack' (this plan has {small_objects!r})")
    if target < MIN_PACK_TARGET_BYTES:
        raise reader.fail(
            "pack_target_bytes",
            f"must be at least {MIN_PACK_TARGET_BYTES} (128 KiB: S3 does not transition smaller objects), got {target}",
        )
    if threshold > MAX_PACK_THRESHOLD_BYTES:
        raise reader.fail(
            "pack_threshold_bytes",
            f"must be at most {MAX_PACK_THRESHOLD_BYTES} (16 MiB: a packed object is read into memory), got {threshold}",
        )
    if threshold > target:
        raise reader.fail("pack_threshold_bytes", f"must be at most pack_target_bytes ({target}), got {threshold}")
    return threshold, target


def _parse_plan(data: Any, where: str, environ: Mapping[str, str]) -> Plan:
    reader = FieldReader(data, where, environ)
    name = reader.text("name", pattern=PLAN_NAME, what="a plan name (lowercase letters, digits, '_', '-')")
    reader.where = f"plan '{name}'"
    bucket = reader.text("bucket", pattern=BUCKET_NAME, what="a valid S3 bucket name (3-63 lowercase letters, digits, '.', '-')")
    if ".." in bucket or re.match(r"^\d+\.\d+\.\d+\.\d+$", bucket):
        raise reader.fail("bucket", f"{bucket!r} is not a valid S3 bucket name")
    raw_sources = reader.raw("sources", kind=list)
    if not raw_sources:
        raise reader.fail("sources", "must list at least one source")
    sources = [_parse_source(item, f"plan '{name}', sources[{i}]", environ) for i, item in enumerate(raw_sources)]
    seen: set[str] = set()
    for source in sources:
        if source.name in seen:
            raise reader.fail("sources", f"two sources are named {source.name!r}")
        seen.add(source.name)
        if isinstance(source, S3Source) and source.bucket == bucket:
            raise reader.fail("sources", f"source {source.name!r} reads the plan's own backup bucket {bucket!r}")
    lifecycle = _parse_lifecycle(reader.raw("lifecycle", {}, dict), f"plan '{name}', field 'lifecycle'", environ)
    raw_retention = reader.raw("retention", None)
    if "retention" in data:
        retention = parse_retention(raw_retention, f"plan '{name}', field 'retention'")
    else:
        retention = DEFAULT_RETENTION
    fractions = {}
    for field_name, default in (("max_delete_fraction", 0.2), ("max_delete_fraction_window", 0.3)):
        value = reader.raw(field_name, default, (int, float))
        # 0 would hold back every deletion for ever and 1 would turn the guard off: an intended mass deletion
        # is allowed for one run instead (POST /backup {"allow_deletions": [...]}).
        if not 0 < value < 1:
            raise reader.fail(
                field_name, f"must be strictly between 0 and 1, got {value}; to let one backup delete more, allow it "
                "for that run (allow_deletions)"
            )
        fractions[field_name] = float(value)
    prune_fraction = reader.raw("max_prune_fraction", 0.3, (int, float))
    # Above a half the guard would hold almost nothing (0.9999 turns it off): a larger prune is never
    # routine, and is allowed for the one run that needs it.
    if not 0 < prune_fraction <= MAX_PRUNE_FRACTION:
        raise reader.fail(
            "max_prune_fraction", f"must be above 0 and at most {MAX_PRUNE_FRACTION}, got {prune_fraction}; to let one "
            "prune remove more, allow it for that run (allow_large_prune)"
        )
    window_days = reader.integer("deletion_window_days", 7, minimum=1)
    if window_days > 90:
        raise reader.fail("deletion_window_days", f"must be at most 90, got {window_days}")
    object_lock = None
    raw_lock = reader.raw("object_lock", None, (dict, type(None)))
    if raw_lock is not None:
        lock_reader = FieldReader(raw_lock, f"plan '{name}', field 'object_lock'", environ)
        mode = lock_reader.raw("mode", kind=str)
        if mode not in OBJECT_LOCK_MODES:
            raise lock_reader.fail("mode", f"must be GOVERNANCE or COMPLIANCE, got {mode!r}")
        object_lock = ObjectLock(mode=mode, days=lock_reader.integer("days", minimum=1))
        if object_lock.days > MAX_RETENTION_DAYS:
            raise lock_reader.fail("days", f"S3 retains for at most {MAX_RETENTION_DAYS} days (100 years), got {object_lock.days}")
        expiration = lifecycle.noncurrent_expiration_days
        if expiration is not None and expiration < object_lock.days:
            raise reader.fail(
                "object_lock",
                f"{mode} retention of {object_lock.days} days outlasts the lifecycle's noncurrent_expiration_days "
                f"({expiration}): S3 cannot expire locked versions; retain for at most {expiration} days or expire later",
            )
        lock_reader.finish()
    offsite = _parse_offsite(reader.raw("offsite", None, (dict, type(None))), name, bucket, retention, environ)
    kms_key_id = _kms_key_id(reader, environ)
    if offsite is not None and kms_key_id:
        # Replicating SSE-KMS objects needs a key in the vault account and grants on both keys: not built yet.
        raise reader.fail("offsite", "a plan encrypted with kms_key_id cannot have a vault yet; leave one of them out")
    # Checked after object_lock, whose conflict with the same field is the more specific message.
    expiration = lifecycle.noncurrent_expiration_days
    if expiration is not None and expiration <= retention.horizon_days():
        # S3 would delete versions that kept snapshots still name: their restores would fail.
        written = "" if "retention" in data else " (the default, this plan has no 'retention' block)"
        raise PlanError(
            f"plan '{name}', field 'lifecycle', field 'noncurrent_expiration_days': {expiration} days could delete "
            f"versions that the retention policy{written} ({retention.describe()}) still keeps: a kept snapshot "
            f"can be up to {retention.horizon_days()} days old (its horizon). It is only a backstop: use more "
            f"than {retention.horizon_days()} days, or leave it out and let retention decide"
        )
    reader.finish()
    return Plan(
        name=name,
        bucket=bucket,
        sources=tuple(sorted(sources, key=lambda s: s.name)),
        lifecycle=lifecycle,
        max_delete_fraction=fractions["max_delete_fraction"],
        max_delete_fraction_window=fractions["max_delete_fraction_window"],
        deletion_window_days=window_days,
        object_lock=object_lock,
        kms_key_id=kms_key_id,
        retention=retention,
        max_prune_fraction=float(prune_fraction),
        offsite=offsite,
    )


def _parse_offsite(
    raw: Any, name: str, bucket: str, retention: RetentionPolicy, environ: Mapping[str, str]
) -> Offsite | None:
    """`{"account", "region", "bucket", "storage_class", "object_lock_days", "max_lag_hours", "rtc"}`: the plan's vault. That it lies
    in another account or region than the stage is checked once both are known (`check_offsite_apart`)."""
    if raw is None:
        return None
    reader = FieldReader(raw, f"plan '{name}', field 'offsite'", environ)
    # (Placeholders read "placeholder" in the import-time shape check: the patterns wait for the stage.)
    shape_only = isinstance(environ, AnyVariable)
    account = reader.text("account")
    if not shape_only and not ACCOUNT_ID.match(account):
        raise reader.fail("account", f"{account!r} is not an AWS account id (12 digits)")
    region = reader.text("region")
    if not shape_only and not REGION_NAME.match(region):
        raise reader.fail("region", f"{region!r} is not an AWS region name such as 'eu-central-1'")
    vault = reader.text("bucket", pattern=BUCKET_NAME, what="a valid S3 bucket name")
    if vault == bucket:
        raise reader.fail("bucket", f"{vault!r} is the plan's own backup bucket; the vault is a bucket of its own")
    storage_class = reader.raw("storage_class", "DEEP_ARCHIVE", str)
    if storage_class not in REPLICA_STORAGE_CLASSES:
        raise reader.fail(
            "storage_class",
            f"{storage_class!r} is not a class S3 Replication writes replicas in; one of {', '.join(REPLICA_STORAGE_CLASSES)}",
        )
    days = reader.integer("object_lock_days", minimum=1)
    if days > MAX_RETENTION_DAYS:
        raise reader.fail("object_lock_days", f"S3 retains for at most {MAX_RETENTION_DAYS} days (100 years), got {days}")
    horizon = retention.horizon_days()
    if days < horizon:
        # A shorter lock would let whoever holds the vault account delete versions the oldest kept snapshots
        # still name: the vault would no longer hold every snapshot the plan promises.
        raise reader.fail(
            "object_lock_days",
            f"{days} days is shorter than the retention policy's horizon ({retention.describe()}: a kept snapshot "
            f"can be up to {horizon} days old); the vault's versions must stay locked at least that long, so "
            f"use at least {horizon}",
        )
    max_lag_hours = reader.integer("max_lag_hours", 36, minimum=1)
    rtc = reader.raw("rtc", False, bool)
    reader.finish()
    return Offsite(account=account, region=region, bucket=vault, object_lock_days=days, storage_class=storage_class,
                   max_lag_hours=max_lag_hours, rtc=rtc)


def check_offsite_apart(plans: PlanSet, account: str, region: str) -> None:
    """Refuse a vault in the stage's own account *and* region: it would share every failure the off-site copy
    is there to survive (the region's loss, the account's closure, its administrator). Another account, or
    another region, or both (what the documentation recommends), is accepted: each survives something the
    backup bucket alone does not."""
    for plan in plans.plans:
        offsite = plan.offsite
        if offsite is not None and offsite.account == account and offsite.region == region:
            raise PlanError(
                f"plan '{plan.name}', field 'offsite': the vault {offsite.bucket!r} is in the stage's own account "
                f"{account} and region {region}; put it in another account, another region, or both"
            )


def parse_plans(document: Any, environ: Mapping[str, str], origin: str = "plans file") -> PlanSet:
    """Validate a decoded plans document and fill in its `${VARIABLES}` from `environ`."""
    reader = FieldReader(document, origin, environ)
    version = reader.raw("version", 1, int)
    if version != 1:
        raise reader.fail("version", f"unsupported version {version}; this release reads version 1")
    raw_plans = reader.raw("plans", kind=list)
    if not raw_plans:
        raise reader.fail("plans", "must list at least one plan")
    plans: list[Plan] = []
    for index, item in enumerate(raw_plans):
        plan = _parse_plan(item, f"{origin}, plans[{index}]", environ)
        for other in plans:
            if other.name == plan.name:
                raise PlanError(f"plan '{plan.name}', field 'name': the name is used by two plans")
            if other.bucket == plan.bucket:
                raise PlanError(f"plan '{plan.name}', field 'bucket': {plan.bucket!r} is also plan '{other.name}''s bucket")
        plans.append(plan)
    catalog = reader.text("catalog_bucket", None, pattern=BUCKET_NAME, what="a valid S3 bucket name")
    if catalog is None:
        catalog = plans[0].bucket
    elif catalog not in {plan.bucket for plan in plans}:
        raise reader.fail("catalog_bucket", f"{catalog!r} must be one of the plans' buckets")
    _check_vaults(plans, catalog)
    schedule = parse_schedule(reader.raw("schedule", None), f"{origin}, field 'schedule'")
    inventory = _parse_inventory(reader.raw("inventory", None), f"{origin}, field 'inventory'", environ, plans)
    _check_manifest_tiers(plans, inventory)
    reader.finish()
    return PlanSet(plans=tuple(plans), catalog_bucket=catalog, schedule=schedule, inventory=inventory)


def _check_vaults(plans: list[Plan], catalog: str) -> None:
    """Every vault is a bucket of its own, and all of them are in one account and region: a restore from the
    vault reads a plan's snapshot and the catalog's sealed records with one set of the vault's credentials,
    so the catalog bucket's plan has a vault too whenever any plan has one."""
    with_vault = [plan for plan in plans if plan.offsite is not None]
    if not with_vault:
        return
    buckets = {plan.bucket for plan in plans}
    first = with_vault[0]
    assert first.offsite is not None
    seen: dict[str, str] = {}
    for plan in with_vault:
        offsite = plan.offsite
        assert offsite is not None
        where = f"plan '{plan.name}', field 'offsite'"
        if offsite.bucket in buckets:
            raise PlanError(f"{where}, field 'bucket': {offsite.bucket!r} is a backup bucket; the vault is a bucket of its own")
        if offsite.bucket in seen:
            raise PlanError(f"{where}, field 'bucket': {offsite.bucket!r} is also plan '{seen[offsite.bucket]}''s vault")
        seen[offsite.bucket] = plan.name
        for field_name in ("account", "region"):
            if getattr(offsite, field_name) != getattr(first.offsite, field_name):
                raise PlanError(
                    f"{where}, field '{field_name}': {getattr(offsite, field_name)!r} differs from plan "
                    f"'{first.name}''s {getattr(first.offsite, field_name)!r}; every vault is in one account and region"
                )
    catalog_plan = next(plan for plan in plans if plan.bucket == catalog)
    if catalog_plan.offsite is None:
        raise PlanError(
            f"plan '{catalog_plan.name}', field 'offsite': plan '{first.name}' has a vault, so the catalog bucket's "
            f"plan needs one too (a restore from the vault reads the backup records kept there)"
        )


def _check_manifest_tiers(plans: list[Plan], inventory: InventoryPlan | None) -> None:
    """A plan's manifests may move to GLACIER_IR only with an inventory: without one the prune and the cost
    report read every kept manifest every day, and each read of a manifest there is billed per GB."""
    if inventory is not None:
        return
    for plan in plans:
        if plan.lifecycle.manifest_glacier_ir_days is not None:
            raise PlanError(
                f"plan '{plan.name}', field 'lifecycle', field 'manifest_glacier_ir_days': needs the plans file's "
                f"'inventory': without it the prune and the cost report read every kept manifest each day, and each "
                f"read of a manifest in {MANIFEST_STORAGE_CLASS} is billed per GB retrieved; remove the field or set "
                "'inventory'"
            )


def _parse_inventory(raw: Any, where: str, environ: Mapping[str, str], plans: list[Plan]) -> InventoryPlan | None:
    """`{"bucket": "...", "frequency": "Daily" | "Weekly"}`: where S3 Inventory delivers the backup buckets'
    reports. The bucket is one of its own: never a backup bucket (its reports are not backed-up data)."""
    if raw is None:
        return None
    reader = FieldReader(raw, where, environ)
    bucket = reader.text("bucket", pattern=BUCKET_NAME, what="a valid S3 bucket name")
    if bucket in {plan.bucket for plan in plans}:
        raise reader.fail("bucket", f"{bucket!r} is a backup bucket; inventory reports go to a bucket of their own")
    frequency = reader.text("frequency", "Daily")
    if frequency not in ("Daily", "Weekly"):
        raise reader.fail("frequency", f"{frequency!r} is not 'Daily' or 'Weekly'")
    reader.finish()
    return InventoryPlan(bucket=bucket, frequency=frequency)


def load_plans(environ: Mapping[str, str], path: str | Path | None = None) -> PlanSet:
    """Read, validate and resolve the plans file (the shipped one unless `path` or PLANS_FILE says otherwise)."""
    chosen = Path(path or environ.get("PLANS_FILE") or DEFAULT_PLANS_FILE)
    document = read_json_file(chosen, "plans file")
    plans = parse_plans(document, environ, origin=f"plans file {chosen.name}")
    if chosen.resolve() == Path(DEFAULT_PLANS_FILE).resolve():
        return plans
    # The schedules were registered when the app was packaged, from the shipped file: another file chosen
    # when a handler runs can neither change them nor be told a different one.
    if "schedule" in document:
        raise PlanError(
            f"plans file {chosen.name}, field 'schedule': the schedule is set in the shipped chalicelib/plans.json "
            "only (it is registered when the app is packaged, before PLANS_FILE is read); move it there"
        )
    return replace(plans, schedule=check_plans_file().schedule)


def check_plans_file(path: str | Path | None = None) -> PlanSet:
    """Validate everything that does not depend on the stage. Run when the app is imported."""
    return load_plans(AnyVariable(), path)
