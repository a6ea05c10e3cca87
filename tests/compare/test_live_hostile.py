"""Live-table copies under faults and odd inputs: what a hostile user of `parquet` and `diff`
with dynamodb:// sides meets, against moto's DynamoDB over HTTP.

- a copy cut short (a scan segment failing for good) must leave no part files behind: its
  finished parts are valid Parquet with the copy's metadata, and a diff given them as the
  expected side would call every item they lack unexpected, which sync then deletes;
- a live source's key is the source key of a routed copy, whatever the config says.
"""

from __future__ import annotations

import json
import signal
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest

from ddbshard.catchup.dynamo import RetryPolicy
from ddbshard.cli import main
from ddbshard.compare import parquetcopy
from ddbshard.compare.livescan import LiveScan
from ddbshard.compare.parquetcopy import CopyOutput, is_parquet_copy, make_copies
from ddbshard.exceptions import InputError
from support.ddb_faults import Fault, FaultyDynamo
from support.ddb_tables import create_typed_table, load, signal_cli
from support.s3_server import reset

pytestmark = pytest.mark.server


@pytest.fixture(scope="module")
def endpoint(moto_endpoint: str) -> Iterator[str]:
    reset(moto_endpoint)
    yield moto_endpoint


def _client(endpoint: str) -> Any:
    import boto3
    from botocore.config import Config

    return boto3.client(
        "dynamodb",
        endpoint_url=endpoint,
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
        config=Config(retries={"total_max_attempts": 1}),
    )


def _parts(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.glob("part-*.parquet")) if folder.exists() else []


def test_a_copy_cut_short_by_a_failing_segment_leaves_no_parts(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Row groups of 100 rows: the workers write parts before the failure, as they do on a
    # table of millions of items with the real 256k.
    monkeypatch.setattr(parquetcopy, "BATCH_ROWS", 100)
    with FaultyDynamo() as server:
        ddb = _client(server.endpoint)
        create_typed_table(ddb, "Cut", ("pk", "S"))
        load(ddb, "Cut", [{"pk": {"S": f"k{i}"}, "v": {"S": "x" * 3000}} for i in range(1500)])
        dest = tmp_path / "copy"

        def scan() -> LiveScan:
            policy = RetryPolicy(max_attempts=2, sleep=lambda _: None)
            return LiveScan("Cut", segments=4, workers=2, ddb=ddb, policy=policy)

        # A whole copy first, then the same copy again (--overwrite), cut short.
        make_copies(scan(), [CopyOutput(str(dest), (("pk", "S"),))], workers=2)
        assert pq.read_table(dest).num_rows == 1500
        server.clear_faults()
        server.fail(Fault.THROTTLE, op="Scan", nth=4, times=10_000)
        with pytest.raises(InputError, match=r"dynamodb://Cut#segment-\d: Scan still"):
            make_copies(scan(), [CopyOutput(str(dest), (("pk", "S"),))], workers=2, overwrite=True)
        assert len(server.calls("Scan")) > 3  # pages were read (and parts written) first
        assert _parts(dest) == [], "a copy cut short must not look like a copy"
        assert not is_parquet_copy(str(dest))


def test_a_routed_copy_of_a_live_table_keeps_the_table_s_key_as_source_key(
    endpoint: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Every target's key is a template, so the config cannot say what the source key is;
    the live table can (DescribeTable), as it does for diff --source dynamodb://."""
    ddb = _client(endpoint)
    create_typed_table(ddb, "TplSource", ("pk", "S"), ("sk", "N"))
    load(
        ddb,
        "TplSource",
        [{"pk": {"S": f"p{i}"}, "sk": {"N": "1.50"}, "user": {"S": f"u{i}"}} for i in range(6)],
    )
    (tmp_path / "src").mkdir()
    cfg = tmp_path / "c.toml"
    cfg.write_text(
        f'source = "{tmp_path / "src"}"\ndest = "{tmp_path / "out"}"\n'
        '[[target]]\nname = "Tpl"\nkey = { hash = "tk" }\nkey_types = { tk = "S" }\n'
        'set = { tk = "T#{user}" }\n'
    )
    dest = tmp_path / "copy"
    code = main(["parquet", "dynamodb://TplSource", str(dest), "--config", str(cfg), "--quiet"])
    err = capsys.readouterr().err
    assert code == 0, err
    assert "no source_key column" not in err
    t = pq.read_table(dest)
    keys = [json.loads(x) for x in t["source_key"].to_pylist()]
    assert sorted(k["pk"]["S"] for k in keys) == [f"p{i}" for i in range(6)]
    assert all(list(k) == ["pk", "sk"] and k["sk"] == {"N": "1.50"} for k in keys), keys
    summary = json.loads((dest / "_summary.json").read_text())
    assert summary["source_key"] == ["pk", "sk"]

    # A --source-key other than the table's key is refused in one line, as diff does.
    args = ["parquet", "dynamodb://TplSource", str(tmp_path / "c2"), "--config", str(cfg)]
    assert main([*args, "--source-key", "user"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "keyed by pk,sk" in err, err
    assert not (tmp_path / "c2").exists()


def test_a_live_source_is_not_described_when_every_target_has_its_expected_copy(
    endpoint: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """With --expected for every target the source is not read: no estimate of a scan that
    does not happen, and a source table since deleted does not stop the diff."""
    ddb = _client(endpoint)
    create_typed_table(ddb, "GoneSource", ("pk", "S"))
    create_typed_table(ddb, "KeptTarget", ("pk", "S"))
    items = [{"pk": {"S": f"p{i}"}, "v": {"N": str(i)}} for i in range(8)]
    load(ddb, "GoneSource", items)
    load(ddb, "KeptTarget", items)
    (tmp_path / "src").mkdir()
    cfg = tmp_path / "c.toml"
    cfg.write_text(
        f'source = "{tmp_path / "src"}"\ndest = "{tmp_path / "out"}"\n'
        '[[target]]\nname = "KeptTarget"\nkey = { hash = "pk" }\nkey_types = { pk = "S" }\n'
    )
    copy = tmp_path / "expected"
    args = ["parquet", "dynamodb://GoneSource", str(copy), "--config", str(cfg), "--quiet"]
    assert main(args) == 0, capsys.readouterr().err
    capsys.readouterr()
    ddb.delete_table(TableName="GoneSource")
    code = main(
        [
            "diff", str(cfg), "--source", "dynamodb://GoneSource",
            "--expected", f"KeptTarget={copy}", "--actual", "KeptTarget=dynamodb://KeptTarget",
            "--out", str(tmp_path / "d"), "--quiet",
        ]
    )  # fmt: skip
    out = capsys.readouterr()
    assert code == 0, out.err
    assert "GoneSource" not in out.err and "dynamodb://KeptTarget: 8 items" in out.err, out.err
    summary = json.loads((tmp_path / "d" / "diff-summary.json").read_text())
    assert list(summary["scans"]) == ["dynamodb://KeptTarget"]
    assert summary["targets"]["KeptTarget"]["matched"] == 8


class _SlowBudgetTable:
    """Segment 1's first page costs 40 read units (its cost unknown until read), so under
    --max-rcu 1 its next page waits about 80 s for the budget; segment 0 is refused for
    good once segment 1 waits."""

    def describe_table(self, TableName: str) -> dict[str, Any]:
        return {
            "Table": {
                "KeySchema": [{"AttributeName": "pk", "KeyType": "HASH"}],
                "AttributeDefinitions": [{"AttributeName": "pk", "AttributeType": "S"}],
                "ItemCount": 0,
                "TableSizeBytes": 0,
            }
        }

    def scan(self, **kw: Any) -> dict[str, Any]:
        from botocore.exceptions import ClientError

        if kw["Segment"] == 1:
            item = {"pk": {"S": f"k{len(kw.get('ExclusiveStartKey', {}))}"}}
            return {
                "Items": [item],
                "ConsumedCapacity": {"CapacityUnits": 40.0},
                "LastEvaluatedKey": item,
            }
        deadline = time.monotonic() + 30
        while not _in_budget_wait() and time.monotonic() < deadline:
            threading.Event().wait(0.001)
        error = {"Error": {"Code": "ValidationException", "Message": "refused"}}
        raise ClientError(error, "Scan")  # type: ignore[arg-type]


def _in_budget_wait() -> bool:
    for frame in list(sys._current_frames().values()):
        f: Any = frame
        while f is not None:
            if f.f_code.co_name == "reserve" and "readbudget" in f.f_code.co_filename:
                return True
            f = f.f_back
    return False


def test_a_segment_failing_for_good_does_not_wait_for_another_s_read_budget(
    tmp_path: Path,
) -> None:
    scan = LiveScan("Slow", segments=2, workers=2, max_rcu=1.0, ddb=_SlowBudgetTable())
    started = time.monotonic()
    with pytest.raises(InputError, match=r"dynamodb://Slow#segment-0: Scan refused"):
        make_copies(scan, [CopyOutput(str(tmp_path / "c"), (("pk", "S"),))], workers=2)
    # Not the ~80 s segment 1's budget wait would last: the failure ends every wait.
    assert time.monotonic() - started < 20


def test_ctrl_c_stops_a_diff_s_live_scan_at_once(tmp_path: Path) -> None:
    """The main thread waits for the copy's workers; a SIGINT the kernel hands to another of
    the process's threads (diff has polars' too) must still stop the scan then, not when a
    worker happens to end: before, diff read the whole table first (a real one: hours)."""
    with FaultyDynamo() as server:
        ddb = _client(server.endpoint)
        create_typed_table(ddb, "Slow", ("pk", "S"))
        create_typed_table(ddb, "SlowT", ("pk", "S"))
        load(ddb, "Slow", [{"pk": {"S": f"k{i}"}} for i in range(200)])
        (tmp_path / "src").mkdir()
        cfg = tmp_path / "c.toml"
        cfg.write_text(
            f'source = "{tmp_path / "src"}"\ndest = "{tmp_path / "out"}"\n'
            '[[target]]\nname = "SlowT"\nkey = { hash = "pk" }\nkey_types = { pk = "S" }\n'
        )
        server.slow(0.2)  # 40 segments, one page each, 2 workers: about 4 s in all
        args = [
            "diff",
            str(cfg),
            "--source",
            "dynamodb://Slow",
            "--actual",
            "SlowT=dynamodb://SlowT",
        ]
        args += ["--segments", "40", "--workers", "2", "--quiet", "--out", str(tmp_path / "d")]

        def scanning() -> bool:
            return len(server.calls("Scan")) >= 2

        r = signal_cli(server.env(), *args, when=scanning, signum=signal.SIGINT)
        err = r.stderr
        assert r.returncode == 130, err
        assert "Traceback" not in err and err.strip().splitlines()[-1] == "ddbshard: interrupted"
        scans = len(server.calls("Scan"))
        assert scans < 20, f"{scans} Scan pages read after Ctrl-C"


def test_an_s3_output_whose_bucket_is_missing_is_refused_before_the_scan(tmp_path: Path) -> None:
    """Found only at the first write, a missing bucket cost a whole scan of the table (hours
    and read units on a real one) and, for diff, the whole diff."""
    from support.ddb_tables import run_cli

    with FaultyDynamo() as server:
        ddb = _client(server.endpoint)
        create_typed_table(ddb, "Src", ("pk", "S"))
        create_typed_table(ddb, "Tgt", ("pk", "S"))
        load(ddb, "Src", [{"pk": {"S": f"k{i}"}} for i in range(10)])
        (tmp_path / "src").mkdir()
        cfg = tmp_path / "c.toml"
        cfg.write_text(
            f'source = "{tmp_path / "src"}"\ndest = "{tmp_path / "out"}"\n'
            '[[target]]\nname = "Tgt"\nkey = { hash = "pk" }\nkey_types = { pk = "S" }\n'
        )
        diff = ["diff", str(cfg), "--source", "dynamodb://Src", "--actual", "Tgt=dynamodb://Tgt"]
        runs = [
            ["parquet", "dynamodb://Src", "s3://no-such-bucket/copy"],
            [*diff, "--out", "s3://no-such-bucket/diff"],
        ]
        for args in runs:
            r = run_cli(server.env(), *args, "--quiet", cwd=tmp_path)
            assert r.returncode == 2, r.stderr
            lines = [x for x in r.stderr.splitlines() if "DescribeTable's figures" not in x]
            assert len(lines) == 1 and "the bucket no-such-bucket does not" in lines[0], r.stderr
            assert not server.calls("Scan"), args
