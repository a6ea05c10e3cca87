"""S3 faults AWS produces and moto does not: the fault layer itself, then split through it.

The first tests check that each fault in `s3_faults` is what a client really sees (a parsed
SlowDown, a ConnectionClosedError, a body cut short...) and that the plan counts the requests it
says it counts; the split tests depend on that. Then `python -m ddbshard split` runs s3→s3 with
SlowDown, InternalError, dropped connections and cut bodies on its reads and writes, and must
produce exactly what a local→local run produces; and a source object it may not read must stop
it with one line that names the object.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import posixpath
import re
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from botocore.exceptions import ClientError, ConnectionClosedError, ResponseStreamingError

from ddbshard import synth
from support.s3_faults import Fault, FaultyS3

pytestmark = pytest.mark.server

BODY = bytes(range(256)) * 400  # 100 KiB: big enough that a cut body arrives in pieces


@pytest.fixture(scope="module")
def server() -> Iterator[FaultyS3]:
    with FaultyS3() as s3:
        yield s3


@pytest.fixture
def s3(server: FaultyS3) -> FaultyS3:
    """The server with no buckets and an empty plan."""
    server.reset()
    return server


def no_retry(s3: FaultyS3) -> Any:
    # total_max_attempts counts the first attempt; botocore's max_attempts counts retries only.
    return s3.client(retries={"mode": "standard", "total_max_attempts": 1})


def retrying(s3: FaultyS3) -> Any:
    return s3.client(retries={"mode": "standard", "total_max_attempts": 3})


def put(s3: FaultyS3, key: str = "k", body: bytes = BODY) -> None:
    client = no_retry(s3)
    client.create_bucket(Bucket="bkt")
    client.put_object(Bucket="bkt", Key=key, Body=body)


def outcomes(s3: FaultyS3, method: str) -> list[str]:
    """What came of each request with this method, in order (setup requests left out)."""
    return [r.outcome for r in s3.requests if r.request.method == method]


# --------------------------------------------------------------------------------------------
# The layer, seen through boto3 (urllib3) and aiohttp (what s3fs uses)


@pytest.mark.parametrize(
    ("fault", "code", "status"),
    [(Fault.SLOW_DOWN, "SlowDown", 503), (Fault.INTERNAL_ERROR, "InternalError", 500)],
)
def test_error_response_is_parsed_and_retried(
    s3: FaultyS3, fault: Fault, code: str, status: int
) -> None:
    put(s3)
    s3.fail(fault, method="GET", key="bkt/k")
    with pytest.raises(ClientError) as e:
        no_retry(s3).get_object(Bucket="bkt", Key="k")
    # botocore found S3's XML error body: the code and status a retry policy looks at
    assert e.value.response["Error"]["Code"] == code
    assert e.value.response["ResponseMetadata"]["HTTPStatusCode"] == status

    s3.clear_faults()
    s3.fail(fault, method="GET", key="bkt/k")
    got = retrying(s3).get_object(Bucket="bkt", Key="k")
    assert got["Body"].read() == BODY
    assert got["ResponseMetadata"]["RetryAttempts"] == 1
    assert s3.count(fault) == 1 and s3.count() == 1


def test_dropped_connection_is_a_connection_error_and_retried(s3: FaultyS3) -> None:
    put(s3)
    s3.fail(Fault.DROP, method="GET", key="bkt/k")
    with pytest.raises(ConnectionClosedError):
        no_retry(s3).get_object(Bucket="bkt", Key="k")
    assert outcomes(s3, "GET") == ["drop"], "one attempt, which never reached moto"

    s3.clear_faults()
    s3.fail(Fault.DROP, method="GET", key="bkt/k")
    got = retrying(s3).get_object(Bucket="bkt", Key="k")
    assert got["Body"].read() == BODY
    assert got["ResponseMetadata"]["RetryAttempts"] == 1
    assert s3.count(Fault.DROP) == 1


def test_truncated_body_fails_the_read_not_the_call(s3: FaultyS3) -> None:
    put(s3)
    s3.fail(Fault.TRUNCATE, method="GET", key="bkt/k")
    got = retrying(s3).get_object(Bucket="bkt", Key="k")
    # the status and headers were fine, so botocore's retry never sees this: the reader must
    assert got["ResponseMetadata"]["RetryAttempts"] == 0
    assert got["ContentLength"] == len(BODY)
    with pytest.raises(ResponseStreamingError, match="IncompleteRead"):
        got["Body"].read()
    assert s3.count(Fault.TRUNCATE) == 1
    assert no_retry(s3).get_object(Bucket="bkt", Key="k")["Body"].read() == BODY


def test_aiohttp_sees_connection_errors(s3: FaultyS3) -> None:
    """aiohttp (under s3fs/aiobotocore) resends an idempotent request (GET, HEAD, PUT, DELETE)
    once by itself when the server disconnects before answering; a POST it does not. So one
    DROP on a GET or PUT never reaches the SDK's retry logic; two in a row do."""
    put(s3)
    url = no_retry(s3).generate_presigned_url("get_object", Params={"Bucket": "bkt", "Key": "k"})

    async def fetch(method: str = "GET") -> bytes:
        async with aiohttp.ClientSession() as session, session.request(method, url) as r:
            assert r.status == 200
            return await r.read()

    s3.fail(Fault.DROP, method="GET", key="bkt/k")
    assert asyncio.run(fetch()) == BODY
    assert outcomes(s3, "GET") == ["drop", "200 OK"]

    s3.clear_faults()
    s3.fail(Fault.DROP, method="GET", key="bkt/k", times=2)
    with pytest.raises(aiohttp.ServerDisconnectedError):
        asyncio.run(fetch())
    assert s3.count(Fault.DROP) == 2

    s3.clear_faults()
    s3.fail(Fault.DROP, method="POST", key="bkt/k")
    with pytest.raises(aiohttp.ServerDisconnectedError):
        asyncio.run(fetch("POST"))
    assert s3.count(Fault.DROP) == 1

    s3.clear_faults()
    s3.fail(Fault.TRUNCATE, method="GET", key="bkt/k")
    with pytest.raises(aiohttp.ClientPayloadError):
        asyncio.run(fetch())
    assert s3.count(Fault.TRUNCATE) == 1


def test_access_denied_is_permanent_and_not_retried(s3: FaultyS3) -> None:
    put(s3, "secret/k")
    put(s3, "open/k")
    s3.deny("bkt/secret/")
    client = retrying(s3)
    with pytest.raises(ClientError) as e:
        client.get_object(Bucket="bkt", Key="secret/k")
    assert e.value.response["Error"]["Code"] == "AccessDenied"
    assert e.value.response["ResponseMetadata"]["HTTPStatusCode"] == 403
    assert e.value.response["ResponseMetadata"]["RetryAttempts"] == 0
    with pytest.raises(ClientError) as e:
        client.head_object(Bucket="bkt", Key="secret/k")
    assert e.value.response["ResponseMetadata"]["HTTPStatusCode"] == 403  # HEAD: no body
    assert s3.count(Fault.ACCESS_DENIED) == 2
    # as with a policy denying the object: listing still shows it, other objects are readable
    listed = [o["Key"] for o in client.list_objects_v2(Bucket="bkt")["Contents"]]
    assert listed == ["open/k", "secret/k"]
    assert client.get_object(Bucket="bkt", Key="open/k")["Body"].read() == BODY


def test_rules_count_only_their_matching_requests(s3: FaultyS3) -> None:
    put(s3, "a")
    put(s3, "b")
    client = no_retry(s3)
    second_get_a = s3.fail(Fault.SLOW_DOWN, method="GET", key="bkt/a", nth=2)
    ranged_b = s3.fail(Fault.INTERNAL_ERROR, key="bkt/b", ranged=True)
    create_upload = s3.fail(Fault.SLOW_DOWN, method="POST", query="uploads")

    client.get_object(Bucket="bkt", Key="b")  # not ranged: ranged_b does not count it
    client.head_object(Bucket="bkt", Key="a")  # HEAD: second_get_a does not count it
    client.get_object(Bucket="bkt", Key="a")
    with pytest.raises(ClientError, match="SlowDown"):
        client.get_object(Bucket="bkt", Key="a")
    assert client.get_object(Bucket="bkt", Key="a")["Body"].read() == BODY
    assert (second_get_a.seen, second_get_a.fired) == (3, 1)

    with pytest.raises(ClientError, match="InternalError"):
        client.get_object(Bucket="bkt", Key="b", Range="bytes=0-9")
    assert client.get_object(Bucket="bkt", Key="b", Range="bytes=0-9")["Body"].read() == BODY[:10]
    assert (ranged_b.seen, ranged_b.fired) == (2, 1)

    # PutObject and UploadPart would be PUTs; CreateMultipartUpload is POST ?uploads
    with pytest.raises(ClientError, match="SlowDown"):
        client.create_multipart_upload(Bucket="bkt", Key="big")
    upload = client.create_multipart_upload(Bucket="bkt", Key="big")
    client.abort_multipart_upload(Bucket="bkt", Key="big", UploadId=upload["UploadId"])
    assert (create_upload.seen, create_upload.fired) == (2, 1)
    assert s3.count() == 3


def test_moto_api_is_never_faulted(s3: FaultyS3) -> None:
    s3.fail(Fault.DROP, times=1000)  # every S3 request
    with urllib.request.urlopen(f"{s3.endpoint}/moto-api/data.json", timeout=10) as r:
        assert r.status == 200
        assert isinstance(json.loads(r.read()), dict)
    s3.reset()  # POST /moto-api/reset, through the layer
    assert s3.count() == 0
    no_retry(s3).create_bucket(Bucket="bkt")  # the reset also emptied the plan


# --------------------------------------------------------------------------------------------
# split through the faults

ITEMS = 24_000
FILES = 4
CONFIG = """\
source = {source}
dest = {dest}
[output]
compression = "none"
shards = 1
[[target]]
name = "Profiles"
where = "kind = :p"
values = {{ ":p" = "profile" }}
key = {{ hash = "user_id" }}
key_types = {{ user_id = "S" }}
[[target]]
name = "Rest"
key = {{ hash = "pk", range = "sk" }}
key_types = {{ pk = "S", sk = "S" }}
"""
# Uncompressed, one shard per target, and posts and comments (most of the bytes) all in Rest:
# its shard is about 10 MiB, over S3's smallest multipart part (5 MiB) and the usual 8 MiB, so
# a multipart writer splits it into parts and the faults below can hit them.
TARGETS = ("Profiles", "Rest")


def split(
    tmp: Path, name: str, source: str, dest: str, env: dict[str, str] | None
) -> subprocess.CompletedProcess[str]:
    cfg = tmp / f"{name}.toml"
    cfg.write_text(CONFIG.format(source=json.dumps(source), dest=json.dumps(dest)))
    return subprocess.run(
        [sys.executable, "-m", "ddbshard", "split", str(cfg), "--quiet"],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp,
        timeout=300,
        check=False,
    )


def upload_export(s3: FaultyS3, tmp: Path, items: int, seed: int) -> tuple[Path, str, list[str]]:
    """A generated export (AWS layout) under s3://exports/2026/; returns its local root, the
    key of that root and the keys of its data files, in manifest order."""
    export_dir = tmp / "export"
    # jobs=1: worker processes would be forked from this process, which runs server threads
    root = synth.write_export(export_dir, items, files=FILES, seed=seed, jobs=1)
    client = no_retry(s3)
    client.create_bucket(Bucket="exports")
    client.create_bucket(Bucket="imports")
    for f in sorted(export_dir.rglob("*")):
        if f.is_file():
            client.upload_file(str(f), "exports", f"2026/{f.relative_to(export_dir).as_posix()}")
    manifest = (root / "manifest-files.json").read_text().splitlines()
    data_keys = [f"2026/{json.loads(line)['dataFileS3Key']}" for line in manifest]
    assert len(data_keys) == FILES and all(k.endswith(".json.gz") for k in data_keys)
    return root, f"2026/{root.relative_to(export_dir).as_posix()}", data_keys


def lines(data: bytes) -> list[bytes]:
    """A shard's lines. Split on newlines only: str.splitlines would also split inside JSON
    strings holding U+2028 and the like, which the generated items do contain."""
    assert data.endswith(b"\n"), "a shard ends with a newline"
    return data.split(b"\n")[:-1]


def local_lines(dest: Path, target: str) -> list[bytes]:
    out: list[bytes] = []
    for f in (dest / target / "data").iterdir():
        out += lines(f.read_bytes())
    return sorted(out)


def s3_target(client: Any, target: str) -> list[bytes]:
    """The target's lines from S3, after checking its manifest against the stored objects:
    a retried write must leave exactly the bytes the manifest describes."""
    prefix = f"run/{target}/"
    manifest = json.loads(
        client.get_object(Bucket="imports", Key=f"{prefix}manifest.json")["Body"].read()
    )
    listed = client.list_objects_v2(Bucket="imports", Prefix=f"{prefix}data/").get("Contents", [])
    assert sorted(o["Key"] for o in listed) == sorted(prefix + e["key"] for e in manifest["shards"])
    out: list[bytes] = []
    for entry in manifest["shards"]:
        body = client.get_object(Bucket="imports", Key=prefix + entry["key"])["Body"].read()
        assert (len(body), hashlib.md5(body).hexdigest()) == (entry["bytes"], entry["md5"])
        out += lines(body)
    return sorted(out)


def report(s3: FaultyS3, run: subprocess.CompletedProcess[str]) -> str:
    """What a failed assertion shows: the run's stderr and every request the faults hit."""
    hits = "\n".join(
        f"  {r.outcome}: {r.request.method} {r.request.path}?{r.request.query} "
        f"range={r.request.range}"
        for r in s3.injections
    )
    return f"exit {run.returncode}\nstderr:\n{run.stderr}\ninjected:\n{hits}"


@pytest.mark.slow
def test_split_through_faults_equals_local(s3: FaultyS3, tmp_path: Path) -> None:
    root, root_key, data = upload_export(s3, tmp_path, ITEMS, seed=31)
    local = split(tmp_path, "local", str(root), str(tmp_path / "out"), None)
    assert local.returncode == 0, local.stderr

    # Reads. s3fs reads every object with ranged GETs; the rules do not insist on the Range
    # header, so they still apply if the reader changes.
    must_fire = [
        s3.fail(Fault.SLOW_DOWN, method="GET", key=f"exports/{root_key}/manifest-summary.json"),
        s3.fail(Fault.SLOW_DOWN, method="GET", key=f"exports/{data[0]}"),
        s3.fail(Fault.INTERNAL_ERROR, method="GET", key=f"exports/{data[1]}"),
        # two in a row: aiohttp resends a GET once by itself, the second reaches the SDK
        s3.fail(Fault.DROP, method="GET", key=f"exports/{data[2]}", times=2),
        s3.fail(Fault.TRUNCATE, method="GET", key=f"exports/{data[3]}"),
        # Writes: the first PUT of each target's shard (PutObject, or its first UploadPart),
        # of the summary, and of one import request.
        s3.fail(Fault.SLOW_DOWN, method="PUT", key="imports/run/Profiles/data/"),
        s3.fail(Fault.INTERNAL_ERROR, method="PUT", key="imports/run/Rest/data/"),
        s3.fail(Fault.SLOW_DOWN, method="PUT", key="imports/run/_summary.json"),
        s3.fail(Fault.INTERNAL_ERROR, method="PUT", key="imports/run/Rest/import-table.json"),
    ]
    # Requests the product may or may not make: a HEAD probe of a data file, and multipart
    # for the big shard (CreateMultipartUpload and CompleteMultipartUpload are POSTs, which
    # aiohttp never resends, so one DROP reaches the SDK).
    if_made = [
        s3.fail(Fault.SLOW_DOWN, method="HEAD", key=f"exports/{data[0]}"),
        s3.fail(Fault.SLOW_DOWN, method="POST", key="imports/run/Rest/data/", query="uploads"),
        s3.fail(Fault.DROP, method="POST", key="imports/run/Rest/data/", query="uploadId"),
    ]

    remote = split(tmp_path, "remote", "s3://exports/2026/", "s3://imports/run/", s3.env())
    assert remote.returncode == 0, report(s3, remote)
    for rule in must_fire:
        assert rule.fired == rule.times, f"{rule} did not fire\n{report(s3, remote)}"
    for rule in if_made:
        assert rule.fired == min(rule.seen, rule.times), f"{rule}\n{report(s3, remote)}"

    client = no_retry(s3)
    for target in TARGETS:
        want = local_lines(tmp_path / "out", target)
        assert len(want) > 1000
        assert s3_target(client, target) == want, target
    # a retried or failed multipart upload must not be left open (S3 bills its parts)
    assert "Uploads" not in client.list_multipart_uploads(Bucket="imports")
    summary = json.loads(
        client.get_object(Bucket="imports", Key="run/_summary.json")["Body"].read()
    )
    local_summary = json.loads((tmp_path / "out" / "_summary.json").read_text())
    assert summary["items"] == local_summary["items"]
    assert summary["items"]["read"] == ITEMS


def test_access_denied_source_object_is_named(s3: FaultyS3, tmp_path: Path) -> None:
    _, _, data = upload_export(s3, tmp_path, 2000, seed=32)
    s3.deny(f"exports/{data[1]}")
    run = split(tmp_path, "denied", "s3://exports/2026/", "s3://imports/run/", s3.env())
    assert s3.count(Fault.ACCESS_DENIED) >= 1
    assert run.returncode == 2, report(s3, run)
    errors = run.stderr.strip().splitlines()
    assert len(errors) == 1, report(s3, run)
    assert errors[0].startswith("ddbshard: error:"), errors[0]
    assert posixpath.basename(data[1]) in errors[0]
    # the cause, in any of the words S3 and Python use for it
    cause = re.compile(r"access ?denied|forbidden|permission|\b403\b", re.IGNORECASE)
    assert cause.search(errors[0]), errors[0]
