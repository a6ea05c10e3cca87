"""`python -m ddbshard import` end to end: split a generated export into gzip shards, then create
the tables with ImportTable on moto's server over HTTP, and hold the tables against the shards.

moto's ImportTable parses each object with py_partiql_parser's JsonParser, which keeps string
escapes verbatim (`"a\\b"` is stored as two backslashes) and abandons lines it cannot read, so
realistic shards never import exactly; AWS reads the lines as JSON. The module's server swaps
that parser for `json.loads` per line, which fixes the stand-in for AWS and leaves everything
the code under test does (HTTP, S3, DescribeImport, the post-import calls) as it was.

Tests of the refusals and of --dry-run that need no server point AWS_ENDPOINT_URL at a closed
port: a call that slipped through would fail the run instead of passing unnoticed.
"""

from __future__ import annotations

import base64
import gzip
import hashlib
import json
import os
import shlex
import subprocess
import sys
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
import pytest

from ddbshard import synth
from ddbshard.aws.importjob import PLACEHOLDER_BUCKET, client_token
from ddbshard.aws.postimport import steps
from ddbshard.io.storage import split_s3_uri
from support.configs import config_text, target_block
from support.s3_faults import ThreadedMoto
from support.s3_server import AWS_ENV, reset, s3_client

ITEMS = 1500
TARGET_BLOCKS = (
    target_block(
        "Posts",
        "post",
        ("pk", "sk"),
        "[target.table]",
        'stream = "NEW_AND_OLD_IMAGES"',
        'ttl = "expires_at"',
        """tags = { team = "feed", "cost-center" = "a,b=c 'd'" }""",
        "pitr = true",
    ),
    target_block(
        "Profiles", "profile", ("user_id",), "[target.table]", 'table_name = "ProfilesV2"'
    ),
)
TABLES = {"Posts": "Posts", "Profiles": "ProfilesV2"}
# A closed port: any AWS call made by a command that should make none fails loudly.
DEAD_ENV = {**AWS_ENV, "AWS_ENDPOINT_URL": "http://127.0.0.1:9"}


class _JsonLines:
    """What AWS does with a DYNAMODB_JSON object: one JSON document per non-blank line."""

    @staticmethod
    def parse(original: str) -> Iterator[Any]:
        return (json.loads(line) for line in original.split("\n") if line.strip())


@pytest.fixture(scope="module")
def endpoint(moto_endpoint: str) -> Iterator[str]:
    import py_partiql_parser  # type: ignore[import-untyped]

    saved = py_partiql_parser.JsonParser
    py_partiql_parser.JsonParser = _JsonLines
    try:
        reset(moto_endpoint)  # one server for the session, emptied for this module
        yield moto_endpoint
    finally:
        py_partiql_parser.JsonParser = saved


@pytest.fixture(scope="module")
def export(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return synth.write_export(tmp_path_factory.mktemp("export"), ITEMS, files=3, seed=808)


# --- helpers -------------------------------------------------------------------------------


def _config(tmp: Path, export: Path, dest: str, extra: str = "") -> Path:
    cfg = tmp / "migration.toml"
    cfg.write_text(config_text(export, dest, *TARGET_BLOCKS, compression="gzip", shards=3) + extra)
    return cfg


def _run(
    *args: str, env: dict[str, str] | None = None, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "ddbshard", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, **(env or {})},
        check=False,
    )


def _split(cfg: Path, *args: str) -> None:
    r = _run("split", str(cfg), "--quiet", *args)
    assert r.returncode == 0, r.stderr


@dataclass
class _Prepared:
    s3: Any
    ddb: Any
    out: Path
    cfg: Path


def _split_for(endpoint: str, export: Path, tmp_path: Path, run: str) -> _Prepared:
    """A reset moto with an `imports` bucket, and the export split to a local folder for
    s3://imports/<run>/ (not uploaded yet)."""
    reset(endpoint)
    s3, ddb = s3_client(endpoint), boto3.client("dynamodb", endpoint_url=endpoint)
    s3.create_bucket(Bucket="imports")
    out = tmp_path / "out"
    cfg = _config(tmp_path, export, str(out))
    _split(cfg, "--s3-dest", f"s3://imports/{run}/")
    return _Prepared(s3, ddb, out, cfg)


def _upload(s3: Any, out: Path, s3_dest: str) -> None:
    bucket, prefix = split_s3_uri(s3_dest)
    for f in sorted(out.glob("*/data/*")):
        s3.upload_file(str(f), bucket, prefix + str(f.relative_to(out)))


def _canon(value: dict[str, Any]) -> dict[str, Any]:
    """An attribute value in wire form with set order dropped (DynamoDB keeps none): binaries
    as base64 (botocore hands Scan's back as bytes), numbers as the text they arrived as."""
    ((kind, v),) = value.items()

    def b64(x: bytes | str) -> str:
        return base64.b64encode(x).decode() if isinstance(x, bytes) else x

    if kind == "B":
        return {"B": b64(v)}
    if kind == "BS":
        return {"BS": sorted(b64(x) for x in v)}
    if kind in ("SS", "NS"):
        return {kind: sorted(v)}
    if kind == "M":
        return {"M": {k: _canon(x) for k, x in v.items()}}
    if kind == "L":
        return {"L": [_canon(x) for x in v]}
    return {kind: v}


def _item_text(item: dict[str, Any]) -> str:
    canon = {k: _canon(v) for k, v in item.items()}
    return json.dumps(canon, sort_keys=True, ensure_ascii=False)


def _shard_items(blobs: list[bytes]) -> Counter[str]:
    out: Counter[str] = Counter()
    for blob in blobs:
        for line in gzip.decompress(blob).split(b"\n"):
            if line.strip():
                out[_item_text(json.loads(line)["Item"])] += 1
    return out


def _table_items(ddb: Any, table: str) -> Counter[str]:
    out: Counter[str] = Counter()
    for page in ddb.get_paginator("scan").paginate(TableName=table):
        out.update(_item_text(item) for item in page["Items"])
    return out


def _check_post_import_posts(ddb: Any) -> None:
    """What `import --wait` applies to Posts after the import, as far as moto reports it."""
    table = ddb.describe_table(TableName="Posts")["Table"]
    assert table["StreamSpecification"] == {
        "StreamEnabled": True,
        "StreamViewType": "NEW_AND_OLD_IMAGES",
    }
    assert table["LatestStreamArn"].startswith(table["TableArn"] + "/stream/")
    ttl = ddb.describe_time_to_live(TableName="Posts")["TimeToLiveDescription"]
    assert ttl == {"TimeToLiveStatus": "ENABLED", "AttributeName": "expires_at"}
    tags = ddb.list_tags_of_resource(ResourceArn=table["TableArn"])["Tags"]
    assert sorted((t["Key"], t["Value"]) for t in tags) == [
        ("cost-center", "a,b=c 'd'"),
        ("team", "feed"),
    ]
    backups = ddb.describe_continuous_backups(TableName="Posts")["ContinuousBackupsDescription"]
    pitr = backups["PointInTimeRecoveryDescription"]["PointInTimeRecoveryStatus"]
    assert pitr == "ENABLED"


def _check_post_import(ddb: Any) -> None:
    _check_post_import_posts(ddb)
    # The other target asks for none of these: none may have been applied to it.
    other = ddb.describe_table(TableName="ProfilesV2")["Table"]
    assert not other.get("StreamSpecification", {}).get("StreamEnabled")
    assert ddb.list_tags_of_resource(ResourceArn=other["TableArn"])["Tags"] == []


def _table_names(ddb: Any) -> list[str]:
    return sorted(ddb.list_tables()["TableNames"])


# --- end to end against moto --------------------------------------------------------------


@pytest.mark.server
@pytest.mark.slow
def test_local_split_uploaded_then_imported(endpoint: str, export: Path, tmp_path: Path) -> None:
    p = _split_for(endpoint, export, tmp_path, "run1")
    s3, ddb, out, cfg = p.s3, p.ddb, p.out, p.cfg
    _upload(s3, out, "s3://imports/run1/")

    r = _run("import", str(cfg), "--wait")
    assert r.returncode == 0, r.stdout + r.stderr
    for target, table in TABLES.items():
        want = _shard_items([f.read_bytes() for f in sorted((out / target / "data").iterdir())])
        manifest = json.loads((out / target / "manifest.json").read_text())
        assert sum(want.values()) == manifest["items"] > 100
        assert _table_items(ddb, table) == want
        assert f"{target}: COMPLETED: imported {manifest['items']:,} of" in r.stdout
    assert "Posts: IN_PROGRESS" in r.stderr or "Posts: COMPLETED" in r.stderr  # progress lines
    _check_post_import(ddb)


@pytest.mark.server
@pytest.mark.slow
def test_s3_dest_imported(endpoint: str, export: Path, tmp_path: Path) -> None:
    reset(endpoint)
    s3, ddb = s3_client(endpoint), boto3.client("dynamodb", endpoint_url=endpoint)
    s3.create_bucket(Bucket="imports")
    # The source too is on S3, as in a real migration.
    top = export.parent.parent  # the folder holding AWSDynamoDB/<export-id>/
    for f in sorted(top.rglob("*")):
        if f.is_file():
            s3.upload_file(str(f), "imports", f"export/{f.relative_to(top)}")
    cfg = _config(tmp_path, export, "s3://imports/run2/")
    cfg.write_text(cfg.read_text().replace(str(export), "s3://imports/export/"))
    _split(cfg)

    r = _run("import", str(cfg), "--wait")
    assert r.returncode == 0, r.stdout + r.stderr
    for target, table in TABLES.items():
        listing = s3.list_objects_v2(Bucket="imports", Prefix=f"run2/{target}/data/")["Contents"]
        blobs = [s3.get_object(Bucket="imports", Key=o["Key"])["Body"].read() for o in listing]
        want = _shard_items(blobs)
        assert sum(want.values()) > 100
        assert _table_items(ddb, table) == want
    _check_post_import(ddb)


@pytest.mark.server
def test_without_wait_prints_arns_and_how_to_follow(
    endpoint: str, export: Path, tmp_path: Path
) -> None:
    p = _split_for(endpoint, export, tmp_path, "run3")
    s3, ddb, out, cfg = p.s3, p.ddb, p.out, p.cfg
    _upload(s3, out, "s3://imports/run3/")

    r = _run("import", str(cfg), "--target", "Posts")
    assert r.returncode == 0, r.stdout + r.stderr
    arns = sorted({w for w in r.stdout.split() if w.startswith("arn:aws:dynamodb:")})
    assert len(arns) == 1 and ":table/Posts/import/" in arns[0]
    assert f"aws dynamodb describe-import --import-arn {arns[0]}" in r.stdout
    assert "aws dynamodb update-table --table-name Posts --stream-specification" in r.stdout
    # Only the selected target was started; the import itself goes on without us.
    d = ddb.describe_import(ImportArn=arns[0])["ImportTableDescription"]
    assert d["TableArn"].endswith("table/Posts")
    assert "ProfilesV2" not in _table_names(ddb)


@pytest.mark.server
def test_existing_table_refused_before_any_import(
    endpoint: str, export: Path, tmp_path: Path
) -> None:
    p = _split_for(endpoint, export, tmp_path, "run4")
    s3, ddb, out, cfg = p.s3, p.ddb, p.out, p.cfg
    _upload(s3, out, "s3://imports/run4/")
    ddb.create_table(
        TableName="ProfilesV2",
        AttributeDefinitions=[{"AttributeName": "user_id", "AttributeType": "S"}],
        KeySchema=[{"AttributeName": "user_id", "KeyType": "HASH"}],
        BillingMode="PAY_PER_REQUEST",
    )
    r = _run("import", str(cfg), "--wait")
    assert r.returncode == 2
    assert r.stderr.count("\n") == 1 and "table ProfilesV2" in r.stderr
    assert "already exists" in r.stderr and "ImportTable only creates new tables" in r.stderr
    # Checked for every target before starting any: Posts, listed first, was not imported.
    assert _table_names(ddb) == ["ProfilesV2"]


@pytest.mark.server
@pytest.mark.slow
def test_shards_not_uploaded_refused(endpoint: str, export: Path, tmp_path: Path) -> None:
    p = _split_for(endpoint, export, tmp_path, "run5")
    s3, ddb, out, cfg = p.s3, p.ddb, p.out, p.cfg
    # Only Posts is uploaded: an import of Profiles would COMPLETE with an empty table on AWS.
    for f in sorted((out / "Posts" / "data").iterdir()):
        s3.upload_file(str(f), "imports", f"run5/Posts/data/{f.name}")
    r = _run("import", str(cfg))
    assert r.returncode == 2
    assert "s3://imports/run5/Profiles/data/: 3 of the 3 shards" in r.stderr
    assert f"aws s3 cp --recursive {out}/Profiles/data/ s3://imports/run5/Profiles/data/" in (
        r.stderr
    )
    assert _table_names(ddb) == []

    # A stray object under the prefix would be imported too: refused.
    s3.put_object(Bucket="imports", Key="run5/Posts/data/notes.txt", Body=b"x")
    _upload(s3, out, "s3://imports/run5/")
    r = _run("import", str(cfg))
    assert r.returncode == 2 and "notes.txt" in r.stderr and "not shards" in r.stderr

    # A shard of another size than the manifest's (a partial upload): refused.
    s3.delete_object(Bucket="imports", Key="run5/Posts/data/notes.txt")
    s3.put_object(Bucket="imports", Key="run5/Posts/data/part-00001.json.gz", Body=b"x")
    r = _run("import", str(cfg))
    assert r.returncode == 2 and "part-00001.json.gz: 1 bytes" in r.stderr
    assert _table_names(ddb) == []


@pytest.mark.server
@pytest.mark.slow
def test_count_mismatch_and_failed_import_exit_1(
    endpoint: str, export: Path, tmp_path: Path
) -> None:
    p = _split_for(endpoint, export, tmp_path, "run6")
    s3, ddb, out, cfg = p.s3, p.ddb, p.out, p.cfg

    # Profiles: the manifest promises one item more than the shards hold.
    manifest_path = out / "Profiles" / "manifest.json"
    manifest = json.loads(manifest_path.read_text())
    manifest["items"] += 1
    manifest_path.write_text(json.dumps(manifest))
    # Posts: one shard gains an item without its key, which ImportTable refuses (FAILED).
    shard = out / "Posts" / "data" / "part-00001.json.gz"
    shard.write_bytes(
        gzip.compress(gzip.decompress(shard.read_bytes()) + b'{"Item":{"kind":{"S":"post"}}}\n')
    )
    manifest_path = out / "Posts" / "manifest.json"
    manifest = json.loads(manifest_path.read_text())
    for e in manifest["shards"]:
        if e["key"] == "data/part-00001.json.gz":
            e["bytes"] = shard.stat().st_size
            e["items"] += 1
    manifest["items"] += 1
    manifest_path.write_text(json.dumps(manifest))
    _upload(s3, out, "s3://imports/run6/")

    r = _run("import", str(cfg), "--wait")
    assert r.returncode == 1, r.stdout + r.stderr
    lines = r.stdout.splitlines()
    posts = next(i for i, line in enumerate(lines) if line.startswith("Posts: "))
    assert lines[posts].startswith("Posts: FAILED: imported ")
    assert ", 1 errors;" in lines[posts]
    assert "CloudWatch log group /aws-dynamodb/imports, stream " in r.stdout
    assert "were not applied" in r.stdout
    # A failed import's table is left alone: no stream, no tags.
    table = ddb.describe_table(TableName="Posts")["Table"]
    assert not table.get("StreamSpecification", {}).get("StreamEnabled")
    promised = json.loads((out / "Profiles" / "manifest.json").read_text())["items"]
    assert f"Profiles: COMPLETED: imported {promised - 1:,} of {promised:,} items" in r.stdout
    assert "1 items of the manifest were not imported" in r.stdout
    assert "not every import ended as expected" in r.stderr


class _NotReadyYet:
    """A WSGI layer over moto's app for what AWS does to a table just created or changed and
    moto never does: the first UpdateContinuousBackups answers
    ContinuousBackupsUnavailableException, and DescribeTable reports UPDATING twice after an
    UpdateTable. moto's backends are per process, so this server sees the module's tables."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.pitr_refusals = 1
        self.updating = 0
        self.calls: Counter[str] = Counter()

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Any:
        op = str(environ.get("HTTP_X_AMZ_TARGET", "")).rpartition(".")[2]
        self.calls[op] += 1
        if op == "UpdateContinuousBackups" and self.pitr_refusals:
            self.pitr_refusals -= 1
            body = json.dumps(
                {
                    "__type": "com.amazonaws.dynamodb.v20120810#"
                    "ContinuousBackupsUnavailableException",
                    "message": "Backups are being enabled for the table. Please retry later",
                }
            ).encode()
            start_response(
                "400 Bad Request",
                [
                    ("Content-Type", "application/x-amz-json-1.0"),
                    ("Content-Length", str(len(body))),
                ],
            )
            return [body]
        if op == "UpdateTable":
            self.updating = 2
        if op != "DescribeTable" or not self.updating:
            return self.app(environ, start_response)
        self.updating -= 1
        got: dict[str, Any] = {}

        def keep(status: str, headers: list[tuple[str, str]], *exc: Any) -> None:
            got["status"], got["headers"] = status, headers

        body = b"".join(self.app(environ, keep))
        doc = json.loads(body)
        doc["Table"]["TableStatus"] = "UPDATING"
        body = json.dumps(doc).encode()
        # botocore checks x-amz-crc32 against the body: a rewritten body must not carry it.
        headers = [
            (k, v) for k, v in got["headers"] if k.lower() not in ("x-amz-crc32", "content-length")
        ]
        start_response(got["status"], [*headers, ("Content-Length", str(len(body)))])
        return [body]


class _NotReadyServer(ThreadedMoto):
    """moto behind _NotReadyYet, on its own port."""

    thread_name = "not-ready-dynamodb"
    layer: _NotReadyYet

    def wrap(self, app: Any) -> Any:
        self.layer = _NotReadyYet(app)
        return self.layer


@pytest.mark.server
@pytest.mark.slow
def test_post_import_waits_for_aws_to_be_ready(endpoint: str, export: Path, tmp_path: Path) -> None:
    p = _split_for(endpoint, export, tmp_path, "run10")
    s3, ddb, out, cfg = p.s3, p.ddb, p.out, p.cfg
    _upload(s3, out, "s3://imports/run10/")

    with _NotReadyServer() as server:
        env = {"AWS_ENDPOINT_URL": server.endpoint}
        r = _run("import", str(cfg), "--wait", "--target", "Posts", env=env)
    layer = server.layer
    assert r.returncode == 0, r.stdout + r.stderr
    assert layer.calls["UpdateContinuousBackups"] == 2  # refused once, then applied
    assert layer.updating == 0  # both UPDATING answers were seen, and waited out
    _check_post_import_posts(ddb)


# --- refusals and --dry-run, no server --------------------------------------------------------


def test_placeholder_bucket_refused(export: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    cfg = _config(tmp_path, export, str(out))
    _split(cfg)  # no --s3-dest: import-table.json names the placeholder bucket
    for extra in ([], ["--dry-run"]):
        r = _run("import", str(cfg), "--wait", *extra, env=DEAD_ENV, timeout=30)
        assert r.returncode == 2
        assert r.stderr.count("\n") == 1
        assert PLACEHOLDER_BUCKET in r.stderr and "--s3-dest" in r.stderr
        assert str(out / "Posts" / "import-table.json") in r.stderr


def test_placeholder_matches_split() -> None:
    from ddbshard.split.manifests import PLACEHOLDER_S3

    assert split_s3_uri(PLACEHOLDER_S3)[0] == PLACEHOLDER_BUCKET


def test_too_many_objects_refused(export: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    cfg = _config(tmp_path, export, str(out))
    _split(cfg, "--s3-dest", "s3://imports/run7/")
    manifest_path = out / "Profiles" / "manifest.json"
    manifest = json.loads(manifest_path.read_text())
    entry = manifest["shards"][0]
    manifest["shards"] = [{**entry, "key": f"data/part-{i:05d}.json.gz"} for i in range(50_001)]
    manifest_path.write_text(json.dumps(manifest))
    r = _run("import", str(cfg), "--wait", env=DEAD_ENV, timeout=30)
    assert r.returncode == 2
    assert "50,001 shards" in r.stderr and "50,000" in r.stderr
    # Exactly at the quota is allowed (the dry run gets past the check).
    manifest["shards"] = manifest["shards"][:50_000]
    manifest_path.write_text(json.dumps(manifest))
    r = _run("import", str(cfg), "--dry-run", "--target", "Profiles", env=DEAD_ENV, timeout=30)
    assert r.returncode == 0, r.stderr
    assert "50,000 shards" in r.stdout


def test_lsi_refused(export: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    cfg = _config(tmp_path, export, str(out))
    _split(cfg, "--s3-dest", "s3://imports/run8/")
    # In the config: refused when the config is read, with the advice to declare a GSI.
    lsi = cfg.read_text().replace(
        'table_name = "ProfilesV2"',
        'table_name = "ProfilesV2"\n'
        'local_secondary_indexes = [ { name = "byTime", range = "created_at" } ]',
    )
    bad = tmp_path / "lsi.toml"
    bad.write_text(lsi)
    r = _run("import", str(bad), "--dry-run", env=DEAD_ENV, timeout=30)
    assert r.returncode == 2 and r.stderr.count("\n") == 1
    assert "local_secondary_indexes" in r.stderr and "global_secondary_indexes" in r.stderr
    # In a hand-edited request: refused too (ImportTable has no such member).
    path = out / "Posts" / "import-table.json"
    request = json.loads(path.read_text())
    request["TableCreationParameters"]["LocalSecondaryIndexes"] = []
    path.write_text(json.dumps(request))
    r = _run("import", str(cfg), "--wait", env=DEAD_ENV, timeout=30)
    assert r.returncode == 2 and "LocalSecondaryIndexes" in r.stderr


def test_dry_run_prints_requests_and_commands(export: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    cfg = _config(tmp_path, export, str(out))
    _split(cfg, "--s3-dest", "s3://imports/run9/")
    r = _run("import", str(cfg), "--dry-run", env=DEAD_ENV, timeout=30)
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    requests = [
        json.loads(line.split(": ", 1)[1])
        for line in lines
        if line.startswith("# ImportTable request: ")
    ]
    assert len(requests) == 2
    for target, request in zip(TABLES, requests, strict=True):
        on_disk = json.loads((out / target / "import-table.json").read_text())
        token = request.pop("ClientToken")
        assert request == on_disk
        command = (
            f"aws dynamodb import-table --client-token {token} "
            f"--cli-input-json file://{out / target / 'import-table.json'}"
        )
        assert command in lines
    # The post-import commands parse as shell words back into the config's settings.
    update = next(line for line in lines if line.startswith("aws dynamodb update-table "))
    words = shlex.split(update)
    assert words[words.index("--table-name") + 1] == "Posts"
    assert json.loads(words[words.index("--stream-specification") + 1]) == {
        "StreamEnabled": True,
        "StreamViewType": "NEW_AND_OLD_IMAGES",
    }
    tag = next(line for line in lines if line.startswith("aws dynamodb tag-resource "))
    words = shlex.split(tag)
    assert {"Key": "cost-center", "Value": "a,b=c 'd'"} in json.loads(
        words[words.index("--tags") + 1]
    )
    assert any(line.startswith("aws dynamodb update-time-to-live ") for line in lines)
    assert any(line.startswith("aws dynamodb update-continuous-backups ") for line in lines)

    # The token is a function of the request and shards: the same on a rerun; --new-token
    # makes another; an unknown --target is a usage error.
    again = _run("import", str(cfg), "--dry-run", env=DEAD_ENV, timeout=30)
    assert again.stdout == r.stdout
    fresh = _run("import", str(cfg), "--dry-run", "--new-token", env=DEAD_ENV, timeout=30)
    assert fresh.returncode == 0 and fresh.stdout != r.stdout
    unknown = _run("import", str(cfg), "--dry-run", "--target", "Nope", env=DEAD_ENV)
    assert unknown.returncode == 2 and "no such target" in unknown.stderr


def test_client_token_follows_request_and_shards() -> None:
    request = {"S3BucketSource": {"S3Bucket": "b"}, "TableCreationParameters": {"TableName": "t"}}
    md5s = [f"part-0000{i}.json.gz {hashlib.md5(bytes([i])).hexdigest()}" for i in range(3)]
    token = client_token(request, md5s)
    assert len(token) == 32 and "$" not in token  # ImportTable's pattern: ^[^$]+$
    assert client_token({**request, "ClientToken": "old"}, md5s) == token
    assert client_token(request, [*md5s[:2], "part-00002.json.gz 00"]) != token
    assert client_token({**request, "InputCompressionType": "GZIP"}, md5s) != token
    assert client_token(request, md5s, salt="x") != token


def test_post_import_steps_only_what_is_configured() -> None:
    assert steps("T", {}) == []
    only_pitr = steps("T", {"PointInTimeRecoverySpecification": {"PointInTimeRecoveryEnabled": 0}})
    assert [s.kind for s in only_pitr] == ["pitr"]
    assert "point-in-time recovery off" in only_pitr[0].what
    # A table name that needs quoting stays one shell word.
    (stream,) = steps("my table", {"StreamSpecification": {"StreamViewType": "KEYS_ONLY"}})
    assert shlex.split(stream.command)[4] == "my table"
