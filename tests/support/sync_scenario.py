"""The migration the sync tests replay: a source table, its split, the writes made after it.

Source (stream NEW_AND_OLD_IMAGES) is exported (a full export built from its Scan, in AWS's
layout), split into Posts (same key) and Comments (key `cid` built from `user_id`, a non-key
attribute), and the shards loaded. `change` then writes to Source the way an application would
during the migration; `assert_targets_match_source` is the oracle: `split` run again on an
export of Source's contents, whose shards both targets must equal as multisets.
"""

from __future__ import annotations

import json
import re
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from ddbshard import synth
from ddbshard.catchup.wire import item_to_client
from support.configs import config_text, target_block
from support.ddb_faults import FaultyDynamo
from support.ddb_tables import (
    create_table,
    load,
    multiset,
    read_shards,
    run_cli,
    scan,
    stream_records,
    write_full_export,
)

TARGET_BLOCKS = (
    target_block(
        "Posts", "post", ("pk", "sk"), 'drop = ["legacy"]', 'rename = { created_at = "createdAt" }'
    ),
    target_block(
        "Comments",
        "comment",
        ("cid",),
        'keep = ["user_id", "sk", "kind", "body", "score", "tags", "upvotes", "created_at"]',
        'set = { cid = "C#{user_id}#{sk}" }',
    ),
)


def config_for(source: object, dest: object) -> str:
    """The scenario's config: Posts and Comments, uncompressed shards, two each."""
    return config_text(source, dest, *TARGET_BLOCKS, compression="none", shards=2)


TARGETS = ("Posts", "Comments")
Wire = dict[str, Any]


def split(ddb: FaultyDynamo, tmp: Path, items: list[Wire], name: str) -> Path:
    """Exports `items` in AWS's layout and splits it with the CLI; returns the config."""
    root = write_full_export(tmp / f"export-{name}", items)
    config = tmp / f"{name}.toml"
    config.write_text(config_for(root, tmp / f"out-{name}"))
    r = run_cli(ddb.env(), "split", str(config), "--workers", "1", "--quiet")
    assert r.returncode == 0, r.stderr
    return config


def migrate(ddb: FaultyDynamo, tmp: Path, count: int) -> tuple[list[Wire], Path]:
    """Source with `count` items, exported, split, loaded into Posts and Comments."""
    client = ddb.client()
    create_table(client, "Source", "pk", "sk", stream=True)
    create_table(client, "Posts", "pk", "sk")
    create_table(client, "Comments", "cid")
    items = list(synth.make_items(count, seed=11))
    load(client, "Source", items)
    config = split(ddb, tmp, scan(client, "Source"), "initial")
    for t in TARGETS:
        load(client, t, read_shards(tmp / "out-initial", t))
    return items, config


def change(ddb: FaultyDynamo, items: list[Wire]) -> dict[str, int]:
    """The writes made after the export; returns how many of each kind."""
    c = ddb.client()
    kinds: dict[str, list[Wire]] = {"post": [], "comment": [], "profile": []}
    for it in items:
        kinds[it["kind"]["S"]].append(it)
    posts, comments, profiles = kinds["post"], kinds["comment"], kinds["profile"]

    def key(it: Wire) -> dict[str, Any]:
        return item_to_client({"pk": it["pk"], "sk": it["sk"]})

    def update(it: Wire, expr: str, **values: Wire) -> None:
        c.update_item(
            TableName="Source",
            Key=key(it),
            UpdateExpression=expr,
            ExpressionAttributeValues={
                f":{k}": item_to_client({"v": v})["v"] for k, v in values.items()
            },
        )

    for it in posts[0:40]:  # moves from Posts to Comments
        update(it, "SET kind = :k", k={"S": "comment"})
    for it in posts[40:50]:  # changes, stays
        update(it, "SET title = :t", t={"S": "édité ✓"})
    update(posts[45], "SET rating = :r", r={"N": "1.50"})  # a second change; number text kept
    for it in comments[0:20]:  # new user: a new Comments key, the old copy must go
        update(it, "SET user_id = :u", u={"S": "00000001"})
    for it in comments[35:38]:  # two user changes: only the first old image locates the copy
        update(it, "SET user_id = :u", u={"S": "00000002"})
        update(it, "SET user_id = :u", u={"S": "00000003"})
    for it in comments[20:25]:  # leaves every target (profiles are dropped)
        update(it, "SET kind = :k", k={"S": "profile"})
    for it in profiles[0:5]:  # enters Posts
        update(it, "SET kind = :k", k={"S": "post"})
    for it in posts[65:68]:  # away and back
        update(it, "SET kind = :k", k={"S": "comment"})
        update(it, "SET kind = :k", k={"S": "post"})
    for it in profiles[5:10]:  # changes an item no target holds
        update(it, "SET bio = :b", b={"S": "new bio"})
    for it in posts[60:65]:  # writes the same item again
        c.put_item(TableName="Source", Item=item_to_client(it))
    for it in posts[50:60] + comments[25:35]:
        c.delete_item(TableName="Source", Key=key(it))
    new = [
        {**it, "pk": {"S": f"USER#9{n:07d}"}, "sk": {"S": f"{it['sk']['S']}#new"}}
        for n, it in enumerate(posts[70:75] + comments[70:75])
    ]
    for it in new:
        c.put_item(TableName="Source", Item=item_to_client(it))
    ghost = {**posts[80], "pk": {"S": "USER#GHOST"}}  # inserted and deleted in the window
    c.put_item(TableName="Source", Item=item_to_client(ghost))
    c.delete_item(TableName="Source", Key=key(ghost))
    changed = 40 + 10 + 20 + 3 + 5 + 5 + 3 + 5 + 5 + 20 + len(new) + 1
    return {"keys": changed}


def catch_up_ready(ddb: FaultyDynamo, tmp: Path, count: int = 400) -> tuple[Path, Path, int]:
    """Migrated, then changed; returns (config, stream file, changed keys), stream file holding
    every record (the load's too: --since must leave those out)."""
    items, config = migrate(ddb, tmp, count)
    time.sleep(0.05)
    since = datetime.now(UTC)
    time.sleep(0.05)
    changed = change(ddb, items)["keys"]
    records = stream_records(ddb.client(), ddb.client("dynamodbstreams"), "Source")
    events = tmp / "stream-event.json"
    events.write_text(json.dumps({"Records": records}, indent=1))
    (tmp / "since").write_text(since.isoformat())
    return config, events, changed


def keys(ddb: FaultyDynamo, tmp: Path, events: Path) -> Path:
    out = tmp / "keys.jsonl"
    since = (tmp / "since").read_text()
    r = run_cli(
        ddb.env(), "keys", "--from", "streams", str(events), "--since", since, "--out", str(out)
    )
    assert r.returncode == 0, r.stderr
    return out


def assert_targets_match_source(ddb: FaultyDynamo, tmp: Path) -> None:
    client = ddb.client()
    split(ddb, tmp, scan(client, "Source"), "expected")
    for t in TARGETS:
        want = multiset(read_shards(tmp / "out-expected", t))
        have = multiset(scan(client, t))
        assert have == want, (
            f"{t}: {sum((have - want).values())} unexpected, {sum((want - have).values())} missing"
        )


def counts(stdout: str) -> dict[str, int]:
    """The numbers of sync's summary line."""
    line = next(x for x in stdout.splitlines() if x.startswith("sync"))
    found = re.findall(r"(keys|put|deleted|unchanged|failed|read) ([\d,]+)|([\d,]+) keys", line)
    out = {k: int(v.replace(",", "")) for k, v, _ in found if k}
    out["keys"] = int(next(n for _, _, n in found if n).replace(",", ""))
    return out


def change_at_random(ddb: FaultyDynamo, items: list[Wire], seed: int, writes: int) -> None:
    """`writes` writes to Source drawn with `seed` (the same ones for the same seed and items):
    moves between targets and out of every one, new user ids (new Comments keys), edits,
    deletes, re-inserts of deleted items, rewrites of the same item, new items. An item may be
    written many times, so old images and final states are far apart. User ids are never
    shared, so no two source items meet at one Comments key (that would depend on write order,
    as in split)."""
    import random

    rng = random.Random(seed)
    c = ddb.client()
    live = {json.dumps([it["pk"], it["sk"]]): dict(it) for it in items}
    deleted: dict[str, Wire] = {}
    for n in range(writes):
        roll = rng.random()
        if roll < 0.05 or not live:
            k = f"USER#R{seed}#{n:06d}"
            it = {**items[rng.randrange(len(items))], "pk": {"S": k}, "user_id": {"S": k}}
        elif roll < 0.12 and deleted:
            it = deleted.pop(rng.choice(sorted(deleted)))  # deleted, then written again
        else:
            it = dict(live[rng.choice(sorted(live))])
            if roll < 0.22:
                del live[json.dumps([it["pk"], it["sk"]])]
                deleted[json.dumps([it["pk"], it["sk"]])] = it
                c.delete_item(
                    TableName="Source", Key=item_to_client({"pk": it["pk"], "sk": it["sk"]})
                )
                continue
            if roll < 0.50:
                it["kind"] = {"S": rng.choice(["post", "comment", "profile"])}
            elif roll < 0.70:
                it["user_id"] = {"S": f"R{seed}#{n:06d}"}
            elif roll < 0.90:
                it["title"] = {"S": f"edit {n}"}
            # else: the same item written again
        live[json.dumps([it["pk"], it["sk"]])] = it
        c.put_item(TableName="Source", Item=item_to_client(it))
