"""The parts of sync that need no server: batching and retry rules, the write budget, value
identity, and which targets can be found from the source key alone.

The batch tests drive `Dynamo` with a scripted stand-in for the boto3 client, so each AWS
behaviour (partial answers, throttling, a refused batch, a dropped connection) happens exactly
when the test says; tests/catchup/test_sync_server.py does the same through HTTP against moto.
"""

from __future__ import annotations

import gc
import os
import sys
import threading
from collections.abc import Callable
from typing import Any

import pytest
from botocore.exceptions import (
    ClientError,
    EndpointConnectionError,
    NoCredentialsError,
    NoRegionError,
)

from ddbshard.catchup.dynamo import MAX_WRITE, Budget, Dynamo, RetryPolicy, Write
from ddbshard.catchup.keysfile import KeyEntry
from ddbshard.catchup.routing import Router
from ddbshard.catchup.syncrun import SOURCE, TARGETS, SyncRun, _Gate
from ddbshard.catchup.wire import canonical, item_from_client, item_size, item_to_client
from ddbshard.config import parse_config
from ddbshard.exceptions import InputError
from support.ddb_tables import run_cli


def error(code: str, status: int = 400) -> ClientError:
    return ClientError(
        {
            "Error": {"Code": code, "Message": f"{code}!"},
            "ResponseMetadata": {"HTTPStatusCode": status},
        },
        "BatchWriteItem",
    )


class Scripted:
    """Answers each call with the next step: a dict, an exception, or a function of the call."""

    def __init__(self, *steps: Any, then: Any = None) -> None:
        self.steps = list(steps)
        self.then = then if then is not None else (lambda kw: {})
        self.calls: list[dict[str, Any]] = []

    def _answer(self, kw: dict[str, Any]) -> dict[str, Any]:
        self.calls.append(kw)
        step = self.steps.pop(0) if self.steps else self.then
        if isinstance(step, Exception):
            raise step
        answer: dict[str, Any] = step(kw) if callable(step) else step
        return answer

    def batch_write_item(self, **kw: Any) -> dict[str, Any]:
        return self._answer(kw)

    def batch_get_item(self, **kw: Any) -> dict[str, Any]:
        return self._answer(kw)


def writes(n: int, table: str = "T") -> list[Write]:
    return [
        Write(table, {"pk": {"S": f"k{i}"}, "v": {"N": "1"}}, {"pk": {"S": f"k{i}"}}, 1, i)
        for i in range(n)
    ]


def sent(call: dict[str, Any]) -> list[str]:
    """The keys a BatchWriteItem call carried, in order."""
    out = []
    for requests in call["RequestItems"].values():
        for r in requests:
            item = r["PutRequest"]["Item"] if "PutRequest" in r else r["DeleteRequest"]["Key"]
            out.append(item["pk"]["S"])
    return out


def no_wait(sleeps: list[float] | None = None, max_attempts: int = 12) -> RetryPolicy:
    record: Callable[[float], None] = sleeps.append if sleeps is not None else (lambda s: None)
    return RetryPolicy(max_attempts=max_attempts, sleep=record, random=lambda: 1.0)


def test_unprocessed_items_are_sent_again_until_applied() -> None:
    def partial(kw: dict[str, Any]) -> dict[str, Any]:
        return {"UnprocessedItems": {"T": kw["RequestItems"]["T"][-3:]}}

    ddb = Scripted(partial, partial)
    failed = Dynamo(ddb, no_wait()).write(writes(30))
    assert failed == []
    # 25; then the 5 left and the 3 sent back (they queue behind); then those 3 once more.
    assert [sent(c) for c in ddb.calls[1:]] == [
        ["k25", "k26", "k27", "k28", "k29", "k22", "k23", "k24"],
        ["k22", "k23", "k24"],
    ]


def test_throttled_calls_back_off_exponentially_then_fail_without_dropping() -> None:
    sleeps: list[float] = []
    ddb = Scripted(then=error("ProvisionedThroughputExceededException"))
    failed = Dynamo(ddb, no_wait(sleeps, max_attempts=4)).write(writes(3))
    assert len(ddb.calls) == 4
    assert sleeps == [0.05, 0.1, 0.2]  # full jitter with random() = 1: the ceiling
    assert [w.tag for w, _ in failed] == [0, 1, 2]
    assert all("after 4 attempts" in why for _, why in failed)


def test_server_errors_and_dropped_connections_are_retried() -> None:
    ddb = Scripted(error("InternalServerError", 500), EndpointConnectionError(endpoint_url="x"))
    assert Dynamo(ddb, no_wait()).write(writes(2)) == []
    assert len(ddb.calls) == 3


def test_a_refused_batch_is_split_to_find_the_request_at_fault() -> None:
    def refuse_k3(kw: dict[str, Any]) -> dict[str, Any]:
        if "k3" in sent(kw):
            raise error("ValidationException")
        return {}

    ddb = Scripted(then=refuse_k3)
    failed = Dynamo(ddb, no_wait()).write(writes(5))
    assert [(w.tag, why) for w, why in failed] == [(3, "ValidationException: ValidationException!")]
    assert sorted(k for c in ddb.calls[1:] for k in sent(c)) == ["k0", "k1", "k2", "k3", "k4"]


def test_no_call_names_an_item_twice_and_order_per_item_holds() -> None:
    item = {"pk": {"S": "same"}}
    ws = [
        Write("T", None, item, 1, "delete"),
        *writes(3),
        Write("T", {**item, "v": {"N": "2"}}, item, 1, "put"),
    ]
    ddb = Scripted()
    assert Dynamo(ddb, no_wait()).write(ws) == []
    first, second = ddb.calls
    assert sent(first) == ["same", "k0", "k1", "k2"]
    assert "DeleteRequest" in first["RequestItems"]["T"][0]
    assert sent(second) == ["same"] and "PutRequest" in second["RequestItems"]["T"][0]


def test_calls_carry_at_most_25_requests_across_tables() -> None:
    ddb = Scripted()
    assert Dynamo(ddb, no_wait()).write(writes(40, "A") + writes(40, "B")) == []
    assert [sum(len(r) for r in c["RequestItems"].values()) for c in ddb.calls] == [25, 25, 25, 5]
    assert max(len(c["RequestItems"]) for c in ddb.calls) == 2
    assert MAX_WRITE == 25


def test_unprocessed_keys_are_read_again() -> None:
    def first(kw: dict[str, Any]) -> dict[str, Any]:
        keys = kw["RequestItems"]["T"]["Keys"]
        assert kw["RequestItems"]["T"]["ConsistentRead"] is True
        return {
            "Responses": {"T": [{**k, "v": {"B": b"\x00"}} for k in keys[:2]]},
            "UnprocessedKeys": {"T": {"Keys": keys[2:], "ConsistentRead": True}},
        }

    ddb = Scripted(first, lambda kw: {"Responses": {"T": [kw["RequestItems"]["T"]["Keys"][0]]}})
    found, failed = Dynamo(ddb, no_wait()).get([("T", {"pk": {"S": f"k{i}"}}) for i in range(4)])
    assert failed == []
    assert sorted(k for _, k in found) == sorted(
        canonical({"pk": {"S": f"k{i}"}}) for i in range(3)
    )
    assert found[("T", canonical({"pk": {"S": "k0"}}))]["v"] == {"B": "AA=="}  # back to wire form


class Clock:
    def __init__(self) -> None:
        self.now = 0.0
        self.slept: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, s: float) -> None:
        self.slept.append(s)
        self.now += s


def test_the_budget_holds_the_rate_whatever_the_batch_size() -> None:
    clock = Clock()
    budget = Budget(10, clock=clock, sleep=clock.sleep)
    budget.take(10)  # the first second's worth is there
    assert clock.slept == []
    budget.take(5)
    assert clock.slept == [0.5]
    budget.take(30)  # more than the bucket holds: waits until it could have filled that far
    assert clock.slept == [0.5, 3.0]
    clock.now += 100  # idle time fills the bucket, but only to one second's worth
    budget.take(15)
    assert clock.slept[-1] == pytest.approx(0.5)
    budget.charge(10)  # DynamoDB said it cost more: the next write waits for it
    budget.take(1)
    assert clock.slept[-1] == pytest.approx(1.1)
    assert clock.now == pytest.approx(100 + 0.5 + 3.0 + 0.5 + 1.1)


def test_the_budget_caps_the_batch_and_takes_reported_capacity() -> None:
    clock = Clock()
    ddb = Scripted(then=lambda kw: {"ConsumedCapacity": [{"TableName": "T", "CapacityUnits": 8.0}]})
    dynamo = Dynamo(ddb, no_wait(), Budget(4, clock=clock, sleep=clock.sleep))
    assert dynamo.write(writes(8)) == []
    assert [len(sent(c)) for c in ddb.calls] == [4, 4]
    assert all(c["ReturnConsumedCapacity"] == "TOTAL" for c in ddb.calls)
    # 4 units estimated per call, 8 reported: the 4 extra are owed before the second call.
    assert clock.now == pytest.approx(2.0)


def test_values_are_the_same_when_dynamodb_would_store_the_same() -> None:
    a = {
        "n": {"N": "1.50"},
        "z": {"N": "-0.0"},
        "s": {"NS": ["2", "10", "1E+1"]},
        "b": {"B": "AAE="},
    }
    b = {"b": {"B": "AAE="}, "s": {"NS": ["1E1", "2.0", "10"]}, "z": {"N": "0"}, "n": {"N": "1.5"}}
    assert canonical(a) == canonical(b)
    assert canonical({"x": {"BOOL": True}}) != canonical({"x": {"N": "1"}})
    assert canonical({"x": {"SS": ["a"]}}) != canonical({"x": {"L": [{"S": "a"}]}})
    big = "1234567890123456789012345678901234567.8"
    assert canonical({"n": {"N": big}}) != canonical({"n": {"N": big[:-1] + "9"}})


def test_client_form_round_trip_and_item_size() -> None:
    item = {"b": {"B": "AAE="}, "l": {"L": [{"BS": ["AA==", "AQ=="]}, {"M": {"x": {"B": ""}}}]}}
    client = item_to_client(item)
    assert client["b"] == {"B": b"\x00\x01"}
    assert client["l"]["L"][0] == {"BS": [b"\x00", b"\x01"]}
    assert item_from_client(client) == item
    # The Developer Guide's example: shirt-color "R" and shirt-size "M" are 23 bytes.
    assert item_size({"shirt-color": {"S": "R"}, "shirt-size": {"S": "M"}}) == 23


CONFIG = """\
source = "/nowhere"
dest = "/nowhere-out"
[[target]]
name = "Posts"
where = "kind = :p"
values = { ":p" = "post" }
key = { hash = "pk", range = "sk" }
key_types = { pk = "S", sk = "S" }
rename = { pk = "owner" }
set = { pk = "P#{pk}" }
[[target]]
name = "Comments"
key = { hash = "cid" }
key_types = { cid = "S" }
set = { cid = "C#{user_id}#{sk}" }
"""


def test_targets_whose_key_comes_from_the_source_key_alone() -> None:
    router = Router(parse_config(CONFIG))
    keys = {"pk": {"S": "u1"}, "sk": {"S": "s1"}}
    assert router.keys_from_source_key(keys) == {0: {"pk": {"S": "P#u1"}, "sk": {"S": "s1"}}}
    assert router.keyed_elsewhere(keys) == ["Comments"]
    routed = router.route({**keys, "kind": {"S": "post"}, "user_id": {"S": "9"}})
    assert routed.outputs[0]["owner"] == {"S": "u1"}
    assert 1 not in routed.outputs  # route "first": Posts took it
    routed = router.route({**keys, "kind": {"S": "other"}})
    assert routed.outputs == {}
    assert [(r.target, r.reason) for r in routed.rejects] == [
        ("Comments", "template_missing_attribute")
    ]


def test_a_target_keyed_by_the_source_key_with_other_templates_is_found_from_the_key() -> None:
    """The demo's Posts: keyed by the source key, with a GSI key made from a non-key attribute
    and a renamed one. Its key comes from the source key alone; the templates of its other
    attributes must not hide it (a key without OldImage, moved out of Posts, left its copy
    there, and sync's note named Posts among the targets keyed by non-key attributes)."""
    config = CONFIG.replace(
        'rename = { pk = "owner" }\nset = { pk = "P#{pk}" }',
        'rename = { created_at = "createdAt" }\nset = { gsi1pk = "USER#{user_id}" }',
    )
    assert "gsi1pk" in config
    router = Router(parse_config(config))
    keys = {"pk": {"S": "u1"}, "sk": {"S": "s1"}}
    assert router.keys_from_source_key(keys) == {0: keys}
    assert router.keys_from_source_keys([keys, keys]) == [{0: keys}, {0: keys}]
    assert router.keyed_elsewhere(keys) == ["Comments"]
    # Routing a whole item still makes every attribute, the templated ones too.
    item = {**keys, "kind": {"S": "post"}, "user_id": {"S": "9"}, "created_at": {"S": "t"}}
    routed = router.route(item).outputs[0]
    assert routed["gsi1pk"] == {"S": "USER#9"} and routed["createdAt"] == {"S": "t"}


@pytest.mark.parametrize("missing", [NoCredentialsError(), NoRegionError()])
def test_missing_credentials_or_region_are_not_retried_as_throttling(missing: Exception) -> None:
    sleeps: list[float] = []
    ddb = Scripted(then=missing)
    dynamo = Dynamo(ddb, no_wait(sleeps))
    with pytest.raises(type(missing)):
        dynamo.get([("T", {"pk": {"S": "k"}})])
    with pytest.raises(type(missing)):
        dynamo.write(writes(3))
    assert len(ddb.calls) == 2 and sleeps == []  # one call each, no backoff


class SharedClock:
    """A clock standing at 0 for threads taking from one budget together."""

    def __init__(self) -> None:
        self.slept: list[float] = []
        self._lock = threading.Lock()

    def __call__(self) -> float:
        return 0.0

    def sleep(self, s: float) -> None:
        with self._lock:
            self.slept.append(s)


def test_the_budget_holds_the_rate_across_threads() -> None:
    """8 threads take 5 units 1,000 times each at 10 units/s, all at the same instant: each take
    reserves its place, so the waits are 0, 0 (the first second's worth), then 0.5 s more for
    every take after, the last 3,999 s out: 40,000 units in 4,000 s, whatever the interleaving."""
    clock = SharedClock()
    budget = Budget(10, clock=clock, sleep=clock.sleep)
    start = threading.Barrier(8)

    def writer() -> None:
        start.wait()
        for _ in range(1000):
            budget.take(5)

    threads = [threading.Thread(target=writer) for _ in range(8)]
    # Threads switch every microsecond instead of every 5 ms: without the budget's lock two
    # takes read the same bucket and one reservation is lost.
    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    try:
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    finally:
        sys.setswitchinterval(interval)
    assert sorted(clock.slept) == pytest.approx([0.5 * k for k in range(1, 7999)])
    assert budget.waited == pytest.approx(3999.0)  # wall time held back, not the sum of sleeps


def test_the_gate_runs_rounds_touching_one_item_in_input_order() -> None:
    gate = _Gate()
    a, b = ("T", "a"), ("T", "b")
    order: list[str] = []
    assert gate.take(TARGETS, 0, {a})

    def second() -> None:
        assert gate.take(TARGETS, 1, {a, b})  # holds b at once, waits for a
        order.append("1 writes")
        gate.leave(1)

    thread = threading.Thread(target=second)
    thread.start()
    # Round 2 may only take its items after round 1 has taken its own: when this returns,
    # round 1 holds b and waits for round 0 to leave a.
    assert gate.take(TARGETS, 2, {("T", "c")})
    gate.leave(2)
    assert order == []  # round 0 still holds a
    order.append("0 writes")
    gate.leave(0)
    thread.join()
    assert order == ["0 writes", "1 writes"]
    gate.stop(3)  # rounds after 3 stop before they write; 3 itself goes on
    assert gate.take(TARGETS, 3, {a})
    gate.leave(3)
    assert not gate.take(TARGETS, 4, {b})
    gate.leave(4)


def test_a_round_reads_a_source_key_only_after_an_earlier_round_holding_it_wrote() -> None:
    """Round 1 holds source key k from its first step; round 2, with k too, waits at that step
    until round 1 leaves: it must not read k before round 1 has written what it read. Round 3,
    without k, takes both steps meanwhile, once round 2 has taken its turns (input order)."""
    gate = _Gate()
    k = ("Source", "k")
    assert gate.take(SOURCE, 1 - 1, set()) and gate.take(TARGETS, 0, set())
    gate.leave(0)
    assert gate.take(SOURCE, 1, {k})
    read: list[int] = []

    def round2() -> None:
        assert gate.take(SOURCE, 2, {k})
        read.append(2)
        assert gate.take(TARGETS, 2, set())
        gate.leave(2)

    thread = threading.Thread(target=round2)
    thread.start()
    while not _waiting(thread):
        threading.Event().wait(0.001)
    assert read == []  # round 1 still holds k
    assert gate.take(TARGETS, 1, {("Posts", "k")})
    gate.leave(1)
    thread.join(timeout=10)
    assert read == [2]
    assert gate.take(SOURCE, 3, {("Source", "other")}) and gate.take(TARGETS, 3, set())
    gate.leave(3)


def _waiting(thread: threading.Thread) -> bool:
    """Whether `thread` is blocked in a gate's wait (its frame stack shows wait_for)."""
    frame = sys._current_frames().get(thread.ident or 0)
    while frame is not None:
        if frame.f_code.co_name == "wait_for":
            return True
        frame = frame.f_back
    return False


def test_a_round_backing_off_holds_no_slot_for_its_wait() -> None:
    """One slot for two threads: while A waits out the backoff of its throttled call, B's call
    goes through. A's wait ends when B has been answered, so were A to keep the slot through
    its wait, B could not call and A's wait would time out."""
    b_answered = threading.Event()
    waits: list[bool] = []

    class Client:
        def batch_write_item(self, **kw: Any) -> dict[str, Any]:
            if sent(kw) == ["a"] and not waits:
                raise error("ThrottlingException")
            if sent(kw) == ["b"]:
                b_answered.set()
            return {}

    ddb = Client()
    policy = RetryPolicy(sleep=lambda s: waits.append(b_answered.wait(10)), random=lambda: 1.0)
    dynamo = Dynamo(ddb, policy, slots=1)
    a = [Write("T", {"pk": {"S": "a"}}, {"pk": {"S": "a"}}, 1)]
    b = [Write("T", {"pk": {"S": "b"}}, {"pk": {"S": "b"}}, 1)]
    first = threading.Thread(target=lambda: dynamo.write(a))
    first.start()
    while not dynamo.stats.calls:  # A's call (throttled) has been made: now B
        threading.Event().wait(0.001)
    assert dynamo.write(b) == []
    first.join()
    assert waits == [True]
    assert dynamo.stats.most_in_flight == 1


@pytest.mark.parametrize(
    ("value", "message"), [("0", "0: must be at least 1"), ("257", "257: at most 256")]
)
def test_concurrency_out_of_range_is_one_line_and_exit_2(value: str, message: str) -> None:
    args = ["--keys", "k.jsonl", "--source-table", "A", "--concurrency", value]
    r = run_cli(dict(os.environ), "sync", "nowhere.toml", *args)
    assert r.returncode == 2, r.stdout + r.stderr
    assert message in r.stderr and "Traceback" not in r.stderr, r.stderr


def test_a_signature_out_of_date_says_to_check_the_clock() -> None:
    """DynamoDB refuses a request signed more than 5 minutes off its clock with
    InvalidSignatureException "Signature expired": the run stops (every call would be refused)
    and says it is the machine's clock, quoting DynamoDB; other refusals keep its message."""
    expired = ClientError(
        {
            "Error": {
                "Code": "InvalidSignatureException",
                "Message": "Signature expired: 20261207T000000Z is now earlier than "
                "20261207T000500Z (20261207T001000Z - 5 min.)",
            },
            "ResponseMetadata": {"HTTPStatusCode": 400},
        },
        "BatchGetItem",
    )
    dynamo = Dynamo(Scripted(then=expired), no_wait([]))
    with pytest.raises(InputError, match=r"check this machine's clock.*") as e:
        dynamo.get([("T", {"pk": {"S": "k"}})])
    assert "Signature expired: 20261207T000000Z" in str(e.value)
    dynamo = Dynamo(Scripted(then=error("UnrecognizedClientException")), no_wait([]))
    with pytest.raises(InputError, match=r"UnrecognizedClientException: UnrecognizedClient"):
        dynamo.get([("T", {"pk": {"S": "k"}})])


def test_an_unreachable_endpoint_is_named_not_called_throttling(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Nothing listens on port 1: every call is a refused connection, which is retried as a
    # dropped one. The line after the retries must say that, not "throttled".
    from ddbshard.catchup.dynamo import client

    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:1")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    dynamo = Dynamo(client("us-east-1"), RetryPolicy(max_attempts=2, sleep=lambda s: None))
    with pytest.raises(InputError) as e:
        dynamo.key_schema("Feed")
    assert "throttled" not in str(e.value)
    assert "127.0.0.1:1" in str(e.value) and "after 2 attempts" in str(e.value)


@pytest.mark.parametrize("concurrency", [1, 4])
def test_the_collector_is_quieted_for_a_run_and_its_settings_restored_after(
    concurrency: int,
) -> None:
    """During a run the collector's young passes are rare (and what was alive before is
    frozen); after it, also one that failed, the process's own settings are back."""
    before = gc.get_threshold()
    seen: list[tuple[tuple[int, ...], int]] = []

    def gone(kw: dict[str, Any]) -> dict[str, Any]:
        seen.append((gc.get_threshold(), gc.get_freeze_count()))
        return {"Responses": {}, "UnprocessedKeys": {}}

    keys = {"pk": {"S": "u1"}, "sk": {"S": "s1"}}
    entries = [KeyEntry(keys, canonical(keys))]

    def run(ddb: Scripted) -> None:
        dynamo = Dynamo(ddb, no_wait())
        SyncRun(
            Router(parse_config(CONFIG)), dynamo, "S", ("pk", "sk"), concurrency=concurrency
        ).run(entries)

    run(Scripted(then=gone))
    assert seen and all(t[0] >= 50_000 and t[1:] == before[1:] and n > 0 for t, n in seen)
    assert gc.get_threshold() == before and gc.get_freeze_count() == 0
    with pytest.raises(RuntimeError):
        run(Scripted(RuntimeError("the client failed")))
    assert gc.get_threshold() == before and gc.get_freeze_count() == 0
