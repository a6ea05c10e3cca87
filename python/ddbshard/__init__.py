"""ddbshard: split, reshape and copy DynamoDB table exports into ImportTable-ready shards.

The fast path is a Rust extension (`ddbshard._core`); this package is its typed facade.
`loads` and `dumps` convert DynamoDB JSON the way boto3's TypeDeserializer/TypeSerializer do,
with DynamoDB's own validation rules; `stream_records` reads a DynamoDB Streams event (a Lambda
event, a GetRecords response) into `StreamRecord`s whose images are what `loads` gives.
"""

from __future__ import annotations

from ddbshard._core import StreamRecord, __version__, dumps, loads, stream_records
from ddbshard.exceptions import (
    ConfigError,
    DdbShardError,
    DecompressError,
    InputError,
    ParseError,
    StreamRecordError,
)

__all__ = [
    "ConfigError",
    "DdbShardError",
    "DecompressError",
    "InputError",
    "ParseError",
    "StreamRecord",
    "StreamRecordError",
    "__version__",
    "dumps",
    "loads",
    "stream_records",
]
