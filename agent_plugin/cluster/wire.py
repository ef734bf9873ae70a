"""The body of one JetStream message: the records of one Forward frame in one partition.

msgpack, a version we own (STYLE.md §15)::

    {"v": 1, "tag": str, "records": [[time_ns, record map, metadata map or nil], ...]}

Headers: ``Nats-Msg-Id`` (JetStream drops a second publish of the same id inside its
duplicate window) and ``Logsieve-Partition``. The id comes from the Forward ``chunk``
when the client sent one, so a frame the client resends after a lost ack publishes the
same ids again and nothing is stored twice; a frame without a chunk gets a fresh id
(the client does not wait for an ack, so it never resends).
"""

from __future__ import annotations

import base64
import uuid
from dataclasses import dataclass
from typing import Any

import msgpack

from logsieve.errors import LogsieveError

from ..forward import LogRecord

__all__ = [
    "PARTITION_HEADER",
    "WIRE_VERSION",
    "ClusterMessage",
    "WireError",
    "decode",
    "encode",
    "msg_id",
]

WIRE_VERSION = 1
PARTITION_HEADER = "Logsieve-Partition"


class WireError(LogsieveError, ValueError):
    """A message on a partition subject that is not a record message of ours."""


@dataclass(slots=True)
class ClusterMessage:
    """A decoded message body: the frame's tag and its records of one partition."""

    tag: str
    records: list[LogRecord]


def msg_id(chunk: bytes | None, partition: int) -> str:
    """The ``Nats-Msg-Id`` of a frame's message for ``partition``."""
    base = base64.urlsafe_b64encode(chunk).decode() if chunk else uuid.uuid4().hex
    return f"{base}.{partition}"


def encode(tag: str, records: list[LogRecord]) -> bytes:
    """One message body for ``records`` (all of one frame, all in one partition)."""
    rows = [[r.time_ns, r.record, r.metadata] for r in records]
    out: bytes = msgpack.packb({"v": WIRE_VERSION, "tag": tag, "records": rows})
    return out


def decode(body: bytes) -> ClusterMessage:
    """The message ``body`` encodes; WireError if it is not one of ours."""
    try:
        data: Any = msgpack.unpackb(body, raw=False, strict_map_key=False)
    except Exception as exc:
        raise WireError(f"cluster message is not msgpack: {exc}") from None
    if not isinstance(data, dict) or data.get("v") != WIRE_VERSION:
        version = data.get("v") if isinstance(data, dict) else type(data).__name__
        raise WireError(f"cluster message version {version!r}, want {WIRE_VERSION}")
    tag, rows = data.get("tag"), data.get("records")
    if not isinstance(tag, str) or not isinstance(rows, list):
        raise WireError("cluster message without tag or records")
    records = []
    for row in rows:
        if not (isinstance(row, list) and len(row) == 3 and isinstance(row[0], int)):
            raise WireError(f"cluster message record {row!r:.80}: want [time_ns, map, meta]")
        time_ns, record, meta = row
        if not isinstance(record, dict) or not (meta is None or isinstance(meta, dict)):
            raise WireError("cluster message record map is not a map")
        records.append(LogRecord(tag, time_ns / 1e9, time_ns, record, meta))
    return ClusterMessage(tag, records)
