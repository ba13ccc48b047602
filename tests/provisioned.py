"""The backup buckets as the administrator's provisioning leaves them, provisioned once per worker process.

Provisioning a stage sends about forty requests (each bucket created, then its versioning, ownership,
public access block, encryption, policy, lifecycle and Object Lock read and written; then the inventory
bucket and each bucket's inventory configuration), and hundreds of tests start from the same empty,
provisioned buckets. The first time a worker provisions a set of plans it runs `provision` and
`provision_inventory` for real and keeps moto's bucket objects (tests/moto_state.py); later tests get copies
of them, every setting included, as provisioning would have left them. Where one of the buckets already
exists (a test made it first), or the client talks to moto's server, provisioning runs for real.
"""

from __future__ import annotations

from typing import Any

from moto.s3.models import s3_backends

from chalicelib.deploy.inventory_bucket import provision_inventory
from chalicelib.deploy.provision import provision
from chalicelib.plans import PlanSet
from tests.moto_state import freeze, in_process, put_back

# (plans, account named in the inventory bucket's policy, region) -> each bucket provisioning made, frozen.
_PROVISIONED: dict[tuple[PlanSet, str, str], dict[str, bytes]] = {}


def provision_buckets(s3: Any, plans: PlanSet, account: str) -> None:
    """Every plan's backup bucket and the inventory bucket, as `make provision` leaves them."""
    names = list(dict.fromkeys([plan.bucket for plan in plans.plans] + ([plans.inventory.bucket] if plans.inventory else [])))
    if not in_process(s3) or any(name in s3_backends.bucket_accounts for name in names):
        # moto's server (its backends may be another process's), or a bucket of the test's own to change.
        _provision(s3, plans, account)
        return
    key = (plans, account, s3.meta.region_name)
    frozen = _PROVISIONED.get(key)
    if frozen is None:
        _provision(s3, plans, account)
        _PROVISIONED[key] = {name: freeze(_bucket(name)) for name in names}
        return
    for bucket in frozen.values():
        put_back(bucket)


def _provision(s3: Any, plans: PlanSet, account: str) -> None:
    for plan in plans.plans:
        provision(s3, plan)
    provision_inventory(s3, plans, account)


def _bucket(name: str) -> Any:
    partition, account_id = s3_backends.bucket_accounts[name]
    return s3_backends[account_id][partition].buckets[name]
