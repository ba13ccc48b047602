"""The one framework every long-running job uses: backups, restores, prunes and verifications.

- `store.py`: a job's record, which is also its checkpoint: created once (create-only), then replaced only
  as the version last read (ETag-guarded), so of two invocations working one job only one moves it on.
- `runner.py`: `run_until_done`, where a job continues past the Lambda time limit: it works from its
  checkpoint until done or out of time, then has its worker invoked again with the same id.
- `budget.py`: the invocation's remaining time.
- `dispatch.py`: how a recorded job is started (a Lambda worker, a thread, or inline), the worker beside the
  backup worker, and when a worker is given up as lost.
- `ids.py`: a job's id (time-sortable, the same form as a backup id).
- `service.py`: a kind of job as the API, the command line and the schedule see it (store, dispatch, run).

Each kind keeps only its own steps: `prune/job.py`, `verify/job.py`, `backup/service.py`, `restore/passes.py`.
"""
