"""The consistency feature (``/v1/genius/consistency``): registered entities tracked through a video.

- ``schema``: requests, responses, errors and the stored spec (``ConsistencySpec``)
- ``entities``: register, list and delete entities; ``task``: their store (``EntityStore``)
- ``submit``: queue a tracking task; ``run``: its run (the worker's ``consistency`` task);
  ``result``: the seed's response of a finished one
- ``reference``, ``detection``, ``scoring``, ``tracker``: the tracker itself (pure: arrays in,
  arrays out), each with its formulas
"""
