"""A backup run's key: a secret only the run's own invocations hold, so that a run adopts nothing it did not
write itself.

Whoever holds the backup writer's keys can list `meta/backups/`, see a running backup's id, and create, for
that id, a manifest (If-None-Match: it is not there yet) or a sealed record saying SUCCEEDED. Without more, the
run would take that manifest for one a duplicate invocation of its own wrote first, and a sealed record for
its own end. So each run has a key, carried only in the payloads of its own invocations (never in a record, a
checkpoint or a log), and everything a run writes that it may later find and adopt carries a proof, an
HMAC-SHA256 under that key:

- a manifest's header carries `run_proof`, over the plan, the backup id and the SHA-256 of the manifest's
  entry lines: a proof read elsewhere cannot be moved onto other entries;
- a plan's result, once the run finished it, carries `run_proof` in the working record, over its status and
  manifest, so that a rewritten working record cannot finish a plan for the run;
- a sealed record carries `run_proof`, over the backup id, its status and each plan's status and manifest
  (version and SHA-256);
- a checkpoint's state carries `run_proof`, over all it says (the position, the counts, the partial manifest's
  key and SHA-256), so that a run resumes only from its own checkpoint and its own partial manifest;
- a split plan's record of its ranges (`split.json`) carries `run_proof`, over its base and bounds;
- a table reader's progress (`scan.json`, with each part's SHA-256; `export.json`, the export it waits for)
  carries `run_proof`, over all it says.

The working record keeps only the key's SHA-256 (`run_key_sha256`), by which an invocation knows it carries
the run's key. A scheduled run's key is derived from its EventBridge event's id, which only the invocations
of that event see (the backup id holds another hash of it), so every delivery of the event has the same key;
without an event id (a test) it is derived from the backup id, and is no secret. A backup or a partial
manifest written before runs had keys has no proof, and is handled as before.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
from typing import Any

# Bytes of randomness in a run key made for a backup started by the API or the command line.
RUN_KEY_BYTES = 32


def new_run_key() -> str:
    return secrets.token_hex(RUN_KEY_BYTES)


def scheduled_run_key(event_id: str | None, backup_id: str) -> str:
    """The key every delivery of one schedule event gives its run (see the module's docstring)."""
    seed = f"event {event_id}" if event_id else f"backup {backup_id}"
    return hashlib.sha256(f"org-backup run key\0{seed}".encode()).hexdigest()


def key_digest(run_key: str) -> str:
    """What the working record keeps of the key."""
    return hashlib.sha256(f"org-backup run key digest\0{run_key}".encode()).hexdigest()


def _mac(run_key: str, what: Any) -> str:
    message = json.dumps(what, sort_keys=True, separators=(",", ":"), ensure_ascii=True).encode()
    return hmac.new(run_key.encode(), message, hashlib.sha256).hexdigest()


def manifest_proof(run_key: str, plan: str, backup_id: str, entries_sha256: str) -> str:
    return _mac(run_key, ["manifest", plan, backup_id, entries_sha256])


def plan_proof(run_key: str, backup_id: str, result: dict[str, Any]) -> str:
    """The proof a plan's result carries once the run finished it (in the working record, which others can
    rewrite): over its status and the manifest it names."""
    fields = [result.get(name) for name in ("plan", "status", "snapshot", "manifest_version", "manifest_sha256")]
    return _mac(run_key, ["plan", backup_id, fields])


def record_proof(run_key: str, record: dict[str, Any]) -> str:
    """The proof a sealed record carries: over what a reader takes from it (`record`: its `to_dict()`)."""
    plans = {
        name: [result.get("status"), result.get("snapshot"), result.get("manifest_version"), result.get("manifest_sha256")]
        for name, result in record.get("plans", {}).items()
    }
    return _mac(run_key, ["sealed", record.get("backup_id"), record.get("status"), plans])


def _state_mac(run_key: str, key: str, state: dict[str, Any]) -> str:
    return _mac(run_key, ["state", key, {k: v for k, v in state.items() if k != "run_proof"}])


def prove_state(run_key: str | None, key: str, state: dict[str, Any]) -> dict[str, Any]:
    """A run's progress document (a checkpoint's state, a split, a table's scan or export), as saved at `key`:
    with the run's proof over everything else in it (as it is, without a key)."""
    if run_key is None:
        return state
    return {**state, "run_proof": _state_mac(run_key, key, state)}


def state_proven(run_key: str | None, key: str, state: dict[str, Any]) -> bool | None:
    """Whether the run wrote a progress document read back from `key`: True (or no key to tell); False, a
    proof that is not the run's (tampering); None, no proof at all (saved by a version before progress
    carried one: a run under way at an upgrade), which is not resumed from either."""
    if run_key is None:
        return True
    if "run_proof" not in state:
        return None
    return proves(state["run_proof"], _state_mac(run_key, key, state))


def proves(proof: Any, expected: str) -> bool:
    return isinstance(proof, str) and hmac.compare_digest(proof, expected)
