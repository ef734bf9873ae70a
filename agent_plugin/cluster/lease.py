"""Who owns a partition: a lease in a JetStream key-value bucket with a TTL.

``p<n>`` in ``<stream>_leases`` holds the owner's name. Taking it is a *create*
(succeeds only if the key is absent, or deleted, or aged out); keeping it is an
*update with the revision last written* every ``lease_ttl / 3`` seconds, so exactly
one live worker holds it: a second create fails, and an update after someone else
took the key fails on the revision. A worker killed with SIGKILL stops renewing; the
bucket's TTL removes its leases after ``lease_ttl`` and another worker creates them.

Each worker also renews ``<name>`` in ``<stream>_members`` (same TTL), so every worker
knows who is alive and holds at most its share (:meth:`Leases.fair_share`: the
partitions split as evenly as they go): when a worker joins, the others hand back what
they hold beyond the new share (:meth:`Worker.release`, after their windows are judged and acked).
"""

from __future__ import annotations

import contextlib
import zlib

from nats.js.errors import KeyNotFoundError, KeyWrongLastSequenceError

from .streams import Buckets

__all__ = ["Leases"]


def _key(partition: int) -> str:
    return f"p{partition}"


class Leases:
    """This worker's leases and membership (module docstring)."""

    def __init__(self, buckets: Buckets, name: str, partitions: int) -> None:
        self.buckets = buckets
        self.name = name
        self.partitions = partitions
        self.owned: dict[int, int] = {}  # partition -> revision of our last write
        # Each worker tries partitions from its own starting point, so joiners rarely
        # race for the same free one.
        start = zlib.crc32(name.encode()) % partitions
        self.order = [(start + i) % partitions for i in range(partitions)]

    async def announce(self) -> list[str]:
        """Renew our membership; returns the names of the live workers, sorted."""
        await self.buckets.members.put(self.name, b"1")
        return sorted(set(await self.buckets.live_keys("members")) | {self.name})

    def fair_share(self, members: list[str]) -> int:
        """Our quota: ``partitions // n``, one more for the first ``partitions % n``
        names, so the quotas add up to the partitions exactly."""
        n = len(members)
        rank = members.index(self.name) if self.name in members else n
        return self.partitions // n + (1 if rank < self.partitions % n else 0)

    async def free(self) -> list[int]:
        """Partitions nobody holds a lease on, in this worker's preferred order."""
        held = set(await self.buckets.live_keys("leases"))
        return [p for p in self.order if _key(p) not in held]

    async def acquire(self, partition: int) -> bool:
        """Take ``partition``'s lease if nobody holds it."""
        try:
            self.owned[partition] = await self.buckets.leases.create(
                _key(partition), self.name.encode()
            )
        except KeyWrongLastSequenceError:
            return False
        return True

    async def renew(self, partition: int) -> str:
        """Keep ``partition``'s lease: ``"kept"``; ``"retaken"`` when it had aged out
        (a renewal came late) and nobody held it, so it is ours again (the caller checks
        that nobody consumed the partition meanwhile); ``"lost"`` (and forgotten) when
        another worker holds it."""
        try:
            self.owned[partition] = await self.buckets.leases.update(
                _key(partition), self.name.encode(), last=self.owned[partition]
            )
        except (KeyWrongLastSequenceError, KeyNotFoundError):
            self.owned.pop(partition, None)
            return "retaken" if await self.acquire(partition) else "lost"
        return "kept"

    async def release(self, partition: int) -> None:
        """Give ``partition`` back (only if the lease is still ours)."""
        revision = self.owned.pop(partition, None)
        if revision is not None:
            # Wrong revision: it had aged out and another worker took it (not ours to delete).
            with contextlib.suppress(KeyWrongLastSequenceError):
                await self.buckets.leases.delete(_key(partition), last=revision)

    async def leave(self) -> None:
        """Release every lease and our membership (orderly shutdown)."""
        for partition in list(self.owned):
            await self.release(partition)
        with contextlib.suppress(KeyNotFoundError):
            await self.buckets.members.delete(self.name)
