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
    from studio.genius import inpaint_task, v2v_task, v2v_vace

    assert _files_matching(r"^NEGATIVE_PROMPT\s*=") == ["studio/engine/request.py"]
    assert v2v_task.NEGATIVE_PROMPT is v2v_vace.NEGATIVE_PROMPT is inpaint_task.NEGATIVE_PROMPT is NEGATIVE_PROMPT
