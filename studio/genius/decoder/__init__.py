"""The decoder feature (``/v1/genius/decoder``): the step cache's measured stats.

- ``stats``: the ``GET /v1/genius/decoder/stats`` response and its summary of the aggregate
"""
