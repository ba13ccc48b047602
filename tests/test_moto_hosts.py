"""moto's answer to whether a request's host names its bucket, kept per host (tests/moto_hosts.py), is moto's own."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from tests import moto_hosts

HOSTS = [
    "test-backup-documents.s3.amazonaws.com",
    "s3.amazonaws.com",
    "s3.us-east-1.amazonaws.com",
    "bucket.s3.eu-central-1.amazonaws.com",
    "localhost:5000",
    "127.0.0.1:8000",
    "[::1]:8000",
    "moto",
    "svc.default.svc.cluster.local:80",
]


def request(host: str, header: str = "host") -> SimpleNamespace:
    return SimpleNamespace(headers={header: host}, url=f"https://{host}/key")


@pytest.mark.parametrize("header", ["host", "Host"])
def test_each_host_gets_the_answer_moto_gives(header: str) -> None:
    for host in HOSTS:
        assert moto_hosts.subdomain_based_buckets(request(host, header)) is bool(moto_hosts._decide(request(host, header))), host
    assert moto_hosts.subdomain_based_buckets(request("test-backup-documents.s3.amazonaws.com", header)) is True
    assert moto_hosts.subdomain_based_buckets(request("localhost:5000", header)) is False


def test_custom_endpoints_are_part_of_the_answer(monkeypatch: pytest.MonkeyPatch) -> None:
    host = "backups.example.com"
    before = moto_hosts.subdomain_based_buckets(request(host))
    monkeypatch.setenv("MOTO_S3_CUSTOM_ENDPOINTS", "https://backups.example.com")
    # A custom endpoint names buckets in the path: asked again with it set, the host's answer is moto's new one.
    assert before is True and moto_hosts.subdomain_based_buckets(request(host)) is False
