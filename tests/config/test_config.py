"""Tests of config.py: the DESIGN.md sample, every refusal rule, values, paths, core_spec."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from ddbshard._core import Splitter
from ddbshard.config import (
    MAX_SHARDS,
    SplitConfig,
    auto_shards,
    build_core_spec,
    load_config,
    parse_config,
)
from ddbshard.exceptions import ConfigError

# The sketch from DESIGN.md "Config (TOML)", verbatim.
DESIGN_SAMPLE = """\
source = "s3://exports/AWSDynamoDB/01700000000000-abcdef/"
dest   = "s3://imports/2026-11-23/"

[output]
compression = "zstd"      # zstd (default) | gzip | none; ImportTable reads all three
shards = 100              # per target, or "auto" (from the manifest item count)
route = "first"           # first: an item goes to the first target whose condition holds; all: to every one
unmatched = "reject"      # reject (kept in the rejects file) | drop (counted only) | error (stop)

[[target]]
name = "TableB"
where = "kind = :post AND attribute_exists(#ts)"   # DynamoDB condition-expression syntax
values = { ":post" = "post" }
names = { "#ts" = "created_at" }          # for reserved words and odd attribute names
key = { hash = "pk", range = "sk" }       # key attributes of the OUTPUT item
key_types = { pk = "S", sk = "S" }
keep = ["pk", "sk", "text", "created_at"] # optional projection
drop = ["legacy"]
rename = { created_at = "createdAt" }
set = { gsi1pk = "USER#{user_id}" }      # new string attributes from templates

[target.table]                            # TableCreationParameters for ImportTable
billing_mode = "PAY_PER_REQUEST"
global_secondary_indexes = [ { name = "byUser", hash = "gsi1pk", range = "createdAt", projection = "ALL" } ]
stream = "NEW_AND_OLD_IMAGES"             # applied after import: ImportTable cannot set it
ttl = "expires_at"                        # likewise applied after import
tags = { team = "feed" }
# local_secondary_indexes = [...] is refused with the advice to declare a GSI: ImportTable cannot create LSIs
"""  # noqa: E501 - the sample as DESIGN.md prints it

# The sample's GSI range key `createdAt` comes from a rename, so its type cannot be inferred:
# the sample needs it declared (gsi1pk is made by `set`, which always makes strings).
SAMPLE = DESIGN_SAMPLE.replace(
    'key_types = { pk = "S", sk = "S" }', 'key_types = { pk = "S", sk = "S", createdAt = "S" }'
)

MINIMAL = """\
source = "export/"
dest = "out/"

[[target]]
name = "Things"
key = { hash = "pk" }
key_types = { pk = "S" }
"""


def write(tmp_path: Path, text: str, name: str = "split.toml") -> Path:
    p = tmp_path / name
    p.write_text(text, encoding="utf-8")
    return p


def parse(text: str) -> SplitConfig:
    return parse_config(text, origin="cfg.toml", base="/base")


def test_design_sample_parses(tmp_path: Path) -> None:
    cfg = load_config(write(tmp_path, SAMPLE))
    assert cfg.source == "s3://exports/AWSDynamoDB/01700000000000-abcdef/"
    assert cfg.dest == "s3://imports/2026-11-23/"
    assert cfg.s3_dest is None
    assert (cfg.output.compression, cfg.output.level, cfg.output.shards) == ("zstd", None, 100)
    assert (cfg.output.route, cfg.output.unmatched) == ("first", "reject")
    (t,) = cfg.targets
    assert t.name == "TableB"
    assert t.where == "kind = :post AND attribute_exists(#ts)"
    assert t.values == {":post": '{"S":"post"}'}
    assert t.names == {"#ts": "created_at"}
    assert (t.hash_key, t.range_key) == ("pk", "sk")
    assert t.key_types == {"pk": "S", "sk": "S", "gsi1pk": "S", "createdAt": "S"}
    assert t.keep == ("pk", "sk", "text", "created_at")
    assert t.drop == ("legacy",)
    assert t.rename == {"created_at": "createdAt"}
    assert t.set == {"gsi1pk": "USER#{user_id}"}
    assert t.table.billing_mode == "PAY_PER_REQUEST"
    assert t.table.table_name == "TableB"
    (g,) = t.table.gsis
    assert (g.name, g.hash, g.range, g.projection) == ("byUser", "gsi1pk", "createdAt", "ALL")
    assert (t.table.stream, t.table.ttl, t.table.tags) == (
        "NEW_AND_OLD_IMAGES",
        "expires_at",
        {"team": "feed"},
    )
    assert t.table.pitr is None


def test_design_sample_verbatim_lacks_a_key_type(tmp_path: Path) -> None:
    p = write(tmp_path, DESIGN_SAMPLE)
    with pytest.raises(ConfigError) as e:
        load_config(p)
    assert str(e.value) == (
        f"{p}: target 'TableB': key_types: 'createdAt' is missing "
        "(every table and GSI key attribute needs S, N or B)"
    )


def test_defaults() -> None:
    cfg = parse(MINIMAL)
    assert cfg.output.compression == "zstd"
    assert cfg.output.level is None
    assert cfg.output.resolved_level == 3
    assert cfg.output.shards == "auto"
    assert (cfg.output.route, cfg.output.unmatched) == ("first", "reject")
    (t,) = cfg.targets
    assert t.where is None and t.range_key is None and t.keep is None
    assert (t.drop, t.rename, t.set, t.names, t.values) == ((), {}, {}, {}, {})
    assert t.table.billing_mode == "PAY_PER_REQUEST"
    assert t.table.gsis == ()
    assert (t.table.stream, t.table.ttl, t.table.tags, t.table.pitr) == (None, None, {}, None)


def test_relative_paths_resolve_against_the_config_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    conf_dir = tmp_path / "conf"
    conf_dir.mkdir()
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    text = MINIMAL.replace('source = "export/"', 'source = "../data/export"')
    cfg = load_config(write(conf_dir, text))
    assert cfg.source == str((tmp_path / "data" / "export").resolve())
    assert cfg.dest == str((conf_dir / "out").resolve())
    # An override typed on the command line is relative to the current folder instead.
    cfg = load_config(conf_dir / "split.toml", overrides={"dest": "here", "output.shards": "7"})
    assert cfg.dest == str((elsewhere / "here").resolve())
    assert cfg.output.shards == 7


def test_s3_uris_are_kept_and_s3_dest_normalised() -> None:
    text = MINIMAL.replace('dest = "out/"', 'dest = "out/"\ns3_dest = "s3://bucket/imports"')
    cfg = parse(text.replace('"export/"', '"s3://b/AWSDynamoDB/123-x/"'))
    assert cfg.source == "s3://b/AWSDynamoDB/123-x/"
    assert cfg.s3_dest == "s3://bucket/imports/"


def test_overrides() -> None:
    cfg = parse_config(
        MINIMAL,
        base="/base",
        overrides={"output.compression": "gzip", "output.level": 9, "source": None},
    )
    assert (cfg.output.compression, cfg.output.level) == ("gzip", 9)
    assert cfg.source == "/base/export"
    with pytest.raises(ConfigError, match=r"cannot override 'output\.bogus'"):
        parse_config(MINIMAL, overrides={"output.bogus": 1})
    with pytest.raises(ConfigError, match=r"output: level: 12 is out of range \(1\.\.9\)"):
        parse_config(MINIMAL, overrides={"output.compression": "gzip", "output.level": 12})


def test_unreadable_and_bad_toml(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read the config"):
        load_config(tmp_path / "missing.toml")
    p = write(tmp_path, 'source = "a"\ndest = \n')
    with pytest.raises(ConfigError, match=r"invalid TOML: .*line 2, column 8"):
        load_config(p)
    p.write_bytes(b'source = "\xff"\n')
    with pytest.raises(ConfigError, match="not UTF-8"):
        load_config(p)


# --- refusals: each rule, with the message naming where ----------------------------------------

TARGET_HEAD = 'source = "s"\ndest = "d"\n'


def target(body: str, *, name: str = "TableB", head: str = "") -> str:
    return f'{TARGET_HEAD}{head}\n[[target]]\nname = "{name}"\n{body}\n'


KEYED = 'key = { hash = "pk" }\nkey_types = { pk = "S" }\n'

REFUSALS: list[tuple[str, str, str]] = [
    # (id, config text, expected message after "cfg.toml: ")
    ("no target", TARGET_HEAD, "no [[target]]: declare at least one target table"),
    (
        "target not array",
        TARGET_HEAD + '[target]\nname = "TableB"\n',
        "target: must be an array of tables: write [[target]], not [target]",
    ),
    (
        "unknown top key",
        TARGET_HEAD + 'sorce = "x"\n',
        "unknown key 'sorce' (did you mean 'source'? known keys: source, dest, s3_dest, output, "
        "target)",
    ),
    ("source required", 'dest = "d"\n', "'source' is required"),
    (
        "other scheme",
        'source = "gs://b/x"\ndest = "d"\n',
        "source: 'gs://b/x': only local paths and s3:// URIs are supported",
    ),
    ("bad s3 uri", 'source = "s3:///x"\ndest = "d"\n', "source: 's3:///x' names no bucket"),
    (
        "s3_dest with s3 dest",
        'source = "s"\ndest = "s3://a/p/"\ns3_dest = "s3://b/q/"\n',
        "s3_dest: only for a local dest",
    ),
    (
        "unknown output key",
        target(KEYED, head="[output]\nshard = 3\n"),
        "output: unknown key 'shard' (did you mean 'shards'?",
    ),
    (
        "compression enum",
        target(KEYED, head='[output]\ncompression = "lz4"\n'),
        "output: compression: 'lz4' is not one of zstd, gzip, none",
    ),
    (
        "route enum",
        target(KEYED, head='[output]\nroute = "any"\n'),
        "output: route: 'any' is not one of first, all",
    ),
    (
        "unmatched enum",
        target(KEYED, head='[output]\nunmatched = "keep"\n'),
        "output: unmatched: 'keep' is not one of reject, drop, error",
    ),
    (
        "zstd level",
        target(KEYED, head="[output]\nlevel = 20\n"),
        "output: level: 20 is out of range (1..19)",
    ),
    (
        "gzip level",
        target(KEYED, head='[output]\ncompression = "gzip"\nlevel = 0\n'),
        "output: level: 0 is out of range (1..9)",
    ),
    (
        "none level",
        target(KEYED, head='[output]\ncompression = "none"\nlevel = 1\n'),
        "output: level: compression 'none' takes no level",
    ),
    (
        "shards range",
        target(KEYED, head="[output]\nshards = 5001\n"),
        f"output: shards: 5001 is out of range (1..{MAX_SHARDS})",
    ),
    (
        "shards zero",
        target(KEYED, head="[output]\nshards = 0\n"),
        "output: shards: 0 is out of range",
    ),
    (
        "shards word",
        target(KEYED, head='[output]\nshards = "many"\n'),
        "output: shards: 'many' is not a number or \"auto\"",
    ),
    (
        "shards bool",
        target(KEYED, head="[output]\nshards = true\n"),
        "output: shards: must be an integer, not a boolean",
    ),
    ("name required", TARGET_HEAD + "[[target]]\n" + KEYED, "target #1: 'name' is required"),
    (
        "name too short",
        target(KEYED, name="ab"),
        "target 'ab': name: 'ab' is not a valid table name (3-255 characters",
    ),
    (
        "name bad char",
        target(KEYED, name="Table B"),
        "target 'Table B': name: 'Table B' is not a valid table name",
    ),
    (
        "name reserved",
        target(KEYED, name="_rejects"),
        "target '_rejects': name: names starting with '_' are kept for ddbshard's own outputs",
    ),
    (
        "duplicate target",
        target(KEYED + 'where = "a = :a"\nvalues = { ":a" = 1 }\n')
        + '[[target]]\nname = "TableB"\n'
        + KEYED,
        "target 'TableB' is declared twice (names must be unique)",
    ),
    (
        "duplicate table_name",
        target(KEYED + 'where = "a = :a"\nvalues = { ":a" = 1 }\n')
        + '[[target]]\nname = "TableC"\n'
        + KEYED
        + '[target.table]\ntable_name = "TableB"\n',
        "target 'TableC': table_name 'TableB' is also the table of target 'TableB'",
    ),
    (
        "catch-all not last",
        target(KEYED) + '[[target]]\nname = "TableC"\n' + KEYED,
        "target 'TableB': has no 'where', so with route = \"first\" it takes every item",
    ),
    (
        "unknown target key",
        target(KEYED + "kep = ['a']"),
        "target 'TableB': unknown key 'kep' (did you mean 'keep'?",
    ),
    (
        "key as string",
        target("key = 'pk'"),
        'target \'TableB\': key: write key = { hash = "pk" } (add range = "..." for a sort key)',
    ),
    ("hash required", target("key = { range = 'sk' }"), "target 'TableB': key: 'hash' is required"),
    (
        "unknown key key",
        target("key = { hash = 'pk', sort = 'sk' }"),
        "target 'TableB': key: unknown key 'sort'",
    ),
    (
        "hash equals range",
        target("key = { hash = 'pk', range = 'pk' }"),
        "target 'TableB': key: hash and range are both 'pk'",
    ),
    (
        "key type missing",
        target("key = { hash = 'pk', range = 'sk' }\nkey_types = { pk = 'S' }"),
        "target 'TableB': key_types: 'sk' is missing "
        "(every table and GSI key attribute needs S, N or B)",
    ),
    (
        "gsi key type missing",
        target(
            KEYED
            + "[target.table]\nglobal_secondary_indexes = [{ name = 'byUser', hash = 'gsi1pk' }]"
        ),
        "target 'TableB': key_types: 'gsi1pk' is missing "
        "(every table and GSI key attribute needs S, N or B)",
    ),
    (
        "key type not S N B",
        target("key = { hash = 'pk' }\nkey_types = { pk = 'BOOL' }"),
        "target 'TableB': key_types: 'pk' has type 'BOOL'; keys can only be S, N or B",
    ),
    (
        "key type for non key",
        target("key = { hash = 'pk' }\nkey_types = { pk = 'S', pK = 'S' }"),
        "target 'TableB': key_types: 'pK' is not a key of the table or of a global secondary index",
    ),
    (
        "set key declared N",
        target("key = { hash = 'pk' }\nkey_types = { pk = 'N' }\nset = { pk = 'X#{id}' }"),
        "target 'TableB': key_types: 'pk' is declared N, but set makes it a string (S)",
    ),
    (
        "lsi in table",
        target(KEYED + "[target.table]\nlocal_secondary_indexes = []"),
        "target 'TableB': table: local_secondary_indexes: ImportTable cannot create local "
        "secondary indexes; declare it under global_secondary_indexes instead",
    ),
    (
        "lsi in target",
        target(KEYED + "local_secondary_indexes = []"),
        "target 'TableB': local_secondary_indexes: ImportTable cannot create local "
        "secondary indexes; declare it under global_secondary_indexes instead",
    ),
    (
        "provisioned without capacity",
        target(KEYED + "[target.table]\nbilling_mode = 'PROVISIONED'\nread_capacity = 5"),
        "target 'TableB': table: billing_mode PROVISIONED needs 'write_capacity'",
    ),
    (
        "provisioned gsi without capacity",
        target(
            "key = { hash = 'pk' }\nkey_types = { pk = 'S', g = 'S' }\n[target.table]\n"
            "billing_mode = 'PROVISIONED'\nread_capacity = 5\nwrite_capacity = 5\n"
            "global_secondary_indexes = [{ name = 'byG', hash = 'g', read_capacity = 1 }]"
        ),
        "target 'TableB': table: global_secondary_indexes: 'byG': billing_mode PROVISIONED "
        "needs 'write_capacity'",
    ),
    (
        "on-demand with capacity",
        target(KEYED + "[target.table]\nread_capacity = 5"),
        "target 'TableB': table: read_capacity: only with billing_mode = \"PROVISIONED\"",
    ),
    (
        "on-demand gsi with capacity",
        target(
            "key = { hash = 'pk' }\nkey_types = { pk = 'S', g = 'S' }\n[target.table]\n"
            "global_secondary_indexes = [{ name = 'byG', hash = 'g', write_capacity = 1 }]"
        ),
        "target 'TableB': table: global_secondary_indexes: 'byG': write_capacity: only with "
        'billing_mode = "PROVISIONED"',
    ),
    (
        "capacity zero",
        target(
            KEYED + "[target.table]\nbilling_mode = 'PROVISIONED'\nread_capacity = 0\n"
            "write_capacity = 1"
        ),
        "target 'TableB': table: read_capacity: 0 is out of range (1..)",
    ),
    (
        "billing enum",
        target(KEYED + "[target.table]\nbilling_mode = 'ON_DEMAND'"),
        "target 'TableB': table: billing_mode: 'ON_DEMAND' is not one of PAY_PER_REQUEST, "
        "PROVISIONED",
    ),
    (
        "unknown table key",
        target(KEYED + "[target.table]\nstreams = 'KEYS_ONLY'"),
        "target 'TableB': table: unknown key 'streams' (did you mean 'stream'?",
    ),
    (
        "stream enum",
        target(KEYED + "[target.table]\nstream = 'NEW'"),
        "target 'TableB': table: stream: 'NEW' is not one of NEW_IMAGE, OLD_IMAGE, "
        "NEW_AND_OLD_IMAGES, KEYS_ONLY",
    ),
    (
        "pitr type",
        target(KEYED + "[target.table]\npitr = 'yes'"),
        "target 'TableB': table: pitr: must be true or false, not a string",
    ),
    (
        "tag key aws",
        target(KEYED + "[target.table]\ntags = { 'aws:x' = 'y' }"),
        "target 'TableB': table: tags: 'aws:x' is not a valid tag key",
    ),
    (
        "bad table_name",
        target(KEYED + "[target.table]\ntable_name = 'a/b'"),
        "target 'TableB': table: table_name: 'a/b' is not a valid table name",
    ),
    (
        "gsi name",
        target(
            "key = { hash = 'pk' }\nkey_types = { pk = 'S', g = 'S' }\n[target.table]\n"
            "global_secondary_indexes = [{ name = 'x', hash = 'g' }]"
        ),
        "target 'TableB': table: global_secondary_indexes: 'x': name: 'x' is not a valid "
        "index name",
    ),
    (
        "gsi duplicate",
        target(
            "key = { hash = 'pk' }\nkey_types = { pk = 'S', g = 'S' }\n[target.table]\n"
            "global_secondary_indexes = [{ name = 'byG', hash = 'g' }, "
            "{ name = 'byG', hash = 'g' }]"
        ),
        "target 'TableB': table: global_secondary_indexes: index 'byG' is declared twice",
    ),
    (
        "gsi hash required",
        target(KEYED + "[target.table]\nglobal_secondary_indexes = [{ name = 'byG' }]"),
        "target 'TableB': table: global_secondary_indexes: 'byG': 'hash' is required",
    ),
    (
        "gsi unknown key",
        target(
            "key = { hash = 'pk' }\nkey_types = { pk = 'S', g = 'S' }\n[target.table]\n"
            "global_secondary_indexes = [{ name = 'byG', hash = 'g', projection_type = 'ALL' }]"
        ),
        "target 'TableB': table: global_secondary_indexes: 'byG': unknown key 'projection_type'",
    ),
    (
        "projection enum",
        target(
            "key = { hash = 'pk' }\nkey_types = { pk = 'S', g = 'S' }\n[target.table]\n"
            "global_secondary_indexes = [{ name = 'byG', hash = 'g', projection = 'SOME' }]"
        ),
        "target 'TableB': table: global_secondary_indexes: 'byG': projection: 'SOME' is not "
        "one of ALL, KEYS_ONLY, INCLUDE",
    ),
    (
        "include without attributes",
        target(
            "key = { hash = 'pk' }\nkey_types = { pk = 'S', g = 'S' }\n[target.table]\n"
            "global_secondary_indexes = [{ name = 'byG', hash = 'g', projection = 'INCLUDE' }]"
        ),
        "target 'TableB': table: global_secondary_indexes: 'byG': projection: INCLUDE needs "
        "the attributes",
    ),
    (
        "attributes without include",
        target(
            "key = { hash = 'pk' }\nkey_types = { pk = 'S', g = 'S' }\n[target.table]\n"
            "global_secondary_indexes = [{ name = 'byG', hash = 'g', "
            "projection = { type = 'ALL', attributes = ['a'] } }]"
        ),
        "target 'TableB': table: global_secondary_indexes: 'byG': projection: attributes: "
        "only with type INCLUDE",
    ),
    (
        "where name undefined",
        target(KEYED + "where = 'attribute_exists(#ts)'"),
        "target 'TableB': where: column 18: expression attribute name #ts is not defined",
    ),
    (
        "where value undefined",
        target(KEYED + "where = 'kind = :post'\nvalues = { ':Post' = 'post' }"),
        "target 'TableB': where: column 8: expression attribute value :post is not defined",
    ),
    (
        "bad name placeholder",
        target(KEYED + "names = { ts = 'created_at' }"),
        "target 'TableB': names: 'ts' is not a name placeholder",
    ),
    (
        "bad value placeholder",
        target(KEYED + "values = { post = 'post' }"),
        "target 'TableB': values: 'post' is not a value placeholder",
    ),
    (
        "empty where",
        target(KEYED + "where = ''"),
        "target 'TableB': where: must be a non-empty string",
    ),
    (
        "set name undefined",
        target(KEYED + "set = { g = 'X#{#u}' }"),
        'target TableB: set g: bad attribute path "#u": column 1: expression attribute name #u '
        "is not defined",
    ),
    (
        "set brace not closed",
        target(KEYED + "set = { g = 'USER#{user_id' }"),
        "target 'TableB': set: g: '{' at column 6 is not closed",
    ),
    (
        "set stray close",
        target(KEYED + "set = { g = 'a}b' }"),
        "target 'TableB': set: g: '}' at column 2 has no '{'",
    ),
    (
        "set empty ref",
        target(KEYED + "set = { g = 'a{ }' }"),
        "target 'TableB': set: g: empty '{}' at column 2",
    ),
    (
        "set nested brace",
        target(KEYED + "set = { g = '{a{b}}' }"),
        "target 'TableB': set: g: '{' at column 1 is not closed",
    ),
    (
        "keep and drop",
        target(KEYED + "keep = ['pk', 'a']\ndrop = ['a']"),
        "target 'TableB': 'a' is in both keep and drop",
    ),
    (
        "keep duplicate",
        target(KEYED + "keep = ['pk', 'pk']"),
        "target 'TableB': keep: 'pk' is listed twice",
    ),
    (
        "rename collision",
        target(KEYED + "rename = { a = 'c', b = 'c' }"),
        "target 'TableB': rename: 'a' and 'b' are both renamed to 'c'",
    ),
    (
        "rename onto set",
        target(KEYED + "rename = { a = 'c' }\nset = { c = 'x' }"),
        "target 'TableB': rename: 'a' is renamed to 'c', which set also writes",
    ),
    (
        "rename onto kept",
        target(KEYED + "keep = ['pk', 'a', 'c']\nrename = { a = 'c' }"),
        "target 'TableB': rename: 'a' is renamed to 'c', which keep also keeps under that name",
    ),
    (
        "key dropped",
        target(KEYED + "drop = ['pk']"),
        "target 'TableB': drop: drops the key attribute 'pk'",
    ),
    (
        "key not kept",
        target(KEYED + "keep = ['a']"),
        "target 'TableB': keep: does not keep the key attribute 'pk'",
    ),
    (
        "key renamed away",
        target(KEYED + "rename = { pk = 'PK' }"),
        "target 'TableB': rename: renames the key attribute 'pk' to 'PK'",
    ),
    (
        "set empty name",
        target(KEYED + "set = { '' = 'x' }"),
        "target 'TableB': set: '' is empty: DynamoDB attribute names are 1 to 65535 bytes",
    ),
    (
        "set name over 64 KB",
        target(KEYED + "set = { '" + "é" * 32_768 + "' = 'x' }"),
        "target 'TableB': set: '" + "é" * 20 + "...' is 65536 bytes: DynamoDB attribute names "
        "are 1 to 65535 bytes",
    ),
    (
        "rename to 70000 bytes",
        target(KEYED + "rename = { a = '" + "n" * 70_000 + "' }"),
        "target 'TableB': rename: a: '" + "n" * 20 + "...' is 70000 bytes: DynamoDB attribute "
        "names are 1 to 65535 bytes",
    ),
    (
        "rename from empty",
        target(KEYED + "rename = { '' = 'b' }"),
        "target 'TableB': rename: '' is empty: DynamoDB attribute names are 1 to 65535 bytes",
    ),
    (
        "keep over 64 KB",
        target(KEYED + "keep = ['pk', '" + "k" * 65_536 + "']"),
        "target 'TableB': keep: '" + "k" * 20 + "...' is 65536 bytes",
    ),
    (
        "drop over 64 KB",
        target(KEYED + "drop = ['" + "k" * 65_536 + "']"),
        "target 'TableB': drop: '" + "k" * 20 + "...' is 65536 bytes",
    ),
    (
        "hash key over 255 bytes",
        target("key = { hash = '" + "h" * 256 + "' }\nkey_types = { " + "h" * 256 + " = 'S' }"),
        "target 'TableB': key: hash: '" + "h" * 20 + "...' is 256 bytes: DynamoDB key attribute "
        "names are 1 to 255 bytes",
    ),
    (
        "range key over 255 bytes",
        target(
            "key = { hash = 'pk', range = '" + "r" * 256 + "' }\n"
            "key_types = { pk = 'S', " + "r" * 256 + " = 'S' }"
        ),
        "target 'TableB': key: range: '" + "r" * 20 + "...' is 256 bytes: DynamoDB key attribute "
        "names are 1 to 255 bytes",
    ),
    (
        "gsi key over 255 bytes",
        target(
            "key = { hash = 'pk' }\nkey_types = { pk = 'S', " + "g" * 256 + " = 'S' }\n"
            "[target.table]\nglobal_secondary_indexes = [{ name = 'byG', hash = '"
            + "g" * 256
            + "' }]"
        ),
        "target 'TableB': table: global_secondary_indexes: 'byG': hash: '" + "g" * 20 + "...' is "
        "256 bytes: DynamoDB key attribute names are 1 to 255 bytes",
    ),
    (
        "ttl over 255 bytes",
        target(KEYED + "[target.table]\nttl = '" + "t" * 256 + "'"),
        "target 'TableB': table: ttl: '" + "t" * 20 + "...' is 256 bytes: DynamoDB TTL attribute "
        "names are 1 to 255 bytes",
    ),
    (
        "float value",
        target(KEYED + "where = 'p = :p'\nvalues = { ':p' = 1.5 }"),
        "target 'TableB': values: :p: 1.5 is a TOML float, which cannot keep a DynamoDB number "
        'exact; write it as a string: { N = "1.5" }',
    ),
    (
        "float in list",
        target(KEYED + "where = 'p = :p'\nvalues = { ':p' = [1, 2.0] }"),
        "target 'TableB': values: :p: 2.0 is a TOML float",
    ),
    (
        "date value",
        target(KEYED + "where = 'p = :p'\nvalues = { ':p' = 2024-01-01 }"),
        "target 'TableB': values: :p: TOML dates and times have no DynamoDB type",
    ),
    (
        "N not string",
        target(KEYED + "where = 'p = :p'\nvalues = { ':p' = { N = 1.5 } }"),
        "target 'TableB': values: :p: N must be the number as a string",
    ),
    (
        "empty set",
        target(KEYED + "where = 'p = :p'\nvalues = { ':p' = { SS = [] } }"),
        "target 'TableB': values: :p: SS must be a non-empty array (DynamoDB has no empty sets)",
    ),
    (
        "duplicate set member",
        target(KEYED + "where = 'p = :p'\nvalues = { ':p' = { SS = ['a', 'a'] } }"),
        "target 'TableB': values: :p: SS lists 'a' twice",
    ),
    (
        "NULL false",
        target(KEYED + "where = 'p = :p'\nvalues = { ':p' = { NULL = false } }"),
        "target 'TableB': values: :p: NULL must be written { NULL = true }",
    ),
    (
        "BOOL not bool",
        target(KEYED + "where = 'p = :p'\nvalues = { ':p' = { BOOL = 'yes' } }"),
        "target 'TableB': values: :p: BOOL must be true or false, not a string",
    ),
]


def test_attribute_names_at_dynamodbs_limits_are_accepted() -> None:
    """65,535 bytes for any attribute name, 255 for a key's (the refusals above are one byte
    past them)."""
    longest, key = "é" * 32_767 + "n", "k" * 255
    cfg = parse(
        target(
            f"key = {{ hash = '{key}' }}\nkey_types = {{ {key} = 'S' }}\n"
            f"set = {{ '{longest}' = 'x' }}\nrename = {{ a = '{'r' * 65_535}' }}"
        )
    )
    (t,) = cfg.targets
    assert t.hash_key == key
    assert len(next(iter(t.set)).encode()) == 65_535
    assert list(t.rename.values()) == ["r" * 65_535]


@pytest.mark.parametrize(
    ("text", "message"), [r[1:] for r in REFUSALS], ids=[r[0] for r in REFUSALS]
)
def test_refusals(text: str, message: str) -> None:
    with pytest.raises(ConfigError) as e:
        parse(text)
    assert str(e.value).startswith(f"cfg.toml: {message}"), str(e.value)
    assert "\n" not in str(e.value)


# --- values ------------------------------------------------------------------------------------


def values_of(toml_value: str) -> str:
    cfg = parse(target(KEYED + f"where = 'p = :v'\nvalues = {{ ':v' = {toml_value} }}"))
    return cfg.targets[0].values[":v"]


@pytest.mark.parametrize(
    ("toml_value", "expected"),
    [
        ('"post"', {"S": "post"}),
        ('"é✓"', {"S": "é✓"}),
        ("42", {"N": "42"}),
        ("-7", {"N": "-7"}),
        ("true", {"BOOL": True}),
        ('{ N = "1.50" }', {"N": "1.50"}),
        (
            '{ N = "12345678901234567890123456789012345678" }',
            {"N": "12345678901234567890123456789012345678"},
        ),
        ("{ N = 3 }", {"N": "3"}),
        ('{ S = "x" }', {"S": "x"}),
        ('{ B = "AAE=" }', {"B": "AAE="}),
        ("{ BOOL = false }", {"BOOL": False}),
        ("{ NULL = true }", {"NULL": True}),
        ('{ SS = ["a", "b"] }', {"SS": ["a", "b"]}),
        ('{ NS = ["1.5", 2] }', {"NS": ["1.5", "2"]}),
        ('{ BS = ["AAE="] }', {"BS": ["AAE="]}),
        ('["a", "b"]', {"L": [{"S": "a"}, {"S": "b"}]}),
        ('["a", 1, true]', {"L": [{"S": "a"}, {"N": "1"}, {"BOOL": True}]}),
        ('[{ N = "0.10" }]', {"L": [{"N": "0.10"}]}),
        ("[]", {"L": []}),
        ('{ a = "x", b = 2 }', {"M": {"a": {"S": "x"}, "b": {"N": "2"}}}),
        ('{ kind = "x" }', {"M": {"kind": {"S": "x"}}}),
        ("{}", {"M": {}}),
        ('{ M = { name = { S = "Joe" } } }', {"M": {"name": {"S": "Joe"}}}),
        ('{ L = [{ S = "a" }, { N = "3.14159" }] }', {"L": [{"S": "a"}, {"N": "3.14159"}]}),
        ("{ a = { b = [1] } }", {"M": {"a": {"M": {"b": {"L": [{"N": "1"}]}}}}}),
    ],
)
def test_values_conversion(toml_value: str, expected: dict[str, Any]) -> None:
    text = values_of(toml_value)
    assert json.loads(text) == expected
    # Compact, and non-ASCII kept as is.
    assert text == json.dumps(expected, separators=(",", ":"), ensure_ascii=False)


def test_number_text_is_kept_exactly() -> None:
    assert values_of('{ N = "1.50" }') == '{"N":"1.50"}'
    assert values_of('{ N = "1E+2" }') == '{"N":"1E+2"}'


# --- core_spec, auto_shards ------------------------------------------------------------------


SPEC_CONFIG = """\
source = "s"
dest = "d"

[output]
compression = "gzip"
route = "all"
unmatched = "drop"

[[target]]
name = "Posts"
where = "kind = :k"
values = { ":k" = "post" }
key = { hash = "pk", range = "sk" }
key_types = { pk = "S", sk = "N", gsi1sk = "N" }
keep = ["pk", "sk", "user_id"]
set = { gsi1pk = "USER#{user_id}" }

[target.table]
global_secondary_indexes = [
  { name = "byUser", hash = "gsi1pk", range = "gsi1sk" },
  { name = "bySk", hash = "sk" },
]

[[target]]
name = "All.Items"
key = { hash = "id" }
key_types = { id = "B" }
drop = ["junk"]
rename = { old = "new" }
"""


@pytest.mark.parametrize(
    ("field", "patch", "words"),
    [
        ("set", {"": "x"}, 'attribute name "" is 0 bytes'),
        ("rename", {"a": "n" * 65_536}, "is 65536 bytes; DynamoDB allows 1 to 65535"),
        ("hash_key", "k" * 256, "key attribute name"),
    ],
)
def test_the_engine_refuses_a_spec_with_names_dynamodb_refuses(
    field: str, patch: Any, words: str
) -> None:
    """The config refuses these first; the engine checks again for any other maker of specs
    (names written by set and rename are the only ones a transform makes)."""
    spec = build_core_spec(parse(target(KEYED)), {"TableB": 1})
    t = spec["targets"][0]
    t[field] = patch
    if field == "hash_key":
        t["key_types"] = {patch: "S"}
    with pytest.raises(ConfigError, match=words):
        Splitter(spec)


def test_core_spec_shape() -> None:
    cfg = parse(SPEC_CONFIG)
    spec = build_core_spec(cfg, {"Posts": 4, "All.Items": 1})
    assert spec == {
        "route": "all",
        "unmatched": "drop",
        "compression": "gzip",
        "level": 6,
        "targets": [
            {
                "name": "Posts",
                "where": "kind = :k",
                "names": {},
                "values": {":k": '{"S":"post"}'},
                "hash_key": "pk",
                "range_key": "sk",
                "key_types": {"pk": "S", "sk": "N"},
                "index_keys": {"gsi1pk": "S", "gsi1sk": "N"},
                "keep": ["pk", "sk", "user_id"],
                "drop": [],
                "rename": {},
                "set": {"gsi1pk": "USER#{user_id}"},
                "shards": 4,
            },
            {
                "name": "All.Items",
                "where": None,
                "names": {},
                "values": {},
                "hash_key": "id",
                "range_key": None,
                "key_types": {"id": "B"},
                "index_keys": {},
                "keep": None,
                "drop": ["junk"],
                "rename": {"old": "new"},
                "set": {},
                "shards": 1,
            },
        ],
    }
    json.dumps(spec)  # plain JSON types only


def test_core_spec_shards() -> None:
    cfg = parse(SPEC_CONFIG.replace('unmatched = "drop"', 'unmatched = "drop"\nshards = 12'))
    assert [t["shards"] for t in build_core_spec(cfg, {"Posts": 3})["targets"]] == [3, 12]
    auto = parse(SPEC_CONFIG)
    with pytest.raises(ValueError, match="shard count not resolved"):
        build_core_spec(auto, {"Posts": 3})
    with pytest.raises(ValueError, match=r"not in 1\.\.5000"):
        build_core_spec(auto, {"Posts": 3, "All.Items": 0})
    assert build_core_spec(parse(MINIMAL), {"Things": 1})["level"] == 3
    none = parse(MINIMAL.replace("[[target]]", '[output]\ncompression = "none"\n[[target]]'))
    assert build_core_spec(none, {"Things": 1})["level"] == 0


@pytest.mark.parametrize(
    ("items", "shards"),
    [(0, 1), (1, 1), (1_000_000, 1), (1_000_001, 2), (50_000_000, 50), (10**12, MAX_SHARDS)],
)
def test_auto_shards(items: int, shards: int) -> None:
    assert auto_shards(items) == shards
