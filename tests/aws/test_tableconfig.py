"""Tests of tableconfig.py and `init --from-json`, with no server: table descriptions shaped like
the AWS CLI's output → a config that loads and whose ImportTable request recreates the table."""

from __future__ import annotations

import copy
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import botocore.session
import pytest
from botocore.validate import ParamValidator

from ddbshard.aws.export import export_root, parse_time
from ddbshard.aws.importspec import import_table_request, post_import_settings
from ddbshard.aws.tableconfig import (
    TableInfo,
    check_config,
    expected_creation_parameters,
    info_from_json,
    normalise_creation_parameters,
    render_config,
    table_spec,
)
from ddbshard.config import load_config
from ddbshard.exceptions import DdbShardError, InputError

ARN = "arn:aws:dynamodb:eu-west-1:123456789012:table/Orders"

# A pay-per-request table as `aws dynamodb describe-table` prints it (trimmed of fields that
# do not matter here, and with ones that do: an LSI with INCLUDE, a GSI over a number).
ON_DEMAND: dict[str, Any] = {
    "Table": {
        "TableName": "Orders",
        "TableArn": ARN,
        "TableStatus": "ACTIVE",
        "CreationDateTime": "2024-05-01T10:00:00.000000+00:00",
        "AttributeDefinitions": [
            {"AttributeName": "customer", "AttributeType": "S"},
            {"AttributeName": "order_id", "AttributeType": "S"},
            {"AttributeName": "placed_at", "AttributeType": "N"},
            {"AttributeName": "status", "AttributeType": "S"},
        ],
        "KeySchema": [
            {"AttributeName": "customer", "KeyType": "HASH"},
            {"AttributeName": "order_id", "KeyType": "RANGE"},
        ],
        "BillingModeSummary": {"BillingMode": "PAY_PER_REQUEST"},
        "ProvisionedThroughput": {
            "NumberOfDecreasesToday": 0,
            "ReadCapacityUnits": 0,
            "WriteCapacityUnits": 0,
        },
        "GlobalSecondaryIndexes": [
            {
                "IndexName": "byStatus",
                "KeySchema": [
                    {"AttributeName": "status", "KeyType": "HASH"},
                    {"AttributeName": "placed_at", "KeyType": "RANGE"},
                ],
                "Projection": {"ProjectionType": "KEYS_ONLY"},
                "IndexStatus": "ACTIVE",
                "ProvisionedThroughput": {"ReadCapacityUnits": 0, "WriteCapacityUnits": 0},
            }
        ],
        "LocalSecondaryIndexes": [
            {
                "IndexName": "byPlaced",
                "KeySchema": [
                    {"AttributeName": "customer", "KeyType": "HASH"},
                    {"AttributeName": "placed_at", "KeyType": "RANGE"},
                ],
                "Projection": {"ProjectionType": "INCLUDE", "NonKeyAttributes": ["total", "n"]},
            }
        ],
        "StreamSpecification": {"StreamEnabled": True, "StreamViewType": "NEW_IMAGE"},
        "TableClassSummary": {"TableClass": "STANDARD_INFREQUENT_ACCESS"},
        "SSEDescription": {
            "Status": "ENABLED",
            "SSEType": "KMS",
            "KMSMasterKeyArn": "arn:aws:kms:eu-west-1:123456789012:key/abcd",
        },
        "DeletionProtectionEnabled": True,
    }
}
TTL = {"TimeToLiveDescription": {"TimeToLiveStatus": "ENABLED", "AttributeName": "expires_at"}}
TAGS = {
    "Tags": [
        {"Key": "team", "Value": "billing"},
        {"Key": "aws:cloudformation:stack-name", "Value": "orders"},
        {"Key": "cost center", "Value": 'a "quoted" value'},
    ]
}
BACKUPS = {
    "ContinuousBackupsDescription": {
        "ContinuousBackupsStatus": "ENABLED",
        "PointInTimeRecoveryDescription": {
            "PointInTimeRecoveryStatus": "ENABLED",
            "RecoveryPeriodInDays": 7,
        },
    }
}


def _provisioned() -> dict[str, Any]:
    doc = copy.deepcopy(ON_DEMAND)
    t = doc["Table"]
    t["BillingModeSummary"] = {"BillingMode": "PROVISIONED"}
    t["ProvisionedThroughput"] = {"ReadCapacityUnits": 40, "WriteCapacityUnits": 15}
    t["GlobalSecondaryIndexes"][0]["ProvisionedThroughput"] = {
        "ReadCapacityUnits": 7,
        "WriteCapacityUnits": 3,
    }
    return doc


def _write_json(tmp: Path, docs: dict[str, Any]) -> list[Path]:
    paths = []
    for name, doc in docs.items():
        p = tmp / f"{name}.json"
        p.write_text(json.dumps(doc))
        paths.append(p)
    return paths


def _info(*docs: dict[str, Any], tmp: Path) -> TableInfo:
    return info_from_json(_write_json(tmp, {f"f{i}": d for i, d in enumerate(docs)}))


def _valid_for_botocore(request: dict[str, Any]) -> None:
    model = botocore.session.get_session().get_service_model("dynamodb")
    shape = model.operation_model("ImportTable").input_shape
    report = ParamValidator().validate(request, shape)
    assert not report.has_errors(), report.generate_report()


def test_on_demand_table_with_lsi_round_trips(tmp_path: Path) -> None:
    info = _info(ON_DEMAND, TTL, TAGS, BACKUPS, tmp=tmp_path)
    spec = table_spec(info)
    text = render_config(spec, table_name="Orders-v2", source="s3://e/x/", dest="s3://i/run/")
    config = check_config(text, info, "Orders-v2")
    (target,) = config.targets
    assert target.name == "Orders" and target.table.table_name == "Orders-v2"
    request = import_table_request(target, compression="gzip", bucket="i", prefix="run/")
    _valid_for_botocore(request)
    params = request["TableCreationParameters"]
    assert params["BillingMode"] == "PAY_PER_REQUEST" and "ProvisionedThroughput" not in params
    gsis = {g["IndexName"]: g for g in params["GlobalSecondaryIndexes"]}
    assert gsis["byPlaced"] == {  # the LSI, as a GSI with the same keys and projection
        "IndexName": "byPlaced",
        "KeySchema": [
            {"AttributeName": "customer", "KeyType": "HASH"},
            {"AttributeName": "placed_at", "KeyType": "RANGE"},
        ],
        "Projection": {"ProjectionType": "INCLUDE", "NonKeyAttributes": ["total", "n"]},
    }
    assert gsis["byStatus"]["Projection"] == {"ProjectionType": "KEYS_ONLY"}
    assert (
        sorted(params["AttributeDefinitions"], key=lambda d: d["AttributeName"])
        == (ON_DEMAND["Table"]["AttributeDefinitions"])
    )
    assert post_import_settings(target) == {
        "StreamSpecification": {"StreamEnabled": True, "StreamViewType": "NEW_IMAGE"},
        "TimeToLiveSpecification": {"Enabled": True, "AttributeName": "expires_at"},
        "Tags": [
            {"Key": "team", "Value": "billing"},
            {"Key": "cost center", "Value": 'a "quoted" value'},
        ],
        "PointInTimeRecoverySpecification": {"PointInTimeRecoveryEnabled": True},
    }
    # What a reader of the file must know is said in it.
    assert "was a LOCAL secondary index" in text and "eventually consistent only" in text
    assert "10 GB limit" in text and "can no longer be fetched through it" in text
    assert "not copied: aws:cloudformation:stack-name" in text
    for gone in ("arn:aws:kms:eu-west-1:123456789012:key/abcd", "STANDARD_INFREQUENT_ACCESS"):
        assert gone in text
    assert "deletion protection" in text and "recovery period of 7 days" in text


def test_provisioned_lsi_gets_the_tables_capacity(tmp_path: Path) -> None:
    info = _info(_provisioned(), tmp=tmp_path)
    text = render_config(table_spec(info), table_name="Orders-new")
    config = check_config(text, info, "Orders-new")
    request = import_table_request(config.targets[0], compression="zstd", bucket="b", prefix="")
    _valid_for_botocore(request)
    params = request["TableCreationParameters"]
    assert params["ProvisionedThroughput"] == {"ReadCapacityUnits": 40, "WriteCapacityUnits": 15}
    throughput = {
        g["IndexName"]: g["ProvisionedThroughput"] for g in params["GlobalSecondaryIndexes"]
    }
    assert throughput == {
        "byStatus": {"ReadCapacityUnits": 7, "WriteCapacityUnits": 3},
        "byPlaced": {"ReadCapacityUnits": 40, "WriteCapacityUnits": 15},
    }
    assert "its own throughput (set here to the table's)" in text


def test_unknown_ttl_tags_pitr_are_said_not_guessed(tmp_path: Path) -> None:
    info = _info(ON_DEMAND, tmp=tmp_path)
    text = render_config(table_spec(info), table_name="Orders-new")
    config = check_config(text, info, "Orders-new")
    table = config.targets[0].table
    assert table.ttl is None and table.tags == {} and table.pitr is None
    assert "ttl: not known" in text and "tags: not known" in text and "pitr: not known" in text
    assert "describe-time-to-live" in text


def test_ttl_off_and_no_tags_are_known_facts(tmp_path: Path) -> None:
    off = {"TimeToLiveDescription": {"TimeToLiveStatus": "DISABLED"}}
    no_pitr = copy.deepcopy(BACKUPS)
    no_pitr["ContinuousBackupsDescription"]["PointInTimeRecoveryDescription"] = {
        "PointInTimeRecoveryStatus": "DISABLED"
    }
    info = _info(ON_DEMAND, off, {"Tags": []}, no_pitr, tmp=tmp_path)
    text = render_config(table_spec(info), table_name="Orders-new")
    table = check_config(text, info, "Orders-new").targets[0].table
    assert table.ttl is None and table.pitr is False
    assert "time to live is off" in text and "tags: the table has none" in text


def test_odd_attribute_names_survive_toml(tmp_path: Path) -> None:
    doc = copy.deepcopy(ON_DEMAND)
    t = doc["Table"]
    odd = 'the "key" \\ #1 é\t😀'
    t["AttributeDefinitions"][0]["AttributeName"] = odd
    t["KeySchema"][0]["AttributeName"] = odd
    t["LocalSecondaryIndexes"][0]["KeySchema"][0]["AttributeName"] = odd
    t["LocalSecondaryIndexes"][0]["Projection"]["NonKeyAttributes"] = ["a.b", "x = y"]
    info = _info(doc, tmp=tmp_path)
    text = render_config(table_spec(info), table_name="Orders-new")
    target = check_config(text, info, "Orders-new").targets[0]
    assert target.hash_key == odd and target.key_types[odd] == "S"
    assert target.table.gsis[1].non_key_attributes == ("a.b", "x = y")


def test_hash_only_table_and_underscore_name(tmp_path: Path) -> None:
    doc = {
        "Table": {
            "TableName": "_audit",
            "AttributeDefinitions": [{"AttributeName": "id", "AttributeType": "B"}],
            "KeySchema": [{"AttributeName": "id", "KeyType": "HASH"}],
            # No BillingModeSummary: a table older than on-demand, so provisioned.
            "ProvisionedThroughput": {"ReadCapacityUnits": 1, "WriteCapacityUnits": 1},
        }
    }
    info = _info(doc, tmp=tmp_path)
    text = render_config(table_spec(info), table_name="audit-new")
    target = check_config(text, info, "audit-new").targets[0]
    # "_" names are kept for ddbshard's own outputs under dest (_rejects/, _summary.json).
    assert target.name == "audit" and target.range_key is None
    assert target.table.billing_mode == "PROVISIONED" and target.table.read_capacity == 1


def test_expected_parameters_are_not_just_the_config_read_back(tmp_path: Path) -> None:
    """check_config must catch a config that says something else than the table: a changed
    projection is a valid config, so only the comparison with DescribeTable can see it."""
    info = _info(ON_DEMAND, tmp=tmp_path)
    text = render_config(table_spec(info), table_name="Orders-new")
    changed = text.replace('projection = "KEYS_ONLY"', 'projection = "ALL"')
    assert changed != text
    with pytest.raises(DdbShardError, match="does not reproduce the table"):
        check_config(changed, info, "Orders-new")
    want = normalise_creation_parameters(expected_creation_parameters(info, "Orders-new"))
    assert [g["IndexName"] for g in want["GlobalSecondaryIndexes"]] == ["byPlaced", "byStatus"]


@pytest.mark.parametrize(
    ("doc", "message"),
    [
        ({"Items": []}, "not the output of describe-table"),
        ({"Table": {"TableName": "T", "KeySchema": []}}, "AttributeDefinitions is missing"),
    ],
)
def test_bad_json_inputs(tmp_path: Path, doc: dict[str, Any], message: str) -> None:
    with pytest.raises(InputError, match=message):
        table_spec(_info(doc, tmp=tmp_path))


def test_json_inputs_are_recognised_in_any_order_once(tmp_path: Path) -> None:
    paths = _write_json(tmp_path, {"tags": TAGS, "table": ON_DEMAND, "ttl": TTL})
    assert info_from_json(paths).ttl == TTL["TimeToLiveDescription"]
    with pytest.raises(InputError, match="a second describe-table"):
        info_from_json([*paths, paths[1]])
    with pytest.raises(InputError, match="no describe-table output"):
        info_from_json(paths[:1])


def _cli(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "ddbshard", *args], capture_output=True, text=True, cwd=cwd
    )


def test_cli_from_json_writes_a_loadable_config_and_refuses_overwrite(tmp_path: Path) -> None:
    files = [str(p) for p in _write_json(tmp_path, {"t": ON_DEMAND, "ttl": TTL, "b": BACKUPS})]
    r = _cli("init", "--from-json", *files, "--out", "split.toml", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert "1 LSI as GSI" in r.stdout and "tags unknown" in r.stdout
    cfg = load_config(tmp_path / "split.toml")
    assert cfg.targets[0].table.table_name == "Orders-new"
    before = (tmp_path / "split.toml").read_text()

    r = _cli(
        "init", "--from-json", *files, "--out", "split.toml", "--table-name", "X-1", cwd=tmp_path
    )
    assert r.returncode == 2 and "already exists; pass --force" in r.stderr
    assert (tmp_path / "split.toml").read_text() == before

    r = _cli(
        "init", "--from-json", *files, "--out", "split.toml", "--force", "--table-name", "Orders",
        cwd=tmp_path,
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    assert load_config(tmp_path / "split.toml").targets[0].table.table_name == "Orders"


def test_cli_usage_errors(tmp_path: Path) -> None:
    files = [str(p) for p in _write_json(tmp_path, {"t": ON_DEMAND})]
    r = _cli("init", "--from-json", *files, "--export-time", "2026-01-01T00:00:00Z", cwd=tmp_path)
    assert r.returncode == 2 and "--export-time needs --export" in r.stderr
    r = _cli("init", "--from-json", str(tmp_path / "missing.json"), cwd=tmp_path)
    assert r.returncode == 2 and "cannot read" in r.stderr
    assert not (tmp_path / "split.toml").exists()


def test_generated_config_uses_the_contracts_key_names(tmp_path: Path) -> None:
    """The file is plain TOML with DESIGN.md's names, and no LSI section anywhere."""
    import tomllib

    info = _info(ON_DEMAND, TTL, TAGS, BACKUPS, tmp=tmp_path)
    raw = tomllib.loads(render_config(table_spec(info), table_name="Orders-new"))
    assert set(raw) == {"source", "dest", "output", "target"}
    target = raw["target"][0]
    assert set(target) == {"name", "key", "key_types", "table"}
    assert set(target["table"]) == {
        "table_name", "billing_mode", "stream", "ttl", "pitr", "tags", "global_secondary_indexes",
    }  # fmt: skip


def test_export_root_and_time_parsing() -> None:
    desc = {
        "ExportArn": f"{ARN}/export/01693685827463-2d8752fd",
        "S3Bucket": "exports",
        "S3Prefix": "2026/nov",
    }
    assert export_root(desc) == "s3://exports/2026/nov/AWSDynamoDB/01693685827463-2d8752fd/"
    assert export_root({**desc, "S3Prefix": None}) == (
        "s3://exports/AWSDynamoDB/01693685827463-2d8752fd/"
    )
    manifest = "2026/nov/AWSDynamoDB/01693685827463-2d8752fd/manifest-summary.json"
    assert export_root({**desc, "ExportManifest": manifest}) == (
        "s3://exports/2026/nov/AWSDynamoDB/01693685827463-2d8752fd/"
    )
    assert parse_time("2026-11-23T10:00:00Z").isoformat() == "2026-11-23T10:00:00+00:00"
    assert parse_time("2026-11-23T10:00:00").isoformat() == "2026-11-23T10:00:00+00:00"
    assert parse_time("1700000000").timestamp() == 1700000000
