"""Lip-sync's audio analysis: per 10 ms of speech, measurements and a viseme label.

The visemes (``VISEMES``) are described in ``studio.genius.lipsync.visemes``, which pools these
labels into one per video frame.

Audio analysis (``measure``, ``label_analysis_frames``)
------------------------------------------------------
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
"""

from __future__ import annotations

from dataclasses import dataclass

import librosa
import numpy as np
from scipy.ndimage import maximum_filter1d

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

# Internal analysis-frame classes.
_SILENCE, _VOWEL, _FRICATIVE, _MURMUR, _WEAK = range(5)


@dataclass(frozen=True)
class SpeechFeatures:
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



# --- measurements ------------------------------------------------------------------------

def measure(y: np.ndarray) -> SpeechFeatures:
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
    return SpeechFeatures(level[:n], zcr[:n], centroid[:n], flatness[:n], low_ratio[:n], f1, f2,
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

def label_analysis_frames(f: SpeechFeatures) -> np.ndarray:
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


def _classify(f: SpeechFeatures) -> np.ndarray:
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
    for label, start, end in value_runs(classes):
        if label == _VOWEL and end - start < MIN_VOWEL_FRAMES:
            classes[start:end] = _WEAK
    return classes


def _copy_island_edges(classes: np.ndarray) -> None:
    """The first and last frame of a speech island straddle silence (their window is partly
    empty), so their spectra are unreliable: they take the class of their inner neighbour."""
    for label, start, end in value_runs(classes != _SILENCE):
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
    for label, start, end in value_runs(classes):
        if label == _SILENCE and end - start < PAUSE_FRAMES and 0 < start and end < len(classes):
            in_speech[start:end] = True
    consonant = in_speech & (classes != _VOWEL)
    return [(start, end) for value, start, end in value_runs(consonant.astype(np.int8)) if value]


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


def _is_labial(f: SpeechFeatures, classes: np.ndarray, start: int, end: int,
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


def _labial_nasal(f: SpeechFeatures, classes: np.ndarray, start: int, end: int) -> bool | None:
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


def value_runs(values: np.ndarray) -> list[tuple[int, int, int]]:
    """``(value, start, end)`` for each run of equal values; ``end`` exclusive."""
    values = np.asarray(values)
    if values.size == 0:
        return []
    edges = np.flatnonzero(np.diff(values)) + 1
    starts = np.concatenate(([0], edges))
    ends = np.concatenate((edges, [len(values)]))
    return [(int(values[s]), int(s), int(e)) for s, e in zip(starts, ends)]

