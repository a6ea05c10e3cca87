"""Talking to S3 the way a long job must: retries for transient faults, one clear line for the rest.

Every S3 client ddbshard makes (s3fs for reading, boto3 for writing) uses botocore's "standard"
retry mode: it retries 500/503 (SlowDown), throttling, dropped connections and timeouts with
exponential backoff and jitter. Ten attempts ride out a burst of SlowDown (AWS asks clients to
back off and retry, AWS-FORMATS.md) without hiding a permanent fault for long. Errors that no
retry can fix (AccessDenied, NoSuchBucket, NoSuchKey) become one `InputError` line naming the
object. What the AWS environment lacks (credentials, a Region, a named profile) is one line saying
what to set, for every command alike (`aws_setup_problem`, used by the CLI's error handler).

Local outputs are checked before any data is read (`check_local_output`): a run that would
only fail at its first write should not spend its input first.
"""

from __future__ import annotations

import errno
import os
import sys
from collections.abc import Iterator
from pathlib import Path
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
    # AWS_MAX_ATTEMPTS, the SDKs' own setting (attempts, the first one included), is honoured
    # when set: an explicit Config would otherwise override it.
    retries: dict[str, Any] = {"mode": "standard", "max_attempts": MAX_ATTEMPTS}
    env = os.environ.get("AWS_MAX_ATTEMPTS", "")
    if env.isdigit() and int(env) >= 1:
        retries = {"mode": "standard", "total_max_attempts": int(env)}
    return {
        "retries": retries,
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


def split_s3_uri(uri: str) -> tuple[str, str]:
    """("s3://bucket/some/prefix") -> ("bucket", "some/prefix/"); the prefix ends in "/" or is "".

    Raises ValueError for anything that is not s3://bucket[/prefix].
    """
    if not uri.startswith("s3://"):
        raise ValueError(f"'{uri}' is not an s3:// URI")
    bucket, _, prefix = uri[len("s3://") :].partition("/")
    if not bucket:
        raise ValueError(f"'{uri}' names no bucket (write s3://bucket/prefix/)")
    prefix = prefix.strip("/")
    return bucket, f"{prefix}/" if prefix else ""


def split_url(url: str) -> tuple[str, str]:
    """("bucket", "prefix/with/no/trailing/slash") of an s3:// (or s3a://) URL."""
    bucket, prefix = split_s3_uri("s3://" + url.split("://", 1)[1])
    return bucket, prefix.rstrip("/")


def s3_error(e: Exception, what: str) -> InputError:
    """One line for a failed S3 call on `what` (an s3:// URL): the code and AWS's message."""
    problem = aws_setup_problem(e)
    if problem is not None:
        return InputError(problem)
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


# --- what the AWS environment lacks ----------------------------------------------------------

NO_CREDENTIALS = (
    "no AWS credentials found: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or AWS_PROFILE, "
    "or run where an IAM role provides them (EC2, ECS, AWS Batch)"
)
NO_REGION = (
    "no AWS Region set: set AWS_REGION (or AWS_DEFAULT_REGION, or region in your AWS profile)"
)


def cause_chain(e: BaseException | None) -> Iterator[BaseException]:
    """`e`, then what it was raised from or while handling, and so on (each once)."""
    seen: set[int] = set()
    while e is not None and id(e) not in seen:
        seen.add(id(e))
        yield e
        e = e.__cause__ or e.__context__


def error_code(e: BaseException) -> str | None:
    """The AWS error code of a botocore ClientError ("NoSuchKey", "404", ...), else None."""
    response = getattr(e, "response", None)
    if not isinstance(response, dict):
        return None
    code = response.get("Error", {}).get("Code")
    return str(code) if code is not None else None


def aws_setup_problem(e: BaseException | None) -> str | None:
    """One line saying what the AWS environment lacks and how to set it, when `e`, or an
    exception it was raised from or while handling, is botocore saying so (no credentials, no
    Region or one that is not a Region name, an unknown profile, a credential provider that
    failed); None otherwise.

    s3fs and aiobotocore pass these through unwrapped (s3fs translates only ClientError), and
    none is worth a retry: botocore raises them before any request is sent."""
    exc = sys.modules.get("botocore.exceptions")
    if exc is None:  # botocore never ran, so it raised nothing
        return None
    for cause in cause_chain(e):
        if isinstance(cause, exc.NoCredentialsError):
            return NO_CREDENTIALS
        if isinstance(cause, exc.PartialCredentialsError):
            return (
                f"incomplete AWS credentials ({cause}): set both AWS_ACCESS_KEY_ID and "
                "AWS_SECRET_ACCESS_KEY, or use AWS_PROFILE"
            )
        if isinstance(cause, exc.ProfileNotFound):
            return (
                f"AWS profile {cause.kwargs.get('profile')!r} not found: set AWS_PROFILE to a "
                "profile in ~/.aws/config (or AWS_CONFIG_FILE), or unset it"
            )
        if isinstance(cause, exc.NoRegionError):
            return NO_REGION
        if isinstance(cause, exc.InvalidRegionError):
            return (
                f"{cause.kwargs.get('region_name')!r} is not a valid AWS Region name (such as "
                "us-east-1): fix --region, AWS_REGION, AWS_DEFAULT_REGION or the profile's region"
            )
        if isinstance(cause, exc.CredentialRetrievalError | exc.TokenRetrievalError | exc.SSOError):
            # One line, though the message may quote a credential process's stderr.
            return f"AWS credentials could not be loaded: {' '.join(str(cause).split())}"
        if isinstance(cause, exc.ConfigParseError):
            return f"the AWS config cannot be read: {cause}"
        if isinstance(cause, exc.SSLError) and _missing_ca_bundle() is not None:
            # TLS fails at every call alike while the bundle named is not there: no retry.
            return (
                f"the CA bundle {_missing_ca_bundle()} (AWS_CA_BUNDLE or ca_bundle in the AWS "
                "config) does not exist: point it at a PEM file, or unset it"
            )
    return None


def _missing_ca_bundle() -> str | None:
    """The CA bundle the AWS environment names when that file does not exist, else None."""
    import botocore.session

    path = os.environ.get("AWS_CA_BUNDLE") or botocore.session.get_session().get_config_variable(
        "ca_bundle"
    )
    return path if path and not os.path.exists(path) else None


# --- local outputs ---------------------------------------------------------------------------


def check_local_output(location: str, what: str, *, file: bool = False) -> None:
    """Refuses, with one line, a local folder (or with `file`, the folder of a file) that
    cannot be created or written: a file where a folder should be, or a folder this process
    may not write. Nothing is created. s3:// and other remote locations pass: their rights
    are only known when a write is tried."""
    if "://" in location and not location.startswith("file://"):
        return
    path = Path(location.removeprefix("file://")).absolute()
    if file:
        if path.is_dir():
            raise InputError(f"{what} {location}: is a folder, not a file")
        path = path.parent
    probe = path
    while not probe.exists():  # the nearest part of the path that exists decides
        if probe.parent == probe:
            break
        probe = probe.parent
    if not probe.is_dir():
        raise InputError(
            f"{what} {location}: cannot write: {probe} is a file, not a folder "
            f"({os.strerror(errno.ENOTDIR)})"
        )
    if not os.access(probe, os.W_OK | os.X_OK):
        raise InputError(
            f"{what} {location}: cannot write: {probe} is not writable "
            f"({os.strerror(errno.EACCES)}, or a read-only file system)"
        )


def check_output(location: str, what: str, *, file: bool = False) -> None:
    """`check_local_output` for a local location; for s3://, that its bucket exists (found
    missing only at the first write, it would cost the whole run before it: a table's scan,
    a stream's read). HeadBucket needs s3:ListBucket, which a role allowed only to write the
    output may lack: any other refusal passes, and the write will tell."""
    if not is_s3(location):
        check_local_output(location, what, file=file)
        return
    fs, path = url_to_fs(location)
    bucket = path.split("/", 1)[0]
    try:
        fs.info(bucket)
    except FileNotFoundError:
        raise InputError(f"{what} {location}: the bucket {bucket} does not exist") from None
    except OSError:
        pass
