"""One change record, of any of the three kinds `keys` and `sync` read, as a checked `Change`.

The kinds (AWS-FORMATS.md §2 and §5):

- DynamoDB Streams records (`--from streams`): `eventName` INSERT/MODIFY/REMOVE and a
  `dynamodb` object with `Keys`, `NewImage`/`OldImage` as the stream's view type allows,
  `SequenceNumber`, and `ApproximateCreationDateTime` in epoch *seconds* (Lambda sends an
  integer or a float such as `1693997155.0`);
- Kinesis Data Streams for DynamoDB records (`--from kinesis`): the same inner shape without
  SequenceNumber, timestamps in *milliseconds* or *microseconds*, possibly wrapped in a Lambda
  Kinesis event record (`{"kinesis": {"data": "<base64 of the record>"}}`) or a GetRecords
  record (`{"Data": "<base64>"}`);
- incremental export lines (`--from incremental`): `Metadata.WriteTimestampMicros` (a bare
  string in AWS's documentation, `{"N": ...}` in real exports: both are taken), `Keys`,
  `NewImage` (absent or null: the item was deleted), `OldImage`.

Every attribute map is checked by the native parser (numbers as text, base64, sets): a record
DynamoDB could not have written is a `RecordError`, which the caller reports with the record's
position and counts; it never stops a run.
"""

from __future__ import annotations

import base64
import binascii
import json
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from typing import Any, Final

from ddbshard.catchup.wire import canonical, check_item
from ddbshard.exceptions import ParseError

__all__ = [
    "KINDS",
    "UNKNOWN",
    "Change",
    "DuplicateKey",
    "Image",
    "RecordError",
    "check_image",
    "check_keys",
    "duplicate_message",
    "parse_json",
    "parse_record",
    "parse_time",
    "to_micros",
]

KINDS: Final = ("streams", "kinesis", "incremental")
EVENT_NAMES: Final = ("INSERT", "MODIFY", "REMOVE")
KEY_TYPES: Final = ("S", "N", "B")  # key attributes can only be S, N or B (DynamoDB rule)

# Epoch timestamps come in seconds (Streams), milliseconds or microseconds (Kinesis, depending
# on ApproximateCreationDateTimePrecision, which not every record carries). The magnitude tells
# them apart for every date from 1973 to 5138: seconds stay below 1e11, milliseconds below 1e14.
_SECONDS_BELOW: Final = 10**11
_MILLIS_BELOW: Final = 10**14
# Outside those years the magnitude no longer tells the unit, and no stream ever wrote such a
# time: a record carrying one is malformed. Checked before any conversion, so that a JSON number
# like 1E+999999999 is refused instead of expanded into a billion digits.
_EARLIEST: Final = 10**8  # 1973-03-03 in seconds
_LATEST: Final = 10**17  # 5138-11-16 in microseconds
# --since/--until: a day short of datetime's end, so that any time zone still fits in it.
_LAST_ARGUMENT: Final = 253_402_214_400 * 1_000_000  # 9999-12-31T00:00:00Z


class _Unknown:
    """The record cannot say (a KEYS_ONLY or NEW_IMAGE stream has no old image)."""

    def __repr__(self) -> str:
        return "UNKNOWN"


UNKNOWN: Final = _Unknown()
Image = dict[str, Any] | None | _Unknown  # an attribute map; None: the item did not exist


class RecordError(ValueError):
    """A record that is not a change record of the expected kind, or holds invalid values."""


class DuplicateKey(RecordError):
    """A JSON object names a member twice. Python's json keeps the last value, other readers the
    first, and DynamoDB never writes such a record: which value was meant cannot be told, so the
    record is malformed rather than read one way or the other."""


def parse_json(data: bytes | str) -> Any:
    """JSON with numbers kept exact (Decimal) and a member named twice in an object refused
    (DuplicateKey, a ValueError like every other JSON error)."""
    return json.loads(data, parse_float=Decimal, object_pairs_hook=_unique)


def _unique(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    obj = dict(pairs)
    if len(obj) != len(pairs):
        raise DuplicateKey(duplicate_message(pairs))
    return obj


def duplicate_message(pairs: list[tuple[str, Any]]) -> str:
    """What is wrong with the members of an object that names one of them twice."""
    seen: set[str] = set()
    for name, _ in pairs:
        if name in seen:
            return f"the member {name!r} appears twice in one JSON object"
        seen.add(name)
    raise ValueError("no member appears twice")


@dataclass(frozen=True, slots=True)
class Change:
    where: str  # file and position, for messages
    keys: dict[str, Any]  # the source table's key attributes, wire JSON
    key_id: str  # canonical text of `keys`: equal for the same DynamoDB key
    t: int | None  # microseconds since the epoch; None when the record has no time
    seq: int  # DynamoDB Streams sequence number (orders records of one key); -1 if none
    old: Image  # the item before this change
    new: Image  # the item after this change
    # An image DynamoDB could not have written: it is left out (UNKNOWN) and the key kept,
    # since the key is what `keys` is after and `sync` reads the item's state itself.
    problem: str | None = None
    # The table the record names (tableName, else its eventSourceARN); None when it names
    # none (incremental exports, GetRecords records). One stream may carry several tables'
    # changes (a Kinesis stream, or files a consumer gathered): `keys --table` picks one.
    table: str | None = None


def parse_record(kind: str, record: Any, where: str, *, old_images: bool = False) -> Change:
    """The change a record describes; RecordError says why a record is not one.

    `old_images` (incremental exports only) says the export was made with NEW_AND_OLD_IMAGES, so
    a record without OldImage is an insert rather than "not known".
    """
    if not isinstance(record, dict):
        raise RecordError(f"a record must be a JSON object, not {_json_kind(record)}")
    if kind == "incremental":
        return _incremental(record, where, old_images)
    if kind == "kinesis":
        record = _unwrap_kinesis(record)
    elif "kinesis" in record or "Data" in record:
        raise RecordError("this is a Kinesis record: read it with --from kinesis")
    return _stream(record, where)


def _stream(record: dict[str, Any], where: str) -> Change:
    source = record.get("eventSource")
    if source is not None and source != "aws:dynamodb":
        raise RecordError(f"eventSource {source!r} is not aws:dynamodb")
    if record.get("recordFormat", "application/json") != "application/json":
        raise RecordError(f"recordFormat {record['recordFormat']!r} is not application/json")
    name = record.get("eventName")
    if name not in EVENT_NAMES:
        raise RecordError(f"eventName {name!r} is not one of {', '.join(EVENT_NAMES)}")
    body = record.get("dynamodb")
    if not isinstance(body, dict):
        raise RecordError("no 'dynamodb' object")
    keys = check_keys(body.get("Keys"))
    t = body.get("ApproximateCreationDateTime")
    seq = body.get("SequenceNumber")
    problems: list[str] = []
    return Change(
        where=where,
        keys=keys,
        key_id=canonical(keys),
        t=None if t is None else _record_time(t, "ApproximateCreationDateTime"),
        seq=int(seq) if isinstance(seq, str) and seq.isdigit() else -1,
        old=_image(body, "OldImage", None if name == "INSERT" else UNKNOWN, problems),
        new=_image(body, "NewImage", None if name == "REMOVE" else UNKNOWN, problems),
        problem="; ".join(problems) or None,
        table=_table_of(record),
    )


def _table_of(record: dict[str, Any]) -> str | None:
    """tableName (Kinesis Data Streams for DynamoDB), else the table in eventSourceARN
    (`arn:aws:dynamodb:REGION:ACCOUNT:table/NAME/stream/LABEL`, Lambda's stream events)."""
    name = record.get("tableName")
    if isinstance(name, str) and name:
        return name
    arn = record.get("eventSourceARN")
    if isinstance(arn, str):
        parts = arn.split(":", 5)
        if len(parts) == 6 and parts[5].startswith("table/"):
            return parts[5].split("/")[1] or None
    return None


def _unwrap_kinesis(record: dict[str, Any]) -> dict[str, Any]:
    """The KDS record itself, from a Lambda Kinesis event record or a GetRecords record."""
    if "kinesis" in record:
        wrapper = record["kinesis"]
        data = wrapper.get("data") if isinstance(wrapper, dict) else None
    elif "Data" in record:
        data = record["Data"]
    else:
        return record  # already the decoded record (one per line, as a consumer stores them)
    if not isinstance(data, str):
        raise RecordError("the Kinesis record has no base64 'data'")
    try:
        decoded = parse_json(base64.b64decode(data, validate=True))
    except (binascii.Error, ValueError) as e:
        raise RecordError(f"the Kinesis data is not base64 of a JSON record: {e}") from None
    if not isinstance(decoded, dict):
        raise RecordError(f"the Kinesis data holds {_json_kind(decoded)}, not a record")
    return decoded


def _incremental(record: dict[str, Any], where: str, old_images: bool) -> Change:
    meta = record.get("Metadata")
    if not isinstance(meta, dict):
        raise RecordError("no 'Metadata' object (WriteTimestampMicros)")
    stamp = meta.get("WriteTimestampMicros")
    if isinstance(stamp, dict) and set(stamp) == {"N"}:
        stamp = stamp["N"]
    if not isinstance(stamp, str) or not stamp.isdigit():
        raise RecordError(f"Metadata.WriteTimestampMicros {stamp!r} is not a number of µs")
    if len(stamp) > 17 or int(stamp) >= _LATEST:  # the length first: int() of 5,000 digits fails
        raise RecordError(f"Metadata.WriteTimestampMicros {stamp} is after the year 5138")
    keys = check_keys(record.get("Keys"))
    problems: list[str] = []
    return Change(
        where=where,
        keys=keys,
        key_id=canonical(keys),
        t=int(stamp),  # the name says microseconds: no guessing by magnitude here
        seq=-1,
        old=_image(record, "OldImage", None if old_images else UNKNOWN, problems),
        # absent or null: the item was deleted (AWS-FORMATS.md §2)
        new=_image(record, "NewImage", None, problems),
        problem="; ".join(problems) or None,
    )


def check_keys(keys: Any) -> dict[str, Any]:
    """A checked key map: one or two S, N or B attributes, none empty (RecordError if not)."""
    if not isinstance(keys, dict) or not keys:
        raise RecordError("no 'Keys' attribute map")
    if len(keys) > 2:
        raise RecordError(f"'Keys' has {len(keys)} attributes; a table key has one or two")
    for name, value in keys.items():
        kind = next(iter(value)) if isinstance(value, dict) and len(value) == 1 else None
        if kind not in KEY_TYPES:
            raise RecordError(f"key attribute {name!r} is not an S, N or B value")
        if value[kind] == "":
            raise RecordError(f"key attribute {name!r} is empty (DynamoDB keys are not)")
    _check(keys, "Keys")
    return keys


def _image(body: dict[str, Any], field: str, absent: Image, problems: list[str]) -> Image:
    try:
        return check_image(body, field, absent)
    except RecordError as e:
        problems.append(str(e))
        return UNKNOWN


def check_image(body: dict[str, Any], field: str, absent: Image) -> Image:
    """`body[field]` checked as an attribute map; `absent` when it is missing or null."""
    image = body.get(field)
    if image is None:
        return absent
    _check(image, field)
    assert isinstance(image, dict)
    return image


def _check(attrs: Any, field: str) -> None:
    try:
        check_item(attrs)
    except ParseError as e:
        raise RecordError(f"{field}: {e.reason}: {e}") from None
    except ValueError as e:
        raise RecordError(f"{field}: {e}") from None


def _record_time(value: Any, what: str) -> int:
    """A record's time (epoch s, ms or µs by magnitude, or ISO 8601 text as some consumers
    store boto3's datetime), which must fall in the years 1973-5138."""
    if isinstance(value, str) and not _is_number_text(value):
        micros = _iso_micros(value, what)
        if _EARLIEST * 1_000_000 <= micros < _LATEST:  # the same instants as the bounds
            return micros
    else:
        d = _epoch_number(value, what)
        if _EARLIEST <= d < _LATEST:
            return to_micros(d, what)
    raise RecordError(
        f"{what} {value} is outside the years 1973-5138 that epoch seconds, milliseconds and "
        "microseconds can be told apart in (and that DynamoDB writes)"
    )


def _is_number_text(text: str) -> bool:
    return text.replace(".", "", 1).isdigit()


def to_micros(value: Any, what: str = "timestamp") -> int:
    """Microseconds since the epoch from seconds, milliseconds or microseconds (by magnitude),
    given as a JSON number or a string of digits; or from an ISO 8601 date and time."""
    if isinstance(value, str) and not _is_number_text(value):
        return _iso_micros(value, what)
    d = _epoch_number(value, what)
    if d < _SECONDS_BELOW:
        return int(d * 1_000_000)
    if d < _MILLIS_BELOW:
        return int(d * 1_000)
    return int(d)


def _epoch_number(value: Any, what: str) -> Decimal:
    if isinstance(value, bool):
        raise RecordError(f"{what} {value!r} is not a time")
    try:
        d = Decimal(str(value)) if isinstance(value, int | float | str) else Decimal(value)
    except (InvalidOperation, TypeError, ValueError):
        raise RecordError(f"{what} {value!r} is not a time") from None
    if not d.is_finite() or d < 0:
        raise RecordError(f"{what} {value!r} is not a time")
    return d


def _iso_micros(text: str, what: str) -> int:
    try:
        when = datetime.fromisoformat(text)
    except ValueError:
        raise RecordError(f"{what} {text!r} is neither epoch time nor ISO 8601") from None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)  # AWS writes UTC; so must a user who gives no zone
    delta = when - datetime(1970, 1, 1, tzinfo=UTC)
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds


def parse_time(text: str) -> int:
    """A --since/--until argument: epoch s/ms/µs, or ISO 8601 (UTC unless a zone is given),
    from the epoch to a day before the last a datetime holds (a time outside could not even
    be printed back in the trimming checks' messages, nor sent as Kinesis' AT_TIMESTAMP)."""
    micros = to_micros(text.strip(), "time")
    if not 0 <= micros < _LAST_ARGUMENT:
        raise RecordError(f"time {text!r} is outside 1970-01-01..9999-12-30")
    return micros


def _json_kind(v: Any) -> str:
    if isinstance(v, list):
        return "an array"
    if isinstance(v, str):
        return "a string"
    if v is None:
        return "null"
    return "a number" if isinstance(v, int | float | Decimal) else type(v).__name__
