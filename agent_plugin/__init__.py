"""Forward-protocol server, streaming pipeline and flag writer (logsieve.agent_plugin)."""
