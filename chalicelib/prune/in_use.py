"""What a prune of a plan leaves alone whatever its policy says, as the catalog says it now: the snapshots
a running backup may compare with (its possible bases, `decision.py`), those an unfinished restore reads
(catalog/restoring.py), and which snapshots are marked pruned already (catalog/pruned.py). Read again by each
step that needs it: a backup or restore may start while a prune runs.
"""

from __future__ import annotations

from collections.abc import Collection
from datetime import datetime
from typing import Any

from chalicelib.catalog.pruned import PrunedMarkers
from chalicelib.catalog.records import RecordStore
from chalicelib.catalog.restoring import snapshots_being_restored
from chalicelib.plans import Plan
from chalicelib.prune import decision


class InUse:
    """What runs and reads in the catalog bucket, by plan. `records` are the backups' records, `markers` the
    prune's own pruned markers."""

    def __init__(self, s3: Any, catalog_bucket: str, records: RecordStore, markers: PrunedMarkers) -> None:
        self.s3 = s3
        self.catalog_bucket = catalog_bucket
        self.records = records
        self.markers = markers

    def marked(self, plan: Plan) -> set[str]:
        """The plan's snapshots (backup ids) a prune marked."""
        return {backup_id for (name, backup_id) in self.markers.all() if name == plan.name}

    def restoring(self, plan: Plan) -> dict[str, str]:
        """backup id -> restore id of the plan's snapshots that unfinished restores read. Read after this
        prune's markers are written (the delete and manifest steps), it names every restore that could have
        found its snapshot unmarked (catalog/restoring.py): their versions stay, marked or not."""
        return {
            backup_id: restore_id
            for (name, backup_id), restore_id in snapshots_being_restored(self.s3, self.catalog_bucket).items()
            if name == plan.name
        }

    def running(self, sealed: Collection[str], now: datetime, plan: str) -> dict[str, datetime]:
        """backup id -> when it started, of the backups running now that back up the plan (`decision.py`)."""
        found = decision.running_backups(self.records, sealed, now)
        return {**found.get("*", {}), **found.get(plan, {})}
