"""The consistency feature (``/v1/genius/consistency``)."""
