"""Which IAM authorisations an AWS API call needs, and whether a policy allows them.

`required_permissions` maps one call (service, operation, parameters) to the IAM actions and resources it
needs, for the services this system uses, with the condition keys the request carries; `allows` evaluates a
policy's statements for one of them (explicit Deny wins). The test suite records every call the system makes
and checks each against the generated policy of the function that made it with these two.

Every S3 permission carries `s3:ResourceAccount`, the account that owns the bucket: the one the request
names with `ExpectedBucketOwner` (S3 refuses the request if another account owns it), else the caller's own.
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from chalicelib.deploy.grants import RESOURCE_ACCOUNT
from chalicelib.deploy.scope import bucket_arn, function_arn


@dataclass(frozen=True)
class Permission:
    """One IAM authorisation an API call needs."""

    action: str
    resource: str
    # Condition keys the request supplies (e.g. s3:prefix for a listing).
    context: tuple[tuple[str, str], ...] = ()


# S3 operations whose IAM action is not simply "s3:<operation>", and what they act on.
_S3_BUCKET_ACTIONS = {
    "ListObjects": "s3:ListBucket",
    "ListObjectsV2": "s3:ListBucket",
    "HeadBucket": "s3:ListBucket",
    "ListObjectVersions": "s3:ListBucketVersions",
    "ListMultipartUploads": "s3:ListBucketMultipartUploads",
    "GetBucketLifecycleConfiguration": "s3:GetLifecycleConfiguration",
    "PutBucketLifecycleConfiguration": "s3:PutLifecycleConfiguration",
    "DeleteBucketLifecycle": "s3:PutLifecycleConfiguration",
    "GetBucketEncryption": "s3:GetEncryptionConfiguration",
    "PutBucketEncryption": "s3:PutEncryptionConfiguration",
    "DeleteBucketEncryption": "s3:PutEncryptionConfiguration",
    "GetPublicAccessBlock": "s3:GetBucketPublicAccessBlock",
    "PutPublicAccessBlock": "s3:PutBucketPublicAccessBlock",
    "DeletePublicAccessBlock": "s3:PutBucketPublicAccessBlock",
    "DeleteBucketOwnershipControls": "s3:PutBucketOwnershipControls",
    "GetObjectLockConfiguration": "s3:GetBucketObjectLockConfiguration",
    "GetBucketReplication": "s3:GetReplicationConfiguration",
    "PutBucketReplication": "s3:PutReplicationConfiguration",
    "DeleteBucketReplication": "s3:PutReplicationConfiguration",
    "PutObjectLockConfiguration": "s3:PutBucketObjectLockConfiguration",
    "DeleteBucketPolicy": "s3:DeleteBucketPolicy",
    "GetBucketVersioning": "s3:GetBucketVersioning",
    "PutBucketVersioning": "s3:PutBucketVersioning",
    "GetBucketPolicy": "s3:GetBucketPolicy",
    "PutBucketPolicy": "s3:PutBucketPolicy",
    "GetBucketOwnershipControls": "s3:GetBucketOwnershipControls",
    "PutBucketOwnershipControls": "s3:PutBucketOwnershipControls",
    "CreateBucket": "s3:CreateBucket",
    "DeleteBucket": "s3:DeleteBucket",
    "GetBucketLocation": "s3:GetBucketLocation",
    "GetBucketTagging": "s3:GetBucketTagging",
    "GetBucketNotificationConfiguration": "s3:GetBucketNotification",
    "GetBucketInventoryConfiguration": "s3:GetInventoryConfiguration",
    "PutBucketInventoryConfiguration": "s3:PutInventoryConfiguration",
    "DeleteBucketInventoryConfiguration": "s3:PutInventoryConfiguration",
    "ListBucketInventoryConfigurations": "s3:GetInventoryConfiguration",
}
_S3_OBJECT_ACTIONS: dict[str, str] = {
    "HeadObject": "s3:GetObject",
    "GetObject": "s3:GetObject",
    "PutObject": "s3:PutObject",
    "CreateMultipartUpload": "s3:PutObject",
    "UploadPart": "s3:PutObject",
    "CompleteMultipartUpload": "s3:PutObject",
    "AbortMultipartUpload": "s3:AbortMultipartUpload",
    "ListParts": "s3:ListMultipartUploadParts",
    "DeleteObject": "s3:DeleteObject",
    "RestoreObject": "s3:RestoreObject",
    "SelectObjectContent": "s3:GetObject",
}
# Reading a specific version needs the *Version variant of the action.
_VERSIONED = {
    "s3:GetObject": "s3:GetObjectVersion",
    "s3:DeleteObject": "s3:DeleteObjectVersion",
    "s3:GetObjectTagging": "s3:GetObjectVersionTagging",
    "s3:PutObjectTagging": "s3:PutObjectVersionTagging",
    "s3:GetObjectAttributes": "s3:GetObjectVersionAttributes",
    "s3:GetObjectAcl": "s3:GetObjectVersionAcl",
    "s3:RestoreObject": "s3:RestoreObject",
}


def _copy_source(value: Any) -> tuple[str, str, str | None]:
    if isinstance(value, Mapping):
        return value["Bucket"], value["Key"], value.get("VersionId")
    text = str(value).lstrip("/")
    version = None
    if "?versionId=" in text:
        text, version = text.split("?versionId=", 1)
    from urllib.parse import unquote

    bucket, key = text.split("/", 1)
    return bucket, unquote(key), version


def _s3_permissions(operation: str, params: Mapping[str, Any], account: str) -> list[Permission]:
    bucket = params.get("Bucket", "")
    object_arn = f"{bucket_arn(bucket)}/{params.get('Key', '')}"
    version = params.get("VersionId")
    owned_by = ((RESOURCE_ACCOUNT, str(params.get("ExpectedBucketOwner") or account)),)

    def obj(action: str, arn: str = object_arn, versioned: Any = version, context: Any = owned_by) -> Permission:
        return Permission(_VERSIONED.get(action, action) if versioned else action, arn, context)

    needed: list[Permission] = []
    if operation == "ListBuckets":
        return [Permission("s3:ListAllMyBuckets", "*")]
    if operation in ("CopyObject", "UploadPartCopy"):
        src_bucket, src_key, src_version = _copy_source(params["CopySource"])
        src_arn = f"{bucket_arn(src_bucket)}/{src_key}"
        src_owner = ((RESOURCE_ACCOUNT, str(params.get("ExpectedSourceBucketOwner") or account)),)
        needed += [obj("s3:GetObject", src_arn, src_version, src_owner), obj("s3:PutObject", object_arn, None)]
        if operation == "CopyObject" and params.get("TaggingDirective", "COPY") == "COPY":
            needed += [obj("s3:GetObjectTagging", src_arn, src_version, src_owner), obj("s3:PutObjectTagging", object_arn, None)]
        if operation == "CopyObject" and params.get("TaggingDirective") == "REPLACE" and params.get("Tagging"):
            needed.append(obj("s3:PutObjectTagging", object_arn, None))
    elif operation == "DeleteObjects":
        for item in params.get("Delete", {}).get("Objects", []):
            arn = f"{bucket_arn(bucket)}/{item['Key']}"
            needed.append(obj("s3:DeleteObject", arn, item.get("VersionId")))
    elif operation == "GetObjectAttributes":
        needed += [obj("s3:GetObject"), obj("s3:GetObjectAttributes")]
    elif operation in _S3_BUCKET_ACTIONS:
        context: tuple[tuple[str, str], ...] = owned_by
        if operation in ("ListObjects", "ListObjectsV2", "ListObjectVersions") and params.get("Prefix") is not None:
            context = (("s3:prefix", params["Prefix"]),) + owned_by
        needed.append(Permission(_S3_BUCKET_ACTIONS[operation], bucket_arn(bucket), context))
    elif operation in _S3_OBJECT_ACTIONS:
        needed.append(obj(_S3_OBJECT_ACTIONS[operation]))
    elif "Key" in params:
        needed.append(obj(f"s3:{operation}"))
    else:
        needed.append(Permission(f"s3:{operation}", bucket_arn(bucket), owned_by))
    # Parameters that need rights of their own.
    if operation in ("PutObject", "CreateMultipartUpload", "CopyObject"):
        if params.get("Tagging") and operation != "CopyObject":
            needed.append(obj("s3:PutObjectTagging", object_arn, None))
        if params.get("ObjectLockMode") or params.get("ObjectLockRetainUntilDate"):
            needed.append(obj("s3:PutObjectRetention", object_arn, None))
        if params.get("ObjectLockLegalHoldStatus"):
            needed.append(obj("s3:PutObjectLegalHold", object_arn, None))
    if params.get("BypassGovernanceRetention"):
        needed.append(Permission("s3:BypassGovernanceRetention", object_arn if "Key" in params else bucket_arn(bucket) + "/*", owned_by))
    # The request's own condition keys, for resource policies that decide on them (the create-only rule).
    writes = _write_context(operation, params)
    if writes:
        needed = [
            Permission(p.action, p.resource, p.context + writes) if p.action == "s3:PutObject" else p for p in needed
        ]
    return needed


# Operations that create an object (S3's `s3:ObjectCreationOperation` is true) and the parts of a multipart
# upload, which do not (they carry no conditional header).
_CREATING = ("PutObject", "CopyObject", "CompleteMultipartUpload")
_PARTS = ("CreateMultipartUpload", "UploadPart", "UploadPartCopy")


def _write_context(operation: str, params: Mapping[str, Any]) -> tuple[tuple[str, str], ...]:
    if operation in _PARTS:
        return (("s3:ObjectCreationOperation", "false"),)
    if operation not in _CREATING:
        return ()
    context: tuple[tuple[str, str], ...] = (("s3:ObjectCreationOperation", "true"),)
    if params.get("IfNoneMatch"):
        context += (("s3:if-none-match", str(params["IfNoneMatch"])),)
    if params.get("IfMatch"):
        context += (("s3:if-match", str(params["IfMatch"])),)
    return context


_LAMBDA_ACTIONS = {"Invoke": "lambda:InvokeFunction", "InvokeAsync": "lambda:InvokeFunction"}


def required_permissions(service: str, operation: str, params: Mapping[str, Any], region: str, account: str) -> list[Permission]:
    """The IAM authorisations one API call needs, for the services this system uses."""
    if service == "s3":
        return _s3_permissions(operation, params, account)
    if service == "dynamodb":
        action = f"dynamodb:{operation}"
        if operation == "ExportTableToPointInTime":
            # DynamoDB writes the export into the bucket with the caller's own permissions.
            files = f"{bucket_arn(params['S3Bucket'])}/{params.get('S3Prefix', '')}/AWSDynamoDB/"
            writes = ("s3:PutObject", "s3:PutObjectAcl", "s3:AbortMultipartUpload")
            owned_by = ((RESOURCE_ACCOUNT, str(params.get("S3BucketOwner") or account)),)
            return [Permission(action, params["TableArn"])] + [Permission(write, files, owned_by) for write in writes]
        if "ExportArn" in params:
            return [Permission(action, params["ExportArn"])]
        if "TableName" in params:
            return [Permission(action, f"arn:aws:dynamodb:{region}:{account}:table/{params['TableName']}")]
        if "TableArn" in params:
            return [Permission(action, params["TableArn"])]
        if "RequestItems" in params:
            return [Permission(action, f"arn:aws:dynamodb:{region}:{account}:table/{t}") for t in params["RequestItems"]]
        return [Permission(action, "*")]
    if service == "sns":
        return [Permission(f"sns:{operation}", params.get("TopicArn") or params.get("TargetArn") or "*")]
    if service == "lambda":
        name = params.get("FunctionName", "*")
        return [Permission(_LAMBDA_ACTIONS.get(operation, f"lambda:{operation}"), function_arn(region, account, name))]
    if service == "cloudwatch":
        context = (("cloudwatch:namespace", params["Namespace"]),) if "Namespace" in params else ()
        return [Permission(f"cloudwatch:{operation}", "*", context)]
    return [Permission(f"{service}:{operation}", "*")]


def _matches(pattern: str, value: str) -> bool:
    # IAM wildcards: '*' any run of characters (including '/' and ':'), '?' one character.
    return fnmatch.fnmatchcase(value, pattern)


def _condition_holds(condition: Mapping[str, Any], context: Mapping[str, str]) -> bool:
    for operator, keys in condition.items():
        for key, wanted in keys.items():
            values = wanted if isinstance(wanted, list) else [wanted]
            if operator == "Null":
                # "true": the request does not carry the key; "false": it does.
                if (key not in context) != (str(values[0]).lower() == "true"):
                    return False
                continue
            if key not in context:
                # `...IfExists`: a request without the key matches (the statement applies to it).
                if operator.endswith("IfExists"):
                    continue
                return False
            actual = context[key]
            operator = operator.removesuffix("IfExists")
            if operator == "Bool":
                ok = str(actual).lower() in [str(v).lower() for v in values]
            elif operator == "StringEquals":
                ok = actual in values
            elif operator == "StringNotEquals":
                ok = actual not in values
            elif operator in ("StringLike", "ArnLike", "ArnEquals"):
                # ARNs compare as text, with the wildcards ArnLike (and ArnEquals) allow.
                ok = any(_matches(v, actual) for v in values)
            else:
                return False  # an operator this checker does not know never counts as allowing
            if not ok:
                return False
    return True


def denies(policy: Mapping[str, Any], permission: Permission) -> str | None:
    """The Sid of a statement of a resource policy (a bucket policy) that denies `permission` to everyone,
    or None. Used to check that every request the system sends passes the backup buckets' policy, which
    moto does not evaluate."""
    context = dict(permission.context)
    for statement in _statements_for(policy, permission.action.lower()):
        if not (statement.deny and statement.everyone) or not statement.resources.match(permission.resource):
            continue
        if _condition_holds(statement.condition, context):
            return statement.sid or "a Deny statement"
    return None


def admits(bucket_policy: Mapping[str, Any], principal_arn: str, permission: Permission) -> bool:
    """Whether a bucket policy lets `principal_arn`, a principal of another account than the bucket's, do what
    `permission` names: S3 serves such a request only if the bucket policy allows it to that principal (its
    own account's policies must too) and no statement of the bucket policy denies it."""
    account = principal_arn.split(":")[4]
    context = dict(permission.context) | {"aws:PrincipalArn": principal_arn, "aws:PrincipalAccount": account}
    allowed = False
    for statement in bucket_policy.get("Statement", []):
        principal = statement.get("Principal")
        named = principal.get("AWS") if isinstance(principal, dict) else principal
        names = named if isinstance(named, list) else [named]
        if not ({"*", principal_arn, account, f"arn:aws:iam::{account}:root"} & set(names)):
            continue
        if not _statement_matches(statement, permission) or not _condition_holds(statement.get("Condition", {}), context):
            continue
        if statement.get("Effect") == "Deny":
            return False
        allowed = True
    return allowed


def _statement_matches(statement: Mapping[str, Any], permission: Permission) -> bool:
    actions = statement.get("Action", [])
    resources = statement.get("Resource", [])
    return any(_matches(a.lower(), permission.action.lower()) for a in ([actions] if isinstance(actions, str) else actions)) and any(
        _matches(r, permission.resource) for r in ([resources] if isinstance(resources, str) else resources))


@dataclass(frozen=True)
class _Statement:
    deny: bool
    actions: tuple[str, ...]
    resources: Any  # a compiled regular expression matching any of the statement's resources
    condition: Mapping[str, Any]
    # Its principal is everyone (a resource policy's statement), and its Sid.
    everyone: bool = False
    sid: str | None = None


# Policies evaluated so far, compiled once: the suite evaluates tens of thousands of calls against a few
# policies. The policy object is kept with its compiled form, so its id is never reused meanwhile.
# With each, the statements that name a given action, found once per action.
_COMPILED: dict[int, tuple[Mapping[str, Any], tuple[_Statement, ...], dict[str, tuple[_Statement, ...]]]] = {}


def _statements_for(policy: Mapping[str, Any], action: str) -> tuple[_Statement, ...]:
    """The policy's statements whose actions match `action` (lower case), in the policy's order."""
    _compile(policy)
    _, statements, by_action = _COMPILED[id(policy)]
    found = by_action.get(action)
    if found is None:
        found = tuple(s for s in statements if any(a == action or _matches(a, action) for a in s.actions))
        by_action[action] = found
    return found


def _compile(policy: Mapping[str, Any]) -> tuple[_Statement, ...]:
    found = _COMPILED.get(id(policy))
    if found is not None and found[0] is policy:
        return found[1]
    statements = []
    for statement in policy.get("Statement", []):
        actions = statement.get("Action", [])
        resources = statement.get("Resource", [])
        actions = [actions] if isinstance(actions, str) else actions
        resources = [resources] if isinstance(resources, str) else resources
        pattern = re.compile("|".join(f"(?:{fnmatch.translate(r)})" for r in resources) or "(?!)")
        statements.append(
            _Statement(
                statement.get("Effect") == "Deny", tuple(a.lower() for a in actions), pattern, statement.get("Condition", {}),
                everyone=statement.get("Principal") in ("*", {"AWS": "*"}), sid=statement.get("Sid") or None,
            )
        )
    if len(_COMPILED) > 256:
        _COMPILED.clear()
    _COMPILED[id(policy)] = (policy, tuple(statements), {})
    return tuple(statements)


def allows(policy: Mapping[str, Any], permission: Permission) -> bool:
    """Whether the policy's statements allow `permission` (explicit Deny wins)."""
    context = dict(permission.context)
    action = permission.action.lower()
    allowed = False
    for statement in _statements_for(policy, action):
        if not statement.resources.match(permission.resource):
            continue
        if not _condition_holds(statement.condition, context):
            continue
        if statement.deny:
            return False
        allowed = True
    return allowed
