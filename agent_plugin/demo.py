"""``make run``: the real serving path, end to end, on 127.0.0.1.

1. take the demo bundle and the demo traffic (the CLI gets both from
   :mod:`logsieve.export.demo`: serving never imports training or data generation);
2. start an upstream ``in_forward`` (:class:`~.receiver.FlagReceiver`) and the
   logsieve service (Forward server → pipeline → engine → upstream client) on free ports;
3. replay freshly generated HDFS-like logs with injected anomalies through the real
   ``fluent-logger`` client, one record per line as a Fluent Bit ``tail`` input with an
   HDFS parser would send it (``log`` = the message, event time = the line's time);
4. stop the service in order: HDFS block sessions idle out only after a day of event
   time, so the windows are flushed through the engine at shutdown and their flags
   delivered upstream (acked) before the process exits;
5. print every flag that came back upstream with its evidence lines, then a table of
   injected anomalies against flagged blocks.

"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime, timezone
from typing import Any

from fluent import sender

from logsieve.bundle import Bundle

from .app import Service
from .metrics import sample_value
from .pipeline_config import PipelineConfig
from .receiver import FlagReceiver, Received
from .serve_config import ServeSettings
from .server_config import ServerConfig
from .upstream_config import UpstreamConfig

__all__ = ["run_demo"]


def _ts(t: float) -> str:
    return datetime.fromtimestamp(t, tz=timezone.utc).strftime("%H:%M:%S")


def _replay(port: int, events: Sequence[tuple[float, dict[str, Any]]]) -> None:
    client = sender.FluentSender("hdfs", host="127.0.0.1", port=port, nanosecond_precision=True)
    try:
        for t, record in events:
            if not client.emit_with_time("datanode", t, record):
                raise RuntimeError(f"fluent-logger could not send: {client.last_error}")
    finally:
        client.close()


def run_demo(
    bundle: Bundle,
    events: Sequence[tuple[float, dict[str, Any]]],
    n_keys: int,
    kinds: Mapping[str, str],
    kind_names: Sequence[str],
    echo: Callable[[str], object],
    *,
    evidence: int = 3,
) -> dict[str, int]:
    """Serve ``bundle``, replay ``events`` (``(time, record)``) through it, print the flags.

    The traffic has ``n_keys`` windows (blocks); ``kinds`` maps each key with an
    injected anomaly to its kind (one of ``kind_names``); every other key is normal.
    Returns the counts it reports.
    """
    flagged = Counter[str]()

    def show(item: Received) -> None:
        flag = item.record
        if item.tag != "logsieve.flag" or flag.get("verdict") != "anomaly":
            return
        kind = kinds.get(flag["key"], "normal")
        flagged[kind] += 1
        score, threshold = flag["score"], flag["threshold"]
        reasons = flag.get("reasons") or ["score"]
        why = " and ".join(
            "a rare new template" if r == "rare_new_template"
            else f"score {score:.3f} > {threshold:.3f}" if score is not None
            else f"score null: {flag.get('score_reason')}"
            for r in reasons
        )  # fmt: skip
        echo(
            f"\nFLAG {flag['key']}  {_ts(flag['window_start'])}-{_ts(flag['window_end'])}  "
            f"{flag['lines']} lines  {why}  (injected: {kind})"
        )
        for e in flag["evidence"]:
            template = "" if e["template"] == "[UNK]" else f"  [{e['template']}]"
            echo(f"    {e['prob']:4.2f}  {e['line']}{template}")

    async def main() -> tuple[int, tuple[float, float], float]:
        receiver = FlagReceiver(on_record=show)
        await receiver.start()
        settings = ServeSettings(
            server=ServerConfig(host="127.0.0.1", port=0, metrics_port=0, udp_heartbeat=False),
            upstream=UpstreamConfig(
                host="127.0.0.1",
                port=receiver.port,
                self_hostname="logsieve-demo",
                flush_interval=0.05,
            ),
            pipeline=PipelineConfig(top_k=evidence),
        )
        service = Service(settings, bundle)
        try:
            await service.start()
            echo(
                f"logsieve serving on 127.0.0.1:{service.port} ({service.engine.info.label}), "
                f"flags to the in_forward on 127.0.0.1:{receiver.port}"
            )
            echo(
                f"replaying {len(events)} generated lines ({n_keys} blocks, "
                f"{len(kinds)} with injected anomalies) through fluent-logger ..."
            )
            t0 = time.perf_counter()
            await asyncio.to_thread(_replay, service.port, events)
            # fluent-logger has no acks: wait until the server has read every record.
            received = service.metrics.records_received.labels(mode="message")
            deadline = time.monotonic() + 30.0
            while sample_value(received) < len(events) and time.monotonic() < deadline:
                await asyncio.sleep(0.01)
            echo("stopping: flushing open windows through the engine, delivering flags ...")
        finally:
            await service.stop()
            await receiver.stop()
        sent = service.pipeline_metrics.sent
        kinds_sent = (sample_value(sent, kind="flag"), sample_value(sent, kind="pattern"))
        return service.upstream.stats.records_acked, kinds_sent, time.perf_counter() - t0

    acked, (flags, patterns), seconds = asyncio.run(main())
    injected = Counter(kinds.values())
    echo(
        f"\n{acked} records acked upstream ({flags:.0f} flags, {patterns:.0f} new-pattern "
        f"records); {seconds:.1f}s from first record to exit"
    )
    echo("\ninjected kind            blocks  flagged")
    for kind in kind_names:
        echo(f"  {kind:22s} {injected[kind]:6d}  {flagged[kind]:7d}")
    n_normal = n_keys - sum(injected.values())
    echo(f"  {'normal (false flags)':22s} {n_normal:6d}  {flagged['normal']:7d}")
    stats = {"windows": n_keys, "flagged": sum(flagged.values()), "acked": acked}
    stats["false_flags"] = flagged["normal"]
    stats.update({f"injected_{k}": v for k, v in injected.items()})
    stats.update({f"flagged_{k}": v for k, v in flagged.items()})
    return stats
