"""Restoring into a local folder (the command line only): each version is downloaded to a temporary file
beside its destination, its SHA-256 checked against the snapshot, then moved into place."""

from __future__ import annotations

import base64
import hashlib
import os
import tempfile
from pathlib import Path
from typing import Any

from chalicelib.catalog.manifests import Entry
from chalicelib.transfer import file_sha256
from chalicelib.plans import Plan
from chalicelib.restore.outcome import Outcome
from chalicelib.restore.requests import Target
from chalicelib.restore.selection import target_key


def digest_mismatch(entry: Entry, digest: bytes) -> str | None:
    """Compare a downloaded version's SHA-256 with what the snapshot recorded; None when they agree."""
    if entry.sha256:
        if digest.hex() != entry.sha256:
            return f"content SHA-256 {digest.hex()} differs from the snapshot's {entry.sha256}"
    elif entry.checksum and "-" not in entry.checksum:
        if base64.b64encode(digest).decode("ascii") != entry.checksum:
            return f"content SHA-256 differs from the snapshot's checksum {entry.checksum}"
    return None


def download(s3: Any, plan: Plan, target: Target, entry: Entry, overwrite: bool) -> Outcome:
    assert target.path
    root = Path(target.path).resolve()
    path = (root / target_key(plan, target, entry)).resolve()
    if root not in path.parents:
        return Outcome("failed", entry, reason=f"{entry.key!r} would land outside {root}")
    if path.exists() and not overwrite:
        if path.stat().st_size == entry.size and entry.sha256 and file_sha256(path).hex() == entry.sha256:
            return Outcome("restored", entry, bytes=entry.size)
        return Outcome("failed", entry, reason=f"{path} already exists (overwrite is off)")
    path.parent.mkdir(parents=True, exist_ok=True)
    response = s3.get_object(Bucket=plan.bucket, Key=entry.data_key, VersionId=entry.version_id)
    digest = hashlib.sha256()
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=".restore-")
    try:
        with os.fdopen(handle, "wb") as out:
            for block in response["Body"].iter_chunks(1024 * 1024):
                digest.update(block)
                out.write(block)
        problem = digest_mismatch(entry, digest.digest())
        if problem:
            return Outcome("failed", entry, reason=problem)
        os.replace(temporary, path)
    finally:
        if os.path.exists(temporary):
            os.unlink(temporary)
    return Outcome("restored", entry, bytes=entry.size)
