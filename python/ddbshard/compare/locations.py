"""What `parquet` and `diff` are given to read or write: a live table, or a place for files.

- `dynamodb://TABLE` is a live table, scanned (livescan.py);
- a path, `file://`, `s3://` or another scheme fsspec has an implementation for is files.

Anything else is refused with one line before any work starts: fsspec would otherwise raise
"Protocol not known" from deep inside the first read, and `dynamodb:/T` (one slash) would be
taken for a local folder named `dynamodb:`.
"""

from __future__ import annotations

import re

from ddbshard.exceptions import ConfigError

__all__ = ["LIVE_SCHEME", "check_location", "live_table"]

LIVE_SCHEME = "dynamodb://"
# DynamoDB table names: 3 to 255 of A-Z a-z 0-9 _ - . (CreateTable's TableName pattern).
_TABLE_NAME = re.compile(r"[A-Za-z0-9_.-]{3,255}")
_SCHEME = re.compile(r"([A-Za-z][A-Za-z0-9+.-]*)://")


def live_table(url: str, what: str) -> str | None:
    """The table `url` names when it is `dynamodb://TABLE`; None for any other location.

    ConfigError for a malformed live-table URL (`dynamodb:/T`, `dynamodb://`, a bad name)
    and for a scheme nothing here can read or write.
    """
    if url.lower().startswith("dynamodb:"):
        if not url.lower().startswith(LIVE_SCHEME):
            raise ConfigError(f"{what} {url!r}: write a live table as dynamodb://TABLE")
        name = url[len(LIVE_SCHEME) :]
        if not name:
            raise ConfigError(f"{what} {url!r}: no table name after dynamodb://")
        if not _TABLE_NAME.fullmatch(name):
            raise ConfigError(
                f"{what} {url!r}: {name!r} is not a DynamoDB table name "
                "(3 to 255 letters, digits, '_', '-' or '.')"
            )
        return name
    check_location(url, what)
    return None


def check_location(url: str, what: str) -> None:
    """Refuses a URL whose scheme fsspec does not know (or whose package is not installed)."""
    match = _SCHEME.match(url)
    if match is None:
        return  # a local path
    protocol = match.group(1).lower()
    if protocol in ("file", "s3", "s3a"):
        return
    from fsspec import get_filesystem_class  # only here: its import costs start-up time

    try:
        get_filesystem_class(protocol)
    except ValueError:
        raise ConfigError(
            f"{what} {url!r}: unknown scheme {protocol}:// (a path, s3://BUCKET/PREFIX, or "
            "dynamodb://TABLE)"
        ) from None
    except ImportError as e:
        raise ConfigError(f"{what} {url!r}: {protocol}:// needs a package: {e}") from None
