"""The composition root: the settings, the clients, the tampering reporter and each service, built in one
place and each once. A handler in app.py (or the dashboard) builds a `System` from the settings of the
running request and the process's clients, and takes what it needs; a service is made only when first
asked for, so a request pays only for what it uses.

The operator's command line builds one too (`operator=True`): it works with the operator's own credentials,
so a restore may target any bucket that is not a backup bucket and any new table name, and what prunes,
restores and cost reports find is printed to the operator rather than told by SNS.
"""

from __future__ import annotations

import logging
from dataclasses import replace
from functools import cached_property
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from chalicelib.aws import Clients, functions_vault_clients, vault_clients
from chalicelib.backup.service import BackupService
from chalicelib.backup.verification import VerificationJobs
from chalicelib.config import Settings
from chalicelib.cost.reports import CostReports
from chalicelib.errors import BadRequest
from chalicelib.notify.tampering import TamperingAlerts
from chalicelib.prune.service import PruneJobs
from chalicelib.restore.record import RestoreRecord, VaultRestoreStore
from chalicelib.restore.service import RestoreService

logger = logging.getLogger(__name__)


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

    @cached_property
    def functions_vault_restores(self) -> RestoreService:
        """Restores that read the vaults only with the deployed functions' own credentials (the vaults'
        policies let the restore functions' roles read there, nothing more), recorded outside the vaults
        (`VaultRestoreStore`, in the stage's first restore bucket)."""
        if not self.settings.restore_buckets:
            raise BadRequest(
                "a restore from the vault by the deployed functions is recorded in the stage's first restore bucket, "
                "and this stage names none: set RESTORE_BUCKETS, or run `org-backup restore --from offsite` with the "
                "vault account's credentials"
            )
        clients = functions_vault_clients(self.settings.plans, self.clients)
        store = VaultRestoreStore(clients.s3, self.settings.restore_buckets[0])
        settings = replace(self.settings, plans=self.settings.plans.in_vaults())
        return RestoreService.from_settings(settings, clients, self.tampering.report, store=store, origin="offsite")

    def restores_from(self, origin: str) -> RestoreService:
        """The restores reading the backup buckets ("backup") or the vaults ("offsite"): the one place a
        restore's buckets and credentials are chosen. From the vault, the deployed functions read with their
        own credentials; the command line and `chalice local` with the vault account's."""
        if origin != "offsite":
            return self.restores
        if not self.operator and self.settings.worker_mode == "lambda":
            return self.functions_vault_restores
        return self.vault_restores

    def resume_restores(self, context: Any = None) -> list[RestoreRecord]:
        """The hourly check: the restores from the backup buckets, then the deployed functions' restores from
        the vaults when a plan has one. One whose records cannot be read (the backup buckets gone, which is
        when a restore from the vault is wanted) does not keep the other from being resumed."""
        services = [self.restores]
        if self.settings.worker_mode == "lambda" and any(plan.offsite for plan in self.settings.plans.plans):
            services.append(self.functions_vault_restores)
        done: list[RestoreRecord] = []
        for service in services:
            try:
                done += service.resume_pending(context=context)
            except (ClientError, BotoCoreError):
                logger.exception("the restores from %s could not be resumed; the next check tries again", service.origin)
        return done

    def _restores(self, settings: Settings, clients: Clients) -> RestoreService:
        if self.operator:
            return RestoreService(settings.plans, clients, max_workers=settings.max_workers)
        return RestoreService.from_settings(settings, clients, self.tampering.report)

    @cached_property
    def prunes(self) -> PruneJobs:
        return PruneJobs(self.settings, self.clients, report=None if self.operator else self.tampering.report)

    @cached_property
    def vault_prunes(self) -> PruneJobs:
        """The vaults' own prune, the same prune reading the vaults alone (`PlanSet.in_vaults`) with the vault
        account's credentials: retention decided from the replicated sealed records and manifests there,
        versions no kept snapshot names deleted after the grace period and never while their lock lasts. The
        deployed functions cannot: no role of the backup account may delete anything in a vault."""
        return PruneJobs(replace(self.settings, plans=self.settings.plans.in_vaults()), self.vault_clients, report=None)

    @cached_property
    def costs(self) -> CostReports:
        return CostReports.from_settings(self.settings, self.clients, None if self.operator else self.tampering.report)
