"""The stream feature (``/v1/genius/stream``)."""
