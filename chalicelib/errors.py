"""Typed errors. Handlers map these to HTTP answers; nothing else should be raised to a client."""

from __future__ import annotations

from botocore.exceptions import ClientError


class BackupError(Exception):
    """Base class of every error this system raises on purpose."""


class PlanError(BackupError):
    """The plans file is wrong. The message names the plan and the field."""


class BadRequest(BackupError):
    """A client sent something we cannot act on (HTTP 400)."""


class NotFound(BackupError):
    """A backup, plan or snapshot that does not exist (HTTP 404)."""


class Conflict(BackupError):
    """The request clashes with the current state, e.g. a plan already running (HTTP 409)."""

    def __init__(self, message: str, backup_id: str | None = None, prune_id: str | None = None) -> None:
        super().__init__(message)
        self.backup_id = backup_id
        # The ids of the running jobs it clashes with, as the 409's body names them.
        self.ids = {name: value for name, value in (("backup_id", backup_id), ("prune_id", prune_id)) if value}


class AlreadyExists(BackupError):
    """A conditional create found the object already there (S3 answered 412)."""


class SourceError(BackupError):
    """A source could not be read at all (missing bucket or table, access denied)."""


class HistoryNotKept(BackupError):
    """A backup bucket does not keep history (versioning not Enabled, Object Lock off where the plan asks for
    it, or a write answered without a version id): nothing more may be written to it, since a later write
    could replace the bytes a snapshot names."""


class Tampered(BackupError):
    """Stored metadata (a backup record, a manifest) is unreadable, contradicts itself, or changed after it
    was written: reported as tampering, never trusted (an HTTP 409 and an alert)."""


class Pruned(BackupError):
    """The snapshot asked for was removed by retention (a prune): it can no longer be restored or verified
    (HTTP 410). The message says when, and by which prune."""


class Unprocessable(BackupError):
    """Well-formed but unusable, e.g. an Idempotency-Key reused for a different request (HTTP 422)."""


class PayloadTooLarge(BackupError):
    """The request body is larger than the API accepts (HTTP 413)."""


class UnsupportedMediaType(BackupError):
    """The request body is not JSON (HTTP 415)."""


def describe_error(exc: BaseException) -> str:
    """A short, readable reason: 'NoSuchBucket: The specified bucket does not exist'."""
    if isinstance(exc, ClientError):
        error = exc.response.get("Error", {})
        return f"{error.get('Code', 'Error')}: {error.get('Message') or exc}"
    return f"{type(exc).__name__}: {exc}"


def error_code(exc: BaseException) -> str:
    """The AWS error code of a ClientError ('' for anything else)."""
    if isinstance(exc, ClientError):
        return str(exc.response.get("Error", {}).get("Code", ""))
    return ""
