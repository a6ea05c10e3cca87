"""sync's rounds in flight against what a hostile user feeds them: diff's keys files (one
source key in the missing files of several targets), a key of the wrong type among good
ones, Ctrl-C while the main thread waits for a round, a key in two rounds while the
application writes it.

The rounds run against `Tables`, an in-memory DynamoDB behind the boto3 client calls sync
makes (BatchGetItem, BatchWriteItem), which refuses a whole call with ValidationException
when a key does not match the table's key schema, as DynamoDB does.

Each test failed on the code before its fix (catchup/syncrun.py, catchup/dynamo.py); the
docstrings say what was wrong.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import threading
import time
from typing import Any

import pytest
from botocore.exceptions import ClientError

from ddbshard.catchup.dynamo import Dynamo, RetryPolicy
from ddbshard.catchup.keysfile import KeyEntry
from ddbshard.catchup.routing import Router
from ddbshard.catchup.syncrun import SyncRun, _Gate
from ddbshard.catchup.wire import canonical, item_from_client, item_to_client
from ddbshard.config import parse_config

CONFIG = """
source = "s3://b/export/"
dest = "s3://b/out/"
[output]
route = "all"
unmatched = "drop"
[[target]]
name = "Posts"
key = { hash = "pk", range = "sk" }
key_types = { pk = "S", sk = "S" }
[[target]]
name = "Comments"
key = { hash = "cid" }
key_types = { cid = "S" }
set = { cid = "C#{pk}#{sk}" }
"""
SCHEMAS = {"Source": ("pk", "sk"), "Posts": ("pk", "sk"), "Comments": ("cid",)}


def _validation(message: str) -> ClientError:
    return ClientError(
        {
            "Error": {"Code": "ValidationException", "Message": message},
            "ResponseMetadata": {"HTTPStatusCode": 400},
        },
        "BatchGetItem",
    )


class Tables:
    """DynamoDB's batch calls over dicts; every key attribute is S. `on_write` is called
    with each BatchWriteItem's requests before they are applied."""

    def __init__(self) -> None:
        self.items: dict[str, dict[str, dict[str, Any]]] = {t: {} for t in SCHEMAS}
        self.lock = threading.Lock()
        self.write_calls = 0
        self.on_write: Any = None
        self.on_get: Any = None  # called with each BatchGetItem's RequestItems, then after

    def put(self, table: str, item: dict[str, Any]) -> None:
        self.items[table][self._id(table, item, item=True)] = item

    def _id(self, table: str, key: dict[str, Any], *, item: bool = False) -> str:
        names = SCHEMAS[table]
        extra = not item and bool(set(key) - set(names))
        if extra or any("S" not in key.get(n, {}) for n in names):
            raise _validation("The provided key element does not match the schema")
        return canonical({n: key[n] for n in names})

    def batch_get_item(self, RequestItems: dict[str, Any]) -> dict[str, Any]:
        if self.on_get is not None:
            self.on_get(RequestItems, answered=False)
        try:
            return self._get(RequestItems)
        finally:
            if self.on_get is not None:
                self.on_get(RequestItems, answered=True)

    def _get(self, RequestItems: dict[str, Any]) -> dict[str, Any]:
        with self.lock:
            # The whole call is refused when one key is bad: checked before any is read.
            ids = {
                t: [self._id(t, item_from_client(k)) for k in spec["Keys"]]
                for t, spec in RequestItems.items()
            }
            found = {
                t: [item_to_client(self.items[t][i]) for i in keys if i in self.items[t]]
                for t, keys in ids.items()
            }
        return {"Responses": found, "UnprocessedKeys": {}}

    def batch_write_item(self, RequestItems: dict[str, Any], **_: Any) -> dict[str, Any]:
        if self.on_write is not None:
            self.on_write(RequestItems)
        with self.lock:
            self.write_calls += 1
            for t, requests in RequestItems.items():
                for r in requests:
                    if "PutRequest" in r:
                        item = item_from_client(r["PutRequest"]["Item"])
                        self.items[t][self._id(t, item, item=True)] = item
                    else:
                        key = item_from_client(r["DeleteRequest"]["Key"])
                        self.items[t].pop(self._id(t, key), None)
        return {"UnprocessedItems": {}}


def _run(tables: Tables, entries: list[KeyEntry], concurrency: int) -> SyncRun:
    dynamo = Dynamo(tables, RetryPolicy(sleep=lambda _: None))
    run = SyncRun(
        Router(parse_config(CONFIG)),
        dynamo,
        "Source",
        ("pk", "sk"),
        concurrency=concurrency,
    )
    run.run(entries)
    return run


def _entry(keys: dict[str, Any]) -> KeyEntry:
    return KeyEntry(keys, canonical(keys), where="keys.jsonl")


def _source(tables: Tables, n: int) -> list[dict[str, Any]]:
    items = [{"pk": {"S": f"P{i:03d}"}, "sk": {"S": "S"}, "v": {"N": str(i)}} for i in range(n)]
    for it in items:
        tables.put("Source", it)
    return items


@pytest.mark.parametrize("concurrency", [1, 16])
def test_a_key_in_the_missing_files_of_two_targets_is_written_once(concurrency: int) -> None:
    """diff lists a source item missing from Posts and from Comments in both targets'
    missing.jsonl: `sync --keys Posts/missing.jsonl --keys Comments/missing.jsonl` gets each
    key twice, within one round when there are fewer than 100. As one round after another
    would (and as the docs promise for a key given twice), the second copy must find both
    targets up to date: puts 2 per item, then unchanged. Today both copies are planned from
    the same reads and both write: 4 puts per item counted, and 4 sent.

    Fix (syncrun._chunks): end a round before an entry whose key_id it already holds (a set
    of key_ids per batch), so a repeated key goes to the next round, which the gate orders
    after this one."""
    tables = Tables()
    items = _source(tables, 3)
    keys = [_entry({"pk": it["pk"], "sk": it["sk"]}) for it in items]
    run = _run(tables, keys + keys, concurrency)  # Posts/missing.jsonl, Comments/missing.jsonl
    assert len(tables.items["Posts"]) == len(tables.items["Comments"]) == 3
    t = run.tally
    assert (t.keys, t.read, t.failed) == (6, 6, 0)
    assert (t.put, t.unchanged) == (6, 3), t


def test_a_key_of_the_wrong_type_fails_alone() -> None:
    """A keys line naming the source item by a number where the table's key is a string
    (a keys file of another table, a hand-made line) makes DynamoDB refuse the whole
    BatchGetItem (ValidationException): today the 99 good keys read with it fail too (and go
    to the failed-keys file with that reason), and fail again each time the file is fed back.
    The same goes for a `Target` line whose key has the wrong type: the round's target reads
    all fail, and every put and delete of the round is sent blind and counted as done.

    Fix (dynamo.Dynamo.get): as `write` does for a refused batch, when a call of more than one
    key comes back refused (a str answer), send its keys again one per call (mark them
    `alone`), so that only the key at fault fails with DynamoDB's reason."""
    tables = Tables()
    items = _source(tables, 99)
    entries = [_entry({"pk": it["pk"], "sk": it["sk"]}) for it in items]
    entries.insert(50, _entry({"pk": {"N": "7"}, "sk": {"S": "S"}}))
    run = _run(tables, entries, 1)
    assert len(tables.items["Posts"]) == 99
    t = run.tally
    assert (t.keys, t.failed, t.put) == (100, 1, 198), t
    assert len(run.failed_lines) == 1 and "ValidationException" in run.failed_lines[0]["reason"]


def test_ctrl_c_while_waiting_for_a_round_counts_what_it_wrote() -> None:
    """`ctrl_c_scenario`, in a process of its own: signals, their handlers and the threads'
    masks belong to the whole process, and in the full suite (never alone, nor with its
    folder) the Ctrl-C sent to the main thread was acted on only after the round's 10 s wait
    for it had given up: something an earlier test leaves in the process decides when it
    lands, which is not what this test is about."""
    code = "import runpy, sys; runpy.run_path(sys.argv[1])['ctrl_c_scenario']()"
    r = subprocess.run(
        [sys.executable, "-c", code, __file__], capture_output=True, text=True, timeout=120
    )
    assert r.returncode == 0, r.stdout + r.stderr


def ctrl_c_scenario() -> None:
    """Ctrl-C arrives while the main thread waits for a round (`_settle_next` has popped its
    future and sits in `result()`). The round finishes its call in flight, gives back the rest
    (failed), and is never settled: the summary says nothing of the 25 items it put, and the
    "interrupted after N keys" line counts fewer keys than were handled.

    Fix (syncrun._concurrently / _settle_next): take the future off `waiting` only once its
    result is in (`done = waiting[0].result(); waiting.popleft()`), so that `_settle_finished`
    settles it after a stop like the rounds behind it."""
    tables = Tables()
    items = _source(tables, 100)
    main = threading.main_thread()

    fired = threading.Lock()

    def interrupt(requests: dict[str, Any]) -> None:
        # Once: two rounds' first writes may come at the same moment, and a second Ctrl-C
        # would land in the middle of the first one's handling.
        if tables.write_calls or not fired.acquire(blocking=False):
            return
        # Wait (polling) until the main thread is blocked in Future.result(), then Ctrl-C.
        while not (_in(main, "_settle_next") and _in(main, "result")):
            threading.Event().wait(0.001)
        signal.pthread_kill(main.ident or 0, signal.SIGINT)
        # This call is in flight when the run stops: it is answered after the stop.
        assert dynamo.stopping.wait(10)

    tables.on_write = interrupt
    entries = [_entry({"pk": it["pk"], "sk": it["sk"]}) for it in items]
    dynamo = Dynamo(tables, RetryPolicy(sleep=lambda _: None))
    run = SyncRun(Router(parse_config(CONFIG)), dynamo, "Source", ("pk", "sk"), concurrency=2)
    try:
        run.run(entries)
        raise AssertionError("the run was not interrupted")
    except KeyboardInterrupt:
        pass
    written = len(tables.items["Posts"]) + len(tables.items["Comments"])
    assert written == 25  # the call in flight (25 requests); the rest were given back
    t = run.tally
    # Every key counted: put in both targets, or failed (some of its writes given back).
    assert t.keys == 100 and t.keys == t.failed + t.put // 2, t
    assert 0 < t.put <= written, t


def _in(thread: threading.Thread, function: str) -> bool:
    frame = sys._current_frames().get(thread.ident or 0)
    while frame is not None:
        if frame.f_code.co_name == function:
            return True
        frame = frame.f_back
    return False


def test_a_key_in_two_rounds_is_written_as_the_later_read_found_it() -> None:
    """Key K is in round 0 and again in round 1 (a key in two targets' diff files, 100
    lines apart), and the application updates K meanwhile. Round 1 reads K's source item
    before round 0 does (both rounds start at once; the gate is entered only after the
    source read), so it gets the old item; round 0 gets the new one and writes it; round 1,
    ordered after round 0 by the gate, then writes the old one over it. One round after
    another would leave the new item; the docs say a round takes its source keys before it
    reads them.

    Fix (syncrun._round): take the round's source keys in the gate before `_current` reads
    them (a first `enter` with the source keys alone, in turn order, then the target items
    once planned, waiting only for earlier rounds), or re-read and re-plan the keys an
    earlier round held once the gate lets the round in."""
    tables = Tables()
    items = _source(tables, 100)
    k = items[0]
    entries = [_entry({"pk": it["pk"], "sk": it["sk"]}) for it in items]
    entries.append(entries[0])  # round 0: the 100 keys; round 1: K again
    round1_read = threading.Event()

    def on_get(requests: dict[str, Any], *, answered: bool) -> None:
        keys = requests.get("Source", {}).get("Keys", [])
        if len(keys) == 1 and answered:
            round1_read.set()
        elif len(keys) == 100 and not answered:
            # Round 0 reads once round 1 has read K or waits for its turn in the gate (a
            # fixed sync may block it elsewhere: the deadline lets round 0 go on then).
            deadline = time.monotonic() + 10
            while not round1_read.is_set() and not _waiting_in_gate(1):
                if time.monotonic() > deadline:
                    break
                threading.Event().wait(0.001)
            tables.put("Source", {**k, "v": {"S": "new"}})  # the application's update

    tables.on_get = on_get
    _run(tables, entries, 2)
    posts = tables.items["Posts"][canonical({"pk": k["pk"], "sk": k["sk"]})]
    assert posts["v"] == {"S": "new"}, "the target must hold the source's newest read"


def _waiting_in_gate(seq: int) -> bool:
    """Whether round `seq` is inside a method of the gate (waiting for its turn)."""
    for frame in list(sys._current_frames().values()):
        f: Any = frame
        while f is not None:
            if isinstance(f.f_locals.get("self"), _Gate) and f.f_locals.get("seq") == seq:
                return True
            f = f.f_back
    return False
