"""Every core of a node: one Hark worker process per core behind one HTTP front.

With `HARK_WORKERS` > 1 (default: the cores this process may run on) `python -m server
serve` starts the front (`front.py`) on the public port and N workers, each a complete Hark
app (its own engines, its own calls) on 127.0.0.1 and a private port (`supervisor.py`).
The front hands each new call to the least-loaded ready worker and sends everything about
a live call to the worker that owns it: a worker tags the ids of its calls
(`rtc_w1_…`, `ws_w0_…`), so routing needs no table (`routing.py`). Operator listings and
`/metrics` are merged across workers (`merge.py`, `operator_stream.py`), so operators see
one node. Workers agree on single-use tokens, rate limits, per-sub caps and revocations
through Redis when `HARK_REDIS_URL` is set, else through the front's in-memory state served
on a unix socket (`state_server.py`, `local_state.py`). `HARK_WORKERS=1` runs exactly the
single process Hark always was: no front, no extra process.

This room sits with the composition root: it starts processes and serves HTTP.
"""
