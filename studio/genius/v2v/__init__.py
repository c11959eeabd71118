"""The V2V feature (``/v1/genius/v2v``): transform a video by one of six modes, classically or
through a model.

Modules:

- ``schema``: the request (``V2VRequest``), the summary (``V2VSummary``) and the typed task
  spec (``V2VSpec``).
- ``submit``: checks a request, stores its inputs, queues its spec (the paths are described there).
- ``run``: the worker's run (dispatch to a model path, or the classical transform streamed).
- ``summary``: ``GET /v1/genius/v2v/{task_id}``.
- ``inputs``: the reference image / video stored with a task.
- Model paths: ``video_to_video`` (WanVideoToVideo), ``vace`` (Wan VACE with a reference
  image), ``animate`` (Wan Animate for motion_transfer).
- Classical algorithm (pure, arrays in / arrays out): ``modes`` (``MODES`` and the ``transform``
  dispatcher), ``interpolation``, ``upscale``, ``enhancement``, ``colour`` (colorization and
  style transfer), ``motion`` (motion transfer), ``temporal`` (temporal smoothing) and
  pixel building blocks in ``studio.vision.pixels`` (warping, occlusion, blending, Lab).
"""
