"""Lip-Sync Engine, classical path: visemes from espeak-ng speech, mouth warp on a real face, mux.

Speech is synthesised word by word with espeak-ng, each word trimmed to its audible samples
(|x| > 2% of its peak) and joined with digital silence, so where every word starts and ends is
known to the sample. Timing claims are checked against those spans, in video frames at 25 fps:

- silence is ``rest`` and speech is not, with every speech/rest switch within 2 frames of a
  word boundary;
- a bilabial word holds PP inside its span; "papa" and "mama" hold one in their middle third,
  where their second consonant is (the words are CVCV with vowels of similar length);
- vowels are read from the frames inside each word's span.

The face is scikit-image's astronaut photo, on which the Haar cascade finds the face.
"""

from __future__ import annotations

import itertools
import shutil
import subprocess
from pathlib import Path

import av
import cv2
import imageio_ffmpeg
import numpy as np
import pytest
import soundfile as sf
from skimage import data

from studio.errors import EncodingFailed, InvalidRequest
from studio.genius.lipsync import classical, visemes
from studio.genius.lipsync.mouth import mouth_region
from studio.vision import face_track
from studio.media.audio import load_audio, mux_audio
from studio.media.video import Mp4Writer

pytestmark = pytest.mark.skipif(shutil.which("espeak-ng") is None, reason="espeak-ng is not installed")

FPS = 25.0
SR = 16000
LEAD = 0.4
GAP = 0.5
WORDS = ["papa", "see", "you", "bob", "eat", "two", "mama", "shoe"]
BILABIAL = {"papa", "bob", "mama"}
VOWEL_OF = {"see": "EE", "eat": "EE", "you": "OO", "two": "OO", "shoe": "OO", "papa": "AA", "bob": "AA"}

# Mouth of the astronaut in the 512x512 photo, measured by eye: centre and lip half-width (px).
PHOTO_MOUTH = (224.0, 145.5, 21.0)
CROP = (16, 272, 88, 408)  # rows, cols of the photo kept for the test clip
CLIP_SIZE = (200, 160)  # width, height


def speak(text: str, path: Path, ssml: bool = False) -> np.ndarray:
    command = ["espeak-ng", "-s", "120", "-w", str(path)] + (["-m"] if ssml else []) + [text]
    subprocess.run(command, check=True, capture_output=True, timeout=30)
    return load_audio(path, sr=SR)[0]


def audible(samples: np.ndarray) -> np.ndarray:
    loud = np.flatnonzero(np.abs(samples) > 0.02 * np.abs(samples).max())
    return samples[loud[0]:loud[-1] + 1]


@pytest.fixture(scope="module")
def speech(tmp_path_factory) -> tuple[np.ndarray, dict[str, tuple[float, float]]]:
    """Words joined by silence, and each word's (start, end) in seconds."""
    folder = tmp_path_factory.mktemp("speech")
    parts = [np.zeros(int(LEAD * SR), np.float32)]
    spans, t = {}, LEAD
    for word in WORDS:
        clip = audible(speak(word, folder / f"{word}.wav"))
        spans[word] = (t, t + len(clip) / SR)
        parts += [clip, np.zeros(int(GAP * SR), np.float32)]
        t += len(clip) / SR + GAP
    return np.concatenate(parts), spans


@pytest.fixture(scope="module")
def track(speech) -> visemes.VisemeTrack:
    return visemes.analyse_visemes(speech[0], SR, FPS)


@pytest.fixture(scope="module")
def face_frame() -> np.ndarray:
    r0, r1, c0, c1 = CROP
    return cv2.resize(data.astronaut()[r0:r1, c0:c1], CLIP_SIZE, interpolation=cv2.INTER_AREA)


def frames_of(span: tuple[float, float], margin: int = 0) -> slice:
    return slice(int(np.floor(span[0] * FPS)) - margin, int(np.ceil(span[1] * FPS)) + margin)


# --- audio analysis ----------------------------------------------------------------------

def test_track_covers_the_audio_frame_by_frame(speech, track):
    audio, _ = speech
    assert len(track) == round(len(audio) / SR * FPS)
    assert track.duration_seconds == pytest.approx(len(audio) / SR)
    segments = track.segments()
    assert segments[0]["start_frame"] == 0 and segments[-1]["end_frame"] == len(track)
    assert all(a["end_frame"] == b["start_frame"] for a, b in itertools.pairwise(segments))
    assert sum(track.counts().values()) == len(segments)
    assert segments[1]["start_seconds"] == pytest.approx(segments[1]["start_frame"] / FPS)
    for values in (track.openness, track.width, track.rounding, track.closure):
        assert values.shape == (len(track),) and values.min() >= 0 and values.max() <= 1


def test_silence_is_rest_and_words_are_not_within_two_frames(speech, track):
    _, spans = speech
    speaking = track.active().astype(int)
    switches = np.flatnonzero(np.diff(speaking)) + 1
    boundaries = np.array([edge * FPS for span in spans.values() for edge in span])
    assert len(switches) == len(boundaries), track.names
    assert np.abs(switches - boundaries).max() <= 2, (switches, boundaries.round(1))


def test_bilabials_close_the_lips_and_other_words_do_not(speech, track):
    _, spans = speech
    names = np.array(track.names)
    for word, span in spans.items():
        inside = names[frames_of(span, margin=1)]
        if word in BILABIAL:
            assert "PP" in inside, (word, inside)
        else:
            assert "PP" not in inside, (word, inside)
    for word in ("papa", "mama"):
        start, end = (edge * FPS for edge in spans[word])
        middle = names[int(start + (end - start) / 3):int(np.ceil(start + 2 * (end - start) / 3))]
        assert "PP" in middle, (word, middle)
    bob = names[frames_of(spans["bob"])]
    assert "PP" in bob[-4:], bob  # the final b closes the lips


@pytest.mark.parametrize("word", sorted(VOWEL_OF))
def test_vowels_follow_the_formants(speech, track, word):
    names = np.array(track.names)[frames_of(speech[1][word])]
    vowels = {v: int(np.count_nonzero(names == v)) for v in ("AA", "EE", "OO")}
    expected = VOWEL_OF[word]
    assert vowels[expected] >= 3 and vowels[expected] == max(vowels.values()), (word, names)


def test_fricatives_open_their_words(speech, track):
    names = np.array(track.names)
    for word in ("see", "shoe"):
        start = int(speech[1][word][0] * FPS)
        assert "FF" in names[start - 1:start + 3], (word, names[start - 2:start + 6])


def test_mouth_parameters_follow_the_visemes(track):
    labels = np.array(track.names)
    assert track.openness[labels == "AA"].mean() > 2 * track.openness[labels == "EE"].mean()
    assert track.width[labels == "EE"].mean() > 0.5 > track.width[labels == "OO"].max()
    assert track.rounding[labels == "OO"].min() >= 0.5
    assert track.rounding[np.isin(labels, ["AA", "EE"])].mean() < 0.1  # only where next to an OO
    assert np.all(track.closure[labels == "PP"] == 1) and np.all(track.openness[labels == "PP"] == 0)
    assert np.all(track.openness[labels == "rest"] == 0) and np.all(track.rounding[labels == "rest"] == 0)


def test_ssml_break_is_rest(tmp_path):
    audio = speak('<speak>see <break time="600ms"/> you</speak>', tmp_path / "ssml.wav", ssml=True)
    quiet = (np.abs(audio) < 0.01 * np.abs(audio).max()).astype(int)
    edges = np.flatnonzero(np.diff(np.concatenate(([0], quiet, [0]))))
    runs = [(a, b) for a, b in zip(edges[::2], edges[1::2]) if a > 0 and b < len(audio)]
    start, end = max(runs, key=lambda run: run[1] - run[0])  # the break: the longest inner silence
    assert (end - start) / SR > 0.4
    names = np.array(visemes.analyse_visemes(audio, SR, FPS).names)
    first, last = int(np.ceil(start / SR * FPS)) + 2, int(end / SR * FPS) - 2
    assert np.all(names[first:last] == "rest"), names
    assert names[first - 3] != "rest" and names[last + 2] != "rest", names


def test_other_sample_rates_and_frame_rates(speech):
    audio, spans = speech
    for fps in (24.0, 30.0):
        track = visemes.analyse_visemes(audio, SR, fps)
        names = np.array(track.names)
        assert len(track) == round(len(audio) / SR * fps)
        assert "PP" in names[int(spans["papa"][0] * fps):int(np.ceil(spans["papa"][1] * fps))]
    import librosa
    resampled = librosa.resample(audio, orig_sr=SR, target_sr=22050)
    original = visemes.analyse_visemes(audio, SR, FPS).labels
    other = visemes.analyse_visemes(resampled, 22050, FPS).labels
    assert np.mean(original == other) > 0.9


# --- face and mouth ----------------------------------------------------------------------

def test_face_and_mouth_are_found_on_the_photo(face_frame):
    box = face_track.detect_face(face_frame)
    assert box is not None
    mouth = mouth_region(box)
    r0, _, c0, _ = CROP
    scale = CLIP_SIZE[0] / (CROP[3] - CROP[2])
    true_x, true_y = (PHOTO_MOUTH[0] - c0) * scale, (PHOTO_MOUTH[1] - r0) * scale
    assert abs(mouth.cx - true_x) <= 3 and abs(mouth.cy - true_y) <= 3
    assert mouth.half_width == pytest.approx(PHOTO_MOUTH[2] * scale, rel=0.25)
    x, y, w, h = mouth.box(face_frame.shape)
    assert x < true_x - mouth.half_width and x + w > true_x + mouth.half_width and y < true_y < y + h


def test_face_track_follows_a_moving_face_smoothly(face_frame):
    shifts = np.arange(12) * 2
    frames = [cv2.warpAffine(face_frame, np.float32([[1, 0, s], [0, 1, 0]]), CLIP_SIZE,
                             borderMode=cv2.BORDER_REPLICATE) for s in shifts]
    boxes = face_track.track_face(frames)
    assert boxes.shape == (12, 4)
    assert np.abs(boxes[:, 0] - boxes[0, 0] - shifts).max() <= 3
    assert np.ptp(boxes[:, 2]) <= 4


def test_face_region_overrides_detection_and_is_required_without_a_face():
    grey = [np.full((96, 128, 3), 128, np.uint8)] * 3
    with pytest.raises(InvalidRequest, match="face_region"):
        face_track.track_face(grey)
    boxes = face_track.track_face(grey, face_region=[30, 10, 60, 60])
    assert np.all(boxes == [30, 10, 60, 60])
    for bad in ([1, 2, 3], [0, 0, 2, 60], [500, 500, 60, 60], ["a", 0, 60, 60]):
        with pytest.raises(InvalidRequest, match="face_region"):
            face_track.track_face(grey, face_region=bad)


# --- animation ---------------------------------------------------------------------------

@pytest.fixture(scope="module")
def short_speech(speech) -> np.ndarray:
    audio, spans = speech
    return audio[:int((spans["you"][1] + 0.3) * SR)]  # "papa", "see", "you" and their pauses


@pytest.fixture(scope="module")
def synced(face_frame, short_speech):
    frames = [face_frame] * 10
    out, info = classical.lipsync(frames, FPS, short_speech, SR)
    return list(out), info


def test_lipsync_changes_the_mouth_only_and_only_while_speaking(face_frame, short_speech, synced):
    out, info = synced
    track = visemes.analyse_visemes(short_speech, SR, FPS)
    assert len(out) == len(track) == round(len(short_speech) / SR * FPS)
    x, y, w, h = mouth_region(info["face_region"]).box(face_frame.shape)
    outside = np.ones(face_frame.shape[:2], bool)
    outside[y:y + h, x:x + w] = False
    changed = []
    for frame, label in zip(out, track.names):
        assert np.array_equal(frame[outside], face_frame[outside])
        difference = np.abs(frame.astype(int) - face_frame)[y:y + h, x:x + w].mean()
        changed.append(difference > 0)
        if label == "rest":
            assert np.array_equal(frame, face_frame)
        else:
            assert difference > 1.0, label
    assert info["keyframes_generated"] == sum(changed) == np.count_nonzero(track.active())
    for a, b, label_a, label_b in zip(out, out[1:], track.names, track.names[1:]):
        if label_a != label_b:
            assert np.abs(a[y:y + h, x:x + w].astype(int) - b[y:y + h, x:x + w]).mean() > 0.5, (label_a, label_b)


def test_open_vowels_show_the_mouth_cavity_and_closures_hide_the_teeth(face_frame, short_speech, synced):
    """The photo smiles with the teeth showing: AA adds dark cavity pixels, PP presses the lips
    over the teeth (white: bright and unsaturated) without opening anything."""
    out, info = synced
    names = visemes.analyse_visemes(short_speech, SR, FPS).names
    mouth = mouth_region(info["face_region"])
    x, y, w, h = mouth.box(face_frame.shape)
    centre = np.s_[int(mouth.cy - 1.5 * mouth.lip_half_height):int(mouth.cy + 1.5 * mouth.lip_half_height),
                   int(mouth.cx - 0.5 * mouth.half_width):int(mouth.cx + 0.5 * mouth.half_width)]

    def dark(frame):
        return np.count_nonzero(cv2.cvtColor(frame[y:y + h, x:x + w], cv2.COLOR_RGB2GRAY) < 70)

    def teeth(frame):
        hsv = cv2.cvtColor(frame[centre], cv2.COLOR_RGB2HSV)
        return np.count_nonzero((hsv[..., 1] < 45) & (hsv[..., 2] > 200))

    aa = [f for f, n in zip(out, names) if n == "AA"]
    pp = [f for f, n in zip(out, names) if n == "PP"]
    assert aa and pp and teeth(face_frame) >= 10
    assert min(dark(f) for f in aa) > dark(face_frame) + 15
    assert max(dark(f) for f in pp) <= dark(face_frame) + 2
    assert max(teeth(f) for f in pp) < 0.3 * teeth(face_frame)


def test_lipsync_info_matches_the_seed_fields(short_speech, synced):
    _, info = synced
    track = visemes.analyse_visemes(short_speech, SR, FPS)
    assert info["duration_seconds"] == pytest.approx(len(short_speech) / SR, abs=1e-3)
    assert info["visemes_detected"] == sum(1 for s in info["viseme_track"] if s["viseme"] != "rest")
    assert info["viseme_track"] == track.segments()
    assert info["path"] == "classical" and len(info["face_region"]) == 4


def test_expression_and_intensity(face_frame, short_speech, synced):
    neutral, _ = synced
    frames = [face_frame] * 10
    happy, info = classical.lipsync(frames, FPS, short_speech, SR, expression="happy")
    happy = list(happy)
    assert info["keyframes_generated"] == len(happy)  # a smile holds through the pauses too
    sad = list(classical.lipsync(frames, FPS, short_speech, SR, expression="sad")[0])
    rest = visemes.analyse_visemes(short_speech, SR, FPS).names.index("rest")
    mouth = mouth_region(info["face_region"])
    corner = np.s_[int(mouth.cy) - 6:int(mouth.cy) + 6,
                   int(mouth.cx + 0.6 * mouth.half_width):int(mouth.cx + mouth.half_width) + 2]
    assert np.abs(happy[rest][corner].astype(int) - sad[rest][corner]).mean() > 2
    assert np.array_equal(neutral[rest], face_frame)
    still, info = classical.lipsync(frames, FPS, short_speech, SR, intensity=0.0)
    assert info["keyframes_generated"] == 0 and all(f is face_frame for f in still)
    for bad in ({"expression": "smug"}, {"intensity": 5.0}, {"intensity": float("nan")}):
        with pytest.raises(InvalidRequest):
            classical.lipsync(frames, FPS, short_speech, SR, **bad)


def test_lipsync_without_a_face_asks_for_face_region(short_speech):
    grey = [np.full((96, 128, 3), 90, np.uint8)] * 4
    with pytest.raises(InvalidRequest, match="face_region"):
        classical.lipsync(grey, FPS, short_speech, SR)
    out, info = classical.lipsync(grey, FPS, short_speech, SR, face_region=[32, 8, 64, 64])
    out = list(out)
    assert info["face_region"] == [32, 8, 64, 64] and any(not np.array_equal(f, grey[0]) for f in out)


def test_fit_length_ping_pongs_or_trims():
    frames = [np.full((4, 4, 3), i, np.uint8) for i in range(5)]
    longer = classical.fit_length(frames, 12)
    assert [int(f[0, 0, 0]) for f in longer] == [0, 1, 2, 3, 4, 3, 2, 1, 0, 1, 2, 3]
    assert all(any(f is g for g in frames) for f in longer)
    assert [int(f[0, 0, 0]) for f in classical.fit_length(frames, 3)] == [0, 1, 2]
    assert len(classical.fit_length(frames[:1], 7)) == 7


# --- audio files -------------------------------------------------------------------------

def test_load_audio_mixes_to_mono_and_resamples(tmp_path):
    t = np.arange(44100) / 44100
    stereo = np.stack([np.sin(2 * np.pi * 440 * t), np.zeros_like(t)], axis=1) * 0.5
    sf.write(tmp_path / "stereo.wav", stereo, 44100)
    samples, sr = load_audio(tmp_path / "stereo.wav")
    assert sr == 16000 and samples.dtype == np.float32 and samples.ndim == 1
    assert abs(len(samples) - 16000) <= 1
    assert np.abs(samples).max() == pytest.approx(0.25, abs=0.02)


def test_load_audio_decodes_aac_through_pyav(tmp_path, short_speech):
    sf.write(tmp_path / "speech.wav", short_speech, SR)
    subprocess.run([imageio_ffmpeg.get_ffmpeg_exe(), "-v", "error", "-i", str(tmp_path / "speech.wav"),
                    "-c:a", "aac", str(tmp_path / "speech.m4a")], check=True, timeout=60)
    samples, sr = load_audio(tmp_path / "speech.m4a")
    assert sr == SR and abs(len(samples) - len(short_speech)) <= 0.05 * SR  # AAC adds priming
    assert np.sqrt(np.mean(samples ** 2)) == pytest.approx(np.sqrt(np.mean(short_speech ** 2)), rel=0.1)


def test_load_audio_rejects_what_is_not_audio(tmp_path):
    (tmp_path / "noise.wav").write_bytes(b"RIFF-not-really" * 40)
    with pytest.raises(InvalidRequest, match="^audio_base64: ") as caught:
        load_audio(tmp_path / "noise.wav", field="audio_base64")
    assert str(tmp_path) not in caught.value.detail and "noise.wav" not in caught.value.detail


def test_mux_gives_an_aac_track_as_long_as_the_audio(tmp_path, face_frame, short_speech, synced):
    out, _ = synced
    with Mp4Writer(tmp_path / "silent.mp4", *CLIP_SIZE, fps=int(FPS)) as writer:
        for frame in out:
            writer.write(frame)
    sf.write(tmp_path / "speech.wav", short_speech, SR)
    result = mux_audio(tmp_path / "silent.mp4", tmp_path / "speech.wav", tmp_path / "talking.mp4")
    assert result == tmp_path / "talking.mp4" and not (tmp_path / "talking.mp4.part").exists()
    with av.open(str(result)) as container:
        audio = container.streams.audio[0]
        video = container.streams.video[0]
        assert audio.codec_context.name == "aac" and video.codec_context.name == "h264"
        audio_seconds = float(audio.duration * audio.time_base)
        video_frames = sum(1 for packet in container.demux(video) if packet.size)
    assert abs(audio_seconds - len(short_speech) / SR) <= 1 / FPS
    assert video_frames == len(out)


def test_mux_failure_leaves_no_file(tmp_path):
    (tmp_path / "broken.mp4").write_bytes(b"nope")
    with pytest.raises(EncodingFailed, match="ffmpeg exit"):  # a task error type, not an internal error
        mux_audio(tmp_path / "broken.mp4", tmp_path / "broken.mp4", tmp_path / "out.mp4")
    assert not list(tmp_path.glob("out.mp4*"))


def test_the_viseme_timeline_is_a_step_chart(track):
    """The UI's plot of the track (issue 14, part 3): each segment is a flat run at its viseme and
    the change to the next is vertical, never a diagonal between two visemes."""
    from components.lipsync_tab import viseme_timeline

    segments = track.segments()  # what the result metadata carries (viseme_track)
    points = list(viseme_timeline(segments).itertuples(index=False))
    assert len(points) == 2 * len(segments) >= 4
    for (t0, v0), (t1, v1) in zip(points, points[1:]):
        assert t0 == t1 or v0 == v1, (t0, v0, t1, v1)  # flat, or a vertical change: no diagonal
    assert [v for _, v in points[::2]] == [s["viseme"] for s in segments]
