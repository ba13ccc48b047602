"""A pytest plugin: every botocore session made during the run shares one loader of service models.

Each test runs the system with fresh clients (a fresh moto world needs them), and each `boto3.session.Session`
would otherwise parse the S3, DynamoDB and SNS models and endpoint rules from their JSON again: about a third
of the suite's CPU time. The loader only reads botocore's own data files, and every client of one session
already shares what it returns, so sharing it between sessions changes nothing a test can observe.
(In Lambda the functions keep their clients for the life of the process: app.py's `service()`.)
"""

from __future__ import annotations

from typing import Any

import botocore.loaders
import botocore.session

_create_loader = botocore.loaders.create_loader
_LOADERS: dict[str | None, botocore.loaders.Loader] = {}


class _Paths(list):  # type: ignore[type-arg]
    """boto3 appends its resource models' folder to the loader of every session it makes: once is enough."""

    def append(self, item: Any) -> None:
        if item not in self:
            super().append(item)


def _shared_loader(search_path_string: str | None = None) -> botocore.loaders.Loader:
    loader = _LOADERS.get(search_path_string)
    if loader is None:
        loader = _create_loader(search_path_string)
        loader._search_paths = _Paths(loader.search_paths)
        _LOADERS[search_path_string] = loader
    return loader


botocore.session.create_loader = _shared_loader
