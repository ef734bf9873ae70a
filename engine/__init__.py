"""Inference engines: one Engine interface, several backends (logsieve.engine)."""
