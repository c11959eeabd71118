"""Every field of the generate request: defaults, bounds, and 400s in the seed's shape."""

from __future__ import annotations

import pytest

from studio.engine.plan import generation_frames, make_plan, output_size
from studio.engine.request import GenerationRequest, parse_request
from studio.errors import InvalidRequest
from studio.models.catalog import CATALOG, GENERATION_CATALOG

BAD_FIELDS = [
    ("prompt", "", "prompt"),
    ("prompt", "   ", "prompt must not be blank"),
    ("prompt", "x" * 2001, "prompt"),
    ("negative_prompt", "x" * 2001, "negative_prompt"),
    ("duration_seconds", 0.5, "duration_seconds must be between 1 and 60"),
    ("duration_seconds", 61, "duration_seconds must be between 1 and 60"),
    ("fps", 11, "fps must be between 12 and 60"),
    ("fps", 61, "fps must be between 12 and 60"),
    ("fps", 24.5, "fps"),
    ("resolution", "360p", "resolution"),
    ("aspect_ratio", "21:9", "aspect_ratio"),
    ("genre", "polka", "genre must be one of"),
    ("seed", -1, "seed must be between 0 and 4294967295"),
    ("seed", 2**32, "seed must be between 0 and 4294967295"),
    ("guidance_scale", 0.5, "guidance_scale must be between 1 and 20"),
    ("guidance_scale", 20.5, "guidance_scale must be between 1 and 20"),
    ("num_inference_steps", 9, "num_inference_steps must be between 10 and 150"),
    ("num_inference_steps", 151, "num_inference_steps must be between 10 and 150"),
    ("webhook_url", "ftp://example.com/hook", "webhook_url must be an http:// or https:// URL"),
    ("model", "sora", "model must be one of"),
    ("colour", "red", "colour is not a known field"),
]


@pytest.mark.parametrize("field,value,message", BAD_FIELDS, ids=[f"{f}={str(v)[:12]}" for f, v, _ in BAD_FIELDS])
def test_bad_field_is_400_naming_the_field(http, field, value, message):
    response = http.post("/v1/generate", json={"prompt": "a cat", field: value})
    assert response.status_code == 400, response.text
    body = response.json()
    assert set(body) == {"error", "detail", "type"}
    assert body["error"] == "Validation error" and body["type"] == "ValueError"
    assert message in body["detail"]


def test_missing_prompt_and_bad_json_are_400(http):
    missing = http.post("/v1/generate", json={})
    assert missing.status_code == 400 and "prompt is required" in missing.json()["detail"]
    broken = http.post("/v1/generate", content=b"{not json", headers={"content-type": "application/json"})
    assert broken.status_code == 400 and broken.json()["type"] == "ValueError"


def test_defaults_are_the_seeds():
    request = GenerationRequest(prompt="a cat")
    assert (request.negative_prompt, request.duration_seconds, request.fps, request.resolution,
            request.aspect_ratio, request.genre, request.seed, request.guidance_scale,
            request.num_inference_steps) == ("blurry, low quality", 4.0, 24, "720p", "16:9", "cinematic",
                                             None, 7.5, 50)


def test_bounds_themselves_are_accepted():
    for field, value in [("duration_seconds", 1), ("duration_seconds", 60), ("fps", 12), ("fps", 60),
                         ("guidance_scale", 1), ("guidance_scale", 20), ("num_inference_steps", 10),
                         ("num_inference_steps", 150), ("seed", 0), ("seed", 2**32 - 1)]:
        parse_request({"prompt": "a cat", field: value})
    with pytest.raises(InvalidRequest):
        parse_request({"prompt": "a cat", "fps": 0})


@pytest.mark.parametrize("resolution,aspect,size", [
    ("720p", "16:9", (1280, 720)), ("720p", "9:16", (720, 1280)), ("480p", "16:9", (848, 480)),
    ("1080p", "16:9", (1920, 1088)), ("4k", "16:9", (3840, 2160)), ("8k", "1:1", (4320, 4320)),
    ("480p", "4:3", (640, 480)),
])
def test_output_size_is_the_short_side_in_multiples_of_16(resolution, aspect, size):
    assert output_size(resolution, aspect) == size
    assert size[0] % 16 == 0 and size[1] % 16 == 0


def test_frames_follow_the_4k_plus_1_rule_and_the_model_cap():
    spec = CATALOG["wan2.1-t2v-1.3b"]
    assert generation_frames(spec, 4.0) == 65      # 4 s x 16 fps = 64 -> 65
    assert generation_frames(spec, 5.0) == 81      # the native maximum
    assert generation_frames(spec, 60.0) == 81     # capped; the plan says it is stretched
    for seconds in (1, 1.5, 2.2, 3.9):
        assert (generation_frames(spec, seconds) - 1) % 4 == 0


def test_plan_says_how_the_output_differs_from_what_was_generated():
    spec = CATALOG["wan2.1-t2v-1.3b"]
    request = GenerationRequest(prompt="a cat", resolution="1080p", duration_seconds=10, fps=30, genre="noir")
    plan = make_plan(request, spec, seed=3)
    assert (plan.gen_width, plan.gen_height) == (832, 480)
    assert (plan.out_width, plan.out_height, plan.out_frames) == (1920, 1088, 300)
    # 10 s at 16 fps is 161 frames: 3 windows of at most 81, continued by the VACE sibling
    assert (plan.clip_frames, plan.passes, plan.continuation_model) == (161, 3, "wan2.1-vace-1.3b")
    assert plan.gen_frames == max(w.frames for w in plan.windows) <= 81
    notes = " | ".join(plan.notes)
    assert "upscaled to 1920x1088" in notes and "generated as 3 windows (161 frames at 16 fps)" in notes
    assert "interpolated to 300 frames at 30 fps by optical flow" in notes
    assert (plan.temporal, plan.spatial) == ("flow", "upscale")
    assert "film noir" in plan.prompt and "color" in plan.negative_prompt
    # every output frame maps to a generated frame, in order, covering the whole clip
    sources = [plan.source_index(i) for i in range(plan.out_frames)]
    assert sources == sorted(sources) and sources[0] == 0 and sources[-1] == plan.clip_frames - 1
    # a model without a continuation model makes one pass and says it is stretched
    one_pass = make_plan(request, GENERATION_CATALOG["wan2.1-flf2v-14b"], seed=3)
    assert one_pass.passes == 1 and one_pass.gen_frames == one_pass.clip_frames == 81
    assert any("stretched over 10 s" in note for note in one_pass.notes)


def test_a_native_request_is_generated_as_asked():
    spec = CATALOG["wan2.1-t2v-1.3b"]
    plan = make_plan(GenerationRequest(prompt="a cat", resolution="480p", fps=16, duration_seconds=4,
                                       genre="none"), spec, seed=1)
    assert (plan.gen_width, plan.gen_height) == (848, 480)
    assert plan.prompt == "a cat" and plan.notes == [
        "generated 65 frames at 16 fps, resampled to 64 frames at 16 fps by nearest frame (frames dropped, none repeated)"]
    assert (plan.temporal, plan.spatial) == ("nearest", "resize")
