"""``StreamingPipeline.put`` windows a stream exactly as the offline path does.

The served hot path reads a record into ``(time, host, text)`` and feeds the line by
its parts (``RecordReader.read``, ``LinePipeline.feed_line``); training builds a
``LogRecord`` per line and replays it (``windows_of``). Here one generated HDFS stream
goes both ways, its records in every form ``put`` meets (a whole raw line, parsed
content with a trailing newline, content as bytes in another text field, no text, an
event time too far ahead to trust), and the windows must be the same: keys, spans,
reasons, and each line's time, template id and text, in order.
"""

from __future__ import annotations

import time
from typing import Any

import pytest

from logsieve.agent_plugin.forward import LogRecord as ForwardRecord
from logsieve.agent_plugin.forward import RecordBatch
from logsieve.agent_plugin.pipeline import StreamingPipeline
from logsieve.agent_plugin.pipeline_config import PipelineConfig
from logsieve.bundle import Bundle
from logsieve.engine import Engine
from logsieve.engine.windows import LocalWindowEngine
from logsieve.export.data.synth import generate_hdfs
from logsieve.logs.lineformat import parse_hdfs_line
from logsieve.logs.pipeline import Event, windows_of
from logsieve.logs.records import LogRecord
from logsieve.logs.templates import TemplateMatcher
from logsieve.logs.windows import Window

pytestmark = pytest.mark.asyncio

READ_TIME = 1_750_000_000.0  # when a tail input read the raw lines (their own times win)


class _Recording(StreamingPipeline):
    """Keeps every window ``put`` and ``close`` queue, in queueing order."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.windows: list[Window[Event]] = []

    async def _enqueue(self, window: Window[Event]) -> None:
        self.windows.append(window)
        await super()._enqueue(window)


class _Drop:
    async def send(self, tag: str, record: dict[Any, Any], time: float | None = None) -> bool:
        return True


def _stream() -> tuple[list[ForwardRecord], list[LogRecord]]:
    """Forward records in every form, and the line each stands for, built without the
    served reader (``None`` time: the untrusted one, windowed at the current time)."""
    future = time.time() + 30 * 86_400.0
    served: list[ForwardRecord] = []
    offline: list[LogRecord] = []
    for i, line in enumerate(generate_hdfs(60, anomaly_rate=0.1, seed=3).lines):
        parsed = parse_hdfs_line(line)
        assert parsed is not None and parsed.time is not None
        t, text = parsed.time, parsed.text
        form = i % 5
        if form == 0:
            fields: dict[Any, Any] = {"log": line}  # tail without a parser
            when: float | None = t
            served.append(ForwardRecord("hdfs", READ_TIME, int(READ_TIME * 1e9), fields))
        else:
            if form == 1:
                fields = {"log": text + "\n", "host": "n1"}
            elif form == 2:
                fields = {"message": text.encode()}
            elif form == 3:
                fields = {"level": "INFO"}  # no text: nothing windowed
            else:
                fields = {"log": text}
            when = t
            at = future if form == 4 and i % 3 == 0 else t
            if at == future:
                when = None
            served.append(ForwardRecord("hdfs", at, int(at * 1e9), fields))
        if form != 3:
            offline.append(LogRecord(when, None, text))
    return served, offline


def _view(windows: list[Window[Event]]) -> list[tuple[Any, ...]]:
    return [
        (w.key, w.start, w.end, w.closed_by, [(e.time, e.template_id, e.text) for e in w.items])
        for w in windows
    ]


async def test_put_windows_every_record_form_as_the_offline_path(
    tiny_bundle: Bundle, tiny_engine: Engine
) -> None:
    served, offline = _stream()
    config = PipelineConfig(engine_process=False, advance_interval=0, idle_close=0)
    engine = LocalWindowEngine.for_bundle(tiny_engine, tiny_bundle)
    pipe = _Recording(config, tiny_bundle, engine, _Drop())
    await pipe.start()
    for k in range(0, len(served), 37):  # frames of odd sizes
        chunk = served[k : k + 37]
        await pipe.put(RecordBatch("hdfs", chunk, None, "forward", 100))
    await pipe.close()
    assert tiny_bundle.templates_state is not None
    matcher = TemplateMatcher.from_state(tiny_bundle.templates_state)
    want = _view(list(windows_of(offline, tiny_bundle.log_config, matcher)))
    assert len(want) > 20 and any(t is None for w in want for t, _, _ in w[4])
    assert _view(pipe.windows) == want
    stats = pipe.stats()
    assert stats["raw_parsed"] == sum(1 for r in served if r.time == READ_TIME)
