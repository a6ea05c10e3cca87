"""The split config (TOML): load it and check all of it, into the model (model.py).

Everything a run needs is checked here, before any data is read (DESIGN.md, "Config"): a bad
config is one `ConfigError` line naming the file, the target and the field. The `where`
expressions, `set` templates and `values` texts are parsed for real by the Rust core, which owns
the expression rules (placeholders used but not defined included); this module checks the
config's shape and what only it knows (names, keys, tables, paths).
"""

from __future__ import annotations

import difflib
import json
import re
import tomllib
from collections.abc import Mapping
from datetime import date, datetime, time
from pathlib import Path
from typing import Any, Literal

from ddbshard._core import Condition, Splitter
from ddbshard.config.model import (
    ATTR_TYPES,
    BILLING_MODES,
    COMPRESSIONS,
    KEY_TYPES,
    LEVELS,
    MAX_SHARDS,
    PROJECTIONS,
    ROUTES,
    STREAM_VIEWS,
    UNMATCHED,
    GsiConfig,
    OutputConfig,
    SplitConfig,
    TableConfig,
    TargetConfig,
)
from ddbshard.config.spec import build_core_spec
from ddbshard.exceptions import ConfigError, DdbShardError
from ddbshard.io.source import lists_under
from ddbshard.io.storage import split_s3_uri
from ddbshard.limits import MAX_ATTRIBUTE_NAME_BYTES, MAX_KEY_NAME_BYTES

__all__ = ["load_config", "parse_config"]

_TOP_KEYS = ("source", "dest", "s3_dest", "output", "target")
_OUTPUT_KEYS = (
    "compression", "level", "shards", "route", "unmatched", "sse", "sse_kms_key_id",
    "expected_bucket_owner",
)  # fmt: skip
SSE_MODES = ("AES256", "aws:kms")
_TARGET_KEYS = (
    "name", "where", "values", "names", "key", "key_types", "keep", "drop", "rename", "set",
    "table",
)  # fmt: skip
_KEY_KEYS = ("hash", "range")
_TABLE_KEYS = (
    "billing_mode", "read_capacity", "write_capacity", "global_secondary_indexes", "stream",
    "ttl", "tags", "pitr", "table_name",
)  # fmt: skip
_GSI_KEYS = ("name", "hash", "range", "projection", "read_capacity", "write_capacity")
_PROJECTION_KEYS = ("type", "attributes")
_OVERRIDE_KEYS = ("source", "dest", "s3_dest", *(f"output.{k}" for k in _OUTPUT_KEYS))

# DynamoDB naming rules: table and index names are 3-255 characters of a-z A-Z 0-9 _ . -
_TABLE_NAME = re.compile(r"[A-Za-z0-9_.\-]{3,255}")
# Attribute names (limits.py): key, INCLUDE-projected and TTL attribute names are shorter.
MAX_NAME_BYTES = MAX_ATTRIBUTE_NAME_BYTES
# Expression placeholders: '#' or ':' then letters, digits, underscores (DynamoDB expressions).
_NAME_PLACEHOLDER = re.compile(r"#[A-Za-z0-9_]+")
_VALUE_PLACEHOLDER = re.compile(r":[A-Za-z0-9_]+")
_URI_SCHEME = re.compile(r"[A-Za-z][A-Za-z0-9+.\-]*://")

_LSI_ADVICE = (
    "ImportTable cannot create local secondary indexes; "
    "declare it under global_secondary_indexes instead"
)


def load_config(path: str | Path, *, overrides: Mapping[str, Any] | None = None) -> SplitConfig:
    """Reads and checks a config file; relative paths in it are taken from the file's folder.

    `overrides` replace settings from the command line, by dotted name ("dest",
    "output.shards", ...); a value of None leaves the file's setting. A relative path given
    there is taken from the current folder, as a shell user expects.
    """
    if str(path).startswith("s3://"):
        return _load_s3_config(str(path), overrides)
    p = Path(path)
    try:
        text = p.read_bytes().decode("utf-8")
    except OSError as e:
        raise ConfigError(f"{p}: cannot read the config: {e.strerror or e}") from e
    except UnicodeDecodeError as e:
        raise ConfigError(
            f"{p}: the config is not UTF-8 text ({e.reason} at byte {e.start})"
        ) from e
    return parse_config(text, origin=str(p), base=p.absolute().parent, overrides=overrides)


def _load_s3_config(url: str, overrides: Mapping[str, Any] | None) -> SplitConfig:
    """A config kept on S3 (an AWS Batch job reads it there); relative paths in it resolve
    against the current folder."""
    from ddbshard.io.storage import describe_os_error, url_to_fs

    fs, path = url_to_fs(url)
    try:
        with fs.open(path, "rb") as f:
            text = f.read().decode("utf-8")
    except OSError as e:
        raise ConfigError(f"{url}: cannot read the config: {describe_os_error(e)}") from e
    except UnicodeDecodeError as e:
        raise ConfigError(f"{url}: the config is not UTF-8 text ({e.reason})") from e
    return parse_config(text, origin=url, overrides=overrides)


def parse_config(
    text: str,
    *,
    origin: str = "<config>",
    base: str | Path | None = None,
    overrides: Mapping[str, Any] | None = None,
) -> SplitConfig:
    """Checks a config given as text. Relative local paths resolve against `base` (default: the
    current folder); `origin` names the config in error messages."""
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"{origin}: invalid TOML: {e}") from e
    at = _At(origin)
    if overrides:
        _apply_overrides(raw, overrides, at)
    return _split_config(raw, at, Path(base) if base is not None else Path.cwd())


# --- error context -------------------------------------------------------------------------


class _At:
    """Where in the config a check is: builds the one-line error message."""

    def __init__(self, origin: str, parts: tuple[str, ...] = ()) -> None:
        self.origin = origin
        self.parts = parts

    def sub(self, part: str) -> _At:
        return _At(self.origin, (*self.parts, part))

    def error(self, message: str) -> ConfigError:
        return ConfigError(": ".join((self.origin, *self.parts, message)))


def _check_keys(table: Mapping[str, Any], known: tuple[str, ...], at: _At) -> None:
    """Refuses unknown keys, so a typo is an error rather than a silently ignored setting."""
    for key in table:
        if key not in known:
            close = difflib.get_close_matches(key, known, n=1)
            hint = f"did you mean '{close[0]}'? " if close else ""
            raise at.error(f"unknown key '{key}' ({hint}known keys: {', '.join(known)})")


def _table(v: Any, at: _At) -> dict[str, Any]:
    if not isinstance(v, dict):
        raise at.error(f"must be a table, not {_kind(v)}")
    return v


def _kind(v: Any) -> str:
    if isinstance(v, bool):
        return "a boolean"
    if isinstance(v, int):
        return "an integer"
    if isinstance(v, float):
        return "a float"
    if isinstance(v, str):
        return "a string"
    if isinstance(v, list):
        return "an array"
    if isinstance(v, dict):
        return "a table"
    return "a date or time"


def _str(d: Mapping[str, Any], key: str, at: _At, *, required: bool = False) -> str | None:
    if key not in d:
        if required:
            raise at.error(f"'{key}' is required")
        return None
    v = d[key]
    if not isinstance(v, str) or not v:
        got = "" if isinstance(v, str) else f", not {_kind(v)}"
        raise at.sub(key).error(f"must be a non-empty string{got}")
    return v


def _enum(d: Mapping[str, Any], key: str, allowed: tuple[str, ...], default: str, at: _At) -> str:
    if key not in d:
        return default
    v = d[key]
    if v not in allowed:
        shown = f"'{v}'" if isinstance(v, str) else _kind(v)
        raise at.sub(key).error(f"{shown} is not one of {', '.join(allowed)}")
    return str(v)


def _int(d: Mapping[str, Any], key: str, lo: int, hi: int | None, at: _At) -> int | None:
    if key not in d:
        return None
    v = d[key]
    if isinstance(v, bool) or not isinstance(v, int):
        raise at.sub(key).error(f"must be an integer, not {_kind(v)}")
    if v < lo or (hi is not None and v > hi):
        raise at.sub(key).error(f"{v} is out of range ({lo}..{hi if hi is not None else ''})")
    return v


def _str_list(d: Mapping[str, Any], key: str, at: _At) -> tuple[str, ...] | None:
    if key not in d:
        return None
    v = d[key]
    if not isinstance(v, list) or not all(isinstance(x, str) and x for x in v):
        raise at.sub(key).error("must be an array of non-empty strings")
    dup = _first_duplicate(v)
    if dup is not None:
        raise at.sub(key).error(f"'{dup}' is listed twice")
    return tuple(v)


def _str_map(d: Mapping[str, Any], key: str, at: _At) -> dict[str, str]:
    if key not in d:
        return {}
    v = _table(d[key], at.sub(key))
    for k, x in v.items():
        if not isinstance(x, str) or not x:
            raise at.sub(key).error(f"'{k}' must map to a non-empty string, not {_kind(x)}")
    return dict(v)


def _check_attr_name(
    name: str, at: _At, *, limit: int = MAX_NAME_BYTES, what: str = "attribute names"
) -> None:
    """Refuses a name DynamoDB would refuse. Every attribute name of an output item is one of
    the input item's (checked by the parser) or one the config writes (`set`, `rename`), so
    checking the config's names here is what keeps such items from being written."""
    size = len(name.encode())
    if 1 <= size <= limit:
        return
    shown = f"'{name}'" if size <= 40 else f"'{name[:20]}...'"
    got = "is empty" if size == 0 else f"is {size} bytes"
    raise at.error(f"{shown} {got}: DynamoDB {what} are 1 to {limit} bytes of UTF-8")


def _first_duplicate(items: list[str]) -> str | None:
    seen: set[str] = set()
    for x in items:
        if x in seen:
            return x
        seen.add(x)
    return None


# --- top level -----------------------------------------------------------------------------


def _apply_overrides(raw: dict[str, Any], overrides: Mapping[str, Any], at: _At) -> None:
    for dotted, value in overrides.items():
        if value is None:
            continue
        if dotted not in _OVERRIDE_KEYS:
            raise at.error(f"cannot override '{dotted}' (can: {', '.join(_OVERRIDE_KEYS)})")
        if dotted in ("source", "dest") and isinstance(value, str | Path):
            value = _resolve_path(str(value), Path.cwd())  # typed in a shell: relative to CWD
        if dotted in ("output.shards", "output.level") and isinstance(value, str):
            value = int(value) if value.isdigit() else value  # as argparse hands it over
        section, _, key = dotted.rpartition(".")
        into = raw.setdefault(section, {}) if section else raw
        _table(into, at.sub(section))[key] = value if not isinstance(value, Path) else str(value)


def _resolve_path(p: str, base: Path) -> str:
    """s3:// URIs stay as written; a local path becomes absolute, relative to `base`."""
    if p.startswith("s3://"):
        return p
    return str((base / Path(p).expanduser()).resolve())


def _location(raw: Mapping[str, Any], key: str, base: Path, at: _At) -> str:
    v = _str(raw, key, at, required=True)
    assert v is not None
    if not v.startswith("s3://") and _URI_SCHEME.match(v):
        raise at.sub(key).error(f"'{v}': only local paths and s3:// URIs are supported")
    if v.startswith("s3://"):
        try:
            split_s3_uri(v)
        except ValueError as e:
            raise at.sub(key).error(str(e)) from None
    return _resolve_path(v, base)


def _split_config(raw: dict[str, Any], at: _At, base: Path) -> SplitConfig:
    _check_keys(raw, _TOP_KEYS, at)
    source = _location(raw, "source", base, at)
    dest = _location(raw, "dest", base, at)
    s3_dest = _str(raw, "s3_dest", at)
    if s3_dest is not None:
        try:
            bucket, prefix = split_s3_uri(s3_dest)
        except ValueError as e:
            raise at.sub("s3_dest").error(str(e)) from None
        s3_dest = f"s3://{bucket}/{prefix}"
        if dest.startswith("s3://") and split_s3_uri(dest) != (bucket, prefix):
            raise at.sub("s3_dest").error(
                "only for a local dest (where the shards will be uploaded); dest is already "
                f"on S3 ({dest})"
            )
    if not source.startswith("s3://") and not dest.startswith("s3://"):
        # Refused here, before a run clears anything under dest (--overwrite) that it reads.
        folder = lists_under(source, dest)
        if folder is not None:
            raise at.sub("dest").error(
                f"'{dest}' is inside the source folder '{folder}': the split would read its own "
                "output; choose a dest outside it"
            )
    output = _output(raw.get("output", {}), at.sub("output"))

    if "target" not in raw:
        raise at.error("no [[target]]: declare at least one target table")
    if not isinstance(raw["target"], list):
        raise at.sub("target").error("must be an array of tables: write [[target]], not [target]")
    if not raw["target"]:
        raise at.error("no [[target]]: declare at least one target table")
    targets: list[TargetConfig] = []
    for i, t in enumerate(raw["target"]):
        target = _target(t, i, at)
        for other in targets:
            if other.name == target.name:
                raise at.error(f"target '{target.name}' is declared twice (names must be unique)")
            if other.table.table_name == target.table.table_name:
                raise at.sub(f"target '{target.name}'").error(
                    f"table_name '{target.table.table_name}' is also the table of target "
                    f"'{other.name}' (ImportTable creates a new table each time)"
                )
        targets.append(target)
    if output.route == "first":
        for t in targets[:-1]:
            if t.where is None:
                raise at.sub(f"target '{t.name}'").error(
                    "has no 'where', so with route = \"first\" it takes every item and the "
                    "targets after it get none (move it last or give it a condition)"
                )
    config = SplitConfig(
        origin=at.origin,
        source=source,
        dest=dest,
        s3_dest=s3_dest,
        output=output,
        targets=tuple(targets),
    )
    # The native engine compiles every condition, template and transform exactly as the split
    # will: it owns those rules (placeholders used but not defined, paths in templates), so a
    # config it would refuse is refused here, before any data is read, by the same code.
    try:
        Splitter(build_core_spec(config, {t.name: 1 for t in targets}, compression="none"))
    except DdbShardError as e:
        raise at.error(str(e)) from None
    return config


def _output(v: Any, at: _At) -> OutputConfig:
    d = _table(v, at)
    _check_keys(d, _OUTPUT_KEYS, at)
    compression = _enum(d, "compression", COMPRESSIONS, "zstd", at)
    level = None
    if "level" in d:
        if compression not in LEVELS:
            raise at.sub("level").error(f"compression '{compression}' takes no level")
        lo, hi, _ = LEVELS[compression]
        level = _int(d, "level", lo, hi, at)
    shards: int | Literal["auto"] = "auto"
    if "shards" in d:
        if d["shards"] == "auto":
            shards = "auto"
        else:
            if isinstance(d["shards"], str):
                raise at.sub("shards").error(f"'{d['shards']}' is not a number or \"auto\"")
            n = _int(d, "shards", 1, MAX_SHARDS, at)
            assert n is not None
            shards = n
    sse = _enum(d, "sse", SSE_MODES, "", at) or None
    kms_key = _str(d, "sse_kms_key_id", at)
    if kms_key is not None and sse != "aws:kms":
        raise at.sub("sse_kms_key_id").error('a KMS key needs sse = "aws:kms"')
    owner = _str(d, "expected_bucket_owner", at)
    if owner is not None and not re.fullmatch(r"\d{12}", owner):
        raise at.sub("expected_bucket_owner").error(f"'{owner}' is not a 12-digit account id")
    return OutputConfig(
        compression=compression,
        level=level,
        shards=shards,
        route=_enum(d, "route", ROUTES, "first", at),
        unmatched=_enum(d, "unmatched", UNMATCHED, "reject", at),
        sse=sse,
        sse_kms_key_id=kms_key,
        expected_bucket_owner=owner,
    )


# --- targets -------------------------------------------------------------------------------


def _check_name(name: str, what: str, at: _At) -> None:
    if not _TABLE_NAME.fullmatch(name):
        raise at.error(
            f"'{name}' is not a valid {what} (3-255 characters from a-z A-Z 0-9 _ . -, "
            "the DynamoDB naming rule)"
        )


def _target(v: Any, i: int, top: _At) -> TargetConfig:
    d = _table(v, top.sub(f"target #{i + 1}"))
    name = d.get("name")
    at = top.sub(f"target '{name}'" if isinstance(name, str) and name else f"target #{i + 1}")
    if "local_secondary_indexes" in d:
        raise at.sub("local_secondary_indexes").error(_LSI_ADVICE)
    _check_keys(d, _TARGET_KEYS, at)
    name = _str(d, "name", at, required=True)
    assert name is not None
    _check_name(name, "table name", at.sub("name"))
    if name.startswith("_"):
        # _rejects/, _summary.json and _diff/ sit beside the target folders under dest.
        raise at.sub("name").error(
            "names starting with '_' are kept for ddbshard's own outputs; "
            "give the target another name and set table.table_name"
        )

    where = _str(d, "where", at)
    names = _str_map(d, "names", at)
    for placeholder in names:
        if not _NAME_PLACEHOLDER.fullmatch(placeholder):
            raise at.sub("names").error(
                f"'{placeholder}' is not a name placeholder ('#' then letters, digits or _)"
            )
    values = _values(d.get("values", {}), at.sub("values"))
    if where is not None:
        # The real parse, by the same Rust parser the split uses: it owns the expression rules
        # (syntax, placeholders used but not defined), reported here with their column before
        # any data is read.
        try:
            Condition(where, names, values)
        except DdbShardError as e:
            raise at.sub("where").error(str(e)) from None

    if isinstance(d.get("key"), str):
        raise at.sub("key").error(
            f'write key = {{ hash = "{d["key"]}" }} (add range = "..." for a sort key)'
        )
    key = _table(d.get("key", {}), at.sub("key"))
    _check_keys(key, _KEY_KEYS, at.sub("key"))
    hash_key = _str(key, "hash", at.sub("key"), required=True)
    assert hash_key is not None
    range_key = _str(key, "range", at.sub("key"))
    if range_key == hash_key:
        raise at.sub("key").error(f"hash and range are both '{hash_key}' (they must differ)")
    for part, k in (("hash", hash_key), ("range", range_key)):
        if k is not None:
            _check_attr_name(
                k, at.sub("key").sub(part), limit=MAX_KEY_NAME_BYTES, what="key attribute names"
            )

    keep = _str_list(d, "keep", at)
    drop = _str_list(d, "drop", at) or ()
    rename = _str_map(d, "rename", at)
    set_ = _str_map(d, "set", at)
    _check_transform(keep, drop, rename, set_, names, at)
    for k in (hash_key, range_key):
        if k is not None:
            _check_key_kept(k, keep, drop, rename, set_, at)

    table = _table_config(d.get("table", {}), name, at.sub("table"))
    key_types = _key_types(d, hash_key, range_key, table.gsis, set_, at)
    return TargetConfig(
        name=name,
        where=where,
        names=names,
        values=values,
        hash_key=hash_key,
        range_key=range_key,
        key_types=key_types,
        keep=keep,
        drop=drop,
        rename=rename,
        set=set_,
        table=table,
    )


def _check_transform(
    keep: tuple[str, ...] | None,
    drop: tuple[str, ...],
    rename: dict[str, str],
    set_: dict[str, str],
    names: dict[str, str],
    at: _At,
) -> None:
    for field, listed in (("keep", keep or ()), ("drop", drop), ("set", set_)):
        for a in listed:
            _check_attr_name(a, at.sub(field))
    for src, dst in rename.items():
        _check_attr_name(src, at.sub("rename"))
        _check_attr_name(dst, at.sub("rename").sub(src))
    for a in drop:
        if keep is not None and a in keep:
            raise at.error(f"'{a}' is in both keep and drop")
    seen: dict[str, str] = {}
    for src, dst in rename.items():
        if dst in seen:
            raise at.sub("rename").error(f"'{seen[dst]}' and '{src}' are both renamed to '{dst}'")
        seen[dst] = src
        if dst in set_:
            raise at.sub("rename").error(f"'{src}' is renamed to '{dst}', which set also writes")
        if keep is not None and dst in keep and dst not in rename:
            raise at.sub("rename").error(
                f"'{src}' is renamed to '{dst}', which keep also keeps under that name"
            )
    for attr, template in set_.items():
        _template_paths(template, at.sub("set").sub(attr))


def _template_paths(template: str, at: _At) -> list[str]:
    """The `{path}` references of a set template; `{{` and `}}` are literal braces."""
    paths: list[str] = []
    i, n = 0, len(template)
    while i < n:
        c = template[i]
        if c == "{":
            if template.startswith("{{", i):
                i += 2
                continue
            end = template.find("}", i + 1)
            if end < 0 or "{" in template[i + 1 : end]:
                raise at.error(f"'{{' at column {i + 1} is not closed (write '{{{{' for a brace)")
            path = template[i + 1 : end].strip()
            if not path:
                raise at.error(f"empty '{{}}' at column {i + 1}: name an attribute path")
            paths.append(path)
            i = end + 1
        elif c == "}":
            if not template.startswith("}}", i):
                raise at.error(f"'}}' at column {i + 1} has no '{{' (write '}}}}' for a brace)")
            i += 2
        else:
            i += 1
    return paths


def _check_key_kept(
    k: str,
    keep: tuple[str, ...] | None,
    drop: tuple[str, ...],
    rename: dict[str, str],
    set_: dict[str, str],
    at: _At,
) -> None:
    """A table key the transform always removes would get every item rejected: say it now.

    The transform keeps or drops source attributes, then renames, then sets (the sample in
    DESIGN.md keeps `created_at` and renames it), so a key survives when set or a rename
    makes it, or when it is a source attribute that nothing removes.
    """
    if k in set_ or k in rename.values():
        return
    if k in drop:
        raise at.sub("drop").error(f"drops the key attribute '{k}', so every item would lack it")
    if k in rename:
        raise at.sub("rename").error(
            f"renames the key attribute '{k}' to '{rename[k]}', so every item would lack '{k}'"
        )
    if keep is not None and k not in keep:
        raise at.sub("keep").error(f"does not keep the key attribute '{k}'")


def _key_types(
    d: Mapping[str, Any],
    hash_key: str,
    range_key: str | None,
    gsis: tuple[GsiConfig, ...],
    set_: dict[str, str],
    at: _At,
) -> dict[str, str]:
    declared = _str_map(d, "key_types", at)
    needed = [hash_key, *([range_key] if range_key else [])]
    for g in gsis:
        needed += [g.hash, *([g.range] if g.range else [])]
    for attr, declared_type in declared.items():
        if declared_type not in KEY_TYPES:
            raise at.sub("key_types").error(
                f"'{attr}' has type '{declared_type}'; keys can only be S, N or B"
            )
        if attr not in needed:
            raise at.sub("key_types").error(
                f"'{attr}' is not a key of the table or of a global secondary index"
            )
    types: dict[str, str] = {}
    for attr in needed:
        if attr in types:
            continue
        t = declared.get(attr)
        if attr in set_:
            # set templates make strings, so the type is known; a declared N or B is a mistake.
            if t not in (None, "S"):
                raise at.sub("key_types").error(
                    f"'{attr}' is declared {t}, but set makes it a string (S)"
                )
            t = "S"
        if t is None:
            raise at.sub("key_types").error(
                f"'{attr}' is missing (every table and GSI key attribute needs S, N or B)"
            )
        types[attr] = t
    return types


def _table_config(v: Any, target_name: str, at: _At) -> TableConfig:
    d = _table(v, at)
    if "local_secondary_indexes" in d:
        raise at.sub("local_secondary_indexes").error(_LSI_ADVICE)
    _check_keys(d, _TABLE_KEYS, at)
    billing = _enum(d, "billing_mode", BILLING_MODES, "PAY_PER_REQUEST", at)
    # ProvisionedThroughput units are at least 1 (DynamoDB API, ProvisionedThroughput).
    read = _int(d, "read_capacity", 1, None, at)
    write = _int(d, "write_capacity", 1, None, at)
    _check_capacity(billing, read, write, at)

    gsis: list[GsiConfig] = []
    raw_gsis = d.get("global_secondary_indexes", [])
    if not isinstance(raw_gsis, list):
        raise at.sub("global_secondary_indexes").error("must be an array of tables")
    for i, g in enumerate(raw_gsis):
        gsi = _gsi(g, i, billing, at.sub("global_secondary_indexes"))
        if any(other.name == gsi.name for other in gsis):
            raise at.sub("global_secondary_indexes").error(f"index '{gsi.name}' is declared twice")
        gsis.append(gsi)
    # "You can project a total of up to 100 attributes into all of a table's local and global
    # secondary indexes" (DynamoDB quotas; an attribute in two indexes counts twice).
    projected = sum(len(g.non_key_attributes) for g in gsis)
    if projected > 100:
        raise at.sub("global_secondary_indexes").error(
            f"{projected} INCLUDE attributes in all; DynamoDB allows 100 per table"
        )

    tags: dict[str, str] = {}
    if "tags" in d:
        tags = _tags(_table(d["tags"], at.sub("tags")), at.sub("tags"))
    pitr = d.get("pitr")
    if pitr is not None and not isinstance(pitr, bool):
        raise at.sub("pitr").error(f"must be true or false, not {_kind(pitr)}")
    table_name = _str(d, "table_name", at) or target_name
    _check_name(table_name, "table name", at.sub("table_name"))
    ttl = _str(d, "ttl", at)
    if ttl is not None:
        _check_attr_name(ttl, at.sub("ttl"), limit=MAX_KEY_NAME_BYTES, what="TTL attribute names")
    return TableConfig(
        billing_mode=billing,
        read_capacity=read,
        write_capacity=write,
        gsis=tuple(gsis),
        stream=_enum(d, "stream", STREAM_VIEWS, "", at) or None,
        ttl=ttl,
        tags=tags,
        pitr=pitr,
        table_name=table_name,
    )


def _check_capacity(billing: str, read: int | None, write: int | None, at: _At) -> None:
    if billing == "PROVISIONED":
        for key, v in (("read_capacity", read), ("write_capacity", write)):
            if v is None:
                raise at.error(f"billing_mode PROVISIONED needs '{key}'")
    else:
        for key, v in (("read_capacity", read), ("write_capacity", write)):
            if v is not None:
                raise at.sub(key).error(
                    'only with billing_mode = "PROVISIONED" (PAY_PER_REQUEST has no capacity)'
                )


def _tags(tags: dict[str, Any], at: _At) -> dict[str, str]:
    # Tag rules (DynamoDB tagging restrictions): at most 50 per resource, keys 1-128 characters
    # and not starting with "aws:", values 0-256 characters.
    if len(tags) > 50:
        raise at.error(f"{len(tags)} tags; DynamoDB allows 50 per table")
    for k, v in tags.items():
        if not isinstance(v, str):
            raise at.error(f"'{k}' must map to a string, not {_kind(v)}")
        if not 1 <= len(k) <= 128 or k.lower().startswith("aws:"):
            raise at.error(f"'{k}' is not a valid tag key (1-128 characters, not starting aws:)")
        if len(v) > 256:
            raise at.error(f"the value of '{k}' is longer than 256 characters")
    return dict(tags)


def _gsi(v: Any, i: int, billing: str, top: _At) -> GsiConfig:
    d = _table(v, top.sub(f"#{i + 1}"))
    name = d.get("name")
    at = top.sub(f"'{name}'" if isinstance(name, str) and name else f"#{i + 1}")
    _check_keys(d, _GSI_KEYS, at)
    name = _str(d, "name", at, required=True)
    assert name is not None
    _check_name(name, "index name", at.sub("name"))
    hash_key = _str(d, "hash", at, required=True)
    assert hash_key is not None
    range_key = _str(d, "range", at)
    if range_key == hash_key:
        raise at.error(f"hash and range are both '{hash_key}' (they must differ)")
    for part, k in (("hash", hash_key), ("range", range_key)):
        if k is not None:
            _check_attr_name(k, at.sub(part), limit=MAX_KEY_NAME_BYTES, what="key attribute names")

    projection, attrs = _projection(d.get("projection", "ALL"), at.sub("projection"))
    read = _int(d, "read_capacity", 1, None, at)
    write = _int(d, "write_capacity", 1, None, at)
    _check_capacity(billing, read, write, at)
    return GsiConfig(
        name=name,
        hash=hash_key,
        range=range_key,
        projection=projection,
        non_key_attributes=attrs,
        read_capacity=read,
        write_capacity=write,
    )


def _projection(v: Any, at: _At) -> tuple[str, tuple[str, ...]]:
    if isinstance(v, str):
        if v == "INCLUDE":
            raise at.error(
                'INCLUDE needs the attributes: { type = "INCLUDE", attributes = ["a", "b"] }'
            )
        if v not in PROJECTIONS:
            raise at.error(f"'{v}' is not one of {', '.join(PROJECTIONS)}")
        return v, ()
    d = _table(v, at)
    _check_keys(d, _PROJECTION_KEYS, at)
    kind = _enum(d, "type", PROJECTIONS, "", at)
    if not kind:
        raise at.error("'type' is required (ALL, KEYS_ONLY or INCLUDE)")
    attrs = _str_list(d, "attributes", at)
    if kind != "INCLUDE":
        if attrs is not None:
            raise at.sub("attributes").error(f"only with type INCLUDE (this is {kind})")
        return kind, ()
    if not attrs:
        raise at.sub("attributes").error("INCLUDE needs at least one attribute")
    for a in attrs:
        _check_attr_name(
            a, at.sub("attributes"), limit=MAX_KEY_NAME_BYTES, what="projected attribute names"
        )
    return kind, attrs


# --- values: plain TOML or DynamoDB JSON -> DynamoDB-JSON text -----------------------------


def _values(v: Any, at: _At) -> dict[str, str]:
    """`values` entries as compact DynamoDB-JSON texts (the Rust core parses them for real).

    Plain TOML converts by type: string -> S, integer -> N, boolean -> BOOL, array -> L,
    table -> M. A table with exactly one key that is a DynamoDB type (S, N, B, BOOL, NULL, M,
    L, SS, NS, BS) is taken as that typed value: `{ N = "1.50" }`, `{ SS = ["a", "b"] }`,
    `{ B = "AAE=" }`. Arrays become L, never a set: write `{ SS = [...] }` for a set.
    """
    d = _table(v, at)
    out: dict[str, str] = {}
    for placeholder, value in d.items():
        if not _VALUE_PLACEHOLDER.fullmatch(placeholder):
            raise at.error(
                f"'{placeholder}' is not a value placeholder (':' then letters, digits or _)"
            )
        attr = _attr_value(value, at.sub(placeholder))
        out[placeholder] = json.dumps(attr, separators=(",", ":"), ensure_ascii=False)
    return out


def _attr_value(v: Any, at: _At) -> dict[str, Any]:
    if isinstance(v, bool):
        return {"BOOL": v}
    if isinstance(v, int):
        return {"N": str(v)}
    if isinstance(v, float):
        # TOML floats are binary doubles: 1.50 and 0.1 would not survive as written, and
        # DynamoDB numbers are exact decimals of up to 38 digits (AWS-FORMATS.md §4).
        raise at.error(
            f"{v!r} is a TOML float, which cannot keep a DynamoDB number exact; "
            f'write it as a string: {{ N = "{v!r}" }}'
        )
    if isinstance(v, str):
        return {"S": v}
    if isinstance(v, datetime | date | time):
        raise at.error("TOML dates and times have no DynamoDB type; write a string or a number")
    if isinstance(v, list):
        return {"L": [_attr_value(x, at) for x in v]}
    if isinstance(v, dict):
        if len(v) == 1:
            (kind, inner), = v.items()  # fmt: skip
            if kind in ATTR_TYPES:
                return _typed_value(kind, inner, at)
        return {"M": {k: _attr_value(x, at.sub(k)) for k, x in v.items()}}
    raise at.error(f"{_kind(v)} has no DynamoDB type")


def _typed_value(kind: str, v: Any, at: _At) -> dict[str, Any]:
    """Checks the shape of a DynamoDB-JSON value; the Rust parser checks numbers and base64."""
    if kind in ("S", "B"):
        if not isinstance(v, str):
            raise at.error(f"{kind} must be a string, not {_kind(v)}")
        return {kind: v}
    if kind == "N":
        if isinstance(v, int) and not isinstance(v, bool):
            return {"N": str(v)}
        if not isinstance(v, str) or not v:
            raise at.error(
                f'N must be the number as a string, like {{ N = "1.50" }}, not {_kind(v)}'
            )
        return {"N": v}
    if kind == "BOOL":
        if not isinstance(v, bool):
            raise at.error(f"BOOL must be true or false, not {_kind(v)}")
        return {"BOOL": v}
    if kind == "NULL":
        if v is not True:
            raise at.error("NULL must be written { NULL = true }")
        return {"NULL": True}
    if kind == "M":
        m = _table(v, at.sub("M"))
        return {"M": {k: _attr_value(x, at.sub(k)) for k, x in m.items()}}
    if kind == "L":
        if not isinstance(v, list):
            raise at.error(f"L must be an array, not {_kind(v)}")
        return {"L": [_attr_value(x, at) for x in v]}
    # SS, NS, BS: DynamoDB refuses empty sets and duplicate members (AWS-FORMATS.md §4).
    if not isinstance(v, list) or not v:
        raise at.error(f"{kind} must be a non-empty array (DynamoDB has no empty sets)")
    members: list[str] = []
    for x in v:
        if kind == "NS" and isinstance(x, int) and not isinstance(x, bool):
            x = str(x)
        if not isinstance(x, str):
            raise at.error(f"{kind} members must be strings, not {_kind(x)}")
        members.append(x)
    dup = _first_duplicate(members)
    if dup is not None:
        raise at.error(f"{kind} lists '{dup}' twice (set members must be unique)")
    return {kind: members}
