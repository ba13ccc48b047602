"""Restoring a database export into a new DynamoDB table: the table is created with the key schema recorded
with the snapshot (on-demand billing), then the export's items are written 25 at a time. The export is either
form a backup takes (chalicelib/backup/tables.py): a scan's lines are items, a DynamoDB export's lines wrap
each item as `{"Item": {...}}`; the entry's identity says which."""

from __future__ import annotations

import base64
import gzip
import json
from collections.abc import Callable
from typing import Any

from botocore.exceptions import ClientError

from chalicelib.catalog.manifests import EXPORT_IDENTITY, Entry
from chalicelib.errors import error_code
from chalicelib.restore.outcome import Outcome

# DynamoDB accepts at most 25 items per BatchWriteItem request.
WRITE_BATCH = 25


def restore_table(
    dynamodb: Any,
    s3: Any,
    bucket: str,
    entry: Entry,
    table: str,
    overwrite: bool,
    created: list[str],
    schema: Callable[[], dict[str, Any]],
    remember_created: Callable[[str], None],
) -> Outcome:
    """Fill `table` with the items of the export `entry` names. `created` lists the tables this restore made
    itself (those are filled even without `overwrite`); `schema()` gives the key schema of a table to create;
    `remember_created(table)` records a new table at once, so a pass that resumes after a crash knows it."""
    if table not in created:
        try:
            dynamodb.describe_table(TableName=table)
            exists = True
        except ClientError as exc:
            if error_code(exc) != "ResourceNotFoundException":
                raise
            exists = False
        if exists and not overwrite:
            return Outcome("failed", entry, reason=f"table {table} already exists (overwrite is off)")
        if not exists:
            dynamodb.create_table(TableName=table, BillingMode="PAY_PER_REQUEST", **schema())
            remember_created(table)
        dynamodb.get_waiter("table_exists").wait(TableName=table, WaiterConfig={"Delay": 2, "MaxAttempts": 150})
    response = s3.get_object(Bucket=bucket, Key=entry.data_key, VersionId=entry.version_id)
    # A DynamoDB export wraps each item (`{"Item": {...}}`); a scan writes the item itself.
    exported = entry.identity.startswith(EXPORT_IDENTITY)
    written = 0
    batch: list[dict[str, Any]] = []
    with gzip.GzipFile(fileobj=response["Body"], mode="rb") as lines:
        for line in lines:
            if not line.strip():
                continue
            item = json.loads(line)
            batch.append({"PutRequest": {"Item": item_from_export(item["Item"] if exported else item)}})
            if len(batch) == WRITE_BATCH:
                written += write_batch(dynamodb, table, batch)
                batch = []
    if batch:
        written += write_batch(dynamodb, table, batch)
    if entry.item_count is not None and written != entry.item_count:
        return Outcome("failed", entry, reason=f"wrote {written} items, the snapshot recorded {entry.item_count}")
    return Outcome("restored", entry, bytes=entry.size)


def table_schema(description: dict[str, Any]) -> dict[str, Any]:
    """The parts of a `describe_table` answer a restore needs to create an equivalent table."""
    key_names = {item["AttributeName"] for item in description["KeySchema"]}
    return {
        "KeySchema": description["KeySchema"],
        "AttributeDefinitions": [a for a in description["AttributeDefinitions"] if a["AttributeName"] in key_names],
    }


def item_from_export(value: Any) -> Any:
    """An export line back into what the client sends: binary values are base64 text in the export, and the
    client wants bytes (it encodes them itself)."""
    if isinstance(value, dict):
        out: dict[str, Any] = {}
        for name, inner in value.items():
            if name == "B" and isinstance(inner, str):
                out[name] = base64.b64decode(inner)
            elif name == "BS" and isinstance(inner, list):
                out[name] = [base64.b64decode(v) if isinstance(v, str) else v for v in inner]
            else:
                out[name] = item_from_export(inner)
        return out
    if isinstance(value, list):
        return [item_from_export(v) for v in value]
    return value


def write_batch(dynamodb: Any, table: str, batch: list[dict[str, Any]]) -> int:
    """Write up to 25 items. Unprocessed items are part of BatchWriteItem's protocol (capacity), not an error:
    they are sent again, a bounded number of times, after botocore's own retries of failed requests."""
    pending = {table: batch}
    for _ in range(20):
        response = dynamodb.batch_write_item(RequestItems=pending)
        pending = response.get("UnprocessedItems") or {}
        if not pending:
            return len(batch)
    raise ValueError(f"table {table}: {len(pending.get(table, []))} items still unprocessed after 20 attempts")
