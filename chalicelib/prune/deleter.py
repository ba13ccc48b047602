"""How a prune deletes versions: DeleteObjects a thousand at a time, what S3's refusals mean, and what the
deleted versions were billed and would have cost (estimated by the cost model from the prices)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any

from chalicelib.cost.model import StoredVersion, early_deletion_as_stored
from chalicelib.plans import Plan
from chalicelib.prices import Prices
from chalicelib.prune.record import PlanPrune, add_to
from chalicelib.prune.sweep import Rules, StoredKey

# The most versions one DeleteObjects request takes.
DELETE_BATCH = 1000


def retained_by_object_lock(error: dict[str, Any]) -> bool:
    """Whether a DeleteObjects error is S3 refusing to delete a version under Object Lock retention (a later
    prune takes it) rather than a missing permission or key (an error to report): S3 answers both with
    AccessDenied, the first with "Access Denied because object protected by object lock"."""
    return error.get("Code") == "AccessDenied" and "object lock" in str(error.get("Message", "")).lower()


def delete_versions(s3: Any, bucket: str, objects: list[dict[str, str]]) -> dict[tuple[str, str | None], dict[str, Any]]:
    """Delete the versions (`{"Key", "VersionId"}` each), a thousand per request: the errors S3 answered,
    by (key, version id)."""
    failed: dict[tuple[str, str | None], dict[str, Any]] = {}
    for start in range(0, len(objects), DELETE_BATCH):
        batch = objects[start:start + DELETE_BATCH]
        response = s3.delete_objects(Bucket=bucket, Delete={"Objects": batch, "Quiet": True})
        failed.update({(e.get("Key"), e.get("VersionId")): e for e in response.get("Errors", [])})
    return failed


def monthly_cost(prices: Prices | None, storage_class: str, size: int) -> float:
    """What a version costs a month where it is (with the 40 KB an archived object carries)."""
    if prices is None:
        return 0.0
    known = storage_class if storage_class in prices.storage else "STANDARD"
    overhead = 0.0
    if known in prices.archive_classes:
        overhead = (
            prices.overhead_standard_bytes * prices.storage_per_byte_month("STANDARD")
            + prices.overhead_archive_bytes * prices.storage_per_byte_month(known)
        )
    return size * prices.storage_per_byte_month(known) + overhead


def early_charge(
    plan: Plan, version: dict[str, Any], noncurrent_since: datetime | None, storage_class: str, prices: Prices | None, now: datetime
) -> float:
    """What deleting the version now is billed for leaving its storage class before its minimum duration."""
    if prices is None or prices.minimum_days(storage_class) <= 0:
        return 0.0
    written: datetime = version["LastModified"]
    stored = StoredVersion(
        size=int(version.get("Size", 0)),
        written=written,
        noncurrent_since=max(noncurrent_since, written) if noncurrent_since is not None else None,
    )
    return early_deletion_as_stored(stored, plan.lifecycle, storage_class, max(now, written), prices).charge


def add_charge(tally: dict[str, Any], charge: float, size: int) -> None:
    tally["usd"] = round(tally["usd"] + charge, 9)
    tally["versions"] += 1
    tally["bytes"] += size


# A row of a batch being sent: key, version id, what it is (the version's storage class, MARKER or
# MANIFEST), its size, and the early deletion charge deleting it is billed (estimated when it was judged).
Row = list[Any]
MARKER = "~marker"
MANIFEST = "~manifest"


def count_sent(work: PlanPrune, rows: list[Row], failed: dict[tuple[str, str | None], dict[str, Any]]) -> None:
    """Count a batch S3 has answered. S3 answers a version that is already gone as deleted too, so what is
    counted is the batch as the listing before it held it (`rows`), less what S3 refused."""
    for key, version_id, kind, size, charge in rows:
        # S3 names the version in each error; moto names only the key.
        error = failed.get((key, version_id)) or failed.get((key, None))
        if error is not None:
            if retained_by_object_lock(error):
                # Retention set on the version itself, longer than the bucket's default: a later prune takes it.
                work.object_locked += 1
            else:
                work.add_error(f"could not delete {key} version {version_id}: {error.get('Code')}: {error.get('Message')}")
        elif kind == MARKER:
            work.markers_deleted += 1
        elif kind == MANIFEST:
            work.manifests_deleted += 1
        else:
            add_to(work.deleted, kind, size)
            if charge:
                add_charge(work.early_deletion, charge, size)


class Deleter:
    """Deletes versions a thousand at a time (one DeleteObjects request) and counts them, exactly once
    whatever the crash: what is pending is recorded in the prune's checkpoint (`work.sending`, with the
    sweep's position after it) before it is sent, and counted, and cleared, once S3 has answered; the next
    save of the checkpoint carries both. A prune resumed with a batch recorded sends it again (`resend`) and
    counts it from its rows: a crash before the answer left it uncounted, whatever S3 did with it."""

    def __init__(self, s3: Any, plan: Plan, work: PlanPrune, prices: Prices | None, now: datetime) -> None:
        self.s3 = s3
        self.plan = plan
        self.work = work
        self.prices = prices
        self.now = now
        self.pending: list[Row] = []

    def add(self, data_key: str, version: dict[str, Any], noncurrent_since: datetime | None) -> None:
        if version.get("marker"):
            self.pending.append([data_key, version["VersionId"], MARKER, 0, 0.0])
            return
        storage_class = version.get("StorageClass") or "STANDARD"
        size = int(version.get("Size", 0))
        charge = early_charge(self.plan, version, noncurrent_since, storage_class, self.prices, self.now)
        self.pending.append([data_key, version["VersionId"], storage_class, size, charge])

    def add_manifest(self, key: str, version_id: str) -> None:
        self.pending.append([key, version_id, MANIFEST, 0, 0.0])

    def send(self, save: Callable[[], None]) -> None:
        """Record what is pending as the batch being sent, `save` the checkpoint, then send and count it."""
        if not self.pending:
            return
        self.work.sending, self.pending = self.work.sending + self.pending, []
        save()
        self.resend()

    def resend(self) -> None:
        """Send the recorded batch (again, after a crash) and count it; cleared once counted."""
        rows = self.work.sending
        for start in range(0, len(rows), DELETE_BATCH):
            batch = rows[start:start + DELETE_BATCH]
            failed = delete_versions(self.s3, self.plan.bucket, [{"Key": row[0], "VersionId": row[1]} for row in batch])
            count_sent(self.work, batch, failed)
        self.work.sending = []


def judge_versions(
    stored: StoredKey,
    rules: Rules,
    work: PlanPrune,
    deleter: Deleter | None,
    plan: Plan,
    prices: Prices | None,
    now: datetime,
    markers: bool = False,
) -> int:
    """Judge every version of one key by the sweep's `rules`, and count it: with a `deleter`, an unreferenced
    version is deleted; without one (the survey), counted as what would go. With `markers`, the key's delete
    markers are judged too (`judge_markers`). Returns how many versions it has."""
    listed: set[str] = set()
    newest_staying: datetime | None = None
    count = 0
    for version, noncurrent_since in stored.versions():
        count += 1
        listed.add(version["VersionId"])
        storage_class = version.get("StorageClass") or "STANDARD"
        size = int(version.get("Size", 0))
        if deleter is None:
            add_to(work.stored, storage_class, size)
        verdict = rules.judge(version, stored.referenced)
        if verdict != "delete" and (newest_staying is None or version["LastModified"] > newest_staying):
            newest_staying = version["LastModified"]
        if verdict == "young":
            work.kept_young += 1
        elif verdict == "running":
            work.kept_running += 1
        elif verdict == "locked":
            work.object_locked += 1
        elif verdict == "delete":
            if deleter is not None:
                deleter.add(stored.data_key, version, noncurrent_since)
            else:
                add_to(work.would_delete, storage_class, size)
                charge = early_charge(plan, version, noncurrent_since, storage_class, prices, now)
                if charge:
                    add_charge(work.would_early_deletion, charge, size)
                work.monthly_saving_usd += monthly_cost(prices, storage_class, size)
    work.missing += len(stored.referenced - listed)
    if markers:
        judge_markers(stored, rules, work, deleter, newest_staying)
    return count


def judge_markers(
    stored: StoredKey, rules: Rules, work: PlanPrune, deleter: Deleter | None, newest_staying: datetime | None
) -> None:
    """A delete marker no manifest names (none does) goes by the same rules as a version, except the one the
    key will show once this pass is done, while a version under it stays: `data/` mirrors each source's
    deletions, and removing that marker would bring the deleted object back as current (and move it from the
    lifecycle's noncurrent rules to its current ones). That is the newest marker newer than the newest
    version that stays (`newest_staying`), unless a marker newer than that version stays anyway: so a
    marker under an orphan version deleted in the same pass stays too."""
    doomed: list[dict[str, Any]] = []
    hidden = False
    for marker in stored.markers():
        newer = newest_staying is not None and marker["LastModified"] >= newest_staying
        if rules.judge(marker, set()) != "delete":
            hidden = hidden or newer
            continue
        doomed.append(marker)
    if newest_staying is not None and not hidden:
        shown = [m for m in doomed if m["LastModified"] >= newest_staying]
        if shown:
            doomed.remove(max(shown, key=lambda m: (m["LastModified"], bool(m.get("IsLatest")))))
    for marker in doomed:
        if deleter is not None:
            deleter.add(stored.data_key, marker, None)
        else:
            work.would_delete_markers += 1
