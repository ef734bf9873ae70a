"""The fixture's server is a real JetStream: a stream takes a publish and acks it."""

from __future__ import annotations

import asyncio

from tests.cluster.nats import NatsServer


def test_jetstream_publish_is_acked(nats_server: NatsServer) -> None:
    import nats

    async def main() -> int:
        nc = await nats.connect(nats_server.url)
        try:
            js = nc.jetstream()
            await js.add_stream(name="PROBE", subjects=["probe.>"])
            ack = await js.publish("probe.0", b"x", headers={"Nats-Msg-Id": "one"})
            again = await js.publish("probe.0", b"x", headers={"Nats-Msg-Id": "one"})
            assert again.duplicate and again.seq == ack.seq
            return int(ack.seq)
        finally:
            await nc.close()

    assert asyncio.run(main()) == 1
