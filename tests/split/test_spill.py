"""The spill file between a worker and the driver: records as written, a cut record ends them,
and no view of the mapped file outlives reading it."""

from __future__ import annotations

import mmap
import struct
from pathlib import Path

import pytest

from ddbshard.split.worker import REJECTS, SpillFile

HEADER = struct.Struct("<iIQ")  # the layout worker.py documents


def write(path: Path, records: list[tuple[int, int, bytes]], cut: int = 0) -> None:
    raw = b"".join(HEADER.pack(t, s, len(d)) + d for t, s, d in records)
    path.write_bytes(raw[: len(raw) - cut])


def test_records_come_back_as_written_and_are_released_after(tmp_path: Path) -> None:
    records = [(0, 3, b"a" * 10_000), (2, 0, b""), (REJECTS, 0, b'{"reason": "x"}\n'), (1, 1, b"z")]
    write(tmp_path / "s", records)
    with SpillFile(tmp_path / "s") as spill:
        got = list(spill.records())
        assert [(t, s, bytes(v)) for t, s, v in got] == records
    with pytest.raises(ValueError, match="released"):
        bytes(got[0][2])


@pytest.mark.parametrize("cut", [1, 10_000, 10_000 + HEADER.size - 1])
def test_a_record_cut_short_ends_the_records(tmp_path: Path, cut: int) -> None:
    """A worker killed while writing leaves a partial record; what precedes it still reads."""
    records = [(0, 0, b"x" * 100), (0, 1, b"y" * 10_000)]
    write(tmp_path / "s", records, cut=cut)
    with SpillFile(tmp_path / "s") as spill:
        got = [(t, s, bytes(v)) for t, s, v in spill.records()]
    assert got == records[:1]


def test_an_empty_spill_has_no_records(tmp_path: Path) -> None:
    (tmp_path / "s").write_bytes(b"")
    with SpillFile(tmp_path / "s") as spill:
        assert list(spill.records()) == []
        spill.forget_used()


def test_forgetting_used_pages_keeps_the_records_readable(tmp_path: Path) -> None:
    """forget_used only drops pages from the driver's memory: the bytes are still the file's."""
    records = [(0, s, bytes([s]) * (3 * mmap.PAGESIZE + s)) for s in range(4)]
    write(tmp_path / "s", records)
    with SpillFile(tmp_path / "s") as spill:
        seen = []
        for t, s, view in spill.records():
            spill.forget_used()
            seen.append((t, s, bytes(view)))
        assert seen == records
