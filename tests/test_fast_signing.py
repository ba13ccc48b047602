"""The suite's placeholder signatures (tests/fast_signing.py) keep what moto reads from a signed request."""

from __future__ import annotations

from typing import Any

import boto3
from botocore.config import Config
from moto import mock_aws

from tests.fast_signing import PLACEHOLDER


def test_a_request_names_its_credentials_and_moto_finds_their_account() -> None:
    with mock_aws():
        sts = boto3.client("sts", region_name="us-east-1")
        assumed = sts.assume_role(RoleArn="arn:aws:iam::111111111111:role/vault", RoleSessionName="test")["Credentials"]
        other = boto3.client(
            "sts", region_name="us-east-1", aws_access_key_id=assumed["AccessKeyId"],
            aws_secret_access_key=assumed["SecretAccessKey"], aws_session_token=assumed["SessionToken"],
        )
        sent: list[Any] = []
        other.meta.events.register("before-send", lambda request, **_: sent.append(request))
        assert other.get_caller_identity()["Account"] == "111111111111"
    headers = sent[0].headers
    assert headers["Authorization"].decode().startswith(f"AWS4-HMAC-SHA256 Credential={assumed['AccessKeyId']}/")
    assert headers["X-Amz-Security-Token"].decode() == assumed["SessionToken"]
    assert "X-Amz-Date" in headers


def test_a_presigned_url_is_signed_as_botocore_signs_it() -> None:
    with mock_aws():
        url = boto3.client("s3", region_name="us-east-1", config=Config(signature_version="s3v4")).generate_presigned_url(
            "get_object", Params={"Bucket": "b", "Key": "k"}
        )
    signature = url.split("X-Amz-Signature=")[1]
    assert len(signature) == 64 and signature != PLACEHOLDER
