"""The lipsync feature (``/v1/genius/lipsync``)."""
