"""Writing packs: a plan run's small objects stored many to one S3 object (plans with `small_objects: pack`).

A run (or a range of a split plan) appends each new or changed small object to its open pack as the batches
are flushed, in key order. Its manifest entry needs the pack's version id, which S3 gives only when the
pack is stored, so the entries wait: the packed ones, and every entry after the first of them (a manifest is
written in key order), are queued on local disk. When the pack reaches the plan's target size, or before the
run saves a checkpoint or writes its snapshot (`seal`), the pack is written, create-only (`IfNoneMatch: *`)
with its SHA-256 for S3 to check, and only then do the queued entries go to the manifest writer, the
packed ones naming the version S3 answered.

So no checkpoint or manifest names a pack that is not stored: a run that dies before the pack's PUT leaves
nothing (the next run reads those objects again); one that dies after it leaves a pack no snapshot names,
which the prune deletes like any unnamed version once its grace period has passed.

An object that was stored on its own in the previous snapshot and is packed now has its old version hidden
behind a delete marker once the pack is stored (a DELETE is free): `data/<source>/<key>` then shows only
objects whose latest snapshot stores them there. The versions stay, for the older snapshots that name them.
"""

from __future__ import annotations

import base64
import hashlib
import io
import logging
import secrets
import tempfile
from dataclasses import dataclass
from typing import IO, Any

from botocore.exceptions import BotoCoreError, ClientError

from chalicelib.backup import deletions, writes
from chalicelib.backup.source_reader import Fetched
from chalicelib.catalog.manifests import Entry, ManifestWriter
from chalicelib.catalog.packs import PackWriter, put_pack
from chalicelib.errors import BackupError, describe_error
from chalicelib.layout import pack_key

logger = logging.getLogger(__name__)

# The placeholder version of a queued packed entry: no stored version is ever named so.
_UNSTORED = ""


@dataclass(frozen=True)
class StoredPack:
    """A pack as S3 stored it: what its objects' entries record for verification to compare."""

    version_id: str
    size: int
    etag: str


class PackFailed(BackupError):
    """A pack's key holds other bytes than the pack written there: the plan fails, naming it."""


class Packer:
    """The packs of one plan run (or range) into `bucket`: `add` every entry in key order, `add_packed` each
    small object's bytes, `seal` before anything reads the manifest writer, `close` at the end."""

    def __init__(self, s3: Any, bucket: str, backup_id: str, threshold: int, target: int) -> None:
        self.s3 = s3
        self.bucket = bucket
        self.backup_id = backup_id
        # Objects strictly smaller than `threshold` are packed; a pack is stored once it holds `target` bytes.
        self.threshold = threshold
        self.target = target
        # This invocation's packs are named by a token of its own: a duplicate invocation never meets its key.
        self.token = secrets.token_hex(4)
        self.stored = 0
        self._seq = 0
        self._pack: PackWriter | None = None
        self._key = ""
        self._queue: IO[bytes] | None = None
        # Data keys whose unpacked version the pack's objects replace (hidden once the pack is stored).
        self._retired: list[str] = []

    def add(self, writer: ManifestWriter, entry: Entry) -> None:
        """An entry that names a stored version: to the writer, or behind the queued packed entries."""
        if self._queue is None:
            writer.add(entry)
        else:
            self._queue.write(entry.to_json().encode("utf-8") + b"\n")

    def add_packed(self, writer: ManifestWriter, source: str, key: str, fetched: Fetched, previous: Entry | None) -> None:
        """A small object's bytes into the open pack; its entry waits for the pack to be stored."""
        if self._pack is None:
            self._seq += 1
            self._pack = PackWriter()
            self._key = pack_key(self.backup_id, self.token, self._seq)
        if self._queue is None:
            self._queue = tempfile.TemporaryFile()
        data = fetched.data
        placed = self._pack.add(source, key, io.BytesIO(data), fetched.identity)
        digest = bytes.fromhex(placed.sha256)
        entry = Entry(
            source=source,
            key=key,
            version_id=_UNSTORED,
            size=placed.length,
            # What a single PutObject of these bytes would have as its ETag and checksum: an entry is compared
            # with its source (catalog/source_identity.py) as any other entry is.
            etag=hashlib.md5(data, usedforsecurity=False).hexdigest(),
            identity=fetched.identity,
            checksum=base64.b64encode(digest).decode("ascii"),
            sha256=placed.sha256,
            pack_key=self._key,
            pack_offset=placed.offset,
        )
        self._queue.write(entry.to_json().encode("utf-8") + b"\n")
        if previous is not None and not previous.packed and not previous.held:
            self._retired.append(previous.data_key)
        if self._pack.size >= self.target:
            self.seal(writer)

    def seal(self, writer: ManifestWriter) -> None:
        """Store the open pack, then hand every queued entry to `writer` (nothing to do without one)."""
        if self._pack is None:
            return
        pack, key, queue = self._pack, self._key, self._queue
        assert queue is not None
        self._pack, self._queue = None, None
        try:
            stored = self._put(key, pack.finish())
        except BaseException:
            queue.close()
            raise
        finally:
            pack.close()
        self.stored += 1
        self._hide_retired()
        try:
            queue.seek(0)
            for line in queue:
                entry = Entry.from_json(line)
                if entry.pack_key == key and entry.version_id == _UNSTORED:
                    entry.version_id = stored.version_id
                    entry.pack_size, entry.pack_etag = stored.size, stored.etag
                writer.add(entry)
        finally:
            queue.close()

    def close(self) -> None:
        """Drop what was never stored (a run that stops on an error): its objects are read again next time."""
        if self._pack is not None:
            self._pack.close()
        if self._queue is not None:
            self._queue.close()
        self._pack, self._queue, self._retired = None, None, []

    def _put(self, key: str, body: IO[bytes]) -> StoredPack:
        """Write the pack only if its key is free, with its SHA-256 for S3 to check; what S3 stored."""
        response, checksum, size = put_pack(self.s3, self.bucket, key, body)
        if response is None:
            # The key is this invocation's alone: a request that S3 stored but whose answer was lost, sent
            # again by the retries. The version there is this pack only if it holds these very bytes.
            return self._adopt(key, checksum, size)
        return StoredPack(writes.version_of(response, self.bucket, key), size, str(response.get("ETag", "")).strip('"'))

    def _adopt(self, key: str, checksum: str, size: int) -> StoredPack:
        head = self.s3.head_object(Bucket=self.bucket, Key=key, ChecksumMode="ENABLED")
        if head.get("ChecksumSHA256") != checksum or head.get("ContentLength") != size:
            raise PackFailed(f"s3://{self.bucket}/{key} exists and does not hold the pack this run wrote")
        return StoredPack(writes.version_of(head, self.bucket, key), size, str(head.get("ETag", "")).strip('"'))

    def _hide_retired(self) -> None:
        retired, self._retired = self._retired, []
        if not retired:
            return
        try:
            outcome = deletions.place_delete_markers(self.s3, self.bucket, retired)
        except (ClientError, BotoCoreError) as exc:
            # Only what `data/` shows is at stake: every snapshot names its versions by id.
            logger.warning("s3://%s: %d replaced object(s) not hidden: %s", self.bucket, len(retired), describe_error(exc))
            return
        for key, reason in outcome.refused.items():
            logger.warning("s3://%s/%s, now packed, is not hidden: %s", self.bucket, key, reason)
