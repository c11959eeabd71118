"""Genre presets: the seed's ``genre`` field as prompt and negative-prompt additions."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Genre:
    """A style preset appended to the user's prompts."""

    name: str
    description: str
    prompt_suffix: str
    negative_suffix: str = ""


GENRES: dict[str, Genre] = {
    g.name: g
    for g in (
        Genre("cinematic", "Film look: shallow depth of field, dramatic light",
              "cinematic shot, shallow depth of field, dramatic lighting, film grain, 35mm",
              "amateur footage, flat lighting"),
        Genre("fantasy", "Epic, magical, painterly light",
              "epic fantasy, magical atmosphere, volumetric light, highly detailed",
              "modern objects, mundane"),
        Genre("sci-fi", "Futuristic, neon and chrome",
              "science fiction, futuristic, neon lights, sleek technology, atmospheric haze",
              "medieval, rustic"),
        Genre("documentary", "Natural, handheld, realistic",
              "documentary footage, natural lighting, realistic, handheld camera",
              "stylized, cartoon, oversaturated"),
        Genre("anime", "Japanese animation style",
              "anime style, cel shading, vibrant colors, detailed background art",
              "photorealistic, 3d render"),
        Genre("horror", "Dark, tense, low key",
              "horror film, dark and moody, low-key lighting, unsettling atmosphere, fog",
              "bright, cheerful, cartoon"),
        Genre("noir", "Black-and-white film noir",
              "film noir, black and white, high contrast, hard shadows, venetian blinds",
              "color, saturated"),
        Genre("music-video", "Stylized, rhythmic, colourful",
              "music video, dynamic camera, stylized colour grading, strobe and neon lights",
              "static, dull"),
        Genre("nature", "Wildlife and landscape footage",
              "nature documentary, golden hour, sweeping landscape, 4k wildlife footage",
              "people, buildings, text"),
        Genre("vintage", "Old film stock",
              "vintage 1970s film, warm faded colors, light leaks, film grain",
              "digital, sharp, modern"),
        Genre("none", "No style additions", ""),
    )
}


def apply_genre(genre: str, prompt: str, negative_prompt: str) -> tuple[str, str]:
    """The prompts with the genre's additions (comma-joined, empty parts skipped)."""
    preset = GENRES[genre]
    full_prompt = ", ".join(p for p in (prompt, preset.prompt_suffix) if p)
    full_negative = ", ".join(p for p in (negative_prompt, preset.negative_suffix) if p)
    return full_prompt, full_negative
