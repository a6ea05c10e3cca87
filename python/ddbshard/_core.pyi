"""Type stub of the native module ddbshard._core (checked against the binary by stubtest)."""

from collections.abc import Mapping, Sequence
from typing import Any, Self, final

from typing_extensions import Buffer

from ddbshard.config.spec import CoreSpec
from ddbshard.exceptions import StreamRecordError

__all__ = [
    "REASONS",
    "SNIFF_LEN",
    "ColumnBuilder",
    "Condition",
    "LineReader",
    "Md5",
    "Splitter",
    "StreamRecord",
    "__version__",
    "canonical_item",
    "diff_pairs",
    "dumps",
    "flatten_items",
    "loads",
    "md5_update_many",
    "sniff_compression",
    "stream_records",
]

__version__: str
REASONS: list[str]
SNIFF_LEN: int

def loads(data: bytes | bytearray | str) -> dict[str, Any]:
    """One DynamoDB-JSON item (`{"attr": {"S": ...}}` or an export line `{"Item": ...}`) as
    Python values (Decimal numbers, bytes, sets); ParseError, with reason, line and offset,
    for anything DynamoDB would refuse."""

def dumps(item: Mapping[str, Any], *, line: bool = False) -> bytes:
    """The DynamoDB JSON of a Python item (`line`: as an export line with a newline);
    ParseError for a value DynamoDB cannot hold (a number out of range, an empty set...)."""

def stream_records(
    event: str | bytes | bytearray | Mapping[str, Any] | Sequence[Any],
    *,
    problems: list[StreamRecordError] | None = None,
) -> list[StreamRecord]:
    """The change records of a DynamoDB Streams event, each image exactly as `loads` reads it.

    `event`: JSON text (str or bytes) or the dict or list it parses to, holding a Lambda event
    ``{"Records": [...]}``, a GetRecords response (B values may be bytes and
    ApproximateCreationDateTime a datetime, as boto3 gives them), a list of records or one
    record. Kinesis-wrapped records (``{"kinesis": {"data": ...}}``) are not read.

    Returns one `StreamRecord` per record, in the event's order.

    Raises `StreamRecordError` (a `ParseError`) for the first record DynamoDB could not have
    written: an image `loads` refuses (with its reason), no ``dynamodb`` object, an eventName
    other than INSERT/MODIFY/REMOVE, Keys that are not one or two non-empty S/N/B attributes, a
    time outside 1973-5138 (reason ``not_a_record``); its `index`, `path`
    (``Records[3].dynamodb.NewImage``) and `sequence` say which. With `problems` (a list), bad
    records are left out instead and their errors appended to it; an event whose JSON cannot be
    read past a point still raises. TypeError for an `event` of another type.
    """

def canonical_item(data: bytes) -> tuple[bytes, int]:
    """(the canonical form of one item's DynamoDB JSON, its 64-bit hash); ParseError."""

def flatten_items(
    offsets: bytes, data: bytes, columns: Sequence[tuple[str, str]]
) -> list[dict[str, Any]]: ...
def diff_pairs(
    expected_keys: Sequence[Buffer],
    expected_items: Sequence[Buffer],
    actual_keys: Sequence[Buffer],
    actual_items: Sequence[Buffer],
    threads: int = 0,
) -> tuple[int, bytes, bytes, bytes, bytes]:
    """The rows of a full join on the key hash that are not matches: (matched, key hashes,
    expected item hashes, actual item hashes, kinds); hashes little-endian u64 (0 where a side
    is absent), kinds u8 (0 missing, 1 unexpected, 2 changed)."""

def sniff_compression(head: bytes) -> str:
    """What a stream's first `SNIFF_LEN` bytes say it is: "gzip", "zstd", "none" (text, or too
    short to tell), or the name of a compressed format ddbshard does not read ("bzip2", "xz",
    "lz4", "zip", "7z", "lzip")."""

def md5_update_many(hashers: Sequence[Md5], chunks: Sequence[Sequence[Buffer]]) -> None:
    """Appends chunks[i], in order, to hashers[i] for every i (streams side by side in SIMD
    lanes); a hasher may appear only once."""

@final
class StreamRecord:
    """One change record of `stream_records`; frozen, compared field by field."""

    @property
    def index(self) -> int:
        """Position of the record in the event (0 for a lone record)."""
    @property
    def name(self) -> str:
        """eventName: "INSERT", "MODIFY" or "REMOVE"."""
    @property
    def keys(self) -> dict[str, Any]:
        """The item's key attributes, as `loads` gives them."""
    @property
    def new(self) -> dict[str, Any] | None:
        """NewImage, or None when the record has none (a REMOVE; KEYS_ONLY and OLD_IMAGE
        streams: see `view_type`)."""
    @property
    def old(self) -> dict[str, Any] | None:
        """OldImage, or None when the record has none (an INSERT; KEYS_ONLY and NEW_IMAGE
        streams)."""
    @property
    def time_us(self) -> int | None:
        """ApproximateCreationDateTime in microseconds since the epoch (seconds, milliseconds or
        microseconds in the record, told apart by magnitude); None if the record has none."""
    @property
    def sequence(self) -> str | None:
        """dynamodb.SequenceNumber."""
    @property
    def event_id(self) -> str | None:
        """eventID."""
    @property
    def source_arn(self) -> str | None:
        """eventSourceARN (Lambda events)."""
    @property
    def table(self) -> str | None:
        """tableName, else the table named in eventSourceARN."""
    @property
    def view_type(self) -> str | None:
        """dynamodb.StreamViewType: KEYS_ONLY, NEW_IMAGE, OLD_IMAGE or NEW_AND_OLD_IMAGES."""
    def as_dict(self) -> dict[str, Any]:
        """The fields above as a dict, in that order."""
    def __eq__(self, value: object, /) -> bool: ...

@final
class Md5:
    def __new__(cls) -> Self: ...
    def update(self, data: bytes) -> None: ...
    def digest(self) -> bytes: ...
    def hexdigest(self) -> str: ...

@final
class Condition:
    """A DynamoDB condition expression, parsed once (ConfigError, with the column, if it is
    not one DynamoDB accepts); `values` are the DynamoDB-JSON texts of the `:placeholders`."""

    def __new__(
        cls, text: str, names: dict[str, str] | None = None, values: dict[str, str] | None = None
    ) -> Self: ...
    def matches(self, item: bytes) -> bool:
        """Whether one item (its DynamoDB JSON) satisfies the condition; ParseError."""

@final
class LineReader:
    """Checks line files (`validate`): feed chunks (gzip/zstd recognised from the bytes), then
    `finish`; DecompressError for a corrupt or truncated stream. `shape` is "export"
    (`{"Item": ...}` lines), "map" (bare items) or "any"."""

    def __new__(cls, shape: str = "export") -> Self: ...
    def feed(self, data: bytes) -> None: ...
    def finish(self) -> None: ...
    @property
    def items(self) -> int: ...
    @property
    def refused(self) -> int: ...
    @property
    def bytes_in(self) -> int: ...
    @property
    def bytes_out(self) -> int: ...
    def take_refusals(self) -> list[tuple[int, str, str, bytes]]: ...

@final
class Splitter:
    """Routes, transforms and shards the lines of input files (split's hot path).

    Feed it a file's bytes in chunks of a few MiB (compressed or not: gzip and zstd are
    recognised from the bytes; the GIL is released inside each call); a partial last line is
    carried over to the next chunk. Errors: ConfigError (a spec it cannot build: a bad `where`,
    value or name), DecompressError (a corrupt or truncated stream: the file is bad),
    UnmatchedError (an item matched no target under unmatched = "error", naming file and line).
    A line DynamoDB would refuse is never raised: it becomes a reject record.
    """

    def __new__(cls, spec: CoreSpec) -> Self:
        """`spec`: built by `ddbshard.config.build_core_spec` (or `SplitConfig.core_spec`)."""
    def begin_file(self, name: str) -> None:
        """Starts a file: `name` is what reject records give as their `file`."""
    def feed(self, data: bytes) -> None: ...
    def end_file(self) -> None:
        """The file's last line (without a newline) and the end of its compressed stream."""
    def file_bytes(self) -> tuple[int, int]:
        """(compressed bytes fed, uncompressed bytes) of the current file."""
    def set_next_shard(self, target: int, next: int) -> None:
        """Where target `target`'s round-robin dealing goes on (its next item's shard)."""
    def drain(self) -> list[tuple[int, int, bytes]]:
        """Finished output blocks: (target index, shard index, bytes), each block a whole
        compressed frame (zstd) or member (gzip) of `{"Item":...}` lines."""
    def keep_source_key(self, names: Sequence[str]) -> None:
        """Keeps the source key (`names`: the source table's key attributes, hash key first) of
        every line written, as wire DynamoDB JSON taken before transforms; an item without it
        is refused (missing_key, wrong_key_type) by each target it matches. Raises ConfigError
        unless every target has one shard (the lines' order must be kept)."""
    def drain_source_keys(self) -> list[tuple[int, bytes]]:
        """(target index, JSON lines): the source key of each line written since the last call,
        in the lines' order. Drain them before `drain()`: a line's key is ready when it is."""
    def take_rejects(self) -> bytes:
        """Reject records so far, as JSON lines (file, line, reason, target, message, offset,
        raw); cleared by the call."""
    def shard_stats(self) -> list[list[tuple[int, int]]]:
        """Per target, per shard: (items, uncompressed bytes) written so far."""
    def counts(self) -> dict[str, Any]:
        """{"read", "written", "unmatched", "rejected", "reject_records": {reason: n},
        "targets": {name: {"written", "rejected": {reason: n}}}} so far."""

@final
class ColumnBuilder:
    """Parquet-copy columns in Arrow layout. `take_batch()` returns {"rows", "keys": [{"type",
    "offsets", "data"} (+ "float", "float_validity", "float_nulls" for N)], "item_offsets",
    "item_data", "hash" (u64 LE), "key_hash" (u64 LE; empty without keys), "file_index"
    (i32 LE), "files", "line" (i64 LE), "line_validity", "line_nulls", "source_key_offsets",
    "source_key_data" (each row's source key as JSON text; no rows without `source_keys`)};
    validity is None when there is no null."""

    def __new__(
        cls,
        keys: Sequence[tuple[str, str]] = ...,
        target: str | None = None,
        track_types: bool = False,
        shape: str = "export",
        source_keys: bool = False,
    ) -> Self: ...
    def feed_source_keys(self, data: bytes) -> None:
        """With `source_keys`: one JSON line per item line to come, in their order (from
        `Splitter.drain_source_keys`), fed before those lines. A line read with no key left, or
        keys left at `end_file`, raises ConfigError: keys and lines are out of step."""
    def begin_file(self, name: str, line_numbers: bool = True) -> None: ...
    def feed(self, data: bytes) -> None: ...
    def end_file(self) -> None: ...
    def file_bytes(self) -> tuple[int, int]: ...
    @property
    def rows(self) -> int: ...
    @property
    def batch_bytes(self) -> int: ...
    def take_batch(self) -> dict[str, Any]:
        """The rows built so far, in the layout of the class docstring; cleared by the call."""
    def take_rejects(self) -> bytes:
        """Reject records of lines that are not items, as JSON lines; cleared by the call."""
    def counts(self) -> dict[str, Any]: ...
    def attribute_types(self) -> list[tuple[str, list[str]]]:
        """With `track_types`: each attribute name and the DynamoDB types it was seen with."""
