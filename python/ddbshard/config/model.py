"""The split config's model: what a checked config holds (frozen dataclasses) and the limits
its values live within. `load.py` builds it from TOML; `spec.py` turns it into the core's spec.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from ddbshard.compression import COMPRESSIONS as TABLE

# ImportTable reads at most 50,000 S3 objects per import (AWS-FORMATS.md §3.3); 5,000 shards per
# target leaves room for one set of shards per Batch worker and keeps manifests readable.
MAX_SHARDS = 5000
ITEMS_PER_AUTO_SHARD = 1_000_000

COMPRESSIONS = tuple(TABLE)
# (lowest, highest, default) of each compression that has levels
LEVELS = {c.name: c.levels for c in TABLE.values() if c.levels is not None}
ROUTES = ("first", "all")
UNMATCHED = ("reject", "drop", "error")
BILLING_MODES = ("PAY_PER_REQUEST", "PROVISIONED")
PROJECTIONS = ("ALL", "KEYS_ONLY", "INCLUDE")
STREAM_VIEWS = ("NEW_IMAGE", "OLD_IMAGE", "NEW_AND_OLD_IMAGES", "KEYS_ONLY")
KEY_TYPES = ("S", "N", "B")  # key attributes can only be S, N or B (DynamoDB naming rules)
ATTR_TYPES = frozenset({"S", "N", "B", "BOOL", "NULL", "M", "L", "SS", "NS", "BS"})


@dataclass(frozen=True)
class GsiConfig:
    name: str
    hash: str
    range: str | None
    projection: str  # ALL | KEYS_ONLY | INCLUDE
    non_key_attributes: tuple[str, ...]
    read_capacity: int | None
    write_capacity: int | None


@dataclass(frozen=True)
class TableConfig:
    billing_mode: str  # PAY_PER_REQUEST (default) | PROVISIONED
    read_capacity: int | None
    write_capacity: int | None
    gsis: tuple[GsiConfig, ...]
    stream: str | None
    ttl: str | None
    tags: dict[str, str]
    pitr: bool | None
    table_name: str  # defaults to the target name


@dataclass(frozen=True)
class TargetConfig:
    name: str
    where: str | None
    names: dict[str, str]
    values: dict[str, str]  # ":v" -> DynamoDB-JSON text of one attribute value
    hash_key: str
    range_key: str | None
    key_types: dict[str, str]  # every table and GSI key attribute -> S | N | B
    keep: tuple[str, ...] | None
    drop: tuple[str, ...]
    rename: dict[str, str]
    set: dict[str, str]
    table: TableConfig

    @property
    def index_keys(self) -> dict[str, str]:
        """GSI key attributes that are not table keys, with their types."""
        table_keys = {self.hash_key, self.range_key}
        return {a: t for a, t in self.key_types.items() if a not in table_keys}


@dataclass(frozen=True)
class OutputConfig:
    compression: str  # zstd (default) | gzip | none
    level: int | None  # None: the compression's default
    shards: int | Literal["auto"]
    route: str  # first | all
    unmatched: str  # reject | drop | error
    # For s3:// destinations, applied to every object written (shards, manifests, rejects).
    sse: str | None = None  # AES256 | aws:kms
    sse_kms_key_id: str | None = None
    expected_bucket_owner: str | None = None  # 12-digit AWS account id

    @property
    def resolved_level(self) -> int:
        """The level the writer uses: the configured one or the compression's default (0: none)."""
        if self.level is not None:
            return self.level
        return LEVELS[self.compression][2] if self.compression in LEVELS else 0


@dataclass(frozen=True)
class SplitConfig:
    origin: str
    source: str
    dest: str
    s3_dest: str | None  # s3://bucket/prefix/ that import-table.json names when dest is local
    output: OutputConfig
    targets: tuple[TargetConfig, ...]


def auto_shards(item_count: int) -> int:
    """Shards for `shards = "auto"`: one per million items, at least 1, at most MAX_SHARDS.

    A million small items is a few hundred MB uncompressed: big enough that per-object overhead
    does not matter, small enough that ImportTable, which reads objects in parallel, gets many
    of them (its best practice: "avoid excessively large S3 objects", AWS-FORMATS.md §3.4).
    """
    return max(1, min(MAX_SHARDS, -(-item_count // ITEMS_PER_AUTO_SHARD)))
