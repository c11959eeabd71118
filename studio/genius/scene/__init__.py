"""The scene feature (``/v1/genius/scene``)."""
