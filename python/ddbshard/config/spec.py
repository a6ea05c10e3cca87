"""The one typed boundary to the Rust core: the spec `Splitter` and `ColumnBuilder` take.

Built by one function from a checked config, with the few choices a caller may make given as
keyword options (another compression, another unmatched policy, only some targets), so that
no caller edits a spec after the fact. The binding reads exactly these keys.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from typing import TypedDict

from ddbshard.config.model import LEVELS, MAX_SHARDS, SplitConfig


class TargetSpec(TypedDict):
    name: str
    where: str | None  # a DynamoDB condition expression; None matches every item
    names: dict[str, str]  # "#n" -> attribute name
    values: dict[str, str]  # ":v" -> DynamoDB-JSON text of one attribute value
    hash_key: str
    range_key: str | None
    key_types: dict[str, str]  # the table's key attributes -> S | N | B
    index_keys: dict[str, str]  # GSI key attributes that are not table keys -> S | N | B
    keep: list[str] | None
    drop: list[str]
    rename: dict[str, str]
    set: dict[str, str]  # attribute -> template
    shards: int  # 1..MAX_SHARDS


class CoreSpec(TypedDict):
    route: str  # first | all
    unmatched: str  # reject | drop | error
    compression: str  # zstd | gzip | none
    level: int  # 0 for none
    targets: list[TargetSpec]


def build_core_spec(
    config: SplitConfig,
    shards_by_target: Mapping[str, int],
    *,
    compression: str | None = None,
    unmatched: str | None = None,
    route: str | None = None,
    only: Collection[str] | None = None,
    every_item: bool = False,
) -> CoreSpec:
    """The spec for `config`'s targets (those named in `only`, if given, in config order).

    `shards_by_target` gives each target's shard count; a target missing from it uses
    `output.shards` when that is a number (with "auto", the caller must resolve every one).
    `compression` replaces the config's (at its default level; "none" for callers that read
    the lines back, not write shards); `unmatched` its unmatched policy, `route` its route;
    `every_item` drops the targets' conditions and keeps only the `set` templates that make
    a table key attribute: what a target's key would be, made from whatever the item holds
    (a source key alone: a template of another attribute over a non-key attribute would
    refuse it, hiding a key that is the source key).
    """
    targets: list[TargetSpec] = []
    for t in config.targets:
        if only is not None and t.name not in only:
            continue
        shards = shards_by_target.get(t.name, config.output.shards)
        if isinstance(shards, bool) or not isinstance(shards, int):
            raise ValueError(f"target {t.name!r}: shard count not resolved ({shards!r})")
        if not 1 <= shards <= MAX_SHARDS:
            raise ValueError(f"target {t.name!r}: {shards} shards is not in 1..{MAX_SHARDS}")
        table_keys = {t.hash_key: t.key_types[t.hash_key]}
        if t.range_key is not None:
            table_keys[t.range_key] = t.key_types[t.range_key]
        targets.append(
            {
                "name": t.name,
                "where": None if every_item else t.where,
                "names": dict(t.names),
                "values": dict(t.values),
                "hash_key": t.hash_key,
                "range_key": t.range_key,
                "key_types": table_keys,
                "index_keys": t.index_keys,
                "keep": list(t.keep) if t.keep is not None else None,
                "drop": list(t.drop),
                "rename": dict(t.rename),
                "set": {k: v for k, v in t.set.items() if not every_item or k in table_keys},
                "shards": shards,
            }
        )
    if compression is None:
        chosen, level = config.output.compression, config.output.resolved_level
    else:
        chosen, level = compression, LEVELS[compression][2] if compression in LEVELS else 0
    return {
        "route": route or config.output.route,
        "unmatched": unmatched or config.output.unmatched,
        "compression": chosen,
        "level": level,
        "targets": targets,
    }
