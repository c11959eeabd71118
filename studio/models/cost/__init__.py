"""The one cost model: how much GPU memory and time a planned run needs on this device.

The engine's estimates (``studio.engine.estimate``), the loader's choice of memory profile and
batch fit (``studio.models.loader``) and the Model Orchestrator's recommendations
(``studio.genius.orchestrator.selection``) all read these formulas; nothing else computes memory or time.

It is split by concern, each module documenting its own formulas and where their figures come from:

- ``studio.models.cost.architectures``: the architecture data of every catalog model (layer sizes,
  parameter counts of the real configs), what both formulas are computed from;
- ``studio.models.cost.vram``: the VRAM model: peak GPU memory per model x size x memory profile,
  the fit rule, and what a batch of same-shape runs needs;
- ``studio.models.cost.timing``: the time model: measured rates or their documented priors,
  FLOPs per step, this device's throughput, and the seconds a run takes.
"""
