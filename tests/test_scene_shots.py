"""The Scenes tab's shot buttons and timeline strip (issue 14, part 3): add, remove and reorder
shots without editing the table by hand (or its right-click menu), and see the edit's shape."""

from __future__ import annotations

import re

import pandas as pd

from components.scene_tab import EXAMPLE, add_shot, move_shot, remove_shot
from components.scene_timeline import timeline_html

SHOTS = [["castle at dawn", 2], ["knight's armour", 3], ["ride through the forest", 4]]


def test_a_new_shot_goes_at_the_end_with_the_last_ones_length():
    rows, picked = add_shot(pd.DataFrame(SHOTS, columns=["prompt", "duration (s)"]))
    assert rows == SHOTS + [["", 4]] and picked == 3
    assert add_shot([])[0] == [["", 2]]


def test_the_picked_shot_is_removed_or_the_last_one_and_one_always_stays():
    assert remove_shot(SHOTS, 1) == ([SHOTS[0], SHOTS[2]], 1)
    assert remove_shot(SHOTS, None) == (SHOTS[:2], 1)
    assert remove_shot([SHOTS[0]], 0) == ([SHOTS[0]], 0)


def test_a_picked_shot_moves_up_and_down_and_stays_picked():
    assert move_shot(SHOTS, 2, -1) == ([SHOTS[0], SHOTS[2], SHOTS[1]], 1)
    assert move_shot(SHOTS, 0, -1) == (SHOTS, 0)  # already first
    assert move_shot(SHOTS, 1, 1) == ([SHOTS[0], SHOTS[2], SHOTS[1]], 2)
    assert move_shot(SHOTS, None, 1) == (SHOTS, None)  # nothing picked: nothing moves


def test_the_gradio_table_value_forms_all_read_the_same():
    as_dict = {"headers": ["prompt", "duration (s)"], "data": EXAMPLE}
    assert add_shot(as_dict)[0][:-1] == [list(r) for r in EXAMPLE]


def test_the_timeline_strip_gives_each_shot_its_share_of_the_edit():
    strip = timeline_html([["castle at dawn", 1], ["knight rides", 3]], "crossfade")
    widths = [float(w) for w in re.findall(r"flex-grow: ([0-9.]+)", strip)]
    assert widths == [0.25, 0.75]
    assert strip.index("castle at dawn") < strip.index("crossfade") < strip.index("knight rides")
    assert "2 shots, 4 s" in strip


def test_the_timeline_strip_escapes_prompts_and_says_when_it_is_empty():
    strip = timeline_html([['<img src=x onerror="alert(1)">', 2]], "auto")
    assert "<img" not in strip and "&lt;img" in strip
    assert "No shots yet" in timeline_html([], "auto")
