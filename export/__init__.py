"""Offline side: datasets, synthetic logs, training, export (logsieve.export)."""
