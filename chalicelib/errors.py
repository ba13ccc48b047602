"""Typed errors. Handlers map these to HTTP answers; nothing else should be raised to a client."""

from __future__ import annotations


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

    def __init__(self, message: str, backup_id: str | None = None) -> None:
        super().__init__(message)
        self.backup_id = backup_id


class AlreadyExists(BackupError):
    """A conditional create found the object already there (S3 answered 412)."""


class SourceError(BackupError):
    """A source could not be read at all (missing bucket or table, access denied)."""


class Unprocessable(BackupError):
    """Well-formed but unusable, e.g. an Idempotency-Key reused for a different request (HTTP 422)."""


class PayloadTooLarge(BackupError):
    """The request body is larger than the API accepts (HTTP 413)."""


class UnsupportedMediaType(BackupError):
    """The request body is not JSON (HTTP 415)."""
