"""LocalFS answers the calls `source` makes as fsspec's LocalFileSystem does."""

from __future__ import annotations

from pathlib import Path

import pytest
from fsspec.implementations.local import LocalFileSystem

from ddbshard.localfs import LocalFS, is_local_url
from ddbshard.source import resolve_source


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
    """resolve_source on local paths (LocalFS) names and sizes files as through fsspec."""
    monkeypatch.chdir(tree)
    for url in [str(tree), "sub", f"{tree}/*.json*", f"file://{tree}/sub/deeper"]:
        assert is_local_url(url)
        local = resolve_source(url)
        assert isinstance(local.fs, LocalFS)
        monkeypatch.setattr("ddbshard.source.is_local_url", lambda _: False)
        through_fsspec = resolve_source(url)
        monkeypatch.undo()
        monkeypatch.chdir(tree)
        assert isinstance(through_fsspec.fs, LocalFileSystem)
        assert local.root == through_fsspec.root, url
        assert local.files == through_fsspec.files, url
    assert not is_local_url("s3://bucket/x")
