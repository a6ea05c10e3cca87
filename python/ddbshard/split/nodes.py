"""Splitting one export on several machines (an AWS Batch array job), and joining the results.

Node I of N (`split --worker-index I --worker-count N`) reads a disjoint, deterministic share
of the export's files and writes a disjoint range of each target's shard numbers, so nodes
never write the same object. Files are shared out by size (largest first, each to the node
with the fewest bytes so far) and shard numbers in proportion to each node's bytes, so shards
come out about the same size whichever node wrote them. Every node computes the same plan
from the same manifest, with no coordination.

A node writes its manifests and summary under `_nodes/node-IIII/`; `finalize` checks that all
N are there and from the same config, merges them into each target's manifest.json, writes
import-table.json and `_summary.json`.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from ddbshard.exceptions import ConfigError

NODES_DIR = "_nodes"


@dataclass(frozen=True)
class Node:
    index: int
    count: int

    def __post_init__(self) -> None:
        if self.count < 1 or not 0 <= self.index < self.count:
            raise ConfigError(
                f"--worker-index {self.index} --worker-count {self.count}: the index must be "
                "in 0..count-1"
            )

    @property
    def dir(self) -> str:
        return f"{NODES_DIR}/node-{self.index:04d}"


def node_from_args(index: int | None, count: int | None) -> Node | None:
    """The node this run is, from the flags or AWS Batch's array-job variables; None alone."""
    env = os.environ
    if index is None and "AWS_BATCH_JOB_ARRAY_INDEX" in env:
        index = int(env["AWS_BATCH_JOB_ARRAY_INDEX"])
    if count is None and "AWS_BATCH_JOB_ARRAY_SIZE" in env:
        count = int(env["AWS_BATCH_JOB_ARRAY_SIZE"])
    if index is None and count is None:
        return None
    if index is None or count is None:
        raise ConfigError(
            "--worker-index and --worker-count go together (or AWS_BATCH_JOB_ARRAY_INDEX and "
            "AWS_BATCH_JOB_ARRAY_SIZE)"
        )
    return Node(index, count)


def share_files(sizes: list[int], count: int) -> list[list[int]]:
    """File indices per node: largest file first, to the node with the fewest bytes (ties: the
    lower node). Each node's list is in file order."""
    loads = [0] * count
    shares: list[list[int]] = [[] for _ in range(count)]
    for i in sorted(range(len(sizes)), key=lambda i: (-sizes[i], i)):
        node = min(range(count), key=lambda n: (loads[n], n))
        shares[node].append(i)
        loads[node] += sizes[i]
    return [sorted(s) for s in shares]


def share_shards(total: int, weights: list[int]) -> list[tuple[int, int]]:
    """(first shard number, shard count) per node: `total` shards in proportion to `weights`
    (largest remainders), at least one per node with any weight, ranges consecutive. When
    there are more busy nodes than shards, each busy node still gets one, so the target ends
    with as many shards as busy nodes."""
    busy = [n for n, w in enumerate(weights) if w > 0]
    counts = [0] * len(weights)
    if busy:
        total = max(total, len(busy))
        weight_sum = sum(weights)
        spare = total - len(busy)  # one each first, the rest by weight
        exact = [spare * weights[n] / weight_sum for n in busy]
        floors = [int(x) for x in exact]
        left = spare - sum(floors)
        order = sorted(range(len(busy)), key=lambda k: (-(exact[k] - floors[k]), k))
        for k in order[:left]:
            floors[k] += 1
        for k, n in enumerate(busy):
            counts[n] = 1 + floors[k]
    ranges = []
    first = 0
    for c in counts:
        ranges.append((first, c))
        first += c
    return ranges
