"""The inpaint feature (``/v1/genius/inpaint``)."""
