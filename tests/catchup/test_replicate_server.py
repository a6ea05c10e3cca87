"""`replicate` on moto's server: tail Source's stream into Posts and Comments (whose key is built
from a non-key attribute) until caught up, and survive SIGKILL at each step of its commit path.

The scenario is sync's (tests/support/sync_scenario.py): Source split and loaded into the
targets, then inserts, updates in place, moves between targets and out of every target,
key-changing updates, deletes. The oracle: `split` run again on an export of Source's final
contents, which both targets must equal as multisets.
"""

from __future__ import annotations

import json
import signal
import subprocess
from pathlib import Path
from typing import Any

import pytest

from ddbshard import synth
from ddbshard.catchup.wire import item_to_client
from support.ddb_faults import FaultyDynamo
from support.ddb_tables import create_table, load, run_cli, scan, signal_cli
from support.sync_scenario import assert_targets_match_source, change, config_for, migrate

pytestmark = [pytest.mark.server, pytest.mark.slow]


def replicate(
    ddb: FaultyDynamo, config: Path, cp: Path, *extra: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    args = ("replicate", str(config), "--source-table", "Source", "--checkpoint", str(cp))
    return run_cli(env or ddb.env(), *args, "--until-caught-up", *extra, cwd=cp.parent)


def test_replicate_until_caught_up_makes_targets_equal_a_fresh_split(
    fresh: FaultyDynamo, tmp_path: Path
) -> None:
    items, config = migrate(fresh, tmp_path, 300)
    change(fresh, items)
    (tmp_path / "before").mkdir()
    with pytest.raises(AssertionError):  # stale before: the oracle can fail
        assert_targets_match_source(fresh, tmp_path / "before")
    cp = tmp_path / "source.checkpoint"
    # One batch holds the load's inserts (from before the export) and every change after it:
    # the copies of the states in between must be found all the same.
    r = replicate(fresh, config, cp)
    assert r.returncode == 0, r.stderr
    assert_targets_match_source(fresh, tmp_path)
    last = r.stderr.strip().splitlines()[-1]
    assert last.startswith("replicate: lag 0.0 s, ") and last.endswith("failed 0"), last
    assert json.loads(cp.read_text())["shards"]
    # Caught up: a second run finds nothing and writes nothing.
    r = replicate(fresh, config, cp, "--quiet")
    assert r.returncode == 0, r.stderr
    assert ", 0 records (" in r.stderr and "put 0," in r.stderr
    # Five more posts move to Comments, one is deleted: applied from the checkpoint on.
    client = fresh.client()
    posts = [it for it in scan(client, "Source") if it["kind"]["S"] == "post"]
    for it in posts[:5]:
        client.update_item(
            TableName="Source",
            Key=item_to_client({"pk": it["pk"], "sk": it["sk"]}),
            UpdateExpression="SET kind = :k",
            ExpressionAttributeValues={":k": {"S": "comment"}},
        )
    client.delete_item(
        TableName="Source", Key=item_to_client({"pk": posts[5]["pk"], "sk": posts[5]["sk"]})
    )
    r = replicate(fresh, config, cp)
    assert r.returncode == 0, r.stderr
    assert ", 6 records (" in r.stderr and "moves 5, deleted 6, " in r.stderr, r.stderr
    (tmp_path / "after").mkdir()
    assert_targets_match_source(fresh, tmp_path / "after")


@pytest.mark.parametrize("step", ["applied", "checkpointed"])
def test_sigkill_at_each_commit_step_then_restart_loses_nothing(
    fresh: FaultyDynamo, tmp_path: Path, step: str
) -> None:
    items, config = migrate(fresh, tmp_path, 300)
    change(fresh, items)
    cp = tmp_path / "source.checkpoint"

    def killed_at(where: str) -> dict[str, object]:
        env = {**fresh.env(), "DDBSHARD_CRASH_AT": f"{where}:1:kill"}
        r = replicate(fresh, config, cp, "--batch-records", "150", "--quiet", env=env)
        assert r.returncode == -signal.SIGKILL, r.stderr
        saved = json.loads(cp.read_text())
        return {"shards": saved["shards"], "finished": saved["finished"]}

    first = killed_at("checkpointed")  # the first batch applied and committed
    assert first["shards"]
    # The next batch is killed at `step`: after its writes, the checkpoint must not have moved
    # yet; after its checkpoint, it must have.
    second = killed_at(step)
    assert (second == first) == (step == "applied")
    r = replicate(fresh, config, cp, "--batch-records", "150", "--quiet")
    assert r.returncode == 0, r.stderr
    assert_targets_match_source(fresh, tmp_path)


def test_sigterm_saves_and_exits_143_with_one_line(fresh: FaultyDynamo, tmp_path: Path) -> None:
    _, config = migrate(fresh, tmp_path, 100)
    cp = tmp_path / "source.checkpoint"
    args = ["replicate", str(config), "--source-table", "Source", "--checkpoint", str(cp)]
    # Once the first pass is committed.
    r = signal_cli(
        fresh.env(), *args, "--quiet", when=cp.exists, signum=signal.SIGTERM, cwd=tmp_path
    )
    err = r.stderr
    assert r.returncode == 143, err
    assert "Traceback" not in err
    assert err.strip().splitlines()[-1].startswith("ddbshard replicate: stopped by SIGTERM; ")
    assert json.loads(cp.read_text())["shards"]


def test_ctrl_c_in_the_middle_of_a_batch_counts_no_failure_the_file_does_not_list(
    fresh: FaultyDynamo, tmp_path: Path
) -> None:
    """The calls a Ctrl-C gives back are not failures: the checkpoint has not passed their
    batch, which the next run applies again. The last line's "failed" must count what the
    failed-keys file lists (nothing here), not them."""
    items, config = migrate(fresh, tmp_path, 300)
    change(fresh, items)
    cp, failed = tmp_path / "source.checkpoint", tmp_path / "failed.jsonl"
    fresh.clear_faults()  # and the log: the signal waits for replicate's own first write
    fresh.slow(0.1)  # the batch's calls take a while: the signal comes while it writes
    args = ["replicate", str(config), "--source-table", "Source", "--checkpoint", str(cp)]
    args += ["--failed-keys", str(failed), "--batch-records", "5000", "--concurrency", "4"]

    def writing() -> bool:
        return bool(fresh.calls("BatchWriteItem"))

    r = signal_cli(fresh.env(), *args, when=writing, signum=signal.SIGINT, cwd=tmp_path)
    err = r.stderr
    assert r.returncode == 130, err
    assert "Traceback" not in err
    status = [line for line in err.splitlines() if line.startswith("replicate: lag")][-1]
    listed = len(failed.read_text().splitlines()) if failed.exists() else 0
    assert status.endswith(f", failed {listed}"), (status, listed)
    fresh.clear_faults()
    r = replicate(fresh, config, cp, "--failed-keys", str(failed), "--quiet")
    assert r.returncode == 0, r.stderr
    assert_targets_match_source(fresh, tmp_path)


def test_a_keys_only_stream_reads_the_source_and_says_what_it_cannot_see(
    fresh: FaultyDynamo, tmp_path: Path
) -> None:
    client = fresh.client()
    client.create_table(
        TableName="Source",
        KeySchema=[
            {"AttributeName": "pk", "KeyType": "HASH"},
            {"AttributeName": "sk", "KeyType": "RANGE"},
        ],
        AttributeDefinitions=[
            {"AttributeName": "pk", "AttributeType": "S"},
            {"AttributeName": "sk", "AttributeType": "S"},
        ],
        BillingMode="PAY_PER_REQUEST",
        StreamSpecification={"StreamEnabled": True, "StreamViewType": "KEYS_ONLY"},
    )
    create_table(client, "Posts", "pk", "sk")
    create_table(client, "Comments", "cid")
    items = list(synth.make_items(80, seed=5))
    load(client, "Source", items)
    posts = [it for it in items if it["kind"]["S"] == "post"]
    comments = [it for it in items if it["kind"]["S"] == "comment"]

    def key(it: dict[str, Any]) -> dict[str, Any]:
        return item_to_client({"pk": it["pk"], "sk": it["sk"]})

    for it in posts[:3]:  # moves to Comments: the Posts copy is found from the source key
        client.update_item(
            TableName="Source",
            Key=key(it),
            UpdateExpression="SET kind = :k",
            ExpressionAttributeValues={":k": {"S": "comment"}},
        )
    client.delete_item(TableName="Source", Key=key(posts[3]))
    config = tmp_path / "replicate.toml"
    config.write_text(config_for(tmp_path / "no-export", tmp_path / "out"))
    cp = tmp_path / "source.checkpoint"
    r = replicate(fresh, config, cp)
    assert r.returncode == 0, r.stderr
    assert "no exportTime" in r.stderr  # the trimming check could not be made: said so
    assert "note: the stream has no old images" not in r.stderr  # nothing was unfindable yet
    assert_targets_match_source(fresh, tmp_path)
    # A comment's user changes: its Comments key is built from user_id, and without an old
    # image the copy under the old key cannot be found. replicate says so.
    client.update_item(
        TableName="Source",
        Key=key(comments[0]),
        UpdateExpression="SET user_id = :u",
        ExpressionAttributeValues={":u": {"S": "00000009"}},
    )
    r = replicate(fresh, config, cp)
    assert r.returncode == 0, r.stderr
    assert "note: the stream has no old images, and Comments build their keys" in r.stderr


def test_an_s3_checkpoint_resumes_and_a_missing_bucket_is_refused_before_any_write(
    fresh: FaultyDynamo, tmp_path: Path
) -> None:
    items, config = migrate(fresh, tmp_path, 300)
    change(fresh, items)
    before = {t: scan(fresh.client(), t) for t in ("Posts", "Comments")}
    args = ("replicate", str(config), "--source-table", "Source", "--until-caught-up")
    url = "s3://cp-bucket/runs/source.checkpoint"
    r = run_cli(fresh.env(), *args, "--checkpoint", url, cwd=tmp_path)
    assert r.returncode == 2, r.stderr
    assert r.stderr.strip() == (
        f"ddbshard: error: {url}: cannot keep the checkpoint there: the bucket cp-bucket does "
        "not exist"
    )
    assert {t: scan(fresh.client(), t) for t in before} == before  # nothing applied
    s3 = fresh.client("s3")
    s3.create_bucket(Bucket="cp-bucket")
    r = run_cli(fresh.env(), *args, "--checkpoint", url, cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert_targets_match_source(fresh, tmp_path)
    saved = json.loads(
        s3.get_object(Bucket="cp-bucket", Key="runs/source.checkpoint")["Body"].read()
    )
    assert saved["shards"] or saved["finished"]
    r = run_cli(fresh.env(), *args, "--checkpoint", url, "--quiet", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert ", 0 records (" in r.stderr and "put 0," in r.stderr  # went on from the S3 checkpoint


def test_a_signal_after_the_loop_is_an_interruption_not_a_traceback(
    fresh: FaultyDynamo, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """replicate's own SIGINT/SIGTERM handler raises its stop inside the loop only: once the
    loop is over (the last status line, the notes, an error on its way out), a signal must
    reach the CLI's usual handling, not escape as a traceback of an internal exception."""
    import os

    from ddbshard.cli import main
    from ddbshard.commands import replicate as command

    _, config = migrate(fresh, tmp_path, 20)
    for name, value in fresh.env().items():
        if name.startswith("AWS_"):
            monkeypatch.setenv(name, value)
    real_final = command._Show.final

    def final_then_ctrl_c(show: Any) -> None:
        real_final(show)
        os.kill(os.getpid(), signal.SIGINT)

    monkeypatch.setattr(command._Show, "final", final_then_ctrl_c)
    args = ["replicate", str(config), "--source-table", "Source", "--quiet"]
    args += ["--checkpoint", str(tmp_path / "cp.json"), "--until-caught-up"]
    previous = signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)
    try:
        assert main(args) == 130
    finally:
        signal.signal(signal.SIGINT, previous[0])
        signal.signal(signal.SIGTERM, previous[1])
