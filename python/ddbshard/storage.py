"""Talking to S3 the way a long job must: retries for transient faults, one clear line for the rest.

Every S3 client ddbshard makes (s3fs for reading, boto3 for writing) uses botocore's "standard"
retry mode: it retries 500/503 (SlowDown), throttling, dropped connections and timeouts with
exponential backoff and jitter. Ten attempts ride out a burst of SlowDown (AWS asks clients to
back off and retry, AWS-FORMATS.md) without hiding a permanent fault for long. Errors that no
retry can fix (AccessDenied, NoSuchBucket, NoSuchKey) become one `InputError` line naming the
object.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

from ddbshard.exceptions import InputError

if TYPE_CHECKING:
    from fsspec import AbstractFileSystem

# fsspec is imported where a filesystem is made, not here: a split worker reading local files
# uses this module without it (its import is a tenth of a second of every worker's start-up).

MAX_ATTEMPTS = 10
CONNECT_TIMEOUT = 10  # seconds; botocore's default of 60 makes a dead endpoint look like a hang
READ_TIMEOUT = 60
READ_BLOCK = 8 << 20  # bytes per ranged GET when streaming an input object


def botocore_config_kwargs() -> dict[str, Any]:
    return {
        "retries": {"mode": "standard", "max_attempts": MAX_ATTEMPTS},
        "connect_timeout": CONNECT_TIMEOUT,
        "read_timeout": READ_TIMEOUT,
    }


def is_s3(url: str) -> bool:
    return url.startswith(("s3://", "s3a://"))


def url_to_fs(url: str) -> tuple[AbstractFileSystem, str]:
    """fsspec filesystem and path for `url`, with the retry policy above for s3://."""
    import fsspec.core

    if is_s3(url):
        fs, path = fsspec.core.url_to_fs(
            url,
            config_kwargs=botocore_config_kwargs(),
            default_block_size=READ_BLOCK,
            default_cache_type="readahead",
        )
        return fs, path
    fs, path = fsspec.core.url_to_fs(url)
    return fs, path


def s3_client() -> Any:
    """A boto3 S3 client (endpoint, region and credentials from the usual AWS environment;
    AWS_ENDPOINT_URL is honoured by botocore itself)."""
    import boto3
    from botocore.config import Config

    region = os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION")
    return boto3.session.Session().client(
        "s3", region_name=region, config=Config(**botocore_config_kwargs())
    )


def split_url(url: str) -> tuple[str, str]:
    """("bucket", "prefix/with/no/leading/slash") of an s3:// URL."""
    rest = url.split("://", 1)[1]
    bucket, _, prefix = rest.partition("/")
    return bucket, prefix


def s3_error(e: Exception, what: str) -> InputError:
    """One line for a failed S3 call on `what` (an s3:// URL): the code and AWS's message."""
    response = getattr(e, "response", None)
    if isinstance(response, dict):
        err = response.get("Error", {})
        code = err.get("Code", "error")
        message = err.get("Message", "")
        return InputError(f"{what}: {code}: {message}".rstrip(": "))
    return InputError(f"{what}: {type(e).__name__}: {e}")


def describe_os_error(e: OSError) -> str:
    """What went wrong, in a few words. s3fs turns AccessDenied into PermissionError and
    NoSuchKey into FileNotFoundError, often with an empty or one-word message."""
    text = str(e) or type(e).__name__
    if isinstance(e, PermissionError):
        return f"access denied ({text})"
    if isinstance(e, FileNotFoundError):
        return f"not found ({text})"
    return text if type(e).__name__ in text else f"{type(e).__name__}: {text}"
