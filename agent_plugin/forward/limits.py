"""Bounds applied to untrusted Forward-protocol input, one frozen dataclass.

Every limit exists because a peer controls the size of something we allocate:
the bytes of one request, the output of a decompressor, the number of records
and the length of any array or map inside them (msgpack pre-sizes lists and
dicts from the header, so a 5-byte header could otherwise ask for gigabytes).
"""

from __future__ import annotations

from dataclasses import dataclass

from logsieve.errors import ConfigError

__all__ = ["ForwardLimits"]

_MIB = 1024 * 1024


@dataclass(frozen=True)
class ForwardLimits:
    """Per-connection limits for the Forward decoder.

    Attributes:
        max_frame_bytes: Largest single request (top-level msgpack object) in
            bytes, as it arrives on the wire. Fluent Bit's in_forward uses
            6,144,000; Fluentd's default memory buffer sends 8 MiB chunks, so the
            default leaves room for those plus framing.
        max_decompressed_bytes: Largest gzip-decompressed PackedForward payload
            (the gzip-bomb bound; Fluentd's ``decompression_size_limit`` idea).
        max_records_per_frame: Most entries one Forward/PackedForward request may
            carry, counting skipped ones (group markers, invalid times).
        max_collection_len: Longest array or map allowed anywhere inside a record
            or option map.
        max_handshake_bytes: Largest request before the shared-key handshake
            succeeded (the PING: a few hundred bytes), so a peer that has not
            authenticated can make the server buffer this much at most.
        max_nesting_depth: Deepest nesting of arrays/maps inside one record that
            is converted; deeper input is rejected rather than risking recursion
            limits.
    """

    max_frame_bytes: int = 16 * _MIB
    max_decompressed_bytes: int = 64 * _MIB
    max_records_per_frame: int = 250_000
    max_collection_len: int = 100_000
    max_nesting_depth: int = 100
    max_handshake_bytes: int = 16 * 1024

    def __post_init__(self) -> None:
        for name in (
            "max_frame_bytes",
            "max_decompressed_bytes",
            "max_records_per_frame",
            "max_collection_len",
            "max_nesting_depth",
            "max_handshake_bytes",
        ):
            value = getattr(self, name)
            # bool is an int subclass; `True` as a byte limit is a config typo.
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigError(f"forward.{name}", value, "a positive integer")
        # A frame this small could not hold a useful request; it would only turn
        # every real client into a stream of "exceeds limit" disconnects.
        if self.max_frame_bytes < 64:
            raise ConfigError("forward.max_frame_bytes", self.max_frame_bytes, "at least 64")
        if self.max_handshake_bytes < 1024:
            # A PING with a long hostname, user name and password must fit.
            raise ConfigError(
                "forward.max_handshake_bytes", self.max_handshake_bytes, "at least 1024"
            )
        if self.max_nesting_depth > 500:
            # The record converter recurses once per level; stay well under
            # Python's default recursion limit of 1000.
            raise ConfigError("forward.max_nesting_depth", self.max_nesting_depth, "at most 500")
