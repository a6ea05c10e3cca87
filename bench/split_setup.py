"""What the split benchmarks share: the split they all do, and generated exports to do it on.

The split (the same in ddbshard's config, `baseline_boto3.py` and the jq pipeline of
`compare_split.py`): every item of a synthetic export goes to one of three tables or is dropped.

  Posts    : kind = "post" with created_at; drop legacy, rename created_at -> createdAt,
             set gsi1pk = "USER#" + user_id
  Profiles : kind = "profile"; drop legacy and sk
  Comments : kind = "comment"; unchanged
  (posts without created_at match nothing and are dropped)

Each table gets SHARDS shards, items dealt round-robin, compressed with zstd level 3.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from ddbshard import synth

SHARDS = 4
TARGETS = ("Posts", "Profiles", "Comments")

CONFIG = """\
source = {source}
dest = {dest}

[output]
compression = "{compression}"
shards = {shards}
route = "first"
unmatched = "drop"

[[target]]
name = "Posts"
where = "kind = :post AND attribute_exists(#ts)"
values = {{ ":post" = "post" }}
names = {{ "#ts" = "created_at" }}
key = {{ hash = "pk", range = "sk" }}
key_types = {{ pk = "S", sk = "S", gsi1pk = "S", createdAt = "S" }}
drop = ["legacy"]
rename = {{ created_at = "createdAt" }}
set = {{ gsi1pk = "USER#{{user_id}}" }}

[target.table]
global_secondary_indexes = [
  {{ name = "byUser", hash = "gsi1pk", range = "createdAt", projection = "ALL" }},
]

[[target]]
name = "Profiles"
where = "kind = :profile"
values = {{ ":profile" = "profile" }}
key = {{ hash = "user_id" }}
key_types = {{ user_id = "S" }}
drop = ["legacy", "sk"]

[[target]]
name = "Comments"
where = "kind = :comment"
values = {{ ":comment" = "comment" }}
key = {{ hash = "pk", range = "sk" }}
key_types = {{ pk = "S", sk = "S" }}
"""


def write_config(
    path: Path, source: Path, dest: Path, *, compression: str = "zstd", shards: int = SHARDS
) -> Path:
    """The benchmark split as a ddbshard TOML config at `path`."""
    path.write_text(
        CONFIG.format(
            source=json.dumps(str(source)),  # a JSON string is a TOML basic string
            dest=json.dumps(str(dest)),
            compression=compression,
            shards=shards,
        ),
        encoding="utf-8",
    )
    return path


def ensure_export(work: Path, items: int, files: int, seed: int = 0, jobs: int = 1) -> Path:
    """The export root of a synthetic export under `work`, made once and reused after.

    A finished export is recognised by its manifest summary (written last) with the item count;
    a half-written one (an interrupted run) is removed and made again."""
    folder = work / f"export-{items}-{files}-{seed}"
    root = folder / "AWSDynamoDB" / synth.default_export_id(seed)
    summary = root / "manifest-summary.json"
    if summary.is_file() and json.loads(summary.read_text())["itemCount"] == items:
        return root
    if folder.exists():
        shutil.rmtree(folder)
    return synth.write_export(folder, items, files=files, seed=seed, jobs=jobs)


def data_files(export_root: Path) -> list[Path]:
    """The export's data files in manifest order."""
    text = (export_root / "manifest-files.json").read_text(encoding="utf-8")
    base = export_root.parent.parent
    return [base / json.loads(line)["dataFileS3Key"] for line in text.splitlines() if line]
