"""What the environment lacks, said in one line by every command: no AWS credentials, no Region,
an unknown profile, a local output that cannot be written. The real CLI runs in a subprocess;
AWS calls go to moto's server over HTTP, so a command that did get credentials would reach it.

Each case asserts exit status 2 (bad usage or environment; 1 would mean "ran, items
rejected"), exactly one line on stderr, no traceback, an end within seconds (no retries of
what no retry can fix), and that nothing was written or read before the refusal.
"""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import boto3
import pytest

from ddbshard import synth
from support.s3_server import AWS_ENV, reset

NO_CREDENTIALS = "ddbshard: error: no AWS credentials found: set AWS_ACCESS_KEY_ID"
SECONDS = 20  # a run that retried a missing credential (botocore backs off) takes longer

CONFIG = """\
source = "{source}"
dest = "{dest}"
[output]
shards = 2
compression = "gzip"
[[target]]
name = "All"
where = "attribute_exists(pk)"
key = {{ hash = "pk", range = "sk" }}
key_types = {{ pk = "S", sk = "S" }}
"""


def write_config(path: Path, source: str, dest: str) -> Path:
    path.write_text(CONFIG.format(source=source, dest=dest), encoding="utf-8")
    return path


def without_aws(endpoint: str, **extra: str) -> dict[str, str]:
    """This process's environment with every source of AWS credentials removed, pointed at
    moto's server (so a request that did go out would be answered, not time out)."""
    env = {
        k: v
        for k, v in os.environ.items()
        if k
        not in (
            "AWS_ACCESS_KEY_ID",
            "AWS_SECRET_ACCESS_KEY",
            "AWS_SESSION_TOKEN",
            "AWS_SECURITY_TOKEN",
            "AWS_PROFILE",
            "AWS_DEFAULT_PROFILE",
            "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
            "AWS_CONTAINER_CREDENTIALS_FULL_URI",
            "AWS_WEB_IDENTITY_TOKEN_FILE",
        )
    }
    env.update(
        AWS_SHARED_CREDENTIALS_FILE="/nonexistent/ddbshard-test/credentials",
        AWS_CONFIG_FILE="/nonexistent/ddbshard-test/config",
        AWS_EC2_METADATA_DISABLED="true",
        AWS_ENDPOINT_URL=endpoint,
        AWS_DEFAULT_REGION="us-east-1",
        AWS_REGION="us-east-1",
    )
    env.update(extra)
    return env


def cli(
    *args: str, cwd: Path, env: dict[str, str], prefix: tuple[str, ...] = ()
) -> tuple[subprocess.CompletedProcess[str], float]:
    start = time.monotonic()
    r = subprocess.run(
        [*prefix, sys.executable, "-m", "ddbshard", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    return r, time.monotonic() - start


def assert_one_line_error(r: subprocess.CompletedProcess[str], seconds: float = 0.0) -> str:
    assert r.returncode == 2, (r.returncode, r.stderr)
    assert "Traceback" not in r.stderr, r.stderr
    lines = r.stderr.splitlines()
    assert len(lines) == 1, r.stderr
    assert lines[0].startswith("ddbshard: error: "), r.stderr
    assert seconds < SECONDS, f"took {seconds:.1f} s"
    return lines[0]


@pytest.fixture(scope="module")
def endpoint(moto_endpoint: str) -> Iterator[str]:
    reset(moto_endpoint)  # one server for the session, emptied for this module
    yield moto_endpoint


@pytest.fixture(scope="module")
def export(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return synth.write_export(tmp_path_factory.mktemp("export") / "export", 300, files=2, seed=3)


@pytest.fixture
def uploaded(endpoint: str, export: Path) -> str:
    """The export in moto's S3, uploaded with credentials: s3://exports/x/."""
    reset(endpoint)
    s3 = boto3.client(
        "s3",
        endpoint_url=endpoint,
        region_name="us-east-1",
        aws_access_key_id=AWS_ENV["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=AWS_ENV["AWS_SECRET_ACCESS_KEY"],
    )
    s3.create_bucket(Bucket="exports")
    base = export.parent.parent  # the folder holding AWSDynamoDB/<export-id>/, as AWS writes it
    for f in base.rglob("*"):
        if f.is_file():
            s3.upload_file(str(f), "exports", f"x/{f.relative_to(base).as_posix()}")
    return "s3://exports/x/"


# --------------------------------------------------------------------------------------------
# No credentials


def _commands(tmp: Path, export: Path) -> dict[str, list[str]]:
    write_config(tmp / "s3src.toml", "s3://exports/x/", str(tmp / "out-s3src"))
    write_config(tmp / "s3dest.toml", str(export), "s3://imports/run1/")
    (tmp / "keys-in").mkdir()
    return {
        "split s3 source": ["split", "s3src.toml", "--quiet"],
        "split s3 dest": ["split", "s3dest.toml", "--quiet"],
        "estimate": ["estimate", "s3src.toml"],
        "keys s3 input": ["keys", "--from", "streams", "s3://streams/x/", "--out", "k.jsonl"],
        "import --dry-run": ["import", "s3dest.toml", "--dry-run"],
        "parquet s3 source": ["parquet", "s3://exports/x/", str(tmp / "pq")],
        "parquet s3 dest": ["parquet", str(export), "s3://copies/pq/"],
        "diff s3 actual": [
            "diff",
            "s3src.toml",
            "--actual",
            "All=s3://imports/run1/All/data/",
            "--out",
            str(tmp / "diff"),
        ],
    }


COMMANDS = [
    "split s3 source",
    "split s3 dest",
    "estimate",
    "keys s3 input",
    "import --dry-run",
    "parquet s3 source",
    "parquet s3 dest",
    "diff s3 actual",
]


@pytest.mark.server
@pytest.mark.parametrize("case", COMMANDS)
def test_no_credentials_is_one_line_and_exit_2(
    case: str, endpoint: str, uploaded: str, export: Path, tmp_path: Path
) -> None:
    args = _commands(tmp_path, export)[case]
    # HOME: an s3:// dest keeps its checkpoint under ~/.cache/ddbshard/
    r, seconds = cli(*args, cwd=tmp_path, env=without_aws(endpoint, HOME=str(tmp_path)))
    line = assert_one_line_error(r, seconds)
    assert line.startswith(NO_CREDENTIALS), line
    assert "AWS_PROFILE" in line and "AWS_SECRET_ACCESS_KEY" in line
    # Refused before any output: no split checkpoint, no copy, no keys file.
    assert not (tmp_path / "out-s3src").exists()
    assert not (tmp_path / "pq").exists() and not (tmp_path / "k.jsonl").exists()
    assert not (tmp_path / "diff").exists()


@pytest.mark.server
def test_debug_shows_the_traceback(endpoint: str, uploaded: str, tmp_path: Path) -> None:
    write_config(tmp_path / "s3src.toml", "s3://exports/x/", str(tmp_path / "out"))
    r, _ = cli("--debug", "estimate", "s3src.toml", cwd=tmp_path, env=without_aws(endpoint))
    assert r.returncode != 0
    assert "Traceback" in r.stderr and "NoCredentialsError" in r.stderr


@pytest.mark.server
def test_partial_credentials_and_unknown_profile(
    endpoint: str, uploaded: str, tmp_path: Path
) -> None:
    write_config(tmp_path / "s3src.toml", "s3://exports/x/", str(tmp_path / "out"))
    env = without_aws(endpoint, AWS_ACCESS_KEY_ID="AKIDONLY")
    r, seconds = cli("estimate", "s3src.toml", cwd=tmp_path, env=env)
    line = assert_one_line_error(r, seconds)
    assert "incomplete AWS credentials" in line and "AWS_SECRET_ACCESS_KEY" in line

    env = without_aws(endpoint, AWS_PROFILE="no-such-profile")
    r, seconds = cli("split", "s3src.toml", "--quiet", cwd=tmp_path, env=env)
    line = assert_one_line_error(r, seconds)
    assert "AWS profile 'no-such-profile' not found" in line and "AWS_PROFILE" in line
    assert not (tmp_path / "out").exists()


@pytest.mark.server
def test_no_region_is_one_line_and_exit_2(endpoint: str, export: Path, tmp_path: Path) -> None:
    """DynamoDB needs a Region (S3 does not): sync and init call it."""
    write_config(tmp_path / "cfg.toml", str(export), str(tmp_path / "out"))
    (tmp_path / "k.jsonl").write_text('{"Keys":{"pk":{"S":"a"},"sk":{"S":"b"}}}\n')
    env = without_aws(
        endpoint,
        AWS_ACCESS_KEY_ID=AWS_ENV["AWS_ACCESS_KEY_ID"],
        AWS_SECRET_ACCESS_KEY=AWS_ENV["AWS_SECRET_ACCESS_KEY"],
    )
    del env["AWS_REGION"], env["AWS_DEFAULT_REGION"]
    for args in (
        ["sync", "cfg.toml", "--keys", "k.jsonl", "--source-table", "Source"],
        ["init", "--from-table", "Source", "--out", "new.toml"],
    ):
        r, seconds = cli(*args, cwd=tmp_path, env=env)
        line = assert_one_line_error(r, seconds)
        assert line.startswith("ddbshard: error: no AWS Region set: set AWS_REGION"), line
        assert line.endswith("or pass --region"), line
    assert not (tmp_path / "new.toml").exists()


CREDENTIAL_PROCESS = """\
#!/bin/sh
# Credentials for the first caller only (the split driver); none for the workers after it.
if [ -e "{mark}" ]; then echo "no more credentials" >&2; exit 1; fi
touch "{mark}"
echo '{{"Version": 1, "AccessKeyId": "testing", "SecretAccessKey": "testing"}}'
"""


@pytest.mark.server
def test_credentials_lost_in_the_workers_stop_the_run(
    endpoint: str, uploaded: str, tmp_path: Path
) -> None:
    """The driver lists the export with credentials, the workers (spawned, resolving their
    own) find none: one line, exit 2, and no input file is taken for a bad one and skipped."""
    script = tmp_path / "creds.sh"
    script.write_text(CREDENTIAL_PROCESS.format(mark=tmp_path / "used"))
    script.chmod(0o755)
    (tmp_path / "aws-config").write_text(f"[default]\ncredential_process = {script}\n")
    write_config(tmp_path / "cfg.toml", uploaded, str(tmp_path / "out"))
    env = without_aws(endpoint, AWS_CONFIG_FILE=str(tmp_path / "aws-config"))
    r, seconds = cli(
        "split", "cfg.toml", "--quiet", "--workers", "2", "--on-bad-file", "skip",
        cwd=tmp_path, env=env,
    )  # fmt: skip
    line = assert_one_line_error(r, seconds)
    assert (tmp_path / "used").exists()  # the driver did get credentials
    assert "credentials" in line and "no more credentials" in line, line
    assert not (tmp_path / "out" / "_summary.json").exists()


# --------------------------------------------------------------------------------------------
# Local outputs that cannot be written


def _blocked_outputs(tmp: Path, export: Path) -> dict[str, list[str]]:
    """Commands whose output path runs through a file ("blocker") where a folder should be."""
    blocker = tmp / "blocker"
    blocker.write_text("a file, not a folder\n")
    write_config(tmp / "blocked.toml", str(export), str(blocker / "out"))
    write_config(tmp / "ok.toml", str(export), str(tmp / "out"))
    (tmp / "stream.json").write_text('{"Records": []}\n')
    return {
        "split dest": ["split", "blocked.toml", "--quiet", "--state-dir", str(tmp / "st")],
        "split --state-dir": ["split", "ok.toml", "--quiet", "--state-dir", str(blocker / "s")],
        "parquet DEST": ["parquet", str(export), str(blocker / "pq")],
        "parquet --work-dir": [
            "parquet",
            str(export),
            str(tmp / "pq"),
            "--flatten",
            "--work-dir",
            str(blocker / "w"),
        ],
        "diff --out": ["diff", "ok.toml", "--actual", f"All={export}", "--out", str(blocker)],
        "diff --work-dir": [
            "diff",
            "ok.toml",
            "--actual",
            f"All={export}",
            "--out",
            str(tmp / "d"),
            "--work-dir",
            str(blocker / "w"),
        ],
        "keys --out": ["keys", "--from", "streams", "stream.json", "--out", str(blocker / "k")],
        "init --out": ["init", "--from-json", "describe.json", "--out", str(blocker / "a.toml")],
        "demo OUT": ["demo", str(blocker / "demo")],
    }


BLOCKED = [
    "split dest",
    "split --state-dir",
    "parquet DEST",
    "parquet --work-dir",
    "diff --out",
    "diff --work-dir",
    "keys --out",
    "init --out",
    "demo OUT",
]


@pytest.mark.parametrize("case", BLOCKED)
def test_output_under_a_file_is_refused_before_reading(
    case: str, export: Path, tmp_path: Path
) -> None:
    args = _blocked_outputs(tmp_path, export)[case]
    r, seconds = cli(*args, cwd=tmp_path, env=dict(os.environ))
    line = assert_one_line_error(r, seconds)  # one line: no progress line, so nothing read
    assert "cannot write" in line and "blocker is a file, not a folder" in line, line
    assert r.stdout == ""
    # Nothing was started: no checkpoint, no copy, no results.
    for left in ("st", "out", "pq", "d"):
        assert not (tmp_path / left).exists(), left


@pytest.fixture
def shared_dir() -> Iterator[Path]:
    """A folder another user can enter (pytest's tmp_path is private to its owner)."""
    path = Path(tempfile.mkdtemp(prefix="ddbshard-ro-"))
    path.chmod(0o755)
    try:
        yield path
    finally:
        for p in [path, *path.rglob("*")]:
            if p.is_dir():
                p.chmod(0o755)
        shutil.rmtree(path)


def _unprivileged() -> tuple[str, ...]:
    """What runs the CLI as a user that file permissions apply to: nothing, or for root,
    setpriv as `nobody` (root writes into a mode 0555 folder all the same)."""
    if os.geteuid() != 0:
        return ()
    setpriv = shutil.which("setpriv")
    prefix = (setpriv or "setpriv", "--reuid=65534", "--regid=65534", "--clear-groups")
    if setpriv is None or subprocess.run([*prefix, sys.executable, "-c", ""]).returncode:
        pytest.skip("running as root, and cannot run the CLI as another user here")
    # The checkout may sit in a folder `nobody` cannot enter (mktemp -d makes mode 0700 ones).
    probe = subprocess.run(
        [*prefix, sys.executable, "-c", "import ddbshard.cli"], capture_output=True, check=False
    )
    if probe.returncode:
        pytest.skip("running as root, and `nobody` cannot read this checkout to run the CLI")
    return prefix


@pytest.mark.parametrize("command", ["split", "parquet", "diff"])
def test_read_only_folder_is_refused_before_reading(
    command: str, export: Path, shared_dir: Path
) -> None:
    """A dest in a folder this user may not write. Root may write anywhere, so as root the
    CLI runs as `nobody`."""
    src = shared_dir / "export"  # the folder holding AWSDynamoDB/<export-id>/
    shutil.copytree(export.parent.parent, src)
    read_only = shared_dir / "ro"
    read_only.mkdir()
    write_config(shared_dir / "cfg.toml", str(src), str(read_only / "out"))
    for p in [shared_dir, *shared_dir.rglob("*")]:
        p.chmod(p.stat().st_mode | stat.S_IROTH | (stat.S_IXOTH if p.is_dir() else 0))
    read_only.chmod(0o555)
    args = {
        "split": ["split", "cfg.toml", "--quiet"],
        "parquet": ["parquet", str(src), str(read_only / "pq")],
        "diff": ["diff", "cfg.toml", "--actual", f"All={src}", "--out", str(read_only / "d")],
    }[command]
    env = dict(os.environ, HOME=str(shared_dir))
    r, seconds = cli(*args, cwd=shared_dir, env=env, prefix=_unprivileged())
    line = assert_one_line_error(r, seconds)
    assert f"{read_only} is not writable" in line, line
    assert list(read_only.iterdir()) == []


def test_a_ca_bundle_that_does_not_exist_is_one_line_and_exit_2(
    export: Path, tmp_path: Path
) -> None:
    """AWS_CA_BUNDLE naming a missing file fails every TLS handshake alike: one line saying
    so, at once (not retried for a minute as a dropped connection, nor blamed on throttling)."""
    import socket
    import threading

    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(16)
    accepted: list[socket.socket] = []

    def accept() -> None:
        while True:
            try:
                accepted.append(listener.accept()[0])
            except OSError:
                return

    threading.Thread(target=accept, daemon=True).start()
    try:
        env = {
            **AWS_ENV,
            "AWS_ENDPOINT_URL": f"https://127.0.0.1:{listener.getsockname()[1]}",
            "AWS_CA_BUNDLE": str(tmp_path / "no-such-ca.pem"),
        }
        cfg = write_config(tmp_path / "c.toml", str(export), str(tmp_path / "out"))
        keys = tmp_path / "k.jsonl"
        keys.write_text('{"Keys": {"pk": {"S": "a"}, "sk": {"S": "b"}}}\n')
        r, took = cli(
            "sync", str(cfg), "--keys", str(keys), "--source-table", "S", cwd=tmp_path, env=env
        )
        line = assert_one_line_error(r, took)
        assert "no-such-ca.pem" in line and "does not exist" in line, line
    finally:
        listener.close()
        for s in accepted:
            s.close()


@pytest.mark.parametrize(
    "argv",
    [
        ["sync", "c.toml", "--keys", "k", "--source-table", "A", "--max-wcu", "nan"],
        # A budget so small that its first wait overflowed time.sleep (a traceback).
        ["sync", "c.toml", "--keys", "k", "--source-table", "A", "--max-wcu", "1e-300"],
        ["replicate", "c.toml", "--source-table", "A", "--max-wcu", "inf"],
        ["replicate", "c.toml", "--source-table", "A", "--until-caught-up", "nan"],
        ["replicate", "c.toml", "--source-table", "A", "--until-caught-up", "-5"],
        ["parquet", "dynamodb://A", "out", "--max-rcu", "nan"],
        ["diff", "c.toml", "--actual", "T=dynamodb://T", "--max-rcu", "-1"],
        # "... and 5 more malformed records" when there were none.
        ["keys", "--from", "streams", "x.json", "--out", "k", "--show", "-5"],
        # A thread and a scan segment per worker: 100,000 of each on a 100-item table.
        ["parquet", "dynamodb://A", "out", "--workers", "100000"],
        ["diff", "c.toml", "--actual", "T=dynamodb://T", "--workers", "0"],
    ],
)
def test_rates_and_ages_that_are_not_usable_numbers_are_usage_errors(
    argv: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    from ddbshard.cli import build_parser

    with pytest.raises(SystemExit) as e:
        build_parser(argv[0]).parse_args(argv)
    assert e.value.code == 2
    assert f"argument {argv[-2]}" in capsys.readouterr().err


@pytest.mark.parametrize(
    "argv",
    [
        ["keys", "--from-stream", "Feed", "--out", "{tmp}/k.jsonl", "--region", "bad region"],
        ["keys", "--from-kinesis", "feed", "--out", "{tmp}/k.jsonl", "--region", "bad region"],
        ["replicate", "{tmp}/c.toml", "--source-table", "Feed", "--region", "us east 1"],
        ["sync", "{tmp}/c.toml", "--keys", "{tmp}/k.jsonl", "--source-table", "A", "--region=1!"],
        ["parquet", "dynamodb://Feed", "{tmp}/copy"],  # AWS_REGION below
    ],
)
def test_a_region_that_is_not_a_region_name_is_one_line(
    argv: list[str],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """botocore refuses such a name when the client is made, before any request: it was a
    traceback of InvalidRegionError."""
    from ddbshard.cli import main

    monkeypatch.setenv("AWS_REGION", "not a region")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    (tmp_path / "src").mkdir()
    write_config(tmp_path / "c.toml", str(tmp_path / "src"), str(tmp_path / "out"))
    (tmp_path / "k.jsonl").write_text('{"Keys":{"pk":{"S":"a"},"sk":{"S":"b"}}}\n')
    code = main([a.format(tmp=tmp_path) for a in argv])
    err = capsys.readouterr().err
    assert code == 2, err
    assert len(err.strip().splitlines()) == 1 and "not a valid AWS Region" in err, err
