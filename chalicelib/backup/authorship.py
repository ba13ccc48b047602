"""Whether what a backup run finds was written by the run itself (catalog/run_keys.py): the record it is
invoked for, a sealed record, a manifest for its own id. What was not is tampering: the run reports it and
fails loudly rather than adopt it."""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from chalicelib.catalog import run_keys
from chalicelib.catalog.records import BackupRecord, BackupStatus


def invocation_problem(record: BackupRecord, run_key: str | None, sealed: bool) -> str | None:
    """Why this invocation may not work on `record` (None: it may), the sealed record when `sealed` (whatever
    it says of itself). An invocation without a key works only on a backup recorded without one (recorded
    before runs had keys)."""
    if run_key is None:
        if record.run_key_sha256 is None:
            return None
        return f"backup {record.backup_id} was invoked without its run's key: the invocation did nothing"
    if sealed:
        return sealed_problem(record, run_key)
    if record.run_key_sha256 != run_keys.key_digest(run_key):
        return (
            f"the working record of backup {record.backup_id} does not name its run's key (it was rewritten while "
            "the backup ran)"
        )
    return None


def sealed_problem(record: BackupRecord, run_key: str | None) -> str | None:
    """Why a sealed record found for the run's backup is not the run's own (None: it is, or there is no key
    to tell)."""
    if run_key is None:
        return None
    if not run_keys.proves(record.run_proof, run_keys.record_proof(run_key, record.to_dict())):
        return (
            f"the sealed record of backup {record.backup_id} (status {record.status}) was not written by the backup's "
            "run: it is not trusted, and the run ends FAILED"
        )
    return None


def manifest_problem(header: dict[str, Any], lines_sha256: str, plan: str, backup_id: str, run_key: str | None) -> str | None:
    """Why a manifest found at this run's own key is not the run's (None: it is, or there is no key)."""
    if run_key is None:
        return None
    if not run_keys.proves(header.get("run_proof"), run_keys.manifest_proof(run_key, plan, backup_id, lines_sha256)):
        return (
            f"the manifest of plan {plan} for backup {backup_id} was not written by the backup's run (it was there "
            "before the run wrote its own): it is not adopted, and the plan fails"
        )
    return None


def prove_plan(record: BackupRecord, name: str, run_key: str | None) -> None:
    """Sign a plan result the run has just finished (nothing without a key)."""
    result = record.plans[name]
    if run_key is not None and result.status != BackupStatus.RUNNING:
        result.run_proof = run_keys.plan_proof(run_key, record.backup_id, asdict(result))


def results_problem(record: BackupRecord, run_key: str | None) -> str | None:
    """Why the finished plan results about to be sealed are not all the run's own (None: they are, or
    there is no key): a rewritten working record may show a plan finished, naming a manifest of its own."""
    if run_key is None:
        return None
    forged = sorted(
        name for name, result in record.plans.items()
        if result.status != BackupStatus.RUNNING
        and not run_keys.proves(result.run_proof, run_keys.plan_proof(run_key, record.backup_id, asdict(result)))
    )
    if forged:
        return (
            f"the working record of backup {record.backup_id} shows plan(s) {', '.join(forged)} finished, but not as "
            "the backup's run finished them (the record was rewritten): not sealed, and the run ends FAILED"
        )
    return None
