"""Which snapshots a plan keeps: the retention policy and its decisions."""
