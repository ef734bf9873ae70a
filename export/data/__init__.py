"""Log data: line readers, dataset readers and splits, log formats, the synthetic generator,
and :func:`~logsieve.export.data.prepare.prepare` (datasets → encoded, split windows)."""
