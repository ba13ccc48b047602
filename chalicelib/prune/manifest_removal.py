"""The prune's last step for a plan (`job.py`, step 5): every version of the manifest of each snapshot it
removes, once none of the snapshot's versions is named any more, and of a snapshot an earlier prune marked whose
manifest is still there. A manifest goes last, so a crash before it leaves a marked snapshot whose manifest
still names versions: the next prune, which skips marked snapshots, deletes the rest and then the manifest.
"""

from __future__ import annotations

from typing import Any

from chalicelib.catalog.manifests import manifest_key
from chalicelib.jobs.runner import Checkpoint
from chalicelib.plans import Plan
from chalicelib.prices import Prices
from chalicelib.prune import decision
from chalicelib.prune.deleter import Deleter
from chalicelib.prune.in_use import InUse
from chalicelib.prune.record import PlanPrune, PruneRecord
from chalicelib.times import utcnow


def remove_manifests(
    s3: Any, catalog_bucket: str, in_use: InUse, prices: Prices | None, checkpoint: Checkpoint[PruneRecord], plan: Plan,
    work: PlanPrune,
) -> None:
    """Every version of the manifest of each snapshot this prune removes, and of any
    snapshot an earlier prune marked whose manifest is still there (it crashed first, or Object Lock held
    the manifest), unless a backup that runs now compares with it."""
    deleter = Deleter(s3, plan, work, prices, utcnow())
    if work.sending:
        deleter.resend()  # recorded, then the invocation ended before S3's answer was counted
    sealed = decision.sealed_backups(s3, catalog_bucket)
    running = in_use.running(sealed, utcnow(), plan.name)
    marked = in_use.marked(plan)
    meta = decision.scan_bucket(s3, plan.bucket)
    candidates = [m.backup_id for m in meta.manifests.values() if m.plan == plan.name and m.backup_id in sealed]
    protected: set[str] = set()
    for running_id, started in running.items():
        protected |= decision.possible_bases(running_id, started, sealed, candidates, marked)
    restoring = in_use.restoring(plan)
    present = {m.backup_id for m in meta.manifests.values() if m.plan == plan.name}
    for backup_id in sorted((set(work.removing) | marked) & present):
        if backup_id not in marked:
            continue  # never delete what is not marked first
        if backup_id in protected:
            work.warn(f"the manifest of snapshot {backup_id} stays until the backup comparing with it ends")
            continue
        if backup_id in restoring:
            work.warn(f"the manifest of snapshot {backup_id} stays until restore {restoring[backup_id]} ends")
            continue
        # Every version the scan found (a delete marker there is refused by the bucket policy; one left
        # alone is removed by the lifecycle's ExpiredObjectDeleteMarker once nothing is under it).
        key = manifest_key(plan.name, backup_id)
        for version_id, _ in meta.manifests[key].versions:
            deleter.add_manifest(key, version_id)
    # One held by Object Lock is counted in `object_locked`: a later prune deletes it once its retention passed.
    deleter.send(checkpoint.save)
