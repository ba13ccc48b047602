"""The plans file: what is backed up, where to, and how it ages into cold storage.

`chalicelib/plans.json` holds one plan per backup bucket. Names that differ per stage (buckets, tables,
the topic) are written as `${VARIABLE}` and filled in from the stage's environment when a handler runs
(reading and checking the file: `chalicelib.plans_file`).

Each plan says which snapshots it keeps (`retention`, see `chalicelib.retention`). Retention is the
mechanism that bounds storage; `lifecycle.noncurrent_expiration_days` is only a backstop, so it must be
longer than anything the retention policy can keep.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Union

from chalicelib.errors import BadRequest
from chalicelib.retention import RetentionPolicy
from chalicelib.schedule import Schedule

# Lifecycle storage classes in the order data may move through them; a transition may only go colder.
STORAGE_CLASS_ORDER = ("STANDARD_IA", "ONEZONE_IA", "INTELLIGENT_TIERING", "GLACIER_IR", "GLACIER", "DEEP_ARCHIVE")
# Minimum storage durations (days): deleting earlier is billed as if kept that long.
MINIMUM_STORAGE_DAYS = {
    "STANDARD_IA": 30,
    "ONEZONE_IA": 30,
    "INTELLIGENT_TIERING": 0,
    "GLACIER_IR": 90,
    "GLACIER": 90,
    "DEEP_ARCHIVE": 180,
}
# S3 refuses transitions into the infrequent-access classes before 30 days.
MINIMUM_TRANSITION_DAYS = {"STANDARD_IA": 30, "ONEZONE_IA": 30}
OBJECT_LOCK_MODES = ("GOVERNANCE", "COMPLIANCE")
# What a lifecycle does with objects under 128 KB, and the bucket setting
# (`TransitionDefaultMinimumObjectSize`) that says so. "standard": S3's default, small objects never leave
# STANDARD. "archive": they go to GLACIER and DEEP_ARCHIVE too (never to the IA classes or GLACIER_IR).
# An archived object carries 40 KB of overhead, so archiving a tiny object can cost more than keeping it.
# "pack": objects below the plan's pack threshold are stored inside pack objects of several MiB
# (chalicelib/backup/packing.py), which are large enough to transition under S3's default.
SMALL_OBJECT_SETTINGS = {
    "standard": "all_storage_classes_128K",
    "archive": "varies_by_storage_class",
    "pack": "all_storage_classes_128K",
}
# The choices that differ only in the bucket's setting, which the cost model prices side by side; a "pack"
# plan's stored versions (packs and large objects) live under the "standard" setting.
BUCKET_SETTING_CHOICES = ("standard", "archive")
# Under "pack": objects strictly smaller than the threshold are packed (one exactly at it is copied as it is),
# into packs of about the target size. A pack is never made smaller than S3's 128 KB transition minimum on
# purpose, so the target may not be below it (only a run's last pack can be smaller).
DEFAULT_PACK_THRESHOLD_BYTES = 128 * 1024
DEFAULT_PACK_TARGET_BYTES = 16 * 1024 * 1024
MIN_PACK_TARGET_BYTES = 128 * 1024
# Kept manifests older than a plan's `manifest_glacier_ir_days` move to this class (millisecond reads, no
# thaw): once the prune's and the verification's kept indexes cover them, only a restore or an index rebuilt
# from scratch reads them. Only manifests larger than 128 KB move: S3 Glacier Instant Retrieval bills a
# smaller object as 128 KB.
MANIFEST_STORAGE_CLASS = "GLACIER_IR"
MANIFEST_TRANSITION_MIN_BYTES = 128 * 1024
# The jobs read the manifests their kept indexes do not cover yet: with a weekly inventory report, delivered
# up to 48 hours after its scan, those are up to 9 days old; the vault watch reads the last 8 snapshots.
MIN_MANIFEST_GLACIER_IR_DAYS = 10
# A packed object is read whole into memory: only small objects are.
MAX_PACK_THRESHOLD_BYTES = 16 * 1024 * 1024
# Under "archive", the classes an object under 128 KB may still move to.
SMALL_OBJECT_ARCHIVE_CLASSES = ("GLACIER", "DEEP_ARCHIVE")
# A plan without a `retention` block keeps a year of history: every day for 5 weeks, every week for 12
# weeks, every month for 12 months. Not "keep everything": storage would then grow for ever. Not the
# documents plan's 7 years either: how long data must be kept is a decision for whoever owns it, and an
# unchosen default should stay the cheaper one. Its horizon (386 days) leaves a plans file written before
# retention existed valid as long as its noncurrent_expiration_days was at least 387.
DEFAULT_RETENTION = RetentionPolicy(keep_daily=35, keep_weekly=12, keep_monthly=12)


@dataclass(frozen=True)
class Transition:
    days: int
    storage_class: str


@dataclass(frozen=True)
class Lifecycle:
    transitions: tuple[Transition, ...]
    # Days after which a version that is no longer current is expired; None keeps every version forever.
    noncurrent_expiration_days: int | None = None
    # "standard", "archive" or "pack": see SMALL_OBJECT_SETTINGS.
    small_objects: str = "standard"
    # Under "pack": objects below `pack_threshold_bytes` go into packs of about `pack_target_bytes`.
    pack_threshold_bytes: int = DEFAULT_PACK_THRESHOLD_BYTES
    pack_target_bytes: int = DEFAULT_PACK_TARGET_BYTES
    # Days after which a kept manifest over 128 KB moves to MANIFEST_STORAGE_CLASS; None keeps every manifest
    # in STANDARD.
    manifest_glacier_ir_days: int | None = None

    @property
    def transition_default_minimum_object_size(self) -> str:
        """The bucket lifecycle configuration's `TransitionDefaultMinimumObjectSize` for this choice."""
        return SMALL_OBJECT_SETTINGS[self.small_objects]

    @property
    def bucket_setting_choice(self) -> str:
        """The choice among BUCKET_SETTING_CHOICES that prices this plan's stored versions."""
        return "standard" if self.small_objects == "pack" else self.small_objects

    def packs(self, size: int) -> bool:
        """Whether an object of `size` bytes is stored inside a pack under this lifecycle."""
        return self.small_objects == "pack" and size < self.pack_threshold_bytes


ARCHIVED_CHOICES = ("skip", "thaw")


@dataclass(frozen=True)
class S3Source:
    name: str
    bucket: str
    prefix: str = ""
    # Objects archived at the source (Glacier classes, Intelligent-Tiering's archive tiers) cannot be copied:
    # "skip" counts and lists them; "thaw" asks S3 to thaw them, and a later backup copies them.
    archived: str = "skip"
    # The KMS key the source's objects are encrypted with (SSE-KMS under a customer key): the generated
    # policy may decrypt with this key and no other.
    kms_key_id: str | None = None
    type: str = field(default="s3", init=False)


@dataclass(frozen=True)
class DynamoDBSource:
    name: str
    table: str
    segments: int = 4
    type: str = field(default="dynamodb", init=False)


@dataclass(frozen=True)
class DirectorySource:
    name: str
    path: str
    # When true a file counts as unchanged only if its SHA-256 matches; otherwise size and mtime decide.
    hash_contents: bool = False
    type: str = field(default="directory", init=False)


Source = Union[S3Source, DynamoDBSource, DirectorySource]


@dataclass(frozen=True)
class ObjectLock:
    mode: str
    days: int


# The storage classes S3 Replication may write replicas in (a rule's `Destination.StorageClass`): not
# REDUCED_REDUNDANCY (deprecated), OUTPOSTS, SNOW or EXPRESS_ONEZONE, which are not replication destinations.
REPLICA_STORAGE_CLASSES = (
    "STANDARD", "STANDARD_IA", "ONEZONE_IA", "INTELLIGENT_TIERING", "GLACIER_IR", "GLACIER", "DEEP_ARCHIVE",
)


@dataclass(frozen=True)
class Offsite:
    """A plan's second copy (the plans file's `offsite`): the vault bucket `bucket` in `account` and `region`,
    which S3 Replication fills from the plan's bucket. Backed-up objects (`data/`) are written there in
    `storage_class`; manifests, sealed records and pruned markers in STANDARD, so that a restore from the
    vault can read them at once. Every version there is locked (COMPLIANCE) for `object_lock_days`. A lag of the
    vault beyond `max_lag_hours` is reported after each backup."""

    account: str
    region: str
    bucket: str
    object_lock_days: int
    storage_class: str = "DEEP_ARCHIVE"
    # The newest snapshot complete in the vault may be this many hours behind the newest sealed one before each
    # backup's alert says so (daily backups: a day is normal, two days is not).
    max_lag_hours: int = 36
    # S3 Replication Time Control: 99.99% of new versions replicated within 15 minutes, with replication
    # metrics, at a price per GB replicated (the cost model's `rtc`).
    rtc: bool = False


@dataclass(frozen=True)
class Plan:
    name: str
    bucket: str
    sources: tuple[Source, ...]
    lifecycle: Lifecycle
    # The mass-deletion guard: deletions are held back when more than this share of the plan's objects, or of
    # any one source's, vanished since the previous snapshot...
    max_delete_fraction: float = 0.2
    # ...or when the deletions of the last `deletion_window_days` days together pass this share (slow erosion).
    max_delete_fraction_window: float = 0.3
    deletion_window_days: int = 7
    object_lock: ObjectLock | None = None
    kms_key_id: str | None = None
    # Which snapshots are kept; DEFAULT_RETENTION when the plans file has no `retention` block.
    retention: RetentionPolicy = DEFAULT_RETENTION
    # The prune guard: a prune that would remove more than this share of the plan's snapshots, or of its stored
    # bytes, is held (a retention typo such as keep_daily 1) until allowed for one run.
    max_prune_fraction: float = 0.3
    # The second copy in another account or region; None: the plan has none.
    offsite: Offsite | None = None

    def __post_init__(self) -> None:
        # A snapshot is sorted by (source, key): the engine walks the sources in name order, however the plan
        # was written or built.
        object.__setattr__(self, "sources", tuple(sorted(self.sources, key=lambda s: s.name)))

    def source(self, name: str) -> Source:
        for source in self.sources:
            if source.name == name:
                return source
        raise KeyError(name)


@dataclass(frozen=True)
class InventoryPlan:
    """Where the backup buckets' S3 Inventory reports are delivered (the plans file's `inventory` entry):
    a bucket of their own, under `prefix`, by the configuration `configuration_id` of each backup bucket,
    `Daily` or `Weekly`. Whole-bucket passes read the newest report instead of listing every version."""

    bucket: str
    frequency: str = "Daily"
    prefix: str = "inventory"
    configuration_id: str = "org-backup-versions"


@dataclass(frozen=True)
class PlanSet:
    plans: tuple[Plan, ...]
    # The bucket whose metadata prefix holds the backup records (one of the plans' buckets).
    catalog_bucket: str
    # When the daily backup and prune fire (chalicelib/schedule.py): `rate(1 day)` unless the file sets a time.
    schedule: Schedule = Schedule()
    # S3 Inventory of the backup buckets (None: not configured; whole-bucket passes list and HEAD instead).
    inventory: InventoryPlan | None = None

    @property
    def names(self) -> list[str]:
        return [plan.name for plan in self.plans]

    def get(self, name: str) -> Plan:
        for plan in self.plans:
            if plan.name == name:
                return plan
        raise KeyError(name)

    def check_names(self, names: list[str] | None) -> list[str]:
        """The plans a request names, in file order without repeats (all of them for None); `BadRequest`
        naming every unknown one."""
        known = self.names
        if names is None:
            return known
        unknown = [name for name in names if name not in known]
        if unknown:
            raise BadRequest(f"unknown plan(s) {', '.join(map(repr, unknown))}; the known plans are {', '.join(known)}")
        return [name for name in known if name in set(names)]

    def in_vaults(self) -> PlanSet:
        """The plans as their vaults hold them, for a restore or a verification that reads the vaults alone:
        each plan with a vault reads its vault bucket, and the catalog (sealed backup records, pruned markers,
        the restore's own record) is the catalog plan's vault. Replicas keep their version ids, so the
        manifests and records read there name the vault's own versions. BadRequest when no plan has one."""
        # The vault's versions are locked as the vault locks them (COMPLIANCE), whatever the backup bucket does.
        vaulted = [
            replace(plan, bucket=plan.offsite.bucket, object_lock=ObjectLock("COMPLIANCE", plan.offsite.object_lock_days))
            for plan in self.plans if plan.offsite is not None
        ]
        if not vaulted:
            raise BadRequest("no plan has an 'offsite' vault to read from (see the plans file's 'offsite' entry)")
        catalog = next(plan for plan in self.plans if plan.bucket == self.catalog_bucket)
        assert catalog.offsite is not None  # the plans file requires it once any plan has a vault
        return replace(self, plans=tuple(vaulted), catalog_bucket=catalog.offsite.bucket)

    def select(self, names: list[str] | None) -> list[Plan]:
        """The plans named, in file order; all of them when `names` is None."""
        if names is None:
            return list(self.plans)
        wanted = set(names)
        return [plan for plan in self.plans if plan.name in wanted]
