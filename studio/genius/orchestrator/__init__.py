"""The orchestrator feature (``/v1/genius/orchestrator``)."""
