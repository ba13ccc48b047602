"""The administrator's side: what a backup bucket must look like (and drift from it), provisioning,
least-privilege policies and the deploy template."""
