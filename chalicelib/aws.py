"""The one place AWS clients are made. Everything else receives them."""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

import boto3
from botocore.config import Config


# Standard mode retries throttling and transient errors with backoff; 10 retries (11 attempts in all) ride
# out S3 SlowDown bursts.
# The pool must be at least as large as the copy thread pool, or threads queue for connections.
def client_config(max_pool_connections: int = 64) -> Config:
    return Config(
        retries={"mode": "standard", "max_attempts": 10},
        max_pool_connections=max_pool_connections,
        connect_timeout=10,
        read_timeout=120,
    )


@dataclass
class Clients:
    """Lazily created boto3 clients sharing one session (clients are thread-safe; sessions are not)."""

    session: Any = field(default_factory=boto3.session.Session)
    max_pool_connections: int = 64

    def _make(self, service: str) -> Any:
        return self.session.client(service, config=client_config(self.max_pool_connections))

    @cached_property
    def s3(self) -> Any:
        return self._make("s3")

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
