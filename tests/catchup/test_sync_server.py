"""`keys` + `sync` on moto's server: a migration catches up with the writes made after its export.

The scenario (tests/support/sync_scenario.py): Source is split into Posts and Comments (whose
key comes from a non-key attribute) and loaded; then Source gets inserts, updates that stay,
updates that move an item from Posts to Comments or out of every target, key-changing updates,
deletes and no-op writes. `keys` reads the stream records (a Lambda event file, or one record
per line) and `sync` applies them; the oracle is `split` run again on an export of Source's
final contents: both targets must equal its shards as multisets, number text and all.

The DynamoDB endpoint is moto behind tests/support/ddb_faults.py, transparent unless a test arms
faults.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from ddbshard.catchup.wire import canonical, item_to_client
from support.ddb_faults import Fault, FaultyDynamo
from support.ddb_tables import (
    create_table,
    load,
    multiset,
    run_cli,
    scan,
    stream_records,
    write_incremental_export,
)
from support.sync_scenario import (
    TARGETS,
    assert_targets_match_source,
    catch_up_ready,
    change_at_random,
    config_for,
    counts,
    keys,
    migrate,
)

pytestmark = [pytest.mark.server, pytest.mark.slow]  # moto: ~10-30 s each


def test_keys_then_sync_makes_targets_equal_a_fresh_split(
    fresh: FaultyDynamo, tmp_path: Path
) -> None:
    config, events, changed = catch_up_ready(fresh, tmp_path)
    keys_file = keys(fresh, tmp_path, events)
    lines = [json.loads(line) for line in keys_file.read_text().splitlines()]
    assert len(lines) == changed  # the load's inserts are before --since
    assert all(isinstance(x["t"], int) and "OldImage" in x for x in lines)
    # Before the sync the targets are stale: the oracle must be able to fail.
    (tmp_path / "before").mkdir()
    with pytest.raises(AssertionError):
        assert_targets_match_source(fresh, tmp_path / "before")
    r = run_cli(
        fresh.env(),
        "sync",
        str(config),
        "--keys",
        str(keys_file),
        "--source-table",
        "Source",
        "--quiet",
    )
    assert r.returncode == 0, r.stdout + r.stderr
    assert_targets_match_source(fresh, tmp_path)
    got = counts(r.stdout)
    assert got["failed"] == 0 and got["keys"] == changed
    # 40 moved + 20 + 3 re-keyed comments leave a copy behind each; 5 left every target; 20 gone
    assert got["deleted"] == 40 + 23 + 5 + 20
    assert got["unchanged"] >= 5 + 5  # rewritten posts, profiles no target holds
    # A second run finds nothing left to do.
    again = run_cli(
        fresh.env(),
        "sync",
        str(config),
        "--keys",
        str(keys_file),
        "--source-table",
        "Source",
        "--quiet",
    )
    assert again.returncode == 0, again.stderr
    assert counts(again.stdout) == {**got, "put": 0, "deleted": 0, "unchanged": changed}


def test_sync_is_exact_through_unprocessed_items_and_throttling(
    fresh: FaultyDynamo, tmp_path: Path
) -> None:
    config, events, _ = catch_up_ready(fresh, tmp_path)
    keys_file = keys(fresh, tmp_path, events)
    fresh.clear_faults()
    rules = [
        fresh.fail(Fault.THROTTLE, op="BatchWriteItem", nth=1),
        fresh.fail(Fault.UNPROCESSED, op="BatchWriteItem", nth=2, times=3),
        fresh.fail(Fault.THROTTLE, op="BatchWriteItem", nth=7, times=2),
        fresh.fail(Fault.UNPROCESSED, op="BatchWriteItem", nth=12),
        fresh.fail(Fault.UNPROCESSED, op="BatchGetItem", nth=1, times=2),
        fresh.fail(Fault.THROTTLE, op="BatchGetItem", nth=5),
    ]
    r = run_cli(
        fresh.env(),
        "sync",
        str(config),
        "--keys",
        str(keys_file),
        "--source-table",
        "Source",
        "--quiet",
    )
    assert r.returncode == 0, r.stdout + r.stderr
    assert all(rule.fired == rule.times for rule in rules), [(x.op, x.nth, x.fired) for x in rules]
    writes = fresh.calls("BatchWriteItem")
    assert len(writes) > 12
    assert max(c.requests for c in writes) == 25  # full batches, never more
    assert max(c.requests for c in fresh.calls("BatchGetItem")) <= 100
    assert "requests retried" in r.stdout and " 0 requests retried" not in r.stdout
    fresh.clear_faults()
    assert_targets_match_source(fresh, tmp_path)


def test_keys_that_keep_failing_are_written_out_and_exit_1(
    fresh: FaultyDynamo, tmp_path: Path
) -> None:
    config, events, _ = catch_up_ready(fresh, tmp_path)
    keys_file = keys(fresh, tmp_path, events)
    fresh.clear_faults()
    fresh.fail(Fault.THROTTLE, op="BatchWriteItem", nth=1, times=10_000)
    failed = tmp_path / "failed.jsonl"
    args = [
        "--source-table",
        "Source",
        "--quiet",
        "--max-attempts",
        "3",
        "--failed-keys",
        str(failed),
    ]
    r = run_cli(fresh.env(), "sync", str(config), "--keys", str(keys_file), *args)
    assert r.returncode == 1, r.stdout + r.stderr
    lines = [json.loads(line) for line in failed.read_text().splitlines()]
    assert lines and all("throttled" in x["reason"] and "Keys" in x for x in lines)
    assert counts(r.stdout)["failed"] == len(lines)
    assert str(failed) in r.stdout
    # The failed-keys file is a keys file: feeding it back finishes the job.
    fresh.clear_faults()
    r = run_cli(
        fresh.env(),
        "sync",
        str(config),
        "--keys",
        str(failed),
        "--source-table",
        "Source",
        "--quiet",
    )
    assert r.returncode == 0, r.stdout + r.stderr
    assert_targets_match_source(fresh, tmp_path)


@pytest.mark.parametrize("concurrency", [1, 16])
@pytest.mark.parametrize("fault", [Fault.EXPIRED_TOKEN, Fault.FORBIDDEN])
def test_what_refuses_every_key_alike_stops_sync_with_one_line(
    fresh: FaultyDynamo, tmp_path: Path, concurrency: int, fault: Fault
) -> None:
    """An expired token, or an HTML 403 for every call (a proxy or firewall in the way), would
    refuse every key alike: stop (exit 2), not fail them all one by one, a call per key, into
    the failed-keys file. Refused credentials stop at once; a foreign 403 after a few in a
    row (one alone may be a filter objecting to one key)."""
    config, events, changed = catch_up_ready(fresh, tmp_path, count=200)
    keys_file = keys(fresh, tmp_path, events)
    fresh.clear_faults()
    fresh.fail(fault, op="BatchGetItem", nth=1, times=10_000)
    failed = tmp_path / "failed.jsonl"
    args = ["--source-table", "Source", "--quiet", "--failed-keys", str(failed)]
    args += ["--concurrency", str(concurrency)]
    r = run_cli(fresh.env(), "sync", str(config), "--keys", str(keys_file), *args)
    assert r.returncode == 2, r.stdout + r.stderr
    (line,) = r.stderr.strip().splitlines()
    assert "Traceback" not in r.stderr
    rounds = -(-changed // 100)
    assert rounds > 1
    calls = len(fresh.calls("BatchGetItem"))
    if fault is Fault.EXPIRED_TOKEN:
        assert "ExpiredTokenException" in line
        # No retries of refused credentials: one call, or at most one per round under way.
        assert 1 <= calls <= (1 if concurrency == 1 else rounds)
    else:
        assert "refused with HTTP 403 by something that is not DynamoDB" in line
        assert "403 Forbidden" in line
        assert calls < 8 + 16 < changed  # not a call per key
    assert not fresh.calls("BatchWriteItem")


def test_one_key_refused_by_a_filter_fails_alone(fresh: FaultyDynamo, tmp_path: Path) -> None:
    """One 403 page (a filter refusing a request's content) is not everything refused: the
    batch's keys are asked for alone, the refused one fails, the rest are synced."""
    config, events, _ = catch_up_ready(fresh, tmp_path, count=200)
    keys_file = keys(fresh, tmp_path, events)
    fresh.clear_faults()
    fresh.fail(Fault.FORBIDDEN, op="BatchGetItem", nth=1, times=1)  # the first batch
    fresh.fail(Fault.FORBIDDEN, op="BatchGetItem", nth=3, times=1)  # its second key alone
    failed = tmp_path / "failed.jsonl"
    args = ["--source-table", "Source", "--quiet", "--failed-keys", str(failed)]
    args += ["--concurrency", "1"]  # calls in a known order
    r = run_cli(fresh.env(), "sync", str(config), "--keys", str(keys_file), *args)
    assert r.returncode == 1, r.stdout + r.stderr
    (line,) = [json.loads(x) for x in failed.read_text().splitlines()]
    assert line["reason"].startswith("Source: 403: <html>"), line
    assert counts(r.stdout)["failed"] == 1


def test_dry_run_lists_the_writes_and_writes_nothing(fresh: FaultyDynamo, tmp_path: Path) -> None:
    config, events, _ = catch_up_ready(fresh, tmp_path, count=200)
    keys_file = keys(fresh, tmp_path, events)
    client = fresh.client()
    before = {t: multiset(scan(client, t)) for t in TARGETS}
    fresh.clear_faults()
    r = run_cli(
        fresh.env(),
        "sync",
        str(config),
        "--keys",
        str(keys_file),
        "--source-table",
        "Source",
        "--dry-run",
        "--quiet",
    )
    assert r.returncode == 0, r.stderr
    assert not fresh.calls("BatchWriteItem")
    assert {t: multiset(scan(client, t)) for t in TARGETS} == before
    listed = [line for line in r.stdout.splitlines() if line.startswith(("put ", "delete "))]
    got = counts(r.stdout)
    assert len([x for x in listed if x.startswith("put ")]) == got["put"]
    assert len([x for x in listed if x.startswith("delete ")]) == got["deleted"] > 0
    assert any("Comments" in x and "gone from the source" in x for x in listed)


def test_max_wcu_paces_the_writes(fresh: FaultyDynamo, tmp_path: Path) -> None:
    items, config = migrate(fresh, tmp_path, 120)
    since = datetime.now(UTC).isoformat()
    time.sleep(0.05)
    posts = [it for it in items if it["kind"]["S"] == "post"][:30]
    for it in posts:
        fresh.client().delete_item(
            TableName="Source", Key=item_to_client({"pk": it["pk"], "sk": it["sk"]})
        )
    events = tmp_path / "events.jsonl"  # one record per line this time
    records = stream_records(fresh.client(), fresh.client("dynamodbstreams"), "Source")
    events.write_text("".join(json.dumps(x) + "\n" for x in records))
    (tmp_path / "since").write_text(since)
    keys_file = keys(fresh, tmp_path, events)
    fresh.clear_faults()
    started = time.monotonic()
    r = run_cli(
        fresh.env(),
        "sync",
        str(config),
        "--keys",
        str(keys_file),
        "--source-table",
        "Source",
        "--max-wcu",
        "10",
        "--quiet",
    )
    elapsed = time.monotonic() - started
    assert r.returncode == 0, r.stderr
    assert max(c.requests for c in fresh.calls("BatchWriteItem")) <= 10
    # 30 one-unit deletes at 10 units/s, the first 10 from the full bucket: at least 2 s.
    assert elapsed >= 2.0
    waited = float(re.search(r"([\d.]+) s waited", r.stdout).group(1))  # type: ignore[union-attr]
    assert waited >= 1.8
    assert_targets_match_source(fresh, tmp_path)


def test_sync_from_an_incremental_export(fresh: FaultyDynamo, tmp_path: Path) -> None:
    config, events, changed = catch_up_ready(fresh, tmp_path, count=240)
    since = datetime.fromisoformat((tmp_path / "since").read_text()).timestamp()
    records = [
        r
        for r in json.loads(events.read_text())["Records"]
        if r["dynamodb"]["ApproximateCreationDateTime"] >= since
    ]
    # What an incremental export holds: one line per key, its first old and its last new image.
    per_key: dict[str, dict[str, Any]] = {}
    for r in records:
        body = r["dynamodb"]
        k = json.dumps(body["Keys"], sort_keys=True)
        line = per_key.setdefault(k, {"Keys": body["Keys"], "OldImage": body.get("OldImage")})
        line["Metadata"] = {
            "WriteTimestampMicros": {"N": str(int(body["ApproximateCreationDateTime"] * 1e6))}
        }
        line["NewImage"] = body.get("NewImage")
    lines = []
    for line in per_key.values():
        if line["OldImage"] is None and line["NewImage"] is None:
            continue  # inserted and deleted in the window: no output (AWS-FORMATS.md §2)
        lines.append({k: v for k, v in line.items() if v is not None})
    local = write_incremental_export(tmp_path / "incremental", lines)
    # On S3, as AWS writes it: the export is read through its manifest from s3://.
    s3 = fresh.client("s3")
    s3.create_bucket(Bucket="exports")
    for f in (tmp_path / "incremental").rglob("*"):
        if f.is_file():
            s3.put_object(
                Bucket="exports",
                Key=f"run1/{f.relative_to(tmp_path / 'incremental')}",
                Body=f.read_bytes(),
            )
    root = f"s3://exports/run1/AWSDynamoDB/{local.name}/"
    r = run_cli(
        fresh.env(), "keys", "--from", "incremental", root, "--out", "s3://exports/keys.jsonl"
    )
    assert r.returncode == 0, r.stderr
    written = s3.get_object(Bucket="exports", Key="keys.jsonl")["Body"].read().decode()
    assert len(written.splitlines()) == changed - 1  # the ghost is not in the export
    r = run_cli(fresh.env(), "sync", str(config), "--from", "incremental", root, "--quiet")
    assert r.returncode == 0, r.stdout + r.stderr
    assert not fresh.calls("BatchGetItem") or all(
        c.requests <= 100 for c in fresh.calls("BatchGetItem")
    )
    assert_targets_match_source(fresh, tmp_path)


def test_target_lines_delete_leftovers_before_source_keys_are_put(
    fresh: FaultyDynamo, tmp_path: Path
) -> None:
    items, config = migrate(fresh, tmp_path, 80)
    client = fresh.client()
    stray = {"cid": {"S": "C#stray"}, "body": {"S": "left behind"}}
    client.put_item(TableName="Comments", Item=item_to_client(stray))
    post = next(it for it in items if it["kind"]["S"] == "post")
    post_key = {"pk": post["pk"], "sk": post["sk"]}
    lines = [
        {"Target": "Comments", "Keys": {"cid": {"S": "C#stray"}}},
        {"Keys": post_key, "t": 1},  # its source item produces the copy the next line deletes
        {"Target": "Posts", "Keys": post_key},
        {"Target": "Nowhere", "Keys": {"cid": {"S": "x"}}},
        {"Keys": {"id": {"S": "x"}}},  # not Source's key
    ]
    keys_file = tmp_path / "keys.jsonl"
    keys_file.write_text("".join(json.dumps(x) + "\n" for x in lines))
    failed = tmp_path / "failed.jsonl"
    args = ["--keys", str(keys_file), "--source-table", "Source", "--failed-keys", str(failed)]
    r = run_cli(fresh.env(), "sync", str(config), *args, "--quiet")
    assert r.returncode == 1, r.stdout + r.stderr
    reasons = [json.loads(x)["reason"] for x in failed.read_text().splitlines()]
    assert len(reasons) == 2
    assert "no target or table named 'Nowhere'" in reasons[0]
    assert "Keys name id, but Source's key is pk, sk" in reasons[1]
    assert counts(r.stdout)["deleted"] == 2 and counts(r.stdout)["put"] == 1
    assert_targets_match_source(fresh, tmp_path)  # the stray is gone, the post is back


def test_a_config_that_does_not_match_the_tables_stops_before_any_write(
    fresh: FaultyDynamo, tmp_path: Path
) -> None:
    client = fresh.client()
    client.create_table(
        TableName="Posts",
        KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}],
        BillingMode="PAY_PER_REQUEST",
    )
    config = tmp_path / "c.toml"
    config.write_text(config_for(tmp_path / "export", tmp_path / "out"))
    keys_file = tmp_path / "keys.jsonl"
    keys_file.write_text('{"Keys":{"pk":{"S":"a"},"sk":{"S":"b"}}}\n')
    args = ["--keys", str(keys_file), "--source-table", "Source"]
    r = run_cli(fresh.env(), "sync", str(config), *args)
    assert r.returncode == 2
    assert "table Posts has the key (pk S), the config declares (pk S, sk S)" in r.stderr
    assert not fresh.calls("BatchWriteItem") and not fresh.calls("BatchGetItem")


# --- issue 18 ------------------------------------------------------------------------------


def test_records_from_before_the_export_do_not_hide_copies_at_source_key_targets(
    fresh: FaultyDynamo, tmp_path: Path
) -> None:
    """Records collected all along (an archiver Lambda, or a record in the export's own second)
    make the oldest record of an item the INSERT made before the export: its OldImage is null
    although the targets hold the item. Copies at the keys the source key alone gives (Posts)
    must still be looked for, and moved or deleted."""
    items, config = migrate(fresh, tmp_path, 60)
    client = fresh.client()
    posts = [it for it in items if it["kind"]["S"] == "post"]
    gone, moved, dropped = posts[0], posts[1], posts[2]

    def key(it: dict[str, Any]) -> dict[str, Any]:
        return {"pk": it["pk"], "sk": it["sk"]}

    def set_kind(it: dict[str, Any], kind: str) -> None:
        client.update_item(
            TableName="Source",
            Key=item_to_client(key(it)),
            UpdateExpression="SET kind = :k",
            ExpressionAttributeValues={":k": {"S": kind}},
        )

    client.delete_item(TableName="Source", Key=item_to_client(key(gone)))
    set_kind(moved, "comment")
    set_kind(dropped, "profile")  # matches no target (unmatched = "drop")
    events = tmp_path / "events.json"
    records = stream_records(client, fresh.client("dynamodbstreams"), "Source")
    events.write_text(json.dumps({"Records": records}))
    keys_file = tmp_path / "keys.jsonl"
    r = run_cli(fresh.env(), "keys", "--from", "streams", str(events), "--out", str(keys_file))
    assert r.returncode == 0, r.stderr
    lines = {canonical(x["Keys"]): x for x in map(json.loads, keys_file.read_text().splitlines())}
    changed = [canonical(key(it)) for it in (gone, moved, dropped)]
    assert all(lines[k]["OldImage"] is None for k in changed)  # the premise: the load's INSERTs
    (tmp_path / "before").mkdir()
    with pytest.raises(AssertionError):
        assert_targets_match_source(fresh, tmp_path / "before")
    args = ["--keys", str(keys_file), "--source-table", "Source", "--quiet"]
    dry = run_cli(fresh.env(), "sync", str(config), *args, "--dry-run")
    assert dry.returncode == 0, dry.stdout + dry.stderr
    deletes = sorted(x for x in dry.stdout.splitlines() if x.startswith("delete Posts "))
    want = sorted(
        f"delete Posts {json.dumps(key(it), separators=(',', ':'))}  ({why})"
        for it, why in [(gone, "gone from the source"), (moved, "changed"), (dropped, "changed")]
    )
    assert deletes == want, dry.stdout  # OldImage null, yet not "inserted": a copy was found
    r = run_cli(fresh.env(), "sync", str(config), *args)
    assert r.returncode == 0, r.stdout + r.stderr
    assert counts(r.stdout)["deleted"] == 3
    assert_targets_match_source(fresh, tmp_path)


def _unmatched_reject_config(config: Path) -> Path:
    text = config.read_text()
    assert 'unmatched = "drop"' in text
    strict = config.with_name("reject.toml")
    strict.write_text(text.replace('unmatched = "drop"', 'unmatched = "reject"'))
    return strict


def test_a_key_matching_no_target_is_counted_once(fresh: FaultyDynamo, tmp_path: Path) -> None:
    items, config = migrate(fresh, tmp_path, 40)
    strict = _unmatched_reject_config(config)
    client = fresh.client()
    post = next(it for it in items if it["kind"]["S"] == "post")
    comment = next(it for it in items if it["kind"]["S"] == "comment")
    post_key = {"pk": post["pk"], "sk": post["sk"]}
    comment_key = {"pk": comment["pk"], "sk": comment["sk"]}
    client.update_item(
        TableName="Source",
        Key=item_to_client(post_key),
        UpdateExpression="SET kind = :k",
        ExpressionAttributeValues={":k": {"S": "profile"}},
    )
    # Comments builds its key from user_id: without one, Comments refuses the item.
    client.update_item(
        TableName="Source", Key=item_to_client(comment_key), UpdateExpression="REMOVE user_id"
    )
    keys_file = tmp_path / "keys.jsonl"
    keys_file.write_text(
        json.dumps({"Keys": post_key, "OldImage": post})
        + "\n"
        + json.dumps({"Keys": comment_key, "OldImage": comment})
        + "\n"
    )
    failed = tmp_path / "failed.jsonl"
    args = ["--keys", str(keys_file), "--source-table", "Source", "--failed-keys", str(failed)]
    r = run_cli(fresh.env(), "sync", str(strict), *args, "--quiet")
    assert r.returncode == 1, r.stdout + r.stderr
    assert "  matching no target: 1 (unmatched = 'reject')" in r.stdout, r.stdout
    assert "  rejected by a target: 1\n" in r.stdout, r.stdout
    assert f"keys not synced (2): {failed}" in r.stdout
    reasons = sorted(json.loads(x)["reason"] for x in failed.read_text().splitlines())
    assert reasons == [
        "rejected: Comments: template_missing_attribute",
        "rejected: matches no target",
    ]
    # Only the unmatched key: counted as matching no target, not as rejected as well.
    keys_file.write_text(json.dumps({"Keys": post_key, "OldImage": post}) + "\n")
    r = run_cli(fresh.env(), "sync", str(strict), *args, "--quiet")
    assert r.returncode == 1, r.stdout + r.stderr
    assert "  matching no target: 1 (unmatched = 'reject')" in r.stdout, r.stdout
    assert "rejected by a target" not in r.stdout, r.stdout
    assert f"keys not synced (1): {failed}" in r.stdout


def _tables(ddb: FaultyDynamo, tmp_path: Path) -> Path:
    """Source, Posts and Comments, empty, and the scenario's config for them."""
    client = ddb.client()
    create_table(client, "Source", "pk", "sk")
    create_table(client, "Posts", "pk", "sk")
    create_table(client, "Comments", "cid")
    config = tmp_path / "migration.toml"
    config.write_text(config_for(tmp_path / "export", tmp_path / "out"))
    return config


def test_a_dry_run_writes_no_file(fresh: FaultyDynamo, tmp_path: Path) -> None:
    config = _tables(fresh, tmp_path)
    keys_file = tmp_path / "keys.jsonl"
    keys_file.write_text('{"Keys":{"id":{"S":"not Source\'s key"}}}\n')
    work = tmp_path / "cwd"
    work.mkdir()
    args = ["--keys", str(keys_file), "--source-table", "Source", "--dry-run", "--quiet"]
    r = run_cli(fresh.env(), "sync", str(config), *args, cwd=work)
    assert r.returncode == 1, r.stdout + r.stderr
    assert "sync-failed-keys.jsonl not written" in r.stdout, r.stdout
    assert list(work.iterdir()) == []  # the default failed-keys file is not there
    failed = tmp_path / "failed.jsonl"
    r = run_cli(fresh.env(), "sync", str(config), *args, "--failed-keys", str(failed), cwd=work)
    assert r.returncode == 1, r.stdout + r.stderr
    assert not failed.exists() and list(work.iterdir()) == []
    assert not fresh.calls("BatchWriteItem")


def test_malformed_lines_are_named_then_counted_and_a_member_twice_is_one(
    fresh: FaultyDynamo, tmp_path: Path
) -> None:
    config = _tables(fresh, tmp_path)
    post = {"pk": {"S": "U#1"}, "sk": {"S": "P#1"}, "kind": {"S": "post"}}
    fresh.client().put_item(TableName="Source", Item=item_to_client(post))
    nowhere = '{"pk":{"S":"U#0"},"sk":{"S":"P#0"}}'
    # Line 3 names Keys twice; json.loads would take the last, the post, and sync it.
    bad = [
        "{not json",
        '{"Keys":{"pk":{"N":"x"},"sk":{"S":"a"}}}',
        f'{{"Keys":{nowhere},"Keys":{{"pk":{{"S":"U#1"}},"sk":{{"S":"P#1"}}}}}}',
        '{"Keys":{"pk":{"S":"a"},"sk":{"S":"b"}},"t":"soon"}',
    ] * 3  # 12 malformed lines
    lines = [*bad[:5], f'{{"Keys":{nowhere}}}', *bad[5:]]
    keys_file = tmp_path / "keys.jsonl"
    keys_file.write_text("\n".join(lines) + "\n")
    args = ["--keys", str(keys_file), "--source-table", "Source", "--quiet"]
    r = run_cli(fresh.env(), "sync", str(config), *args, cwd=tmp_path)
    assert r.returncode == 1, r.stdout + r.stderr
    named = [x for x in r.stderr.splitlines() if x.startswith("ddbshard sync: malformed: ")]
    numbers = [n for n in range(1, len(lines) + 1) if n != 6]
    prefix = f"ddbshard sync: malformed: {keys_file}: "
    assert all(x.startswith(prefix) for x in named), named
    assert [x[len(prefix) :].split(": ")[0] for x in named] == [f"line {n}" for n in numbers[:10]]
    assert named[2].endswith(": the member 'Keys' appears twice in one JSON object")
    assert "not JSON" in named[0] and "'t' must be microseconds" in named[3]
    assert "ddbshard sync: ... and 2 more malformed input lines" in r.stderr, r.stderr
    assert "malformed input lines skipped: 12" in r.stdout
    assert counts(r.stdout)["keys"] == 1  # the one valid line
    assert scan(fresh.client(), "Posts") == []  # the line naming Keys twice synced nothing


def _no_aws_env(**extra: str) -> dict[str, str]:
    """The environment of a machine with no AWS configuration at all."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env.update(
        AWS_SHARED_CREDENTIALS_FILE="/nonexistent/ddbshard-test/credentials",
        AWS_CONFIG_FILE="/nonexistent/ddbshard-test/config",
        AWS_EC2_METADATA_DISABLED="true",
        **extra,
    )
    return env


@pytest.mark.parametrize("missing", ["region", "credentials"])
def test_missing_aws_configuration_is_one_line_and_exit_2(
    fresh: FaultyDynamo, tmp_path: Path, missing: str
) -> None:
    config = _tables(fresh, tmp_path)
    fresh.clear_faults()  # and the log of calls
    keys_file = tmp_path / "keys.jsonl"
    keys_file.write_text('{"Keys":{"pk":{"S":"a"},"sk":{"S":"b"}}}\n')
    if missing == "region":  # credentials are there: only the region is missing
        env = _no_aws_env(AWS_ACCESS_KEY_ID="testing", AWS_SECRET_ACCESS_KEY="testing")
        expected = ["AWS_REGION", "AWS_DEFAULT_REGION", "--region"]
    else:  # the region is there, and the endpoint is moto should credentials turn up after all
        env = _no_aws_env(AWS_REGION="us-east-1", AWS_ENDPOINT_URL=fresh.endpoint)
        expected = ["credentials", "AWS_ACCESS_KEY_ID", "AWS_PROFILE"]
    started = time.monotonic()
    args = ["--keys", str(keys_file), "--source-table", "Source"]
    r = run_cli(env, "sync", str(config), *args, cwd=tmp_path)
    elapsed = time.monotonic() - started
    assert r.returncode == 2, r.stdout + r.stderr
    assert "Traceback" not in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert r.stderr.startswith("ddbshard: error: ")
    assert all(word in r.stderr for word in expected), r.stderr
    assert "throttled" not in r.stderr
    assert elapsed < 8, elapsed  # no backoff: the first call says it (Python starts in ~1 s)
    assert not fresh.calls()  # nothing reached DynamoDB
    assert list(tmp_path.glob("*failed*")) == []


# --- issue 20: rounds in flight ------------------------------------------------------------


def _comment(pk: str, sk: str, user: str, body: str) -> dict[str, Any]:
    return {"pk": {"S": pk}, "sk": {"S": sk}, "kind": {"S": "comment"}, "user_id": {"S": user},
            "body": {"S": body}}  # fmt: skip


def _copy(item: dict[str, Any]) -> dict[str, Any]:
    """What the scenario's config puts in Comments for a comment."""
    keep = {k: v for k, v in item.items() if k != "pk"}
    return {**keep, "cid": {"S": f"C#{item['user_id']['S']}#{item['sk']['S']}"}}


@pytest.mark.parametrize("concurrency", [1, 16])
def test_a_key_moving_into_the_copy_another_key_leaves_is_written_after_it(
    fresh: FaultyDynamo, tmp_path: Path, concurrency: int
) -> None:
    """A leaves Comments key C#U1#S1 (its user changed) and B moves into it, A in the first
    round, B in the second. B's round must wait for A's to delete the old copy: the other way
    round A's delete would remove B's new item. A's delete is the last of 101 writes in its
    round, B's round has two: in flight together, B's would come first."""
    config = _tables(fresh, tmp_path)
    client = fresh.client()
    fillers = [
        {"pk": {"S": f"F#{i:03d}"}, "sk": {"S": "S"}, "kind": {"S": "post"}} for i in range(99)
    ]
    a_old, a_new = _comment("U#a", "S1", "U1", "a"), _comment("U#a", "S1", "U2", "a")
    b_old, b_new = _comment("U#b", "S1", "U9", "b"), _comment("U#b", "S1", "U1", "b")
    for it in [*fillers, a_new, b_new]:
        client.put_item(TableName="Source", Item=item_to_client(it))
    for it in (a_old, b_old):  # what the targets hold from before
        client.put_item(TableName="Comments", Item=item_to_client(_copy(it)))
    lines = [{"Keys": {"pk": it["pk"], "sk": it["sk"]}, "OldImage": None} for it in fillers]
    lines += [{"Keys": {"pk": it["pk"], "sk": it["sk"]}, "OldImage": it} for it in (a_old, b_old)]
    keys_file = tmp_path / "keys.jsonl"
    keys_file.write_text("".join(json.dumps(x) + "\n" for x in lines))
    args = ["--keys", str(keys_file), "--source-table", "Source", "--quiet"]
    r = run_cli(fresh.env(), "sync", str(config), *args, "--concurrency", str(concurrency))
    assert r.returncode == 0, r.stdout + r.stderr
    assert counts(r.stdout) == {
        "keys": 101, "read": 101, "put": 101, "deleted": 2, "unchanged": 0, "failed": 0
    }  # fmt: skip
    have = sorted(x["cid"]["S"] for x in scan(client, "Comments"))
    assert have == ["C#U1#S1", "C#U2#S1"]
    assert_targets_match_source(fresh, tmp_path)


@pytest.mark.parametrize("concurrency", [1, 16])
def test_a_keys_file_given_twice_syncs_each_key_once(
    fresh: FaultyDynamo, tmp_path: Path, concurrency: int
) -> None:
    """The second copy of a key waits for the first: it finds the targets up to date (all
    unchanged), where rounds racing would both read the old state and write twice."""
    config, events, changed = catch_up_ready(fresh, tmp_path)
    keys_file = keys(fresh, tmp_path, events)
    fresh.clear_faults()
    args = ["--source-table", "Source", "--quiet", "--concurrency", str(concurrency)]
    dry = run_cli(fresh.env(), "sync", str(config), "--keys", str(keys_file), *args, "--dry-run")
    assert dry.returncode == 0, dry.stdout + dry.stderr
    once = counts(dry.stdout)
    twice = ["--keys", str(keys_file), "--keys", str(keys_file)]
    r = run_cli(fresh.env(), "sync", str(config), *twice, *args)
    assert r.returncode == 0, r.stdout + r.stderr
    assert counts(r.stdout) == {
        "keys": 2 * changed,
        "read": 2 * once["read"],
        "put": once["put"],
        "deleted": once["deleted"],
        "unchanged": once["unchanged"] + changed,
        "failed": 0,
    }
    assert_targets_match_source(fresh, tmp_path)


@pytest.mark.parametrize("concurrency", [1, 16])
def test_rounds_in_flight_lose_nothing_to_unprocessed_items_and_throttling(
    fresh: FaultyDynamo, tmp_path: Path, concurrency: int
) -> None:
    config, events, changed = catch_up_ready(fresh, tmp_path)
    keys_file = keys(fresh, tmp_path, events)
    fresh.clear_faults()
    # Every other call of each kind partly or wholly refused, for the first 30 of each.
    for n in range(1, 30, 2):
        fault = Fault.THROTTLE if n % 4 == 1 else Fault.UNPROCESSED
        fresh.fail(fault, op="BatchWriteItem", nth=n)
        fresh.fail(fault, op="BatchGetItem", nth=n)
    args = ["--keys", str(keys_file), "--keys", str(keys_file), "--source-table", "Source"]
    r = run_cli(
        fresh.env(), "sync", str(config), *args, "--quiet", "--concurrency", str(concurrency)
    )
    assert r.returncode == 0, r.stdout + r.stderr
    assert counts(r.stdout)["keys"] == 2 * changed and counts(r.stdout)["failed"] == 0
    assert any(c.outcome == Fault.THROTTLE.value for c in fresh.calls("BatchWriteItem"))
    assert any(c.outcome == Fault.UNPROCESSED.value for c in fresh.calls("BatchGetItem"))
    fresh.clear_faults()
    assert_targets_match_source(fresh, tmp_path)


def test_counts_are_the_same_with_1_and_16_rounds_in_flight(
    ddb: FaultyDynamo, tmp_path: Path
) -> None:
    """The same random writes (800 of them on 500 items: 400-odd keys, 5 rounds) replayed on
    a fresh migration twice: the summary and the targets must not depend on concurrency."""
    results = []
    for concurrency in (1, 16):
        ddb.reset()
        tmp = tmp_path / f"c{concurrency}"
        tmp.mkdir()
        items, config = migrate(ddb, tmp, 500)
        time.sleep(0.05)  # the load's records are before --since, the changes after
        since = datetime.now(UTC)
        time.sleep(0.05)
        change_at_random(ddb, items, seed=20, writes=800)
        records = stream_records(ddb.client(), ddb.client("dynamodbstreams"), "Source")
        events = tmp / "events.jsonl"
        events.write_text("".join(json.dumps(x) + "\n" for x in records))
        (tmp / "since").write_text(since.isoformat())
        keys_file = keys(ddb, tmp, events)
        args = ["--keys", str(keys_file), "--source-table", "Source", "--quiet"]
        r = run_cli(ddb.env(), "sync", str(config), *args, "--concurrency", str(concurrency))
        assert r.returncode == 0, r.stdout + r.stderr
        assert_targets_match_source(ddb, tmp)
        summary = [x for x in r.stdout.splitlines() if not x.strip().endswith("retried")]
        results.append((re.sub(r" in [\d.]+ s", "", "\n".join(summary)), counts(r.stdout)))
    assert results[0][1]["keys"] > 400, results
    assert results[1] == results[0]


@pytest.mark.parametrize("concurrency", [1, 16])
def test_unmatched_error_stops_and_says_which_keys_were_synced(
    fresh: FaultyDynamo, tmp_path: Path, concurrency: int
) -> None:
    """Key 150 of 250 matches no target under unmatched = "error": the keys before it are
    synced (its own round's too), and with rounds in flight the message counts the keys after
    it that a round already under way synced: what Posts holds is what the message says."""
    config = _tables(fresh, tmp_path)
    strict = tmp_path / "strict.toml"
    strict.write_text(config.read_text().replace('unmatched = "drop"', 'unmatched = "error"'))
    client = fresh.client()
    kinds = ["profile" if i == 150 else "post" for i in range(250)]
    items = [
        {"pk": {"S": f"P#{i:03d}"}, "sk": {"S": "S"}, "kind": {"S": kind}}
        for i, kind in enumerate(kinds)
    ]
    load(client, "Source", items)
    keys_file = tmp_path / "keys.jsonl"
    lines = [json.dumps({"Keys": {"pk": it["pk"], "sk": it["sk"]}}) + "\n" for it in items]
    keys_file.write_text("".join(lines))
    args = ["--keys", str(keys_file), "--source-table", "Source", "--quiet"]
    r = run_cli(fresh.env(), "sync", str(strict), *args, "--concurrency", str(concurrency))
    assert r.returncode == 2, r.stdout + r.stderr
    assert len(r.stderr.strip().splitlines()) == 1 and "Traceback" not in r.stderr, r.stderr
    assert f"{keys_file}: line 151: the item matches no target" in r.stderr, r.stderr
    assert "keys before it have been synced" in r.stderr
    after = re.search(r"and ([\d,]+) keys after it", r.stderr)
    if concurrency == 1:
        assert after is None
    synced = sorted(x["pk"]["S"] for x in scan(client, "Posts"))
    assert synced[:150] == [f"P#{i:03d}" for i in range(150)]
    assert len(synced) == 150 + (int(after.group(1)) if after else 0), r.stderr


@pytest.mark.parametrize(("signum", "status"), [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_ctrl_c_or_sigterm_stops_the_rounds_and_prints_the_tally_so_far(
    fresh: FaultyDynamo, tmp_path: Path, signum: int, status: int
) -> None:
    config = _tables(fresh, tmp_path)
    client = fresh.client()
    items = [
        {"pk": {"S": f"P#{i:04d}"}, "sk": {"S": "S"}, "kind": {"S": "post"}} for i in range(3000)
    ]
    load(client, "Source", items)
    keys_file = tmp_path / "keys.jsonl"
    lines = [json.dumps({"Keys": {"pk": it["pk"], "sk": it["sk"]}}) + "\n" for it in items]
    keys_file.write_text("".join(lines))
    fresh.clear_faults()
    fresh.slow(0.05)
    args = ["--keys", str(keys_file), "--source-table", "Source", "--quiet", "--concurrency", "4"]
    cmd = [sys.executable, "-m", "ddbshard", "sync", str(config), *args]
    pipe = subprocess.PIPE
    proc = subprocess.Popen(cmd, env=fresh.env(), stdout=pipe, stderr=pipe, cwd=tmp_path, text=True)
    deadline = time.monotonic() + 60
    while len(fresh.calls("BatchWriteItem")) < 8 and time.monotonic() < deadline:
        assert proc.poll() is None, proc.communicate()
        time.sleep(0.02)
    proc.send_signal(signum)
    out, err = proc.communicate(timeout=60)
    fresh.clear_faults()
    assert proc.returncode == status, out + err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1, err
    assert err.startswith("ddbshard sync: interrupted after "), err
    assert out.startswith("sync (interrupted): "), out
    got = counts(out)
    assert 0 < got["keys"] < len(items)
    assert got["keys"] == got["put"] + got["failed"]  # every key a new post: put or cut short
    assert len(scan(client, "Posts")) >= got["put"]
    assert not (tmp_path / "sync-failed-keys.jsonl").exists()


def test_a_dry_run_lists_the_same_lines_in_the_same_order_at_any_concurrency(
    fresh: FaultyDynamo, tmp_path: Path
) -> None:
    config, events, changed = catch_up_ready(fresh, tmp_path)
    keys_file = keys(fresh, tmp_path, events)
    fresh.clear_faults()
    args = ["--keys", str(keys_file), "--source-table", "Source", "--dry-run", "--quiet"]
    outputs = []
    for concurrency in ("1", "16"):
        r = run_cli(fresh.env(), "sync", str(config), *args, "--concurrency", concurrency)
        assert r.returncode == 0, r.stdout + r.stderr
        lines = [x for x in r.stdout.splitlines() if not x.strip().endswith("retried")]
        outputs.append([re.sub(r" in [\d.]+ s:", ":", x) for x in lines])
    assert changed > 100 and len(outputs[0]) > 100  # more than one round, listed
    assert outputs[1] == outputs[0]
