"""The masks of inpainting's tracked boxes (``studio.vision.masks`` has the formula).

The hard mask is the box grown by ``dilate`` pixels: ``MASK_DILATION_PX`` = 2 for remove (and
the model path), to absorb tracking error and anti-aliased object edges; 0 for blend. The
``feather_radius`` band outside it ramps the mask from 1 to 0 (a cosine).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from studio.genius.inpaint.checks import Box, validate_feather_radius
from studio.vision.masks import feathered_box_masks

MASK_DILATION_PX = 2


def make_masks(frame_shape: tuple[int, ...], boxes: Sequence[Box], feather_radius: int,
               dilate: int = MASK_DILATION_PX) -> list[np.ndarray]:
    """Per-frame float32 masks (H, W) in [0, 1]: 1 on the box grown by ``dilate``, a cosine
    ramp over the ``feather_radius`` band outside it, 0 beyond; the radius is checked against
    the frame (``checks.validate_feather_radius``)."""
    return feathered_box_masks(frame_shape, boxes, validate_feather_radius(feather_radius, frame_shape), dilate)
