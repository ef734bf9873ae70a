"""Which partition a window key lives in: a stable hash, the same in every process.

``zlib.crc32`` of the key's UTF-8 bytes modulo the partition count: Python's ``hash``
is salted per process, so ingresses and workers would disagree.
"""

from __future__ import annotations

import zlib
from collections.abc import Iterable

__all__ = ["partition_of", "partitions_of"]


def partition_of(key: str, partitions: int) -> int:
    """The partition of window key ``key`` among ``partitions``."""
    return zlib.crc32(key.encode("utf-8", "surrogatepass")) % partitions


def partitions_of(keys: Iterable[str], partitions: int) -> list[int]:
    """The distinct partitions of ``keys``, in order of first appearance."""
    return list(dict.fromkeys(partition_of(k, partitions) for k in keys))
