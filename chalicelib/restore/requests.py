"""What a restore asks for: a snapshot (or part of it) and where its data goes."""

from __future__ import annotations

from dataclasses import dataclass

TIERS = ("Bulk", "Standard", "Expedited")
DEFAULT_TIER = "Bulk"
# Where a restore reads the snapshot: the plan's backup bucket, or its vault (`PlanSet.in_vaults`).
ORIGINS = ("backup", "offsite")


@dataclass(frozen=True)
class Target:
    """Where restored data goes: a bucket and key prefix, a new DynamoDB table, or a local folder."""

    bucket: str | None = None
    prefix: str = ""
    table: str | None = None
    path: str | None = None

    def describe(self) -> str:
        parts = []
        if self.bucket:
            parts.append(f"s3://{self.bucket}/{self.prefix}")
        if self.table:
            parts.append(f"table {self.table}")
        if self.path:
            parts.append(f"folder {self.path}")
        return ", ".join(parts)


@dataclass(frozen=True)
class RestoreRequest:
    backup_id: str
    plan: str
    target: Target
    prefix: str | None = None
    keys: tuple[str, ...] | None = None
    overwrite: bool = False
    tier: str = DEFAULT_TIER
    dry_run: bool = False
    origin: str = "backup"
