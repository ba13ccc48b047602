"""scripts/localstack.py (`make run`) loaded as a module, for the tests that use its parts."""

from __future__ import annotations

import importlib.util
import sys
from typing import Any

from tests.conftest import ROOT

SCRIPT = ROOT / "scripts" / "localstack.py"


def load_script() -> Any:
    spec = importlib.util.spec_from_file_location("localstack_script", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while the class is made
    spec.loader.exec_module(module)
    return module


localstack = load_script()
