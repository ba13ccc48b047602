"""The price list every cost figure is computed from: `chalicelib/prices.json`, or the file PRICES_FILE names.

Prices change and differ by region, so they live in one data file with the date they were read and where
from, never in code. A stage in another region sets the stage variable PRICES_FILE to its own copy.
Every mistake in the file is a `PriceError` naming the file and the field, e.g.
`prices file prices.json, field 'storage.GLACIER': must be a non-negative number, got str`.

Units: storage and retrieval per GB of 2^30 bytes (AWS bills GB-months in binary gigabytes), requests and
lifecycle transitions per 1,000, KB = 1,024 bytes. The file states them (`units`) and they are checked,
so a copy edited with decimal gigabytes in mind is refused rather than silently 7% off.
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from types import MappingProxyType
from typing import Any

from chalicelib.errors import BackupError
from chalicelib.json_fields import read_json_file

DEFAULT_PRICES_FILE = Path(__file__).with_name("prices.json")
GB = 1024**3
KB = 1024
STORAGE_CLASSES = ("STANDARD", "STANDARD_IA", "ONEZONE_IA", "INTELLIGENT_TIERING", "GLACIER_IR", "GLACIER", "DEEP_ARCHIVE")
# Classes a lifecycle rule can move a version into (every class but STANDARD).
TRANSITION_CLASSES = STORAGE_CLASSES[1:]
RETRIEVAL_OPTIONS = (
    ("GLACIER", "Expedited"),
    ("GLACIER", "Standard"),
    ("GLACIER", "Bulk"),
    ("DEEP_ARCHIVE", "Standard"),
    ("DEEP_ARCHIVE", "Bulk"),
    # No thaw: a GET reads it at once, billed per GB (and at its own GET price) on top of the request.
    ("GLACIER_IR", "Instant"),
)
INSTANT_TIER = "Instant"
# The slowest documented thaw is 48 hours; a minimum duration over a year would be no storage class S3 has.
MAX_THAW_HOURS = 96
MAX_MINIMUM_DAYS = 366
MAX_SIZE_KB = 1024
_TOP_LEVEL = (
    "region",
    "read_on",
    "currency",
    "source",
    "units",
    "storage",
    "requests",
    "transitions",
    "retrieval",
    "minimum_storage_days",
    "archive_overhead",
    "aws_backup_s3",
    "upkeep",
    "replication",
)


class PriceError(BackupError):
    """The prices file is wrong. The message names the file and the field."""


@dataclass(frozen=True)
class Retrieval:
    """Thawing an archived version with one retrieval option."""

    per_gb: float
    per_1000_requests: float
    # The documented upper bound of the wait.
    thaw_hours: float


@dataclass(frozen=True)
class AwsBackupS3:
    """AWS Backup's prices for S3 data, the managed alternative this system is compared with."""

    warm_storage: float
    minimum_billable_bytes: int
    # False: every S3 backup stays in warm storage for as long as it is kept.
    cold_tier: bool
    note: str


@dataclass(frozen=True)
class UpkeepPrices:
    """What the product's own recurring work costs besides S3 requests (chalicelib/cost/upkeep.py)."""

    inventory_per_million_objects: float
    lambda_gb_second: float
    lambda_per_million_requests: float
    sns_per_million_publishes: float
    cloudwatch_per_thousand_metric_requests: float
    # Lambda's /tmp beyond the 512 MB every function has, per GB-second.
    lambda_ephemeral_gb_second: float = 0.0


@dataclass(frozen=True)
class ReplicationPrices:
    """What S3 Replication into a plan's vault costs besides the replicas' storage (chalicelib/cost/vault_model.py)."""

    # Data transfer out to another region, per GB replicated (none when the vault is in the same region); also
    # what a restore copying out of a vault in another region pays.
    inter_region_transfer_per_gb: float
    # Replication Time Control, per GB replicated, when on.
    rtc_per_gb: float
    # One replication PUT per replicated version, at the PUT price of the replica's class, per 1,000.
    put_per_1000: Mapping[str, float]


@dataclass(frozen=True)
class Prices:
    """One region's list prices. Storage per GB-month, requests and transitions per 1,000."""

    origin: str
    region: str
    read_on: date
    currency: str
    source: tuple[str, ...]
    storage: Mapping[str, float]
    put_copy_post_list: float
    get: float
    transitions: Mapping[str, float]
    retrieval: Mapping[tuple[str, str], Retrieval]
    minimum_storage_days: Mapping[str, int]
    # Each object archived in one of these classes is billed `overhead_standard_bytes` at STANDARD and
    # `overhead_archive_bytes` at its own class on top of its size (the index S3 keeps to find it).
    archive_classes: tuple[str, ...]
    overhead_standard_bytes: int
    overhead_archive_bytes: int
    aws_backup: AwsBackupS3
    upkeep: UpkeepPrices
    replication: ReplicationPrices

    def storage_per_byte_month(self, storage_class: str) -> float:
        return self.storage[storage_class] / GB

    def transition_per_request(self, storage_class: str) -> float:
        return self.transitions[storage_class] / 1000

    def minimum_days(self, storage_class: str) -> int:
        """Days a version is billed for in this class however early it leaves (0 for STANDARD)."""
        return self.minimum_storage_days.get(storage_class, 0)


class _Fields:
    """Reads one JSON object of the prices file, naming the dotted field path in every error."""

    def __init__(self, data: Any, path: str, origin: str) -> None:
        self.origin = origin
        self.path = path
        if not isinstance(data, dict):
            raise self.error("", f"must be a JSON object, got {type(data).__name__}")
        self.data = data

    def _name(self, key: str) -> str:
        return f"{self.path}.{key}" if self.path and key else (self.path or key)

    def error(self, key: str, problem: str) -> PriceError:
        name = self._name(key)
        where = f"prices file {self.origin}, field '{name}'" if name else f"prices file {self.origin}"
        return PriceError(f"{where}: {problem}")

    def only(self, allowed: tuple[str, ...] | list[str], required: bool = True) -> None:
        unknown = sorted(set(self.data) - set(allowed))
        if unknown:
            raise self.error("", f"unknown field(s) {', '.join(map(repr, unknown))}; expected {', '.join(allowed)}")
        if required:
            for key in allowed:
                if key not in self.data:
                    raise self.error(key, "is required")

    def child(self, key: str) -> _Fields:
        if key not in self.data:
            raise self.error(key, "is required")
        return _Fields(self.data[key], self._name(key), self.origin)

    def number(self, key: str, maximum: float | None = None) -> float:
        value = self.data.get(key)
        if key not in self.data:
            raise self.error(key, "is required")
        # JSON true is an int in Python; a price of `true` is a mistake.
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
            got = "a boolean" if isinstance(value, bool) else (repr(value) if isinstance(value, (int, float)) else type(value).__name__)
            raise self.error(key, f"must be a non-negative number, got {got}")
        if maximum is not None and value > maximum:
            raise self.error(key, f"must be at most {maximum}, got {value}")
        return float(value)

    def integer(self, key: str, maximum: int, exactly: int | None = None, why: str = "") -> int:
        value = self.data.get(key)
        if key not in self.data:
            raise self.error(key, "is required")
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            got = "a boolean" if isinstance(value, bool) else (repr(value) if isinstance(value, (int, float)) else type(value).__name__)
            raise self.error(key, f"must be a non-negative integer, got {got}")
        if exactly is not None and value != exactly:
            raise self.error(key, f"must be {exactly}{why}, got {value}")
        if value > maximum:
            raise self.error(key, f"must be at most {maximum}, got {value}")
        return value

    def text(self, key: str, pattern: re.Pattern[str] | None = None, what: str = "") -> str:
        value = self.data.get(key)
        if key not in self.data:
            raise self.error(key, "is required")
        if not isinstance(value, str):
            raise self.error(key, f"must be a string, got {type(value).__name__}")
        if pattern is not None and not pattern.match(value):
            raise self.error(key, f"{value!r} is not {what}")
        return value

    def boolean(self, key: str) -> bool:
        value = self.data.get(key)
        if not isinstance(value, bool):
            raise self.error(key, f"must be true or false, got {type(value).__name__}")
        return value


_REGION = re.compile(r"^[a-z]{2}(-gov)?-[a-z]+-\d$")
_CURRENCY = re.compile(r"^[A-Z]{3}$")
_URL = re.compile(r"^https://\S+$")


def _per_class(fields: _Fields, classes: tuple[str, ...], read: Any) -> dict[str, Any]:
    fields.only(classes)
    return {name: read(name) for name in classes}


def parse_prices(document: Any, origin: str = "prices.json") -> Prices:
    """Validate a decoded prices document. `origin` names the file in errors."""
    top = _Fields(document, "", origin)
    top.only(_TOP_LEVEL)
    region = top.text("region", _REGION, "an AWS region name such as 'us-east-1'")
    read_on_text = top.text("read_on", re.compile(r"^\d{4}-\d{2}-\d{2}$"), "a date written YYYY-MM-DD")
    try:
        read_on = date.fromisoformat(read_on_text)
    except ValueError as exc:
        raise top.error("read_on", f"{read_on_text!r} is not a date") from exc
    currency = top.text("currency", _CURRENCY, "a three-letter currency code such as 'USD'")
    sources = top.data["source"]
    if not isinstance(sources, list) or not sources:
        raise top.error("source", "must be a list of at least one https:// address (where the prices were read)")
    for index, url in enumerate(sources):
        if not isinstance(url, str) or not _URL.match(url):
            raise top.error(f"source[{index}]", f"must be an https:// address, got {url!r}")

    units = top.child("units")
    units.only(("gb_bytes", "kb_bytes", "note"))
    units.integer("gb_bytes", GB, exactly=GB, why=" (2^30: AWS bills GB-months in binary gigabytes)")
    units.integer("kb_bytes", KB, exactly=KB, why=" (the KB of the archive overhead and the 128 KB rules)")
    units.text("note")

    storage_fields = top.child("storage")
    storage = _per_class(storage_fields, STORAGE_CLASSES, storage_fields.number)
    request_fields = top.child("requests")
    request_fields.only(("put_copy_post_list", "get"))
    transition_fields = top.child("transitions")
    transitions = _per_class(transition_fields, TRANSITION_CLASSES, transition_fields.number)

    retrieval_fields = top.child("retrieval")
    by_class: dict[str, list[str]] = {}
    for storage_class, tier in RETRIEVAL_OPTIONS:
        by_class.setdefault(storage_class, []).append(tier)
    retrieval_fields.only(tuple(by_class))
    retrieval: dict[tuple[str, str], Retrieval] = {}
    for storage_class, tiers in by_class.items():
        class_fields = retrieval_fields.child(storage_class)
        class_fields.only(tuple(tiers))
        for tier in tiers:
            option = class_fields.child(tier)
            option.only(("per_gb", "per_1000_requests", "thaw_hours"))
            retrieval[(storage_class, tier)] = Retrieval(
                per_gb=option.number("per_gb"),
                per_1000_requests=option.number("per_1000_requests"),
                thaw_hours=option.number("thaw_hours", maximum=MAX_THAW_HOURS),
            )

    minimum_fields = top.child("minimum_storage_days")
    minimum_days = _per_class(minimum_fields, TRANSITION_CLASSES, lambda name: minimum_fields.integer(name, MAX_MINIMUM_DAYS))

    overhead = top.child("archive_overhead")
    overhead.only(("classes", "standard_kb", "archive_kb"))
    archive_classes = overhead.data["classes"]
    if not isinstance(archive_classes, list) or not all(isinstance(c, str) for c in archive_classes):
        raise overhead.error("classes", "must be a list of storage class names")
    for name in archive_classes:
        if name not in TRANSITION_CLASSES:
            raise overhead.error("classes", f"unknown storage class {name!r}; expected some of {', '.join(TRANSITION_CLASSES)}")

    backup = top.child("aws_backup_s3")
    backup.only(("warm_storage", "minimum_billable_object_kb", "cold_tier", "note"))
    aws_backup = AwsBackupS3(
        warm_storage=backup.number("warm_storage"),
        minimum_billable_bytes=backup.integer("minimum_billable_object_kb", MAX_SIZE_KB) * KB,
        cold_tier=backup.boolean("cold_tier"),
        note=backup.text("note"),
    )
    upkeep_fields = top.child("upkeep")
    upkeep_fields.only(
        (
            "inventory_per_million_objects", "lambda_gb_second", "lambda_per_million_requests",
            "sns_per_million_publishes", "cloudwatch_per_thousand_metric_requests", "lambda_ephemeral_gb_second", "note",
        )
    )
    upkeep_fields.text("note")
    upkeep = UpkeepPrices(
        inventory_per_million_objects=upkeep_fields.number("inventory_per_million_objects"),
        lambda_gb_second=upkeep_fields.number("lambda_gb_second"),
        lambda_per_million_requests=upkeep_fields.number("lambda_per_million_requests"),
        sns_per_million_publishes=upkeep_fields.number("sns_per_million_publishes"),
        cloudwatch_per_thousand_metric_requests=upkeep_fields.number("cloudwatch_per_thousand_metric_requests"),
        lambda_ephemeral_gb_second=upkeep_fields.number("lambda_ephemeral_gb_second"),
    )
    replication_fields = top.child("replication")
    replication_fields.only(("inter_region_transfer_per_gb", "rtc_per_gb", "put_per_1000", "note"))
    replication_fields.text("note")
    put_fields = replication_fields.child("put_per_1000")
    replication = ReplicationPrices(
        inter_region_transfer_per_gb=replication_fields.number("inter_region_transfer_per_gb"),
        rtc_per_gb=replication_fields.number("rtc_per_gb"),
        put_per_1000=MappingProxyType(_per_class(put_fields, STORAGE_CLASSES, put_fields.number)),
    )
    return Prices(
        origin=origin,
        region=region,
        read_on=read_on,
        currency=currency,
        source=tuple(sources),
        storage=MappingProxyType(storage),
        put_copy_post_list=request_fields.number("put_copy_post_list"),
        get=request_fields.number("get"),
        transitions=MappingProxyType(transitions),
        retrieval=MappingProxyType(retrieval),
        minimum_storage_days=MappingProxyType(minimum_days),
        archive_classes=tuple(archive_classes),
        overhead_standard_bytes=overhead.integer("standard_kb", MAX_SIZE_KB) * KB,
        overhead_archive_bytes=overhead.integer("archive_kb", MAX_SIZE_KB) * KB,
        aws_backup=aws_backup,
        upkeep=upkeep,
        replication=replication,
    )


def load_prices(path: str | Path | None = None, environ: Mapping[str, str] | None = None) -> Prices:
    """Read and validate the prices file: `path`, else the one PRICES_FILE names, else the shipped one.

    Read it when a handler or script runs, never at import: PRICES_FILE is a stage variable.
    """
    env = os.environ if environ is None else environ
    chosen = Path(path or env.get("PRICES_FILE") or DEFAULT_PRICES_FILE)
    document = read_json_file(chosen, "prices file", PriceError)
    return parse_prices(document, origin=chosen.name)
