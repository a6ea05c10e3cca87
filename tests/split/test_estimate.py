"""Tests of `estimate`: numbers from a known manifest, checked against what split then writes."""

from __future__ import annotations

import json
import subprocess
import sys
import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from ddbshard import synth
from ddbshard.split import estimate as est
from support.s3_server import clear_fsspec_cache, reset, s3_client

GIB = 1 << 30

CONFIG = """\
source = "{source}"
dest = "out/"
[output]
compression = "gzip"
shards = {shards}
unmatched = "drop"
[[target]]
name = "Posts"
where = "kind = :p"
values = {{ ":p" = "post" }}
key = {{ hash = "pk", range = "sk" }}
key_types = {{ pk = "S", sk = "S" }}
drop = ["legacy", "tags"]
rename = {{ created_at = "createdAt" }}
[[target]]
name = "Profiles"
where = "kind = :p"
values = {{ ":p" = "profile" }}
key = {{ hash = "user_id" }}
key_types = {{ user_id = "S" }}
keep = ["user_id", "display_name", "email"]
[target.table]
table_name = "profiles-v2"
"""


def _cli(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "ddbshard", *args], capture_output=True, text=True, cwd=cwd
    )


def _setup(tmp: Path, items: int = 3000, shards: int | str = 4) -> Path:
    root = synth.write_export(tmp / "export", items, files=3, seed=5)
    shards_text = f'"{shards}"' if isinstance(shards, str) else str(shards)
    (tmp / "cfg.toml").write_text(CONFIG.format(source=root, shards=shards_text))
    return root


def _estimate(tmp: Path, *args: str) -> dict[str, Any]:
    r = _cli("estimate", "cfg.toml", "--json", *args, cwd=tmp)
    assert r.returncode == 0, r.stderr
    result: dict[str, Any] = json.loads(r.stdout)
    return result


def test_numbers_from_a_known_manifest_match_the_split(tmp_path: Path) -> None:
    root = _setup(tmp_path)
    manifest = json.loads((root / "manifest-summary.json").read_text())
    e = _estimate(tmp_path, "--export-rate", "0.5", "--import-rate", "0.25")

    x = e["export"]
    assert x["items"] == 3000 == manifest["itemCount"]
    assert x["billed_size_bytes"] == manifest["billedSizeBytes"]
    assert x["export_charge_usd"] == pytest.approx(manifest["billedSizeBytes"] / GIB * 0.5)
    assert x["export_rate_origin"] == "command line"
    assert e["region"] == "us-east-1"  # from the manifest's exportArn
    assert e["sample"] == {
        "items": 3000,
        "files": 3,
        "whole_files": 3,
        "unmatched_fraction": pytest.approx(e["sample"]["unmatched_fraction"]),
        "rejected_fraction": 0.0,
    }

    r = _cli("split", "cfg.toml", "--quiet", "--workers", "1", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    summary = json.loads((tmp_path / "out" / "_summary.json").read_text())
    assert e["sample"]["unmatched_fraction"] == pytest.approx(
        summary["items"]["unmatched"] / summary["items"]["read"]
    )
    total_import = 0.0
    for name in ("Posts", "Profiles"):
        t = e["targets"][name]
        m = json.loads((tmp_path / "out" / name / "manifest.json").read_text())
        # The whole export was the sample: items and uncompressed bytes are exact.
        assert t["items"] == m["items"] > 0
        assert t["import_bytes"] == m["uncompressed_bytes"]
        assert t["import_charge_usd"] == pytest.approx(m["uncompressed_bytes"] / GIB * 0.25)
        assert t["shards"] == m["shard_count"] == 4
        assert t["s3_objects"] == 4 and t["s3_objects_limit"] == 50_000
        assert t["items_per_shard"] == pytest.approx(m["items"] / 4)
        # With the whole export as the sample, the sample's Splitter gets split's own shard
        # count, so even the compressed size is what one worker writes.
        assert t["shard_bytes"] == m["bytes"]
        total_import += t["import_charge_usd"]
    assert e["targets"]["Profiles"]["table_name"] == "profiles-v2"
    assert e["import_charge_usd"] == pytest.approx(total_import)
    assert e["total_charge_usd"] == pytest.approx(x["export_charge_usd"] + total_import)


def test_a_partial_sample_scales_to_the_manifests_count(tmp_path: Path) -> None:
    _setup(tmp_path, items=6000)
    e = _estimate(tmp_path, "--sample-mb", "1")
    assert 0 < e["sample"]["items"] < 6000 and e["sample"]["whole_files"] == 0
    r = _cli("split", "cfg.toml", "--quiet", "--workers", "1", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    for name in ("Posts", "Profiles"):
        m = json.loads((tmp_path / "out" / name / "manifest.json").read_text())
        t = e["targets"][name]
        assert t["items"] == pytest.approx(m["items"], rel=0.1)
        assert t["import_bytes"] == pytest.approx(m["uncompressed_bytes"], rel=0.1)
        assert t["shard_bytes"] == pytest.approx(m["bytes"], rel=0.2)


def test_auto_shards_and_objects_follow_the_manifest_item_count(tmp_path: Path) -> None:
    """A manifest that says 2.5 million items: "auto" gives 3 shards per target (one per
    million, as split decides), and the sample's shares scale to that count."""
    root = _setup(tmp_path, items=1500, shards="auto")
    summary_path = root / "manifest-summary.json"
    summary = json.loads(summary_path.read_text())
    summary["itemCount"] = 2_500_000
    summary_path.write_text(json.dumps(summary))
    e = _estimate(tmp_path)
    sample = e["sample"]["items"]
    assert sample == 1500
    for t in e["targets"].values():
        assert t["shards"] == 3 and t["s3_objects"] == 3
        assert t["items"] == round(2_500_000 * t["fraction"])
        assert t["items_per_shard"] == pytest.approx(t["items"] / 3)


def _set_export_region(root: Path, region: str) -> None:
    """Rewrites the manifest's ARNs as if the table lived in `region` (estimate reads its
    Region from there)."""
    path = root / "manifest-summary.json"
    summary = json.loads(path.read_text())
    for key in ("exportArn", "tableArn"):
        if key in summary:
            parts = summary[key].split(":")
            parts[3] = region
            summary[key] = ":".join(parts)
    path.write_text(json.dumps(summary))


@pytest.mark.parametrize("region", ["us-east-1", "us-east-2"])
def test_the_shipped_rates_of_us_east_1_and_2_are_used(tmp_path: Path, region: str) -> None:
    """AWS-FORMATS.md §10: full export $0.10/GB, incremental export $0.10/GB, import $0.15/GB
    of uncompressed source, in both Regions."""
    root = _setup(tmp_path)
    _set_export_region(root, region)
    billed = json.loads((root / "manifest-summary.json").read_text())["billedSizeBytes"]
    e = _estimate(tmp_path)
    assert e["region"] == region
    x = e["export"]
    assert x["export_rate_usd_per_gb"] == 0.10
    assert x["export_charge_usd"] == pytest.approx(billed / GIB * 0.10)
    assert e["import_rate_usd_per_gb"] == 0.15
    for t in e["targets"].values():
        assert t["import_charge_usd"] == pytest.approx(t["import_bytes"] / GIB * 0.15)
    assert e["incremental_export_rate_usd_per_gb"] == 0.10
    total = x["export_charge_usd"] + e["import_charge_usd"]
    assert e["total_charge_usd"] == pytest.approx(total) and total > 0
    for origin in (x["export_rate_origin"], e["import_rate_origin"]):
        assert origin.startswith(f"rates.toml, {region}, read 2026-12-06: "), origin
        assert "AWS-FORMATS.md" in origin
    if region == "us-east-1":  # only the full export's figure was read for us-east-1 itself
        assert "3ADXMU9RYGKRUA9W" in x["export_rate_origin"]
        assert "us-east-2's" in e["import_rate_origin"]

    r = _cli("estimate", "cfg.toml", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert "GB x $0.10/GB = " in r.stdout
    assert "total: export ? " not in r.stdout and "give --export-rate" not in r.stdout
    assert "catch-up: an incremental export costs $0.10/GB" in r.stdout
    assert f"rates: rates.toml, {region}, read 2026-12-06" in r.stdout


@pytest.mark.parametrize("how", ["manifest", "--region"])
def test_no_rate_is_said_not_invented(tmp_path: Path, how: str) -> None:
    """Other Regions: no figure, and the report says which flags to give."""
    root = _setup(tmp_path)
    args: tuple[str, ...] = ()
    if how == "manifest":
        _set_export_region(root, "ap-northeast-1")
    else:
        args = ("--region", "ap-northeast-1")
    e = _estimate(tmp_path, *args)
    assert e["region"] == "ap-northeast-1"
    assert e["export"]["export_charge_usd"] is None and e["total_charge_usd"] is None
    assert e["import_charge_usd"] is None and e["incremental_export_rate_usd_per_gb"] is None
    assert "give --export-rate/--import-rate" in e["export"]["export_rate_origin"]
    r = _cli("estimate", "cfg.toml", *args, cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert "total: export ? + import ? = ?" in r.stdout
    assert (
        "rates: no rate for ap-northeast-1 in ddbshard's rates.toml (it has us-east-1, "
        "us-east-2): give --export-rate/--import-rate" in r.stdout
    )
    assert "target Posts -> table Posts" in r.stdout and "4 S3 objects" in r.stdout
    # The flags fill what the table lacks.
    e = _estimate(tmp_path, *args, "--export-rate", "0.114", "--import-rate", "0.171")
    assert e["export"]["export_rate_origin"] == e["import_rate_origin"] == "command line"
    assert e["total_charge_usd"] is not None


def test_no_sample_falls_back_to_the_billed_size(tmp_path: Path) -> None:
    root = _setup(tmp_path)
    billed = json.loads((root / "manifest-summary.json").read_text())["billedSizeBytes"]
    e = _estimate(tmp_path, "--sample-mb", "0", "--import-rate", "1")
    for t in e["targets"].values():
        assert t["items"] == 3000 and t["import_bytes"] == billed
        assert t["import_charge_usd"] == pytest.approx(billed / GIB)
        assert t["basis"].startswith("no sample")


def test_rates_file_is_documented_and_used(monkeypatch: pytest.MonkeyPatch) -> None:
    table = est.rates_table()
    assert table["source"].startswith("https://aws.amazon.com/dynamodb/pricing")
    assert table["checked"] and table["bytes_per_gb"] == GIB
    assert {"us-east-1", "us-east-2"} <= set(table["regions"])
    for region, entry in table["regions"].items():  # every filled Region is complete
        keys = {"export_per_gb", "incremental_export_per_gb", "import_per_gb", "checked", "source"}
        assert keys <= set(entry), region

    monkeypatch.setattr(
        est,
        "rates_table",
        lambda: tomllib.loads(
            'source = "https://example/p"\nchecked = "2026-01-01"\nbytes_per_gb = 1073741824\n'
            '[regions."eu-west-1"]\nexport_per_gb = 0.2\nimport_per_gb = 0.3\n'
            'checked = "2026-02-02"\n'
        ),
    )
    exp, imp, _ = est.pick_rates("eu-west-1", None, 0.9)
    assert exp.usd_per_gb == 0.2 and "2026-02-02" in exp.origin
    assert imp.usd_per_gb == 0.9 and imp.origin == "command line"
    exp, _, _ = est.pick_rates("ap-south-1", None, None)
    assert exp.usd_per_gb is None


def test_bad_flags_are_usage_errors(tmp_path: Path) -> None:
    _setup(tmp_path)
    r = _cli("estimate", "cfg.toml", "--import-rate", "-1", cwd=tmp_path)
    assert r.returncode == 2 and "must be a number >= 0" in r.stderr
    r = _cli("estimate", "missing.toml", cwd=tmp_path)
    assert r.returncode == 2 and "cannot read the config" in r.stderr


@pytest.fixture(scope="module")
def endpoint(moto_endpoint: str) -> Iterator[str]:
    reset(moto_endpoint)  # one server for the session, emptied for this module
    yield moto_endpoint


@pytest.mark.server
def test_s3_source_gives_the_same_estimate(endpoint: str, tmp_path: Path) -> None:
    reset(endpoint)
    clear_fsspec_cache()
    _setup(tmp_path)
    local = _estimate(tmp_path, "--export-rate", "0.1", "--import-rate", "0.2")
    s3 = s3_client(endpoint)
    s3.create_bucket(Bucket="exports")
    for f in (tmp_path / "export").rglob("*"):
        if f.is_file():
            s3.upload_file(str(f), "exports", f"x/{f.relative_to(tmp_path / 'export')}")
    cfg = (tmp_path / "cfg.toml").read_text()
    (tmp_path / "cfg.toml").write_text(cfg.replace(local["source"], "s3://exports/x/"))
    remote = _estimate(tmp_path, "--export-rate", "0.1", "--import-rate", "0.2")
    assert remote["targets"] == local["targets"]
    assert remote["export"] == local["export"]
