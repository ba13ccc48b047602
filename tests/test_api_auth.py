"""Every route requires IAM (SigV4) authorization. The local gateway and the test client don't enforce
authorizers, so this checks the configuration: each route in the app, and each method of the API in the
template `chalice package` produces."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parent.parent


def test_every_route_has_the_iam_authorizer() -> None:
    from chalice import IAMAuthorizer

    import app as app_module

    routes = [(method, path, entry) for path, methods in app_module.app.routes.items() for method, entry in methods.items()]
    assert routes
    missing = [f"{method} {path}" for method, path, entry in routes if not isinstance(entry.authorizer, IAMAuthorizer)]
    assert missing == []


@pytest.fixture(scope="module")
def packaged_template(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """`chalice package` of a copy of the project (without requirements.txt: only the template matters here,
    and packaging the dependencies would need the network)."""
    base = tmp_path_factory.mktemp("package")
    project = base / "project"
    (project / ".chalice").mkdir(parents=True)
    shutil.copy(ROOT / "app.py", project / "app.py")
    shutil.copytree(ROOT / "chalicelib", project / "chalicelib", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / ".chalice" / "config.json", project / ".chalice" / "config.json")
    # Each function's policy file, as config.json names them (their content does not matter here).
    for policy in (ROOT / ".chalice").glob("policy-dev-*.json"):
        shutil.copy(policy, project / ".chalice" / policy.name)
    env = {
        **os.environ,
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
    }
    chalice = Path(sys.executable).parent / "chalice"
    result = subprocess.run(
        [str(chalice), "package", "--stage", "dev", str(base / "out")],
        cwd=project,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    return json.loads((base / "out" / "sam.json").read_text())


def test_every_method_in_the_packaged_template_requires_sigv4(packaged_template: dict[str, Any]) -> None:
    import app as app_module

    api = packaged_template["Resources"]["RestAPI"]["Properties"]["DefinitionBody"]
    schemes = api["securityDefinitions"]
    sigv4 = [name for name, scheme in schemes.items() if scheme.get("x-amazon-apigateway-authtype") == "awsSigv4"]
    assert sigv4
    methods = {
        (method.upper(), path)
        for path, operations in api["paths"].items()
        for method, operation in operations.items()
        if method != "options"
    }
    assert methods == {(m, p) for p, ms in app_module.app.routes.items() for m in ms}
    for path, operations in api["paths"].items():
        for method, operation in operations.items():
            assert operation.get("security") == [{sigv4[0]: []}], f"{method.upper()} {path}"
