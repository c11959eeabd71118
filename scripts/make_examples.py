"""Write the example media the UI's ``gr.Examples`` offer (``assets/examples``), drawn here so
they are ours to ship: a short clip of a ball crossing a room past a blue box, a crop of the
ball (a Consistency reference) and a spoken line (espeak-ng, for Lip-Sync).

    .venv/bin/python scripts/make_examples.py
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from studio.media.video import Mp4Writer  # noqa: E402

EXAMPLES = ROOT / "assets" / "examples"
WIDTH, HEIGHT, FPS, FRAMES = 320, 192, 12, 24
BOX = (40, 110, 90, 160)  # the blue box: x1, y1, x2, y2 (Inpaint's example removes it)
SPEECH = "Hello! Welcome to the studio. Every frame is yours."


def frame(index: int) -> np.ndarray:
    """RGB: a warm gradient floor and wall, the box, and the ball part of the way across."""
    rows = np.linspace(0, 1, HEIGHT, dtype=np.float32)[:, None, None]
    image = (np.array([250, 214, 165]) * (1 - rows) + np.array([120, 72, 50]) * rows).astype(np.uint8)
    image = np.broadcast_to(image, (HEIGHT, WIDTH, 3)).copy()
    cv2.rectangle(image, BOX[:2], (BOX[2] - 1, BOX[3] - 1), (40, 80, 200), -1)
    x = int(30 + (WIDTH - 60) * index / (FRAMES - 1))
    y = int(70 + 40 * abs(np.sin(index / 3)))
    cv2.circle(image, (x, y), 18, (220, 30, 40), -1, lineType=cv2.LINE_AA)
    return image


def main() -> None:
    EXAMPLES.mkdir(parents=True, exist_ok=True)
    with Mp4Writer(EXAMPLES / "ball.mp4", WIDTH, HEIGHT, FPS) as writer:
        for index in range(FRAMES):
            writer.write(frame(index))
    crop = frame(0)[70 - 24:70 + 24, 30 - 24:30 + 24]
    cv2.imwrite(str(EXAMPLES / "ball.png"), cv2.cvtColor(crop, cv2.COLOR_RGB2BGR))
    subprocess.run(["espeak-ng", "-s", "150", "-w", str(EXAMPLES / "hello.wav"), SPEECH], check=True)


if __name__ == "__main__":
    main()
