"""ddbshard._core's MD5 (the shards' manifest checksums) against hashlib, through the binding."""

from __future__ import annotations

import hashlib
import random

import pytest

from ddbshard._core import Md5, md5_update_many


def test_one_stream_matches_hashlib_across_updates() -> None:
    rng = random.Random(1)
    data = rng.randbytes(100_003)
    ours, theirs = Md5(), hashlib.md5()
    for start in range(0, len(data), 9_999):
        ours.update(data[start : start + 9_999])
        theirs.update(data[start : start + 9_999])
        assert ours.hexdigest() == theirs.hexdigest()  # a digest mid-stream leaves it going
    assert ours.digest() == theirs.digest()
    assert Md5().hexdigest() == hashlib.md5(b"").hexdigest()


def test_many_streams_in_uneven_chunks_match_hashlib() -> None:
    """More streams than any SIMD width, of unequal lengths, some chunks empty, some views of a
    larger buffer (as the driver passes the mapped spill file), over three calls."""
    rng = random.Random(2)
    streams = [rng.randbytes(rng.randrange(0, 300_000)) for _ in range(40)]
    ours = [Md5() for _ in streams]
    for call in range(3):
        chunks: list[list[bytes | memoryview]] = []
        for data in streams:
            third = len(data) // 3
            part = data[call * third : len(data) if call == 2 else (call + 1) * third]
            cut = rng.randrange(0, len(part) + 1)
            chunks.append([part[:cut], b"", memoryview(part)[cut:]])
        md5_update_many(ours, chunks)
    assert [m.hexdigest() for m in ours] == [hashlib.md5(d).hexdigest() for d in streams]


def test_refuses_mismatched_lists_and_a_hasher_given_twice() -> None:
    h = Md5()
    with pytest.raises(ValueError, match="2 hashers but 1 lists"):
        md5_update_many([h, Md5()], [[b"x"]])
    with pytest.raises(RuntimeError, match="borrow"):
        md5_update_many([h, h], [[b"x"], [b"y"]])
    assert h.hexdigest() == hashlib.md5(b"").hexdigest()  # nothing was hashed
