"""org-backup: automatic, verified, incremental backups on AWS. docs/development.md, "Layout", maps the packages."""
