"""Where each key of a restore to a local folder lands, decided before anything is written.

S3 keys are not file paths: S3 keeps `a//b` and `a/b` (or `c/./d` and `c/d`) apart, a file system makes
them one file; S3 holds a key `y` beside `y/z`, a file system cannot have a file and a folder of one name;
a key may hold a NUL, a control character or a 300-byte segment, which no file name can. So the whole
selection is laid out first, and every key gets either a path inside the target folder or a problem:

- a key's path is its `/`-separated segments, with empty and `.` segments dropped (what the file system
  would do to them anyway);
- a key ending in `/` is a folder marker and becomes a directory; a marker holding bytes is reported, as a
  folder cannot hold them;
- an invalid name is reported with its reason: an empty key, a `..` segment (on disk it means the parent
  folder, in S3 it is a name), a NUL or other control character, a segment over 255 bytes, a path over
  4,095 bytes, a key that names the target folder itself;
- a collision (keys that land on one file, or a file where another key needs a folder) is reported for
  every key involved, naming the other keys and the path. **None of the colliding keys is restored**:
  picking one would silently drop the others' bytes (or mix versions under one name), and no rule can say
  which one the operator meant. A bucket target keeps keys exact and restores all of them.

Two folder markers that land on one directory do not collide: a marker's only content is the folder.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from chalicelib.catalog.manifests import Entry
from chalicelib.plans import Plan
from chalicelib.restore.requests import Target
from chalicelib.restore.selection import target_key

# The common limits of Linux, macOS and Windows file systems (ext4, APFS, NTFS): bytes per name, per path.
NAME_MAX = 255
PATH_MAX = 4095
# How many other keys a collision's reason names (a file beside a folder of 10,000 keys names a few).
OTHERS_NAMED = 5

COLLISION = "collision"
INVALID_NAME = "invalid name"
MARKER_WITH_CONTENT = "folder marker with content"

EntryId = tuple[str, str]  # (source, key): unique within a snapshot


@dataclass(frozen=True)
class Problem:
    """Why an entry is not restored to the folder."""

    kind: str  # COLLISION, INVALID_NAME or MARKER_WITH_CONTENT
    reason: str


@dataclass
class FolderLayout:
    """Every entry's place: `paths` (relative, `/`-separated) for what is written, `problems` for the rest."""

    root: Path
    paths: dict[EntryId, str] = field(default_factory=dict)
    folders: set[EntryId] = field(default_factory=set)
    problems: dict[EntryId, Problem] = field(default_factory=dict)

    def problem(self, entry: Entry) -> Problem | None:
        return self.problems.get(entry.sort_key)

    def path(self, entry: Entry) -> str:
        """The entry's path relative to the root (only for entries without a problem)."""
        return self.paths[entry.sort_key]

    def is_folder(self, entry: Entry) -> bool:
        return entry.sort_key in self.folders

    def count(self, kind: str) -> int:
        return sum(1 for problem in self.problems.values() if problem.kind == kind)

    def report(self, limit: int = 100) -> dict[str, Any]:
        """The problems as a quote shows them: counts by kind, and the first `limit` entries with reasons."""
        listed = [
            {"source": source, "key": key, "problem": problem.kind, "reason": problem.reason}
            for (source, key), problem in sorted(self.problems.items())[:limit]
        ]
        return {
            "objects": len(self.problems),
            "collisions": self.count(COLLISION),
            "invalid_names": self.count(INVALID_NAME),
            "markers_with_content": self.count(MARKER_WITH_CONTENT),
            "listed": listed,
        }


def invalid_name(key: str, relative: str, root: Path) -> str | None:
    """Why `relative` (the key as placed under the target) cannot be a path inside `root`; None if it can."""
    if key == "":
        return "an empty key names no file"
    for character in relative:
        if ord(character) < 0x20 or ord(character) == 0x7F:
            return f"control character {character!r} in the key: file names cannot hold it"
    segments = relative.split("/")
    if ".." in segments:
        return "a '..' segment means the parent folder on disk (in S3 it is a name); it would climb out of the folder"
    for segment in segments:
        size = len(segment.encode("utf-8", "surrogatepass"))
        if size > NAME_MAX:
            return f"segment {segment[:40]!r}... is {size} bytes; a file name holds at most {NAME_MAX}"
    if not [s for s in segments if s not in ("", ".")]:
        return "the key names the target folder itself, not a file or folder in it"
    size = len(os.fsencode(root)) + 1 + len(relative.encode("utf-8", "surrogatepass"))
    if size > PATH_MAX:
        return f"the path would be {size} bytes; a path holds at most {PATH_MAX}"
    return None


def normal_path(relative: str) -> str:
    """What the file system makes of a key: empty and `.` segments dropped."""
    return "/".join(s for s in relative.split("/") if s not in ("", "."))


def _ancestors(path: str) -> Iterable[str]:
    parts = path.split("/")
    for end in range(1, len(parts)):
        yield "/".join(parts[:end])


def lay_out(plan: Plan, target: Target, entries: Iterable[Entry]) -> FolderLayout:
    """Every entry's path under `target.path`, or why it has none (see the module's rules)."""
    assert target.path
    layout = FolderLayout(root=Path(target.path))
    keys: dict[EntryId, str] = {}
    files: dict[str, list[EntryId]] = {}
    markers: dict[str, list[EntryId]] = {}
    for entry in entries:
        ident = entry.sort_key
        keys[ident] = entry.key
        relative = target_key(plan, target, entry)
        reason = invalid_name(entry.key, relative, layout.root)
        if reason:
            layout.problems[ident] = Problem(INVALID_NAME, reason)
            continue
        path = normal_path(relative)
        if relative.endswith("/"):
            if entry.size:
                layout.problems[ident] = Problem(
                    MARKER_WITH_CONTENT,
                    f"a folder marker (a key ending in '/') holding {entry.size} bytes: a folder cannot hold "
                    "them; restore to a bucket to keep them",
                )
                continue
            layout.folders.add(ident)
            markers.setdefault(path, []).append(ident)
        else:
            files.setdefault(path, []).append(ident)
        layout.paths[ident] = path
    _find_collisions(layout, keys, files, markers)
    return layout


def _find_collisions(
    layout: FolderLayout, keys: dict[EntryId, str], files: dict[str, list[EntryId]], markers: dict[str, list[EntryId]]
) -> None:
    # Paths that must be folders: every ancestor of anything placed, and every marker's own path.
    folders = set(markers)
    for path in list(files) + list(markers):
        folders.update(_ancestors(path))
    # A contested path: two files on it, or a file where a folder must be. Its group is every key involved.
    groups: dict[str, set[EntryId]] = {}
    for path, idents in files.items():
        if len(idents) > 1 or path in folders:
            groups[path] = set(idents) | set(markers.get(path, ()))
    contested_folders = {path for path in groups if path in folders}
    if contested_folders:
        for path, idents in list(files.items()) + list(markers.items()):
            for ancestor in _ancestors(path):
                if ancestor in contested_folders:
                    groups[ancestor].update(idents)
    for path, group in groups.items():
        as_folder = path in folders
        why = (
            "a file and a folder cannot share one name" if as_folder else "they would be one file on disk"
        )
        for ident in sorted(group):
            others = sorted(keys[other] for other in group if other != ident)
            named = ", ".join(repr(k) for k in others[:OTHERS_NAMED])
            if len(others) > OTHERS_NAMED:
                named += f" and {len(others) - OTHERS_NAMED} more"
            reason = (
                f"collides with {named} at {path!r} in the folder: {why}, so none of these keys is restored "
                "there; restore to a bucket to keep every key exact"
            )
            earlier = layout.problems.get(ident)
            # A key in two contested paths (`y` beside `y/z` and `y//z`) keeps the first reason; one suffices.
            if earlier is None:
                layout.problems[ident] = Problem(COLLISION, reason)
            layout.paths.pop(ident, None)
            layout.folders.discard(ident)
