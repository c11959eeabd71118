"""The batch feature (``/v1/genius/batch``): many prompts as tasks of one batch.

- ``schema``: the request, the responses and the batch row's record (``BatchRecord``)
- ``submit``: queue a batch, and read its status
"""
