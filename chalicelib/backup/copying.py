"""Copying one batch of a source's compared objects, and writing their manifest entries in key order.

A batch's copies start at once on the plan run's thread pool (`submit`); its entries are written once they
are done (`flush`), so the pool never drains between batches. An object unchanged since the previous
snapshot keeps its entry, unless what the entry says of its version disagrees with the source as listed
(catalog/source_identity.py): that is tampering, and the object is copied again. One gone from the source stays
as a held entry (a deletion candidate, decided once the whole plan is compared); one that failed keeps the older
version the snapshot had.
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

from chalicelib.backup.compare import Action
from chalicelib.backup.packing import Packer
from chalicelib.backup.source_reader import Fetched, NotCopied, ReaderSuspended, SourceObject, SourceReader, Stored
from chalicelib.catalog.manifests import Entry, ManifestWriter
from chalicelib.catalog.records import PlanResult
from chalicelib.catalog.source_identity import SourceFacts, entry_disagreement
from chalicelib.errors import HistoryNotKept, describe_error
from chalicelib.layout import data_key
from chalicelib.plans import S3Source

# Objects a run leaves out on purpose, by the kind `NotCopied` names, as the warnings word them.
NOT_COPIED = {
    "archived_at_source": "archived at the source, not copied (the source's `archived` is skip)",
    "thawing_at_source": "archived at the source: a thaw was requested, a later backup copies them",
    "sse_c": "encrypted with a customer-provided key (SSE-C), which S3 cannot copy: not backed up",
}
# The bytes of small objects one batch reads ahead for its packs (two batches are in flight at once).
FETCH_AHEAD_BYTES = 32 * 1024 * 1024
# Errors a result keeps (the counts say how many there were).
MAX_ERRORS = 20
# Entries named in one batch's tampering warning (the warning counts them all).
MAX_NAMED = 10


class BatchCopier:
    """The copies of one plan run into `bucket`, counted in `result`. `before_multipart` is called before a
    copy in parts begins (the run marks itself, so that a crash's upload is aborted later)."""

    def __init__(
        self, bucket: str, result: PlanResult, dry_run: bool, before_multipart: Callable[[], None], bucket_kms: bool = False,
        packer: Packer | None = None,
    ) -> None:
        self.bucket = bucket
        # A plan that packs its small objects (packing.py); None: every object is stored on its own.
        self.packer = None if dry_run else packer
        # An SSE-KMS backup bucket: its copies' ETags are not the sources' (catalog/source_identity.py).
        self.bucket_kms = bucket_kms
        # How the tampering warnings name the snapshot compared with.
        self.base_name = "the previous snapshot"
        self.result = result
        self.dry_run = dry_run
        self.before_multipart = before_multipart
        # Objects left out on purpose (archived at the source, SSE-C), a few keys of each kind for the record.
        self.not_copied: dict[str, list[str]] = {}

    def submit(self, batch: list[Action], reader: SourceReader, pool: ThreadPoolExecutor) -> dict[int, Future[Stored | Fetched]]:
        """Start the copies of a batch's new and changed objects (the reads, for those to be packed)."""
        futures: dict[int, Future[Stored | Fetched]] = {}
        fetching = 0
        for index, action in enumerate(batch):
            cur, prev = action.current, action.previous
            if cur is not None and not self._carried(prev, cur, reader) and not self.dry_run:
                if self._packs(reader, cur):
                    # Read ahead while the batch's reads fit FETCH_AHEAD_BYTES; the rest are read one at a time
                    # when the batch is flushed, so memory stays bounded whatever the batch holds.
                    if fetching + cur.size <= FETCH_AHEAD_BYTES:
                        fetching += cur.size
                        futures[index] = pool.submit(reader.fetch, cur)
                    continue
                self._note_multipart(reader, cur)
                futures[index] = pool.submit(reader.store, cur, self.bucket, data_key(reader.source.name, cur.key))
        return futures

    def _packs(self, reader: SourceReader, obj: SourceObject) -> bool:
        return self.packer is not None and reader.packable and obj.size < self.packer.threshold

    def _add(self, writer: ManifestWriter, entry: Entry) -> None:
        if self.packer is None:
            writer.add(entry)
        else:
            self.packer.add(writer, entry)

    def seal(self, writer: ManifestWriter) -> None:
        """Store the open pack, so that every entry flushed so far is in `writer` (before a checkpoint or the
        snapshot reads it)."""
        if self.packer is not None:
            self.packer.seal(writer)

    def close(self) -> None:
        if self.packer is not None:
            self.packer.close()

    def _facts(self, reader: SourceReader) -> SourceFacts:
        source = reader.source
        source_kms = isinstance(source, S3Source) and source.kms_key_id is not None
        return SourceFacts(etag_kept=not (self.bucket_kms or source_kms), multipart_threshold=reader.multipart_threshold)

    def _carried(self, prev: Entry | None, cur: SourceObject, reader: SourceReader) -> bool:
        """Whether the previous entry is carried forward: same identity, and what it names agrees with it."""
        return prev is not None and prev.identity == cur.identity and entry_disagreement(prev, self._facts(reader)) is None

    def _note_multipart(self, reader: SourceReader, obj: SourceObject) -> None:
        """Mark the plan before this invocation's first multipart copy: if it dies midway, the upload is
        left incomplete, and the next run of the plan aborts it."""
        if obj.size > reader.multipart_threshold:
            self.before_multipart()

    def flush(
        self,
        batch: list[Action],
        reader: SourceReader,
        writer: ManifestWriter,
        pool: ThreadPoolExecutor,
        stats: dict[str, Any],
        futures: dict[int, Future[Stored | Fetched]] | None = None,
    ) -> None:
        """Write a batch's entries in key order, once its copies (started by `submit`) are done."""
        result = self.result
        source = reader.source
        if futures is None:
            futures = self.submit(batch, reader, pool)
        disagreeing: list[str] = []
        for index, action in enumerate(batch):
            cur, prev = action.current, action.previous
            if prev is not None:
                stats["previous"] = stats.get("previous", 0) + 1
            if cur is None:
                assert prev is not None
                # Gone from the source: a deletion candidate, decided once the whole plan is compared.
                stats["vanished"] = stats.get("vanished", 0) + 1
                self._add(writer, Entry(**{**prev.__dict__, "held": True}))
                continue
            stats["objects"] += 1
            if self._carried(prev, cur, reader):
                assert prev is not None
                result.unchanged += 1
                self._add(writer, Entry(**{**prev.__dict__, "held": False}))
                continue
            suspect = prev is not None and prev.identity == cur.identity
            if suspect:
                assert prev is not None
                reason = entry_disagreement(prev, self._facts(reader))
                disagreeing.append(f"{cur.key} (version {prev.version_id}: {reason})")
            if self.dry_run:
                result.copied += 1
                result.bytes_copied += cur.size
                self._add(writer, Entry(source.name, cur.key, "", cur.size, "", cur.identity))
                continue
            try:
                stored = futures[index].result() if index in futures else reader.fetch(cur)
            except NotCopied as skipped:
                # Left out on purpose (a warning, not a failure); an older version stays in the snapshot.
                stats[skipped.kind] = stats.get(skipped.kind, 0) + 1
                self.not_copied.setdefault(f"{source.name}:{skipped.kind}", []).append(cur.key)
                if prev is not None and not suspect:
                    self._add(writer, Entry(**{**prev.__dict__, "held": False}))
                continue
            except (HistoryNotKept, ReaderSuspended):
                raise
            except Exception as exc:
                result.failed += 1
                if len(result.errors) < MAX_ERRORS:
                    result.errors.append(f"{source.name}/{cur.key}: {describe_error(exc)}")
                if prev is not None and not suspect:
                    # The older version is still in the bucket: the snapshot keeps pointing at it (never one
                    # that disagrees with its source: that one is left out).
                    self._add(writer, Entry(**{**prev.__dict__, "held": False}))
                continue
            result.copied += 1
            stats["copied"] += 1
            if isinstance(stored, Fetched):
                assert self.packer is not None
                stats["packed"] = stats.get("packed", 0) + 1
                result.bytes_copied += len(stored.data)
                self.packer.add_packed(writer, source.name, cur.key, stored, prev)
                continue
            result.bytes_copied += stored.size
            self._add(
                writer,
                Entry(
                    source=source.name,
                    key=cur.key,
                    version_id=stored.version_id,
                    size=stored.size,
                    etag=stored.etag,
                    identity=stored.identity,
                    checksum=stored.checksum,
                    sha256=stored.sha256,
                    item_count=stored.item_count,
                ),
            )
        if disagreeing:
            shown = ", ".join(disagreeing[:MAX_NAMED]) + (" ..." if len(disagreeing) > MAX_NAMED else "")
            result.warnings.append(
                f"TAMPERING: {self.base_name} names {len(disagreeing)} version(s) of source '{source.name}' that "
                f"disagree with the source as listed, copied again: {shown}"
            )

    def warn_not_copied(self, source: str, stats: dict[str, Any]) -> None:
        """One warning per kind of object left out on purpose: how many, and the first few keys."""
        for kind, what in NOT_COPIED.items():
            count = int(stats.get(kind, 0))
            if not count:
                continue
            keys = self.not_copied.get(f"{source}:{kind}", [])
            shown = ", ".join(keys[:10]) + (" ..." if count > len(keys[:10]) else "")
            self.result.warnings.append(f"source '{source}': {count} object(s) {what}: {shown}")
