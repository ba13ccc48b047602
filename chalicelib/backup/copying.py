"""Copying one batch of a source's compared objects, and writing their manifest entries in key order.

A batch's copies start at once on the plan run's thread pool (`submit`); its entries are written once they
are done (`flush`), so the pool never drains between batches. An object unchanged since the previous
snapshot keeps its entry; one gone from the source stays as a held entry (a deletion candidate, decided once
the whole plan is compared); one that failed keeps the older version the snapshot had.
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

from chalicelib.backup.compare import Action
from chalicelib.backup.source_reader import NotCopied, ReaderSuspended, SourceObject, SourceReader, Stored
from chalicelib.catalog.manifests import Entry, ManifestWriter
from chalicelib.catalog.records import PlanResult
from chalicelib.errors import HistoryNotKept, describe_error
from chalicelib.layout import data_key

# Objects a run leaves out on purpose, by the kind `NotCopied` names, as the warnings word them.
NOT_COPIED = {
    "archived_at_source": "archived at the source, not copied (the source's `archived` is skip)",
    "thawing_at_source": "archived at the source: a thaw was requested, a later backup copies them",
    "sse_c": "encrypted with a customer-provided key (SSE-C), which S3 cannot copy: not backed up",
}
# Errors a result keeps (the counts say how many there were).
MAX_ERRORS = 20


class BatchCopier:
    """The copies of one plan run into `bucket`, counted in `result`. `before_multipart` is called before a
    copy in parts begins (the run marks itself, so that a crash's upload is aborted later)."""

    def __init__(self, bucket: str, result: PlanResult, dry_run: bool, before_multipart: Callable[[], None]) -> None:
        self.bucket = bucket
        self.result = result
        self.dry_run = dry_run
        self.before_multipart = before_multipart
        # Objects left out on purpose (archived at the source, SSE-C), a few keys of each kind for the record.
        self.not_copied: dict[str, list[str]] = {}

    def submit(self, batch: list[Action], reader: SourceReader, pool: ThreadPoolExecutor) -> dict[int, Future[Stored]]:
        """Start the copies of a batch's new and changed objects."""
        futures: dict[int, Future[Stored]] = {}
        for index, action in enumerate(batch):
            cur, prev = action.current, action.previous
            if cur is not None and (prev is None or prev.identity != cur.identity) and not self.dry_run:
                self._note_multipart(reader, cur)
                futures[index] = pool.submit(reader.store, cur, self.bucket, data_key(reader.source.name, cur.key))
        return futures

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
        futures: dict[int, Future[Stored]] | None = None,
    ) -> None:
        """Write a batch's entries in key order, once its copies (started by `submit`) are done."""
        result = self.result
        source = reader.source
        if futures is None:
            futures = self.submit(batch, reader, pool)
        for index, action in enumerate(batch):
            cur, prev = action.current, action.previous
            if prev is not None:
                stats["previous"] = stats.get("previous", 0) + 1
            if cur is None:
                assert prev is not None
                # Gone from the source: a deletion candidate, decided once the whole plan is compared.
                stats["vanished"] = stats.get("vanished", 0) + 1
                writer.add(Entry(**{**prev.__dict__, "held": True}))
                continue
            stats["objects"] += 1
            if prev is not None and prev.identity == cur.identity:
                result.unchanged += 1
                writer.add(Entry(**{**prev.__dict__, "held": False}))
                continue
            if self.dry_run:
                result.copied += 1
                result.bytes_copied += cur.size
                writer.add(Entry(source.name, cur.key, "", cur.size, "", cur.identity))
                continue
            try:
                stored = futures[index].result()
            except NotCopied as skipped:
                # Left out on purpose (a warning, not a failure); an older version stays in the snapshot.
                stats[skipped.kind] = stats.get(skipped.kind, 0) + 1
                self.not_copied.setdefault(f"{source.name}:{skipped.kind}", []).append(cur.key)
                if prev is not None:
                    writer.add(Entry(**{**prev.__dict__, "held": False}))
                continue
            except (HistoryNotKept, ReaderSuspended):
                raise
            except Exception as exc:
                result.failed += 1
                if len(result.errors) < MAX_ERRORS:
                    result.errors.append(f"{source.name}/{cur.key}: {describe_error(exc)}")
                if prev is not None:
                    # The older version is still in the bucket: the snapshot keeps pointing at it.
                    writer.add(Entry(**{**prev.__dict__, "held": False}))
                continue
            result.copied += 1
            stats["copied"] += 1
            result.bytes_copied += stored.size
            writer.add(
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
                )
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
