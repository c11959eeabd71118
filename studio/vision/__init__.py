"""Shared computer-vision primitives, each implemented once: face detection (``faces``), dense
optical flow (``flow``), point tracking (``tracking``)
and feathered box masks with their composites (``masks``).

A low layer: these modules use only numpy, OpenCV and ``studio.config`` / ``studio.errors``,
never the features, the queue or the edges that call them.
"""
