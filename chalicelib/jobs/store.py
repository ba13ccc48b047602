"""A kind of job's records in the catalog bucket: one JSON document per job, which is also its checkpoint,
kept under `<prefix><inverted time>_<job id>.json` so that a listing gives the newest first.

A record is created only if absent (`If-None-Match: *`: a repeated delivery finds the job already
recorded), and every later write replaces the version read and only it (`If-Match` on its ETag): of two
invocations working the same job (a duplicated or retried invocation) only one moves the record on, and the
other stops at its next write.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Generic, Protocol, TypeVar

from chalicelib import s3docs
from chalicelib.errors import NotFound


class JobRecord(Protocol):
    """What the framework needs of a job's record."""

    updated_at: str | None

    @property
    def finished(self) -> bool: ...

    def to_dict(self) -> dict[str, Any]: ...


R = TypeVar("R", bound=JobRecord)


@dataclass(frozen=True)
class JobKind(Generic[R]):
    """What tells one kind of job's records from another's."""

    # For messages: "no prune with id ...".
    noun: str
    # The record's field that holds the job's id; also the key of the id in a worker's payload.
    id_field: str
    # Where the records are: `<prefix><inverted time>_<job id>.json`.
    prefix: str
    # A job id's record key (NotFound when it is not an id of this kind), and a stored document's record.
    key: Callable[[str], str]
    decode: Callable[[dict[str, Any]], R]


class JobStore(Generic[R]):
    """The records of one kind of job (`kind`, which a subclass sets)."""

    kind: JobKind[R]

    def __init__(self, s3: Any, bucket: str) -> None:
        self.s3 = s3
        self.bucket = bucket

    def key(self, job_id: str) -> str:
        return self.kind.key(job_id)

    def id_of(self, record: R) -> str:
        return str(getattr(record, self.kind.id_field))

    def create(self, record: R) -> str:
        """Store a new record; returns its ETag. `AlreadyExists` when the job is already recorded."""
        return s3docs.create(self.s3, self.bucket, self.key(self.id_of(record)), record.to_dict())

    def read(self, job_id: str) -> tuple[R, str] | None:
        """The record and its ETag, or None when the job was never recorded. ValueError when the document
        there is not this job's record."""
        key = self.key(job_id)
        document = s3docs.read(self.s3, self.bucket, key)
        if document is None:
            return None
        if document.data.get(self.kind.id_field) != job_id:
            raise ValueError(f"the record at s3://{self.bucket}/{key} is not {self.kind.noun} {job_id}'s")
        return self.kind.decode(document.data), document.etag

    def get(self, job_id: str) -> R:
        found = self.read(job_id)
        if found is None:
            raise NotFound(f"no {self.kind.noun} with id {job_id!r}")
        return found[0]

    def replace(self, record: R, etag: str) -> str:
        """Write over the version whose ETag is `etag`; returns the new ETag. `AlreadyExists` when another
        invocation wrote the record meanwhile (it carries the job on; this one must stop)."""
        return s3docs.replace(self.s3, self.bucket, self.key(self.id_of(record)), record.to_dict(), etag)

    def latest(self, limit: int = 20) -> list[R]:
        """The newest `limit` jobs, newest first (one listing request, then one GET each). A record that
        cannot be read is left out."""
        found = []
        for key in s3docs.newest_keys(self.s3, self.bucket, self.kind.prefix, limit):
            try:
                read = self.read(s3docs.name_in_inverted_key(key))
            except (NotFound, ValueError, TypeError):
                continue
            if read is not None:
                found.append(read[0])
        return found
