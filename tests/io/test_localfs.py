"""LocalFS answers the calls `source` makes as fsspec's LocalFileSystem does."""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

import pytest
from fsspec.implementations.local import LocalFileSystem

from ddbshard.io.localfs import LocalFS, is_local_url
from ddbshard.io.source import InputFile, lists_under, resolve_source


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    files = {
        "a.json": b"1",
        "b.json.gz": b"22",
        ".hidden.json": b"333",
        "sub/c.json": b"4444",
        "sub/deeper/d.json.zst": b"55555",
        "sub/deeper/.e.json": b"",
        "other/manifest-files.json": b"{}",
    }
    for name, data in files.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_bytes(data)
    (tmp_path / "empty").mkdir()
    return tmp_path


def test_listing_calls_agree_with_fsspec(tree: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    ours, theirs = LocalFS(), LocalFileSystem()
    root = str(tree)
    for path in [root, f"{root}/sub", f"{root}/a.json", f"{root}/missing", f"{root}/empty"]:
        assert ours.exists(path) == theirs.exists(path), path
        assert ours.isdir(path) == theirs.isdir(path), path
        assert ours.find(path) == theirs.find(path), path
        found = ours.find(path, detail=True)
        assert isinstance(found, dict)
        want = theirs.find(path, detail=True)
        assert {k: v["size"] for k, v in found.items()} == {k: v["size"] for k, v in want.items()}
    for path in [root, f"{root}/sub", f"{root}/empty"]:
        assert ours.ls(path) == sorted(theirs.ls(path, detail=False)), path
    for pattern in ["*.json*", "**/*.json", "sub/**", "sub/*/*.zst", "*", "nothing*"]:
        assert ours.glob(f"{root}/{pattern}") == sorted(theirs.glob(f"{root}/{pattern}")), pattern
    assert ours.info(f"{root}/sub/c.json")["size"] == 4
    for path in [f"{root}/sub/c.json", f"{root}/sub"]:
        assert ours.info(path)["mtime"] == theirs.info(path)["mtime"], path
        assert ours.info(path)["mtime_ns"] == os.stat(path).st_mtime_ns, path
    for start, end in [(0, 2), (1, None), (None, 3), (2, 100), (5, 5)]:
        got = ours.cat_file(f"{root}/sub/deeper/d.json.zst", start=start, end=end)
        assert got == theirs.cat_file(f"{root}/sub/deeper/d.json.zst", start=start, end=end)
    with pytest.raises(FileNotFoundError):
        ours.info(f"{root}/missing")
    # Relative paths and file:// URLs become the same absolute path.
    monkeypatch.chdir(tree)
    for url in ["sub", "./sub/", f"file://{root}/sub", "sub/../sub", ".", f"{root}//sub/"]:
        assert ours._strip_protocol(url) == theirs._strip_protocol(url), url
    with ours.open(f"{root}/sub/c.json") as f:
        assert f.read() == b"4444"


def test_sources_list_the_same_files_either_way(
    tree: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """resolve_source on local paths (LocalFS) names and sizes files as through fsspec; each
    file's token (size and modification time, in nanoseconds or fsspec's float seconds) is
    there either way."""
    monkeypatch.chdir(tree)
    for url in [str(tree), "sub", f"{tree}/*.json*", f"file://{tree}/sub/deeper"]:
        assert is_local_url(url)
        local = resolve_source(url)
        assert isinstance(local.fs, LocalFS)
        monkeypatch.setattr("ddbshard.io.source.is_local_url", lambda _: False)
        through_fsspec = resolve_source(url)
        monkeypatch.undo()
        monkeypatch.chdir(tree)
        assert isinstance(through_fsspec.fs, LocalFileSystem)
        assert local.root == through_fsspec.root, url
        assert all(f.token for f in local.files + through_fsspec.files), url

        def untokened(files: tuple[InputFile, ...]) -> list[InputFile]:
            return [dataclasses.replace(f, token=None) for f in files]

        assert untokened(local.files) == untokened(through_fsspec.files), url
    assert not is_local_url("s3://bucket/x")


def test_a_folder_reads_what_is_data_by_name_or_bytes(tmp_path: Path) -> None:
    """Names are only refused (hidden, `_`, manifests, checksums); the rest is data when its
    name says so or its first bytes do."""
    files = {
        "a.json": b"",  # named as data: read, even empty
        "b.gz": b"\x1f\x8b\x08",  # moto's data/<uuid>.gz
        "c": b'\n \t{"Item":{}}\n',  # export lines under no suffix
        "d.bin": b"BZh91AY&SY\x00\x00",  # bzip2: read, to be refused by name
        "e.txt": b"notes\n",
        "f": b"",
        ".g.json": b"{}",
        "_started": b"",
        "_tmp/h.json": b"{}",
        "sub/.cache/i.json": b"{}",
        "manifest-files.json": b"{}",
        "j.json.gz.md5": b"x",
        "k.checksum": b"x",
        "sub/l.jsonl": b"{}",
        "sub/m.zst": b"\x28\xb5\x2f\xfd",
        "n.csv": b"pk,sk\n",
        "o": b"\xef\xbb\xbf{}",  # a UTF-8 byte order mark before the line
    }
    for name, data in files.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_bytes(data)
    got = [f.name for f in resolve_source(str(tmp_path)).files]
    assert got == ["a.json", "b.gz", "c", "d.bin", "o", "sub/l.jsonl", "sub/m.zst"]


def test_a_token_changes_when_the_bytes_do(tmp_path: Path) -> None:
    path = tmp_path / "a.json"
    path.write_bytes(b"{}\n")
    (before,) = resolve_source(str(tmp_path)).files
    assert resolve_source(str(tmp_path)).files == (before,), "stable while nothing changes"
    path.write_bytes(b"[]\n")
    os.utime(path, ns=(0, os.stat(path).st_mtime_ns + 1))  # whatever the clock's granularity
    (after,) = resolve_source(str(tmp_path)).files
    assert after.size == before.size
    assert after.token != before.token
    assert after.version == after.token and before.md5_base64 is None


@pytest.mark.parametrize(
    ("source", "dest", "refused"),
    [
        ("lines", "lines/out", True),
        ("lines", "lines", True),
        ("lines", "lines-out", False),
        ("lines", "out", False),
        (".", "out", True),
        ("lines/**", "lines/out", True),
        ("lines/*/*.json", "lines/out", True),
        ("lines/*.json", "lines", True),
        ("lines/*.json", "lines/out", False),
        ("lines/a.json", "lines/out", False),
        ("export", "export/out", False),
        ("export/AWSDynamoDB/01700000000000-abcdef", "export/out", False),
        ("missing", "missing/out", False),  # resolving it fails before dest is touched
    ],
)
def test_which_dests_a_source_would_read(
    tmp_path: Path, source: str, dest: str, refused: bool
) -> None:
    (tmp_path / "lines").mkdir()
    (tmp_path / "lines" / "a.json").write_bytes(b"{}")
    root = tmp_path / "export" / "AWSDynamoDB" / "01700000000000-abcdef"
    root.mkdir(parents=True)
    (root / "manifest-summary.json").write_text("{}")
    folder = lists_under(f"{tmp_path}/{source}", f"{tmp_path}/{dest}")
    assert (folder is not None) == refused, folder
