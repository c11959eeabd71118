"""Lip-Sync Engine without a model: visemes read from the speech itself, mouth re-shaped in place.

Pipeline (``lipsync``): ``analyse_visemes`` turns the audio into one viseme per video frame,
``track_face`` finds the face (or takes the user's ``face_region``), ``fit_length`` makes the
clip as long as the audio, and ``animate_mouth`` warps the mouth of each frame into its viseme.

Visemes are the seed's five plus ``rest`` (mouth as in the source frame):

=====  =========================  ==============================================
PP     bilabial p, b, m           lips pressed together
FF     fricatives f, v, s, sh, th lower lip tucked under the teeth, lips near closed
AA     open vowels                jaw dropped, mouth wide open
EE     front vowels i, e          lips spread (a wide smile), slightly open
OO     rounded vowels u, o        lips pursed: narrow, small round opening
rest   silence                    the source frame is left untouched
=====  =========================  ==============================================

Audio analysis (``analyse_visemes``)
------------------------------------
The audio is resampled to 16 kHz and analysed in 25 ms windows every 10 ms ("analysis
frames"; a video frame lasts 33-42 ms, too long to see a 50 ms lip closure in). Per analysis
frame, all with librosa on the whole signal:

- level ``L`` = 20 log10(RMS) in dB (floored at -100 dB);
- zero-crossing rate ``ZCR`` (crossings per sample);
- spectral centroid (Hz), spectral flatness (0 tonal .. 1 noise) from a 512-point STFT;
- low-band ratio = power below 400 Hz / total power (nasal murmur and voice bar);
- formants F1, F2: 18th-order LPC (``2 + sr/1000``, Markel & Gray) of the pre-emphasised
  (0.97), Hamming-windowed frame; the roots of the LPC polynomial in the upper half plane give
  frequencies ``angle * sr / 2pi`` and bandwidths ``-(sr/pi) ln|root|``; candidates between
  180 Hz and 5 kHz with a bandwidth under 400 Hz are sorted, the lowest is F1, the next F2;
  an F1 above 1100 Hz means the LPC missed the first formant, and the frame is unmeasured
  (its vowel class is borrowed from the nearest measured vowel frame).

Speech activity: ``speech = L > max(floor + 10 dB, peak - 35 dB)``, where ``floor`` is the 5th
percentile of ``L`` over the clip (its noise floor) and ``peak`` the 99th percentile. Every
analysis frame is then one of (``local`` = the highest ``L`` within +-150 ms):

- *fricative*: speech with hiss: ``ZCR >= 0.3`` and (centroid >= 2500 Hz or flatness >= 0.1),
  or flatness >= 0.1 with centroid >= 2800 Hz (weak f and th keep a low ZCR);
- *murmur*: speech, not fricative, low-band ratio >= 0.6, ``ZCR < 0.2`` and
  ``L <= local - 10 dB`` - voiced with the mouth shut (m, n, the voice bar of b, d);
- *weak*: speech, not fricative or murmur, ``L <= local - 18 dB`` and flatness >= 0.01 -
  noisy leakage of a closure, a burst (quiet *tonal* frames are vowel onsets and decays);
- *vowel*: the remaining speech (vowels, glides, liquids); runs shorter than 30 ms are too
  short to be a vowel and count as weak;
- *pause*: no speech for 150 ms or more; shorter silences inside speech are stop closures.

The first and last frame of a stretch of speech only half overlap it and take the class of
their inner neighbour.

Consonants: each run of non-vowel frames between vowels (or between a vowel and a pause) is one
consonant. It is a *closure* when it holds a murmur, a weak frame or a short silence (the vocal
tract was shut: p, b, m, t, d, n, k, g) and fewer than half its frames are fricative. A
closure is PP when the lips made it, read from three place cues; it must pass every cue that
can be measured, and at least one of the last two:

- release: the median spectral centroid of its weak and fricative frames (the burst) is below
  3 kHz - lip releases are diffuse and low, tongue releases (t, k) put their energy higher;
- nasal resonance: for a nasal murmur (at least 50 ms, within 17 dB of ``local``; a quieter
  murmur is a voice bar), its median F2 is at most 1400 Hz - m resonates lower than n;
- F2 locus, per neighbouring vowel of at least 80 ms: lips closing lower F2 towards the
  consonant (labial locus about 0.7-1 kHz, below nearly every vowel's F2), the tongue raises
  it (alveolar about 1.8 kHz, velar higher). With ``edge`` = median of the first 3 measured
  F2 values within 50 ms of the consonant and ``body`` = median F2 50-100 ms into the vowel,
  labial means ``edge <= 1.03 * body`` and ``edge < 2000 Hz``.

A labial closure that starts speech after a pause also closes the lips during the 30 ms before
it. Fricative frames are FF. Other consonant frames (t, d, n, k, g and the gaps they leave)
take the viseme of the nearest vowel: the tongue, not the lips, makes them. Known limits:
alveolars before a front vowel (n, d in "need") can pass the locus test, and the rules are
tuned on adult speech at usual loudness; below about 20 dB SNR closures are missed.

Vowels by formants (absolute values; adult voices):

- AA: ``F1 >= 560 Hz`` (open jaw);
- EE: ``F1 < 560 Hz`` and ``F2 >= 1750 Hz`` (front, spread lips);
- OO: ``F1 < 560 Hz`` and ``F2 < 1750 Hz`` (back, rounded lips).

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

from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import cv2
import librosa
import numpy as np
from scipy.ndimage import maximum_filter1d

from studio.errors import InvalidRequest
from studio.vision.face_track import track_face

VISEMES = ("rest", "PP", "FF", "AA", "EE", "OO")
REST, PP, FF, AA, EE, OO = range(len(VISEMES))

ANALYSIS_SR = 16000
HOP = 160  # 10 ms
WINDOW = 400  # 25 ms
N_FFT = 512
LPC_ORDER = 2 + ANALYSIS_SR // 1000
FORMANT_MIN_HZ = 180.0
FORMANT_MAX_HZ = 5000.0
FORMANT_MAX_BANDWIDTH_HZ = 400.0
F1_MAX_HZ = 1100.0

# Speech activity and frame classes (dB relative to the clip; see the module docstring).
FLOOR_MARGIN_DB = 10.0
PEAK_RANGE_DB = 35.0
LOCAL_SPAN = 31  # analysis frames: +-150 ms
FRICATIVE_ZCR = 0.3
FRICATIVE_CENTROID_HZ = 2500.0
FRICATIVE_FLATNESS = 0.1
WEAK_FRICATIVE_CENTROID_HZ = 2800.0
LOW_BAND_HZ = 400.0
MURMUR_LOW_RATIO = 0.6
MURMUR_MAX_ZCR = 0.2
MURMUR_DROP_DB = 10.0
WEAK_DROP_DB = 18.0
WEAK_MIN_FLATNESS = 0.01
MIN_VOWEL_FRAMES = 3
PAUSE_FRAMES = 15
PRE_RELEASE_CLOSURE_FRAMES = 3

# Place of articulation from the F2 locus.
LABIAL_EDGE_FRAMES = 3
LABIAL_BODY_FRAMES = (5, 10)
LABIAL_TOLERANCE = 1.03
LABIAL_MAX_EDGE_HZ = 2000.0
LABIAL_MAX_RELEASE_CENTROID_HZ = 3000.0
NASAL_MIN_FRAMES = 5
LABIAL_MAX_NASAL_F2_HZ = 1400.0
NASAL_MAX_DROP_DB = 17.0

# Vowel classes.
OPEN_F1_HZ = 560.0
FRONT_F2_HZ = 1750.0

# Video-frame labels.
PP_MIN_SECONDS = 0.02
MIN_RUN_FRAMES = 2

# Face and mouth proportions (fractions of the face box; see ``mouth_region``).
MOUTH_CENTRE_Y = 0.81
MOUTH_HALF_WIDTH = 0.22
LIP_HALF_HEIGHT = 0.07
REGION_HALF_WIDTH = 0.38
REGION_ABOVE = 0.17
REGION_BELOW = 0.26
LIP_BAND = 2.3  # lip half-heights around the lip line that spread, purse and smile move
BAND_HALF_WIDTH = 1.5  # lip half-widths around the centre that they move
# Share of a parting taken by the lower lip: the jaw drops to open; both lips meet to press.
LOWER_SHARE_OPEN = 0.65
LOWER_SHARE_PRESS = 0.5

# Mouth cavity painted where the lips part (a dark red-brown, as lit from the front).
CAVITY_RGB = (62, 24, 28)
CAVITY_OPACITY = 0.9

# Expressions: biases added to every frame's mouth parameters, pauses included (the seed
# names "happy"; the others are the usual set). happy: corners up, lips spread; sad: corners
# down, lips narrower; surprised: mouth a little open and round; angry: lips pressed, corners down.
EXPRESSIONS = {
    "neutral": {"openness": 0.0, "width": 0.0, "rounding": 0.0, "closure": 0.0, "corner": 0.0},
    "happy": {"openness": 0.0, "width": 0.3, "rounding": 0.0, "closure": 0.0, "corner": 1.0},
    "sad": {"openness": 0.0, "width": -0.15, "rounding": 0.0, "closure": 0.0, "corner": -1.0},
    "surprised": {"openness": 0.3, "width": 0.0, "rounding": 0.3, "closure": 0.0, "corner": 0.0},
    "angry": {"openness": 0.0, "width": 0.1, "rounding": 0.0, "closure": 0.4, "corner": -0.5},
}
MAX_INTENSITY = 2.0

# Internal analysis-frame classes.
_SILENCE, _VOWEL, _FRICATIVE, _MURMUR, _WEAK = range(5)


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
                for label, start, end in _runs(self.labels)]

    def counts(self) -> dict[str, int]:
        """Number of segments of each viseme (``rest`` included)."""
        counts = dict.fromkeys(VISEMES, 0)
        for label, _, _ in _runs(self.labels):
            counts[VISEMES[label]] += 1
        return counts

    def active(self) -> np.ndarray:
        """Boolean per frame: a viseme other than rest (someone is speaking)."""
        return self.labels != REST


@dataclass(frozen=True)
class _Features:
    """Per analysis frame (10 ms) measurements; see the module docstring."""

    level_db: np.ndarray
    zcr: np.ndarray
    centroid: np.ndarray
    flatness: np.ndarray
    low_ratio: np.ndarray
    f1: np.ndarray
    f2: np.ndarray
    threshold_db: float
    peak_db: float

    @property
    def speech(self) -> np.ndarray:
        return self.level_db > self.threshold_db


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
    features = _measure(y)
    fine = _label_analysis_frames(features)
    owner = _video_frame_of(len(fine), n_frames, fps)
    labels = _smooth_labels(_pool_labels(fine, owner, n_frames, fps))
    return _shape_track(labels, features, fine, owner, fps, duration)


# --- measurements ------------------------------------------------------------------------

def _measure(y: np.ndarray) -> _Features:
    """All per-analysis-frame features of a 16 kHz signal."""
    rms = librosa.feature.rms(y=y, frame_length=WINDOW, hop_length=HOP)[0]
    level = 20 * np.log10(np.maximum(rms, 1e-5))
    zcr = librosa.feature.zero_crossing_rate(y, frame_length=WINDOW, hop_length=HOP)[0]
    spectrum = np.abs(librosa.stft(y, n_fft=N_FFT, hop_length=HOP, win_length=WINDOW))
    centroid = librosa.feature.spectral_centroid(S=spectrum, sr=ANALYSIS_SR)[0]
    flatness = librosa.feature.spectral_flatness(S=spectrum)[0]
    power = spectrum ** 2
    low = power[librosa.fft_frequencies(sr=ANALYSIS_SR, n_fft=N_FFT) < LOW_BAND_HZ].sum(axis=0)
    low_ratio = low / np.maximum(power.sum(axis=0), 1e-12)
    floor, peak = np.percentile(level, [5, 99])
    threshold = max(floor + FLOOR_MARGIN_DB, peak - PEAK_RANGE_DB)
    n = min(len(level), len(zcr), spectrum.shape[1])
    f1, f2 = _formants(y, level[:n] > threshold)
    return _Features(level[:n], zcr[:n], centroid[:n], flatness[:n], low_ratio[:n], f1, f2,
                     float(threshold), float(peak))


def _formants(y: np.ndarray, voiced: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """F1, F2 (Hz) of the analysis frames flagged in ``voiced``; NaN where not measured or
    implausible (F1 above 1100 Hz means the LPC missed the first formant)."""
    f1 = np.full(len(voiced), np.nan)
    f2 = np.full(len(voiced), np.nan)
    index = np.flatnonzero(voiced)
    if index.size == 0:
        return f1, f2
    emphasised = np.pad(librosa.effects.preemphasis(y), WINDOW // 2)
    frames = librosa.util.frame(emphasised, frame_length=WINDOW, hop_length=HOP, axis=0)[index]
    frames = frames.astype(np.float64) * np.hamming(WINDOW)
    # A tiny fixed dither keeps the autocorrelation positive definite on digitally flat frames.
    frames += 1e-7 * np.random.default_rng(0).standard_normal(frames.shape)
    roots = _polynomial_roots(librosa.lpc(frames, order=LPC_ORDER, axis=-1))
    frequency = np.angle(roots) * ANALYSIS_SR / (2 * np.pi)
    bandwidth = -ANALYSIS_SR / np.pi * np.log(np.maximum(np.abs(roots), 1e-12))
    keep = ((roots.imag > 0) & (frequency > FORMANT_MIN_HZ) & (frequency < FORMANT_MAX_HZ)
            & (bandwidth < FORMANT_MAX_BANDWIDTH_HZ))
    candidates = np.sort(np.where(keep, frequency, np.inf), axis=1)
    plausible = candidates[:, 0] <= F1_MAX_HZ
    first, second = candidates[:, 0], candidates[:, 1]
    f1[index] = np.where(plausible & np.isfinite(first), first, np.nan)
    f2[index] = np.where(plausible & np.isfinite(second), second, np.nan)
    return f1, f2


def _polynomial_roots(coefficients: np.ndarray) -> np.ndarray:
    """Roots of every row's polynomial ``a0 z^p + ... + ap`` at once (companion-matrix eigenvalues)."""
    n, order = coefficients.shape[0], coefficients.shape[1] - 1
    companion = np.zeros((n, order, order))
    companion[:, 0, :] = -coefficients[:, 1:] / coefficients[:, :1]
    companion[:, np.arange(1, order), np.arange(order - 1)] = 1.0
    return np.linalg.eigvals(companion)


# --- labels per analysis frame -----------------------------------------------------------

def _label_analysis_frames(f: _Features) -> np.ndarray:
    """A viseme per analysis frame from the frame classes and the consonant rules."""
    classes = _classify(f)
    vowel = classes == _VOWEL
    measured = vowel & np.isfinite(f.f1) & np.isfinite(f.f2)
    labels = np.where(measured, _vowel_visemes(f.f1, f.f2), REST)
    labels = _borrow_nearest(labels, vowel & ~measured, measured)
    labels[classes == _FRICATIVE] = FF
    pending = np.zeros(len(classes), bool)  # consonant frames that borrow the nearest vowel
    for start, end in _consonants(classes):
        left = _vowel_run_before(classes, start)
        right = _vowel_run_after(classes, end)
        if _is_closure(classes[start:end]) and _is_labial(f, classes, start, end, left, right):
            labels[start:end] = PP
            if left is None and right is not None:
                labels[max(0, start - PRE_RELEASE_CLOSURE_FRAMES):start] = PP
        else:
            pending[start:end] = classes[start:end] != _FRICATIVE
    return _borrow_nearest(labels, pending, vowel)


def _classify(f: _Features) -> np.ndarray:
    """Silence / vowel / fricative / murmur / weak per analysis frame (module docstring)."""
    speech = f.speech
    local = maximum_filter1d(f.level_db, LOCAL_SPAN)
    noisy = f.flatness >= FRICATIVE_FLATNESS
    fricative = speech & (((f.zcr >= FRICATIVE_ZCR) & ((f.centroid >= FRICATIVE_CENTROID_HZ) | noisy))
                          | (noisy & (f.centroid >= WEAK_FRICATIVE_CENTROID_HZ)))
    murmur = (speech & ~fricative & (f.low_ratio >= MURMUR_LOW_RATIO) & (f.zcr < MURMUR_MAX_ZCR)
              & (f.level_db <= local - MURMUR_DROP_DB))
    weak = (speech & ~fricative & ~murmur & (f.level_db <= local - WEAK_DROP_DB)
            & (f.flatness >= WEAK_MIN_FLATNESS))
    classes = np.full(len(speech), _SILENCE)
    classes[speech] = _VOWEL
    classes[fricative] = _FRICATIVE
    classes[murmur] = _MURMUR
    classes[weak] = _WEAK
    _copy_island_edges(classes)
    for label, start, end in _runs(classes):
        if label == _VOWEL and end - start < MIN_VOWEL_FRAMES:
            classes[start:end] = _WEAK
    return classes


def _copy_island_edges(classes: np.ndarray) -> None:
    """The first and last frame of a speech island straddle silence (their window is partly
    empty), so their spectra are unreliable: they take the class of their inner neighbour."""
    for label, start, end in _runs(classes != _SILENCE):
        if label and end - start >= 3:
            classes[start] = classes[start + 1]
            classes[end - 1] = classes[end - 2]


def _vowel_visemes(f1: np.ndarray, f2: np.ndarray) -> np.ndarray:
    """AA / EE / OO from the formants (module docstring)."""
    with np.errstate(invalid="ignore"):
        return np.where(f1 >= OPEN_F1_HZ, AA, np.where(f2 >= FRONT_F2_HZ, EE, OO))


def _consonants(classes: np.ndarray) -> list[tuple[int, int]]:
    """Runs of non-vowel speech frames, with silences shorter than a pause counted as closures."""
    in_speech = classes != _SILENCE
    for label, start, end in _runs(classes):
        if label == _SILENCE and end - start < PAUSE_FRAMES and 0 < start and end < len(classes):
            in_speech[start:end] = True
    consonant = in_speech & (classes != _VOWEL)
    return [(start, end) for value, start, end in _runs(consonant.astype(np.int8)) if value]


def _vowel_run_before(classes: np.ndarray, start: int) -> tuple[int, int] | None:
    if start == 0 or classes[start - 1] != _VOWEL:
        return None
    first = start - 1
    while first > 0 and classes[first - 1] == _VOWEL:
        first -= 1
    return first, start


def _vowel_run_after(classes: np.ndarray, end: int) -> tuple[int, int] | None:
    if end >= len(classes) or classes[end] != _VOWEL:
        return None
    last = end
    while last + 1 < len(classes) and classes[last + 1] == _VOWEL:
        last += 1
    return end, last + 1


def _is_closure(classes: np.ndarray) -> bool:
    """A consonant that shut the vocal tract: a gap, murmur or weak frame, and mostly not hiss."""
    fricative = np.count_nonzero(classes == _FRICATIVE)
    return bool(np.isin(classes, (_MURMUR, _WEAK, _SILENCE)).any() and fricative < len(classes) / 2)


def _is_labial(f: _Features, classes: np.ndarray, start: int, end: int,
               left: tuple[int, int] | None, right: tuple[int, int] | None) -> bool:
    """Lips made this closure: every measurable place cue says labial (module docstring)."""
    release = np.isin(classes[start:end], (_WEAK, _FRICATIVE))
    if release.any() and np.median(f.centroid[start:end][release]) >= LABIAL_MAX_RELEASE_CENTROID_HZ:
        return False
    votes = [_labial_nasal(f, classes, start, end)]
    if left is not None:
        votes.append(_labial_transition(f.f2[left[0]:left[1]][::-1]))  # ordered from the consonant
    if right is not None:
        votes.append(_labial_transition(f.f2[right[0]:right[1]]))
    votes = [vote for vote in votes if vote is not None]
    return bool(votes) and all(votes)


def _labial_nasal(f: _Features, classes: np.ndarray, start: int, end: int) -> bool | None:
    """Nasal resonance test: the murmur of m has its second resonance lower than that of n;
    None when the consonant holds no nasal murmur (too short, or as faint as a voice bar)."""
    murmur = np.flatnonzero(classes[start:end] == _MURMUR) + start
    f2 = f.f2[murmur]
    if np.count_nonzero(np.isfinite(f2)) < NASAL_MIN_FRAMES:
        return None
    drop = f.level_db[murmur] - maximum_filter1d(f.level_db, LOCAL_SPAN)[murmur]
    if np.median(drop) < -NASAL_MAX_DROP_DB:
        return None
    return bool(np.nanmedian(f2) <= LABIAL_MAX_NASAL_F2_HZ)


def _labial_transition(f2_from_edge: np.ndarray) -> bool | None:
    """F2 locus test on one vowel (its F2 track ordered away from the consonant); None when the
    vowel is too short or too poorly measured to tell."""
    lo, hi = LABIAL_BODY_FRAMES
    if len(f2_from_edge) < lo + LABIAL_EDGE_FRAMES:
        return None
    near = f2_from_edge[:lo]
    near = near[np.isfinite(near)][:LABIAL_EDGE_FRAMES]
    body = f2_from_edge[lo:hi]
    body = body[np.isfinite(body)]
    if near.size == 0 or body.size == 0:
        return None
    edge, centre = np.median(near), np.median(body)
    return bool(edge <= LABIAL_TOLERANCE * centre and edge < LABIAL_MAX_EDGE_HZ)


def _borrow_nearest(labels: np.ndarray, pending: np.ndarray, source: np.ndarray) -> np.ndarray:
    """``labels`` with each ``pending`` frame set to the label of the nearest ``source`` frame
    (``rest`` when there is none)."""
    if not pending.any():
        return labels
    if not source.any():
        labels[pending] = REST
        return labels
    positions = np.flatnonzero(source)
    targets = np.flatnonzero(pending)
    after = np.clip(np.searchsorted(positions, targets), 0, len(positions) - 1)
    before = np.clip(after - 1, 0, len(positions) - 1)
    nearest = np.where(np.abs(positions[before] - targets) <= np.abs(positions[after] - targets),
                       positions[before], positions[after])
    labels[targets] = labels[nearest]
    return labels


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
        runs = _runs(labels)
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


def _shape_track(labels: np.ndarray, f: _Features, fine: np.ndarray, owner: np.ndarray,
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


def _runs(values: np.ndarray) -> list[tuple[int, int, int]]:
    """``(value, start, end)`` for each run of equal values; ``end`` exclusive."""
    values = np.asarray(values)
    if values.size == 0:
        return []
    edges = np.flatnonzero(np.diff(values)) + 1
    starts = np.concatenate(([0], edges))
    ends = np.concatenate((edges, [len(values)]))
    return [(int(values[s]), int(s), int(e)) for s, e in zip(starts, ends)]


# --- mouth ----------------------------------------------------------------------

@dataclass(frozen=True)
class Mouth:
    """Mouth geometry in pixels: centre, lip half-width and half-height, and the warp region
    (``left``..``right``, ``top``..``bottom``; nothing outside it is ever changed)."""

    cx: float
    cy: float
    half_width: float
    lip_half_height: float
    left: float
    top: float
    right: float
    bottom: float
    face_height: float

    def box(self, frame_shape: tuple[int, ...] | None = None) -> tuple[int, int, int, int]:
        """The warp region as integer ``(x, y, w, h)``, clipped to the frame when its shape is given."""
        x0, y0 = int(np.floor(self.left)), int(np.floor(self.top))
        x1, y1 = int(np.ceil(self.right)) + 1, int(np.ceil(self.bottom)) + 1
        if frame_shape is not None:
            x0, y0 = max(x0, 0), max(y0, 0)
            x1, y1 = min(x1, frame_shape[1]), min(y1, frame_shape[0])
        return x0, y0, max(x1 - x0, 0), max(y1 - y0, 0)


def mouth_region(face_bbox: Sequence[float]) -> Mouth:
    """The mouth inside a face box ``(x, y, w, h)`` from average frontal-face proportions.

    In a Haar frontal-face box (brows to just below the mouth) the mouth centre lies on the
    vertical mid-line at 81% of the box height; the lips are 44% of the box width wide and 14%
    of its height tall. The warp region reaches 38% of the width to each side of the centre,
    17% of the height above it (to below the nose) and 26% below it (over the chin, which
    drops with the jaw).
    """
    x, y, w, h = (float(v) for v in face_bbox)
    cx, cy = x + 0.5 * w, y + MOUTH_CENTRE_Y * h
    return Mouth(cx, cy, MOUTH_HALF_WIDTH * w, LIP_HALF_HEIGHT * h,
                 cx - REGION_HALF_WIDTH * w, cy - REGION_ABOVE * h,
                 cx + REGION_HALF_WIDTH * w, cy + REGION_BELOW * h, h)


# --- mouth animation ---------------------------------------------------------------------

@dataclass(frozen=True)
class _Shape:
    """Deformation of one frame: horizontal lip scale, lip parting in px (negative presses the
    lips together), mouth-corner lift in px, and the opening's width relative to the lips."""

    scale_x: float
    parting: float
    corner: float
    opening_width: float

    @property
    def is_identity(self) -> bool:
        return self.scale_x == 1.0 and self.parting == 0.0 and self.corner == 0.0


def mouth_shapes(track: VisemeTrack, face_heights: np.ndarray, expression: str = "neutral",
                 intensity: float = 1.0) -> list[_Shape]:
    """The deformation of every frame of ``track`` (``face_heights``: face box height per frame).

    With ``I`` = intensity, ``h`` the face height and the expression's biases
    (``EXPRESSIONS``) added to the track's parameters (clipped to 0..1, ``width`` to -1..1):

    - ``scale_x = 1 + I (0.22 width - 0.22 rounding)``: EE spreads the lips, OO purses them;
    - ``parting = I h (0.11 openness - 0.08 closure)`` px: the lips part by up to 11% of the
      face height (AA), or are pushed together by up to 8% (PP presses them shut, over the
      teeth of a smiling source, FF half as much); PP frames never part;
    - ``corner = 0.035 h I corner_bias`` px of mouth-corner lift (happy up, sad down);
    - ``opening_width = 0.95 - 0.45 rounding`` of the lip width (OO opens a small round hole).
    """
    bias = EXPRESSIONS[expression]
    closed = track.labels == PP
    openness = np.where(closed, 0.0, np.clip(track.openness + bias["openness"], 0, 1))
    width = np.clip(track.width + bias["width"], -1, 1)
    rounding = np.clip(track.rounding + bias["rounding"], 0, 1)
    closure = np.clip(track.closure + bias["closure"], 0, 1)
    scale_x = 1 + intensity * (0.22 * width - 0.22 * rounding)
    parting = intensity * face_heights * (0.11 * openness - 0.08 * closure)
    corner = 0.035 * face_heights * intensity * bias["corner"]
    opening_width = 0.95 - 0.45 * rounding
    return [_Shape(float(sx), float(p), float(c), float(o))
            for sx, p, c, o in zip(scale_x, parting, np.broadcast_to(corner, parting.shape), opening_width)]


def animate_mouth(frames: Sequence[np.ndarray], fps: float, track: VisemeTrack, face_boxes: np.ndarray,
                  expression: str = "neutral", intensity: float = 1.0) -> Iterator[np.ndarray]:
    """Yield each frame with its mouth re-shaped into the frame's viseme.

    ``face_boxes``: one ``(x, y, w, h)`` for all frames or an ``(n, 4)`` array. Frames whose
    deformation is the identity (``rest`` with the neutral expression, or intensity 0) are
    yielded as they came, untouched. Others are warped inside the mouth region only
    (``mouth_region``) by a backward map (``cv2.remap``, bilinear) built from three smooth
    displacements, each exactly zero at the region border:

    - lips part or press along a lens (widest at the centre, zero at the corners), fading out
      towards the region's top and bottom; the lower lip and jaw take 65% of an opening,
      both lips half of a press;
    - the lips scale horizontally about the mouth centre (spread / purse) and the corners
      lift, both confined to a band of 2.3 lip half-heights around the lip line and 1.5 lip
      half-widths around the centre;
    - where the lips part, the pixels inside the lens show a dark mouth cavity (feathered).

    The result is blended back with a feathered weight ``min(1, 4 w)``, ``w`` the region
    window. ``fps`` is the frame rate the track was analysed at; the two must match.
    """
    if abs(fps - track.fps) > 1e-6:
        raise ValueError(f"track analysed at {track.fps} fps, frames are {fps} fps")
    boxes = np.broadcast_to(np.asarray(face_boxes, dtype=np.float64).reshape(-1, 4), (len(frames), 4))
    shapes = mouth_shapes(track, boxes[:, 3], expression, intensity)
    for i, frame in enumerate(frames):
        shape = shapes[min(i, len(shapes) - 1)]
        yield frame if shape.is_identity else _reshape(frame, mouth_region(boxes[i]), shape)


def _reshape(frame: np.ndarray, mouth: Mouth, shape: _Shape) -> np.ndarray:
    """``frame`` with its mouth region warped by ``shape`` (see ``animate_mouth``)."""
    x, y, w, h = mouth.box(frame.shape)
    if w < 2 or h < 2:
        return frame
    dx = np.arange(x, x + w, dtype=np.float32)[None, :] - mouth.cx
    dy = np.arange(y, y + h, dtype=np.float32)[:, None] - mouth.cy
    lip = mouth.lip_half_height
    wx = _smoothstep((mouth.right - mouth.cx - np.abs(dx)) / (mouth.right - mouth.cx - mouth.half_width))
    reach = np.where(dy < 0, mouth.cy - mouth.top, mouth.bottom - mouth.cy)
    wy = _smoothstep((reach - np.abs(dy)) / (reach - lip))
    # Spread, pursing and corner lift move the lips and the cheeks beside them, not the jaw
    # line: their band stops short of the face outline so no background is pulled in.
    band = (_smoothstep((BAND_HALF_WIDTH * mouth.half_width - np.abs(dx)) / (0.7 * mouth.half_width))
            * _smoothstep((LIP_BAND * lip - np.abs(dy)) / ((LIP_BAND - 1) * lip)))
    lens = np.clip(1 - (dx / (mouth.half_width * shape.opening_width * shape.scale_x)) ** 2, 0, 1) * wy
    lower = LOWER_SHARE_OPEN if shape.parting > 0 else LOWER_SHARE_PRESS
    parted = np.where(dy >= 0, dy - lower * shape.parting * lens, dy + (1 - lower) * shape.parting * lens)
    # Output pixels that land between the parted lips would sample across the lip line: they
    # take the lip line itself and are painted over as the cavity.
    cavity = np.where(dy >= 0, parted < 0, parted > 0) if shape.parting > 0 else np.zeros_like(lens, bool)
    parted = np.where(cavity, 0.0, parted)
    corner = shape.corner * np.clip(np.abs(dx) / mouth.half_width, 0, 1) ** 2 * band
    src_x = dx * (1 - (1 - 1 / shape.scale_x) * band) + mouth.cx
    src_y = parted + corner + mouth.cy
    warped = cv2.remap(frame, src_x.astype(np.float32), src_y.astype(np.float32), cv2.INTER_LINEAR,
                       borderMode=cv2.BORDER_REPLICATE).astype(np.float32)
    if cavity.any():
        sigma = max(0.6, 0.012 * mouth.face_height)
        alpha = cv2.GaussianBlur(cavity.astype(np.float32), (0, 0), sigma)[..., None] * CAVITY_OPACITY
        warped = warped * (1 - alpha) + np.asarray(CAVITY_RGB, np.float32) * alpha
    original = frame[y:y + h, x:x + w].astype(np.float32)
    blend = np.minimum(1.0, 4 * wx * wy)[..., None]
    out = frame.copy()
    out[y:y + h, x:x + w] = np.clip(original + (warped - original) * blend + 0.5, 0, 255).astype(np.uint8)
    return out


def _smoothstep(t: np.ndarray) -> np.ndarray:
    t = np.clip(t, 0.0, 1.0)
    return t * t * (3 - 2 * t)


# --- length and the whole pipeline -------------------------------------------------------

def fit_length(frames: Sequence[np.ndarray], n_target: int) -> list[np.ndarray]:
    """``frames`` trimmed or extended to ``n_target`` frames (references, not copies).

    Longer clips are cut; shorter ones are extended by ping-pong (forward, backward, forward,
    ... with the turning frames not repeated: 0 1 2 3 2 1 0 1 ...). Every output frame is a real
    source frame, so there is no cross-fade ghosting of the face the mouth is warped on; the
    motion reverses at the turns, which on a talking head reads as a natural sway.
    """
    if len(frames) == 0:
        raise InvalidRequest("the video has no frames")
    n = len(frames)
    if n == 1:
        return [frames[0]] * n_target
    period = 2 * (n - 1)
    phase = np.arange(n_target) % period
    return [frames[int(i)] for i in np.where(phase < n, phase, period - phase)]


def lipsync(frames: Sequence[np.ndarray], fps: float, audio: np.ndarray, sr: int,
            face_region: Sequence[float] | None = None, expression: str = "neutral",
            intensity: float = 1.0) -> tuple[Iterator[np.ndarray], dict]:
    """Lip-sync ``frames`` (RGB uint8 at ``fps``) to mono ``audio`` at ``sr`` Hz.

    Returns ``(frames_out, info)``: a generator of ``round(duration * fps)`` frames (the video
    is trimmed or ping-ponged to the audio's length, see ``fit_length``) and::

        keyframes_generated  frames whose mouth is re-shaped (deformation not the identity)
        duration_seconds     audio length = samples / sr
        visemes_detected     viseme segments other than rest (``VisemeTrack.counts``)
        viseme_track         the segments, ``VisemeTrack.segments()``
        face_region          [x, y, w, h] used: the user's, or the median tracked box
        path, method         "classical" and a one-line description

    The audio analysis and face detection run before this returns (so bad input raises
    ``InvalidRequest`` here); frames are rendered as the generator is consumed, so
    ``processing_time_ms`` is for the caller to measure around the whole job.
    """
    _validate(fps, expression, intensity)
    if len(frames) == 0:
        raise InvalidRequest("the video has no frames")
    track = analyse_visemes(audio, sr, fps)
    fitted = fit_length(frames, len(track))
    boxes = track_face(fitted, face_region)
    shapes = mouth_shapes(track, boxes[:, 3], expression, intensity)
    counts = track.counts()
    info = {
        "keyframes_generated": sum(not shape.is_identity for shape in shapes),
        "duration_seconds": round(track.duration_seconds, 3),
        "visemes_detected": sum(count for name, count in counts.items() if name != "rest"),
        "viseme_track": track.segments(),
        "face_region": [round(v) for v in np.median(boxes, axis=0)],
        "path": "classical",
        "method": "visemes from LPC formants, energy, zero crossings and spectral shape (librosa); "
                  "Haar-cascade face; mouth re-shaped by a smooth remap warp",
    }
    return animate_mouth(fitted, fps, track, boxes, expression, intensity), info


def _validate(fps: float, expression: str, intensity: float) -> None:
    if not (np.isfinite(fps) and fps > 0):
        raise InvalidRequest(f"fps must be a positive number, got {fps}")
    if expression not in EXPRESSIONS:
        raise InvalidRequest(f"expression must be one of {sorted(EXPRESSIONS)}, got {expression!r}")
    if not (isinstance(intensity, (int, float)) and np.isfinite(intensity) and 0 <= intensity <= MAX_INTENSITY):
        raise InvalidRequest(f"intensity must be between 0 and {MAX_INTENSITY}, got {intensity!r}")
