"""Taking backups: reading sources, comparing with the previous snapshot, copying, checkpoints, key ranges,
plan locks, and the service that runs a backup from start to alert."""
