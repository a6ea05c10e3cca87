"""One builder for the configs the tests write: the [[target]] blocks that route items by their
`kind` attribute, and the file around them."""

from __future__ import annotations

import json
from collections.abc import Sequence


def target_block(name: str, kind: str | None, key: Sequence[str], *lines: str) -> str:
    """A [[target]] taking the items whose `kind` is `kind` (every item if None), keyed by
    `key` (hash, then range; S attributes), then `lines` as written (transforms, a table)."""
    out = ["[[target]]", f"name = {json.dumps(name)}"]
    if kind is not None:
        out += ['where = "kind = :k"', f'values = {{ ":k" = {json.dumps(kind)} }}']
    names = ["hash", "range"]
    out.append(
        "key = { " + ", ".join(f'{n} = "{a}"' for n, a in zip(names, key, strict=False)) + " }"
    )
    out.append("key_types = { " + ", ".join(f'{a} = "S"' for a in key) + " }")
    return "\n".join([*out, *lines]) + "\n"


def config_text(
    source: object,
    dest: object,
    *targets: str,
    compression: str = "zstd",
    shards: int = 1,
    unmatched: str = "drop",
) -> str:
    """A whole config: source, dest (paths or URIs), [output], then the targets."""
    return (
        f"source = {json.dumps(str(source))}\ndest = {json.dumps(str(dest))}\n"
        f'[output]\ncompression = "{compression}"\nshards = {shards}\n'
        f'unmatched = "{unmatched}"\n' + "".join(targets)
    )
