"""Model Orchestrator: how complex a prompt is, from counted prompt features.

**Complexity** (simple / moderate / complex), from prompt features found with documented word
lists (:data:`SUBJECT_WORDS`, :data:`GROUP_WORDS`, :data:`ACTION_WORDS`, :data:`CAMERA_PHRASES`,
:data:`SCENE_CHANGE_PHRASES`):

    score = 0.8 max(0, subjects - 1) + 0.6 max(0, actions - 1) + 1.0 camera moves
            + 1.5 scene changes + 0.04 max(0, words - 15) + 0.25 max(0, seconds - 5)

One subject doing one thing in a short prompt scores 0. Classes: simple below 1.5, complex from
4.0, moderate between. ``confidence = 1 / (1 + exp(-margin / 0.6))`` with ``margin`` the
distance of the score to the nearest class boundary: 0.5 on a boundary, towards 1 far from
it. It is a documented heuristic, not a probability fitted to labelled data.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from typing import Literal

Complexity = Literal["simple", "moderate", "complex"]


SUBJECT_WORDS = frozenset("""
man woman men women person people child children boy girl baby kid kids family friend friends couple crowd dancer
dancers singer singers musician musicians band knight knights king queen prince princess soldier soldiers
warrior warriors wizard witch robot robots astronaut astronauts alien aliens character characters hero
villain monster monsters dragon dragons cat cats dog dogs bird birds fish horse horses cow cows lion lions
tiger tigers bear bears wolf wolves fox foxes rabbit rabbits deer elephant elephants monkey monkeys whale
whales dolphin dolphins shark butterfly butterflies insect car cars train trains boat boats ship ships
plane planes helicopter bicycle motorcycle spaceship player players athlete athletes chef farmer pilot
student students teacher detective girlfriend boyfriend mother father grandmother grandfather villager
villagers audience army team
""".split())
#: words that announce several subjects at once ("a crowd", "two dogs", "multiple characters")
GROUP_WORDS = frozenset("""
two three four five six seven eight nine ten several multiple many crowd group groups army armies
team teams herd flock swarm couple pair dozens hundreds family families everyone
""".split())
ACTION_WORDS = frozenset("""
walk run jump fly swim dance sing play fight chase ride drive climb fall rise spin float drift glow
shine flow turn move look watch smile laugh cry talk speak shout throw catch kick punch hug kiss
eat drink cook paint write read sit stand crawl roll slide skate surf ski dive race explode burn
crash collapse open close grow melt morph transform build break pour wave bow march sprint leap
soar glide hover attack defend cheer celebrate
""".split())
CAMERA_PHRASES = (
    "pan", "pans", "panning", "tilt", "tilts", "tilting", "zoom", "zooms", "zooming", "dolly", "tracking shot",
    "tracking", "crane shot", "orbit", "orbits", "orbiting", "aerial", "drone shot", "handheld", "close-up",
    "closeup", "wide shot", "push in", "pull back", "pulls back", "rack focus", "time-lapse", "timelapse",
    "slow motion", "pov", "first-person", "over-the-shoulder", "camera moves", "camera follows",
    "camera circles", "fly-through", "flythrough",
)
SCENE_CHANGE_PHRASES = (
    "then", "cut to", "cuts to", "transition", "transitions", "after that", "afterwards", "meanwhile",
    "later", "next scene", "finally", "suddenly", "scene changes", "fades to", "fade to", "switches to",
    "flashback",
)
SCORE_WEIGHTS = {"subjects": 0.8, "actions": 0.6, "camera_moves": 1.0, "scene_changes": 1.5,
                 "words": 0.04, "seconds": 0.25}
SIMPLE_BELOW = 1.5
COMPLEX_FROM = 4.0
CONFIDENCE_SCALE = 0.6


def _stem(word: str) -> str:
    """The base form of an action verb (runs, running, ran -> run); other words unchanged."""
    if word in _IRREGULAR_VERBS:
        return _IRREGULAR_VERBS[word]
    for suffix in ("ing", "es", "ed", "s"):
        if word.endswith(suffix) and len(word) - len(suffix) >= 3:
            base = word[: -len(suffix)]
            if base in ACTION_WORDS:
                return base
            if suffix == "ing" and base + "e" in ACTION_WORDS:  # dancing -> dance
                return base + "e"
            if suffix == "ing" and len(base) > 3 and base[-1] == base[-2] and base[:-1] in ACTION_WORDS:
                return base[:-1]  # running -> run
            if suffix in ("es", "ed") and base + "e" in ACTION_WORDS:
                return base + "e"
    return word


_IRREGULAR_PLURALS = frozenset("people children wolves men women mice geese butterflies families armies".split())
_IRREGULAR_VERBS = {"flies": "fly", "flew": "fly", "ran": "run", "swam": "swim", "rode": "ride", "fell": "fall",
                    "rose": "rise", "spun": "spin", "fought": "fight", "threw": "throw", "caught": "catch"}


def _is_plural(word: str) -> bool:
    """A plural subject word counts as two subjects (at least two of them are on screen)."""
    if word in _IRREGULAR_PLURALS:
        return True
    return word.endswith("s") and (word[:-1] in SUBJECT_WORDS or word[:-2] in SUBJECT_WORDS)


def _count_phrases(text: str, phrases) -> int:
    return sum(len(re.findall(rf"(?<![a-z-]){re.escape(p)}(?![a-z-])", text)) for p in phrases)


@dataclass(frozen=True)
class ComplexityResult:
    """A prompt's class, its score, the confidence of the class and the counted features."""

    label: str
    score: float
    confidence: float
    features: dict[str, int | float] = field(default_factory=dict)


def classify_prompt(prompt: str, duration_seconds: float = 4.0) -> ComplexityResult:
    """Complexity class, score and confidence of a prompt (formula in the module docstring)."""
    text = prompt.lower()
    words = re.findall(r"[a-z][a-z'-]*", text)
    camera = _count_phrases(text, CAMERA_PHRASES)
    camera_words = {p for p in CAMERA_PHRASES if " " not in p}
    subjects = {w for w in words if w in SUBJECT_WORDS}
    plural = sum(1 for w in subjects if _is_plural(w))
    groups = sum(1 for w in words if w in GROUP_WORDS)
    n_subjects = len(subjects) + plural + groups
    actions = {_stem(w) for w in words if w not in camera_words} & ACTION_WORDS
    scenes = _count_phrases(text, SCENE_CHANGE_PHRASES)
    features = {"subjects": n_subjects, "actions": len(actions), "camera_moves": camera,
                "scene_changes": scenes, "words": len(words), "seconds": float(duration_seconds)}
    w = SCORE_WEIGHTS
    score = (w["subjects"] * max(0, n_subjects - 1) + w["actions"] * max(0, len(actions) - 1)
             + w["camera_moves"] * camera + w["scene_changes"] * scenes
             + w["words"] * max(0, len(words) - 15) + w["seconds"] * max(0.0, duration_seconds - 5))
    if score < SIMPLE_BELOW:
        label, margin = "simple", SIMPLE_BELOW - score
    elif score >= COMPLEX_FROM:
        label, margin = "complex", score - COMPLEX_FROM
    else:
        label, margin = "moderate", min(score - SIMPLE_BELOW, COMPLEX_FROM - score)
    confidence = 1 / (1 + math.exp(-margin / CONFIDENCE_SCALE))
    return ComplexityResult(label, round(score, 4), confidence, features)

