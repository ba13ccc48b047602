"""A manifest's order, checked as it is read: whoever merges manifests (the prune's references, its kept
index) relies on each being sorted by (source, key), as every manifest a backup writes is."""

from __future__ import annotations

from collections.abc import Iterable, Iterator

from chalicelib.catalog.manifests import Entry
from chalicelib.errors import Tampered


def in_order(entries: Iterable[Entry], where: str) -> Iterator[Entry]:
    """`entries`, refusing one that comes before the entry it follows (Tampered).

    The merge of references is only right over sorted streams: an entry out of order would end the
    references of the keys after it early, and their versions would look unreferenced. Every manifest the
    system writes is sorted by (source, key); one that is not was not written by a backup."""
    for entry, _ in tagged_in_order(((entry, "") for entry in entries), where):
        yield entry


def tagged_in_order(pairs: Iterable[tuple[Entry, str]], where: str) -> Iterator[tuple[Entry, str]]:
    """`in_order` for (entry, tag) pairs."""
    previous: tuple[str, str] | None = None
    for entry, tag in pairs:
        if previous is not None and entry.sort_key < previous:
            raise Tampered(
                f"{where} lists {entry.source}/{entry.key} after {previous[0]}/{previous[1]}: manifests are sorted "
                "by key, so it was not written by a backup; the prune of this plan stopped"
            )
        previous = entry.sort_key
        yield entry, tag
