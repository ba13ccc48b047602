"""Verifying snapshots: is every version a manifest names still in its backup bucket, whole and unchanged?

The metadata check asks S3 about each version (`HeadObject` with `VersionId` and `ChecksumMode=ENABLED`):
it must exist, not be a delete marker, and have the recorded size, ETag and SHA-256 checksum, and nothing of it
may contradict the entry's source identity (catalog/source_identity.py: a forged entry that names a planted
version truly still names other bytes than the source's). No data is read.
An optional sample re-reads a share of the versions and hashes their bytes again, which also catches damage
that S3's metadata would not show.

A packed object is checked by its pack's version, looked at once for all the objects in it
(pack_check.py), and by the re-hash of its range when sampled.

Each daily backup starts a job that verifies a rotating slice of every stored snapshot (job.py): a
version belongs to slice `sha256(stored key, version id) mod 7` (a packed object's stored key is its pack's), and the slice checked is the backup's weekday,
so every stored version is checked once a week whatever the number of snapshots that share it.
"""

from __future__ import annotations

import base64
import hashlib
import logging
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from chalicelib.catalog.manifests import Entry
from chalicelib.catalog.packs import DamagedPack, read_packed
from chalicelib.catalog.source_identity import stored_disagreement
from chalicelib.errors import describe_error
from chalicelib.inventory.reports import Row
from chalicelib.plans import Plan, S3Source
from chalicelib.s3docs import is_missing
from chalicelib.verify.pack_check import PackFacts, PackLooks, facts_of_row, head_pack, pack_problem

logger = logging.getLogger(__name__)

ARCHIVE_CLASSES = ("GLACIER", "DEEP_ARCHIVE")
SLICES = 7
# Findings listed in an answer or a backup record; the counts are always complete.
MAX_LISTED = 100
ProgressCallback = Callable[[int], None]


@dataclass(frozen=True)
class Finding:
    plan: str
    source: str
    key: str
    version_id: str
    problem: str  # "missing" or "damaged"
    detail: str


@dataclass
class VerifyReport:
    checked: int = 0
    sampled: int = 0
    # Sampled versions in an archive class: their bytes cannot be read without a thaw (metadata was checked).
    sample_skipped_archived: int = 0
    # Versions asked about with HeadObject (the rest were found in an inventory report).
    headed: int = 0
    # Versions only snapshots taken since the inventory report's scan name, which it does not list: checked
    # against the next report instead of by HEAD.
    deferred: int = 0
    missing: list[Finding] = field(default_factory=list)
    damaged: list[Finding] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.missing and not self.damaged and not self.errors

    def add(self, other: VerifyReport) -> None:
        self.checked += other.checked
        self.sampled += other.sampled
        self.sample_skipped_archived += other.sample_skipped_archived
        self.headed += other.headed
        self.deferred += other.deferred
        self.missing.extend(other.missing)
        self.damaged.extend(other.damaged)
        self.errors.extend(other.errors)

    def to_dict(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "checked": self.checked,
            "sampled": self.sampled,
            "sample_skipped_archived": self.sample_skipped_archived,
            "missing_count": len(self.missing),
            "damaged_count": len(self.damaged),
            "missing": [asdict(f) for f in self.missing[:MAX_LISTED]],
            "damaged": [asdict(f) for f in self.damaged[:MAX_LISTED]],
            "errors": self.errors[:20],
        }


def _version_hash(entry: Entry) -> int:
    return _stored_version_hash(entry.data_key, entry.version_id)


def _stored_version_hash(stored_key: str, version_id: str) -> int:
    return int.from_bytes(hashlib.sha256(f"{stored_key}\0{version_id}".encode("utf-8")).digest()[:8], "big")


def weekly_slice(entry: Entry) -> int:
    """Which day of the week (0 = Monday) checks this version: a packed object's is its pack's, so that all
    the objects of a pack are checked on one day, by one look at the pack."""
    return stored_slice(entry.stored_key, entry.version_id)


def stored_slice(stored_key: str, version_id: str) -> int:
    """`weekly_slice` of the version stored at `stored_key` (e.g. an inventory report's row)."""
    return _stored_version_hash(stored_key, version_id) % SLICES


def in_sample(entry: Entry, percent: float) -> bool:
    """A stable choice: the same versions are sampled for the same percentage."""
    return (_version_hash(entry) % 10_000) < percent * 100


def _etag_kept(plan: Plan, entry: Entry) -> bool:
    """Whether a single-part copy of the entry's source keeps its ETag: no SSE-KMS key on either side."""
    source = next((s for s in plan.sources if s.name == entry.source), None)
    return plan.kms_key_id is None and not (isinstance(source, S3Source) and source.kms_key_id is not None)


def _source_finding(plan: Plan, entry: Entry, size: int | None, etag: str, checksum: str | None) -> Finding | None:
    found = stored_disagreement(entry, size, etag, checksum, _etag_kept(plan, entry))
    if found is None:
        return None
    return Finding(plan.name, entry.source, entry.key, entry.version_id, "damaged", f"not the source's object: {found}")


def check_metadata(s3: Any, plan: Plan, entry: Entry) -> tuple[Finding | None, dict[str, Any] | None]:
    """The metadata check of one version; also returns S3's answer for the caller's further checks."""

    def finding(problem: str, detail: str) -> Finding:
        return Finding(plan.name, entry.source, entry.key, entry.version_id, problem, detail)

    try:
        head = s3.head_object(Bucket=plan.bucket, Key=entry.stored_key, VersionId=entry.version_id, ChecksumMode="ENABLED")
    except ClientError as exc:
        # The version is gone, or its version id names a delete marker.
        if is_missing(exc):
            return finding("missing", f"version {entry.version_id} of s3://{plan.bucket}/{entry.stored_key} does not exist"), None
        raise
    if head.get("DeleteMarker"):
        return finding("missing", "the version is a delete marker"), None
    if head.get("ContentLength") != entry.size:
        return finding("damaged", f"size {head.get('ContentLength')} instead of the recorded {entry.size}"), head
    etag = head.get("ETag", "").strip('"')
    if entry.etag and etag != entry.etag:
        return finding("damaged", f"ETag {etag} instead of the recorded {entry.etag}"), head
    checksum = head.get("ChecksumSHA256")
    if entry.checksum and checksum != entry.checksum:
        return finding("damaged", f"SHA-256 checksum {checksum} instead of the recorded {entry.checksum}"), head
    return _source_finding(plan, entry, head.get("ContentLength"), etag, checksum), head


def rehash(s3: Any, plan: Plan, entry: Entry) -> Finding | None:
    """Read the version's bytes and compare their hash with the manifest's (a packed object's: its range of its
    pack's version)."""
    if entry.packed:
        try:
            read_packed(s3, plan.bucket, entry)
        except DamagedPack as exc:
            return Finding(plan.name, entry.source, entry.key, entry.version_id, "damaged", str(exc))
        return None
    response = s3.get_object(Bucket=plan.bucket, Key=entry.data_key, VersionId=entry.version_id)
    sha256 = hashlib.sha256()
    md5 = hashlib.md5()  # noqa: S324 - compared with S3's single-part ETag, not used for security
    size = 0
    for block in response["Body"].iter_chunks(1024 * 1024):
        sha256.update(block)
        md5.update(block)
        size += len(block)

    def damaged(detail: str) -> Finding:
        return Finding(plan.name, entry.source, entry.key, entry.version_id, "damaged", detail)

    if size != entry.size:
        return damaged(f"read {size} bytes instead of the recorded {entry.size}")
    if entry.sha256:
        if sha256.hexdigest() != entry.sha256:
            return damaged(f"content SHA-256 {sha256.hexdigest()} instead of the recorded {entry.sha256}")
    elif entry.checksum and "-" not in entry.checksum:
        actual = base64.b64encode(sha256.digest()).decode("ascii")
        if actual != entry.checksum:
            return damaged(f"content SHA-256 {actual} instead of the recorded checksum {entry.checksum}")
    elif entry.etag and "-" not in entry.etag and len(entry.etag) == 32:
        if md5.hexdigest() != entry.etag:
            return damaged(f"content MD5 {md5.hexdigest()} does not match the recorded ETag {entry.etag}")
    return None


def check_row(plan: Plan, entry: Entry, row: Row) -> Finding | None:
    """The metadata check of one version against its inventory report row: what `check_metadata` asks S3,
    read from the report instead (a report lists no checksum value, only its algorithm: the ETag, and the
    sample's re-hash, stand for it)."""

    def finding(problem: str, detail: str) -> Finding:
        return Finding(plan.name, entry.source, entry.key, entry.version_id, problem, detail)

    if row.is_delete_marker:
        return finding("missing", "the version is a delete marker")
    if row.size != entry.size:
        return finding("damaged", f"size {row.size} instead of the recorded {entry.size}")
    if entry.etag and (row.etag or "").strip('"') != entry.etag:
        return finding("damaged", f"ETag {row.etag} instead of the recorded {entry.etag}")
    return _source_finding(plan, entry, row.size, (row.etag or "").strip('"'), None)


def _archived(storage_class: str | None, restore: str | None) -> bool:
    """Whether a version's bytes cannot be read without a thaw."""
    return storage_class in ARCHIVE_CLASSES and 'ongoing-request="false"' not in (restore or "")


def _sampled(s3: Any, plan: Plan, entry: Entry, part: VerifyReport, archived: bool, sample_percent: float) -> None:
    if sample_percent > 0 and in_sample(entry, sample_percent):
        if archived:
            part.sample_skipped_archived = 1
        else:
            part.sampled = 1
            found = rehash(s3, plan, entry)
            if found is not None:
                part.damaged.append(found)


def check_packed(s3: Any, plan: Plan, entry: Entry, facts: PackFacts, sample_percent: float) -> VerifyReport:
    """One packed object, by its pack's facts (pack_check.py: learnt once for all the pack's objects); then
    the re-hash of its range if sampled."""
    part = VerifyReport(checked=1)
    if facts.error is not None:
        part.errors.append(f"{plan.name}: {entry.source}/{entry.key}: its pack {entry.pack_key}: {facts.error}")
        return part
    problem = pack_problem(plan.bucket, entry, facts)
    if problem is not None:
        kind, detail = problem
        found = Finding(plan.name, entry.source, entry.key, entry.version_id, kind, detail)
        (part.missing if kind == "missing" else part.damaged).append(found)
        return part
    _sampled(s3, plan, entry, part, _archived(facts.storage_class, facts.restore), sample_percent)
    return part


def check_version(
    s3: Any, plan: Plan, entry: Entry, row: Row | None, sample_percent: float, packs: PackLooks | None = None
) -> VerifyReport:
    """One version: against its report row when there is one, else by HEAD; then the re-hash if sampled.
    A packed object: by its pack's facts, from `packs` (which has settled them), else from the pack's row
    or one HEAD of the pack."""
    if entry.packed:
        if packs is not None:
            return check_packed(s3, plan, entry, packs.facts(entry), sample_percent)
        facts = facts_of_row(row) if row is not None else head_pack(s3, plan.bucket, (str(entry.pack_key), entry.version_id))
        part = check_packed(s3, plan, entry, facts, sample_percent)
        part.headed = int(row is None)
        return part
    part = VerifyReport(checked=1)
    if row is None:
        part.headed = 1
        found, head = check_metadata(s3, plan, entry)
        archived = head is not None and _archived(head.get("StorageClass"), head.get("Restore"))
    else:
        # A report does not say whether an archived version has been thawed: it is taken as not.
        found, archived = check_row(plan, entry, row), _archived(row.storage_class, None)
    if found is not None:
        (part.missing if found.problem == "missing" else part.damaged).append(found)
    else:
        _sampled(s3, plan, entry, part, archived, sample_percent)
    return part


def verify_entries(
    s3: Any,
    plan: Plan,
    entries: Iterable[Entry],
    sample_percent: float = 0,
    max_workers: int = 16,
    progress: ProgressCallback | None = None,
    packs: PackLooks | None = None,
) -> VerifyReport:
    """Check each entry's metadata by HEAD (a packed one's: one HEAD of each pack), and re-hash the sampled
    ones."""
    return verify_versions(s3, plan, ((entry, None) for entry in entries), sample_percent, max_workers, progress, packs)


def verify_versions(
    s3: Any,
    plan: Plan,
    versions: Iterable[tuple[Entry, Row | None]],
    sample_percent: float = 0,
    max_workers: int = 16,
    progress: ProgressCallback | None = None,
    packs: PackLooks | None = None,
) -> VerifyReport:
    """Check each entry against its report row, or by HEAD where it has none, and re-hash the sampled ones.
    Only the versions that need a request (a HEAD, or a sampled re-read) go through the thread pool; the rest,
    nearly all of them against a report, are checked in this thread, in a few microseconds each.

    A packed entry's row is its pack's: each pack version is looked at once (its row, or one HEAD) for all
    its objects, and `packs` keeps what was learnt for the caller's next batches."""
    report = VerifyReport()
    listed = list(versions)
    packs = PackLooks() if packs is None else packs
    report.headed += packs.settle(s3, plan.bucket, listed, max_workers)

    def one(version: tuple[Entry, Row | None]) -> VerifyReport:
        entry, row = version
        try:
            return check_version(s3, plan, entry, row, sample_percent, packs)
        except (ClientError, BotoCoreError) as exc:
            headed = int(row is None and not entry.packed)
            return VerifyReport(checked=1, headed=headed, errors=[f"{plan.name}: {entry.source}/{entry.key}: {describe_error(exc)}"])
        finally:
            if progress is not None:
                progress(1)

    asking = [
        position
        for position, (entry, row) in enumerate(listed)
        if (row is None and not entry.packed) or (sample_percent > 0 and in_sample(entry, sample_percent))
    ]
    answers: dict[int, VerifyReport] = {}
    if asking:
        with ThreadPoolExecutor(max_workers=max_workers) as pool:
            answers = dict(zip(asking, pool.map(one, (listed[position] for position in asking))))
    # In the order given, whichever way each was checked: the findings come out in (source, key) order.
    for position, version in enumerate(listed):
        report.add(answers[position] if position in answers else one(version))
    return report
