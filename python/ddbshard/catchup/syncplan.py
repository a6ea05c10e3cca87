"""What sync does for one key: which target items to put, which old copies to delete.

For a source key with its current item (or none) the plan is, per target T:

- the item's output for T, if routing sends it there: put it, unless T already holds exactly
  that item (compared as DynamoDB compares: numbers by value, sets unordered), which counts as
  unchanged and costs no write;
- every other place a copy of the item may sit in T: delete it if T has an item there. Those
  places are the item's T key computed from its old image (the `OldImage` of the keys file,
  routed with the config: only if the old state went to T), and its T key computed from the
  source key alone, for targets whose key is built from key attributes only.

Reading T before writing is what makes "unchanged" and "deleted" counts exact and spares the
writes (a strongly consistent read of up to 4 KB costs one read unit, a write one write unit per
KB). When a target read fails after its retries, the plan falls back to writing blind: a put
and a delete are idempotent, so the result is the same, only the counts are less exact.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ddbshard.catchup.keysfile import KeyEntry
from ddbshard.catchup.routing import Reject, Routed, Router
from ddbshard.catchup.wire import canonical, item_size, write_units

__all__ = [
    "EntryPlan",
    "Read",
    "Routes",
    "decide",
    "describe",
    "plan_source",
    "plan_target_line",
    "reads",
    "route_round",
]


Read = tuple[str, dict[str, Any], str]  # a target item to read: table, key, canonical key


@dataclass
class EntryPlan:
    index: int  # the entry's position in this round
    entry: KeyEntry
    exists: bool = False  # the source item exists now
    new: dict[int, dict[str, Any]] = field(default_factory=dict)  # target -> output item
    old_keys: dict[int, list[dict[str, Any]]] = field(default_factory=dict)  # target -> keys
    rejects: list[Reject] = field(default_factory=list)
    problem: str | None = None  # why this entry cannot be synced now (it goes to failed keys)
    # (target, item, key, canonical key) and (target, key, write units, canonical key)
    puts: list[tuple[int, dict[str, Any], dict[str, Any], str]] = field(default_factory=list)
    deletes: list[tuple[int, dict[str, Any], int, str]] = field(default_factory=list)
    unchanged: list[int] = field(default_factory=list)  # targets already holding the output
    wanted: list[Read] | None = None  # `reads`, made once


@dataclass
class Routes:
    """What `plan_source` needs of the router for one key, when `route_round` found it."""

    current: Routed | None = None  # the current item's routing
    by_key: dict[int, dict[str, Any]] | None = None  # keys_from_source_key of the source key
    old: Routed | None = None  # the old image's routing


def route_round(router: Router, pairs: list[tuple[KeyEntry, Any]]) -> list[Routes]:
    """The routing `plan_source` needs for each (entry, current item) of a round, in a few
    Splitter cycles rather than two or three per key (sync is CPU bound with rounds in flight).
    Only source keys whose current item is known (a dict, or None when gone) are routed."""
    routes = [Routes() for _ in pairs]
    sources = [
        i for i, (e, now) in enumerate(pairs) if e.target is None and not isinstance(now, str)
    ]
    found = [i for i in sources if pairs[i][1] is not None]
    for i, routed in zip(found, router.route_many([pairs[i][1] for i in found]), strict=True):
        routes[i].current = routed
    keys = router.keys_from_source_keys([pairs[i][0].keys for i in sources])
    for i, by_key in zip(sources, keys, strict=True):
        routes[i].by_key = by_key
    olds = [(i, old) for i in sources if isinstance(old := pairs[i][0].old, dict)]
    old_routes = router.route_many([old for _, old in olds])
    for (i, _), routed in zip(olds, old_routes, strict=True):
        routes[i].old = routed
    return routes


def plan_source(
    router: Router, index: int, entry: KeyEntry, current: Any, routes: Routes | None = None
) -> EntryPlan:
    """The plan for a source key whose item is now `current` (None: it no longer exists);
    `routes`: its routing already done (route_round), else it is done here."""
    routes = routes or Routes()
    plan = EntryPlan(index, entry, exists=current is not None)
    if current is not None:
        routed = routes.current or router.route(current)
        plan.new, plan.rejects = routed.outputs, routed.rejects
    by_key = routes.by_key if routes.by_key is not None else router.keys_from_source_key(entry.keys)
    for t, key in by_key.items():
        plan.old_keys.setdefault(t, []).append(key)
    if isinstance(entry.old, dict):
        for t, item in (routes.old or router.route(entry.old)).outputs.items():
            plan.old_keys.setdefault(t, []).append(router.target_key(t, item))
    return plan


def plan_target_line(router: Router, index: int, entry: KeyEntry) -> EntryPlan:
    """The plan for a `Target` line: delete that item of that target if it is there."""
    plan = EntryPlan(index, entry)
    t = router.find(entry.target or "")
    if t is None:
        plan.problem = f"no target or table named {entry.target!r} in the config"
    elif tuple(sorted(entry.keys)) != tuple(sorted(router.targets[t].key)):
        plan.problem = (
            f"Keys name {', '.join(sorted(entry.keys))}, but {router.targets[t].table}'s key is "
            f"{', '.join(router.targets[t].key)}"
        )
    else:
        plan.old_keys[t] = [entry.keys]
    return plan


def reads(router: Router, plan: EntryPlan) -> list[Read]:
    """The target items the plan needs to see, (table, key, canonical key): where each output
    goes (in `new`'s order), then where copies may be (in `old_keys`' order). Made once per
    plan: a round needs them to hold its items, to read them, and to decide."""
    if plan.wanted is None:
        out: list[Read] = []
        for t, item in plan.new.items():
            key = router.target_key(t, item)
            out.append((router.targets[t].table, key, canonical(key)))
        for t, keys in plan.old_keys.items():
            table = router.targets[t].table
            for k in keys:
                # Most often the old copy's place is where the output goes (the key kept):
                # equal dicts have the same text, made once.
                same = next((r for r in out if r[1] == k and r[0] == table), None)
                out.append((table, k, same[2] if same is not None else canonical(k)))
        plan.wanted = out
    return plan.wanted


def decide(
    router: Router,
    plan: EntryPlan,
    actual: dict[tuple[str, str], dict[str, Any]],
    unread: set[tuple[str, str]],
    *,
    sized: bool = True,
) -> None:
    """Fills in the plan's puts, deletes and unchanged from what the targets hold (`actual`, by
    table and canonical key); `unread` are the (table, key) pairs that could not be read.
    `sized`: estimate each delete's write units (only a `--max-wcu` budget needs them; 0 else)."""
    wanted = reads(router, plan)
    kept: dict[int, str] = {}  # target -> the key its output goes to
    for (t, item), (table, key, ident) in zip(plan.new.items(), wanted, strict=False):
        kept[t] = ident
        have = actual.get((table, ident))
        # Equal dicts are the same item; unequal ones may still be (1.5 and 1.50, set order).
        if have is not None and (have == item or canonical(have) == canonical(item)):
            plan.unchanged.append(t)
        else:
            plan.puts.append((t, item, key, ident))
    old = iter(wanted[len(plan.new) :])
    for t, keys in plan.old_keys.items():
        keep = kept.get(t)
        seen: set[str] = set()
        for key, (table, _, ident) in zip(keys, old, strict=False):
            if ident == keep or ident in seen:
                continue
            seen.add(ident)
            have = actual.get((table, ident))
            if have is not None:
                plan.deletes.append((t, key, write_units(item_size(have)) if sized else 0, ident))
            elif (table, ident) in unread:
                plan.deletes.append((t, key, 1, ident))  # not known to be there: delete blind


def describe(plan: EntryPlan) -> str:
    """A few words on what happened to the source item, for the dry-run listing."""
    if plan.entry.target is not None:
        return "no source item produces it"
    if not plan.exists:
        return "gone from the source"
    # OldImage null says the item did not exist at the window's start, but records collected
    # from before the export say so of items the targets hold: a copy found means a change.
    return "inserted" if plan.entry.old is None and not plan.deletes else "changed"
