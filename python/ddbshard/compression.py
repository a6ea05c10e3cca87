"""The compressions of shards and export files: one table of what each is called where.

ImportTable reads DYNAMODB_JSON objects compressed with ZSTD, GZIP or NONE
(InputCompressionType); every object under an import's prefix must share one, which is why a
target's data/ holds only its shards. Input files are recognised by their first bytes, never by
their names (the Rust core's sniffing; `magic` here is for the few Python readers).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Compression:
    name: str  # as the config spells it
    extension: str  # of a shard: part-00000<extension>
    import_name: str  # ImportTable's InputCompressionType
    magic: bytes  # the first bytes of a stream; b"" for none
    levels: tuple[int, int, int] | None  # (lowest, highest, default); None: no levels


COMPRESSIONS: dict[str, Compression] = {
    "zstd": Compression("zstd", ".json.zst", "ZSTD", b"\x28\xb5\x2f\xfd", (1, 19, 3)),
    "gzip": Compression("gzip", ".json.gz", "GZIP", b"\x1f\x8b", (1, 9, 6)),
    "none": Compression("none", ".json", "NONE", b"", None),
}
