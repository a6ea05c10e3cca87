"""One HTTP/1.1 POST and its answer, spoken straight on a connection of the boto3 client's pool.

`urlopen` around a request cost sync 0.25 ms of CPU per call more than this does (0.55 ms
against 0.3 for a whole call, its JSON and signature included: bench/compare_sync_calls.py):
urllib3's and `http.client`'s response objects, the headers parsed by the email package, a
buffered file over the socket read a line at a time, and at every step the GIL given up and
taken back, which 16 calls in flight contend for. What a DynamoDB call needs
of HTTP is small: one request written at once, one status line, a few headers, a body of
known length (chunked is read too). `exchange` does that on a connection urllib3 made and
connected (TLS, certificates, socket options and timeouts are urllib3's and botocore's),
and fails as `HTTPConnectionPool.urlopen` fails, with urllib3's exception for the same fault,
so wirehttp.py maps it to the BotoCoreError botocore raises:

- the connection cannot be made: urllib3's own error from `connect` (NewConnectionError,
  ConnectTimeoutError, NameResolutionError), a TLS failure as SSLError;
- no answer within the read timeout: ReadTimeoutError;
- the connection lost or an answer that is not HTTP: ProtocolError;
- a body cut short: what arrived, as urllib3 gives it when told (as botocore tells it) not
  to check Content-Length; the CRC32 or the JSON parse catches it above.

A connection goes back to the pool only after a whole answer that leaves it open (HTTP/1.1,
no `Connection: close`, no bytes beyond the body); else it is closed and the pool makes a new
one, as urllib3 does after a failure.
"""

from __future__ import annotations

import contextlib
import http.client
import re
import ssl
from typing import Any

__all__ = ["Answer", "Malformed", "exchange", "host_header", "read_answer", "request_head"]

Answer = tuple[int, dict[str, str], bytes]  # status, headers (names lowercased), body

_CHUNK = 1 << 16  # a DynamoDB answer of 100 items (tens of KB) arrives in one or two reads
# http.client's limits: a line of at most 64 KB (its line end included), at most 99 headers;
# a head that has not ended within all of that is no answer.
_MAX_LINE = 1 << 16
_MAX_HEADERS = 100
_MAX_HEAD = (_MAX_HEADERS + 1) * _MAX_LINE
_HEAD_END = re.compile(rb"\r?\n\r?\n")
_LINE_END = re.compile(r"\r?\n")
_NO_BODY = frozenset({204, 304})
# The most of a body reserved before it arrives: a Content-Length is the server's word, and a
# wrong one (1 GB, then the connection closed) must not cost its size in memory, 16 calls
# over. DynamoDB's answers are at most 16 MB; beyond this the buffer grows as bytes arrive.
_RESERVE = 1 << 24
_HEX = frozenset(b"0123456789abcdefABCDEF")


class Malformed(http.client.HTTPException):
    """An answer that is not HTTP/1.x, or the connection closed before its head ended."""


class _Closed(Malformed):
    """The connection closed in a chunked body."""


def host_header(host: str, port: int | None, default_port: int) -> str:
    """The Host header `http.client` sends for a connection to host:port."""
    text = host.encode("ascii", "strict") if host.isascii() else host.encode("idna")
    name = text.decode("ascii").partition("%")[0]  # an IPv6 zone is not sent
    if ":" in host:
        name = f"[{name}]"
    return name if port in (None, default_port) else f"{name}:{port}"


def request_head(target: str, host: str, headers: dict[str, str], length: int) -> bytes:
    """The request line and headers, in the order urllib3 writes them (Host, Accept-Encoding,
    Content-Length, then the caller's). A CR or LF in a value is refused, as http.client
    refuses it (ValueError), since it would end the header early."""
    lines = [f"POST {target} HTTP/1.1", f"Host: {host}", "Accept-Encoding: identity"]
    lines.append(f"Content-Length: {length}")
    for name, value in headers.items():
        if "\r" in value or "\n" in value or "\r" in name or "\n" in name:
            raise ValueError(f"Invalid header value {value!r}")
        lines.append(f"{name}: {value}")
    lines.append("\r\n")
    return "\r\n".join(lines).encode("latin-1")


def exchange(
    pool: Any, conn: Any, request: bytes, connect_timeout: float | None, read_timeout: float | None
) -> tuple[Answer, bool]:
    """Sends `request` (head and body) on `conn`, a urllib3 connection of `pool`, connecting
    it first if it is closed; the answer, and whether the connection may be used again."""
    from urllib3 import exceptions as u3

    sending = False
    try:
        if conn.is_closed:
            # urlopen leaves a connection's timeout at the read timeout (the boto3 client's
            # other calls share the pool), and sets it back before it connects.
            conn.timeout = connect_timeout
            conn.connect()
        sock = conn.sock
        sending = True
        if sock.gettimeout() != connect_timeout:
            sock.settimeout(connect_timeout)
        # As urllib3: the server may have answered, then closed; the answer is read.
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            sock.sendall(request)
        sending = False
        if sock.gettimeout() != read_timeout:
            sock.settimeout(read_timeout)
        answer, keep = read_answer(sock)
        # Bytes past the answer that TLS has already decrypted (the rest of the record that
        # ended it) are not seen by the pool's check for a dropped connection, which asks
        # whether the socket is readable: the next request would take them for its answer.
        if keep and isinstance(sock, ssl.SSLSocket) and sock.pending():
            keep = False
        return answer, keep
    except u3.HTTPError:
        raise  # connect's own, as urlopen raises it
    except (TimeoutError, BlockingIOError) as e:
        if sending:  # urllib3 takes a failed send for a dropped connection
            raise u3.ProtocolError("Connection aborted.", e) from e
        # In the TLS handshake or waiting for the answer (urllib3's _raise_timeout).
        raise u3.ReadTimeoutError(
            pool, "/", f"Read timed out. (read timeout={read_timeout})"
        ) from e
    except (ssl.SSLError, ssl.CertificateError) as e:
        raise u3.SSLError(e) from e
    except (OSError, http.client.HTTPException) as e:
        raise u3.ProtocolError("Connection aborted.", e) from e


def read_answer(sock: Any) -> tuple[Answer, bool]:
    """Reads one HTTP/1.x answer from `sock`: (status, headers, body), may the socket be used
    again. 1xx interim answers are skipped, as http.client skips them."""
    buf = b""
    while True:
        # Each search starts where the last could not have ended (3 bytes back for a split
        # CRLFCRLF): a head arriving in many small segments is not searched again from the start.
        searched = 0
        while (end := _HEAD_END.search(buf, searched)) is None:
            if len(buf) > _MAX_HEAD:
                raise Malformed("the answer's head is too long")
            more = sock.recv(_CHUNK)
            if not more:
                raise Malformed(
                    "the connection closed without an answer"
                    if not buf
                    else "the connection closed in the answer's head"
                )
            searched = max(0, len(buf) - 3)
            buf += more
        status, version, headers = _head(buf[: end.start()])
        buf = buf[end.end() :]
        if not 100 <= status < 200 or status == 101:
            break
    keep = version == "HTTP/1.1" and "close" not in headers.get("connection", "").lower()
    if status in _NO_BODY:
        return (status, headers, b""), keep and not buf
    if "chunked" in headers.get("transfer-encoding", "").lower():
        body, clean = _chunked(sock, buf)
        return (status, headers, body), keep and clean
    length = headers.get("content-length")
    if length is None:
        return (status, headers, buf + _to_close(sock)), False
    # A repeated header is joined ("60, 60", a proxy's doing): urllib3 takes it when every
    # value is the same. ASCII digits only: str.isdigit takes "²", which int() refuses.
    values = {v.strip() for v in length.split(",")}
    if len(values) != 1 or not all(v.isascii() and v.isdigit() for v in values):
        raise Malformed(f"Content-Length {length!r}")
    body, whole = _exactly(sock, buf, int(values.pop()))
    return (status, headers, body), keep and whole


def _head(head: bytes) -> tuple[int, str, dict[str, str]]:
    # Split on line ends only: str.splitlines would also split at \x85 and the like.
    lines = _LINE_END.split(head.decode("iso-8859-1"))
    if len(lines) > _MAX_HEADERS:  # the status line, and http.client counts the blank line
        raise Malformed(f"more than {_MAX_HEADERS - 1} headers")
    if max(map(len, lines)) + 2 > _MAX_LINE:
        raise Malformed("a line of the answer's head is too long")
    version, _, rest = lines[0].partition(" ")
    code = rest[:3]
    if not version.startswith("HTTP/1.") or not code.isdigit() or rest[3:4] not in ("", " "):
        raise Malformed(f"not an HTTP answer: {lines[0][:80]!r}")
    headers: dict[str, str] = {}
    for line in lines[1:]:
        name, colon, value = line.partition(":")
        if not colon:
            raise Malformed(f"a header line without a colon: {line[:80]!r}")
        name = name.strip().lower()
        value = value.strip()
        # Repeated headers joined, as urllib3's HTTPHeaderDict gives them.
        headers[name] = f"{headers[name]}, {value}" if name in headers else value
    return int(code), version, headers


def _exactly(sock: Any, have: bytes, length: int) -> tuple[bytes, bool]:
    """`length` bytes of body, `have` the first of them: (the body, whether it came whole
    with nothing after it). A connection closed early gives what arrived."""
    if len(have) >= length:
        return have[:length], len(have) == length
    body = bytearray(min(length, max(_RESERVE, len(have))))
    body[: len(have)] = have
    got = len(have)
    while got < length:
        if got == len(body):  # more than reserved has come: twice the room, up to the length
            body.extend(bytes(min(length, 2 * got) - got))
        with memoryview(body) as view:
            n = sock.recv_into(view[got:], len(body) - got)
        if n == 0:
            del body[got:]
            return bytes(body), False
        got += n
    return bytes(body), True


def _to_close(sock: Any) -> bytes:
    parts = []
    while more := sock.recv(_CHUNK):
        parts.append(more)
    return b"".join(parts)


def _chunked(sock: Any, buf: bytes) -> tuple[bytes, bool]:
    """A chunked body, and whether it ended cleanly (its trailers ended, nothing after it).
    Trailers are read and dropped, as http.client drops them; the connection closed in them
    ends them, as for http.client (the last chunk has come). `buf[pos:]` is what is unread:
    bytes are taken by position, not by slicing the rest off after every chunk, and a chunk
    longer than what has arrived is read as a body of that length (_exactly), so many small
    chunks or one large one cost their length."""
    parts: list[bytes] = []
    pos = 0

    def line() -> bytes:
        nonlocal buf, pos
        while (i := buf.find(b"\n", pos)) < 0:
            if len(buf) - pos > _MAX_LINE:
                raise Malformed("a chunk's size line is too long")
            more = sock.recv(_CHUNK)
            if not more:
                raise _Closed("the connection closed in a chunked body")
            buf, pos = buf[pos:] + more, 0
        out, pos = buf[pos:i], i + 1
        return out.rstrip(b"\r")

    while True:
        size_text = line().split(b";", 1)[0].strip()
        # Hex digits only: int(text, 16) also takes a sign (a negative size took bytes back
        # out of the body), "0x" and underscores.
        if not size_text or not _HEX.issuperset(size_text):
            raise Malformed(f"a chunk size {size_text[:20]!r}")
        size = int(size_text, 16)
        if size == 0:
            try:
                while line():
                    pass  # trailers
            except _Closed:
                return b"".join(parts), False  # the last chunk came: the body is whole
            return b"".join(parts), pos == len(buf)
        if len(buf) - pos >= size + 2:
            parts.append(buf[pos : pos + size])
            pos += size + 2  # the chunk and its CRLF
            continue
        chunk, whole = _exactly(sock, buf[pos:], size + 2)
        if not whole:
            raise Malformed("the connection closed in a chunked body")
        parts.append(chunk[:size])
        buf, pos = b"", 0
