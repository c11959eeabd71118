"""Body keypoints for the driving signals of Wan-Animate: a ViTPose model through transformers.

ViTPose (Xu et al. 2022) is a *top-down* estimator: given one person's box, the frame is cut to
that box (padded by 25 % and widened to the model's 3:4 input aspect), resampled to the model's
input size, and the model predicts one heatmap per COCO keypoint (17: nose, eyes, ears,
shoulders, elbows, wrists, hips, knees, ankles). The image processor's
``post_process_pose_estimation`` takes each heatmap's peak, refines it to sub-pixel precision
(DARK) and maps it back to frame pixels; the peak's height is the keypoint's confidence.

Two models:

- ``usyd-community/vitpose-base-simple`` (``trained=True``): ViTPose-B trained on COCO, loaded
  from the Hugging Face Hub only when asked, never in tests;
- ``tiny-vitpose`` (``TINY_POSE``): the same classes with a tiny, randomly initialised
  backbone, built deterministically and saved under ``models_dir`` so every code path runs
  offline on a CPU. Its keypoints are meaningless (the weights are random).

The processor is the PIL/NumPy variant (``VitPoseImageProcessorPil``): the default one wants
torchvision, which the studio does not install, and would fall back to this one with a warning.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from studio.errors import ModelUnavailable
from studio.models.hub import hub_offline, in_cache
from studio.models.tiny import ensure_saved

log = logging.getLogger(__name__)

TINY_POSE = "tiny-vitpose"
POSE_REPO_ID = "usyd-community/vitpose-base-simple"
NUM_KEYPOINTS = 17

#: Seed of the tiny model's weight initialisation; bump together with its layout.
_SEED = 20250919
# What a finished save of the tiny model holds (weights: model.safetensors in the folder itself).
_TINY_FILES = ("config.json", "preprocessor_config.json")

class _ModelWithProcessor:
    """A model and its image processor saved together, so both load from one folder."""

    def __init__(self, model, processor):
        self.model, self.processor = model, processor

    def save_pretrained(self, folder, **kwargs) -> None:
        self.model.save_pretrained(folder)  # transformers always writes safetensors
        self.processor.save_pretrained(folder)


def build_tiny_pose() -> _ModelWithProcessor:
    """The tiny ViTPose and its processor, in memory.

    Deterministic: every call returns identical weights, because initialisation runs on a
    forked, locally seeded torch RNG (the caller's global RNG state is left untouched). The
    backbone sees 64 x 48 px in 8 x 8 patches (8 x 6 tokens, hidden size 32, 2 layers, 2 heads);
    the simple decoder upsamples 4x to 32 x 24 heatmaps, one per COCO keypoint.
    """
    import torch
    from transformers import VitPoseBackboneConfig, VitPoseConfig, VitPoseForPoseEstimation
    from transformers.models.vitpose.image_processing_pil_vitpose import VitPoseImageProcessorPil

    backbone = VitPoseBackboneConfig(image_size=(64, 48), patch_size=(8, 8), hidden_size=32, num_hidden_layers=2,
                                     num_attention_heads=2, mlp_ratio=2, out_indices=[2])
    config = VitPoseConfig(backbone_config=backbone, num_labels=NUM_KEYPOINTS)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(_SEED)
        model = VitPoseForPoseEstimation(config).eval()
    return _ModelWithProcessor(model, VitPoseImageProcessorPil(size={"height": 64, "width": 48}))


def ensure_tiny_pose(models_dir: Path) -> Path:
    """Make sure ``models_dir/tiny-vitpose`` holds the saved tiny model and processor (atomic
    save, see ``studio.models.tiny.ensure_saved``); return that folder."""
    return ensure_saved(models_dir, TINY_POSE, build_tiny_pose, files=_TINY_FILES, weight_dirs=("",))


class PoseEstimator:
    """A loaded ViTPose model and processor; ``keypoints`` estimates one person per call."""

    def __init__(self, model, processor, name: str):
        self.model = model
        self.processor = processor
        self.name = name
        self.device = next(model.parameters()).device

    def keypoints(self, frame_rgb: np.ndarray, box_xywh: Sequence[float] | None = None
                  ) -> tuple[np.ndarray, np.ndarray]:
        """COCO-17 keypoints of the person in ``box_xywh`` (pixels; ``None``: the whole frame).

        Returns ``(xy, scores)``: ``xy`` a float ``(17, 2)`` array of ``(x, y)`` frame pixels,
        ``scores`` a ``(17,)`` array of confidences in ``[0, 1]`` (the heatmap peak, clipped:
        a trained model's peaks are about 1 where it is sure). Points are kept inside the area
        the model saw (the padded box), because a heatmap cannot peak outside it; the sub-pixel
        refinement can overshoot on a flat heatmap.
        """
        import torch

        height, width = frame_rgb.shape[:2]
        box = [0.0, 0.0, float(width), float(height)] if box_xywh is None else [float(v) for v in box_xywh]
        inputs = self.processor(frame_rgb, boxes=[[box]], return_tensors="pt")
        with torch.inference_mode():
            outputs = self.model(pixel_values=inputs["pixel_values"].to(self.device, self.model.dtype))
        pose = self.processor.post_process_pose_estimation(outputs, boxes=[[box]])[0][0]
        xy = pose["keypoints"].numpy().astype(np.float64).reshape(NUM_KEYPOINTS, 2)
        scores = np.clip(pose["scores"].numpy().astype(np.float64).reshape(NUM_KEYPOINTS), 0.0, 1.0)
        low, high = self.seen_area(box)
        return np.clip(xy, low, high), scores

    def seen_area(self, box_xywh: Sequence[float]) -> tuple[np.ndarray, np.ndarray]:
        """Top-left and bottom-right ``(x, y)`` of the frame area the model sees for a box: the
        box widened or heightened to the model's input aspect, then padded by 25 %."""
        from transformers.models.vitpose.image_processing_pil_vitpose import box_to_center_and_scale

        size = self.processor.size
        centre, scale = box_to_center_and_scale(box_xywh, image_width=size["width"], image_height=size["height"])
        half = scale.astype(np.float64) * 200.0 / 2  # the processor's scale is in units of 200 px
        return centre - half, centre + half


def unavailable_reason(trained: bool) -> str | None:
    """Why the pose model cannot load here, from cheap checks (no download); ``None`` if it can."""
    if trained and hub_offline() and not in_cache(POSE_REPO_ID, "config.json"):
        return (f"the pose model {POSE_REPO_ID} is not in the local Hugging Face cache and HF_HUB_OFFLINE is set; "
                "download it first")
    return None


_lock = threading.Lock()
_cache: dict[tuple[Path, bool], PoseEstimator] = {}


def load_pose_estimator(models_dir: Path, trained: bool) -> PoseEstimator:
    """The pose estimator, loaded once per ``(models_dir, trained)`` in this process.

    ``trained=False``: the tiny model, built under ``models_dir`` on first use, on the CPU with
    one thread. ``trained=True``: ViTPose-B from the hub (``POSE_REPO_ID``), on the GPU when
    there is one; raises ``ModelUnavailable`` when it is not cached and the hub is offline, or
    when it cannot be loaded.
    """
    key = (Path(models_dir).resolve(), bool(trained))
    with _lock:
        if key not in _cache:
            _cache[key] = _load_trained() if trained else _load_tiny(key[0])
        return _cache[key]


def _load_tiny(models_dir: Path) -> PoseEstimator:
    import torch
    from transformers import VitPoseForPoseEstimation
    from transformers.models.vitpose.image_processing_pil_vitpose import VitPoseImageProcessorPil
    from transformers.utils import logging as transformers_logging

    transformers_logging.disable_progress_bar()
    # One intra-op thread, as for the tiny Wan models: OpenMP's spinning workers slow small CPU
    # ops badly when another busy process shares the machine's cores.
    torch.set_num_threads(1)
    folder = ensure_tiny_pose(models_dir)
    model = VitPoseForPoseEstimation.from_pretrained(folder).eval()
    return PoseEstimator(model, VitPoseImageProcessorPil.from_pretrained(folder), TINY_POSE)


def _load_trained() -> PoseEstimator:
    import torch
    from transformers import VitPoseForPoseEstimation
    from transformers.models.vitpose.image_processing_pil_vitpose import VitPoseImageProcessorPil
    from transformers.utils import logging as transformers_logging

    reason = unavailable_reason(trained=True)
    if reason is not None:
        raise ModelUnavailable(reason)
    transformers_logging.disable_progress_bar()
    try:
        model = VitPoseForPoseEstimation.from_pretrained(POSE_REPO_ID).eval()
        processor = VitPoseImageProcessorPil.from_pretrained(POSE_REPO_ID)
    except Exception as exc:  # network, missing files, a corrupt cache: all mean "not usable here"
        # The exception's text names cache paths on this server: it goes to the log, not the client.
        log.warning("could not load the pose model %s: %s", POSE_REPO_ID, exc)
        raise ModelUnavailable(f"could not load the pose model {POSE_REPO_ID}: {type(exc).__name__}") from exc
    if torch.cuda.is_available():
        model = model.to("cuda")
    return PoseEstimator(model, processor, POSE_REPO_ID)
