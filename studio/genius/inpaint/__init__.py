"""The inpaint feature (``/v1/genius/inpaint``): remove, replace, blend, background, extend.

- ``schema``: the request (``InpaintRequest``), its per-mode image rule, and the stored task
  spec (``InpaintSpec``);
- ``submit``: the request checked and resolved into its spec, and queued;
- ``run``: the worker's run of a task (classical path, or the model path);
- ``classical``: which path a request takes (``plan_inpaint``) and the classical dispatcher;
- pure algorithm modules (arrays in, arrays out): ``checks`` (input conventions), ``tracking``
  (the box through the clip), ``masks`` (feathered masks, composites), ``removal``, ``blend``,
  ``background``, ``extend``;
- ``vace``: the model path (Wan VACE).
"""
