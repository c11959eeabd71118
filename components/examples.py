"""The example media the creative tabs' ``gr.Examples`` offer (written by scripts/make_examples.py)."""

from __future__ import annotations

from pathlib import Path

EXAMPLES_DIR = Path(__file__).resolve().parent.parent / "assets" / "examples"
CLIP = str(EXAMPLES_DIR / "ball.mp4")  # 2 s at 12 fps, 320x192: a red ball crosses past a blue box
BOX = (40, 110, 90, 160)  # the blue box in CLIP: x1, y1, x2, y2
BALL = str(EXAMPLES_DIR / "ball.png")  # the red ball, cropped from CLIP's first frame
SPEECH = str(EXAMPLES_DIR / "hello.wav")  # a spoken line (espeak-ng), about 3 s
LABEL = "Try an example"
