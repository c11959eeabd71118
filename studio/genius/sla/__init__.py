"""The SLA monitor, a package (see ``monitor.py`` for the definitions and formulas).

Callers import from here; the modules behind it may move.
"""

from studio.genius.sla.monitor import (CONTENT_TYPE_LATEST, DEFAULT_LEVEL, SLA_LEVELS, HistoryPoint, SlaLevel,
                                       SlaMonitor, SlaStatus, SlaViolation, cuda_memory_bytes, percentiles)

__all__ = ["SLA_LEVELS", "DEFAULT_LEVEL", "SlaLevel", "SlaStatus", "SlaViolation", "HistoryPoint",
           "SlaMonitor", "cuda_memory_bytes", "percentiles", "CONTENT_TYPE_LATEST"]
