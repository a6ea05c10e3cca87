"""The keys file: what `keys` writes (and `diff` too), what `sync` reads; and distinct-key merging.

One JSON object per line (UTF-8; blank lines ignored; gzip or zstd allowed when reading):

    {"Keys": {"pk": {"S": "USER#1"}, "sk": {"S": "POST#9"}}, "t": 1719082124026000}
    {"Keys": {...}, "t": 1719082124026000, "OldImage": {...}}
    {"Keys": {...}, "t": 1719082124026000, "OldImage": null}
    {"Target": "TableB", "Keys": {"uid": {"S": "U#1#9"}}}

- `Keys` (required): the key attributes of one item of the *source* table, DynamoDB JSON.
- `t`: when the item last changed, in microseconds since the Unix epoch (an integer); absent or
  null when not known. `sync` does not need it: it reads the item's current state.
- `OldImage`: the item as it was *before the first change in the window*, which is the state
  the target tables hold when the window starts where the previous catch-up (or the export)
  ended. `null`: the item did not exist then. Absent: not known (KEYS_ONLY or NEW_IMAGE streams,
  a diff). `sync` uses it to find copies whose target key came from attributes that changed.
- `Target`: the line names an item of that *target* table by its target key: a copy no source
  item produces any more (what `diff` calls unexpected). `sync` deletes it, before it handles
  the source keys, so a source item that does produce it again still ends up written.

Other fields are ignored (the failed-keys file adds `reason`), so every file sync writes can be
fed to sync again.
"""

from __future__ import annotations

import json
import posixpath
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

from fsspec.implementations.local import LocalFileSystem

from ddbshard.catchup.changefiles import Malformed, open_lines
from ddbshard.catchup.changes import (
    UNKNOWN,
    Change,
    Image,
    RecordError,
    check_image,
    check_keys,
    parse_json,
)
from ddbshard.catchup.wire import canonical
from ddbshard.exceptions import InputError
from ddbshard.io.storage import describe_os_error, url_to_fs

__all__ = ["KeyCollector", "KeyEntry", "dump_line", "entry_json", "read_keys", "write_lines"]


@dataclass(frozen=True, slots=True)
class KeyEntry:
    keys: dict[str, Any]
    key_id: str
    t: int | None = None
    old: Image = UNKNOWN
    target: str | None = None  # set: `keys` is a key of this target table, to delete
    new: Image = UNKNOWN  # only `sync --from incremental`: the item after the last change
    where: str = ""  # file and line, for messages


def entry_json(entry: KeyEntry, **extra: Any) -> dict[str, Any]:
    """The keys-file object for an entry (plus `extra` fields such as `reason`)."""
    out: dict[str, Any] = {}
    if entry.target is not None:
        out["Target"] = entry.target
    out["Keys"] = entry.keys
    if entry.t is not None:
        out["t"] = entry.t
    if entry.old is not UNKNOWN:
        out["OldImage"] = entry.old
    out.update(extra)
    return out


def dump_line(obj: dict[str, Any]) -> bytes:
    # ASCII with \u escapes: a lone surrogate in a value survives the round trip exactly.
    return json.dumps(obj, separators=(",", ":")).encode("ascii") + b"\n"


@dataclass(slots=True)
class _Seen:
    keys: dict[str, Any]  # as the newest record writes them
    t: int | None
    new: Image  # from the newest record
    old: Image  # from the oldest record
    newest: tuple[int, int, int]
    oldest: tuple[int, int, int]


@dataclass
class KeyCollector:
    """Distinct keys of many change records, whatever order the records come in.

    The newest record (by time, then stream sequence number, then position in the input) gives
    `t` and, for incremental exports, the item's final state; the oldest gives `OldImage`.
    Kinesis records can come out of order and twice (AWS-FORMATS.md §5): ordering by time
    rather than by arrival is what makes that harmless. Memory: one entry (key and one old
    image) per distinct key.
    """

    _seen: dict[str, _Seen] = field(default_factory=dict)
    _count: int = 0

    def add(self, change: Change) -> None:
        self._count += 1
        order = (change.t if change.t is not None else -1, change.seq, self._count)
        seen = self._seen.get(change.key_id)
        if seen is None:
            self._seen[change.key_id] = _Seen(
                change.keys, change.t, change.new, change.old, order, order
            )
            return
        if order < seen.oldest:
            seen.oldest, seen.old = order, change.old
        if order > seen.newest:
            seen.newest, seen.keys, seen.t, seen.new = order, change.keys, change.t, change.new

    def __len__(self) -> int:
        return len(self._seen)

    def entries(self) -> list[KeyEntry]:
        """Distinct keys by time of last change (unknown first), then first appearance."""
        ordered = sorted(self._seen.items(), key=lambda kv: (kv[1].newest[0], kv[1].oldest[2]))
        return [KeyEntry(s.keys, key_id, s.t, s.old, None, s.new) for key_id, s in ordered]


def write_lines(url: str, objects: Iterable[dict[str, Any]]) -> int:
    """Writes JSON lines to a local path (through a temporary file, so a reader never sees half
    a file; its folder made if need be) or to s3://; returns the number of lines."""
    fs, path = url_to_fs(url)
    local = isinstance(fs, LocalFileSystem)
    target = path + ".partial" if local else path
    count = 0
    try:
        if local:
            # Written at the end of a run (the failed keys): a folder missing then must not
            # cost the list of what failed.
            fs.makedirs(posixpath.dirname(path) or ".", exist_ok=True)
        with fs.open(target, "wb") as out:
            for obj in objects:
                out.write(dump_line(obj))
                count += 1
        if local:
            fs.mv(target, path)
    except OSError as e:
        raise InputError(f"{url}: cannot write: {describe_os_error(e)}") from e
    return count


def read_keys(url: str) -> Iterator[KeyEntry | Malformed]:
    """The entries of a keys file; a line that is not one is a Malformed with its line number
    (a line naming a member twice too: which of the two values was meant cannot be told)."""
    for number, line in open_lines(url):
        if not line.strip():
            continue
        where = f"{url}: line {number}"
        try:
            yield _entry(parse_json(line), where)
        except json.JSONDecodeError as e:
            yield Malformed(where, f"not JSON: {e}")
        except ValueError as e:  # RecordError, DuplicateKey
            yield Malformed(where, str(e))


def _entry(obj: Any, where: str) -> KeyEntry:
    if not isinstance(obj, dict):
        raise RecordError("a keys line must be a JSON object")
    keys = check_keys(obj.get("Keys"))
    t = obj.get("t")
    if t is not None and (isinstance(t, bool) or not isinstance(t, int) or t < 0):
        raise RecordError(f"'t' must be microseconds since the epoch, not {t!r}")
    target = obj.get("Target")
    if target is not None and (not isinstance(target, str) or not target):
        raise RecordError("'Target' must be a table name")
    old = check_image(obj, "OldImage", None) if "OldImage" in obj else UNKNOWN
    return KeyEntry(keys, canonical(keys), t, old, target, UNKNOWN, where)
