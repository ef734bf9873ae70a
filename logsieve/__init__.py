"""logsieve: log anomaly detection inside the log pipeline."""

__version__ = "0.1.0"
