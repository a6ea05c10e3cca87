"""The ImportTable request for a target, and the settings ImportTable cannot make.

`import_table_request` is what `split` writes to `T/import-table.json` (ready for
`aws dynamodb import-table --cli-input-json`) and what `import` passes to boto3's
`import_table(**req)`. `post_import_settings` lists what must be applied once the table
exists: ImportTable's TableCreationParameters has no member for streams, TTL, tags or PITR
(AWS-FORMATS.md §3.1).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ddbshard.config import GsiConfig, TargetConfig

from ddbshard.compression import COMPRESSIONS

__all__ = ["import_table_request", "post_import_settings"]

MAX_PREFIX = 1024  # S3KeyPrefix is at most 1024 characters (ImportTable API, S3BucketSource)


def import_table_request(
    target: TargetConfig, *, compression: str, bucket: str, prefix: str
) -> dict[str, Any]:
    """The ImportTable request that creates `target`'s table from its shards under
    s3://bucket/prefix/<target>/data/ (only shards live there: ImportTable reads every object
    under the prefix, with one format and one compression)."""
    try:
        input_compression = COMPRESSIONS[compression].import_name
    except KeyError:
        raise ValueError(f"unknown compression {compression!r}") from None
    prefix = prefix.strip("/")
    key_prefix = f"{prefix}/" if prefix else ""
    key_prefix += f"{target.name}/data/"
    if len(key_prefix) > MAX_PREFIX:
        raise ValueError(f"S3 key prefix is {len(key_prefix)} characters; ImportTable takes 1024")

    table = target.table
    provisioned = table.billing_mode == "PROVISIONED"
    params: dict[str, Any] = {
        "TableName": table.table_name,
        "AttributeDefinitions": _attribute_definitions(target),
        "KeySchema": _key_schema(target.hash_key, target.range_key),
        "BillingMode": table.billing_mode,
    }
    if provisioned:
        params["ProvisionedThroughput"] = _throughput(table.read_capacity, table.write_capacity)
    if table.gsis:
        params["GlobalSecondaryIndexes"] = [_gsi(g, provisioned) for g in table.gsis]
    return {
        "S3BucketSource": {"S3Bucket": bucket, "S3KeyPrefix": key_prefix},
        "InputFormat": "DYNAMODB_JSON",
        "InputCompressionType": input_compression,
        "TableCreationParameters": params,
    }


def post_import_settings(target: TargetConfig) -> dict[str, Any]:
    """What to apply after the import, for what the config sets; each entry is the member of
    the call that applies it: UpdateTable (StreamSpecification), UpdateTimeToLive
    (TimeToLiveSpecification), TagResource (Tags), UpdateContinuousBackups
    (PointInTimeRecoverySpecification)."""
    table = target.table
    out: dict[str, Any] = {}
    if table.stream is not None:
        out["StreamSpecification"] = {"StreamEnabled": True, "StreamViewType": table.stream}
    if table.ttl is not None:
        out["TimeToLiveSpecification"] = {"Enabled": True, "AttributeName": table.ttl}
    if table.tags:
        out["Tags"] = [{"Key": k, "Value": v} for k, v in table.tags.items()]
    if table.pitr is not None:
        # pitr = false is kept: it says the user wants it off, which is also the new default.
        out["PointInTimeRecoverySpecification"] = {"PointInTimeRecoveryEnabled": table.pitr}
    return out


def _attribute_definitions(target: TargetConfig) -> list[dict[str, str]]:
    # Exactly the table and index key attributes, each once: DynamoDB refuses an
    # AttributeDefinitions entry that no key schema uses, and a key attribute without one.
    names = [target.hash_key, target.range_key]
    for g in target.table.gsis:
        names += [g.hash, g.range]
    seen: list[str] = []
    for n in names:
        if n is not None and n not in seen:
            seen.append(n)
    return [{"AttributeName": n, "AttributeType": target.key_types[n]} for n in seen]


def _key_schema(hash_key: str, range_key: str | None) -> list[dict[str, str]]:
    schema = [{"AttributeName": hash_key, "KeyType": "HASH"}]
    if range_key is not None:
        schema.append({"AttributeName": range_key, "KeyType": "RANGE"})
    return schema


def _throughput(read: int | None, write: int | None) -> dict[str, int]:
    if read is None or write is None:  # config refuses PROVISIONED without both
        raise ValueError("PROVISIONED billing needs read and write capacity")
    return {"ReadCapacityUnits": read, "WriteCapacityUnits": write}


def _gsi(g: GsiConfig, provisioned: bool) -> dict[str, Any]:
    projection: dict[str, Any] = {"ProjectionType": g.projection}
    if g.projection == "INCLUDE":
        projection["NonKeyAttributes"] = list(g.non_key_attributes)
    out: dict[str, Any] = {
        "IndexName": g.name,
        "KeySchema": _key_schema(g.hash, g.range),
        "Projection": projection,
    }
    if provisioned:
        out["ProvisionedThroughput"] = _throughput(g.read_capacity, g.write_capacity)
    return out
