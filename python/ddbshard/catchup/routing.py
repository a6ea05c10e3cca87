"""Where one item goes under a config, decided by the same native Splitter that `split` runs.

`sync` must write exactly what `split` would have written, so it does not reimplement routing,
conditions or transforms: it feeds items to a `ddbshard._core.Splitter` built from the config
(one shard per target, no compression) and reads back what comes out.

`route` feeds one item in a cycle of its own (`begin_file`, `feed`, `end_file`, `drain`,
`take_rejects`), which ties every output and reject to the item that caused it, whatever the
route ("first" or "all") and the unmatched policy. A cycle costs about 30 µs of CPU, and with
rounds in flight sync is CPU bound, so `route_many` routes a round's items in one cycle per
target instead, through one Splitter per target (unmatched "reject"): there, every line has
exactly one outcome, an output line or one reject record naming the line, so the outputs, in
line order, belong to the lines without a record. From each target's outcome the item's own
follows: under route "all" the outputs and refusals of the targets it matches, under "first"
those of the first target it matches; matching none is one "unmatched" record, and a line the
parser refuses is refused alike by every target. Should the counts ever not add up to one
outcome per line, the batch is routed item by item instead.

A second Splitter has every target's condition removed and route "all": fed an item made of the
source key attributes only, it yields each target's key for targets whose key is built from
those attributes alone (kept, renamed, or set by a template over them); a target whose key needs
any other attribute rejects that item (missing key, or a template naming a missing attribute).
That is how `sync` finds an old copy without knowing the item's old state. Every target takes
every line there, so it too gives one outcome per line and target, and `keys_from_source_keys`
feeds a round's keys in one cycle.

A Splitter is one stateful stream (a cycle must not interleave with another), so each has a
lock: sync's rounds route from several threads, one item at a time per Splitter.
"""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass, field
from typing import Any

from ddbshard._core import Splitter
from ddbshard.catchup.wire import key_of, wire_json
from ddbshard.config import SplitConfig, TargetConfig, build_core_spec

__all__ = ["Reject", "Routed", "Router", "TargetInfo"]


@dataclass(frozen=True)
class TargetInfo:
    name: str  # the config's target name
    table: str  # the DynamoDB table it is written to
    key: tuple[str, ...]  # (hash,) or (hash, range) of the output item
    types: tuple[str, ...]  # S, N or B of each key attribute, as the config declares them


@dataclass(frozen=True)
class Reject:
    target: str | None  # None: the item matched no target
    reason: str  # the core's stable reason code (unmatched, missing_key, item_too_large, ...)
    message: str
    line: int | None = field(default=None, compare=False)  # which line of the cycle


@dataclass
class Routed:
    outputs: dict[int, dict[str, Any]] = field(default_factory=dict)  # target index -> item
    rejects: list[Reject] = field(default_factory=list)

    @property
    def unmatched(self) -> bool:
        return any(r.reason == "unmatched" for r in self.rejects)


class Router:
    def __init__(self, config: SplitConfig) -> None:
        shards = {t.name: 1 for t in config.targets}
        # Always get a record for an unmatched item; the config's policy is applied by the
        # caller (a Splitter with "error" would raise in the middle of a batch).
        self._route = Splitter(
            build_core_spec(config, shards, compression="none", unmatched="reject")
        )
        # Every target's output for any item: its key, made from the source key alone.
        self._by_key = Splitter(
            build_core_spec(
                config, shards, compression="none", unmatched="drop", route="all", every_item=True
            )
        )
        # One target each, for route_many: one outcome per line (see the module docstring).
        self._each = [
            Splitter(
                build_core_spec(
                    config, shards, compression="none", unmatched="reject", only=[t.name]
                )
            )
            for t in config.targets
        ]
        self._route_lock = threading.Lock()
        self._by_key_lock = threading.Lock()
        self._each_lock = threading.Lock()
        self.targets = tuple(_info(t) for t in config.targets)
        self._index = {t.name: i for i, t in enumerate(config.targets)}
        self.first = config.output.route == "first"
        self.policy = config.output.unmatched

    def route(self, item: dict[str, Any]) -> Routed:
        """The item's output in every target it goes to, and why it goes nowhere else."""
        with self._route_lock:
            outputs, rejects = _cycle(self._route, item)
        return Routed(outputs, rejects)

    def route_many(self, items: list[dict[str, Any]]) -> list[Routed]:
        """`route` of each item, in one Splitter cycle per target."""
        if len(items) < 2:
            return [self.route(item) for item in items]
        lines = [_line(item) for item in items]
        with self._each_lock:
            each = [_outcomes(s, lines) for s in self._each]
        if any(o is None for o in each):
            return [self.route(item) for item in items]  # never seen: the tie did not hold
        return [self._combine([o[i] for o in each if o is not None]) for i in range(len(items))]

    def _combine(self, outcomes: list[dict[str, Any] | Reject]) -> Routed:
        """An item's routing from its outcome in each target's own Splitter."""
        first = outcomes[0]
        if isinstance(first, Reject) and first.target is None and first.reason != "unmatched":
            return Routed({}, [first])  # refused by the parser: by every target alike
        routed = Routed()
        for t, outcome in enumerate(outcomes):
            if isinstance(outcome, Reject):
                if outcome.target is None:
                    continue  # this target's condition does not match
                routed.rejects.append(outcome)
            else:
                routed.outputs[t] = outcome["Item"]
            if self.first:
                return routed  # the first target it matches takes it
        if not routed.outputs and not routed.rejects and isinstance(first, Reject):
            routed.rejects.append(first)  # matches no target: the record worded alike
        return routed

    def keys_from_source_keys(self, keys: list[dict[str, Any]]) -> list[dict[int, dict[str, Any]]]:
        """`keys_from_source_key` of each source key, in one Splitter cycle."""
        if len(keys) < 2:
            return [self.keys_from_source_key(k) for k in keys]
        with self._by_key_lock:
            made = _outcomes_by_target(self._by_key, [_line(k) for k in keys], self._index)
        if made is None:
            return [self.keys_from_source_key(k) for k in keys]
        out: list[dict[int, dict[str, Any]]] = [{} for _ in keys]
        for t, per_line in made.items():
            names = self.targets[t].key
            for i, line in enumerate(per_line):
                if line is not None:
                    out[i][t] = key_of(line["Item"], names)
        return out

    def keys_from_source_key(self, keys: dict[str, Any]) -> dict[int, dict[str, Any]]:
        """Target index -> target key, for targets whose key is made from the source key
        attributes alone, given the source key."""
        with self._by_key_lock:
            outputs, _ = _cycle(self._by_key, keys)
        return {t: key_of(item, self.targets[t].key) for t, item in outputs.items()}

    def target_key(self, target: int, item: dict[str, Any]) -> dict[str, Any]:
        return key_of(item, self.targets[target].key)

    def find(self, name: str) -> int | None:
        """The index of a target by its config name or its table name."""
        for i, t in enumerate(self.targets):
            if name in (t.name, t.table):
                return i
        return None

    def keyed_elsewhere(self, source_key: dict[str, Any]) -> list[str]:
        """Names of the targets whose key cannot be made from this source key alone."""
        derivable = self.keys_from_source_key(source_key)
        return [t.name for i, t in enumerate(self.targets) if i not in derivable]


def _info(t: TargetConfig) -> TargetInfo:
    key = (t.hash_key, *filter(None, [t.range_key]))
    return TargetInfo(t.name, t.table.table_name, key, tuple(t.key_types[k] for k in key))


def _line(item: dict[str, Any]) -> bytes:
    # ASCII JSON keeps lone surrogates as \u escapes, exactly as the item holds them.
    return b'{"Item":' + wire_json(item).encode() + b"}\n"


def _objects(data: bytes) -> list[dict[str, Any]]:
    """The JSON object of each line of `data`, in one json.loads: a round's output lines were
    a json.loads each, and their set-up cost as much as the parsing (a JSON line holds no raw
    newline, so the lines joined by commas are an array of them)."""
    lines = [x for x in data.split(b"\n") if x.strip()]
    if not lines:
        return []
    objects: list[dict[str, Any]] = json.loads(b"[" + b",".join(lines) + b"]")
    return objects


def _feed(
    splitter: Splitter, lines: list[bytes]
) -> tuple[dict[int, list[dict[str, Any]]], list[Reject]]:
    """One cycle: each target's output lines (parsed), in order, and the reject records."""
    splitter.begin_file("sync")
    splitter.feed(b"".join(lines))
    splitter.end_file()
    outputs: dict[int, list[dict[str, Any]]] = {}
    for target, _shard, data in splitter.drain():
        outputs.setdefault(target, []).extend(_objects(data))
    rejects = [
        Reject(r.get("target"), r.get("reason", ""), r.get("message", ""), r.get("line"))
        for r in (json.loads(x) for x in splitter.take_rejects().split(b"\n") if x.strip())
    ]
    return outputs, rejects


def _outcomes(splitter: Splitter, lines: list[bytes]) -> list[dict[str, Any] | Reject] | None:
    """Each line's one outcome in a one-target Splitter: its output line (parsed) or its reject
    record;
    None if the outcomes are not one per line."""
    outputs, rejects = _feed(splitter, lines)
    by_line = {r.line: r for r in rejects}
    written = outputs.get(0, [])
    if len(by_line) != len(rejects) or len(written) + len(rejects) != len(lines):
        return None
    if not all(isinstance(n, int) and 1 <= n <= len(lines) for n in by_line):
        return None
    out = iter(written)
    return [by_line[n] if n in by_line else next(out) for n in range(1, len(lines) + 1)]


def _outcomes_by_target(
    splitter: Splitter, lines: list[bytes], index: dict[str, int]
) -> dict[int, list[dict[str, Any] | None]] | None:
    """Per target, each line's output line, parsed (None: refused), in a Splitter every target
    of which takes every line; None if the outcomes are not one per line and target."""
    outputs, rejects = _feed(splitter, lines)
    refused: dict[int, set[int]] = {t: set() for t in index.values()}
    for r in rejects:
        if not isinstance(r.line, int) or not 1 <= r.line <= len(lines):
            return None
        if r.target is None:  # refused by the parser: no target has it
            for lines_out in refused.values():
                lines_out.add(r.line)
        elif r.target in index:
            refused[index[r.target]].add(r.line)
        else:
            return None
    made: dict[int, list[dict[str, Any] | None]] = {}
    for t, out in refused.items():
        written = outputs.get(t, [])
        if len(written) + len(out) != len(lines):
            return None
        it = iter(written)
        made[t] = [None if n in out else next(it) for n in range(1, len(lines) + 1)]
    return made


def _cycle(splitter: Splitter, item: dict[str, Any]) -> tuple[dict[int, Any], list[Reject]]:
    splitter.begin_file("sync")
    splitter.feed(_line(item))
    splitter.end_file()
    outputs: dict[int, Any] = {}
    for target, _shard, data in splitter.drain():
        for line in _objects(data):
            outputs[target] = line["Item"]
    rejects = [
        Reject(r.get("target"), r.get("reason", ""), r.get("message", ""), r.get("line"))
        for r in (json.loads(x) for x in splitter.take_rejects().split(b"\n") if x.strip())
    ]
    return outputs, rejects
