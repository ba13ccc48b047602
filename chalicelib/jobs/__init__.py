"""The one framework every long-running job uses: backups, restores, prunes and verifications.

- `store.py`: a job's record, which is also its checkpoint: created once (create-only), then replaced only
  as the version last read (ETag-guarded), so of two invocations working one job only one moves it on.
- `runner.py`: where a job continues past the Lambda time limit. `run_until_done` works a job from its
  checkpoint until done or out of time; `hand_on` then has its worker invoked again with the job's id (the
  backup, whose key ranges run in parallel invocations, hands itself on through `hand_on` too).
- `budget.py`: the invocation's remaining time.
- `dispatch.py`: how a recorded job is started (a Lambda worker, a thread, or inline), which worker carries
  it on, the worker beside the backup worker, and when a worker is given up as lost (`worker_lost`).
- `ids.py`: a job's id (time-sortable; backup, restore, prune and check ids all have its form).
- `service.py`: a kind of job as the API, the command line and the schedule see it (store, dispatch, run).

Each kind keeps only its own steps: `prune/job.py`, `verify/job.py`, `backup/service.py` (with
`backup/progress.py`, its record under concurrent ranges), `restore/passes.py`.
"""
