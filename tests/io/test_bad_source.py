"""Sources that must be refused or read differently, through `python -m ddbshard split`: a
files manifest that lists a file twice, points outside the export or has no usable item count;
compression ddbshard cannot read; a data file changed before `--resume`; a dest inside the
source; folders whose data files have no `.json` name (moto's `data/<uuid>.gz`); attribute
names DynamoDB refuses.

A refusal is one line on stderr starting `ddbshard: error: `, exit status 2, no traceback, and
nothing written to dest (issue 18).
"""

from __future__ import annotations

import base64
import bz2
import gzip
import hashlib
import io
import json
import lzma
import subprocess
import sys
import uuid
import zipfile
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from ddbshard import synth
from support.s3_server import reset, s3_client
from support.splitting import (
    CATCH_ALL,
    Wire,
    assert_summary_adds_up,
    key_of,
    read_lines,
    read_summary,
    read_target,
    run_split,
    write_config,
)

SEED = 20261125
ITEMS = list(synth.make_items(300, seed=SEED))


def lines_of(items: list[Wire]) -> bytes:
    return b"".join(json.dumps({"Item": it}).encode() + b"\n" for it in items)


def config_for(tmp_path: Path, source: str | Path, targets: str = CATCH_ALL) -> Path:
    return write_config(
        tmp_path / "split.toml",
        source=str(source),
        dest="out",
        output='compression = "none"\nshards = 2',
        targets=targets,
    )


def assert_refused(done: subprocess.CompletedProcess[str], *words: str) -> str:
    """One error line holding every one of `words`, exit 2, no traceback."""
    assert done.returncode == 2, (done.returncode, done.stderr)
    assert "Traceback" not in done.stderr, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith("ddbshard: error: "), lines
    for w in words:
        assert w in lines[0], (w, lines[0])
    return lines[0]


def written_items(dest: Path) -> Counter[str]:
    return Counter(key_of(it) for it in read_target(dest, "Everything", "none").items)


# --------------------------------------------------------------------------------------------
# The files manifest


def make_export(tmp_path: Path, files: int = 2) -> Path:
    return synth.write_export(tmp_path / "export", 200, files=files, seed=SEED)


def manifest_entries(root: Path) -> list[dict[str, Any]]:
    text = (root / "manifest-files.json").read_text()
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def write_manifest(root: Path, entries: list[dict[str, Any]]) -> None:
    text = "".join(json.dumps(e) + "\n" for e in entries)
    (root / "manifest-files.json").write_text(text)


def test_a_data_file_listed_twice_is_refused(tmp_path: Path) -> None:
    """Read twice, its items would be written twice (200 items, 300 written)."""
    root = make_export(tmp_path)
    entries = manifest_entries(root)
    write_manifest(root, [entries[0], entries[1], dict(entries[0])])
    done = run_split(config_for(tmp_path, root))
    name = entries[0]["dataFileS3Key"].rsplit("/", 1)[1]
    line = assert_refused(done, "manifest-files.json", name, "twice")
    assert "lines 1 and 3" in line, line
    assert not (tmp_path / "out").exists()


OUTSIDE_KEYS = {
    "dotdot": "AWSDynamoDB/{id}/data/../../../outside.json.gz",
    "dotdot_at_start": "../outside.json.gz",
    "absolute": "/{tmp}/outside.json.gz",
    "dot": "AWSDynamoDB/{id}/./data/x.json.gz",
    "empty_part": "AWSDynamoDB/{id}//data/x.json.gz",
    "empty": "",
}


@pytest.mark.parametrize("kind", OUTSIDE_KEYS)
def test_a_data_file_key_that_leaves_the_export_is_refused(tmp_path: Path, kind: str) -> None:
    """`..`, an absolute key or an empty part would read a file the export does not hold."""
    root = make_export(tmp_path)
    entries = manifest_entries(root)
    outside = tmp_path / "export" / "outside.json.gz"
    outside.write_bytes(gzip.compress(lines_of(ITEMS[:5])))
    (tmp_path / "outside.json.gz").write_bytes(gzip.compress(lines_of(ITEMS[:5])))
    key = OUTSIDE_KEYS[kind].format(id=root.name, tmp=str(tmp_path).strip("/"))
    write_manifest(root, [entries[0], {**entries[1], "dataFileS3Key": key, "itemCount": 5}])
    done = run_split(config_for(tmp_path, root))
    assert_refused(done, "manifest-files.json", "line 2", "dataFileS3Key")
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("count", ["100", 100.0, 99.5, -1, True, None, [100]])
def test_an_item_count_that_is_not_a_count_is_refused(tmp_path: Path, count: Any) -> None:
    root = make_export(tmp_path)
    entries = manifest_entries(root)
    entries[1]["itemCount"] = count
    write_manifest(root, entries)
    done = run_split(config_for(tmp_path, root))
    assert_refused(done, "manifest-files.json", "line 2", "itemCount")
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("count", ["200", 200.0, -200, False])
def test_a_summary_item_count_that_is_not_a_count_is_refused(tmp_path: Path, count: Any) -> None:
    root = make_export(tmp_path)
    summary = json.loads((root / "manifest-summary.json").read_text())
    summary["itemCount"] = count
    (root / "manifest-summary.json").write_text(json.dumps(summary))
    done = run_split(config_for(tmp_path, root))
    assert_refused(done, "manifest-summary.json", "itemCount")


@pytest.mark.parametrize(
    "line", ['["not", "an", "object"]', '{"dataFileS3Key": 7, "itemCount": 1}', '"x"']
)
def test_a_manifest_line_of_the_wrong_shape_is_refused(tmp_path: Path, line: str) -> None:
    root = make_export(tmp_path)
    text = (root / "manifest-files.json").read_text()
    (root / "manifest-files.json").write_text(text + line + "\n")
    done = run_split(config_for(tmp_path, root))
    assert_refused(done, "manifest-files.json", "line 3")


# --------------------------------------------------------------------------------------------
# Compression ddbshard cannot read


def lz4_frame(data: bytes) -> bytes:
    """An LZ4 frame (magic, descriptor, one stored block, end mark): no lz4 package needed."""
    return (
        b"\x04\x22\x4d\x18"
        + b"\x60\x40\x82"
        + (len(data) | 0x80000000).to_bytes(4, "little")
        + data
        + b"\x00\x00\x00\x00"
    )


def zip_of(data: bytes) -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr("part.json", data)
    return out.getvalue()


UNSUPPORTED = {"bzip2": bz2.compress, "xz": lzma.compress, "lz4": lz4_frame, "zip": zip_of}


@pytest.mark.parametrize("codec", UNSUPPORTED)
def test_unsupported_compression_in_a_folder_is_named(tmp_path: Path, codec: str) -> None:
    """Not garbage lines of a plain file: a file DynamoDB never wrote, named for what it is."""
    src = tmp_path / "lines"
    src.mkdir()
    (src / "a.json").write_bytes(lines_of(ITEMS[:10]))
    (src / "b.json.gz").write_bytes(UNSUPPORTED[codec](lines_of(ITEMS[10:20])))
    done = run_split(config_for(tmp_path, "lines"))
    assert_refused(done, "b.json.gz", f"unsupported compression ({codec})")

    done = run_split(config_for(tmp_path, "lines"), "--on-bad-file", "skip", "--overwrite")
    assert done.returncode == 1, done.stderr
    summary = read_summary(tmp_path / "out")
    (bad,) = summary["files"]["bad"]
    assert bad["file"] == "b.json.gz"
    assert f"unsupported compression ({codec})" in bad["reason"], bad
    assert summary["items"]["read"] == 10
    assert summary["items"]["rejected"] == 0


def test_validate_names_the_file_of_unsupported_compression(tmp_path: Path) -> None:
    (tmp_path / "good.json").write_bytes(lines_of(ITEMS[:3]))
    (tmp_path / "b.json.bz2").write_bytes(bz2.compress(lines_of(ITEMS[:3])))
    done = subprocess.run(
        [sys.executable, "-m", "ddbshard", "validate", "good.json", "b.json.bz2"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert_refused(done, "b.json.bz2: unsupported compression (bzip2)")
    assert "good.json: 3 items valid, 0 refused" in done.stdout


def test_unsupported_compression_in_an_export_is_named(tmp_path: Path) -> None:
    """In an export (MD5 and item count listed and matching the bytes) it is the compression
    that is reported, not a count of lines."""
    root = make_export(tmp_path)
    entries = manifest_entries(root)
    path = root.parent.parent / entries[1]["dataFileS3Key"]
    raw = bz2.compress(gzip.decompress(path.read_bytes()))
    path.write_bytes(raw)
    entries[1]["md5Checksum"] = base64.b64encode(hashlib.md5(raw).digest()).decode()
    write_manifest(root, entries)
    done = run_split(config_for(tmp_path, root))
    line = assert_refused(done, path.name, "unsupported compression (bzip2)")
    assert "lines read" not in line


# --------------------------------------------------------------------------------------------
# Folders: data files known by their bytes


def test_a_folder_of_uuid_gz_files_without_manifest_is_read(tmp_path: Path) -> None:
    """moto's ExportTableToPointInTime writes `data/<uuid>.gz` and no manifest. Other files
    are left alone: hidden ones, `_started`, checksums, and text that is not export lines."""
    src = tmp_path / "export" / "AWSDynamoDB" / "01700000000000-abcdef"
    (src / "data").mkdir(parents=True)
    parts = [ITEMS[0:100], ITEMS[100:200], ITEMS[200:300]]
    names = []
    for i, part in enumerate(parts):
        name = f"{uuid.UUID(int=i + 1)}.gz"
        (src / "data" / name).write_bytes(gzip.compress(lines_of(part)))
        names.append(f"AWSDynamoDB/01700000000000-abcdef/data/{name}")
    # plain export lines without any suffix are data too (recognised by their bytes)
    (src / "data" / "plain-part").write_bytes(lines_of(ITEMS[:3]))
    names.append("AWSDynamoDB/01700000000000-abcdef/data/plain-part")
    (src / "_started").write_bytes(b"")
    (src / "data" / ".partial.gz").write_bytes(b"\x1f\x8b garbage")
    (src / "_tmp").mkdir()
    (src / "_tmp" / "x.json").write_bytes(b"garbage\n")
    (src / "data" / "part.json.gz.md5").write_bytes(b"sQMSpEILNgoQmarvDFonGQ==")
    (src / "NOTES.txt").write_text("not export lines\n")
    done = run_split(config_for(tmp_path, tmp_path / "export"))
    assert done.returncode == 0, done.stderr
    summary = read_summary(tmp_path / "out")
    assert_summary_adds_up(summary)
    assert summary["items"]["read"] == 303
    assert summary["files"]["total"] == 4
    want = Counter(key_of(it) for it in ITEMS + ITEMS[:3])
    assert written_items(tmp_path / "out") == want


def test_a_glob_still_takes_what_it_matches(tmp_path: Path) -> None:
    src = tmp_path / "lines"
    (src / "sub").mkdir(parents=True)
    (src / "a.gz").write_bytes(gzip.compress(lines_of(ITEMS[:7])))
    (src / "sub" / "b.data").write_bytes(lines_of(ITEMS[7:9]))
    done = run_split(config_for(tmp_path, "lines/**"))
    assert done.returncode == 0, done.stderr
    assert written_items(tmp_path / "out") == Counter(key_of(it) for it in ITEMS[:9])


def test_a_folder_with_no_data_file_is_refused(tmp_path: Path) -> None:
    src = tmp_path / "lines"
    src.mkdir()
    (src / "README.md").write_text("# notes\n")
    (src / "_SUCCESS").write_bytes(b"")
    done = run_split(config_for(tmp_path, "lines"))
    assert_refused(done, "no data files")


# --------------------------------------------------------------------------------------------
# dest inside the source


@pytest.mark.parametrize("source", ["lines", "lines/**", "."])
def test_a_dest_inside_a_plain_folder_source_is_refused(tmp_path: Path, source: str) -> None:
    """The split would read its own output; with --overwrite, nothing may be deleted first."""
    src = tmp_path / "lines"
    src.mkdir()
    (src / "a.json").write_bytes(lines_of(ITEMS[:10]))
    dest = tmp_path / "lines" / "out" if source != "." else tmp_path / "out"
    dest.mkdir()
    (dest / "Everything").mkdir()
    keep = dest / "Everything" / "keep.json"
    keep.write_bytes(lines_of(ITEMS[10:12]))
    config = write_config(
        tmp_path / "split.toml",
        source=source,
        dest=str(dest),
        output='compression = "none"\nshards = 2',
        targets=CATCH_ALL,
    )
    done = run_split(config, "--overwrite")
    assert_refused(done, "dest", "inside", "source")
    assert keep.exists(), "something was deleted before the refusal"


def test_a_dest_beside_the_source_or_inside_an_export_root_is_fine(tmp_path: Path) -> None:
    """An export reads only the files its manifest lists, so a dest in its folder is safe."""
    root = make_export(tmp_path)
    config = write_config(
        tmp_path / "split.toml",
        source=str(root),
        dest=str(root / "out"),
        output='compression = "none"\nshards = 2',
        targets=CATCH_ALL,
    )
    done = run_split(config)
    assert done.returncode == 0, done.stderr
    assert read_summary(root / "out")["items"]["read"] == 200


# --------------------------------------------------------------------------------------------
# --resume after the source changed


def test_resume_is_refused_when_a_data_file_changed(tmp_path: Path) -> None:
    """A plain folder has no manifest MD5: each file's size and modification time stand for
    its bytes. The run is interrupted by a bad last file (the checkpoint stays, a.json and
    b.json are done); resuming with nothing changed goes on (and stops at the same bad file),
    resuming after a.json was rewritten with other bytes of the same length is refused."""
    src = tmp_path / "lines"
    src.mkdir()
    (src / "a.json").write_bytes(lines_of(ITEMS[:50]))
    (src / "b.json").write_bytes(lines_of(ITEMS[50:100]))
    (src / "z.json.gz").write_bytes(gzip.compress(lines_of(ITEMS[100:200]))[:-20])
    config = config_for(tmp_path, "lines")
    done = run_split(config, "--workers", "1")
    assert_refused(done, "z.json.gz")
    checkpoint = json.loads((tmp_path / "out" / "_state" / "checkpoint.json").read_text())
    assert sorted(checkpoint["done"]) == ["a.json", "b.json"]

    done = run_split(config, "--workers", "1", "--resume")
    line = assert_refused(done, "z.json.gz")
    assert "changed" not in line

    old = (src / "a.json").read_bytes()
    new = lines_of(ITEMS[150:200])
    new = new[: len(old)] if len(new) >= len(old) else new + b" " * (len(old) - len(new))
    assert len(new) == len(old) and new != old
    (src / "a.json").write_bytes(new)
    done = run_split(config, "--workers", "1", "--resume")
    assert "a.json" in assert_refused(done, "cannot resume: the config or the source changed")


def test_a_bad_file_fixed_before_resume_is_read(tmp_path: Path) -> None:
    """The stop says "fix it, then --resume": a file the run had not finished may change."""
    src = tmp_path / "lines"
    src.mkdir()
    (src / "a.json").write_bytes(lines_of(ITEMS[:50]))
    (src / "z.json.gz").write_bytes(gzip.compress(lines_of(ITEMS[50:200]))[:-20])
    config = config_for(tmp_path, "lines")
    assert_refused(run_split(config, "--workers", "1"), "z.json.gz")
    (src / "z.json.gz").write_bytes(gzip.compress(lines_of(ITEMS[50:200])))
    done = run_split(config, "--workers", "1", "--resume")
    assert done.returncode == 0, done.stderr
    summary = read_summary(tmp_path / "out")
    assert (summary["items"]["read"], summary["files"]["skipped"]) == (200, 1)


# --------------------------------------------------------------------------------------------
# Attribute names DynamoDB refuses


NAME_CASES = {
    "set_empty": ('set = { "" = "x" }', "set"),
    "rename_to_70000_bytes": ('rename = { a = "' + "n" * 70_000 + '" }', "rename"),
    "set_70000_bytes": ('set = { "' + "é" * 35_000 + '" = "x" }', "set"),
    "hash_key_256_bytes": (None, "key"),
}


@pytest.mark.parametrize("case", NAME_CASES)
def test_an_attribute_name_dynamodb_refuses_is_refused_at_load(tmp_path: Path, case: str) -> None:
    """Today such items are counted as written and `validate` refuses every one of them."""
    body, field = NAME_CASES[case]
    if body is None:
        long = "k" * 256
        targets = f'[[target]]\nname = "Everything"\nkey = {{ hash = "{long}" }}\n'
        targets += f'key_types = {{ {long} = "S" }}\nset = {{ {long} = "K#{{pk}}" }}\n'
    else:
        targets = CATCH_ALL + body + "\n"
    src = tmp_path / "lines"
    src.mkdir()
    (src / "a.json").write_bytes(lines_of(ITEMS[:10]))
    done = run_split(config_for(tmp_path, "lines", targets))
    assert_refused(done, "target 'Everything'", f": {field}", "bytes")
    assert not (tmp_path / "out").exists()


def test_a_long_but_valid_attribute_name_is_written(tmp_path: Path) -> None:
    """65,535 bytes is DynamoDB's limit, and accepted."""
    name = "n" * 65_535
    src = tmp_path / "lines"
    src.mkdir()
    (src / "a.json").write_bytes(lines_of(ITEMS[:10]))
    done = run_split(config_for(tmp_path, "lines", CATCH_ALL + f'set = {{ "{name}" = "x" }}\n'))
    assert done.returncode == 0, done.stderr
    out = read_lines((tmp_path / "out" / "Everything" / "data" / "part-00000.json").read_bytes())
    assert all(it[name] == {"S": "x"} for it in out)


# --------------------------------------------------------------------------------------------
# The same on S3 (moto's server over HTTP): folders known by their bytes, ETags as tokens


@pytest.fixture(scope="module")
def endpoint(moto_endpoint: str) -> Iterator[str]:
    reset(moto_endpoint)  # one server for the session, emptied for this module
    yield moto_endpoint


@pytest.mark.server
def test_an_s3_folder_of_uuid_gz_files_is_read(endpoint: str, tmp_path: Path) -> None:
    s3 = s3_client(endpoint)
    s3.create_bucket(Bucket="moto-export")
    prefix = "exp/AWSDynamoDB/01700000000000-abcdef"
    for i, part in enumerate([ITEMS[:150], ITEMS[150:]]):
        body = gzip.compress(lines_of(part))
        s3.put_object(Bucket="moto-export", Key=f"{prefix}/data/{uuid.UUID(int=i)}.gz", Body=body)
    s3.put_object(Bucket="moto-export", Key=f"{prefix}/_started", Body=b"")
    s3.put_object(Bucket="moto-export", Key=f"{prefix}/NOTES.txt", Body=b"notes\n")
    done = run_split(config_for(tmp_path, "s3://moto-export/exp/"))
    assert done.returncode == 0, done.stderr
    summary = read_summary(tmp_path / "out")
    assert (summary["items"]["read"], summary["files"]["total"]) == (300, 2)
    assert written_items(tmp_path / "out") == Counter(key_of(it) for it in ITEMS)


@pytest.mark.server
def test_resume_is_refused_when_an_s3_data_file_changed(endpoint: str, tmp_path: Path) -> None:
    """On S3 a file's ETag (from the listing) stands for its bytes."""
    s3 = s3_client(endpoint)
    s3.create_bucket(Bucket="lines")
    old = lines_of(ITEMS[:50])
    s3.put_object(Bucket="lines", Key="in/a.json", Body=old)
    s3.put_object(Bucket="lines", Key="in/b.json", Body=lines_of(ITEMS[50:100]))
    bad = gzip.compress(lines_of(ITEMS[100:200]))[:-20]
    s3.put_object(Bucket="lines", Key="in/z.json.gz", Body=bad)
    config = config_for(tmp_path, "s3://lines/in/")
    assert_refused(run_split(config, "--workers", "1"), "z.json.gz")
    line = assert_refused(run_split(config, "--workers", "1", "--resume"), "z.json.gz")
    assert "changed" not in line
    new = lines_of(ITEMS[150:200])
    new = new[: len(old)] if len(new) >= len(old) else new + b" " * (len(old) - len(new))
    assert len(new) == len(old) and new != old
    s3.put_object(Bucket="lines", Key="in/a.json", Body=new)
    done = run_split(config, "--workers", "1", "--resume")
    assert_refused(done, "cannot resume: the config or the source changed")
