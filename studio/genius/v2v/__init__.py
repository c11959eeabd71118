"""The v2v feature (``/v1/genius/v2v``)."""
