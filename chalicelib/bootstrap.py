"""The composition root: the settings, the clients, the tampering reporter and each service, built in one
place and each once. A handler in app.py (or the dashboard) builds a `System` from the settings of the
running request and the process's clients, and takes what it needs; a service is made only when first
asked for, so a request pays only for what it uses.

The operator's command line builds one too (`operator=True`): it works with the operator's own credentials,
so a restore may target any bucket that is not a backup bucket and any new table name, and what prunes,
restores and cost reports find is printed to the operator rather than told by SNS.
"""

from __future__ import annotations

from dataclasses import replace
from functools import cached_property

from chalicelib.aws import Clients, vault_clients
from chalicelib.backup.service import BackupService
from chalicelib.backup.verification import VerificationJobs
from chalicelib.config import Settings
from chalicelib.cost.reports import CostReports
from chalicelib.errors import BadRequest
from chalicelib.notify.tampering import TamperingAlerts
from chalicelib.prune.service import PruneJobs
from chalicelib.restore.service import RestoreService


class System:
    """Everything the entry points use, sharing one set of settings, clients and tampering reporter."""

    def __init__(self, settings: Settings, clients: Clients, operator: bool = False) -> None:
        self.settings = settings
        self.clients = clients
        self.operator = operator
        # Tampering is told once per finding, by the notifier (notify/tampering.py), whichever service finds it.
        self.tampering = TamperingAlerts.from_settings(settings, clients)

    @cached_property
    def backups(self) -> BackupService:
        return BackupService(self.settings, self.clients, tampering=self.tampering)

    @cached_property
    def verifications(self) -> VerificationJobs:
        # The backups start the weekly verification when they end: the same jobs serve both.
        return self.backups.verification

    @cached_property
    def restores(self) -> RestoreService:
        return self._restores(self.settings, self.clients)

    @cached_property
    def vault_clients(self) -> Clients:
        """The vault account's clients, in the vaults' region (`aws.vault_clients`)."""
        return vault_clients(self.settings.plans, base=self.clients.session)

    @cached_property
    def vault_restores(self) -> RestoreService:
        """Restores that read the vaults only (`PlanSet.in_vaults`), with the vault account's credentials."""
        return self._restores(replace(self.settings, plans=self.settings.plans.in_vaults()), self.vault_clients)

    def restores_from(self, origin: str) -> RestoreService:
        """The restores reading the backup buckets ("backup") or the vaults ("offsite"): the one place a
        restore's buckets and credentials are chosen."""
        if origin != "offsite":
            return self.restores
        if not self.operator and self.settings.worker_mode == "lambda":
            raise BadRequest(self._no_vault_restore_here())
        return self.vault_restores

    def _no_vault_restore_here(self) -> str:
        """Why the deployed functions refuse a restore from the vault, naming each thing missing: the restore
        functions' roles are granted nothing outside the stage's account (every grant is conditioned on
        s3:ResourceAccount) and may assume no role; the vault's policy lets in the replication role alone; a
        restore from the vault is recorded in the vault, which no function may write; and the restore worker
        and the hourly check look a restore up in the backup catalog only."""
        vaults = [plan for plan in self.settings.plans.plans if plan.offsite is not None]
        named = ", ".join(f"{plan.offsite.bucket} (account {plan.offsite.account})" for plan in vaults if plan.offsite)
        return (
            "a restore from the vault cannot run in the deployed functions: the restore worker's role is granted "
            f"no read of the vaults {named or '(none named)'} and may assume no role there, the vaults' policies let "
            "in only each plan's replication role, and a restore from the vault is recorded in the vault, which no "
            "function may write. Run it with the vault account's credentials instead: `OFFSITE_PROFILE=<profile> "
            "org-backup --stage <stage> restore <backup_id> --plan <plan> --to-bucket <bucket> --from offsite`"
        )

    def _restores(self, settings: Settings, clients: Clients) -> RestoreService:
        if self.operator:
            return RestoreService(settings.plans, clients, max_workers=settings.max_workers)
        return RestoreService.from_settings(settings, clients, self.tampering.report)

    @cached_property
    def prunes(self) -> PruneJobs:
        return PruneJobs(self.settings, self.clients, report=None if self.operator else self.tampering.report)

    @cached_property
    def costs(self) -> CostReports:
        return CostReports.from_settings(self.settings, self.clients, None if self.operator else self.tampering.report)
