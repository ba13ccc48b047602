"""Retention applied: which snapshots each plan keeps, and the prune that removes the rest and every version
no kept snapshot names, crash-safe, guarded, in as many invocations as it takes."""
