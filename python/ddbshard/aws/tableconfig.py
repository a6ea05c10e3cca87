"""A live table's metadata → a config whose one target recreates that table through ImportTable.

An export to S3 keeps only items: the key schema, indexes, stream, TTL, tags and PITR setting are
lost, and ImportTable must be told all of them again (or, for what it cannot set, they must be
applied afterwards). This module owns that translation: from the responses of DescribeTable,
DescribeTimeToLive, ListTagsOfResource and DescribeContinuousBackups (boto3's dicts, or the AWS
CLI's JSON output of the same calls) to the commented TOML text of a config, plus an independent
derivation of the TableCreationParameters the original table implies, so `init` can check that
the config it wrote really reproduces the table (`check_config`).

Local secondary indexes become global ones: ImportTable's TableCreationParameters has no
LocalSecondaryIndexes member (AWS-FORMATS.md §3.1), and config/load.py refuses them for that reason.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ddbshard.aws.importspec import import_table_request, post_import_settings
from ddbshard.config import SplitConfig, parse_config
from ddbshard.exceptions import DdbShardError, InputError

__all__ = [
    "IndexSpec",
    "TableInfo",
    "TableSpec",
    "check_config",
    "default_table_name",
    "expected_creation_parameters",
    "expected_post_import",
    "info_from_json",
    "render_config",
    "table_spec",
    "target_name",
]

PLACEHOLDER_SOURCE = "s3://REPLACE-WITH-EXPORT-BUCKET/prefix/AWSDynamoDB/EXPORT-ID/"
PLACEHOLDER_DEST = "s3://REPLACE-WITH-IMPORT-BUCKET/ddbshard/"
# Tag keys starting with "aws:" are reserved for AWS (CloudFormation, Backup, ...): TagResource
# refuses them, so they cannot be reproduced and config/load.py refuses them too.
_AWS_TAG = re.compile(r"(?i)aws:")
_BARE_KEY = re.compile(r"[A-Za-z0-9_-]+")


@dataclass(frozen=True)
class TableInfo:
    """What the four describe calls said about a table; None where the call was not made or not
    allowed (the config then says that setting is unknown instead of guessing it)."""

    table: dict[str, Any]  # DescribeTable: "Table"
    ttl: dict[str, Any] | None = None  # DescribeTimeToLive: "TimeToLiveDescription"
    tags: list[dict[str, str]] | None = None  # ListTagsOfResource: "Tags" (all pages)
    backups: dict[str, Any] | None = (
        None  # DescribeContinuousBackups: "ContinuousBackupsDescription"
    )
    notes: tuple[str, ...] = ()  # why a part is missing (e.g. AccessDenied on ListTagsOfResource)


@dataclass(frozen=True)
class IndexSpec:
    name: str
    hash: str
    range: str | None
    projection: str  # ALL | KEYS_ONLY | INCLUDE
    non_key: tuple[str, ...]
    read: int | None  # PROVISIONED only
    write: int | None
    was_lsi: bool


@dataclass(frozen=True)
class TableSpec:
    """The parts of a table a config can express, read and checked from a TableInfo."""

    name: str
    arn: str | None
    hash: str
    range: str | None
    key_types: dict[str, str]  # every table and index key attribute, table keys first
    billing: str  # PAY_PER_REQUEST | PROVISIONED
    read: int | None
    write: int | None
    indexes: tuple[IndexSpec, ...]  # GSIs in DescribeTable's order, then the former LSIs
    stream: str | None
    ttl: str | None
    ttl_known: bool
    tags: dict[str, str]
    tags_known: bool
    skipped_tags: tuple[str, ...]
    pitr: bool | None  # None: not known
    not_carried: tuple[str, ...] = field(default=())  # what the table has that the config cannot


# --- reading the describe outputs ----------------------------------------------------------


def info_from_json(paths: Sequence[str | Path]) -> TableInfo:
    """TableInfo from the AWS CLI's JSON output of describe-table and, optionally, of
    describe-time-to-live, list-tags-of-resource and describe-continuous-backups; each file is
    recognised by its top-level key, so they may be given in any order."""
    parts: dict[str, Any] = {}
    for p in paths:
        path = Path(p)
        try:
            doc = json.loads(path.read_bytes())
        except OSError as e:
            raise InputError(f"{path}: cannot read: {e.strerror or e}") from e
        except ValueError as e:
            raise InputError(f"{path}: not JSON: {e}") from e
        if not isinstance(doc, dict):
            raise InputError(f"{path}: expected a JSON object (the AWS CLI's output)")
        kind, value = _recognise(doc, path)
        if kind in parts:
            raise InputError(f"{path}: a second {kind} output (give each one once)")
        parts[kind] = value
    if "describe-table" not in parts:
        raise InputError(
            "no describe-table output among the files (`aws dynamodb describe-table "
            "--table-name A > describe-table.json`)"
        )
    return TableInfo(
        table=parts["describe-table"],
        ttl=parts.get("describe-time-to-live"),
        tags=parts.get("list-tags-of-resource"),
        backups=parts.get("describe-continuous-backups"),
    )


def _recognise(doc: dict[str, Any], path: Path) -> tuple[str, Any]:
    if isinstance(doc.get("Table"), dict):
        return "describe-table", doc["Table"]
    if "KeySchema" in doc and "TableName" in doc:  # the bare TableDescription (e.g. from jq)
        return "describe-table", doc
    if isinstance(doc.get("TimeToLiveDescription"), dict):
        return "describe-time-to-live", doc["TimeToLiveDescription"]
    if isinstance(doc.get("Tags"), list):
        return "list-tags-of-resource", doc["Tags"]
    if isinstance(doc.get("ContinuousBackupsDescription"), dict):
        return "describe-continuous-backups", doc["ContinuousBackupsDescription"]
    raise InputError(
        f"{path}: not the output of describe-table, describe-time-to-live, "
        "list-tags-of-resource or describe-continuous-backups "
        f"(top-level keys: {', '.join(sorted(doc)) or 'none'})"
    )


def table_spec(info: TableInfo) -> TableSpec:
    """Reads and checks a TableInfo; InputError names what is missing or malformed."""
    t = info.table
    name = _req_str(t, "TableName", "the table")
    where = f"table {name}"
    types = {}
    for d in _req_list(t, "AttributeDefinitions", where):
        types[_req_str(d, "AttributeName", where)] = _req_str(d, "AttributeType", where)
    hash_key, range_key = _key_schema(_req_list(t, "KeySchema", where), where)

    billing = (t.get("BillingModeSummary") or {}).get("BillingMode")
    pt = t.get("ProvisionedThroughput") or {}
    if billing is None:
        # Tables created before on-demand existed carry no BillingModeSummary: they are
        # provisioned, and DescribeTable shows their capacity (on-demand tables show 0/0).
        billing = "PROVISIONED" if pt.get("ReadCapacityUnits") else "PAY_PER_REQUEST"
    if billing not in ("PROVISIONED", "PAY_PER_REQUEST"):
        raise InputError(f"{where}: unknown BillingMode {billing!r}")
    provisioned = billing == "PROVISIONED"
    read = int(pt["ReadCapacityUnits"]) if provisioned else None
    write = int(pt["WriteCapacityUnits"]) if provisioned else None

    indexes: list[IndexSpec] = []
    for g in t.get("GlobalSecondaryIndexes") or []:
        indexes.append(_index(g, provisioned, None, False, where))
    for lsi in t.get("LocalSecondaryIndexes") or []:
        # An LSI spends the table's own capacity; as a GSI it needs capacity of its own, and
        # the table's is the figure its readers and writers were already living within.
        indexes.append(_index(lsi, provisioned, (read, write), True, where))

    key_types: dict[str, str] = {}
    for k in [hash_key, range_key, *[a for ix in indexes for a in (ix.hash, ix.range)]]:
        if k is None or k in key_types:
            continue
        if k not in types:
            raise InputError(f"{where}: key attribute {k!r} has no AttributeDefinitions entry")
        key_types[k] = types[k]

    stream = None
    ss = t.get("StreamSpecification") or {}
    if ss.get("StreamEnabled"):
        stream = _req_str(ss, "StreamViewType", where)

    ttl = None
    if info.ttl is not None and info.ttl.get("TimeToLiveStatus") in ("ENABLED", "ENABLING"):
        ttl = _req_str(info.ttl, "AttributeName", where)

    tags: dict[str, str] = {}
    skipped: list[str] = []
    for tag in info.tags or []:
        key, value = _req_str(tag, "Key", where), str(tag.get("Value", ""))
        if _AWS_TAG.match(key):
            skipped.append(key)
        else:
            tags[key] = value

    pitr = None
    if info.backups is not None:
        status = (info.backups.get("PointInTimeRecoveryDescription") or {}).get(
            "PointInTimeRecoveryStatus"
        )
        pitr = status in ("ENABLED", "ENABLING") if status else None

    return TableSpec(
        name=name,
        arn=t.get("TableArn"),
        hash=hash_key,
        range=range_key,
        key_types=key_types,
        billing=billing,
        read=read,
        write=write,
        indexes=tuple(indexes),
        stream=stream,
        ttl=ttl,
        ttl_known=info.ttl is not None,
        tags=tags,
        tags_known=info.tags is not None,
        skipped_tags=tuple(skipped),
        pitr=pitr,
        not_carried=tuple(_not_carried(info)),
    )


def _index(
    d: Mapping[str, Any],
    provisioned: bool,
    capacity: tuple[int | None, int | None] | None,
    was_lsi: bool,
    where: str,
) -> IndexSpec:
    name = _req_str(d, "IndexName", where)
    at = f"{where}: index {name}"
    hash_key, range_key = _key_schema(_req_list(d, "KeySchema", at), at)
    proj = d.get("Projection") or {}
    kind = proj.get("ProjectionType", "ALL")
    non_key = tuple(proj.get("NonKeyAttributes") or ()) if kind == "INCLUDE" else ()
    read = write = None
    if provisioned:
        if capacity is not None:
            read, write = capacity
        else:
            pt = d.get("ProvisionedThroughput") or {}
            read, write = int(pt.get("ReadCapacityUnits", 0)), int(pt.get("WriteCapacityUnits", 0))
            if read < 1 or write < 1:
                raise InputError(f"{at}: PROVISIONED table, but the index shows no capacity")
    return IndexSpec(name, hash_key, range_key, kind, non_key, read, write, was_lsi)


def _not_carried(info: TableInfo) -> list[str]:
    """Settings of the table that neither ImportTable nor a ddbshard config can carry over, in
    the words a reader needs to redo them by hand."""
    t = info.table
    out: list[str] = []
    sse = t.get("SSEDescription") or {}
    if sse.get("SSEType") == "KMS" or sse.get("KMSMasterKeyArn"):
        key = sse.get("KMSMasterKeyArn", "a KMS key")
        out.append(f"encryption with {key} (the new table gets the AWS owned key)")
    table_class = (t.get("TableClassSummary") or {}).get("TableClass")
    if table_class and table_class != "STANDARD":
        out.append(f"table class {table_class} (UpdateTable --table-class after the import)")
    if t.get("DeletionProtectionEnabled"):
        out.append("deletion protection (UpdateTable --deletion-protection-enabled)")
    od = t.get("OnDemandThroughput") or {}
    if any(v not in (None, -1) for v in od.values()):
        out.append(f"on-demand maximum throughput {od}")
    if t.get("Replicas"):
        regions = ", ".join(str(r.get("RegionName")) for r in t["Replicas"])
        out.append(f"global table replicas ({regions}): add them after the import")
    period = ((info.backups or {}).get("PointInTimeRecoveryDescription") or {}).get(
        "RecoveryPeriodInDays"
    )
    if period not in (None, 35):
        out.append(f"a PITR recovery period of {period} days (the new table gets 35)")
    return out


def _key_schema(schema: list[Any], where: str) -> tuple[str, str | None]:
    hash_key = range_key = None
    for k in schema:
        kind = _req_str(k, "KeyType", where)
        name = _req_str(k, "AttributeName", where)
        if kind == "HASH":
            hash_key = name
        elif kind == "RANGE":
            range_key = name
        else:
            raise InputError(f"{where}: unknown KeyType {kind!r}")
    if hash_key is None:
        raise InputError(f"{where}: KeySchema has no HASH key")
    return hash_key, range_key


def _req_str(d: Any, key: str, where: str) -> str:
    v = d.get(key) if isinstance(d, Mapping) else None
    if not isinstance(v, str) or not v:
        raise InputError(f"{where}: {key} is missing or not a string")
    return v


def _req_list(d: Mapping[str, Any], key: str, where: str) -> list[Any]:
    v = d.get(key)
    if not isinstance(v, list) or not v:
        raise InputError(f"{where}: {key} is missing or empty")
    return v


# --- the independent derivation and the check ----------------------------------------------


def expected_creation_parameters(info: TableInfo, table_name: str) -> dict[str, Any]:
    """The TableCreationParameters that recreate the table, straight from DescribeTable and
    without going through a config: what `check_config` holds the generated config to."""
    t = info.table
    spec = table_spec(info)  # for the billing mode and the LSI capacities only
    provisioned = spec.billing == "PROVISIONED"
    params: dict[str, Any] = {
        "TableName": table_name,
        "AttributeDefinitions": [
            {"AttributeName": d["AttributeName"], "AttributeType": d["AttributeType"]}
            for d in t["AttributeDefinitions"]
        ],
        "KeySchema": [
            {"AttributeName": k["AttributeName"], "KeyType": k["KeyType"]} for k in t["KeySchema"]
        ],
        "BillingMode": spec.billing,
    }
    if provisioned:
        params["ProvisionedThroughput"] = {
            "ReadCapacityUnits": spec.read,
            "WriteCapacityUnits": spec.write,
        }
    gsis = []
    for kind in ("GlobalSecondaryIndexes", "LocalSecondaryIndexes"):
        for ix in t.get(kind) or []:
            out: dict[str, Any] = {
                "IndexName": ix["IndexName"],
                "KeySchema": [
                    {"AttributeName": k["AttributeName"], "KeyType": k["KeyType"]}
                    for k in ix["KeySchema"]
                ],
                "Projection": dict(ix.get("Projection") or {"ProjectionType": "ALL"}),
            }
            if provisioned:
                pt = ix.get("ProvisionedThroughput") if kind == "GlobalSecondaryIndexes" else None
                out["ProvisionedThroughput"] = {
                    "ReadCapacityUnits": (pt or {}).get("ReadCapacityUnits", spec.read),
                    "WriteCapacityUnits": (pt or {}).get("WriteCapacityUnits", spec.write),
                }
            gsis.append(out)
    if gsis:
        params["GlobalSecondaryIndexes"] = gsis
    return params


def expected_post_import(info: TableInfo) -> dict[str, Any]:
    """What must be applied after the import for the known stream, TTL, tags and PITR."""
    spec = table_spec(info)
    out: dict[str, Any] = {}
    if spec.stream:
        out["StreamSpecification"] = {"StreamEnabled": True, "StreamViewType": spec.stream}
    if spec.ttl:
        out["TimeToLiveSpecification"] = {"Enabled": True, "AttributeName": spec.ttl}
    if spec.tags:
        out["Tags"] = [{"Key": k, "Value": v} for k, v in spec.tags.items()]
    if spec.pitr is not None:
        out["PointInTimeRecoverySpecification"] = {"PointInTimeRecoveryEnabled": spec.pitr}
    return out


def normalise_creation_parameters(params: Mapping[str, Any]) -> dict[str, Any]:
    """Order-free form: DynamoDB treats AttributeDefinitions, the index list and an INCLUDE
    projection's attributes as sets, and DescribeTable does not keep the creation order."""
    out = dict(params)
    out["AttributeDefinitions"] = sorted(
        params["AttributeDefinitions"], key=lambda d: d["AttributeName"]
    )
    gsis = []
    for g in params.get("GlobalSecondaryIndexes", []):
        g = dict(g)
        proj = dict(g["Projection"])
        if "NonKeyAttributes" in proj:
            proj["NonKeyAttributes"] = sorted(proj["NonKeyAttributes"])
        g["Projection"] = proj
        gsis.append(g)
    if gsis:
        out["GlobalSecondaryIndexes"] = sorted(gsis, key=lambda g: g["IndexName"])
    return out


def check_config(text: str, info: TableInfo, table_name: str) -> SplitConfig:
    """Parses the generated config as `split` will and checks that its ImportTable request and
    post-import settings are those of the original table; a difference is a bug of ddbshard,
    reported before the file is written."""
    config = parse_config(text, origin="<generated config>")
    (target,) = config.targets
    request = import_table_request(
        target, compression=config.output.compression, bucket="b", prefix=""
    )
    got = normalise_creation_parameters(request["TableCreationParameters"])
    want = normalise_creation_parameters(expected_creation_parameters(info, table_name))
    if got != want:
        raise DdbShardError(
            "internal error: the generated config does not reproduce the table "
            f"(config gives {json.dumps(got)}, the table needs {json.dumps(want)})"
        )
    got_post, want_post = post_import_settings(target), expected_post_import(info)
    if got_post != want_post:
        raise DdbShardError(
            "internal error: the generated config's stream/TTL/tags/PITR differ from the table's "
            f"({json.dumps(got_post)} != {json.dumps(want_post)})"
        )
    return config


# --- rendering ---------------------------------------------------------------------------


def target_name(spec: TableSpec) -> str:
    """The target's name: the table's, unless it starts with '_' (DynamoDB allows that; ddbshard
    keeps such names under dest for its own outputs, such as _rejects/)."""
    name = spec.name.lstrip("_")
    return name if len(name) >= 3 else f"table{name}"


def default_table_name(spec: TableSpec) -> str:
    """The new table's default name: the old one's cannot be reused in the same account and
    Region (ImportTable fails with ResourceInUseException); names are at most 255 characters."""
    return f"{spec.name[:251]}-new"


def _s(value: str) -> str:
    """A TOML basic string. JSON's string escapes (\\", \\\\, \\n, \\uXXXX, ...) are all valid in
    TOML basic strings, so json.dumps is a correct encoder for any text DynamoDB accepts."""
    return json.dumps(value, ensure_ascii=False)


def _k(key: str) -> str:
    """A TOML key: bare when TOML allows it, quoted otherwise (attribute names may hold any
    character)."""
    return key if _BARE_KEY.fullmatch(key) else _s(key)


def _inline(d: Mapping[str, str]) -> str:
    return "{ " + ", ".join(f"{_k(k)} = {_s(v)}" for k, v in d.items()) + " }" if d else "{}"


def _array(items: Sequence[str]) -> str:
    return "[" + ", ".join(_s(x) for x in items) + "]"


def render_config(
    spec: TableSpec,
    *,
    table_name: str,
    source: str | None = None,
    dest: str | None = None,
    export_note: str | None = None,
) -> str:
    """The config's TOML text. `source`/`dest` None write placeholders to replace."""
    lines: list[str] = []
    add = lines.append
    add(f"# ddbshard config written by `ddbshard init` from the DynamoDB table {spec.name!r}")
    if spec.arn:
        add(f"#   {spec.arn}")
    add("# Its one target recreates that table (keys, indexes, capacity, stream, TTL, tags, PITR)")
    add("# through ImportTable. Next: add targets with `where` conditions to split the table, or")
    add("# keep this one to copy it; `ddbshard estimate` this file, then `ddbshard split` it.")
    add("")
    if source is None:
        add("# The export's root, the folder holding manifest-summary.json. Start an export with")
        add("# `ddbshard init --from-table ... --export s3://bucket/prefix` (it fills this in) or")
        add("# `aws dynamodb export-table-to-point-in-time` (full export, DYNAMODB_JSON).")
        add(f"source = {_s(PLACEHOLDER_SOURCE)}")
    else:
        add("# The export's root, the folder holding manifest-summary.json.")
        if export_note:
            add(f"# {export_note}")
        add(f"source = {_s(source)}")
    add("# Where split writes each target's shards (<dest>/<target>/data/), manifest and")
    add("# import-table.json; a local folder works too (then set s3_dest for import-table.json).")
    add(f"dest = {_s(dest if dest is not None else PLACEHOLDER_DEST)}")
    add("")
    add("[output]")
    add('compression = "zstd"  # ImportTable reads zstd, gzip and uncompressed shards')
    add('shards = "auto"       # one per million source items (ImportTable reads them in parallel)')
    add("")
    add("[[target]]")
    add(f"name = {_s(target_name(spec))}  # the folder under dest; the new table's name is below")
    key = {"hash": spec.hash, **({"range": spec.range} if spec.range else {})}
    add(f"key = {_inline(key)}")
    add("# Types of every table and index key attribute (AttributeDefinitions of the table).")
    add(f"key_types = {_inline(spec.key_types)}")
    add("")
    add("[target.table]")
    add("# ImportTable always creates a new table: in the same account and Region it cannot")
    add("# have the old one's name. Importing into another account, you may use the old name.")
    add(f"table_name = {_s(table_name)}")
    add(f"billing_mode = {_s(spec.billing)}")
    if spec.billing == "PROVISIONED":
        add(f"read_capacity = {spec.read}")
        add(f"write_capacity = {spec.write}")
    add("# ImportTable cannot set the stream, TTL, tags or PITR: they are applied after it.")
    if spec.stream:
        add(f"stream = {_s(spec.stream)}  # a new stream, with a new ARN: re-point consumers")
    else:
        add("# stream: the table has no stream")
    if spec.ttl:
        add(f"ttl = {_s(spec.ttl)}")
    elif spec.ttl_known:
        add("# ttl: time to live is off on the table")
    else:
        add('# ttl: not known (describe-table does not say): add ttl = "attr" if the table uses')
        add("# it, or give init the output of `aws dynamodb describe-time-to-live` too")
    if spec.pitr is not None:
        add(f"pitr = {'true' if spec.pitr else 'false'}")
    else:
        add("# pitr: not known: give init `aws dynamodb describe-continuous-backups` output too")
    if spec.tags:
        add(f"tags = {_inline(spec.tags)}")
    elif spec.tags_known:
        add("# tags: the table has none")
    else:
        add("# tags: not known: give init `aws dynamodb list-tags-of-resource` output too")
    if spec.skipped_tags:
        add(f"# not copied: {', '.join(spec.skipped_tags)} (aws: tags are set by AWS services)")
    if spec.not_carried:
        add("# Not reproduced (neither ImportTable nor this config can set it): redo by hand:")
        for item in spec.not_carried:
            add(f"#   - {item}")
    for ix in spec.indexes:
        add("")
        if ix.was_lsi:
            lines.extend(_lsi_comment(spec, ix))
        add("[[target.table.global_secondary_indexes]]")
        add(f"name = {_s(ix.name)}")
        add(f"hash = {_s(ix.hash)}")
        if ix.range:
            add(f"range = {_s(ix.range)}")
        if ix.projection == "INCLUDE":
            add(f'projection = {{ type = "INCLUDE", attributes = {_array(ix.non_key)} }}')
        else:
            add(f"projection = {_s(ix.projection)}")
        if ix.read is not None:
            add(f"read_capacity = {ix.read}")
            add(f"write_capacity = {ix.write}")
    return "\n".join(lines) + "\n"


def _lsi_comment(spec: TableSpec, ix: IndexSpec) -> list[str]:
    out = [
        f"# {ix.name!r} was a LOCAL secondary index of {spec.name}. ImportTable cannot create",
        "# LSIs, so it becomes a global one with the same keys and projection. For readers:",
        "#   - reads through it are eventually consistent only (ConsistentRead=true is refused);",
    ]
    if spec.billing == "PROVISIONED":
        out.append(
            "#   - it has its own throughput (set here to the table's) instead of the table's;"
        )
    else:
        out.append("#   - its reads and writes are billed and throttled apart from the table's;")
    out.append(
        "#   - the 10 GB limit per partition key value (item collections) no longer applies;"
    )
    if ix.projection != "ALL":
        out.append(
            "#   - attributes it does not project can no longer be fetched through it (an LSI"
        )
        out.append(
            "#     query fetched them from the table; a GSI query returns only projections)."
        )
    return out
