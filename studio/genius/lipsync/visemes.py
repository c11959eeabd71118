"""Lip-sync's viseme track: one viseme and four mouth parameters per video frame, from the audio.

Visemes are the seed's five plus ``rest`` (mouth as in the source frame):

=====  =========================  ==============================================
PP     bilabial p, b, m           lips pressed together
FF     fricatives f, v, s, sh, th lower lip tucked under the teeth, lips near closed
AA     open vowels                jaw dropped, mouth wide open
EE     front vowels i, e          lips spread (a wide smile), slightly open
OO     rounded vowels u, o        lips pursed: narrow, small round opening
rest   silence                    the source frame is left untouched
=====  =========================  ==============================================

Per 10 ms analysis frame the speech is measured and labelled in ``studio.genius.lipsync.speech``
(LPC formants, energy, zero crossings, spectral shape; the rules and thresholds are there).

Video frame ``i`` covers ``[i/fps, (i+1)/fps)`` and takes the analysis frames centred in it:
PP if at least 20 ms of them (or all of them) are PP, otherwise the most frequent label
(ties go to the non-rest one). Then runs shorter than 2 video frames are merged into the
longer neighbouring run, except PP, which may last a single frame (a p closure is 50-100 ms).

Mouth parameters per video frame (each 0..1), with ``loud = clip((L - threshold) /
(peak - threshold))``, ``f1 = clip((F1 - 250) / 550)``, ``f2 = clip((F2 - 800) / 1600)``
(means over the frame's measured vowel analysis frames; a frame without any takes the clip's
mean) and ``energy = 0.6 + 0.4 * loud``:

- ``openness``: AA ``(0.55 + 0.45 f1) energy``, EE ``(0.2 + 0.2 f1) energy``,
  OO ``(0.2 + 0.15 f1) energy``, FF 0.05, PP and rest 0;
- ``width`` (spread): EE ``0.5 + 0.5 f2``, AA ``0.25 f2``, FF 0.2, PP 0.15, others 0;
- ``rounding`` (pursing): OO ``0.5 + 0.5 (1 - f2)``, others 0;
- ``closure`` (lips pressed): PP 1, FF 0.5, others 0.

``openness``, ``width`` and ``rounding`` of vowel and FF frames are smoothed with a
[1/4, 1/2, 1/4] kernel (co-articulation); PP and rest frames keep their exact values so a
closure is never half open and a pause stays untouched.
"""

from __future__ import annotations

from dataclasses import dataclass

import librosa
import numpy as np

from studio.errors import InvalidRequest
from studio.genius.lipsync.speech import (
    AA,
    ANALYSIS_SR,
    EE,
    FF,
    HOP,
    OO,
    PP,
    REST,
    VISEMES,
    SpeechFeatures,
    label_analysis_frames,
    measure,
    value_runs,
)

# Video-frame labels.
PP_MIN_SECONDS = 0.02
MIN_RUN_FRAMES = 2


@dataclass(frozen=True)
class VisemeTrack:
    """One viseme and four mouth parameters (0..1) per video frame.

    ``labels`` holds indices into ``VISEMES``; ``openness`` (jaw/lip opening), ``width`` (lip
    spread), ``rounding`` (pursing) and ``closure`` (lips pressed) drive ``animate_mouth``.
    """

    fps: float
    labels: np.ndarray
    openness: np.ndarray
    width: np.ndarray
    rounding: np.ndarray
    closure: np.ndarray
    duration_seconds: float

    def __len__(self) -> int:
        return len(self.labels)

    @property
    def names(self) -> list[str]:
        """The viseme name of every frame."""
        return [VISEMES[i] for i in self.labels]

    def segments(self) -> list[dict]:
        """Runs of one viseme: ``{viseme, start_frame, end_frame, start_seconds, end_seconds}``;
        ``end_frame`` is exclusive and ``end_seconds = end_frame / fps``."""
        return [{"viseme": VISEMES[label], "start_frame": start, "end_frame": end,
                 "start_seconds": round(start / self.fps, 4), "end_seconds": round(end / self.fps, 4)}
                for label, start, end in value_runs(self.labels)]

    def counts(self) -> dict[str, int]:
        """Number of segments of each viseme (``rest`` included)."""
        counts = dict.fromkeys(VISEMES, 0)
        for label, _, _ in value_runs(self.labels):
            counts[VISEMES[label]] += 1
        return counts

    def active(self) -> np.ndarray:
        """Boolean per frame: a viseme other than rest (someone is speaking)."""
        return self.labels != REST



def analyse_visemes(audio: np.ndarray, sr: int, fps: float) -> VisemeTrack:
    """Visemes of mono ``audio`` (``sr`` Hz) for a video at ``fps``: one per video frame,
    ``round(duration * fps)`` frames (at least 1). Rules and thresholds: module docstring."""
    y = np.asarray(audio, dtype=np.float32).reshape(-1)
    if y.size == 0:
        raise InvalidRequest("the audio holds no samples")  # callers know which field it came in
    duration = y.size / sr
    if sr != ANALYSIS_SR:
        y = librosa.resample(y, orig_sr=sr, target_sr=ANALYSIS_SR)
    n_frames = max(1, round(duration * fps))
    features = measure(y)
    fine = label_analysis_frames(features)
    owner = _video_frame_of(len(fine), n_frames, fps)
    labels = _smooth_labels(_pool_labels(fine, owner, n_frames, fps))
    return _shape_track(labels, features, fine, owner, fps, duration)



# --- video frames ------------------------------------------------------------------------

def _video_frame_of(n_analysis: int, n_frames: int, fps: float) -> np.ndarray:
    """Video frame index of every analysis frame (its centre time times fps), -1 past the end."""
    owner = np.floor(np.arange(n_analysis) * HOP / ANALYSIS_SR * fps).astype(np.int64)
    owner[owner >= n_frames] = -1
    return owner


def _pool_labels(fine: np.ndarray, owner: np.ndarray, n_frames: int, fps: float) -> np.ndarray:
    """One label per video frame from the analysis frames it owns (module docstring)."""
    inside = owner >= 0
    counts = np.zeros((n_frames, len(VISEMES)))
    np.add.at(counts, (owner[inside], fine[inside]), 1)
    empty = counts.sum(axis=1) == 0
    if empty.any():  # fps above 100: borrow the analysis frame nearest the frame's centre
        centre = np.round((np.flatnonzero(empty) + 0.5) / fps * ANALYSIS_SR / HOP).astype(int)
        counts[empty, fine[np.clip(centre, 0, len(fine) - 1)]] = 1
    pp_needed = np.minimum(PP_MIN_SECONDS * ANALYSIS_SR / HOP, counts.sum(axis=1))
    tie_break = np.array([0.0, 0.0, 0.1, 0.1, 0.1, 0.1]) * 1e-3  # non-rest wins a tie
    labels = np.argmax(counts + tie_break, axis=1)
    labels[counts[:, PP] >= pp_needed] = PP
    return labels


def _smooth_labels(labels: np.ndarray) -> np.ndarray:
    """Merge runs shorter than ``MIN_RUN_FRAMES`` (PP excepted) into their longer neighbour."""
    labels = labels.copy()
    for _ in range(len(labels)):
        runs = value_runs(labels)
        short = [k for k, (label, start, end) in enumerate(runs)
                 if end - start < MIN_RUN_FRAMES and label != PP and len(runs) > 1]
        if not short:
            break
        k = short[0]
        _, start, end = runs[k]
        neighbours = [runs[j] for j in (k - 1, k + 1) if 0 <= j < len(runs)]
        label = max(neighbours, key=lambda run: run[2] - run[1])[0]
        labels[start:end] = label
    return labels


def _shape_track(labels: np.ndarray, f: SpeechFeatures, fine: np.ndarray, owner: np.ndarray,
                 fps: float, duration: float) -> VisemeTrack:
    """The mouth parameters of every video frame (formulas in the module docstring)."""
    n = len(labels)
    vowel = np.isin(fine, (AA, EE, OO)) & (owner >= 0) & np.isfinite(f.f1) & np.isfinite(f.f2)
    loud = np.clip((f.level_db - f.threshold_db) / max(f.peak_db - f.threshold_db, 1e-6), 0, 1)
    loud = _frame_mean(loud, owner >= 0, owner, n, 0.0)
    f1 = np.clip((_frame_mean(f.f1, vowel, owner, n, 500.0) - 250.0) / 550.0, 0, 1)
    f2 = np.clip((_frame_mean(f.f2, vowel, owner, n, 1500.0) - 800.0) / 1600.0, 0, 1)
    energy = 0.6 + 0.4 * loud
    is_ = {v: labels == v for v in range(len(VISEMES))}
    openness = np.select([is_[AA], is_[EE], is_[OO], is_[FF]],
                         [(0.55 + 0.45 * f1) * energy, (0.2 + 0.2 * f1) * energy,
                          (0.2 + 0.15 * f1) * energy, np.full(n, 0.05)], 0.0)
    width = np.select([is_[EE], is_[AA], is_[FF], is_[PP]], [0.5 + 0.5 * f2, 0.25 * f2, np.full(n, 0.2),
                                                             np.full(n, 0.15)], 0.0)
    rounding = np.where(is_[OO], 0.5 + 0.5 * (1 - f2), 0.0)
    closure = np.select([is_[PP], is_[FF]], [np.ones(n), np.full(n, 0.5)], 0.0)
    moving = ~(is_[PP] | is_[REST])
    openness, width, rounding = (_coarticulate(x, moving) for x in (openness, width, rounding))
    return VisemeTrack(float(fps), labels.astype(np.int64), *(x.astype(np.float32) for x in
                       (openness, width, rounding, closure)), float(duration))


def _frame_mean(values: np.ndarray, use: np.ndarray, owner: np.ndarray, n: int, default: float) -> np.ndarray:
    """Mean of ``values[use]`` per video frame; frames with none get the clip mean (or ``default``)."""
    use = use & (owner >= 0)
    total = np.bincount(owner[use], weights=values[use], minlength=n)[:n]
    count = np.bincount(owner[use], minlength=n)[:n]
    fallback = float(values[use].mean()) if use.any() else default
    return np.where(count > 0, total / np.maximum(count, 1), fallback)


def _coarticulate(x: np.ndarray, moving: np.ndarray) -> np.ndarray:
    """[1/4, 1/2, 1/4] smoothing applied to the ``moving`` frames only."""
    padded = np.pad(x, 1, mode="edge")
    smooth = 0.25 * padded[:-2] + 0.5 * padded[1:-1] + 0.25 * padded[2:]
    return np.where(moving, smooth, x)
