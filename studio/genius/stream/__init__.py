"""The stream feature (``/v1/genius/stream``): a running generation's frames as they improve.

- ``schema``: the start request and response
- ``start``: open a stream session on a task
- ``sender``: what one client is told, adapted to how fast it reads (``AdaptiveSender``)
"""
