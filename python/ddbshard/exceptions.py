"""Exceptions of ddbshard: one root, one class per kind of failure.

The native module raises these classes (it imports them from here), so `except ParseError`
works the same for errors found in Rust and in Python.
"""

from __future__ import annotations

__all__ = [
    "ConfigError",
    "DdbShardError",
    "DecompressError",
    "InputError",
    "LocalDiskError",
    "ParseError",
    "ResumeError",
    "StreamRecordError",
    "Terminated",
    "UnmatchedError",
]


class DdbShardError(Exception):
    """Root of every error ddbshard raises on purpose."""


class ParseError(DdbShardError, ValueError):
    """A line or value that DynamoDB would refuse.

    `reason` is a stable code (such as ``invalid_number``), `line` the 1-based line number
    (0 for a lone value), `offset` the byte offset in the line, `excerpt` the bytes around it.
    """

    def __init__(
        self, message: str, reason: str, line: int = 0, offset: int = 0, excerpt: str = ""
    ) -> None:
        super().__init__(message)
        self.reason = reason
        self.line = line
        self.offset = offset
        self.excerpt = excerpt


class StreamRecordError(ParseError):
    """A DynamoDB Streams record that DynamoDB could not have written, or an event with no
    readable records (raised and listed by `stream_records`).

    Besides ParseError's fields: `index`, the record's position in the event (None when the
    event itself cannot be read); `path`, where in the event (``Records[3].dynamodb.NewImage``);
    `sequence` and `event_id`, the record's SequenceNumber and eventID when they could be read
    (a Lambda handler reports `sequence` in its ``batchItemFailures``).
    """

    def __init__(
        self,
        message: str,
        reason: str,
        line: int = 0,
        offset: int = 0,
        excerpt: str = "",
        *,
        index: int | None = None,
        path: str = "",
        sequence: str | None = None,
        event_id: str | None = None,
    ) -> None:
        super().__init__(message, reason, line, offset, excerpt)
        self.index = index
        self.path = path
        self.sequence = sequence
        self.event_id = event_id


class DecompressError(DdbShardError):
    """A gzip or zstd stream that is corrupt or ends early."""


class ConfigError(DdbShardError):
    """A configuration that cannot be run, found before any data is read."""


class InputError(DdbShardError):
    """Input that cannot be read: a missing file, a manifest that does not match its files."""


class UnmatchedError(DdbShardError):
    """An item matched no target while the config says `unmatched = "error"`."""


class ResumeError(DdbShardError):
    """An interrupted run that cannot be continued as it is: its checkpoint no longer matches
    the destination, or another run holds the destination."""


class LocalDiskError(DdbShardError):
    """A fault of this machine's own disk (full, read-only, failing) while writing spill,
    state or a local destination: never the input's fault, and the checkpoint is kept."""


class Terminated(BaseException):
    """SIGTERM (a scheduler stopping the job, `timeout`, `kill`): handled as Ctrl-C is. A
    BaseException, as KeyboardInterrupt is, so that no `except Exception` swallows it."""
