"""The one place AWS clients are made. Everything else receives them."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any
from urllib.parse import unquote

import boto3
import botocore.session
from botocore.config import Config
from botocore.credentials import AssumeRoleCredentialFetcher, DeferredRefreshableCredentials

from chalicelib.errors import PlanError
from chalicelib.plans import PlanSet

# Requests made with the vault account's credentials say so in their User-Agent (CloudTrail's userAgent).
VAULT_USER_AGENT = "org-backup-vault"
# How the vault account's credentials are found when a command or handler runs: a named profile of the
# operator's AWS configuration, or a role of the vault account assumed with the caller's own credentials.
OFFSITE_PROFILE = "OFFSITE_PROFILE"
OFFSITE_ROLE_ARN = "OFFSITE_ROLE_ARN"


# Standard mode retries throttling and transient errors with backoff; 10 retries (11 attempts in all) ride
# out S3 SlowDown bursts.
# The pool must be at least as large as the copy thread pool, or threads queue for connections.
def client_config(max_pool_connections: int = 64, user_agent_extra: str | None = None) -> Config:
    return Config(
        retries={"mode": "standard", "max_attempts": 10},
        max_pool_connections=max_pool_connections,
        connect_timeout=10,
        read_timeout=120,
        user_agent_extra=user_agent_extra,
    )


def copy_source_bucket(copy_source: Any) -> str:
    """The bucket a CopySource names, whether still a dict or already botocore's `bucket/key?versionId=` text."""
    if isinstance(copy_source, dict):
        return str(copy_source.get("Bucket", ""))
    return unquote(str(copy_source).lstrip("/").split("/", 1)[0])


@dataclass(frozen=True)
class BucketOwner:
    """The account the backup and restore buckets belong to.

    Bucket names are global: if one of ours were ever deleted and its name taken by another account, a backup
    would write into a stranger's bucket and a restore would read a stranger's data. Every S3 request to one
    of `buckets` therefore carries `ExpectedBucketOwner` (and a copy out of one `ExpectedSourceBucketOwner`),
    and S3 refuses it with 403 unless `account` owns the bucket. Sources are not pinned: they may live in
    other accounts.
    """

    account: str
    buckets: frozenset[str]

    def pin(self, params: dict[str, Any], model: Any, **kwargs: Any) -> None:
        """A botocore `before-parameter-build.s3` handler. Only operations whose model has the member get
        it; a value the caller gave is kept."""
        members = model.input_shape.members if model.input_shape is not None else {}
        if "ExpectedBucketOwner" in members and params.get("Bucket") in self.buckets:
            params.setdefault("ExpectedBucketOwner", self.account)
        if "ExpectedSourceBucketOwner" in members and "CopySource" in params:
            if copy_source_bucket(params["CopySource"]) in self.buckets:
                params.setdefault("ExpectedSourceBucketOwner", self.account)


# The clients of `Clients` other than S3's.
OTHER_SERVICES = ("dynamodb", "sns", "lambda_", "cloudwatch")


@dataclass(frozen=True)
class BucketOwners:
    """Buckets of several accounts pinned at once, each to its own (`BucketOwner.pin` for each)."""

    owners: tuple[BucketOwner, ...]

    def pin(self, params: dict[str, Any], model: Any, **kwargs: Any) -> None:
        for owner in self.owners:
            owner.pin(params, model, **kwargs)


@dataclass
class Clients:
    """Lazily created boto3 clients sharing one session (clients are thread-safe; sessions are not).

    `bucket_owner`: the account the backup and restore buckets must belong to (`config.Settings.bucket_owner`);
    None pins nothing."""

    session: Any = field(default_factory=boto3.session.Session)
    max_pool_connections: int = 64
    bucket_owner: BucketOwner | BucketOwners | None = None
    # Added to every request's User-Agent (VAULT_USER_AGENT for the vault account's clients).
    user_agent_extra: str | None = None

    def _make(self, service: str) -> Any:
        return self.session.client(service, config=client_config(self.max_pool_connections, self.user_agent_extra))

    @cached_property
    def s3(self) -> Any:
        client = self._make("s3")
        if self.bucket_owner is not None:
            # Registered on the client itself, so every call through it (boto3's managed transfers
            # included) is pinned, whichever module makes it.
            client.meta.events.register("before-parameter-build.s3", self.bucket_owner.pin)
        return client

    @cached_property
    def dynamodb(self) -> Any:
        return self._make("dynamodb")

    @cached_property
    def sns(self) -> Any:
        return self._make("sns")

    @cached_property
    def lambda_(self) -> Any:
        return self._make("lambda")

    @cached_property
    def cloudwatch(self) -> Any:
        return self._make("cloudwatch")


def vault_owner(plans: PlanSet) -> BucketOwner:
    """The vaults' account and buckets. `PlanError` when the plans name no vault."""
    vaults = [plan.offsite for plan in plans.plans if plan.offsite is not None]
    if not vaults:
        raise PlanError("no plan has an 'offsite' vault")
    return BucketOwner(vaults[0].account, frozenset(vault.bucket for vault in vaults))


def functions_vault_clients(plans: PlanSet, clients: Clients) -> Clients:
    """The deployed functions' own credentials reading the vaults (which their policies and the vaults' let
    them read, never write): the same session as `clients`, with the vaults pinned to the vault account beside
    what `clients` pins (the restore buckets, to the stage's)."""
    owners = (vault_owner(plans),) + ((clients.bucket_owner,) if isinstance(clients.bucket_owner, BucketOwner) else ())
    made = Clients(session=clients.session, max_pool_connections=clients.max_pool_connections, bucket_owner=BucketOwners(owners))
    # Only S3 is pinned differently: the clients of the other services already made are shared.
    made.__dict__.update({name: value for name, value in vars(clients).items() if name in OTHER_SERVICES})
    return made


def vault_clients(plans: PlanSet, environ: Mapping[str, str] | None = None, base: Any = None) -> Clients:
    """Clients of the vault account, in the vault's region, pinned to the vaults' owner (`BucketOwner`): from
    the profile OFFSITE_PROFILE names, else by assuming the role OFFSITE_ROLE_ARN names with `base`'s (the
    caller's) credentials, refreshed before they expire. `PlanError` when the plans name no vault or neither
    variable is set."""
    env = os.environ if environ is None else environ
    owner = vault_owner(plans)
    account = owner.account
    region = next(plan.offsite.region for plan in plans.plans if plan.offsite is not None)
    profile, role_arn = env.get(OFFSITE_PROFILE), env.get(OFFSITE_ROLE_ARN)
    if profile:
        return Clients(session=boto3.session.Session(profile_name=profile, region_name=region), bucket_owner=owner, user_agent_extra=VAULT_USER_AGENT)
    if not role_arn:
        raise PlanError(
            f"the vault account's credentials: set {OFFSITE_PROFILE} (a named profile of account {account}) or "
            f"{OFFSITE_ROLE_ARN} (a role of account {account} your credentials may assume)"
        )
    caller = base or boto3.session.Session()

    def entering_the_vault(service: str, **kwargs: Any) -> Any:
        # The AssumeRole request is the first of the vault's: it says so in its User-Agent too.
        return caller._session.create_client(service, config=client_config(user_agent_extra=VAULT_USER_AGENT), **kwargs)

    fetcher = AssumeRoleCredentialFetcher(
        client_creator=entering_the_vault,
        source_credentials=caller.get_credentials(),
        role_arn=role_arn,
        extra_args={"RoleSessionName": "org-backup-vault"},
    )
    assumed = botocore.session.get_session()
    # A restore from the vault may outlast one set of temporary credentials: botocore refreshes these.
    assumed._credentials = DeferredRefreshableCredentials(  # type: ignore[attr-defined]
        method="assume-role", refresh_using=fetcher.fetch_credentials
    )
    return Clients(session=boto3.session.Session(botocore_session=assumed, region_name=region), bucket_owner=owner, user_agent_extra=VAULT_USER_AGENT)
