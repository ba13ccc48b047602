"""What the backup engine asks of a source reader, declared once: the `SourceReader` protocol, the objects it
lists and stores, what it counts (`ReaderStats`), and what it may use of the plan run it works for
(`ReaderRun`).

The readers are in sources.py (S3 buckets, local folders) and tables.py (DynamoDB tables). The engine uses a
reader only through the members declared here: a reader that has nothing to say about something (a folder
has no listing pages, a bucket no item count) answers with the declared empty value.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, Protocol

from chalicelib.backup.listing import PageMarks
from chalicelib.catalog import run_keys
from chalicelib.errors import Tampered
from chalicelib.plans import Source

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class SourceObject:
    key: str
    size: int
    identity: str
    storage_class: str | None = None


@dataclass(frozen=True)
class Stored:
    """What S3 said about the version a backup wrote."""

    version_id: str
    etag: str
    size: int
    identity: str
    checksum: str | None = None
    sha256: str | None = None
    item_count: int | None = None


@dataclass(frozen=True)
class Fetched:
    """A small object's bytes, read for a pack (`SourceReader.fetch`), with the identity they have."""

    data: bytes
    identity: str


@dataclass(frozen=True)
class ReaderStats:
    """What a reader counted of its source, for the plan's result and the listing's cost."""

    # LIST requests of the last listing; how many of them had to run one after another; and the key ranges
    # the listing was cut into (1: page after page). Zero for a reader that lists no pages.
    listing_pages: int = 0
    listing_depth: int = 0
    listing_ranges: int = 0
    # A table's items and key schema (the schema is kept with the snapshot so a restore can create an
    # equivalent table). None: not a table.
    item_count: int | None = None
    table_schema: dict[str, Any] | None = None


@dataclass(frozen=True)
class ReaderRun:
    """What a reader may use of the plan run it works for: where to keep its own progress, and the clock."""

    bucket: str
    # The reader's checkpoint prefix, under the plan run's (cleared with it).
    prefix: str
    backup_id: str
    # True when the invocation must stop at the next checkpoint; None: no time limit.
    running_out: Callable[[], bool] | None = None
    # Called before a multipart upload begins (the run marks itself, so a crash's upload is aborted later).
    before_multipart: Callable[[], None] = lambda: None
    # The run's key (catalog/run_keys.py): the progress a reader keeps carries the run's proof, and is resumed
    # from only with it. None: a backup recorded before runs had keys.
    run_key: str | None = None

    def seal(self, key: str, state: dict[str, Any]) -> dict[str, Any]:
        """`state`, as saved at `key`: with the run's proof."""
        return run_keys.prove_state(self.run_key, key, state)

    def opened(self, key: str, state: dict[str, Any]) -> dict[str, Any] | None:
        """`state`, as read back from `key`; None when it carries no proof at all (saved by a version before
        progress carried the run's proof: a run under way at an upgrade), which is not resumed from;
        `Tampered` when its proof is not the run's."""
        proven = run_keys.state_proven(self.run_key, key, state)
        if proven is None:
            logger.warning("s3://%s/%s carries no proof (an earlier version's): not resumed from", self.bucket, key)
            return None
        if not proven:
            raise Tampered(
                f"s3://{self.bucket}/{key}, the progress of a source of backup {self.backup_id}, was not written by the "
                "backup's run: it is not resumed from, and the plan fails"
            )
        return state


class SourceReader(Protocol):
    """A source as the backup engine reads it: its objects sorted by key, each with an `identity` that changes
    whenever the content may have changed, and how one of them gets into the backup bucket."""

    @property
    def source(self) -> Source: ...

    @property
    def multipart_threshold(self) -> int:
        """Objects larger than this are copied in parts: the run marks itself first (see checkpoints.py)."""
        ...

    @property
    def page_size(self) -> int | None:
        """Keys per listing page for a reader that can list in key ranges cut at the previous snapshot's page
        marks; None: it lists in one pass."""
        ...

    def attach(self, run: ReaderRun) -> None:
        """Work for a plan run (a reader that keeps no progress of its own ignores it)."""
        ...

    def list_objects(
        self, start_after: str | None = None, stop_key: str | None = None, previous_pages: PageMarks | None = None
    ) -> Iterator[SourceObject]:
        """Sorted by key. `start_after` and `stop_key` bound the listing (a resumed run, a range of a split
        plan) and `previous_pages` is where the previous snapshot's pages ended; a reader may list more than
        the bounds (the engine drops what is outside them), never less."""
        ...

    def store(self, obj: SourceObject, bucket: str, key: str) -> Stored: ...

    @property
    def packable(self) -> bool:
        """Whether its small objects may be packed (`fetch` reads them); False: each is stored on its own."""
        ...

    def fetch(self, obj: SourceObject) -> Fetched:
        """A small object's bytes, exactly those its identity describes, to be packed (only `packable`
        readers are asked, and only for objects below the plan's pack threshold: they are held in memory)."""
        ...

    def stats(self) -> ReaderStats: ...

    def close(self) -> None: ...


class NotCopied(Exception):
    """An object this run deliberately leaves out (a warning, not a failure): `kind` is one of
    `archived_at_source`, `thawing_at_source` or `sse_c`, and `reason` says why in words."""

    def __init__(self, kind: str, reason: str) -> None:
        super().__init__(reason)
        self.kind = kind
        self.reason = reason


class ReaderSuspended(Exception):
    """A reader stopped at a checkpoint of its own (a table scan, or the wait for an export, outlasting the
    invocation): the plan run stops before this source, and the next invocation carries it on."""
