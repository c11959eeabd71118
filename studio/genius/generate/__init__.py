"""Text-to-video (``POST /v1/generate``, the Generate tab, ``/generate``): the studio's own feature,
in the same shape as the genius features.

- ``submit.py``: a request resolved (model: the server default, or the Model Orchestrator's pick
  for ``auto``; seed: drawn when absent), estimated, stored as its typed ``GenerationSpec`` and
  queued.

Its request and stored spec (``GenerationRequest``, ``GenerationSpec``) live in
``studio.engine.request`` and its run in ``studio.engine.t2v`` + the worker: the engine's
planner turns the spec into a ``GenerationPlan``, and the queue batches text-to-video tasks of
one shape into a single pipeline call (Batch Inference), a decision only the queue can make.
"""
