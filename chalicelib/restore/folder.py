"""Restoring into a local folder (the command line only): each version is downloaded to a temporary file
beside its destination, its SHA-256 checked against the snapshot, then moved into place; a folder marker
becomes a directory. Where each key goes (and which keys cannot go anywhere) is `folder_layout`'s decision,
made for the whole selection before anything is written."""

from __future__ import annotations

import base64
import hashlib
import os
import tempfile
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from chalicelib.catalog.manifests import Entry
from chalicelib.catalog.packs import read_packed
from chalicelib.plans import Plan
from chalicelib.restore.outcome import Outcome
from chalicelib.transfer import file_sha256


def digest_mismatch(entry: Entry, digest: bytes) -> str | None:
    """Compare a downloaded version's SHA-256 with what the snapshot recorded; None when they agree."""
    if entry.sha256:
        if digest.hex() != entry.sha256:
            return f"content SHA-256 {digest.hex()} differs from the snapshot's {entry.sha256}"
    elif entry.checksum and "-" not in entry.checksum:
        if base64.b64encode(digest).decode("ascii") != entry.checksum:
            return f"content SHA-256 differs from the snapshot's checksum {entry.checksum}"
    return None


def _inside(root: Path, relative: str) -> Path | None:
    """The absolute path, or None when it would land outside `root` (a symbolic link inside the folder can
    point anywhere; the layout has already refused `..` segments)."""
    resolved_root = root.resolve()
    path = (resolved_root / relative).resolve()
    return path if resolved_root in path.parents else None


def make_folder(root: Path, relative: str, entry: Entry) -> Outcome:
    """A folder marker: its directory (which may exist already: a marker's only content is the folder)."""
    path = _inside(root, relative)
    if path is None:
        return Outcome("failed", entry, reason=f"{entry.key!r} would land outside {root}")
    if path.exists() and not path.is_dir():
        return Outcome("failed", entry, reason=f"{path} exists and is not a folder")
    path.mkdir(parents=True, exist_ok=True)
    return Outcome("restored", entry, bytes=0)


def download(s3: Any, plan: Plan, root: Path, relative: str, entry: Entry, overwrite: bool) -> Outcome:
    """One version into `root / relative` (the path the layout gave it)."""
    path = _inside(root, relative)
    if path is None:
        return Outcome("failed", entry, reason=f"{entry.key!r} would land outside {root}")
    if path.exists() and not overwrite:
        if path.stat().st_size == entry.size and entry.sha256 and file_sha256(path).hex() == entry.sha256:
            return Outcome("restored", entry, bytes=entry.size)
        return Outcome("failed", entry, reason=f"{path} already exists (overwrite is off)")
    path.parent.mkdir(parents=True, exist_ok=True)
    if entry.packed:
        # One ranged GET of the pack's version (checked against the object's SHA-256 as it is read).
        blocks: Iterable[bytes] = [read_packed(s3, plan.bucket, entry)]
    else:
        blocks = s3.get_object(Bucket=plan.bucket, Key=entry.data_key, VersionId=entry.version_id)["Body"].iter_chunks(1024 * 1024)
    digest = hashlib.sha256()
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=".restore-")
    try:
        with os.fdopen(handle, "wb") as out:
            for block in blocks:
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
