"""`python -m chalicelib.cli`: the same as `org-backup`."""

import sys

from chalicelib.cli.main import main

sys.exit(main())
