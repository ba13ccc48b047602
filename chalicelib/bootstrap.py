"""The composition root: the settings, the clients, the tampering reporter and each service, built in one
place and each once. A handler in app.py (or the dashboard) builds a `System` from the settings of the
running request and the process's clients, and takes what it needs; a service is made only when first
asked for, so a request pays only for what it uses.

The operator's command line builds one too (`operator=True`): it works with the operator's own credentials,
so a restore may target any bucket that is not a backup bucket and any new table name, and what prunes,
restores and cost reports find is printed to the operator rather than told by SNS.
"""

from __future__ import annotations

from functools import cached_property

from chalicelib.aws import Clients
from chalicelib.backup.service import BackupService
from chalicelib.backup.verification import VerificationJobs
from chalicelib.config import Settings
from chalicelib.cost.reports import CostReports
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
        if self.operator:
            return RestoreService(self.settings.plans, self.clients, max_workers=self.settings.max_workers)
        return RestoreService.from_settings(self.settings, self.clients, self.tampering.report)

    @cached_property
    def prunes(self) -> PruneJobs:
        return PruneJobs(self.settings, self.clients, report=None if self.operator else self.tampering.report)

    @cached_property
    def costs(self) -> CostReports:
        return CostReports.from_settings(self.settings, self.clients, None if self.operator else self.tampering.report)
