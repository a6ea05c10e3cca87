"""BatchGetItem and BatchWriteItem the way a catch-up must use them: every request either applied
or reported, within DynamoDB's limits, at a chosen write rate.

AWS's own rules, which shape everything here (AWS-FORMATS.md §6):

- BatchGetItem takes at most 100 keys per call and may return some of them in UnprocessedKeys;
  BatchWriteItem takes at most 25 put/delete requests and may return some in UnprocessedItems.
  The SDK retries neither: ignoring them is how other tools lose writes silently.
- When nothing at all can be processed the call fails with ProvisionedThroughputExceeded or
  ThrottlingException. AWS asks for exponential backoff (50 ms, 100 ms, 200 ms, ... stopping after
  about a minute) with jitter when several clients retry at once.
- One batch may not name the same item twice, and a ValidationException rejects the whole batch.

So botocore's own retries are off (it would retry throttled calls out of sight and count them
against nothing); every call goes through `Dynamo._call`, which retries throttling, 5xx and
dropped connections with full-jitter backoff. A request that is still unprocessed after
`RetryPolicy.max_attempts` comes back to the caller as failed, never dropped. Puts and deletes
are idempotent, so resending one whose answer was lost is safe.

One `Dynamo` serves many threads at once (sync's rounds in flight): boto3 clients are
thread-safe, the counters and the write budget take a lock, `slots` bounds the calls in flight
(a thread waits for a slot only around the call itself, never through a backoff or a budget
wait), and `stopping` makes every loop give back what it has not sent yet instead of calling.
"""

from __future__ import annotations

import os
import random
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from ddbshard.catchup.wire import canonical, item_from_client, item_to_client, key_of
from ddbshard.catchup.wireclient import WireClient
from ddbshard.exceptions import InputError
from ddbshard.io.storage import aws_setup_problem
from ddbshard.limits import MAX_BATCH_GET, MAX_BATCH_WRITE

__all__ = ["MAX_GET", "MAX_WRITE", "Budget", "Dynamo", "RetryPolicy", "Write", "client"]

MAX_GET = MAX_BATCH_GET
MAX_WRITE = MAX_BATCH_WRITE

_THROTTLED = frozenset(
    {
        "ProvisionedThroughputExceededException",
        "ThrottlingException",
        "RequestLimitExceeded",
        "TransactionConflictException",  # an item in a running transaction: retry later
    }
)
_SERVER = frozenset({"InternalServerError", "ServiceUnavailable", "InternalFailure"})
# DynamoDB's answers when the credentials themselves are refused (expired, unknown, bad).
_REFUSED_CREDENTIALS = {
    "ExpiredTokenException",
    "UnrecognizedClientException",
    "InvalidSignatureException",
    "MissingAuthenticationTokenException",
}
# A 4xx whose body is not DynamoDB's JSON (the code is then the status) comes from something
# between here and DynamoDB: a proxy, a firewall, a captive portal. One such answer may be a
# filter refusing one item's content, and only that key fails; this many in a row, with no
# call answered in between, is everything refused, and the run stops instead of failing
# every key one call at a time.
FOREIGN_REFUSALS = 8


def client(region: str | None = None, connections: int = 10) -> Any:
    """A low-level DynamoDB client with botocore's retries off (see the module docstring),
    keeping up to `connections` connections open (one per thread that calls at once). Its
    BatchGetItem and BatchWriteItem speak wire form (wireclient.py); the rest is boto3's.

    botocore's check of every request against the API model is off too: it took about a sixth
    of sync's CPU time, which bounds how fast rounds in flight go, and the requests are built
    here in one shape; a request DynamoDB refuses comes back as ValidationException, which
    `Dynamo.write` isolates to the request at fault."""
    import boto3
    from botocore.config import Config

    region = region or os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION")
    config = Config(
        retries={"total_max_attempts": 1},
        connect_timeout=10,
        read_timeout=60,
        max_pool_connections=max(10, connections),
        parameter_validation=False,
    )
    session = boto3.session.Session()
    boto = session.client("dynamodb", region_name=region, config=config)
    # The credentials the client resolved (botocore keeps them on the session): None if none.
    return WireClient(boto, session.get_credentials())


@dataclass(frozen=True)
class RetryPolicy:
    # 12 attempts of full-jitter backoff from 50 ms doubling to a 10 s cap wait up to ~55 s in
    # all: AWS's "stop after about one minute".
    max_attempts: int = 12
    base: float = 0.05
    cap: float = 10.0
    sleep: Callable[[float], None] = time.sleep
    random: Callable[[], float] = random.random

    def backoff(self, attempts: int) -> None:
        """Waits before trying a request again that has failed `attempts` (>= 1) times."""
        self.sleep(self.random() * min(self.cap, self.base * 2 ** (attempts - 1)))


class Budget:
    """A token bucket of capacity units per second (`--max-wcu`; `--max-rcu` through
    compare/readbudget.py), shared by every thread.

    Starts with one second's worth. `take` reserves the units at once (the bucket may go into
    debt) and then sleeps, outside the lock, until the debt it is part of is paid: threads that
    take at the same moment are served one after another, each waiting for the units reserved
    before it, so the long-run rate holds however many threads write and whatever the batch
    size. `charge` takes more when DynamoDB reports more consumed capacity than was estimated
    (GSI writes, for instance). `waited` is wall time the bucket held writers back (how far
    the debt reached beyond the moment it was taken), not the sum of every thread's sleeps.
    """

    def __init__(
        self,
        per_second: float,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if per_second <= 0:
            raise ValueError("a capacity budget must be positive")
        self.rate = per_second
        self.tokens = per_second
        self.clock = clock
        self.sleep = sleep
        self.last = clock()
        self.waited = 0.0
        self._lock = threading.Lock()

    def take(self, units: float) -> None:
        with self._lock:
            wait = self._spend(units)
        if wait > 0:
            self.sleep(wait)

    def charge(self, units: float) -> None:
        with self._lock:
            self._spend(units)

    def _spend(self, units: float) -> float:
        """Takes `units` now; returns how long until the bucket is out of debt again."""
        now = self.clock()
        self.tokens = min(self.rate, self.tokens + (now - self.last) * self.rate)
        self.last = now
        owed = max(0.0, -self.tokens / self.rate)
        self.tokens -= units
        wait = max(0.0, -self.tokens / self.rate)
        self.waited += wait - owed
        return wait


@dataclass
class Write:
    """One put or delete, with what the caller needs to find it again."""

    table: str
    put: dict[str, Any] | None  # the item (wire JSON) for a put
    key: dict[str, Any]  # the item's key (wire JSON)
    units: int  # estimated write capacity units (0 when no budget needs them)
    tag: Any = None  # the caller's: which entry this write belongs to
    attempts: int = 0
    alone: bool = False  # send in a call of its own (to find which request a batch refused)
    key_id: str = ""  # canonical(key): made here unless the caller has it already

    def __post_init__(self) -> None:
        if not self.key_id:
            self.key_id = canonical(self.key)

    def request(self, to_client: Callable[[dict[str, Any]], dict[str, Any]]) -> dict[str, Any]:
        if self.put is not None:
            return {"PutRequest": {"Item": to_client(self.put)}}
        return {"DeleteRequest": {"Key": to_client(self.key)}}


@dataclass
class Stats:
    calls: int = 0
    retried: int = 0  # requests sent again (unprocessed, throttled, failed connection)
    largest_write_call: int = 0
    units_reported: float = 0.0
    in_flight: int = 0  # calls under way now
    most_in_flight: int = 0  # the most calls that were ever under way at once


INTERRUPTED = "interrupted before it was sent (the run was stopped)"


class Dynamo:
    def __init__(
        self,
        ddb: Any,
        policy: RetryPolicy | None = None,
        budget: Budget | None = None,
        slots: int | None = None,
    ):
        self.ddb = ddb
        # A client that speaks wire form (WireClient) takes and returns items as they are here;
        # boto3's own (and the tests' fakes) want B as bytes.
        wire = getattr(ddb, "wire_form", False) is True
        self._to_client = _same if wire else item_to_client
        self._from_client = _same if wire else item_from_client
        self.policy = policy or RetryPolicy()
        self.budget = budget
        self.stats = Stats()
        self._lock = threading.Lock()  # the stats
        self.slots: threading.Semaphore | None = None
        self.limit(slots)
        self.stopping = threading.Event()
        self._foreign = 0  # calls refused in a row by something that is not DynamoDB
        # Why this thread's last call is to be retried: the line after the last retry says
        # it (a refused connection is not throttling, and no lower rate would help it).
        self._retry_why = threading.local()

    def limit(self, slots: int | None) -> None:
        """At most `slots` calls under way at once, from all threads (None: no bound)."""
        self.slots = threading.BoundedSemaphore(slots) if slots is not None else None

    def _count(self, retried: int = 0, write_call: int = 0, units: float = 0.0) -> None:
        with self._lock:
            self.stats.retried += retried
            self.stats.largest_write_call = max(self.stats.largest_write_call, write_call)
            self.stats.units_reported += units

    def key_schema(self, table: str) -> tuple[tuple[str, str], ...]:
        """((name, type) of the hash key[, of the range key]) of a table, from DescribeTable;
        InputError if the table is missing."""
        described = self._call("describe_table", TableName=table)["Table"]
        types = {a["AttributeName"]: a["AttributeType"] for a in described["AttributeDefinitions"]}
        ordered = sorted(described["KeySchema"], key=lambda k: k["KeyType"] != "HASH")
        return tuple((k["AttributeName"], types[k["AttributeName"]]) for k in ordered)

    def get(
        self, requests: Iterable[tuple[str, dict[str, Any]]], ids: Iterable[str] | None = None
    ) -> tuple[dict[tuple[str, str], dict[str, Any]], list[tuple[str, dict[str, Any], str]]]:
        """Consistent reads of (table, key) pairs: found items by (table, canonical key), and
        the pairs that could not be read with the reason. Items not found are in neither.
        `ids`: each key's canonical text, when the caller has it already."""
        # -> [table, key, attempts, alone]: `alone` once a batch holding the key was refused
        pending: dict[tuple[str, str], list[Any]] = {}
        known = iter(ids) if ids is not None else None
        for table, key in requests:
            text = next(known) if known is not None else canonical(key)
            pending.setdefault((table, text), [table, key, 0, False])
        found: dict[tuple[str, str], dict[str, Any]] = {}
        failed: list[tuple[str, dict[str, Any], str]] = []
        while pending:
            if self.stopping.is_set():
                failed.extend((table, key, INTERRUPTED) for table, key, *_ in pending.values())
                break
            lone = next((item for item in pending.items() if item[1][3]), None)
            batch = [lone] if lone is not None else list(pending.items())[:MAX_GET]
            tables: dict[str, list[dict[str, Any]]] = {}
            for (table, _), (_, key, *_) in batch:
                tables.setdefault(table, []).append(self._to_client(key))
            call = {t: {"Keys": keys, "ConsistentRead": True} for t, keys in tables.items()}
            answer = self._try("batch_get_item", RequestItems=call)
            if isinstance(answer, str):
                if len(batch) > 1:
                    # DynamoDB refuses the whole call for one bad key (a wrong type, say): ask
                    # for each key alone, so that only the bad one fails, as `write` does.
                    for _, entry in batch:
                        entry[3] = True
                    continue
                for ident, (table, key, *_) in batch:
                    del pending[ident]
                    failed.append((table, key, answer))
                continue
            if answer is None:
                unprocessed = [ident for ident, _ in batch]
            else:
                names = {t: tuple(keys[0]) for t, keys in tables.items()}
                from_client = self._from_client
                for table, items in answer.get("Responses", {}).items():
                    key_names = names[table]
                    for item in items:
                        wire = from_client(item)
                        ident = (table, canonical(key_of(wire, key_names)))
                        found[ident] = wire
                        pending.pop(ident, None)
                unprocessed = [
                    (table, canonical(self._from_client(k)))
                    for table, rest in answer.get("UnprocessedKeys", {}).items()
                    for k in rest.get("Keys", [])
                ]
                for ident, _ in batch:
                    if ident not in unprocessed:
                        pending.pop(ident, None)  # answered: found above, or no such item
            attempts = 0
            for ident in unprocessed:
                entry = pending[ident]
                entry[2] += 1
                attempts = max(attempts, entry[2])
                self._count(retried=1)
                if entry[2] >= self.policy.max_attempts:
                    del pending[ident]
                    failed.append((entry[0], entry[1], f"unread after {entry[2]} attempts"))
            if attempts and pending:
                self.policy.backoff(attempts)
        return found, failed

    def write(self, writes: list[Write]) -> list[tuple[Write, str]]:
        """Applies every write; returns those that could not be applied, with the reason."""
        queue = list(writes)
        failed: list[tuple[Write, str]] = []
        limit = MAX_WRITE
        if self.budget is not None:
            # A batch may not ask for more than a second's budget at once (but one write always).
            limit = max(1, min(MAX_WRITE, int(self.budget.rate)))
        while queue:
            if self.stopping.is_set():
                failed.extend((w, INTERRUPTED) for w in queue)
                break
            batch, queue = _take_batch(queue, limit)
            if self.budget is not None:
                self.budget.take(sum(w.units for w in batch))
            items: dict[str, list[dict[str, Any]]] = {}
            for w in batch:
                items.setdefault(w.table, []).append(w.request(self._to_client))
            self._count(write_call=len(batch))
            answer = self._try(
                "batch_write_item", RequestItems=items, ReturnConsumedCapacity="TOTAL"
            )
            if isinstance(answer, str):  # refused for good: isolate the request at fault
                if len(batch) > 1:
                    for w in batch:
                        w.alone = True
                    queue = batch + queue
                else:
                    failed.append((batch[0], answer))
                continue
            retry = batch if answer is None else _unprocessed(batch, answer, self._from_client)
            if answer is not None:
                self._charge(batch, answer, retry)
            self._count(retried=len(retry))
            for w in retry:
                w.attempts += 1
                if w.attempts >= self.policy.max_attempts:
                    failed.append((w, f"unprocessed after {w.attempts} attempts (throttled)"))
                else:
                    queue.append(w)
            if retry and queue:
                # Back off by how often these requests were refused: DynamoDB is asking for a
                # slower pace, and a request's wait grows until it gives up.
                self.policy.backoff(max(w.attempts for w in retry))
        return failed

    def _charge(self, batch: list[Write], answer: dict[str, Any], retry: list[Write]) -> None:
        reported = sum(c.get("CapacityUnits", 0.0) for c in answer.get("ConsumedCapacity", []))
        self._count(units=reported)
        if self.budget is not None:
            # The estimate was taken before the call; only ever take more (a GSI write costs
            # extra), never hand back: an estimate too low must not let the rate creep up.
            again = {id(w) for w in retry}
            estimated = sum(w.units for w in batch if id(w) not in again)
            if reported > estimated:
                self.budget.charge(reported - estimated)

    def _try(self, op: str, **kwargs: Any) -> dict[str, Any] | str | None:
        """One call: the answer; None when it should be retried (throttled, 5xx, connection);
        the error text when no retry can help. A missing table or no access stops the run."""
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            answer: dict[str, Any] = self._send(op, kwargs)
            self._foreign = 0
            return answer
        except ClientError as e:
            code = e.response.get("Error", {}).get("Code", "")
            status = e.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0)
            if code in _THROTTLED or code in _SERVER or status >= 500:
                self._retry_why.last = f"{code or 'HTTP ' + str(status)}"
                return None
            message = e.response.get("Error", {}).get("Message", "")
            if code == str(status):
                self._refused_by_foreign(op, status, message)
            else:
                self._foreign = 0  # DynamoDB answered
            if code in ("ResourceNotFoundException", "AccessDeniedException"):
                raise InputError(f"{op}: {code}: {message}") from e
            if code in _REFUSED_CREDENTIALS:
                # Every other key would be refused alike: stop, rather than fail them all.
                if "Signature expired" in message or "not yet current" in message:
                    # A signature dated too far from AWS's clock: the machine's clock is off.
                    raise InputError(
                        f"AWS refused the request's signature as out of date ({message}): "
                        "check this machine's clock (it must be within 5 minutes of AWS's)"
                    ) from e
                raise InputError(
                    f"AWS refused the credentials ({code}: {' '.join(message.split())[:200]}): "
                    "renew or fix them, then run again"
                ) from e
            return f"{code}: {message}"
        except BotoCoreError as e:
            if aws_setup_problem(e) is not None:
                raise  # no retry supplies missing configuration: the command says what to set
            self._retry_why.last = str(e)
            return None  # dropped connection, timeout: the request may be sent again

    def retry_reason(self) -> str:
        """Why this thread's last call was to be retried (an error code, a status, or
        botocore's words for a connection that failed)."""
        return str(getattr(self._retry_why, "last", "unknown"))

    def throttled_last(self) -> bool:
        """Whether this thread's last retried call was throttled (a lower rate may help)."""
        return self.retry_reason() in _THROTTLED

    def _refused_by_foreign(self, op: str, status: int, message: str) -> None:
        with self._lock:
            self._foreign += 1
            streak = self._foreign
        if streak >= FOREIGN_REFUSALS:
            raise InputError(
                f"{op}: {streak} calls in a row were refused with HTTP {status} by something "
                f"that is not DynamoDB ({message[:120]}): a proxy or firewall in the way? fix "
                "it, then run again"
            )

    def _send(self, op: str, kwargs: dict[str, Any]) -> Any:
        """The call itself, in one of the slots."""
        if self.slots is not None:
            self.slots.acquire()
        with self._lock:
            self.stats.calls += 1
            self.stats.in_flight += 1
            self.stats.most_in_flight = max(self.stats.most_in_flight, self.stats.in_flight)
        try:
            return getattr(self.ddb, op)(**kwargs)
        finally:
            with self._lock:
                self.stats.in_flight -= 1
            if self.slots is not None:
                self.slots.release()

    def _call(self, op: str, **kwargs: Any) -> dict[str, Any]:
        """A single-item call (DescribeTable) with the same retries; InputError if it fails."""
        for attempt in range(1, self.policy.max_attempts + 1):
            answer = self._try(op, **kwargs)
            if isinstance(answer, dict):
                return answer
            if isinstance(answer, str):
                raise InputError(f"{op} {_args(kwargs)}: {answer}")
            self.policy.backoff(attempt)
        raise InputError(
            f"{op} {_args(kwargs)}: still failing after {self.policy.max_attempts} attempts "
            f"(the last: {self.retry_reason()})"
        )


def _args(kwargs: dict[str, Any]) -> str:
    return " ".join(f"{k}={v}" for k, v in kwargs.items())


def _take_batch(queue: list[Write], limit: int) -> tuple[list[Write], list[Write]]:
    """Up to `limit` writes naming no item twice (DynamoDB refuses such a batch); a write that
    must go alone goes alone. Order is kept, so of two writes to one item the first goes first."""
    if queue[0].alone:
        return [queue[0]], queue[1:]
    batch: list[Write] = []
    rest: list[Write] = []
    seen: set[tuple[str, str]] = set()
    blocked: set[tuple[str, str]] = set()
    for w in queue:
        ident = (w.table, w.key_id)
        if len(batch) < limit and not w.alone and ident not in seen and ident not in blocked:
            batch.append(w)
            seen.add(ident)
        else:
            rest.append(w)
            blocked.add(ident)  # a later write to this item must not overtake this one
    return batch, rest


def _same(item: dict[str, Any]) -> dict[str, Any]:
    return item


def _unprocessed(
    batch: list[Write],
    answer: dict[str, Any],
    from_client: Callable[[dict[str, Any]], dict[str, Any]],
) -> list[Write]:
    by_ident = {(w.table, w.key_id): w for w in batch}
    back: list[Write] = []
    for table, requests in answer.get("UnprocessedItems", {}).items():
        for request in requests:
            if "PutRequest" in request:
                item = from_client(request["PutRequest"]["Item"])
            else:
                item = from_client(request["DeleteRequest"]["Key"])
            for (t, _), w in by_ident.items():
                if t == table and canonical(key_of(item, tuple(w.key))) == w.key_id:
                    back.append(w)
                    break
    return back
