"""The source table's key, for the keys files `diff` writes (`sync` reads a source item by it).

A routed copy keeps each row's source key (the `source_key` column, taken from the source item
before transforms), so diff's missing and changed lines name their source item whatever the
target's key is made of. Making that column needs the source key's attribute names: given
(`--source-key`, or the source table's DescribeTable), or read from the config when the
targets' keys are source attributes kept or renamed. `source_key_map` is the older way, for
copies made without the column: the source key read back from the target key.
"""

from __future__ import annotations

from dataclasses import dataclass

from ddbshard.config import SplitConfig, TargetConfig
from ddbshard.exceptions import ConfigError

__all__ = [
    "SourceKey",
    "parse_source_key",
    "resolve_source_key",
    "source_key_map",
    "table_source_key",
]


@dataclass(frozen=True)
class SourceKey:
    """The source key's attribute names (hash key first), or None with why not; and whence."""

    names: tuple[str, ...] | None
    note: str

    def required(self) -> tuple[str, ...]:
        """The names, or the one-line error that asks for them."""
        if self.names is None:
            raise ConfigError(f"{self.note}: give --source-key HASH[,RANGE] (the source key)")
        return self.names


def parse_source_key(text: str) -> tuple[str, ...]:
    names = tuple(s.strip() for s in text.split(",") if s.strip())
    if not 1 <= len(names) <= 2 or len(set(names)) != len(names):
        raise ConfigError("--source-key: one or two attribute names, hash key first")
    return names


def _origin(target: TargetConfig, attr: str) -> str | None:
    """The source attribute whose value the output attribute `attr` carries unchanged (kept
    or renamed), or None when a template makes it or it is not in the output."""
    if attr in target.set:
        return None  # `set` wins over rename and over an original attribute
    renamed_from = [old for old, new in target.rename.items() if new == attr]
    if renamed_from:
        src = renamed_from[0]
    elif attr in target.rename:
        return None  # the original attribute left under another name
    else:
        src = attr
    if target.keep is not None and src not in target.keep:
        return None
    if src in target.drop:
        return None
    return src


def _key_names(target: TargetConfig) -> list[str]:
    return [target.hash_key] + ([target.range_key] if target.range_key else [])


def _kept_from(target: TargetConfig) -> tuple[str, ...] | None:
    """The source attributes the target's key attributes carry, when none is templated."""
    origins = [_origin(target, k) for k in _key_names(target)]
    if any(o is None for o in origins):
        return None
    return tuple(str(o) for o in origins)


def table_source_key(
    known: tuple[str, ...], given: tuple[str, ...] | None, url: str
) -> tuple[str, ...]:
    """A live source table's key (DescribeTable's, hash key first) is the source key: a
    `--source-key` that says otherwise is refused, since keys files naming items by other
    attributes would make sync fail every one of them."""
    if given is not None and tuple(given) != tuple(known):
        raise ConfigError(
            f"--source-key {','.join(given)}: the source table {url} is keyed by {','.join(known)}"
        )
    return tuple(known)


def resolve_source_key(config: SplitConfig, given: tuple[str, ...] | None) -> SourceKey:
    """The source key for a routed copy: `given`, else the attributes the config's targets'
    keys are kept or renamed from. Targets keyed by fewer of them (a table keyed by `pk` alone
    beside one keyed by `pk, sk`) agree with the widest; targets keyed by attributes that
    disagree (`pk, sk` and `user_id`) leave it unknown: one of them is keyed by something
    else than the source key, and the config cannot say which."""
    if given:
        return SourceKey(tuple(given), "--source-key")
    found = {k for t in config.targets if (k := _kept_from(t)) is not None}
    if not found:
        return SourceKey(
            None,
            "every target's key is made by a template, so the source key cannot be read from "
            "the config",
        )
    widest = max(found, key=len)
    if all(set(k) <= set(widest) for k in found):
        return SourceKey(
            widest,
            f"the attributes the targets' keys are kept or renamed from ({', '.join(widest)}); "
            "give --source-key if the source table's key differs",
        )
    shown = "; ".join(
        f"{t.name} from {', '.join(k)}" for t in config.targets if (k := _kept_from(t))
    )
    return SourceKey(None, f"the targets' keys come from different source attributes ({shown})")


def source_key_map(
    target: TargetConfig, source_key: tuple[str, ...] | None
) -> tuple[dict[str, tuple[str, str]] | None, str]:
    """For a copy without a `source_key` column: how to write a target key in the source
    table's key space (source attribute -> (target key column, type)), and a note saying why
    (or why not). Each source key attribute must reach a target key attribute by keep or
    rename; without `source_key`, the source key is taken to be the attributes the target's
    key attributes come from."""
    keys = [(k, target.key_types[k]) for k in _key_names(target)]
    origins = {k: _origin(target, k) for k, _ in keys}
    types = dict(keys)
    if source_key:
        mapping: dict[str, tuple[str, str]] = {}
        for s in source_key:
            hits = [k for k, o in origins.items() if o == s]
            if not hits:
                return None, (
                    f"source key attribute {s!r} is not kept or renamed into a key attribute of "
                    f"{target.name}, and its expected copy has no source_key column: its missing "
                    "and changed items are listed by target key only"
                )
            mapping[s] = (hits[0], types[hits[0]])
        return mapping, "source key read back from the target key (--source-key)"
    if any(o is None for o in origins.values()):
        made = [k for k, o in origins.items() if o is None]
        return None, (
            f"key attribute(s) {', '.join(made)} of {target.name} are made by templates and its "
            "expected copy has no source_key column (made before it existed): its missing and "
            "changed items are listed by target key only; remake the copy"
        )
    mapping = {str(o): (k, types[k]) for k, o in origins.items()}
    return mapping, (
        "source key read back from the target key: assumed to be the attributes it comes from "
        f"({', '.join(mapping)}); give --source-key if the source table's key differs"
    )
