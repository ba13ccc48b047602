"""Verifying packs: each pack version is looked at once per verification, for all the objects it holds.

A packed object has no S3 version of its own: its bytes are a range of its pack's version. So what the
metadata check asks of a version (there, not a delete marker, the size and ETag stored) is asked of the
pack, once: from the pack's row when an inventory report lists it, else by one HEAD of the pack's
version, however many objects it holds. Every packed object of that version then takes the pack's verdict:
a pack missing or damaged is reported for each object in it, by name. An object's range that would reach
past the pack's data (into its footer, or past its end) is damaged too, whatever the pack's recorded size.

`PackLooks` keeps what was learnt per (pack key, version id) for the rest of a verification (one
invocation of a job, or one on-demand check): a few thousand packs hold tens of millions of objects.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from chalicelib.catalog.manifests import Entry
from chalicelib.catalog.packs import FOOTER_BYTES
from chalicelib.errors import describe_error
from chalicelib.inventory.reports import Row
from chalicelib.s3docs import is_missing

logger = logging.getLogger(__name__)

PackVersion = tuple[str, str]


@dataclass(frozen=True)
class PackFacts:
    """What S3 (a HEAD) or an inventory report (a row) says of one pack version (None: not said)."""

    exists: bool
    delete_marker: bool = False
    size: int | None = None
    etag: str | None = None
    storage_class: str | None = None
    restore: str | None = None
    # The HEAD failed otherwise than "not there": every object of the pack is an error, not a finding.
    error: str | None = None


def facts_of_row(row: Row) -> PackFacts:
    etag = None if row.etag is None else row.etag.strip('"')
    return PackFacts(True, row.is_delete_marker, row.size, etag, row.storage_class)


def head_pack(s3: Any, bucket: str, version: PackVersion) -> PackFacts:
    """One HEAD of a pack version."""
    key, version_id = version
    try:
        head = s3.head_object(Bucket=bucket, Key=key, VersionId=version_id)
    except ClientError as exc:
        if is_missing(exc):
            return PackFacts(False)
        return PackFacts(True, error=describe_error(exc))
    except BotoCoreError as exc:
        return PackFacts(True, error=describe_error(exc))
    if head.get("DeleteMarker"):
        return PackFacts(True, delete_marker=True)
    return PackFacts(
        True,
        size=head.get("ContentLength"),
        etag=str(head.get("ETag", "")).strip('"'),
        storage_class=head.get("StorageClass"),
        restore=head.get("Restore"),
    )


def pack_problem(bucket: str, entry: Entry, facts: PackFacts) -> tuple[str, str] | None:
    """Why a packed entry's object is missing or damaged given its pack's facts ("missing" or "damaged",
    and the detail, which names the pack and its version); None when nothing is wrong with it."""
    where = f"its pack s3://{bucket}/{entry.pack_key} version {entry.version_id}"
    if not facts.exists:
        return "missing", f"{where} does not exist"
    if facts.delete_marker:
        return "missing", f"{where} is a delete marker"
    if entry.pack_size is not None and facts.size != entry.pack_size:
        return "damaged", f"{where} has {facts.size} bytes instead of the recorded {entry.pack_size}"
    if entry.pack_etag and facts.etag is not None and facts.etag != entry.pack_etag:
        return "damaged", f"{where} has ETag {facts.etag} instead of the recorded {entry.pack_etag}"
    end = (entry.pack_offset or 0) + entry.size
    if facts.size is not None and end > facts.size - FOOTER_BYTES:
        return "damaged", f"its bytes {entry.pack_offset}-{end - 1} fall outside the data of {where} ({facts.size} bytes)"
    return None


class PackLooks:
    """The facts of each pack version looked at so far in one verification. `headed`: HEADs sent."""

    def __init__(self) -> None:
        self._facts: dict[PackVersion, PackFacts] = {}
        self.headed = 0

    def facts(self, entry: Entry) -> PackFacts:
        """The facts of a packed entry's pack (`settle` has seen the entry)."""
        return self._facts[(str(entry.pack_key), entry.version_id)]

    def settle(self, s3: Any, bucket: str, versions: Iterable[tuple[Entry, Row | None]], max_workers: int = 16) -> int:
        """Learn the facts of every pack the packed entries name not yet known: from the pack's row given
        beside an entry, else by one HEAD per pack version (on `max_workers` threads). The HEADs sent."""
        unknown: set[PackVersion] = set()
        for entry, row in versions:
            if not entry.packed:
                continue
            version = (str(entry.pack_key), entry.version_id)
            if version in self._facts:
                continue
            if row is not None:
                self._facts[version] = facts_of_row(row)
                unknown.discard(version)
            else:
                unknown.add(version)
        if not unknown:
            return 0
        asked = sorted(unknown)
        with ThreadPoolExecutor(max_workers=max(1, min(max_workers, len(asked)))) as pool:
            answers = list(pool.map(lambda version: head_pack(s3, bucket, version), asked))
        self._facts.update(zip(asked, answers))
        self.headed += len(asked)
        return len(asked)
