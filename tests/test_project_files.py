"""The project's own promises: the Space config, the README's commands and CI agree."""

from __future__ import annotations

from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent


def test_readme_front_matter_mirrors_spaces_yaml():
    readme = (ROOT / "README.md").read_text()
    assert readme.startswith("---\n")
    front_matter = yaml.safe_load(readme.split("---\n")[1])
    assert front_matter == yaml.safe_load((ROOT / "spaces.yaml").read_text())
    assert front_matter["app_file"] == "app.py" and (ROOT / "app.py").exists()


def test_ci_runs_the_readmes_test_command():
    readme = (ROOT / "README.md").read_text()
    assert "bash scripts/test.sh" in readme and "bash scripts/run.sh" in readme
    assert "bash scripts/test.sh" in (ROOT / ".ci" / "run").read_text()


def test_the_core_never_imports_gradio():
    offenders = [str(p.relative_to(ROOT)) for p in (ROOT / "studio").rglob("*.py")
                 if any(line.strip().startswith(("import gradio", "from gradio"))
                        for line in p.read_text().splitlines())]
    assert offenders == []


def test_the_examples_the_creative_tabs_offer_are_real_media():
    import librosa

    from components import examples
    from studio.media.video import probe_video

    clip = probe_video(Path(examples.CLIP))
    assert (clip.width, clip.height, clip.frames) == (320, 192, 24)
    x1, y1, x2, y2 = examples.BOX
    assert 0 <= x1 < x2 <= clip.width and 0 <= y1 < y2 <= clip.height
    speech, rate = librosa.load(examples.SPEECH, sr=None)
    assert len(speech) / rate > 1.0 and abs(speech).max() > 0.1  # spoken, not silence
    assert Path(examples.BALL).stat().st_size > 0
