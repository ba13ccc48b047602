"""openapi.yaml is the API's contract: it lists exactly the app's routes, and `chalice local` on the AWS
emulator answers generated requests (valid and invalid) with no 5xx and nothing the schema does not allow."""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
import schemathesis
import yaml
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    negative_data_rejection,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from tests.api_helpers import make_buckets
from tests.conftest import REGION, STAGE_ENV
from tests.localstack_script import localstack

ROOT = Path(__file__).resolve().parent.parent
SPEC = ROOT / "openapi.yaml"
HTTP_METHODS = {"get", "put", "post", "delete", "patch", "head", "options"}


def spec_operations() -> set[tuple[str, str]]:
    document = yaml.safe_load(SPEC.read_text())
    return {
        (method.upper(), path)
        for path, item in document["paths"].items()
        for method in item
        if method in HTTP_METHODS
    }


def test_openapi_lists_exactly_the_apps_routes_and_methods() -> None:
    import app as app_module

    routes = {(method, path) for path, methods in app_module.app.routes.items() for method in methods}
    assert spec_operations() == routes, (
        f"in the app but not in openapi.yaml: {sorted(routes - spec_operations())}; "
        f"in openapi.yaml but not in the app: {sorted(spec_operations() - routes)}"
    )


def test_openapi_is_a_valid_openapi_3_document() -> None:
    from openapi_spec_validator import validate

    document = yaml.safe_load(SPEC.read_text())
    assert document["openapi"].startswith("3.")
    validate(document)
    # Every operation documents its error answers with the shared Error schema.
    for path, item in document["paths"].items():
        for method, operation in item.items():
            assert "403" in operation["responses"], f"{method.upper()} {path}"
            for status, response in operation["responses"].items():
                if status.startswith("4") and status != "403":
                    assert response["$ref"].startswith("#/components/responses/"), f"{method.upper()} {path} {status}"


# ------------------------------------------------------------------------------- generated requests


def wait_until_up(url: str, process: subprocess.Popen[bytes], log: Path, seconds: float = 30) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"chalice local exited: {log.read_text()[-4000:]}")
        try:
            if requests.get(url, timeout=2).status_code == 200:
                return
        except requests.ConnectionError:
            pass
        time.sleep(0.2)
    raise RuntimeError(f"{url} did not answer within {seconds} s")


@pytest.fixture(scope="module")
def local_api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """`chalice local` (stage local, background worker threads) against moto's server, each on a port it
    bound itself and reported (a port picked first and bound later could be taken in between)."""
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    endpoint = "http://127.0.0.1:%d" % server.get_host_and_port()[1]
    process: subprocess.Popen[bytes] | None = None
    try:
        import boto3

        from chalicelib.plans_file import load_plans

        stage_env = {**STAGE_ENV, "WORKER_MODE": "thread", "MAX_WORKERS": "4"}
        s3 = boto3.client("s3", endpoint_url=endpoint, region_name=REGION, **{
            "aws_access_key_id": "testing", "aws_secret_access_key": "testing"})
        make_buckets(s3, load_plans(stage_env))
        # moto's server builds each service's routes (werkzeug parses them with `ast.parse`) on that service's
        # first request. Built here, before any generated request: CPython 3.11 keeps one counter for every
        # thread's `ast.parse`, so the server's parse racing Hypothesis's own (it parses a filter's source to
        # describe it) fails one of them with "SystemError: AST constructor recursion depth mismatch".
        for service, call in (("sns", "list_topics"), ("dynamodb", "list_tables"), ("cloudwatch", "list_metrics"),
                              ("lambda", "list_functions"), ("sts", "get_caller_identity")):
            client = boto3.client(service, endpoint_url=endpoint, region_name=REGION,
                                  aws_access_key_id="testing", aws_secret_access_key="testing")
            getattr(client, call)()
        for name in ("DOCUMENTS_SOURCE_BUCKET", "PHOTOS_SOURCE_BUCKET"):
            s3.create_bucket(Bucket=stage_env[name])
            for index in range(3):
                s3.put_object(Bucket=stage_env[name], Key=f"file-{index}.txt", Body=f"content {index}".encode())

        project = tmp_path_factory.mktemp("local-api") / "project"
        (project / ".chalice").mkdir(parents=True)
        config = json.loads((ROOT / ".chalice" / "config.json").read_text())
        config["stages"]["local"]["environment_variables"] = stage_env
        (project / ".chalice" / "config.json").write_text(json.dumps(config))
        (project / "app.py").write_text((ROOT / "app.py").read_text())
        (project / "chalicelib").symlink_to(ROOT / "chalicelib")
        # Its output goes to a file: an unread pipe fills up and blocks the server mid-request.
        log = project.parent / "chalice-local.log"
        with log.open("wb") as log_file:
            process = localstack.start_chalice("local", 0, endpoint, project.parent / "api-port", project_dir=project,
                                               stdout=log_file, stderr=subprocess.STDOUT)
        try:
            port = localstack.read_port(project.parent / "api-port", process, 30)
        except localstack.StackError as exc:
            raise RuntimeError(f"{exc}: {log.read_text()[-4000:]}") from None
        base_url = f"http://127.0.0.1:{port}"
        wait_until_up(f"{base_url}/plans", process, log)
        yield base_url
    finally:
        if process is not None:
            process.terminate()
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        server.stop()


def _without_authentication(document: dict[str, Any]) -> dict[str, Any]:
    """The contract minus SigV4: the local gateway does not enforce authorizers (so a request without a
    signature would be "accepted"); tests/test_api_auth.py checks every route and template method has it."""
    document = dict(document)
    document.pop("security", None)
    return document


schema = schemathesis.openapi.from_dict(_without_authentication(yaml.safe_load(SPEC.read_text())))
# Methods a route does not have: API Gateway answers them with 403, but chalice local's HTTP server answers
# TRACE and QUERY itself with 501 before the app sees them, so only the methods it passes on are tried.
schema.config.phases.coverage.unexpected_methods = {"get", "put", "post", "delete", "patch"}

# The checks that make the contract: never a 5xx; status codes, content types, headers and bodies as
# documented; invalid input refused with a 4xx. Not checked: that every generated "valid" request succeeds
# (a random plan name or backup id is rightly a 400 or 404), and authentication, which the local gateway
# does not enforce (tests/test_api_auth.py checks the configuration instead).
CONTRACT_CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    negative_data_rejection,
]


@schema.parametrize()
@settings(max_examples=12, deadline=None, database=None, suppress_health_check=list(HealthCheck))
def test_generated_requests_get_documented_answers(case: Any, local_api: str) -> None:
    case.call_and_validate(base_url=local_api, checks=CONTRACT_CHECKS, timeout=20)
