"""A running backup's record as one invocation works it, and what a write does when another invocation of the
same backup wrote the record meanwhile.

A backup is carried past the Lambda time limit with the job framework's discipline (jobs/runner.py): its
record is replaced only as the version this invocation last read (`If-Match` on its ETag). It cannot use
`run_until_done` itself: a plan split into key ranges is worked by parallel invocations that each carry
their own range on (`{"backup_id", "plan", "segment"}`), and a range that ends before the others writes
nothing. So several invocations of one backup may legitimately run at once (the ranges, and repeated
deliveries of any of them), and one that loses a write must not lose what it did: it re-reads the record,
carries into it the plans it finished that the record still shows running (a plan the record shows finished
stays as it is), and writes that. When the record it re-reads is final, another invocation finished the
backup: this one stops (`Superseded`), so a backup is finished, alerted and verified once.
"""

from __future__ import annotations

import logging

from chalicelib.catalog.records import BackupRecord, BackupStatus, RecordStore, overall_status
from chalicelib.errors import AlreadyExists, NotFound
from chalicelib.times import isoformat, utcnow

logger = logging.getLogger(__name__)


class Superseded(Exception):
    """Another invocation finished the backup: `record` is its final record."""

    def __init__(self, record: BackupRecord) -> None:
        super().__init__(f"backup {record.backup_id} was finished by another invocation")
        self.record = record


class BackupProgress:
    """The working record as this invocation last read or wrote it, and that version's ETag."""

    def __init__(self, store: RecordStore, record: BackupRecord, etag: str) -> None:
        self.store = store
        self.record = record
        self.etag = etag

    def save(self) -> None:
        """Write the record over the version last read. Lost to another invocation's write: re-read, carry
        this invocation's finished plans over, and write again; `Superseded` when the record is final."""
        while True:
            self.record.updated_at = isoformat(utcnow())
            try:
                self.etag = self.store.replace(self.record, self.etag)
                return
            except AlreadyExists:
                logger.info("backup %s: the record changed meanwhile; merging this invocation's plans", self.record.backup_id)
            self.record, self.etag = merged(self.record, self._reread())

    def _reread(self) -> tuple[BackupRecord, str]:
        found = self.store.read(self.record.backup_id)
        if found is None:
            raise NotFound(f"backup {self.record.backup_id}'s record is gone")
        if found[0].finished:
            raise Superseded(found[0])
        return found

    def running(self, plan: str) -> bool:
        """Whether the plan is still to be worked (another invocation may have finished it meanwhile)."""
        result = self.record.plans.get(plan)
        return result is not None and result.status == BackupStatus.RUNNING


def merged(mine: BackupRecord, fresh: tuple[BackupRecord, str]) -> tuple[BackupRecord, str]:
    """The record as another invocation left it (`fresh`, with its ETag), with the plans `mine` finished
    that it still shows running; finished as `mine` is when every plan now is."""
    record, etag = fresh
    for name, result in mine.plans.items():
        theirs = record.plans.get(name)
        if theirs is not None and theirs.status == BackupStatus.RUNNING and result.status != BackupStatus.RUNNING:
            record.plans[name] = result
    if mine.finished and all(result.status != BackupStatus.RUNNING for result in record.plans.values()):
        record.status = overall_status(list(record.plans.values()))
        record.finished_at = mine.finished_at
    return record, etag
