"""The batch feature (``/v1/genius/batch``)."""
