"""org-backup: automatic, verified, incremental backups on AWS. See README.md for the map of packages."""
