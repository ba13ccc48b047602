"""Restoring snapshots: requests and records, one module per kind of target (bucket, table, folder), thaws
of archived versions and quotes."""
