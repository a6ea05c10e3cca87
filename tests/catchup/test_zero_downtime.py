"""The whole zero-downtime migration against moto's server, as the README's quickstart runs it.

A source table with a stream and a GSI takes writes from an application thread the whole time:
puts, updates (some move items between targets, some change the attribute the templated
Comments key is built from) and deletes. Meanwhile: export, split, import (ImportTable), then
`replicate` from the trim horizon, killed with SIGKILL at a step of its commit path and started
again from its checkpoint; the writer stops; `replicate --until-caught-up` returns; `diff` of the
live tables says identical. Then differences are planted in every target by hand, `diff` finds
them, `sync` of its keys files repairs them, and `diff` says identical again.
"""

from __future__ import annotations

import contextlib
import json
import random
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from ddbshard import synth
from ddbshard.catchup.wire import item_to_client
from support.configs import config_text, target_block
from support.ddb_faults import FaultyDynamo
from support.ddb_tables import load, run_cli, scan, write_full_export

pytestmark = pytest.mark.server

Wire = dict[str, Any]
TARGETS = ("Posts", "Comments")
BLOCKS = (
    target_block("Posts", "post", ("pk", "sk"), 'drop = ["legacy"]'),
    target_block(
        "Comments",
        "comment",
        ("cid",),
        'keep = ["user_id", "sk", "kind", "body", "score", "created_at"]',
        'set = { cid = "C#{user_id}#{sk}" }',
    ),
)


class _JsonLines:
    """What AWS does with a DYNAMODB_JSON object (see tests/aws/test_import.py): moto's own
    parser keeps string escapes verbatim."""

    @staticmethod
    def parse(original: str) -> Iterator[Any]:
        return (json.loads(line) for line in original.split("\n") if line.strip())


@pytest.fixture
def ddb() -> Iterator[FaultyDynamo]:
    import py_partiql_parser  # type: ignore[import-untyped]

    saved = py_partiql_parser.JsonParser
    py_partiql_parser.JsonParser = _JsonLines
    try:
        with FaultyDynamo() as server:
            server.reset()  # moto's backends live in this process: start from no table
            yield server
    finally:
        py_partiql_parser.JsonParser = saved


class Writer(threading.Thread):
    """The application: keeps writing to Source until stopped, on keys it alone knows."""

    def __init__(self, ddb: FaultyDynamo, items: list[Wire]) -> None:
        super().__init__(name="app-writer", daemon=True)
        self.client = ddb.client()
        self.items = list(items)
        self.rng = random.Random(7)
        self.stop_now = threading.Event()
        self.writes = 0
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            while not self.stop_now.is_set():
                self.step()
                self.writes += 1
        except BaseException as e:  # the test reports it
            self.error = e

    def step(self) -> None:
        # An update of an item deleted meanwhile is refused: it must not create a stub of it.
        with contextlib.suppress(self.client.exceptions.ConditionalCheckFailedException):
            self._step()

    def _step(self) -> None:
        c, rng = self.client, self.rng
        it = rng.choice(self.items)
        key = item_to_client({"pk": it["pk"], "sk": it["sk"]})
        roll = rng.random()
        if roll < 0.25:  # move between targets (post <-> comment) or out of all of them
            kind = rng.choice(["post", "comment", "profile"])
            c.update_item(
                TableName="Source",
                Key=key,
                ConditionExpression="attribute_exists(pk)",
                UpdateExpression="SET kind = :k",
                ExpressionAttributeValues={":k": {"S": kind}},
            )
        elif roll < 0.45:  # the attribute the templated Comments key is built from
            c.update_item(
                TableName="Source",
                Key=key,
                ConditionExpression="attribute_exists(pk)",
                UpdateExpression="SET user_id = :u",
                ExpressionAttributeValues={":u": {"S": f"{rng.randrange(10**8):08d}"}},
            )
        elif roll < 0.65:
            c.update_item(
                TableName="Source",
                Key=key,
                ConditionExpression="attribute_exists(pk)",
                UpdateExpression="SET body = :b, score = :s",
                ExpressionAttributeValues={
                    ":b": {"S": f"edited {rng.random()}"},
                    ":s": {"N": str(rng.randrange(-50, 50))},
                },
            )
        elif roll < 0.8:
            c.delete_item(TableName="Source", Key=key)
        else:  # a new item (or the deleted one back)
            n = rng.randrange(10**6)
            # A new sk too: Comments' key is built from user_id and sk, and two source items
            # sharing one target key would overwrite each other (as in split).
            new = {**it, "pk": {"S": f"USER#N{n:06d}"}, "sk": {"S": f"{it['sk']['S']}#{n}"}}
            c.put_item(TableName="Source", Item=item_to_client(new))
            self.items.append(new)


def _create_source(client: Any) -> None:
    client.create_table(
        TableName="Source",
        KeySchema=[
            {"AttributeName": "pk", "KeyType": "HASH"},
            {"AttributeName": "sk", "KeyType": "RANGE"},
        ],
        AttributeDefinitions=[
            {"AttributeName": "pk", "AttributeType": "S"},
            {"AttributeName": "sk", "AttributeType": "S"},
            {"AttributeName": "kind", "AttributeType": "S"},
        ],
        GlobalSecondaryIndexes=[
            {
                "IndexName": "byKind",
                "KeySchema": [{"AttributeName": "kind", "KeyType": "HASH"}],
                "Projection": {"ProjectionType": "KEYS_ONLY"},
            }
        ],
        BillingMode="PAY_PER_REQUEST",
        StreamSpecification={"StreamEnabled": True, "StreamViewType": "NEW_AND_OLD_IMAGES"},
    )


def _cli(ddb: FaultyDynamo, *args: str, env: dict[str, str] | None = None) -> Any:
    r = run_cli(env or ddb.env(), *args)
    return r


def _diff(ddb: FaultyDynamo, config: Path, out: Path) -> subprocess.CompletedProcess[str]:
    actual = [a for t in TARGETS for a in ("--actual", f"{t}=dynamodb://{t}")]
    return run_cli(
        ddb.env(),
        "diff",
        str(config),
        "--source",
        "dynamodb://Source",
        *actual,
        "--out",
        str(out),
        "--work-dir",
        str(out.parent / f"{out.name}-work"),
    )


def _replicate(config: Path, checkpoint: Path, *extra: str) -> list[str]:
    return [
        sys.executable,
        "-m",
        "ddbshard",
        "replicate",
        str(config),
        "--source-table",
        "Source",
        "--checkpoint",
        str(checkpoint),
        "--from",
        "trim-horizon",
        *extra,
    ]


def test_live_migration_loop(ddb: FaultyDynamo, tmp_path: Path) -> None:
    client = ddb.client()
    _create_source(client)
    items = list(synth.make_items(240, seed=3))
    load(client, "Source", items)
    s3 = ddb.client("s3")
    s3.create_bucket(Bucket="imports")

    writer = Writer(ddb, items)
    writer.start()
    try:
        # export (a Scan in AWS's export layout: taken while the writer runs, as a real export
        # is), split into gzip shards on S3, import.
        export = write_full_export(tmp_path / "export", scan(client, "Source"))
        config = tmp_path / "migration.toml"
        config.write_text(
            config_text(export, "s3://imports/run/", *BLOCKS, compression="gzip", shards=3)
        )
        r = _cli(ddb, "split", str(config), "--workers", "1", "--quiet")
        assert r.returncode == 0, r.stderr
        r = _cli(ddb, "import", str(config), "--wait")
        assert r.returncode == 0, r.stdout + r.stderr

        # replicate from the trim horizon, killed once in its commit path, started again.
        checkpoint = tmp_path / "replicate-checkpoint.json"
        env = {**ddb.env(), "DDBSHARD_CRASH_AT": "checkpointed:2:kill"}
        first = subprocess.run(
            _replicate(config, checkpoint), env=env, capture_output=True, text=True, timeout=300
        )
        assert first.returncode == -signal.SIGKILL, first.stderr
        assert checkpoint.exists()
        again = subprocess.Popen(
            _replicate(config, checkpoint),
            env=ddb.env(),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        wrote = writer.writes
        while writer.writes < wrote + 200:  # the application goes on writing meanwhile
            assert again.poll() is None, again.communicate()[1]
            assert writer.is_alive(), writer.error
    finally:
        writer.stop_now.set()
        writer.join(timeout=60)
    assert writer.error is None, writer.error
    again.send_signal(signal.SIGTERM)
    _, err = again.communicate(timeout=120)
    assert again.returncode == 143, err
    assert "Traceback" not in err

    r = _cli(ddb, *_replicate(config, checkpoint, "--until-caught-up")[3:])
    assert r.returncode == 0, r.stderr

    r = _diff(ddb, config, tmp_path / "diff1")
    assert r.returncode == 0, r.stdout + r.stderr
    assert "identical" in r.stdout

    # Plant differences in every target: a missing item, a changed one, an unexpected one
    # (for Comments: a stale copy under a key built from an old user_id).
    for t in TARGETS:
        have = scan(client, t)
        assert len(have) >= 3, t
        gone, changed = have[0], have[1]
        key = {k: gone[k] for k in (("pk", "sk") if t == "Posts" else ("cid",))}
        client.delete_item(TableName=t, Key=item_to_client(key))
        client.put_item(TableName=t, Item=item_to_client({**changed, "body": {"S": "tampered"}}))
        stray = dict(have[2])
        if t == "Posts":
            stray["pk"] = {"S": "USER#STRAY"}
        else:
            stray["cid"] = {"S": f"C#99999999#{stray['sk']['S']}"}
        client.put_item(TableName=t, Item=item_to_client(stray))

    r = _diff(ddb, config, tmp_path / "diff2")
    assert r.returncode == 1, r.stdout + r.stderr
    files = []
    for t in TARGETS:
        for kind in ("missing", "changed", "unexpected"):
            f = tmp_path / "diff2" / t / f"{kind}.jsonl"
            lines = [json.loads(x) for x in f.read_text().splitlines() if x.strip()]
            assert len(lines) == 1, (t, kind, lines)
            if kind != "unexpected":
                assert set(lines[0]["Keys"]) == {"pk", "sk"}, lines  # the source key, always
            files += ["--keys", str(f)]
    r = _cli(ddb, "sync", str(config), *files, "--source-table", "Source")
    assert r.returncode == 0, r.stdout + r.stderr

    r = _diff(ddb, config, tmp_path / "diff3")
    assert r.returncode == 0, r.stdout + r.stderr
    assert "identical" in r.stdout
