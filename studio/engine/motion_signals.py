"""Driving signals for Wan-Animate: a pose skeleton video and a face-crop video from a source clip.

``WanAnimatePipeline`` animates a character image with two videos made from the driving clip
(Wan2.2-Animate's preprocessing): the body skeleton drawn on black at the output size, which
carries the body motion, and square crops of the face, which carry the expression (the
pipeline resizes them to its motion encoder's input, 512 px for the real model).
``driving_signals`` makes both; this module does no task or file I/O.

Pose video (``render_pose``)
----------------------------
Keypoints come from a ViTPose model (``studio.models.pose``) in the COCO-17 order and are
drawn in the 18-point OpenPose body layout, the skeleton style pose-conditioned video models
are trained on. OpenPose point ``i`` and the COCO keypoint it comes from:

====  ==========  ====  ===========  ====  ===========
 0    nose (0)     6    l elbow (7)   12   l knee (13)
 1    neck *       7    l wrist (9)   13   l ankle (15)
 2    r shldr (6)  8    r hip (12)    14   r eye (2)
 3    r elbow (8)  9    r knee (14)   15   l eye (1)
 4    r wrist (10) 10   r ankle (16)  16   r ear (4)
 5    l shldr (5)  11   l hip (11)    17   l ear (3)
====  ==========  ====  ===========  ====  ===========

\\* COCO has no neck: it is the midpoint of the two shoulders, present when both are.

The 17 limbs, in drawing order, join neck-right shoulder, neck-left shoulder, the right arm
(shoulder-elbow, elbow-wrist), the left arm, neck-right hip, the right leg (hip-knee,
knee-ankle), neck-left hip, the left leg, neck-nose, nose-right eye, right eye-right ear,
nose-left eye, left eye-left ear. Limb ``k`` and point ``k`` take the ``k``-th of 18 colours
that walk the hue circle in steps of 20 degrees from red (255, 0, 0) through yellow, green,
cyan, blue and magenta back towards red: every channel is 0, 85, 170 or 255.

A limb is a filled ellipse along the segment (major axis the segment, minor semi-axis the
stick width) in 60 % of its colour, i.e. 60 % opacity over the black canvas; a later limb
covers an earlier one where they overlap. Points are filled circles of radius = stick width
in full colour, drawn over the limbs. Stick width = ``max(2, round(4 * min(H, W) / 512))``
px (OpenPose's 4 px at 512 px). A keypoint scoring below ``threshold`` (0.3) is not drawn,
nor is any limb that touches it.

Face video (``follow_face``, ``face_crops``)
---------------------------------------------
The user's ``face_region`` pins the box on every frame (``studio.vision.face_track.track_face``
validates it). Otherwise ``follow_face`` tracks a face that may travel across the frame - the
driving clip is a whole moving person, not a talking head:

1. ``studio.vision.face_track.detect_face`` (Haar cascade) runs on every frame.
2. A detection is dropped as a false positive when its centre lies more than
   ``FACE_MAX_SHIFT`` (0.5) face sizes from the median centre of the detections within
   ``FACE_WINDOW`` (3) frames either side of it (itself included), or its width or height
   differs from their median by more than ``FACE_MAX_SIZE_CHANGE`` (40 %). A face size is the
   mean of that median width and height. Comparing with neighbours in time, not with the whole
   clip's median, keeps every detection of a face that moves far but steadily. Should every
   detection fail the test, the one that fails it least (the first, on a tie) is kept.
3. Frames without a kept detection get the box (centre and size) linearly interpolated between
   the nearest kept ones, or held from the first / last kept one at the ends.
4. Centre and size are smoothed so the crops do not jitter: a median over
   ``FACE_MEDIAN_FRAMES`` (3) frames, then a mean over ``FACE_MEAN_FRAMES`` (3). The track is
   extended past its ends by point reflection (``2 x[0] - x[1]``, ...), so a face moving at
   constant speed is not pulled back at the first and last frames.

A clip where no frame has a face raises ``InvalidRequest`` ("no face found in the video; ...").

Body box (``body_from_face``)
-----------------------------
ViTPose is top-down: it reads one person inside a box. Without a detector for whole people,
the box is derived from the tracked face with body proportions: an adult is about 7.5 heads
tall and spans about as much across with the arms stretched out, and a Haar face box (brows to
mouth) is about 1 / 1.4 of a head. So the box is centred on the face, ``BODY_WIDTH_FACES`` (10)
face-box widths wide, from ``BODY_ABOVE_FACES`` (0.6) face-box heights above the face box (the
crown) to ``BODY_BELOW_FACES`` (10) below its top (the feet), clipped to the frame.
A small person in a wide frame is then read at a usable scale, where the whole frame would
shrink them to a few pixels of the model's input. ``body_box`` (pixels) overrides it.

Each crop is a square centred on the box centre with side ``1.5 * max(w, h)``: a Haar box spans
brows to mouth, and 1.5x takes in the face from above the brows to below the chin. The top of
the hair may be cut, as it is in Wan-Animate's own face crops (the box of the 68 face landmarks,
brows to chin, grown to 1.3x its area, mostly upwards): the motion encoder reads the
expression. Where the square leaves the frame it is padded with black, so the face is never
shifted or stretched; the square is then resized to ``size`` x ``size`` (area averaging when
shrinking, bicubic when enlarging).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import cv2
import numpy as np

from studio.errors import InvalidRequest
from studio.vision.face_track import detect_face, track_face

if TYPE_CHECKING:
    from studio.models.pose import PoseEstimator

POSE_THRESHOLD = 0.3
NUM_COCO_KEYPOINTS = 17
CONFIDENT_BODY_KEYPOINTS = 5  # keypoints at or above the threshold for a frame to "have a body"
LIMB_OPACITY = 0.6
STICK_WIDTH_AT_512 = 4
MIN_STICK_WIDTH = 2
FACE_CROP_SCALE = 1.5
FACE_SIZE = 512
BODY_WIDTH_FACES = 10.0  # the body box's width, in face-box widths (arm span ~ height ~ 7.5 x 1.4)
BODY_ABOVE_FACES = 0.6  # its top, in face-box heights above the face box (the crown)
BODY_BELOW_FACES = 10.0  # its bottom, in face-box heights below the face box's top (the feet)
FACE_WINDOW = 3  # frames either side whose detections a detection is checked against
FACE_MAX_SHIFT = 0.5  # face sizes a detection's centre may lie from its neighbours' median centre
FACE_MAX_SIZE_CHANGE = 0.4  # relative width / height change from the neighbours' median
FACE_MEDIAN_FRAMES = 3
FACE_MEAN_FRAMES = 3

# OpenPose point -> COCO keypoint (None: the neck, made from the shoulders); table above.
OPENPOSE_FROM_COCO = (0, None, 6, 8, 10, 5, 7, 9, 12, 14, 16, 11, 13, 15, 2, 1, 4, 3)
COCO_SHOULDERS = (5, 6)
# Limbs as pairs of OpenPose points, in OpenPose's drawing order.
LIMBS = ((1, 2), (1, 5), (2, 3), (3, 4), (5, 6), (6, 7), (1, 8), (8, 9), (9, 10),
         (1, 11), (11, 12), (12, 13), (1, 0), (0, 14), (14, 16), (0, 15), (15, 17))
# 18 hues 20 degrees apart, from red; limb k and point k share colour k (RGB).
COLOURS = ((255, 0, 0), (255, 85, 0), (255, 170, 0), (255, 255, 0), (170, 255, 0), (85, 255, 0),
           (0, 255, 0), (0, 255, 85), (0, 255, 170), (0, 255, 255), (0, 170, 255), (0, 85, 255),
           (0, 0, 255), (85, 0, 255), (170, 0, 255), (255, 0, 255), (255, 0, 170), (255, 0, 85))


# --- pose --------------------------------------------------------------------------------

def to_openpose(xy: np.ndarray, scores: np.ndarray, threshold: float = POSE_THRESHOLD
                ) -> tuple[np.ndarray, np.ndarray]:
    """COCO-17 keypoints as the 18 OpenPose body points: ``(points (18, 2), visible (18,))``.

    A point is visible when its score is at least ``threshold`` and its position is finite; the
    neck is the shoulders' midpoint, visible when both shoulders are.
    """
    xy = np.asarray(xy, dtype=np.float64).reshape(-1, 2)
    scores = np.asarray(scores, dtype=np.float64).reshape(-1)
    confident = (scores >= threshold) & np.isfinite(xy).all(axis=1)
    points = np.zeros((len(OPENPOSE_FROM_COCO), 2))
    visible = np.zeros(len(OPENPOSE_FROM_COCO), dtype=bool)
    for i, coco in enumerate(OPENPOSE_FROM_COCO):
        if coco is None:
            left, right = COCO_SHOULDERS
            points[i] = (xy[left] + xy[right]) / 2
            visible[i] = confident[left] and confident[right]
        else:
            points[i], visible[i] = xy[coco], confident[coco]
    return points, visible


def stick_width(width: int, height: int) -> int:
    """Limb half-thickness and joint radius in px: 4 at a 512 px shorter side, at least 2."""
    return max(MIN_STICK_WIDTH, round(STICK_WIDTH_AT_512 * min(width, height) / 512))


def render_pose(xy: np.ndarray, scores: np.ndarray, width: int, height: int,
                threshold: float = POSE_THRESHOLD) -> np.ndarray:
    """The OpenPose-style skeleton of COCO-17 keypoints (frame pixels) on a black ``(height,
    width, 3)`` uint8 RGB canvas; layout, colours and sizes in the module docstring."""
    canvas = np.zeros((height, width, 3), dtype=np.uint8)
    points, visible = to_openpose(xy, scores, threshold)
    stick = stick_width(width, height)
    for (a, b), colour in zip(LIMBS, COLOURS):
        if visible[a] and visible[b]:
            _draw_limb(canvas, points[a], points[b], stick, tuple(round(LIMB_OPACITY * c) for c in colour))
    for point, shown, colour in zip(points, visible, COLOURS):
        if shown:
            cv2.circle(canvas, (round(point[0]), round(point[1])), stick, colour, thickness=-1)
    return canvas


def _draw_limb(canvas: np.ndarray, start: np.ndarray, end: np.ndarray, stick: int, colour: tuple) -> None:
    """A filled ellipse from ``start`` to ``end`` (its major axis), ``stick`` px semi-minor axis."""
    (x0, y0), (x1, y1) = start, end
    length = float(np.hypot(x1 - x0, y1 - y0))
    angle = float(np.degrees(np.arctan2(y1 - y0, x1 - x0)))
    centre = (round((x0 + x1) / 2), round((y0 + y1) / 2))
    polygon = cv2.ellipse2Poly(centre, (round(length / 2), stick), round(angle), 0, 360, 1)
    cv2.fillConvexPoly(canvas, polygon, colour)


# --- face --------------------------------------------------------------------------------

def follow_face(frames: Sequence[np.ndarray], face_region: Sequence[float] | None = None,
                on_frame: Callable[[int], None] = lambda i: None) -> np.ndarray:
    """Face box ``(x, y, w, h)`` for every frame of a clip whose face may move far, ``(n, 4)`` float.

    ``face_region`` (pixels, from the user) is validated by ``track_face`` and used for every
    frame. Otherwise the face is detected on every frame, detections that disagree with their
    neighbours in time are dropped, gaps are interpolated and the track is smoothed (module
    docstring). Raises ``InvalidRequest`` when no frame has a face. ``on_frame(i)`` runs after
    frame ``i``'s detection (progress and cancellation; whatever it raises propagates).
    """
    if len(frames) == 0:
        raise InvalidRequest("the video has no frames")
    if face_region is not None:
        return track_face(frames, face_region)
    found = []
    for i, frame in enumerate(frames):
        if (box := detect_face(frame)) is not None:
            found.append((i, box))
        on_frame(i)
    if not found:
        raise InvalidRequest("no face found in the video; pass face_region [x, y, width, height] in pixels")
    index = np.array([i for i, _ in found])
    boxes = np.array([box for _, box in found], dtype=np.float64)
    track = np.concatenate([boxes[:, :2] + boxes[:, 2:] / 2, boxes[:, 2:]], axis=1)  # cx, cy, w, h
    keep = _consistent(index, track)
    every = np.arange(len(frames))
    filled = np.stack([np.interp(every, index[keep], track[keep, k]) for k in range(4)], axis=1)
    smooth = _running(_running(filled, FACE_MEDIAN_FRAMES, np.median), FACE_MEAN_FRAMES, np.mean)
    return np.concatenate([smooth[:, :2] - smooth[:, 2:] / 2, smooth[:, 2:]], axis=1)


def _consistent(index: np.ndarray, track: np.ndarray) -> np.ndarray:
    """Which detections (frame ``index``, ``(cx, cy, w, h)`` rows) agree with the median of the
    detections within ``FACE_WINDOW`` frames; at least one is kept (the least inconsistent)."""
    misfit = np.empty(len(index))
    for j, i in enumerate(index):
        local = np.median(track[np.abs(index - i) <= FACE_WINDOW], axis=0)
        shift = np.hypot(*(track[j, :2] - local[:2])) / local[2:].mean()
        change = np.abs(track[j, 2:] / local[2:] - 1).max()
        misfit[j] = max(shift / FACE_MAX_SHIFT, change / FACE_MAX_SIZE_CHANGE)
    keep = misfit <= 1
    if not keep.any():
        keep[np.argmin(misfit)] = True
    return keep


def _running(values: np.ndarray, frames: int, statistic: Callable) -> np.ndarray:
    """``statistic`` over ``frames`` consecutive rows (odd), centred; the ends are extended by
    point reflection, which keeps a linear trend unchanged up to the last row."""
    half = frames // 2
    padded = np.pad(values, ((half, half), (0, 0)), mode="reflect", reflect_type="odd")
    windows = np.stack([padded[k:k + len(values)] for k in range(frames)])
    return statistic(windows, axis=0)


def face_crop(frame: np.ndarray, box: Sequence[float], size: int = FACE_SIZE) -> np.ndarray:
    """The ``size`` x ``size`` crop of the head around one face box ``(x, y, w, h)``: a square of
    side ``1.5 * max(w, h)`` centred on the box, black where it leaves the frame."""
    x, y, w, h = (float(v) for v in box)
    side = max(1, round(FACE_CROP_SCALE * max(w, h)))
    # floor(v + 0.5), not round(): round() goes to even on .5, so a box moved by one pixel
    # could move its crop by zero or two.
    left, top = math.floor(x + w / 2 - side / 2 + 0.5), math.floor(y + h / 2 - side / 2 + 0.5)
    square = np.zeros((side, side, 3), dtype=np.uint8)
    # The part of the square inside the frame, in frame coordinates.
    x0, y0 = max(left, 0), max(top, 0)
    x1, y1 = min(left + side, frame.shape[1]), min(top + side, frame.shape[0])
    if x1 > x0 and y1 > y0:
        square[y0 - top:y1 - top, x0 - left:x1 - left] = frame[y0:y1, x0:x1]
    interpolation = cv2.INTER_AREA if side > size else cv2.INTER_CUBIC
    return cv2.resize(square, (size, size), interpolation=interpolation)


def face_crops(frames: Sequence[np.ndarray], boxes: np.ndarray, size: int = FACE_SIZE) -> list[np.ndarray]:
    """``face_crop`` of every frame; ``boxes`` is one ``(x, y, w, h)`` or one per frame ``(n, 4)``."""
    boxes = np.broadcast_to(np.asarray(boxes, dtype=np.float64).reshape(-1, 4), (len(frames), 4))
    return [face_crop(frame, box, size) for frame, box in zip(frames, boxes)]


# --- both --------------------------------------------------------------------------------

@dataclass(frozen=True)
class DrivingSignals:
    """What drives Wan-Animate, one entry per source frame.

    ``pose``: skeleton frames at the video's size; ``face``: square face crops; ``face_boxes``:
    the ``(n, 4)`` face boxes ``(x, y, w, h)`` the crops are centred on; ``keypoint_scores``: the
    ``(n, 17)`` COCO keypoint confidences.
    """

    pose: list[np.ndarray]
    face: list[np.ndarray]
    face_boxes: np.ndarray
    keypoint_scores: np.ndarray

    def summary(self) -> dict:
        """Result metadata: ``frames``; ``mean_keypoint_confidence`` over all keypoints and
        frames; ``frames_with_body``, frames with at least 5 keypoints scoring ``POSE_THRESHOLD``
        or more; ``face_box_median``, the median face box ``[x, y, w, h]`` in pixels (None
        without frames)."""
        scores = self.keypoint_scores.reshape(len(self.pose), NUM_COCO_KEYPOINTS)
        confident = (scores >= POSE_THRESHOLD).sum(axis=1) >= CONFIDENT_BODY_KEYPOINTS
        return {
            "frames": len(self.pose),
            "mean_keypoint_confidence": round(float(scores.mean()), 4) if scores.size else 0.0,
            "frames_with_body": int(confident.sum()),
            "face_box_median": ([round(float(v)) for v in np.median(self.face_boxes, axis=0)]
                                if len(self.face_boxes) else None),
        }


def driving_signals(frames: Sequence[np.ndarray], estimator: PoseEstimator,
                    face_region: Sequence[float] | None = None, body_box: Sequence[float] | None = None,
                    on_frame: Callable[[int], None] = lambda i: None, face_size: int = FACE_SIZE,
                    on_face: Callable[[int], None] = lambda i: None) -> DrivingSignals:
    """Pose video and face crops of ``frames`` (RGB uint8, one size).

    The face is tracked first (``follow_face``; ``face_region`` pins it, and a clip without a
    detectable face raises ``InvalidRequest`` before any pose is estimated; ``on_face(i)`` runs
    after each frame's detection). Then per frame: keypoints of the person in ``body_box`` (one
    ``(x, y, w, h)`` for every frame, or ``(n, 4)``; default :func:`body_from_face`), the
    skeleton, the face crop, and ``on_frame(i)``. Both hooks are the caller's progress and
    cancellation checks; whatever they raise propagates.
    """
    if len(frames) == 0:
        raise InvalidRequest("the video has no frames")
    height, width = frames[0].shape[:2]
    face_boxes = follow_face(frames, face_region, on_face)
    bodies = _body_boxes(body_box, len(frames))
    if bodies is None:
        bodies = np.array([body_from_face(box, width, height) for box in face_boxes])
    pose, face, scores = [], [], []
    for i, frame in enumerate(frames):
        xy, score = estimator.keypoints(frame, bodies[i])
        pose.append(render_pose(xy, score, width, height))
        face.append(face_crop(frame, face_boxes[i], face_size))
        scores.append(score)
        on_frame(i)
    return DrivingSignals(pose, face, face_boxes, np.asarray(scores, dtype=np.float64))


def body_from_face(face_box: Sequence[float], width: int, height: int) -> np.ndarray:
    """The box ``(x, y, w, h)`` a person with this face box occupies, by body proportions
    (module docstring), clipped to the ``width`` x ``height`` frame."""
    x, y, w, h = (float(v) for v in face_box)
    centre = x + w / 2
    x0 = max(0.0, centre - BODY_WIDTH_FACES * w / 2)
    x1 = min(float(width), centre + BODY_WIDTH_FACES * w / 2)
    y0 = max(0.0, y - BODY_ABOVE_FACES * h)
    y1 = min(float(height), y + BODY_BELOW_FACES * h)
    return np.array([x0, y0, max(1.0, x1 - x0), max(1.0, y1 - y0)])


def _body_boxes(body_box: Sequence[float] | None, n: int) -> np.ndarray | None:
    if body_box is None:
        return None
    try:
        boxes = np.broadcast_to(np.asarray(body_box, dtype=np.float64).reshape(-1, 4), (n, 4))
    except (TypeError, ValueError):
        raise InvalidRequest("body_box must be [x, y, width, height] in pixels, or one such box per frame") from None
    if not (np.isfinite(boxes).all() and (boxes[:, 2:] > 0).all()):
        raise InvalidRequest("body_box needs finite numbers and a positive width and height")
    return boxes
