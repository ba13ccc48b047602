"""Where a restore reads: the one place that decides between the backup buckets and the vaults.

A restore `from` "offsite" sees the plans as the vault holds them: each plan's bucket is its vault, the
catalog (sealed backup records, pruned markers, the restore's own record) is the catalog plan's vault, and
every request goes with the vault account's credentials, in the vault's region (`aws.vault_clients`).
Replicas keep their version ids, so the manifests and records read there name the vault's own versions;
everything else a restore does (its checks, no overwriting, checksums, the targets it may write) is the same
code reading other buckets.
"""

from __future__ import annotations

from dataclasses import replace

from chalicelib.errors import BadRequest
from chalicelib.plans import PlanSet


def vault_view(plans: PlanSet) -> PlanSet:
    """The plans with a vault, each reading its vault bucket; BadRequest when no plan has one."""
    vaulted = [replace(plan, bucket=plan.offsite.bucket) for plan in plans.plans if plan.offsite is not None]
    if not vaulted:
        raise BadRequest("no plan has an 'offsite' vault to restore from (see the plans file's 'offsite' entry)")
    catalog = plans.get(next(plan.name for plan in plans.plans if plan.bucket == plans.catalog_bucket))
    assert catalog.offsite is not None  # the plans file requires it once any plan has a vault
    return replace(plans, plans=tuple(vaulted), catalog_bucket=catalog.offsite.bucket)
