"""`org-backup`: the operator's command line (see `main.py`)."""

from chalicelib.cli.main import main

__all__ = ["main"]
