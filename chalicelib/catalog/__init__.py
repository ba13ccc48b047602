"""The catalog: what backups exist and what each snapshot holds (manifests, backup records, page tokens)."""
