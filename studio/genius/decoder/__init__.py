"""The decoder feature (``/v1/genius/decoder``)."""
