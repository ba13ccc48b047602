"""The plans file: the shipped defaults, and every mistake reported as a PlanError naming plan and field."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from chalicelib.errors import PlanError
from chalicelib.plans import DirectorySource, DynamoDBSource, S3Source
from chalicelib.plans_file import check_plans_file, load_plans, parse_plans
from chalicelib.retention import RetentionPolicy

ENV = {
    "BACKUP_BUCKET_PREFIX": "acme-backup-test",
    "DOCUMENTS_SOURCE_BUCKET": "acme-documents",
    "PHOTOS_SOURCE_BUCKET": "acme-photos",
    "DATABASE_TABLE": "acme-orders",
}


def valid_document() -> dict[str, Any]:
    return {
        "version": 1,
        "plans": [
            {
                "name": "documents",
                "bucket": "acme-backup-documents",
                "sources": [{"type": "s3", "name": "docs", "bucket": "acme-documents", "prefix": "shared/"}],
                "lifecycle": {
                    "transitions": [
                        {"days": 30, "storage_class": "GLACIER"},
                        {"days": 180, "storage_class": "DEEP_ARCHIVE"},
                    ]
                },
                "retention": {"keep_daily": 35, "keep_weekly": 12, "keep_monthly": 24, "keep_yearly": 7},
            },
            # No retention block: the default applies.
            {
                "name": "database",
                "bucket": "acme-backup-database",
                "sources": [{"type": "dynamodb", "name": "orders", "table": "acme-orders", "segments": 2}],
                "lifecycle": {"transitions": [{"days": 7, "storage_class": "GLACIER"}]},
            },
        ],
    }


def test_shipped_plans_are_the_three_default_plans() -> None:
    plans = load_plans(ENV)
    assert plans.names == ["documents", "photos", "database"]
    documents, photos, database = plans.plans
    for plan in (documents, photos):
        assert [(t.days, t.storage_class) for t in plan.lifecycle.transitions] == [(30, "GLACIER"), (180, "DEEP_ARCHIVE")]
        assert plan.max_delete_fraction == 0.2
    assert [(t.days, t.storage_class) for t in database.lifecycle.transitions] == [(7, "GLACIER")]
    assert documents.bucket == "acme-backup-test-documents"
    assert documents.sources == (S3Source(name="documents", bucket="acme-documents", prefix=""),)
    assert database.sources == (DynamoDBSource(name="orders", table="acme-orders"),)
    assert plans.catalog_bucket == "acme-backup-test-documents"
    for plan in (documents, photos):
        assert plan.retention == RetentionPolicy(keep_daily=35, keep_weekly=12, keep_monthly=24, keep_yearly=7)
    assert database.retention == RetentionPolicy(keep_daily=35, keep_weekly=12, keep_monthly=12)
    for plan in plans.plans:
        assert plan.lifecycle.small_objects == "standard"
        assert plan.lifecycle.transition_default_minimum_object_size == "all_storage_classes_128K"
        assert plan.lifecycle.noncurrent_expiration_days is None


def test_shipped_plans_file_passes_the_import_time_check() -> None:
    assert check_plans_file().names == ["documents", "photos", "database"]


def test_a_valid_document_with_every_source_type(tmp_path: Path) -> None:
    document = valid_document()
    document["plans"][1]["sources"].append({"type": "directory", "name": "exports", "path": str(tmp_path), "hash_contents": True})
    plans = parse_plans(document, ENV)
    assert plans.get("database").source("exports") == DirectorySource(name="exports", path=str(tmp_path), hash_contents=True)
    assert plans.get("documents").source("docs").prefix == "shared/"
    assert plans.select(["database"]) == [plans.get("database")]


def _set(path: str, value: Any) -> Any:
    """A mutation of the valid document: set (or with value=..., delete) the field at a dotted path."""

    def mutate(document: dict[str, Any]) -> None:
        *parents, last = path.split(".")
        target: Any = document
        for part in parents:
            target = target[int(part)] if part.isdigit() else target[part]
        if value is ...:
            del target[int(last) if last.isdigit() else last]
        elif last.isdigit():
            target[int(last)] = value
        else:
            target[last] = value

    return mutate


def _duplicate_plan(document: dict[str, Any]) -> None:
    twin = copy.deepcopy(document["plans"][0])
    twin["bucket"] = "acme-backup-other"
    document["plans"].append(twin)


# Each case: a mutation of a valid document, then fragments that the error message must contain
# (the plan, the field, and what is wrong).
BAD_DOCUMENTS = {
    "unknown source type": (_set("plans.0.sources.0.type", "ftp"), ["plan 'documents'", "'type'", "unknown source type 'ftp'"]),
    "missing bucket": (_set("plans.0.bucket", ...), ["plan 'documents'", "'bucket'", "required"]),
    "missing source bucket": (_set("plans.0.sources.0.bucket", ...), ["plan 'documents'", "sources[0]", "'bucket'"]),
    "invalid bucket name": (_set("plans.0.bucket", "Acme_Backups"), ["plan 'documents'", "'bucket'", "Acme_Backups"]),
    "bucket name like an ip address": (_set("plans.0.bucket", "192.168.1.10"), ["plan 'documents'", "'bucket'"]),
    "deep archive before glacier": (
        _set("plans.0.lifecycle.transitions.1.days", 30),
        ["plan 'documents'", "transitions[1]", "'days'", "later than GLACIER"],
    ),
    "deep archive and glacier swapped": (
        _set("plans.0.lifecycle.transitions", [{"days": 30, "storage_class": "DEEP_ARCHIVE"}, {"days": 180, "storage_class": "GLACIER"}]),
        ["plan 'documents'", "transitions[1]", "'storage_class'", "colder"],
    ),
    "negative days": (_set("plans.1.lifecycle.transitions.0.days", -1), ["plan 'database'", "'days'", "at least 0"]),
    "days not a number": (_set("plans.1.lifecycle.transitions.0.days", "7"), ["plan 'database'", "'days'", "integer"]),
    "days a boolean": (_set("plans.1.lifecycle.transitions.0.days", True), ["plan 'database'", "'days'", "boolean"]),
    "unknown storage class": (_set("plans.1.lifecycle.transitions.0.storage_class", "COLD"), ["plan 'database'", "'storage_class'", "COLD"]),
    "duplicate plan names": (_duplicate_plan, ["plan 'documents'", "'name'", "two plans"]),
    "unknown plan field": (_set("plans.0.retain", 30), ["plan 'documents'", "'retain'", "unknown field"]),
    "retention not an object": (_set("plans.0.retention", 30), ["plan 'documents'", "'retention'", "JSON object", "int"]),
    "retention null": (_set("plans.0.retention", None), ["plan 'documents'", "'retention'", "JSON object"]),
    "retention without a rule": (_set("plans.0.retention", {}), ["plan 'documents'", "'retention'", "at least one rule"]),
    "unknown retention rule": (
        _set("plans.0.retention.keep_hourly", 24),
        ["plan 'documents'", "'retention'", "'keep_hourly'", "unknown field"],
    ),
    "retention count as text": (
        _set("plans.0.retention.keep_daily", "35"),
        ["plan 'documents'", "'retention'", "'keep_daily'", "integer"],
    ),
    "retention count negative": (
        _set("plans.0.retention.keep_yearly", -7),
        ["plan 'documents'", "'retention'", "'keep_yearly'", "at least 0"],
    ),
    "retention count a boolean": (
        _set("plans.0.retention.keep_weekly", False),
        ["plan 'documents'", "'retention'", "'keep_weekly'", "boolean"],
    ),
    # keep_yearly 7 keeps snapshots up to 7 x 366 + 14 = 2576 days old.
    "expiration inside the retention horizon": (
        _set("plans.0.lifecycle.noncurrent_expiration_days", 400),
        ["plan 'documents'", "'lifecycle'", "'noncurrent_expiration_days'", "400 days", "2576 days", "backstop"],
    ),
    "expiration equal to the retention horizon": (
        _set("plans.0.lifecycle.noncurrent_expiration_days", 2576),
        ["plan 'documents'", "'noncurrent_expiration_days'", "more than 2576"],
    ),
    # The default policy (no block) keeps 12 months: 12 x 31 + 14 = 386 days.
    "expiration inside the default retention's horizon": (
        _set("plans.1.lifecycle.noncurrent_expiration_days", 386),
        ["plan 'database'", "'noncurrent_expiration_days'", "386 days", "the default", "more than 386"],
    ),
    "small objects choice unknown": (
        _set("plans.0.lifecycle.small_objects", "glacier"),
        ["plan 'documents'", "'lifecycle'", "'small_objects'", "'standard'", "'archive'", "'glacier'"],
    ),
    "small objects choice not text": (
        _set("plans.0.lifecycle.small_objects", True),
        ["plan 'documents'", "'lifecycle'", "'small_objects'", "a string"],
    ),
    "archiving small objects with no archive class to go to": (
        _set("plans.0.lifecycle", {"transitions": [{"days": 30, "storage_class": "STANDARD_IA"}], "small_objects": "archive"}),
        ["plan 'documents'", "'lifecycle'", "'small_objects'", "GLACIER or DEEP_ARCHIVE", "STANDARD_IA", "'standard'"],
    ),
    "archiving small objects without transitions": (
        _set("plans.0.lifecycle", {"small_objects": "archive"}),
        ["plan 'documents'", "'small_objects'", "moves versions to nothing"],
    ),
    "pack target below the transition minimum": (
        _set("plans.0.lifecycle", {"small_objects": "pack", "pack_target_bytes": 131071}),
        ["plan 'documents'", "'lifecycle'", "'pack_target_bytes'", "at least 131072", "131071"],
    ),
    "pack threshold above the pack target": (
        _set("plans.0.lifecycle", {"small_objects": "pack", "pack_threshold_bytes": 200000, "pack_target_bytes": 131072}),
        ["plan 'documents'", "'pack_threshold_bytes'", "at most pack_target_bytes", "200000"],
    ),
    "pack threshold too large to read into memory": (
        _set("plans.0.lifecycle", {"small_objects": "pack", "pack_threshold_bytes": 20_000_000, "pack_target_bytes": 1 << 26}),
        ["plan 'documents'", "'pack_threshold_bytes'", "at most 16777216", "20000000"],
    ),
    "pack threshold of nothing": (
        _set("plans.0.lifecycle", {"small_objects": "pack", "pack_threshold_bytes": 0}),
        ["plan 'documents'", "'pack_threshold_bytes'", "at least 1"],
    ),
    "pack sizes without packing": (
        _set("plans.0.lifecycle.pack_target_bytes", 1 << 24),
        ["plan 'documents'", "'pack_target_bytes'", "only with small_objects 'pack'", "'standard'"],
    ),
    "unknown source field": (_set("plans.1.sources.0.colour", "red"), ["plan 'database'", "sources[0]", "'colour'"]),
    "no sources": (_set("plans.0.sources", []), ["plan 'documents'", "'sources'", "at least one"]),
    "sources not a list": (_set("plans.0.sources", {"type": "s3"}), ["plan 'documents'", "'sources'", "list"]),
    "source not an object": (_set("plans.0.sources.0", "acme-documents"), ["plan 'documents'", "sources[0]", "object"]),
    "source reads its own backup bucket": (
        _set("plans.0.sources.0.bucket", "acme-backup-documents"),
        ["plan 'documents'", "'sources'", "own backup bucket"],
    ),
    "delete fraction above one": (_set("plans.0.max_delete_fraction", 1.5), ["plan 'documents'", "'max_delete_fraction'"]),
    "prune guard all but off": (
        _set("plans.0.max_prune_fraction", 0.9999), ["plan 'documents'", "'max_prune_fraction'", "at most 0.5"]
    ),
    "too many scan segments": (_set("plans.1.sources.0.segments", 100000), ["plan 'database'", "'segments'", "at most"]),
    "zero scan segments": (_set("plans.1.sources.0.segments", 0), ["plan 'database'", "'segments'", "at least 1"]),
    "invalid table name": (_set("plans.1.sources.0.table", "a"), ["plan 'database'", "'table'"]),
    "prefix escaping upwards": (_set("plans.0.sources.0.prefix", "../x"), ["plan 'documents'", "'prefix'"]),
    "missing plan name": (_set("plans.0.name", ...), ["plans[0]", "'name'", "required"]),
    "plan name with capitals": (_set("plans.0.name", "Documents"), ["plans[0]", "'name'", "Documents"]),
    "plan not an object": (_set("plans.0", ["documents"]), ["plans[0]", "object"]),
    "missing env variable": (
        _set("plans.0.bucket", "${UNSET_PREFIX}-documents"),
        ["plan 'documents'", "'bucket'", "UNSET_PREFIX", "not set"],
    ),
    "missing env variable in a source": (
        _set("plans.1.sources.0.table", "${UNSET_TABLE}"),
        ["plan 'database'", "sources[0]", "'table'", "UNSET_TABLE"],
    ),
    "catalog bucket not a plan bucket": (_set("catalog_bucket", "acme-elsewhere"), ["'catalog_bucket'", "acme-elsewhere"]),
    "unsupported version": (_set("version", 2), ["'version'", "unsupported"]),
    "no plans": (_set("plans", []), ["'plans'", "at least one"]),
}


@pytest.mark.parametrize("case", sorted(BAD_DOCUMENTS))
def test_a_mistake_is_a_plan_error_naming_plan_and_field(case: str) -> None:
    mutate, fragments = BAD_DOCUMENTS[case]
    document = valid_document()
    mutate(document)
    with pytest.raises(PlanError) as caught:
        parse_plans(document, ENV)
    message = str(caught.value)
    for fragment in fragments:
        assert fragment in message, f"{fragment!r} missing from {message!r}"


def test_the_valid_document_itself_passes() -> None:
    # The mutations above start from this document: it must be valid, or every case proves nothing.
    assert parse_plans(valid_document(), ENV).names == ["documents", "database"]


def test_a_plan_without_a_retention_block_keeps_a_year() -> None:
    database = parse_plans(valid_document(), ENV).get("database")
    assert database.retention == RetentionPolicy(keep_daily=35, keep_weekly=12, keep_monthly=12)


def test_noncurrent_expiration_just_beyond_the_horizon_is_accepted() -> None:
    document = valid_document()
    # Horizons: 7 x 366 + 14 = 2576 days (documents), 12 x 31 + 14 = 386 days (database, the default).
    document["plans"][0]["lifecycle"]["noncurrent_expiration_days"] = 2577
    document["plans"][1]["lifecycle"]["noncurrent_expiration_days"] = 387
    plans = parse_plans(document, ENV)
    assert plans.get("documents").lifecycle.noncurrent_expiration_days == 2577
    assert plans.get("database").lifecycle.noncurrent_expiration_days == 387


def test_a_shorter_retention_allows_a_shorter_backstop() -> None:
    document = valid_document()
    # keep_daily 7 and keep_weekly 4: 4 x 7 + 14 = 42 days; GLACIER after 30 days needs 30 + 90 = 120 anyway.
    document["plans"][0]["retention"] = {"keep_daily": 7, "keep_weekly": 4}
    document["plans"][0]["lifecycle"] = {"transitions": [{"days": 30, "storage_class": "GLACIER"}], "noncurrent_expiration_days": 120}
    assert parse_plans(document, ENV).get("documents").lifecycle.noncurrent_expiration_days == 120
    # The minimum-duration rule still applies on its own.
    document["plans"][0]["lifecycle"]["noncurrent_expiration_days"] = 119
    with pytest.raises(PlanError, match="minimum in GLACIER"):
        parse_plans(document, ENV)


def test_small_objects_archive_selects_the_per_class_default() -> None:
    document = valid_document()
    document["plans"][0]["lifecycle"]["small_objects"] = "archive"
    plans = parse_plans(document, ENV)
    assert plans.get("documents").lifecycle.small_objects == "archive"
    assert plans.get("documents").lifecycle.transition_default_minimum_object_size == "varies_by_storage_class"
    assert plans.get("database").lifecycle.small_objects == "standard"


def test_small_objects_pack_has_its_sizes_and_keeps_the_128k_default() -> None:
    document = valid_document()
    document["plans"][0]["lifecycle"]["small_objects"] = "pack"
    lifecycle = parse_plans(document, ENV).get("documents").lifecycle
    assert (lifecycle.small_objects, lifecycle.pack_threshold_bytes, lifecycle.pack_target_bytes) == ("pack", 131072, 16777216)
    # Packs are large objects: the bucket keeps S3's default, and the cost model prices them as 'standard'.
    assert lifecycle.transition_default_minimum_object_size == "all_storage_classes_128K"
    assert lifecycle.bucket_setting_choice == "standard"
    # Strictly below the threshold is packed; exactly at it is not.
    assert lifecycle.packs(131071) and not lifecycle.packs(131072) and lifecycle.packs(0)
    document["plans"][0]["lifecycle"].update(pack_threshold_bytes=4096, pack_target_bytes=131072)
    lifecycle = parse_plans(document, ENV).get("documents").lifecycle
    assert (lifecycle.pack_threshold_bytes, lifecycle.pack_target_bytes) == (4096, 131072)
    assert lifecycle.packs(4095) and not lifecycle.packs(4096)
    assert not parse_plans(valid_document(), ENV).get("documents").lifecycle.packs(10)


@pytest.mark.parametrize(
    "text, fragments",
    [
        ('{"version": 1, "plans": [', ["not valid JSON", "line 1"]),
        ("{'plans': []}", ["not valid JSON"]),
        ("", ["not valid JSON"]),
        ("[]", ["must be a JSON object", "list"]),
    ],
    ids=["truncated", "single quotes", "empty", "a list"],
)
def test_bad_json_in_the_plans_file(tmp_path: Path, text: str, fragments: list[str]) -> None:
    path = tmp_path / "plans.json"
    path.write_text(text)
    with pytest.raises(PlanError) as caught:
        load_plans(ENV, path)
    for fragment in fragments + ["plans.json"]:
        assert fragment in str(caught.value)


def test_plans_file_chosen_by_plans_file_variable(tmp_path: Path) -> None:
    path = tmp_path / "custom.json"
    path.write_text(json.dumps(valid_document()))
    assert load_plans({**ENV, "PLANS_FILE": str(path)}).names == ["documents", "database"]
    with pytest.raises(PlanError, match="cannot be read"):
        load_plans({**ENV, "PLANS_FILE": str(tmp_path / "missing.json")})


def test_missing_env_variable_in_the_shipped_file_names_plan_field_and_variable() -> None:
    env = {k: v for k, v in ENV.items() if k != "PHOTOS_SOURCE_BUCKET"}
    with pytest.raises(PlanError) as caught:
        load_plans(env)
    message = str(caught.value)
    assert "plan 'photos'" in message and "'bucket'" in message and "PHOTOS_SOURCE_BUCKET" in message


# Any JSON value at all, placed anywhere in the document: the parser must answer with a PlanError or a
# valid PlanSet, never a KeyError, TypeError or AttributeError.
json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-10**6, 10**6) | st.floats(allow_nan=True) | st.text(max_size=20),
    lambda children: st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=10), children, max_size=3),
    max_leaves=8,
)
FIELD_PATHS = [
    "version",
    "plans",
    "catalog_bucket",
    "plans.0",
    "plans.0.name",
    "plans.0.bucket",
    "plans.0.sources",
    "plans.0.sources.0",
    "plans.0.sources.0.type",
    "plans.0.sources.0.name",
    "plans.0.sources.0.bucket",
    "plans.0.sources.0.prefix",
    "plans.0.lifecycle",
    "plans.0.lifecycle.transitions",
    "plans.0.lifecycle.transitions.0",
    "plans.0.lifecycle.transitions.0.days",
    "plans.0.lifecycle.transitions.1.storage_class",
    "plans.0.lifecycle.noncurrent_expiration_days",
    "plans.0.lifecycle.small_objects",
    "plans.0.retention",
    "plans.0.retention.keep_daily",
    "plans.1.retention",
    "plans.0.max_delete_fraction",
    "plans.0.object_lock",
    "plans.0.kms_key_id",
    "plans.0.offsite",
    "plans.1.sources.0.segments",
    "plans.1.sources.0.table",
]


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(path=st.sampled_from(FIELD_PATHS), value=json_values)
def test_no_value_anywhere_escapes_as_anything_but_a_plan_error(path: str, value: Any) -> None:
    document = valid_document()
    _set(path, value)(document)
    try:
        parse_plans(document, ENV)
    except PlanError as exc:
        assert str(exc)


def test_the_inventory_entry_names_a_bucket_of_its_own_and_a_frequency() -> None:
    assert parse_plans(valid_document(), ENV).inventory is None
    document = {**valid_document(), "inventory": {"bucket": "${BACKUP_BUCKET_PREFIX}-inventory", "frequency": "Weekly"}}
    inventory = parse_plans(document, ENV).inventory
    assert inventory is not None
    assert (inventory.bucket, inventory.frequency, inventory.prefix) == ("acme-backup-test-inventory", "Weekly", "inventory")
    assert parse_plans({**valid_document(), "inventory": {"bucket": "acme-inventory"}}, ENV).inventory.frequency == "Daily"


@pytest.mark.parametrize(
    "entry, message",
    [
        ({"bucket": "acme-backup-database"}, "field 'inventory', field 'bucket': 'acme-backup-database' is a backup bucket"),
        ({"bucket": "acme-inventory", "frequency": "Hourly"}, "field 'frequency': 'Hourly' is not 'Daily' or 'Weekly'"),
        ({"bucket": "acme-inventory", "prefix": "x"}, "field 'inventory': unknown field(s) 'prefix'"),
        ({}, "field 'inventory', field 'bucket': is required"),
        ({"bucket": "Not_A_Bucket"}, "field 'bucket': 'Not_A_Bucket' is not a valid S3 bucket name"),
    ],
)
def test_a_wrong_inventory_entry_is_refused_naming_the_field(entry: dict[str, Any], message: str) -> None:
    with pytest.raises(PlanError) as raised:
        parse_plans({**valid_document(), "inventory": entry}, ENV)
    assert message in str(raised.value)


def test_manifests_move_to_glacier_ir_only_when_asked_after_10_days_at_least_and_with_an_inventory() -> None:
    inventory = {"bucket": "acme-inventory", "frequency": "Weekly"}
    assert parse_plans({**valid_document(), "inventory": inventory}, ENV).get("documents").lifecycle.manifest_glacier_ir_days is None
    document = {**valid_document(), "inventory": inventory}
    document["plans"][0]["lifecycle"]["manifest_glacier_ir_days"] = 14
    plans = parse_plans(document, ENV)
    assert plans.get("documents").lifecycle.manifest_glacier_ir_days == 14
    assert plans.get("database").lifecycle.manifest_glacier_ir_days is None
    document["plans"][0]["lifecycle"]["manifest_glacier_ir_days"] = 9
    with pytest.raises(PlanError, match=r"plan 'documents', field 'lifecycle', field 'manifest_glacier_ir_days': must be at least 10 \("):
        parse_plans(document, ENV)
    # Without an inventory the prune and the cost report read every kept manifest daily: refused.
    document = valid_document()
    document["plans"][0]["lifecycle"]["manifest_glacier_ir_days"] = 14
    with pytest.raises(PlanError, match=r"plan 'documents', field 'lifecycle', field 'manifest_glacier_ir_days': needs the plans file's 'inventory'"):
        parse_plans(document, ENV)
