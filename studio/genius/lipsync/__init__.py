"""The lipsync feature (``/v1/genius/lipsync``): a face in a video made to speak an audio clip.

- ``schema``: the request (``LipSyncRequest``), the seed's response, and the stored task spec
  (``LipSyncSpec``);
- ``submit``: the audio fetched and checked, the inputs stored, the spec queued; the seed's
  response of a finished task (``lipsync_result``);
- ``run``: the worker's run of a task (classical path, then the model path if asked);
- ``classical``: the model-free pipeline (``lipsync``, ``fit_length``);
- pure algorithm modules (arrays in, arrays out): ``speech`` (per 10 ms of audio: measurements
  and labels), ``visemes`` (the viseme track per video frame), ``mouth`` (the mouth warp);
- ``animate``: the model path (Wan Animate repaints the face).
"""
