"""What a stage's policies are scoped to (`Scope`): its buckets, sources, tables, topic, functions, region and
account, resolved from the stage's environment; and the ARNs of those things."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from chalicelib.plans import DynamoDBSource, InventoryPlan, Plan, S3Source

# The Lambda functions of app.py, by the names Chalice gives them in `.chalice/config.json`
# (`stages.<stage>.lambda_functions.<name>`); every route shares `api_handler`.
API_HANDLER = "api_handler"
DAILY_BACKUP = "daily_backup"
BACKUP_WORKER = "backup_worker"
VERIFY_WORKER = "verify_worker"
RESUME_RESTORES = "resume_restores"
RESTORE_WORKER = "restore_worker"
DAILY_PRUNE = "daily_prune"
PRUNE_WORKER = "prune_worker"
# Alerts tampering once per finding: the only role that writes the findings' markers (notify/tampering.py).
NOTIFIER = "notifier"
# Publishes the metric the 26-hour alarm watches, from the sealed records (notify/metrics.py).
HEARTBEAT = "heartbeat"


@dataclass(frozen=True)
class Scope:
    """Everything a stage's policies are scoped to."""

    app_name: str
    stage: str
    plans: tuple[Plan, ...]
    topic_arns: tuple[str, ...] = ()
    # Functions the code invokes (the workers, when the stage hands work to Lambda).
    invoked_functions: tuple[str, ...] = ()
    region: str = "*"
    account: str = "*"
    # Where restores may write: these buckets, and new tables whose names start with the prefix.
    restore_buckets: tuple[str, ...] = ()
    restore_table_prefix: str = ""
    # The backup bucket that holds the catalog (records); empty: unknown, nothing scoped to it is granted.
    catalog_bucket: str = ""
    # The function whose policy is being generated (`generate` sets it): its own log group.
    function: str = ""
    # Where S3 Inventory delivers the backup buckets' reports (None: no inventory, nothing granted there).
    inventory: InventoryPlan | None = None

    @property
    def backup_buckets(self) -> list[str]:
        return sorted({plan.bucket for plan in self.plans})

    @property
    def s3_sources(self) -> list[S3Source]:
        found = {s for plan in self.plans for s in plan.sources if isinstance(s, S3Source)}
        return sorted(found, key=lambda s: (s.bucket, s.prefix))

    @property
    def tables(self) -> list[str]:
        return sorted({s.table for plan in self.plans for s in plan.sources if isinstance(s, DynamoDBSource)})

    @property
    def kms_keys(self) -> list[str]:
        return sorted({plan.kms_key_id for plan in self.plans if plan.kms_key_id})

    @property
    def source_kms_keys(self) -> list[str]:
        """Keys the S3 sources' objects are encrypted with (SSE-KMS under a customer key)."""
        return sorted({s.kms_key_id for s in self.s3_sources if s.kms_key_id})

    def invoked(self, *functions: str) -> list[str]:
        """ARNs of the invoked functions that are among `functions` (Chalice names: `backup_worker`, ...).
        WORKER_FUNCTION_NAME is the backup worker whatever it is called."""

        def role(name: str) -> str:
            return next((f for f in (RESTORE_WORKER, VERIFY_WORKER, PRUNE_WORKER, NOTIFIER) if name.endswith(f)), BACKUP_WORKER)

        return sorted({function_arn(self.region, self.account, f) for f in self.invoked_functions if role(f) in functions})


def deployed_name(app: str, stage: str, function: str) -> str:
    """The name `chalice deploy` gives a function: the routes' handler is `<app>-<stage>`, any other
    `<app>-<stage>-<function>`."""
    return f"{app}-{stage}" if function == API_HANDLER else f"{app}-{stage}-{function}"


def bucket_arn(bucket: str) -> str:
    return f"arn:aws:s3:::{bucket}"


def object_arns(buckets: list[str], *prefixes: str) -> list[str]:
    return [f"{bucket_arn(bucket)}/{prefix}*" for bucket in buckets for prefix in prefixes]


def table_arn(scope: Scope, table: str) -> str:
    return f"arn:aws:dynamodb:{scope.region}:{scope.account}:table/{table}"


def function_arn(region: str, account: str, name: str) -> str:
    return name if name.startswith("arn:") else f"arn:aws:lambda:{region}:{account}:function:{name}"


def kms_arn(scope: Scope, key: str) -> str:
    if key.startswith("arn:"):
        return key
    if key.startswith("alias/"):
        return f"arn:aws:kms:{scope.region}:{scope.account}:{key}"
    return f"arn:aws:kms:{scope.region}:{scope.account}:key/{key}"


def stage_scope(stage: str, project_dir: str | Path | None = None) -> Scope:
    """The scope of a stage of `.chalice/config.json`, with its plans resolved from its environment."""
    from chalicelib.config import Settings
    from chalicelib.stages import PROJECT_DIR, app_name, stage_environment

    directory = Path(project_dir or PROJECT_DIR)
    environ = stage_environment(stage, directory)
    settings = Settings.from_environ(environ)
    return settings_scope(app_name(directory), stage, settings)


def settings_scope(app: str, stage: str, settings: Any) -> Scope:
    """Region and account come from the alert topic's ARN (the one fully qualified name in the
    configuration); without a topic they are left as wildcards, and nothing is pinned to an account."""
    return Scope(
        app_name=app,
        stage=stage,
        plans=tuple(settings.plans.plans),
        topic_arns=(settings.topic_arn,) if settings.topic_arn else (),
        invoked_functions=_invoked_functions(settings),
        region=settings.region or "*",
        account=settings.account or "*",
        restore_buckets=tuple(getattr(settings, "restore_buckets", ())),
        restore_table_prefix=getattr(settings, "restore_table_prefix", ""),
        catalog_bucket=settings.plans.catalog_bucket,
        inventory=settings.plans.inventory,
    )


def _invoked_functions(settings: Any) -> tuple[str, ...]:
    """The backup worker, and the restore, verify and prune workers and the notifier deployed beside it
    (`...-backup_worker` -> `...-restore_worker`, `...-verify_worker`, `...-prune_worker`, `...-notifier`)."""
    if settings.worker_mode != "lambda" or not settings.worker_function:
        return ()
    worker = settings.worker_function
    if worker.endswith(BACKUP_WORKER):
        base = worker[: -len(BACKUP_WORKER)]
        return (worker, base + RESTORE_WORKER, base + VERIFY_WORKER, base + PRUNE_WORKER, base + NOTIFIER)
    return (worker,)
