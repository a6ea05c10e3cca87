"""diff finds the differences, sync repairs them, diff finds none: for a target that keeps the
source key, one that renames it, and one whose key is a template over a non-key attribute.

Tables on moto's DynamoDB over HTTP: Source, split into Posts (pk, sk kept), Profiles (pk
renamed to uid) and Comments (cid = "C#{user_id}#{sk}", pk dropped), loaded. Then differences
are planted in every target (items deleted, one changed, one added under a new key) and in the
source (a post changed; two comments' user_id changed, so their Comments copies sit under a
stale key). diff must name the source item of every missing and changed item, whatever the
target's key is made of; `sync --keys` on the nine files it writes must leave nothing for the
next diff to find.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from ddbshard import synth
from ddbshard.catchup.wire import item_to_client
from support.configs import config_text, target_block
from support.ddb_faults import FaultyDynamo
from support.ddb_tables import create_table, load, read_shards, run_cli, scan, write_full_export

pytestmark = [pytest.mark.server, pytest.mark.slow]  # moto: ~20 s

KEYS = {"Posts": ("pk", "sk"), "Profiles": ("uid", "sk"), "Comments": ("cid",)}
BLOCKS = (
    target_block("Posts", "post", KEYS["Posts"], 'drop = ["legacy"]'),
    target_block("Profiles", "profile", KEYS["Profiles"], 'rename = { pk = "uid" }'),
    target_block(
        "Comments", "comment", KEYS["Comments"], 'set = { cid = "C#{user_id}#{sk}" }',
        'drop = ["pk"]',
    ),
)  # fmt: skip
KINDS = ("missing", "changed", "unexpected")
Wire = dict[str, Any]
SourceKey = tuple[str, str]


@pytest.fixture(scope="module")
def ddb() -> Iterator[FaultyDynamo]:
    with FaultyDynamo() as server:
        yield server


def source_key(item: Wire, target: str) -> SourceKey:
    """The (pk, sk) of the source item behind a target item (synth's pk is USER#<user_id>)."""
    if target == "Comments":
        return "USER#" + item["user_id"]["S"], item["sk"]["S"]
    return item[KEYS[target][0]]["S"], item["sk"]["S"]


def target_key(item: Wire, target: str) -> dict[str, Any]:
    return {k: item[k] for k in KEYS[target]}


class Planted:
    """What diff must report for one target: per kind, the source keys of missing and changed
    items, and the target keys of unexpected ones."""

    def __init__(self) -> None:
        self.missing: set[SourceKey] = set()
        self.changed: set[SourceKey] = set()
        self.unexpected: set[tuple[str, ...]] = set()


def plant(ddb: FaultyDynamo) -> dict[str, Planted]:
    client = ddb.client()
    planted = {t: Planted() for t in KEYS}
    for t, p in planted.items():
        items = sorted(scan(client, t), key=lambda it: json.dumps(target_key(it, t)))
        assert len(items) > 10, t
        for it in items[0:2]:  # deleted from the target
            client.delete_item(TableName=t, Key=item_to_client(target_key(it, t)))
            p.missing.add(source_key(it, t))
        changed = {**items[2], "planted": {"S": "not in the source"}}
        client.put_item(TableName=t, Item=item_to_client(changed))
        p.changed.add(source_key(items[2], t))
        first = KEYS[t][0]
        extra = {**items[3], first: {"S": items[3][first]["S"] + "#EXTRA"}}
        client.put_item(TableName=t, Item=item_to_client(extra))
        p.unexpected.add(tuple(extra[k]["S"] for k in KEYS[t]))
    # In the source: a post changed, and two comments moved to another user, whose copies in
    # Comments are now under a key the source no longer makes (stale), the right key missing.
    source = scan(client, "Source")
    taken = {k for p in planted.values() for k in p.missing | p.changed}
    free = [it for it in source if (it["pk"]["S"], it["sk"]["S"]) not in taken]
    post = next(it for it in free if it["kind"]["S"] == "post")
    key = {"pk": post["pk"], "sk": post["sk"]}
    client.update_item(
        TableName="Source",
        Key=item_to_client(key),
        UpdateExpression="SET title = :t",
        ExpressionAttributeValues={":t": {"S": "edited in the source"}},
    )
    planted["Posts"].changed.add((post["pk"]["S"], post["sk"]["S"]))
    comments = [it for it in free if it["kind"]["S"] == "comment"]
    for it in comments[-2:]:
        client.update_item(
            TableName="Source",
            Key=item_to_client({"pk": it["pk"], "sk": it["sk"]}),
            UpdateExpression="SET user_id = :u",
            ExpressionAttributeValues={":u": {"S": "99999999"}},
        )
        planted["Comments"].missing.add((it["pk"]["S"], it["sk"]["S"]))
        planted["Comments"].unexpected.add((f"C#{it['user_id']['S']}#{it['sk']['S']}",))
    return planted


def dump(ddb: FaultyDynamo, tmp: Path, name: str) -> tuple[Path, list[str]]:
    """The source table as an export, and each target table as a folder of lines."""
    client = ddb.client()
    export = write_full_export(tmp / name / "source", scan(client, "Source"))
    actual = []
    for t in KEYS:
        folder = tmp / name / t
        folder.mkdir(parents=True)
        lines = "".join(json.dumps({"Item": it}) + "\n" for it in scan(client, t))
        (folder / "items.json").write_text(lines)
        actual.append(f"--actual={t}={folder}")
    return export, actual


def diff(ddb: FaultyDynamo, config: Path, tmp: Path, name: str) -> tuple[int, Path, str]:
    export, actual = dump(ddb, tmp, name)
    out = tmp / name / "report"
    r = run_cli(
        ddb.env(), "diff", str(config), "--source", str(export), *actual, "--out", str(out),
        "--quiet",
    )  # fmt: skip
    return r.returncode, out, r.stdout + r.stderr


def lines(path: Path) -> list[Wire]:
    return [json.loads(x) for x in path.read_text().split("\n") if x]


def test_diff_names_source_items_and_sync_repairs_every_target(
    ddb: FaultyDynamo, tmp_path: Path
) -> None:
    ddb.reset()
    client = ddb.client()
    create_table(client, "Source", "pk", "sk")
    for t, key in KEYS.items():
        create_table(client, t, *key)
    load(client, "Source", list(synth.make_items(240, seed=23)))
    export = write_full_export(tmp_path / "export", scan(client, "Source"))
    config = tmp_path / "migration.toml"
    config.write_text(config_text(export, tmp_path / "out", *BLOCKS, compression="none"))
    r = run_cli(ddb.env(), "split", str(config), "--quiet")
    assert r.returncode == 0, r.stderr
    for t in KEYS:
        load(client, t, read_shards(tmp_path / "out", t))
    planted = plant(ddb)

    code, out, said = diff(ddb, config, tmp_path, "before")
    assert code == 1, said
    summary = json.loads((out / "diff-summary.json").read_text())
    for t, p in planted.items():
        s = summary["targets"][t]
        assert (s["missing"], s["changed"], s["unexpected"]) == (
            len(p.missing),
            len(p.changed),
            len(p.unexpected),
        ), t
        assert s["source_keys"] is True and s["source_key"] == ["pk", "sk"], t
        for kind, want in (("missing", p.missing), ("changed", p.changed)):
            got = lines(out / t / f"{kind}.jsonl")
            # Every line names its source item by the source key, and its target item.
            assert all(list(x) == ["Keys", "TargetKeys"] for x in got), (t, kind)
            assert all(list(x["Keys"]) == ["pk", "sk"] for x in got), (t, kind)
            assert all(list(x["TargetKeys"]) == list(KEYS[t]) for x in got), (t, kind)
            assert {(x["Keys"]["pk"]["S"], x["Keys"]["sk"]["S"]) for x in got} == want, (t, kind)
        got = lines(out / t / "unexpected.jsonl")
        assert all(x["Target"] == t for x in got)
        assert {tuple(v["S"] for v in x["Keys"].values()) for x in got} == p.unexpected

    keys = [f"--keys={out / t / f'{kind}.jsonl'}" for t in KEYS for kind in KINDS]
    r = run_cli(ddb.env(), "sync", str(config), *keys, "--source-table", "Source", "--quiet")
    assert r.returncode == 0, r.stdout + r.stderr

    code, out, said = diff(ddb, config, tmp_path, "after")
    assert code == 0, said
    summary = json.loads((out / "diff-summary.json").read_text())
    assert summary["identical"] is True
    for t in KEYS:
        s = summary["targets"][t]
        assert s["matched"] == s["expected"]["items"] == s["actual"]["items"] > 10, t
