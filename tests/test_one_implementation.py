"""Each shared routine exists once (issue 11): out-of-memory handling, the model paths' negative
prompt, and the vision primitives. A second copy drifts (the V2V model path had no OOM handling,
and a shorter negative prompt than the other model paths); these fail when one comes back."""

from __future__ import annotations

import re
from pathlib import Path

STUDIO = Path(__file__).resolve().parent.parent / "studio"


def _files_matching(pattern: str) -> list[str]:
    """The modules under studio/ (relative, posix) whose source matches ``pattern`` (multiline)."""
    found = re.compile(pattern, re.MULTILINE)
    return sorted(path.relative_to(STUDIO.parent).as_posix() for path in STUDIO.rglob("*.py")
                  if found.search(path.read_text(encoding="utf-8")))


def test_one_out_of_memory_path():
    assert _files_matching(r"except\s+torch\.OutOfMemoryError") == ["studio/engine/run.py"]


def test_one_negative_prompt():
    from studio.engine.request import NEGATIVE_PROMPT
    from studio.genius.inpaint import vace as inpaint_vace
    from studio.genius.v2v import vace as v2v_vace
    from studio.genius.v2v import video_to_video as v2v_video_to_video

    assert _files_matching(r"^NEGATIVE_PROMPT\s*=") == ["studio/engine/request.py"]
    assert v2v_video_to_video.NEGATIVE_PROMPT is v2v_vace.NEGATIVE_PROMPT is inpaint_vace.NEGATIVE_PROMPT is NEGATIVE_PROMPT


def test_one_face_detector():
    assert _files_matching(r"CascadeClassifier\(") == ["studio/vision/faces.py"]


def test_vision_is_a_low_layer():
    # studio.vision sits under the features and the queue: it may use numpy, SciPy's filters, OpenCV,
    # config, errors.
    import ast

    allowed = {"numpy", "scipy.ndimage", "cv2", "studio.config", "studio.errors", "studio.vision", "__future__",
               "threading", "dataclasses", "collections", "typing", "math", "functools"}
    for path in (STUDIO / "vision").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else \
                [node.module or ""] if isinstance(node, ast.ImportFrom) else []
            for name in names:
                assert any(name == a or name.startswith(a + ".") for a in allowed), f"{path.name} imports {name}"


def test_faces_box_format():
    import numpy as np

    from studio.vision.faces import detect_faces

    none = detect_faces(np.zeros((64, 64), np.uint8))
    assert none.shape == (0, 4) and none.dtype == np.int64


def test_one_optical_flow():
    import numpy as np

    from studio.vision.flow import Flow, auto_preset, dense_flow

    assert _files_matching(r"DISOpticalFlow_create") == ["studio/vision/flow.py"]
    rng = np.random.default_rng(0)
    a = (rng.random((48, 64)) * 255).astype(np.uint8)
    a = np.ascontiguousarray(np.kron(a[::4, ::4], np.ones((4, 4), np.uint8)))  # blocky: DIS can follow it
    b = np.roll(a, 2, axis=1)
    flow = dense_flow(a, b)
    assert flow.shape == (48, 64, 2) and flow.dtype == np.float32
    assert abs(float(np.median(flow[8:-8, 8:-8, 0])) - 2.0) < 0.5  # a(x) ~ b(x + flow): b is a moved right
    assert auto_preset((480, 854)) == "fast" and auto_preset((112, 160)) == "medium"
    stream = Flow()
    stream(a, b)
    assert stream.preset == "medium"


def test_one_point_tracker():
    import cv2
    import numpy as np

    from studio.vision.tracking import track_points

    assert _files_matching(r"calcOpticalFlowPyrLK") == ["studio/vision/tracking.py"]
    rng = np.random.default_rng(1)
    a = cv2.GaussianBlur((rng.random((120, 160)) * 255).astype(np.uint8), (5, 5), 0)
    b = np.roll(a, (2, 3), axis=(0, 1))
    points = cv2.goodFeaturesToTrack(a, maxCorners=40, qualityLevel=0.01, minDistance=3)
    for initial in (None, points + np.float32([3, 2])):
        tracked, ok = track_points(a, b, points, initial=initial, max_level=2)
        assert tracked.shape == points.shape and ok.dtype == bool and ok.sum() > 30
        shift = np.median((tracked - points).reshape(-1, 2)[ok], axis=0)
        assert np.allclose(shift, [3, 2], atol=0.1)
    hidden = b.copy()
    hidden[:, :] = 0  # nothing to follow: no point passes the forward-backward check
    assert not track_points(a, hidden, points)[1].any()


def test_one_windowing_helper():
    from studio.engine.animate import segment_count
    from studio.engine.windows import balanced_windows, four_k_plus_1, sliding_windows, window_count

    # frame windows (plural: transitions' SSIM has a Gaussian ``_window``, another thing)
    assert _files_matching(r"^def \w*windows\(|^def four_k_plus_1\(") == ["studio/engine/windows.py"]
    assert [four_k_plus_1(n) for n in (1, 2, 5, 6, 9)] == [1, 5, 5, 9, 9]
    assert balanced_windows(40, 33, 5) == [(0, 20, 0, 21), (20, 40, 5, 25)]
    # the count is what the streaming windows make, and what Wan Animate's segments follow
    for frames in range(1, 120):
        made = sum(1 for _ in sliding_windows(range(frames), 33, 5))
        assert window_count(frames, 33, 5) == made == segment_count(frames, 33)
