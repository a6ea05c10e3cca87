"""Named steps of split's and replicate's commit paths, where the crash tests stop on purpose.

"Kill it anywhere, resume, get exactly the same result" can only be shown by stopping the
process at each step where durable state changes, not by a sleep and a hope. Each such step
calls `reached("name")`; the environment variable `DDBSHARD_CRASH_AT=name:N:how` (set only by
tests) makes the Nth arrival at that step kill the driver there:

    how = kill   SIGKILL: nothing after this instant runs (no cleanup, no flush)
    how = int    SIGINT, as Ctrl-C: the KeyboardInterrupt surfaces here, the driver's
                 ordinary interrupt handling runs
    how = stop   SIGSTOP: the driver freezes here, alive, until the test sends SIGCONT

Steps (in the order a run reaches them):
    clearing         --overwrite removed one entry of the earlier output
    appended         a finished input file's output was appended to the shards (not synced)
    synced           those appends were made durable (fsync), the checkpoint not yet saved
    part_uploaded    an S3 multipart part was uploaded
    applied          replicate: a batch's writes are acknowledged, its checkpoint not yet saved
    checkpointed     the checkpoint was saved (replicate: after a batch, the stream checkpoint)
    copy_written     parquet/diff: a copy's parts are all written, the copy not yet marked whole
    object_written   an object was completed on its dest (PUT, CompleteMultipartUpload)
    object_recorded  the checkpoint records that object as complete
    manifest         a target's manifest (or import request) was written
    summary          _summary.json was written
    finished         everything is written; the state is about to be removed

Without the variable, `reached` is one dictionary lookup.
"""

from __future__ import annotations

import os
import signal

STEPS = (
    "clearing",
    "appended",
    "synced",
    "part_uploaded",
    "applied",
    "checkpointed",
    "copy_written",
    "object_written",
    "object_recorded",
    "manifest",
    "summary",
    "finished",
)
_ENV = "DDBSHARD_CRASH_AT"


def _plan() -> tuple[str, int, str] | None:
    text = os.environ.get(_ENV)
    if not text:
        return None
    step, count, how = text.split(":")
    if step not in STEPS or how not in ("kill", "int", "stop") or int(count) < 1:
        raise ValueError(f"{_ENV}={text}: expected STEP:N:kill|int|stop, STEP one of {STEPS}")
    return step, int(count), how


_PLAN = _plan()
_seen: dict[str, int] = {}


def reached(step: str) -> None:
    if _PLAN is None or _PLAN[0] != step:
        return
    _seen[step] = _seen.get(step, 0) + 1
    if _seen[step] != _PLAN[1]:
        return
    how = {"kill": signal.SIGKILL, "int": signal.SIGINT, "stop": signal.SIGSTOP}[_PLAN[2]]
    # SIGINT: Python raises KeyboardInterrupt at its next check, before this returns.
    os.kill(os.getpid(), how)
