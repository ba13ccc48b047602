"""A test double for S3 Replication: moto stores a bucket's replication configuration but never replicates, so
`Replication` (a context manager, active only in the tests that enter it) does, in the in-process moto, as the
S3 User Guide documents ("Replicating objects within and across Regions": what is and is not replicated).

After each request that writes a new version (PutObject, CopyObject, CompleteMultipartUpload: any PUT or POST
on a key that leaves a version there that was not before it), the source bucket's replication configuration
is read at that moment, and for each destination bucket the enabled rule of the highest `Priority` whose
filter (`Filter.Prefix`, `Filter.And.Prefix` or the older top-level `Prefix`) matches the key replicates the
version:

- into the destination bucket, in whichever moto account owns it, with the SAME version id (moto lets a test
  set a stored version's id, so no map of ids is needed), the same bytes, ETag, user metadata, content type,
  encryption and checksum (algorithm and value), in the rule's `Destination.StorageClass` (the source's class
  when the rule names none);
- locked as S3 locks replicas: the source version's retention if it has one, otherwise the destination
  bucket's default retention;
- with `ReplicationStatus` COMPLETED on the source version and REPLICA on the replica (HeadObject and
  GetObject answer `x-amz-replication-status`); FAILED on the source when the destination bucket is missing or
  not versioned, and nothing is written.

Not replicated, as in S3: delete markers and deletions of a version (DELETE requests are never looked at),
versions written before the rule existed (only new writes are replicated, never what a bucket already held),
versions written in GLACIER or DEEP_ARCHIVE, SSE-KMS versions unless the rule's
`SourceSelectionCriteria.SseKmsEncryptedObjects` is Enabled, and replicas themselves (the double writes them
into moto's backend directly, not by a request).

Where it departs from S3:
- Replication is synchronous: the replica exists when the writing request returns (S3: asynchronous, most
  within 15 minutes; never PENDING here). `held()` is the one way to hold it back: versions written inside
  `with replication.held():` are PENDING until `release()`.
- No IAM: the rule's `Role`, the destination's bucket policy and Object Lock of the source are not evaluated.
- Tag filters (`Filter.Tag`, `Filter.And.Tag`) raise NotImplementedError; object tags and ACLs are not copied;
  the replica's Last-Modified is the moment it was written; Replication Time Control, metrics and
  `s3:Replication:*` event notifications are not emitted.
- `replicated` lists what was written, for a test to check (S3 has no such list).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from moto.s3.models import FakeDeleteMarker, FakeKey, s3_backends
from moto.s3.responses import S3Response

ARCHIVE_CLASSES = ("GLACIER", "DEEP_ARCHIVE")
STATUS_HEADER = "x-amz-replication-status"


@dataclass(frozen=True)
class Replicated:
    """One version the double replicated."""

    source_bucket: str
    key: str
    version_id: str
    destination_bucket: str
    storage_class: str


def _backend_of(bucket: str) -> Any | None:
    owner = s3_backends.bucket_accounts.get(bucket)
    if owner is None:
        return None
    partition, account = owner
    return s3_backends[account][partition]


def _bucket(name: str) -> Any | None:
    backend = _backend_of(name)
    return None if backend is None else backend.buckets.get(name)


def _versions(bucket_name: str, key: str) -> list[FakeKey]:
    bucket = _bucket(bucket_name)
    if bucket is None:
        return []
    return [v for v in bucket.keys.getlist(key, []) if isinstance(v, FakeKey) and not isinstance(v, FakeDeleteMarker)]


def _as_list(value: Any) -> list[Any]:
    if value is None:
        return []
    return value if isinstance(value, list) else [value]


def _rule_prefix(rule: dict[str, Any]) -> str:
    """The rule's key prefix; NotImplementedError for a tag filter, which the double does not evaluate."""
    filter_ = rule.get("Filter")
    if filter_ is None:
        return str(rule.get("Prefix") or "")
    if "Tag" in filter_ or "Tag" in (filter_.get("And") or {}):
        raise NotImplementedError("the replication double does not evaluate tag filters")
    if "And" in filter_:
        return str(filter_["And"].get("Prefix") or "")
    return str(filter_.get("Prefix") or "")


def _destination_name(rule: dict[str, Any]) -> str:
    return str(rule["Destination"]["Bucket"]).removeprefix("arn:aws:s3:::")


@dataclass
class Replication:
    """S3 Replication in the in-process moto while entered (see the module's docstring)."""

    replicated: list[Replicated] = field(default_factory=list)
    # (bucket, key, version id) -> COMPLETED / FAILED / PENDING on a source, REPLICA on a replica.
    statuses: dict[tuple[str, str, str], str] = field(default_factory=dict)
    _held: bool = False
    _pending: list[tuple[str, FakeKey]] = field(default_factory=list)

    def __enter__(self) -> Replication:
        self._key_response = S3Response._key_response
        self._response_dict = FakeKey.response_dict
        double = self

        def key_response(response: Any, request: Any, full_url: str) -> Any:
            if request.method not in ("PUT", "POST"):
                return double._key_response(response, request, full_url)
            bucket_name = response.parse_bucket_name_from_url(request, full_url)
            key = response.parse_key_name()
            before = {v.version_id for v in _versions(bucket_name, key)}
            answer = double._key_response(response, request, full_url)
            for version in _versions(bucket_name, key):
                if version.version_id not in before:
                    double._written(bucket_name, version)
            return answer

        def response_dict(key: FakeKey) -> dict[str, Any]:
            headers = dict(double._response_dict.fget(key))  # type: ignore[attr-defined]
            status = double.statuses.get((key.bucket_name, key.name, key.version_id))
            if status is not None:
                headers[STATUS_HEADER] = status
            return headers

        S3Response._key_response = key_response  # type: ignore[method-assign]
        FakeKey.response_dict = property(response_dict)  # type: ignore[assignment, method-assign]
        return self

    def __exit__(self, *exc: Any) -> None:
        S3Response._key_response = self._key_response  # type: ignore[method-assign]
        FakeKey.response_dict = self._response_dict  # type: ignore[method-assign]

    @contextmanager
    def held(self) -> Iterator[None]:
        """Versions written inside stay PENDING (S3 has not replicated them yet) until `release()`."""
        self._held = True
        try:
            yield
        finally:
            self._held = False

    def release(self) -> None:
        """Replicate what `held` kept back, in the order it was written."""
        pending, self._pending = self._pending, []
        for bucket_name, version in pending:
            self._replicate(bucket_name, version)

    def _written(self, bucket_name: str, version: FakeKey) -> None:
        if self._rules(bucket_name, version):
            if self._held:
                self.statuses[(bucket_name, version.name, version.version_id)] = "PENDING"
                self._pending.append((bucket_name, version))
            else:
                self._replicate(bucket_name, version)

    def _rules(self, bucket_name: str, version: FakeKey) -> list[dict[str, Any]]:
        """Per destination, the enabled matching rule of the highest priority; none for what S3 skips."""
        bucket = _bucket(bucket_name)
        configuration = getattr(bucket, "replication", None) if bucket is not None else None
        if not configuration or version.storage_class in ARCHIVE_CLASSES:
            return []
        chosen: dict[str, dict[str, Any]] = {}
        for rule in _as_list(configuration.get("Rule")):
            if rule.get("Status") != "Enabled" or not version.name.startswith(_rule_prefix(rule)):
                continue
            if version.encryption == "aws:kms":
                criteria = (rule.get("SourceSelectionCriteria") or {}).get("SseKmsEncryptedObjects") or {}
                if criteria.get("Status") != "Enabled":
                    continue
            destination = _destination_name(rule)
            if destination not in chosen or int(rule.get("Priority", 0)) > int(chosen[destination].get("Priority", 0)):
                chosen[destination] = rule
        return list(chosen.values())

    def _replicate(self, bucket_name: str, version: FakeKey) -> None:
        status = "COMPLETED"
        for rule in self._rules(bucket_name, version):
            destination = _destination_name(rule)
            backend, target = _backend_of(destination), _bucket(destination)
            if backend is None or target is None or not target.is_versioned:
                status = "FAILED"
                continue
            storage_class = rule["Destination"].get("StorageClass") or version.storage_class
            lock_mode, lock_until = version.lock_mode, version.lock_until
            if not lock_mode and target.has_default_lock:
                lock_mode, lock_until = target.default_lock_mode, target.default_retention()
            replica = backend.put_object(
                destination,
                version.name,
                version.value,
                storage=storage_class,
                etag=version.etag.strip('"'),
                multipart=version.multipart,
                encryption=version.encryption,
                kms_key_id=version.kms_key_id,
                bucket_key_enabled=version.bucket_key_enabled,
                lock_mode=lock_mode,
                lock_until=lock_until,
                lock_legal_status=version.lock_legal_status,
                checksum_value=version.checksum_value,
                disable_notification=True,
            )
            replica._version_id = version.version_id
            replica.set_metadata(version.metadata)
            replica.checksum_algorithm = version.checksum_algorithm
            self.statuses[(destination, version.name, version.version_id)] = "REPLICA"
            self.replicated.append(Replicated(bucket_name, version.name, version.version_id, destination, storage_class))
        self.statuses[(bucket_name, version.name, version.version_id)] = status
