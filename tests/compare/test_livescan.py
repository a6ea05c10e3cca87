"""`parquet dynamodb://TABLE` and `diff` with live sides, against moto's DynamoDB over HTTP.

A live copy must be the copy of an export of the same items (same key, item and hash
columns), whatever the number of segments, with throttled pages retried and nothing lost; a
diff of live tables must report what the diff of their files reports. The read-unit budget is
checked with a fake clock and a fake client (moto reports 1 read unit per page, whatever it
reads). Every URI argument refuses an unknown scheme in one line.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest

from ddbshard.catchup.dynamo import RetryPolicy
from ddbshard.cli import main
from ddbshard.compare.livescan import LiveScan, estimate_units
from ddbshard.compare.parquetcopy import CopyOutput, make_copies
from ddbshard.compare.readbudget import ReadBudget
from ddbshard.exceptions import InputError
from support.ddb_faults import Fault, FaultyDynamo
from support.ddb_tables import create_typed_table, load, write_full_export
from support.diff_scenario import KEYS, build_world, check_report, text_lines
from support.s3_server import reset

pytestmark = pytest.mark.server


@pytest.fixture(scope="module")
def endpoint(moto_endpoint: str) -> Iterator[str]:
    reset(moto_endpoint)  # one server for the session, emptied for this module
    yield moto_endpoint


def _client(endpoint: str) -> Any:
    """A client as the scan makes them: botocore's own retries off (catchup.dynamo.client)."""
    import boto3
    from botocore.config import Config

    return boto3.client(
        "dynamodb",
        endpoint_url=endpoint,
        region_name="us-east-1",
        config=Config(retries={"total_max_attempts": 1}),
    )


def _every_type(i: int) -> dict[str, Any]:
    """An item with every attribute type, numbers in non-canonical spellings."""
    return {
        "h": {"N": f"{i % 17}.50"},
        "r": {"B": ["AAE=", "/w==", "AP8A"][i % 3] + ""},
        "s": {"S": f"text é {i}"},
        "n": {"N": "1E3" if i % 2 else "-0.010"},
        "b": {"B": "aGVsbG8="},
        "t": {"BOOL": bool(i % 2)},
        "z": {"NULL": True},
        "ss": {"SS": ["b", "a", f"c{i}"]},
        "ns": {"NS": ["2", "1.0", "10"]},
        "bs": {"BS": ["AQ==", "AA=="]},
        "m": {"M": {"y": {"N": "2"}, "x": {"L": [{"S": "v"}, {"N": "01"}]}}},
        "l": {"L": [{"NULL": True}, {"BOOL": False}, {"M": {}}]},
    }


def _items_by_hash(dest: Path) -> list[tuple[Any, ...]]:
    t = pq.read_table(dest)
    cols = [c for c in t.column_names if c not in ("file", "line")]
    rows = t.select(cols).to_pylist()
    return sorted(tuple(r[c] for c in cols) for r in rows)


def _unique_binary_ranges(items: list[dict[str, Any]]) -> list[dict[str, Any]]:
    seen: set[tuple[str, str]] = set()
    out = []
    for it in items:
        k = (it["h"]["N"], it["r"]["B"])
        if k not in seen:
            seen.add(k)
            out.append(it)
    return out


def test_a_live_copy_is_the_copy_of_an_export_of_the_same_items(
    endpoint: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    ddb = _client(endpoint)
    create_typed_table(ddb, "EveryType", ("h", "N"), ("r", "B"))
    items = _unique_binary_ranges([_every_type(i) for i in range(120)])
    assert len(items) == 51  # 17 hash values x 3 binary ranges
    load(ddb, "EveryType", items)
    export = write_full_export(tmp_path / "export", items)

    live, files = tmp_path / "live", tmp_path / "files"
    code = main(["parquet", "dynamodb://EveryType", str(live), "--segments", "3", "--quiet"])
    assert code == 0, capsys.readouterr().err
    err = capsys.readouterr().err
    # The estimate, before the scan: DescribeTable's figures (moto's size is 0).
    assert "dynamodb://EveryType: 51 items, 0.0 MB" in err
    assert "3 segments" in err and "read units" in err
    code = main(["parquet", str(export), str(files), "--key", "h:N", "--key", "r:B", "--quiet"])
    assert code == 0, capsys.readouterr().err

    # Keyed by the table's key schema without --key: the same columns, the same rows.
    assert (
        pq.read_schema(live / "part-00000.parquet").names
        == pq.read_schema(files / "part-00000.parquet").names
    )
    assert _items_by_hash(live) == _items_by_hash(files)
    t = pq.read_table(live)
    assert set(t["file"].to_pylist()) <= {f"dynamodb://EveryType#segment-{i}" for i in range(3)}
    # line: the item's position in its segment's scan, from 1.
    per_segment: dict[str, list[int]] = {}
    for f, n in zip(t["file"].to_pylist(), t["line"].to_pylist(), strict=True):
        per_segment.setdefault(f, []).append(n)
    for lines in per_segment.values():
        assert sorted(lines) == list(range(1, len(lines) + 1))
    summary = json.loads((live / "_summary.json").read_text())
    assert summary["source"] == "dynamodb://EveryType"
    assert summary["keys"] == [["h", "N"], ["r", "B"]]
    assert summary["scan"]["segments"] == 3
    assert summary["scan"]["items_scanned"] == 51
    assert summary["scan"]["consumed_read_units"] >= 3  # moto: 1 per page, a page per segment


def test_segments_one_and_four_give_the_same_copy(
    endpoint: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    ddb = _client(endpoint)
    create_typed_table(ddb, "Segmented", ("pk", "S"), ("sk", "N"))
    items = [
        {"pk": {"S": f"p{i % 13}"}, "sk": {"N": str(i)}, "v": {"S": "x" * (i % 50)}}
        for i in range(400)
    ]
    load(ddb, "Segmented", items)
    copies = []
    for n in (1, 4):
        dest = tmp_path / f"seg{n}"
        assert main(["parquet", "dynamodb://Segmented", str(dest), "--segments", str(n)]) == 0
        copies.append(_items_by_hash(dest))
        assert len(copies[-1]) == 400
        summary = json.loads((dest / "_summary.json").read_text())
        assert summary["scan"]["segments"] == n
        assert summary["items"]["written"] == 400
    assert copies[0] == copies[1]
    out = capsys.readouterr()
    assert "scan of Segmented: 4 segments" in out.out


def test_a_binary_hash_key_table_scans_in_one_segment(
    endpoint: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """One segment is a plain Scan (moto's parallel Scan fails on a binary hash key)."""
    ddb = _client(endpoint)
    create_typed_table(ddb, "BinaryHash", ("id", "B"))
    items = [{"id": {"B": f"{i:04d}AA=="}, "v": {"N": str(i)}} for i in range(30)]
    load(ddb, "BinaryHash", items)
    dest = tmp_path / "bin"
    assert main(["parquet", "dynamodb://BinaryHash", str(dest), "--segments", "1"]) == 0
    t = pq.read_table(dest)
    assert t.schema.field("id").type == "large_binary"
    assert t.num_rows == 30
    capsys.readouterr()


def test_throttled_pages_are_asked_again_and_no_item_is_lost(tmp_path: Path) -> None:
    with FaultyDynamo() as server:
        ddb = _client(server.endpoint)
        create_typed_table(ddb, "Throttled", ("pk", "S"))
        load(ddb, "Throttled", [{"pk": {"S": f"k{i}"}, "v": {"N": str(i)}} for i in range(300)])
        server.clear_faults()
        server.fail(Fault.THROTTLE, op="Scan", nth=2, times=3)
        server.fail(Fault.THROTTLE, op="Scan", nth=6, times=2)
        slept: list[float] = []
        policy = RetryPolicy(sleep=slept.append)
        scan = LiveScan("Throttled", segments=4, workers=2, ddb=ddb, policy=policy)
        out = CopyOutput(str(tmp_path / "copy"), (("pk", "S"),))
        result = make_copies(scan, [out], workers=2)
        assert result.read == out.rows == 300
        keys = pq.read_table(tmp_path / "copy")["pk"].to_pylist()
        assert sorted(keys) == sorted(f"k{i}" for i in range(300))
        throttled = [c for c in server.calls("Scan") if c.outcome == Fault.THROTTLE.value]
        assert len(throttled) == 5
        assert scan.stats.retried == 5 and len(slept) == 5

        # Throttled past the retries: one line, naming the segment.
        server.clear_faults()
        server.fail(Fault.THROTTLE, op="Scan", nth=1, times=100)
        scan = LiveScan("Throttled", segments=1, ddb=ddb, policy=RetryPolicy(sleep=slept.append))
        with pytest.raises(
            InputError, match=r"dynamodb://Throttled#segment-0: Scan still.*lower --max-rcu"
        ):
            make_copies(scan, [CopyOutput(str(tmp_path / "c2"), (("pk", "S"),))])


# --------------------------------------------------------------------------------------------
# The read-unit budget, with a fake clock


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds


class FakeDynamoDB:
    """A table of `pages` pages of `per_page` items, each page costing `units` read units."""

    def __init__(self, pages: int, per_page: int, units: float) -> None:
        self.pages, self.per_page, self.units = pages, per_page, units
        self.limits: list[int | None] = []

    def describe_table(self, TableName: str) -> dict[str, Any]:
        return {
            "Table": {
                "KeySchema": [{"AttributeName": "pk", "KeyType": "HASH"}],
                "AttributeDefinitions": [{"AttributeName": "pk", "AttributeType": "S"}],
                "ItemCount": self.pages * self.per_page,
                "TableSizeBytes": 0,
            }
        }

    def scan(self, **kw: Any) -> dict[str, Any]:
        start = int(kw.get("ExclusiveStartKey", {}).get("pk", {}).get("S", "-1")) + 1
        limit = kw.get("Limit")
        self.limits.append(limit)
        n = min(limit or self.per_page, self.per_page, self.pages * self.per_page - start)
        items = [{"pk": {"S": str(start + i)}} for i in range(n)]
        answer: dict[str, Any] = {
            "Items": items,
            "ConsumedCapacity": {"CapacityUnits": self.units * n / self.per_page},
        }
        if start + n < self.pages * self.per_page:
            answer["LastEvaluatedKey"] = {"pk": {"S": str(start + n - 1)}}
        return answer


def test_max_rcu_holds_the_rate_and_pages_shrink_to_a_second_of_it() -> None:
    clock = FakeClock()
    fake = FakeDynamoDB(pages=20, per_page=100, units=50.0)  # 1,000 read units in all
    budget = ReadBudget(25.0, clock=clock, sleep=clock.sleep)
    scan = LiveScan("T", segments=1, max_rcu=25.0, ddb=fake, budget=budget)
    lines = b"".join(scan.chunks(0)).splitlines()
    assert len(lines) == 2000
    assert scan.stats.units == pytest.approx(1000.0)
    # The bucket starts with a second's worth: 1,000 units at 25/s take at least 39 s.
    assert clock.now >= (1000.0 - 25.0) / 25.0
    assert clock.now <= 1000.0 / 25.0 + 2.0  # and not much longer: no unit paid twice
    # After the first page, pages are cut to about a second's budget (25 units = 50 items).
    assert fake.limits[0] is None
    assert set(fake.limits[1:]) == {50}

    # Without a budget: no waiting, whole pages.
    clock2 = FakeClock()
    fake2 = FakeDynamoDB(pages=20, per_page=100, units=50.0)
    free = LiveScan("T", segments=1, ddb=fake2)
    assert len(b"".join(free.chunks(0)).splitlines()) == 2000
    assert clock2.now == 0.0 and set(fake2.limits) == {None}


def test_read_budget_is_shared_and_takes_back_an_overestimate() -> None:
    clock = FakeClock()
    budget = ReadBudget(10.0, clock=clock, sleep=clock.sleep)
    budget.reserve(10.0)  # the first second's worth, at once
    assert clock.now == 0.0
    budget.settle(10.0, 30.0)  # the page cost 30: 20 owed
    budget.reserve(1.0)
    assert clock.now == pytest.approx(2.1)  # 20 owed + 1 asked, at 10/s
    budget.settle(1.0, 0.0)  # refused: nothing spent, the unit comes back
    budget.reserve(1.0)
    assert clock.now == pytest.approx(2.1)


def test_estimate_formula() -> None:
    # 10 MB eventually consistent, 4 segments: 2,560 blocks of 4 KB + 10 pages, half a unit each.
    assert estimate_units(10 * 2**20, 4, consistent=False) == 0.5 * (2560 + 10)
    assert estimate_units(10 * 2**20, 4, consistent=True) == 2560 + 10
    assert estimate_units(0, 8, consistent=False) == 4.0  # one (empty) page per segment


# --------------------------------------------------------------------------------------------
# Errors: one line, exit 2


BAD = ("foo://x", "dynamodb:/x", "dynamodb://", "dynamodb://a b")


@pytest.mark.parametrize("bad", BAD)
def test_parquet_refuses_unknown_schemes_in_one_line(
    bad: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    for args in (["parquet", bad, str(tmp_path / "d")], ["parquet", str(tmp_path), bad]):
        assert main(args) == 2, args
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and err.startswith("ddbshard: error: "), err
        assert bad in err
    assert main(["parquet", str(tmp_path), "dynamodb://Tab"]) == 2
    assert "not into a table" in capsys.readouterr().err


def _config(tmp_path: Path) -> Path:
    """A config of one target Tgt keyed by pk, reading an (empty) folder of lines."""
    (tmp_path / "src").mkdir()
    cfg = tmp_path / "c.toml"
    cfg.write_text(
        f'source = "{tmp_path / "src"}"\ndest = "{tmp_path / "out"}"\n'
        '[[target]]\nname = "Tgt"\nkey = { hash = "pk" }\nkey_types = { pk = "S" }\n'
    )
    return cfg


@pytest.mark.parametrize("bad", BAD)
def test_diff_refuses_unknown_schemes_in_one_line(
    bad: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cfg = _config(tmp_path)
    good = str(tmp_path / "src")
    for args in (
        ["--source", bad, "--actual", f"Tgt={good}"],
        ["--actual", f"Tgt={bad}"],
        ["--actual", f"Tgt={good}", "--expected", f"Tgt={bad}"],
        ["--actual", f"Tgt={good}", "--out", bad],
    ):
        assert main(["diff", str(cfg), *args]) == 2, args
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and err.startswith("ddbshard: error: "), (args, err)
        assert f"{bad!r}" in err or f"{bad}:" in err, (args, err)


def test_missing_table_is_one_line(endpoint: str, tmp_path: Path, capsys: Any) -> None:
    assert main(["parquet", "dynamodb://NoSuchTable", str(tmp_path / "d")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert "dynamodb://NoSuchTable" in err and "ResourceNotFoundException" in err


def test_access_denied_and_no_credentials_are_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from botocore.exceptions import ClientError

    class Denied:
        def describe_table(self, **kw: Any) -> Any:
            error = {"Error": {"Code": "AccessDeniedException", "Message": "not allowed"}}
            raise ClientError(error, "DescribeTable")  # type: ignore[arg-type]

    with pytest.raises(InputError, match=r"^dynamodb://T: .*AccessDeniedException: not allowed"):
        LiveScan("T", ddb=Denied()).describe()

    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    assert main(["parquet", "dynamodb://Tab", str(tmp_path / "d")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "credentials" in err, err


# --------------------------------------------------------------------------------------------
# diff with live sides


def _lines_of(folder: Path) -> list[dict[str, Any]]:
    import gzip

    items = []
    for f in sorted(folder.glob("*.json.gz")):
        items += [
            json.loads(line)["Item"]
            for line in text_lines(gzip.decompress(f.read_bytes()).decode())
        ]
    return items


def _keys_files(out: Path) -> dict[str, set[str]]:
    found = {}
    for f in sorted(out.glob("*/*.jsonl")):
        found[f"{f.parent.name}/{f.name}"] = set(text_lines(f.read_text()))
    return found


def test_diff_of_live_tables_reports_what_the_file_diff_reports(
    endpoint: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    world = build_world(tmp_path)
    ddb = _client(endpoint)
    # The source table, from the export's items; each target's table from its lines, planted
    # differences and all ("after split and load").
    create_typed_table(ddb, "LiveSource", ("pk", "S"), ("sk", "S"))
    load(ddb, "LiveSource", _source_items(world["export"]))
    live_actual = []
    for target, key in KEYS.items():
        create_typed_table(ddb, f"Live{target}", *[(k, "S") for k in key])
        load(ddb, f"Live{target}", _lines_of(tmp_path / "actual" / target))
        live_actual += ["--actual", f"{target}=dynamodb://Live{target}"]

    files_out, live_out = tmp_path / "files-report", tmp_path / "live-report"
    files_actual = [f"--actual={t}={tmp_path / 'actual' / t}" for t in KEYS]
    cfg = str(world["cfg"])
    assert main(["diff", cfg, *files_actual, "--out", str(files_out), "--quiet"]) == 1
    work = ["--work-dir", str(tmp_path / "work"), "--out", str(live_out)]
    code = main(
        ["diff", cfg, "--source", "dynamodb://LiveSource", *live_actual, *work, "--quiet"],
    )
    out = capsys.readouterr()
    assert code == 1, out.err
    assert out.err.count("read units") == 4  # an estimate per table, before its scan
    summary = check_report(live_out, world["planted"])
    files_summary = json.loads((files_out / "diff-summary.json").read_text())
    for t in KEYS:
        a, b = summary["targets"][t], files_summary["targets"][t]
        for field in ("matched", "missing", "unexpected", "changed", "source_key"):
            assert a[field] == b[field], (t, field)
    assert _keys_files(live_out) == _keys_files(files_out)
    assert set(summary["scans"]) == {"dynamodb://LiveSource"} | {
        f"dynamodb://Live{t}" for t in KEYS
    }
    # The copies stay in --work-dir, for reuse.
    assert list((tmp_path / "work" / "actual" / "Posts").glob("part-*.parquet"))


def _source_items(export: Path) -> list[dict[str, Any]]:
    import gzip

    items = []
    for f in sorted((export / "data").glob("*.json.gz")):
        items += [
            json.loads(line)["Item"]
            for line in text_lines(gzip.decompress(f.read_bytes()).decode())
        ]
    return items


def test_source_key_must_agree_with_a_live_source(
    endpoint: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    ddb = _client(endpoint)
    create_typed_table(ddb, "KeyedSource", ("pk", "S"), ("sk", "S"))
    cfg = _config(tmp_path)
    src = str(tmp_path / "src")
    args = ["diff", str(cfg), "--source", "dynamodb://KeyedSource", "--actual", f"Tgt={src}"]
    assert main([*args, "--source-key", "uid"]) == 2
    err = capsys.readouterr().err
    assert "keyed by pk,sk" in err and err.count("\n") == 1


def test_a_live_side_with_another_key_and_scan_options_without_a_live_side_are_refused(
    endpoint: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    ddb = _client(endpoint)
    create_typed_table(ddb, "TwoPartKey", ("pk", "S"), ("sk", "S"))
    cfg = str(_config(tmp_path))
    src = str(tmp_path / "src")
    (tmp_path / "src" / "a.json").write_text('{"Item": {"pk": {"S": "a"}}}\n')
    live = "Tgt=dynamodb://TwoPartKey"
    for side in (["--actual", live], ["--actual", f"Tgt={src}", "--expected", live]):
        assert main(["diff", cfg, *side]) == 2, side
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and "keyed by pk:S, sk:S, target Tgt by pk:S" in err, err
    assert main(["diff", cfg, "--actual", f"Tgt={src}", "--max-rcu", "10"]) == 2
    assert "for dynamodb:// sides" in capsys.readouterr().err
    assert main(["parquet", src, str(tmp_path / "d"), "--segments", "2"]) == 2
    assert "for SRC dynamodb://TABLE" in capsys.readouterr().err


class _Unreachable(FakeDynamoDB):
    """Described, then gone: every Scan is a connection refused."""

    def scan(self, **kw: Any) -> dict[str, Any]:
        from botocore.exceptions import EndpointConnectionError

        raise EndpointConnectionError(endpoint_url="http://127.0.0.1:1/")


def test_a_scan_that_cannot_connect_says_so_and_not_to_lower_max_rcu() -> None:
    policy = RetryPolicy(max_attempts=2, sleep=lambda s: None)
    scan = LiveScan("T", segments=1, ddb=_Unreachable(1, 1, 1.0), policy=policy)
    with pytest.raises(InputError) as e:
        b"".join(scan.chunks(0))
    assert "127.0.0.1:1" in str(e.value) and "after 2 attempts" in str(e.value)
    assert "--max-rcu" not in str(e.value)  # a lower rate would not help
