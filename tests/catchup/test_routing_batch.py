"""Routing a round's items in one Splitter cycle per target gives each item exactly what routing
it alone gives: outputs, refusals and "matches no target", under route "first" and "all"."""

from __future__ import annotations

from typing import Any

import pytest

from ddbshard.catchup import routing
from ddbshard.catchup.routing import Routed, Router
from ddbshard.config import parse_config

TARGETS = """\
source = "/nowhere"
dest = "/nowhere-out"
[output]
route = "{route}"
[[target]]
name = "Posts"
where = "kind = :p"
values = {{ ":p" = "post" }}
key = {{ hash = "pk", range = "sk" }}
key_types = {{ pk = "S", sk = "S" }}
rename = {{ pk = "owner" }}
set = {{ pk = "P#{{pk}}" }}
[[target]]
name = "Comments"
where = "kind = :p OR kind = :c"
values = {{ ":p" = "post", ":c" = "comment" }}
key = {{ hash = "cid" }}
key_types = {{ cid = "S" }}
set = {{ cid = "C#{{user_id}}#{{sk}}" }}
[[target]]
name = "Everything"
key = {{ hash = "pk", range = "sk" }}
key_types = {{ pk = "S", sk = "N" }}
drop = ["big"]
"""


def items() -> list[dict[str, Any]]:
    """Items that go to one target, to several, to none, refused by some, refused by the
    parser, and one key given twice."""
    out: list[dict[str, Any]] = []
    for i in range(12):
        kind = ("post", "comment", "other")[i % 3]
        item: dict[str, Any] = {"pk": {"S": f"u{i}"}, "sk": {"S": f"s{i}"}, "kind": {"S": kind}}
        if i % 4 == 0:
            item["user_id"] = {"S": f"user{i}"}
        if i % 5 == 0:
            item["sk"] = {"N": str(i)}  # Everything takes it; Posts refuses its key type
        out.append(item)
    out.append({"pk": {"S": "no-kind"}, "sk": {"N": "1"}})  # matches Everything only
    out.append({"pk": {"S": "bad"}, "sk": {"N": "not a number"}, "kind": {"S": "post"}})
    out.append({"sk": {"N": "2"}, "kind": {"S": "post"}})  # no pk: refused by its targets
    out.append(dict(out[0]))
    return out


def shape(r: Routed) -> tuple[Any, ...]:
    return r.outputs, [(x.target, x.reason, x.message) for x in r.rejects]


@pytest.mark.parametrize("route", ["first", "all"])
def test_a_round_routed_at_once_is_each_item_routed_alone(route: str) -> None:
    router = Router(parse_config(TARGETS.format(route=route)))
    alone = [shape(router.route(item)) for item in items()]
    assert [shape(r) for r in router.route_many(items())] == alone
    # The cases the test is about do occur.
    assert any(len(outputs) > 1 for outputs, _ in alone) == (route == "all")
    assert any(not outputs and rejects for outputs, rejects in alone)
    assert any(outputs and rejects for outputs, rejects in alone) == (route == "all")
    assert any(r[0] is None for _, rejects in alone for r in rejects)  # the parser's refusal


def test_an_item_matching_no_target_is_one_unmatched_record() -> None:
    config = TARGETS.format(route="first").split('[[target]]\nname = "Everything"')[0]
    router = Router(parse_config(config))
    batch = [{"pk": {"S": "a"}, "sk": {"S": "b"}}, {"pk": {"S": "c"}, "sk": {"S": "d"}}]
    routed = router.route_many(batch)
    assert [shape(r) for r in routed] == [shape(router.route(item)) for item in batch]
    assert [[x.reason for x in r.rejects] for r in routed] == [["unmatched"], ["unmatched"]]


def test_source_keys_at_once_give_each_key_alone() -> None:
    router = Router(parse_config(TARGETS.format(route="first")))
    keys = [{n: v for n, v in it.items() if n in ("pk", "sk")} for it in items()] + [
        {"pk": {"S": "only"}}
    ]
    alone = [router.keys_from_source_key(k) for k in keys]
    assert router.keys_from_source_keys(keys) == alone
    assert frozenset() in {frozenset(k) for k in alone}  # some keys no target takes
    assert len({frozenset(k) for k in alone}) >= 3  # and the others not all alike


def test_when_the_outcomes_do_not_tie_the_items_are_routed_alone(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    router = Router(parse_config(TARGETS.format(route="all")))
    alone = [shape(router.route(item)) for item in items()]
    monkeypatch.setattr(routing, "_outcomes", lambda splitter, lines: None)
    monkeypatch.setattr(routing, "_outcomes_by_target", lambda splitter, lines, index: None)
    assert [shape(r) for r in router.route_many(items())] == alone
    keys = [{n: v for n, v in it.items() if n in ("pk", "sk")} for it in items()]
    assert router.keys_from_source_keys(keys) == [router.keys_from_source_key(k) for k in keys]
