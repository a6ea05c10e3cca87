"""ddbshard: split, reshape and copy DynamoDB table exports into ImportTable-ready shards.

The fast path is a Rust extension (`ddbshard._core`); this package is its typed facade.
`loads` and `dumps` convert DynamoDB JSON the way boto3's TypeDeserializer/TypeSerializer do,
with DynamoDB's own validation rules.
"""

from __future__ import annotations

from ddbshard._core import __version__, dumps, loads
from ddbshard.exceptions import (
    ConfigError,
    DdbShardError,
    DecompressError,
    InputError,
    ParseError,
)

__all__ = [
    "ConfigError",
    "DdbShardError",
    "DecompressError",
    "InputError",
    "ParseError",
    "__version__",
    "dumps",
    "loads",
]
