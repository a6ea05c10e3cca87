"""sync's inputs are checked before its first write: a --keys file that cannot be opened
(a typo in the second of diff's nine files) must stop the run before the `Target` lines of
the files before it have deleted anything. Against moto's DynamoDB over HTTP."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from ddbshard.cli import main
from support.configs import config_text, target_block
from support.ddb_tables import create_table, load, scan
from support.s3_server import reset

pytestmark = pytest.mark.server


@pytest.fixture(scope="module")
def endpoint(moto_endpoint: str) -> Iterator[str]:
    reset(moto_endpoint)
    yield moto_endpoint


def _client(endpoint: str) -> Any:
    import boto3

    return boto3.client("dynamodb", endpoint_url=endpoint, region_name="us-east-1")


@pytest.mark.parametrize("concurrency", ["1", "16"])
def test_a_keys_file_that_cannot_be_opened_stops_sync_before_any_write(
    endpoint: str, tmp_path: Path, capsys: pytest.CaptureFixture[str], concurrency: str
) -> None:
    ddb = _client(endpoint)
    source, posts = f"InSource{concurrency}", f"InPosts{concurrency}"
    create_table(ddb, source, "pk", "sk")
    create_table(ddb, posts, "pk", "sk")
    items = [{"pk": {"S": f"P{i:03d}"}, "sk": {"S": "S"}} for i in range(150)]
    load(ddb, posts, items)
    cfg = tmp_path / "c.toml"
    block = target_block(posts, None, ("pk", "sk"))
    cfg.write_text(config_text(tmp_path / "export", tmp_path / "out", block))
    unexpected = tmp_path / "unexpected.jsonl"
    lines = [{"Target": posts, "Keys": it} for it in items]
    unexpected.write_text("".join(json.dumps(x) + "\n" for x in lines))
    code = main(
        [
            "sync", str(cfg), "--keys", str(unexpected), "--keys", str(tmp_path / "typo.jsonl"),
            "--source-table", source, "--quiet", "--concurrency", concurrency,
            "--failed-keys", str(tmp_path / "failed.jsonl"),
        ]
    )  # fmt: skip
    err = capsys.readouterr().err
    assert code == 2, err
    assert err.count("\n") == 1 and "typo.jsonl" in err, err
    assert len(scan(ddb, posts)) == 150, "nothing may be deleted before the inputs are checked"


def test_failed_keys_go_to_a_folder_that_does_not_exist_yet(
    endpoint: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The failed-keys file is written at the end of the run: a folder missing then must not
    lose the keys that failed (exit 2 with no summary, and no list of them)."""
    ddb = _client(endpoint)
    create_table(ddb, "FkSource", "pk", "sk")
    create_table(ddb, "FkPosts", "pk", "sk")
    cfg = tmp_path / "c.toml"
    block = target_block("FkPosts", None, ("pk", "sk"))
    cfg.write_text(config_text(tmp_path / "export", tmp_path / "out", block))
    keys = tmp_path / "keys.jsonl"
    # Named by an attribute that is not the source key: this key fails, with its reason.
    keys.write_text(json.dumps({"Keys": {"id": {"S": "x"}}}) + "\n")
    failed = tmp_path / "reports" / "today" / "failed.jsonl"
    code = main(
        [
            "sync", str(cfg), "--keys", str(keys), "--source-table", "FkSource", "--quiet",
            "--failed-keys", str(failed),
        ]
    )  # fmt: skip
    out = capsys.readouterr()
    assert code == 1, out.err
    assert "failed 1" in out.out
    lines = [json.loads(x) for x in failed.read_text().splitlines()]
    assert [x["Keys"] for x in lines] == [{"id": {"S": "x"}}]
    assert "FkSource's key is pk, sk" in lines[0]["reason"]
