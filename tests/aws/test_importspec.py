"""Tests of importspec.py: requests that botocore's own DynamoDB model accepts."""

from __future__ import annotations

from typing import Any

import botocore.session
import pytest
from botocore.model import ServiceModel, Shape
from botocore.validate import ParamValidator

from ddbshard.aws.importspec import import_table_request, post_import_settings
from ddbshard.config import TargetConfig, parse_config
from ddbshard.io.storage import split_s3_uri

CONFIG = """\
source = "s3://exports/AWSDynamoDB/01700000000000-abcdef/"
dest = "s3://imports/run-1/"

[[target]]
name = "Posts"
where = "kind = :k"
values = { ":k" = "post" }
key = { hash = "pk", range = "sk" }
key_types = { pk = "S", sk = "S", createdAt = "N", tag = "S" }
rename = { created_at = "createdAt" }
set = { gsi1pk = "USER#{user_id}" }

[target.table]
stream = "NEW_AND_OLD_IMAGES"
ttl = "expires_at"
tags = { team = "feed", env = "" }
pitr = true

[[target.table.global_secondary_indexes]]
name = "byUser"
hash = "gsi1pk"
range = "createdAt"
projection = "ALL"

[[target.table.global_secondary_indexes]]
name = "byTag"
hash = "tag"
range = "sk"
projection = { type = "INCLUDE", attributes = ["title", "createdAt"] }

[[target]]
name = "Orders"
where = "kind = :o"
values = { ":o" = "order" }
key = { hash = "order_id", range = "line" }
key_types = { order_id = "S", line = "N", customer = "S" }

[target.table]
table_name = "orders-v2"
billing_mode = "PROVISIONED"
read_capacity = 10
write_capacity = 5

[[target.table.global_secondary_indexes]]
name = "byCustomer"
hash = "customer"
projection = "KEYS_ONLY"
read_capacity = 2
write_capacity = 1

[[target]]
name = "Blobs"
key = { hash = "id" }
key_types = { id = "B" }
"""


@pytest.fixture(scope="module")
def model() -> ServiceModel:
    return botocore.session.get_session().get_service_model("dynamodb")


@pytest.fixture(scope="module")
def targets() -> dict[str, TargetConfig]:
    cfg = parse_config(CONFIG, origin="test.toml")
    return {t.name: t for t in cfg.targets}


def assert_valid(params: dict[str, Any], shape: Shape) -> None:
    report = ParamValidator().validate(params, shape)
    assert not report.has_errors(), report.generate_report()


def key_attributes(req: dict[str, Any]) -> set[str]:
    params = req["TableCreationParameters"]
    schemas = [params["KeySchema"]] + [
        g["KeySchema"] for g in params.get("GlobalSecondaryIndexes", [])
    ]
    return {k["AttributeName"] for schema in schemas for k in schema}


@pytest.mark.parametrize("name", ["Posts", "Orders", "Blobs"])
@pytest.mark.parametrize("compression", ["zstd", "gzip", "none"])
def test_botocore_accepts_the_request(
    model: ServiceModel, targets: dict[str, TargetConfig], name: str, compression: str
) -> None:
    req = import_table_request(
        targets[name], compression=compression, bucket="imports", prefix="run-1/"
    )
    assert_valid(req, model.operation_model("ImportTable").input_shape)
    defs = req["TableCreationParameters"]["AttributeDefinitions"]
    names = [d["AttributeName"] for d in defs]
    assert len(names) == len(set(names))  # each once
    assert set(names) == key_attributes(req)  # exactly the key attributes
    assert {d["AttributeName"]: d["AttributeType"] for d in defs} == targets[name].key_types
    assert req["InputCompressionType"] == compression.upper()


def test_on_demand_with_two_gsis(targets: dict[str, TargetConfig]) -> None:
    req = import_table_request(
        targets["Posts"], compression="zstd", bucket="imports", prefix="run-1/"
    )
    assert req == {
        "S3BucketSource": {"S3Bucket": "imports", "S3KeyPrefix": "run-1/Posts/data/"},
        "InputFormat": "DYNAMODB_JSON",
        "InputCompressionType": "ZSTD",
        "TableCreationParameters": {
            "TableName": "Posts",
            "AttributeDefinitions": [
                {"AttributeName": "pk", "AttributeType": "S"},
                {"AttributeName": "sk", "AttributeType": "S"},
                {"AttributeName": "gsi1pk", "AttributeType": "S"},
                {"AttributeName": "createdAt", "AttributeType": "N"},
                {"AttributeName": "tag", "AttributeType": "S"},
            ],
            "KeySchema": [
                {"AttributeName": "pk", "KeyType": "HASH"},
                {"AttributeName": "sk", "KeyType": "RANGE"},
            ],
            "BillingMode": "PAY_PER_REQUEST",
            "GlobalSecondaryIndexes": [
                {
                    "IndexName": "byUser",
                    "KeySchema": [
                        {"AttributeName": "gsi1pk", "KeyType": "HASH"},
                        {"AttributeName": "createdAt", "KeyType": "RANGE"},
                    ],
                    "Projection": {"ProjectionType": "ALL"},
                },
                {
                    "IndexName": "byTag",
                    "KeySchema": [
                        {"AttributeName": "tag", "KeyType": "HASH"},
                        {"AttributeName": "sk", "KeyType": "RANGE"},
                    ],
                    "Projection": {
                        "ProjectionType": "INCLUDE",
                        "NonKeyAttributes": ["title", "createdAt"],
                    },
                },
            ],
        },
    }


def test_provisioned(targets: dict[str, TargetConfig]) -> None:
    req = import_table_request(targets["Orders"], compression="gzip", bucket="b", prefix="")
    assert req["S3BucketSource"] == {"S3Bucket": "b", "S3KeyPrefix": "Orders/data/"}
    params = req["TableCreationParameters"]
    assert params["TableName"] == "orders-v2"
    assert params["BillingMode"] == "PROVISIONED"
    assert params["ProvisionedThroughput"] == {"ReadCapacityUnits": 10, "WriteCapacityUnits": 5}
    (gsi,) = params["GlobalSecondaryIndexes"]
    assert gsi["Projection"] == {"ProjectionType": "KEYS_ONLY"}
    assert gsi["ProvisionedThroughput"] == {"ReadCapacityUnits": 2, "WriteCapacityUnits": 1}


def test_hash_only(targets: dict[str, TargetConfig]) -> None:
    req = import_table_request(targets["Blobs"], compression="none", bucket="b", prefix="x")
    assert req["S3BucketSource"]["S3KeyPrefix"] == "x/Blobs/data/"
    params = req["TableCreationParameters"]
    assert params["KeySchema"] == [{"AttributeName": "id", "KeyType": "HASH"}]
    assert params["AttributeDefinitions"] == [{"AttributeName": "id", "AttributeType": "B"}]
    assert "GlobalSecondaryIndexes" not in params
    assert "ProvisionedThroughput" not in params


def test_bad_compression_and_long_prefix(targets: dict[str, TargetConfig]) -> None:
    with pytest.raises(ValueError, match="unknown compression"):
        import_table_request(targets["Blobs"], compression="lz4", bucket="b", prefix="")
    with pytest.raises(ValueError, match="ImportTable takes 1024"):
        import_table_request(targets["Blobs"], compression="zstd", bucket="b", prefix="p" * 1020)


def test_post_import_settings(model: ServiceModel, targets: dict[str, TargetConfig]) -> None:
    s = post_import_settings(targets["Posts"])
    assert s == {
        "StreamSpecification": {"StreamEnabled": True, "StreamViewType": "NEW_AND_OLD_IMAGES"},
        "TimeToLiveSpecification": {"Enabled": True, "AttributeName": "expires_at"},
        "Tags": [{"Key": "team", "Value": "feed"}, {"Key": "env", "Value": ""}],
        "PointInTimeRecoverySpecification": {"PointInTimeRecoveryEnabled": True},
    }
    # Each entry is valid in the call that applies it.
    calls = {
        "UpdateTable": {"TableName": "Posts", "StreamSpecification": s["StreamSpecification"]},
        "UpdateTimeToLive": {
            "TableName": "Posts",
            "TimeToLiveSpecification": s["TimeToLiveSpecification"],
        },
        "TagResource": {
            "ResourceArn": "arn:aws:dynamodb:us-east-1:123456789012:table/Posts",
            "Tags": s["Tags"],
        },
        "UpdateContinuousBackups": {
            "TableName": "Posts",
            "PointInTimeRecoverySpecification": s["PointInTimeRecoverySpecification"],
        },
    }
    for op, params in calls.items():
        assert_valid(params, model.operation_model(op).input_shape)
    assert post_import_settings(targets["Orders"]) == {}


@pytest.mark.parametrize(
    ("uri", "expected"),
    [
        ("s3://b/p/", ("b", "p/")),
        ("s3://b/p", ("b", "p/")),
        ("s3://b/a/b/c", ("b", "a/b/c/")),
        ("s3://b", ("b", "")),
        ("s3://b/", ("b", "")),
    ],
)
def test_split_s3_uri(uri: str, expected: tuple[str, str]) -> None:
    assert split_s3_uri(uri) == expected


@pytest.mark.parametrize("uri", ["b/p", "s3://", "s3:///p", "https://b/p"])
def test_split_s3_uri_refuses(uri: str) -> None:
    with pytest.raises(ValueError):
        split_s3_uri(uri)
