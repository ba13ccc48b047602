"""The audit trail in the deploy template: what lets an administrator find tampering after the fact, and the
API's throttling.

- A CloudTrail trail of S3 data events for every write and delete under the backup buckets' `meta/`
  (manifests, records, locks, claims, restore and verification records): who wrote what, when, from where,
  with which credentials. Its log bucket admits CloudTrail only (for this trail), is versioned and kept
  when the stack is deleted, and the trail validates its log files (digest files make a change detectable).
- API Gateway access logs: one JSON line per request with the caller's IAM ARN, in a log group of their
  own. Logging needs the account-level CloudWatch role of API Gateway (`AWS::ApiGateway::Account`).
- Every function's log group, created by the stack with a retention period (Lambda would otherwise create
  it on first use, kept forever).
- Method throttling on the API's stage.
"""

from __future__ import annotations

from typing import Any

from chalicelib.deploy import bucket_settings as buckets
from chalicelib.layout import META_PREFIX

LOG_RETENTION_DAYS = 365
# The API starts backups, restores and checks: a person or a script, never a crowd. Past these API Gateway
# answers 429 before the function runs.
THROTTLING_BURST = 20
THROTTLING_RATE = 10.0
TRAIL = "AuditTrail"
TRAIL_BUCKET = "AuditLogBucket"
API_ACCESS_LOGS = "ApiAccessLogs"
API_GATEWAY_ACCOUNT = "ApiGatewayAccount"
# Chalice's SAM output names the API `RestAPI` (an AWS::Serverless::Api).
REST_API = "RestAPI"

# What a line of the API's access log holds ($context variables of API Gateway).
ACCESS_LOG_FORMAT = (
    '{"requestId":"$context.requestId","requestTime":"$context.requestTime","ip":"$context.identity.sourceIp",'
    '"caller":"$context.identity.caller","userArn":"$context.identity.userArn","userAgent":"$context.identity.userAgent",'
    '"httpMethod":"$context.httpMethod","resourcePath":"$context.resourcePath","path":"$context.path",'
    '"status":"$context.status","responseLength":"$context.responseLength","error":"$context.error.message"}'
)


def trail_name(app: str, stage: str) -> str:
    return f"{app}-{stage}-audit"


def trail_resources(app: str, stage: str, backup_buckets: list[str]) -> dict[str, Any]:
    """The trail of writes under meta/ of `backup_buckets`, and its log bucket."""
    name = trail_name(app, stage)
    trail_arn = {"Fn::Sub": f"arn:${{AWS::Partition}}:cloudtrail:${{AWS::Region}}:${{AWS::AccountId}}:trail/{name}"}
    bucket_arn = {"Fn::GetAtt": [TRAIL_BUCKET, "Arn"]}
    objects_arn = {"Fn::Sub": f"${{{TRAIL_BUCKET}.Arn}}/*"}
    return {
        TRAIL_BUCKET: {
            "Type": "AWS::S3::Bucket",
            # The evidence must outlive the stack, and whoever deletes it.
            "DeletionPolicy": "Retain",
            "UpdateReplacePolicy": "Retain",
            "Properties": {
                "VersioningConfiguration": {"Status": "Enabled"},
                "BucketEncryption": {
                    "ServerSideEncryptionConfiguration": [{"ServerSideEncryptionByDefault": {"SSEAlgorithm": "AES256"}}]
                },
                "PublicAccessBlockConfiguration": dict(buckets.PUBLIC_ACCESS_BLOCK),
                "OwnershipControls": {"Rules": [{"ObjectOwnership": buckets.OBJECT_OWNERSHIP}]},
            },
        },
        f"{TRAIL_BUCKET}Policy": {
            "Type": "AWS::S3::BucketPolicy",
            "Properties": {
                "Bucket": {"Ref": TRAIL_BUCKET},
                "PolicyDocument": {
                    "Version": "2012-10-17",
                    "Statement": [
                        {
                            "Sid": "CloudTrailAclCheck",
                            "Effect": "Allow",
                            "Principal": {"Service": "cloudtrail.amazonaws.com"},
                            "Action": "s3:GetBucketAcl",
                            "Resource": bucket_arn,
                            "Condition": {"StringEquals": {"aws:SourceArn": trail_arn}},
                        },
                        {
                            "Sid": "CloudTrailWrite",
                            "Effect": "Allow",
                            "Principal": {"Service": "cloudtrail.amazonaws.com"},
                            "Action": "s3:PutObject",
                            "Resource": {"Fn::Sub": f"${{{TRAIL_BUCKET}.Arn}}/AWSLogs/${{AWS::AccountId}}/*"},
                            "Condition": {
                                "StringEquals": {"s3:x-amz-acl": "bucket-owner-full-control", "aws:SourceArn": trail_arn}
                            },
                        },
                        {
                            "Sid": buckets.TLS_STATEMENT_SID,
                            "Effect": "Deny",
                            "Principal": "*",
                            "Action": "s3:*",
                            "Resource": [bucket_arn, objects_arn],
                            "Condition": {"Bool": {"aws:SecureTransport": "false"}},
                        },
                    ],
                },
            },
        },
        TRAIL: {
            "Type": "AWS::CloudTrail::Trail",
            # CloudTrail checks that it may write to the bucket when the trail is created.
            "DependsOn": [f"{TRAIL_BUCKET}Policy"],
            "Properties": {
                "TrailName": name,
                "S3BucketName": {"Ref": TRAIL_BUCKET},
                "IsLogging": True,
                "EnableLogFileValidation": True,
                "IsMultiRegionTrail": False,
                "IncludeGlobalServiceEvents": False,
                "AdvancedEventSelectors": [
                    {
                        "Name": "Writes and deletes under the backup buckets' meta/",
                        "FieldSelectors": [
                            {"Field": "eventCategory", "Equals": ["Data"]},
                            {"Field": "resources.type", "Equals": ["AWS::S3::Object"]},
                            {"Field": "readOnly", "Equals": ["false"]},
                            {"Field": "resources.ARN", "StartsWith": meta_arns(backup_buckets)},
                        ],
                    }
                ],
            },
        },
    }


def meta_arns(backup_buckets: list[str]) -> list[str]:
    return [f"arn:aws:s3:::{bucket}/{META_PREFIX}" for bucket in sorted(backup_buckets)]


def api_resources(app: str, stage: str) -> dict[str, Any]:
    """Access logs and throttling for the API's stage (merged into Chalice's `RestAPI`), and the account-level
    role API Gateway writes logs with."""
    return {
        API_ACCESS_LOGS: {
            "Type": "AWS::Logs::LogGroup",
            "DeletionPolicy": "Retain",
            "UpdateReplacePolicy": "Retain",
            "Properties": {"LogGroupName": f"/aws/apigateway/{app}-{stage}-access", "RetentionInDays": LOG_RETENTION_DAYS},
        },
        # API Gateway writes every API's logs in a region with one role, set on the account (not per API).
        # If the account already has one, this replaces it with an equivalent role.
        "ApiGatewayCloudWatchRole": {
            "Type": "AWS::IAM::Role",
            "Properties": {
                "AssumeRolePolicyDocument": {
                    "Version": "2012-10-17",
                    "Statement": [
                        {"Effect": "Allow", "Principal": {"Service": "apigateway.amazonaws.com"}, "Action": "sts:AssumeRole"}
                    ],
                },
                "ManagedPolicyArns": [
                    {"Fn::Sub": "arn:${AWS::Partition}:iam::aws:policy/service-role/AmazonAPIGatewayPushToCloudWatchLogs"}
                ],
            },
        },
        API_GATEWAY_ACCOUNT: {
            "Type": "AWS::ApiGateway::Account",
            "Properties": {"CloudWatchRoleArn": {"Fn::GetAtt": ["ApiGatewayCloudWatchRole", "Arn"]}},
        },
        REST_API: {
            # A stage with access logging is refused until the account's role is set.
            "DependsOn": [API_GATEWAY_ACCOUNT],
            "Properties": {
                "AccessLogSetting": {
                    # The log group's ARN without the ":*" its Arn attribute carries.
                    "DestinationArn": {
                        "Fn::Sub": f"arn:${{AWS::Partition}}:logs:${{AWS::Region}}:${{AWS::AccountId}}:log-group:${{{API_ACCESS_LOGS}}}"
                    },
                    "Format": ACCESS_LOG_FORMAT,
                },
                "MethodSettings": [
                    {
                        "ResourcePath": "/*",
                        "HttpMethod": "*",
                        "ThrottlingBurstLimit": THROTTLING_BURST,
                        "ThrottlingRateLimit": THROTTLING_RATE,
                        "MetricsEnabled": True,
                    }
                ],
            },
        },
    }


def log_group_name(function_resource: str) -> str:
    """The resource name of a function's log group."""
    return f"{function_resource}LogGroup"


def log_group_resources(functions: dict[str, str]) -> dict[str, Any]:
    """A log group with a retention period for each function (`functions`: resource name -> function name)."""
    return {
        log_group_name(resource): {
            "Type": "AWS::Logs::LogGroup",
            "DeletionPolicy": "Retain",
            "UpdateReplacePolicy": "Retain",
            "Properties": {"LogGroupName": f"/aws/lambda/{function}", "RetentionInDays": LOG_RETENTION_DAYS},
        }
        for resource, function in sorted(functions.items())
    }
