"""What the main page shows, read the way the API reads it: the backups of the last 30 days through the
paged listing of `GET /backups` (`chalicelib.api.backups.list_backups`), the weekly verification records, the
unfinished restores, the latest prunes (held ones need attention), and storage per class (storage.py).

A page costs what the window holds, never what the catalog holds: record keys sort newest first and the
listing stops at the first record older than the window, so a year of daily backups reads the same 30
records as a month of them. At most `MAX_BACKUPS` records are read (a busy stage with many manual backups
shows the newest ones and says so).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from chalicelib.api.backups import list_backups
from chalicelib.catalog.records import BackupStatus, RecordStore, backup_time
from chalicelib.dashboard.storage import StorageByClass, StorageCache, cost_report
from chalicelib.deploy.template import SILENCE_HOURS
from chalicelib.errors import NotFound
from chalicelib.plans import PlanSet
from chalicelib.prune.record import PruneRecord, PruneStore
from chalicelib.restore.record import RestoreRecord, RestoreStore
from chalicelib.schedule import Schedule
from chalicelib.times import isoformat, parse_iso
from chalicelib.verify.record import VerificationStatus, VerificationRecord, VerificationStore

WINDOW = timedelta(days=30)
# The alarm's threshold: no fully successful backup for this long and the alarm fires.
STALE_AFTER = timedelta(hours=SILENCE_HOURS)
PAGE_SIZE = 100
MAX_BACKUPS = 300
# Verification jobs read: two weeks of daily jobs covers the last seven days' slices with room for reruns.
VERIFICATION_RECORDS = 14
COVERAGE_DAYS = 7
MAX_RESTORES = 20
# Prune records read: a daily prune and a few manual ones; the newest finished one of each plan decides.
PRUNE_RECORDS = 10
WEEKDAYS = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")


def _time(value: Any) -> datetime | None:
    try:
        return parse_iso(value) if isinstance(value, str) and value else None
    except ValueError:
        return None


@dataclass
class PlanHealth:
    """One plan at a glance. Times are aware datetimes (UTC); the page shows them in the zone."""

    name: str
    last_id: str | None = None
    last_status: str | None = None
    last_time: datetime | None = None
    # Why the last backup of the plan did not fully succeed: its first error, warning or drift finding.
    reason: str | None = None
    success_id: str | None = None
    success_time: datetime | None = None
    age: timedelta | None = None
    snapshot_id: str | None = None
    objects: int | None = None
    bytes: int | None = None
    # For a plan with a vault, as its last backup saw it (vault_watch.py): the newest snapshot complete in the
    # vault, its lag behind the newest sealed one, failed replications.
    vault: dict[str, Any] | None = None

    @property
    def stale(self) -> bool:
        """No success within the alarm's threshold (or none in the window at all)."""
        return self.age is None or self.age > STALE_AFTER


@dataclass
class Finding:
    """Something on the attention list: which plan and backup, how many, and the messages."""

    plan: str
    backup_id: str | None
    count: int
    messages: list[str] = field(default_factory=list)


@dataclass
class HeldPrune:
    """A plan whose latest prune the prune guard held back: nothing of it was deleted, and retention waits
    until an operator allows it (or changes the policy)."""

    plan: str
    prune_id: str
    time: datetime | None
    reasons: list[str]
    message: str


@dataclass
class SliceState:
    weekday: int
    status: str  # SUCCEEDED, FAILED, RUNNING, or "not run"
    job_id: str | None = None
    time: datetime | None = None

    @property
    def name(self) -> str:
        return WEEKDAYS[self.weekday]


@dataclass
class Verification:
    """The weekly check of stored versions over the last seven days: which slices passed, and what was found."""

    slices: list[SliceState]
    findings: list[dict[str, Any]]
    errors: list[str]

    @property
    def covered(self) -> int:
        return sum(1 for s in self.slices if s.status == VerificationStatus.SUCCEEDED)


@dataclass
class Attention:
    failed_plans: list[Finding]
    failed_objects: list[Finding]
    held_deletions: list[Finding]
    held_prunes: list[HeldPrune]
    drift: list[Finding]
    verification: Verification
    restores: list[RestoreRecord]
    # Backup records that cannot be trusted (tampering, or a record that does not parse).
    unreadable: list[Finding] = field(default_factory=list)

    @property
    def count(self) -> int:
        verification = len(self.verification.findings) + len(self.verification.errors)
        return (
            len(self.failed_plans) + len(self.failed_objects) + len(self.held_deletions) + len(self.held_prunes)
            + len(self.drift) + verification + len(self.restores) + len(self.unreadable)
        )


@dataclass
class Overview:
    now: datetime
    window_start: datetime
    # Every backup in the window was read (False: only the newest MAX_BACKUPS).
    complete: bool
    backups: list[dict[str, Any]]
    plans: list[PlanHealth]
    system: PlanHealth
    # The daily backup's next run; None under `rate(1 day)` before the first scheduled backup (not known yet).
    next_run: datetime | None
    attention: Attention
    costs: dict[str, Any] | None
    # What the buckets hold per storage class (None where the cost report is shown instead).
    storage: StorageByClass | None = None
    schedule: Schedule = Schedule()

    @property
    def healthy(self) -> bool:
        return not self.system.stale and not any(p.stale for p in self.plans) and not self.attention.count


def recent_backups(records: RecordStore, plans: PlanSet, since: datetime) -> tuple[list[dict[str, Any]], bool]:
    """The backups started since `since`, newest first, as `GET /backups` describes them, a page at a time;
    and whether all of them were read."""
    found: list[dict[str, Any]] = []
    token: str | None = None
    while True:
        params = {"since": isoformat(since), "limit": str(PAGE_SIZE)}
        if token:
            params["next_token"] = token
        page = list_backups(records, plans, params)
        found.extend(page["backups"])
        token = page["next_token"]
        if not token:
            return found, True
        if len(found) >= MAX_BACKUPS:
            return found, False


def plan_health(name: str, backups: list[dict[str, Any]], now: datetime) -> PlanHealth:
    """From backups newest first: the plan's last run, last success and latest snapshot."""
    health = PlanHealth(name=name)
    for backup in backups:
        result = backup["plans"].get(name)
        if result is None or backup.get("dry_run"):
            continue
        if health.last_id is None:
            health.last_id, health.last_status = backup["backup_id"], result["status"]
            health.last_time = _time(result.get("finished_at")) or _time(backup.get("started_at"))
            health.vault = result.get("vault")
            if result["status"] not in (BackupStatus.SUCCEEDED, BackupStatus.RUNNING):
                reasons = result.get("errors", []) + result.get("warnings", []) + [
                    f"drift: {d}" for d in result.get("drift", [])
                ]
                health.reason = reasons[0] if reasons else None
        if health.success_id is None and result["status"] == BackupStatus.SUCCEEDED:
            health.success_id = backup["backup_id"]
            health.success_time = _time(result.get("finished_at")) or _time(backup.get("finished_at"))
            if health.success_time is not None:
                health.age = now - health.success_time
        if health.snapshot_id is None and result.get("snapshot") and result["status"] != BackupStatus.RUNNING:
            health.snapshot_id, health.objects, health.bytes = backup["backup_id"], result["objects"], result["bytes"]
        if health.last_id and health.success_id and health.snapshot_id:
            break
    return health


def system_health(backups: list[dict[str, Any]], now: datetime) -> PlanHealth:
    """The whole system as the alarm sees it: a success is a backup every plan of which succeeded."""
    health = PlanHealth(name="all plans")
    for backup in backups:
        if backup.get("dry_run"):
            continue
        if health.last_id is None:
            health.last_id, health.last_status = backup["backup_id"], backup["status"]
            health.last_time = _time(backup.get("finished_at")) or _time(backup.get("started_at"))
        if backup["status"] == BackupStatus.SUCCEEDED:
            health.success_id = backup["backup_id"]
            health.success_time = _time(backup.get("finished_at"))
            health.age = now - health.success_time if health.success_time else None
            break
    return health


def last_delivery(backups: list[dict[str, Any]], now: datetime) -> datetime | None:
    """When the schedule last delivered: the time in the newest scheduled backup's id (its event's time),
    from backups newest first. One dated after `now` is no delivery (a clock ahead, or a planted record)."""
    for backup in backups:
        if backup.get("trigger") == "schedule" and not backup.get("dry_run"):
            moment = backup_time(backup["backup_id"])
            if moment <= now:
                return moment
    return None


def latest_finished(name: str, backups: list[dict[str, Any]]) -> tuple[str, dict[str, Any]] | None:
    """The plan's newest finished result (held deletions, drift and failures are reconsidered by every run,
    so only the latest one says what is true now)."""
    for backup in backups:
        result = backup["plans"].get(name)
        if result is not None and not backup.get("dry_run") and result["status"] != BackupStatus.RUNNING:
            return backup["backup_id"], result
    return None


def findings(names: list[str], backups: list[dict[str, Any]]) -> dict[str, list[Finding]]:
    found: dict[str, list[Finding]] = {"failed_plans": [], "failed_objects": [], "held_deletions": [], "drift": []}
    for name in names:
        latest = latest_finished(name, backups)
        if latest is None:
            continue
        backup_id, result = latest
        if result["status"] == BackupStatus.FAILED:
            found["failed_plans"].append(Finding(name, backup_id, 1, list(result.get("errors", []))))
        elif result.get("failed"):
            found["failed_objects"].append(Finding(name, backup_id, result["failed"], list(result.get("errors", []))[:10]))
        if result.get("deletions_held_back"):
            mass = (result.get("findings") or {}).get("mass_deletion") or {}
            message = mass.get("message") or f"{result['deletions_held_back']} deletions held back"
            found["held_deletions"].append(Finding(name, backup_id, result["deletions_held_back"], [message]))
        if result.get("drift"):
            found["drift"].append(Finding(name, backup_id, len(result["drift"]), list(result["drift"])))
    return found


def verification(jobs: list[VerificationRecord], now: datetime) -> Verification:
    """Which weekday slices were checked in the last seven days (every stored version belongs to one), and
    what the jobs found. Jobs are newest first; the newest job of each weekday decides its slice."""
    since = now - timedelta(days=COVERAGE_DAYS)
    slices = {day: SliceState(day, "not run") for day in range(7)}
    found: list[dict[str, Any]] = []
    errors: list[str] = []
    for job in jobs:
        started = _time(job.started_at)
        if started is None or started < since:
            continue
        state = slices.get(job.weekday)
        # Only the weekly jobs cover a slice; an on-demand check of one backup reports findings only.
        if job.kind == "slice" and state is not None and state.job_id is None:
            slices[job.weekday] = SliceState(job.weekday, job.status, job.job_id, started)
        if job.status == VerificationStatus.FAILED:
            found.extend(dict(f, job_id=job.job_id) for f in job.missing + job.damaged)
            errors.extend(f"{job.job_id}: {e}" for e in job.errors)
    return Verification(slices=[slices[day] for day in range(7)], findings=found[:50], errors=errors[:20])


def held_prunes(prunes: list[PruneRecord], names: list[str]) -> list[HeldPrune]:
    """Per plan, its newest finished real prune (newest first in `prunes`), when the guard held it."""
    held: list[HeldPrune] = []
    decided: set[str] = set()
    for record in prunes:
        if record.dry_run or not record.finished:
            continue
        for name, plan in record.plans.items():
            if name in decided or name not in names or plan.status is None:
                continue
            decided.add(name)
            if plan.status == "HELD":
                guard = plan.guard or {}
                message = next((w for w in plan.warnings if "held" in w), "the prune guard held this prune")
                held.append(HeldPrune(name, record.prune_id, _time(record.finished_at), list(guard.get("reasons", [])), message))
    return sorted(held, key=lambda h: names.index(h.plan))


def unfinished_restores(store: RestoreStore) -> list[RestoreRecord]:
    restores = []
    for restore_id in sorted(store.unfinished(), reverse=True)[:MAX_RESTORES]:
        try:
            record = store.get(restore_id)
        except NotFound:  # a queue entry whose record went away: nothing to show
            continue
        if not record.finished:
            restores.append(record)
    return restores


def build(settings: Any, clients: Any, now: datetime, storage: StorageCache | None = None) -> Overview:
    """Everything the main page shows, read now with `clients` (the operator's credentials); `storage`
    keeps the listing of storage per class between pages (None: listed now)."""
    plans: PlanSet = settings.plans
    records = RecordStore(clients.s3, plans.catalog_bucket)
    since = now - WINDOW
    listed, complete = recent_backups(records, plans, since)
    # A record that cannot be trusted (sealed copy differs, unreadable) is listed by GET /backups as
    # UNREADABLE: never counted as a backup here, always shown as needing attention.
    backups = [b for b in listed if b["status"] != "UNREADABLE"]
    unreadable = [b for b in listed if b["status"] == "UNREADABLE"]
    found = findings(plans.names, backups)
    jobs = VerificationStore(clients.s3, plans.catalog_bucket).latest(VERIFICATION_RECORDS)
    attention = Attention(
        failed_plans=found["failed_plans"],
        failed_objects=found["failed_objects"],
        held_deletions=found["held_deletions"],
        held_prunes=held_prunes(PruneStore(clients.s3, plans.catalog_bucket).latest(PRUNE_RECORDS), plans.names),
        drift=found["drift"],
        verification=verification(jobs, now),
        restores=unfinished_restores(RestoreStore(clients.s3, plans.catalog_bucket)),
        unreadable=[Finding("-", b.get("backup_id"), 1, [str(b.get("error", ""))]) for b in unreadable],
    )
    plan_states = [plan_health(name, backups, now) for name in plans.names]
    system = system_health(backups, now)
    # What is stored now: each plan's latest snapshot (a plan that failed last still has its earlier one).
    stored = [p for p in plan_states if p.snapshot_id]
    if stored:
        system.objects = sum(p.objects or 0 for p in stored)
        system.bytes = sum(p.bytes or 0 for p in stored)
    costs = cost_report(settings, clients, now)
    stored_by_class = (storage or StorageCache()).get(clients.s3, plans, settings.prices, now) if costs is None else None
    return Overview(
        now=now,
        window_start=since,
        complete=complete,
        backups=backups,
        plans=plan_states,
        system=system,
        next_run=plans.schedule.next_run(now, last_delivery(backups, now)),
        attention=attention,
        costs=costs,
        storage=stored_by_class,
        schedule=plans.schedule,
    )
