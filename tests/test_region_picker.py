"""Regions drawn on a frame (issue 14, part 2): the painted pixels' box in the source's own
pixels, from the frame of the source the tab was given."""

from __future__ import annotations

import numpy as np
import pytest

from components.region_picker import drawn_box, source_frame
from studio.media.video import Mp4Writer


def _layer(height: int, width: int, painted: tuple[slice, slice] | None) -> np.ndarray:
    layer = np.zeros((height, width, 4), np.uint8)
    if painted is not None:
        layer[painted] = (255, 51, 102, 255)
    return layer


def test_the_box_is_the_painted_pixels_bounds_across_layers():
    value = {"background": np.zeros((96, 160, 3), np.uint8),
             "layers": [_layer(96, 160, (slice(10, 20), slice(30, 50))), _layer(96, 160, (slice(40, 41), slice(5, 6)))],
             "composite": None}
    assert drawn_box(value) == (5, 10, 50, 41)


@pytest.mark.parametrize("value", [None, {"background": None, "layers": []},
                                   {"layers": [_layer(8, 8, None)]}])
def test_nothing_painted_is_no_box(value):
    assert drawn_box(value) is None


def test_the_frame_shown_is_the_one_at_the_chosen_position(tmp_path):
    path = tmp_path / "clip.mp4"
    with Mp4Writer(path, 64, 48, 8) as writer:
        for level in (20, 120, 220):  # a dark, a mid and a bright frame
            writer.write(np.full((48, 64, 3), level, np.uint8))
    first, middle, last = (source_frame(None, "owner", str(path), "", position) for position in (0, 0.5, 1))
    assert first.shape == (48, 64, 3)
    assert abs(first.mean() - 20) < 6 and abs(middle.mean() - 120) < 6 and abs(last.mean() - 220) < 6
