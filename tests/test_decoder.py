"""Speculative Decoder (diffusers' FirstBlockCache) on the offline tiny model: skipping,
honest stats, a clean pipeline afterwards, and the REST route."""

from __future__ import annotations

import threading
from contextlib import contextmanager
from pathlib import Path

import av
import numpy as np
import pytest
import torch
from diffusers import WanPipeline

from studio.engine import step_cache
from studio.engine.plan import make_plan
from studio.engine.request import parse_request
from studio.engine.step_cache import CACHE_LEVELS, DecoderStats, DecoderStatsAggregate
from studio.engine.t2v import Cancelled, QuietHooks, run_text_to_video
from studio.errors import InvalidRequest
from studio.genius.decoder.stats import stats_summary
from studio.models.catalog import CATALOG
from studio.models.cost.timing import latent_tokens
from studio.models.loader import ModelCache
from studio.models.tiny import build_tiny_pipeline
from tests.conftest import AUTH, SMALL, wait_for_terminal

# 10 steps with CFG: 20 transformer passes of 180 latent tokens (3 x 6 x 10) each.
BODY = {**SMALL, "seed": 1234}


class Hooks(QuietHooks):
    def __init__(self, cancel_after_step: int | None = None):
        self.steps: list[float] = []
        self.cancel_after_step = cancel_after_step

    def should_cancel(self) -> bool:
        return self.cancel_after_step is not None and len(self.steps) >= self.cancel_after_step

    def on_step(self, step, total, step_seconds, preview) -> None:
        self.steps.append(step_seconds)


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    return ModelCache(tmp_path_factory.mktemp("models")).get("tiny")


@contextmanager
def tail_block_counter(pipe):
    """Counts executions of the last transformer block's own computation (its feed-forward),
    independently of the cache's bookkeeping: it runs only when the remaining blocks run."""
    calls = [0]
    handle = pipe.transformer.blocks[-1].ffn.register_forward_hook(lambda *a: calls.__setitem__(0, calls[0] + 1))
    try:
        yield calls
    finally:
        handle.remove()


@contextmanager
def recorder_spy(monkeypatch):
    """Captures the DecoderRecorder the engine uses, to check its stats against its records."""
    seen = []
    original = step_cache.apply

    @contextmanager
    def spy(pipe, level):
        with original(pipe, level) as recorder:
            seen.append(recorder)
            yield recorder

    monkeypatch.setattr(step_cache, "apply", spy)
    yield seen
    monkeypatch.setattr(step_cache, "apply", original)


def run(model, tmp_path: Path, level: str, **overrides):
    plan = make_plan(parse_request({**BODY, "acceleration": level, **overrides}), CATALOG["tiny"], seed=BODY["seed"])
    name = f"{level}-{len(list(tmp_path.iterdir()))}"
    return plan, run_text_to_video(model, plan, Hooks(), tmp_path / f"{name}.mp4", tmp_path / f"{name}.jpg")


def assert_clean(pipe) -> None:
    """No cache, no cache hook and no instrumentation left on any denoiser."""
    from diffusers.hooks import HookRegistry

    for model in step_cache.denoisers(pipe):
        assert not model.is_cache_enabled
        assert not model._forward_pre_hooks
        for block in model.blocks:
            assert not block._forward_pre_hooks
            registry = HookRegistry.check_if_exists_or_initialize(block)
            assert not any("fbc" in name for name in registry.hooks), registry.hooks


def video_frames(path: Path) -> np.ndarray:
    with av.open(str(path)) as container:
        return np.stack([f.to_ndarray(format="rgb24") for f in container.decode(container.streams.video[0])])


# -- request and levels -------------------------------------------------------------------------


def test_request_field_defaults_to_off_and_is_validated():
    assert parse_request({"prompt": "a fox"}).acceleration == "off"
    assert parse_request({"prompt": "a fox", "acceleration": "fast"}).acceleration == "fast"
    with pytest.raises(InvalidRequest, match="acceleration"):
        parse_request({"prompt": "a fox", "acceleration": "turbo"})
    plan = make_plan(parse_request({"prompt": "a fox", "acceleration": "balanced"}), CATALOG["tiny"], seed=1)
    assert plan.acceleration == "balanced"


def test_levels_are_first_block_cache_with_documented_thresholds():
    assert CACHE_LEVELS["off"].config() is None
    balanced, fast = CACHE_LEVELS["balanced"].config(), CACHE_LEVELS["fast"].config()
    assert type(balanced).__name__ == type(fast).__name__ == "FirstBlockCacheConfig"
    assert 0 < balanced.threshold < fast.threshold < 0.2  # diffusers PR #11180: blurring from 0.2
    with pytest.raises(ValueError):
        step_cache.cache_level("turbo")


# -- the engine ---------------------------------------------------------------------------------


def test_off_computes_every_block_and_changes_nothing(model, tmp_path):
    with tail_block_counter(model.pipe) as calls:
        plan, out = run(model, tmp_path, "off")
    s = out.decoder
    assert (s.level, s.method, s.steps, s.passes) == ("off", None, 10, 20)
    assert calls[0] == s.passes == 20
    assert s.passes_reused == s.accepted_tokens == s.steps_fully_reused == 0
    assert s.steps_fully_computed == 10
    assert s.tokens_per_pass == latent_tokens(CATALOG["tiny"], plan) == 180
    assert s.total_tokens == 20 * 180 and s.acceptance_rate == 0.0
    assert s.speedup_factor == pytest.approx(1.0, abs=1e-9)
    assert s.average_draft_time_ms == s.average_verify_time_ms == 0.0
    assert_clean(model.pipe)


def test_off_output_is_bit_identical_to_the_plain_pipeline(model):
    pipe = model.pipe
    kwargs = dict(prompt="a fox", negative_prompt="blurry", height=96, width=160, num_frames=9,
                  num_inference_steps=4, guidance_scale=5.0, output_type="latent")
    plain = pipe(generator=torch.Generator().manual_seed(3), **kwargs).frames
    with step_cache.apply(pipe, "off") as recorder:
        wrapped = pipe(generator=torch.Generator().manual_seed(3), **kwargs).frames
    assert torch.equal(plain, wrapped)
    assert len(recorder.passes) == 8
    with step_cache.apply(pipe, "fast"):
        cached = pipe(generator=torch.Generator().manual_seed(3), **kwargs).frames
    assert not torch.equal(plain, cached)  # it does skip: the approximation changes the latents


@pytest.mark.parametrize("level", ["fast", "balanced"])
def test_cache_skips_some_passes_and_counts_them_exactly(model, tmp_path, level):
    with tail_block_counter(model.pipe) as calls:
        _plan, out = run(model, tmp_path, level)
    s = out.decoder
    assert (s.level, s.method, s.threshold) == (level, "first_block_cache", CACHE_LEVELS[level].threshold)
    assert 0 < s.passes_reused < s.passes == 20
    assert calls[0] == s.passes - s.passes_reused  # the remaining blocks really did not run
    assert s.accepted_tokens == s.passes_reused * s.tokens_per_pass
    assert s.total_tokens == s.passes * s.tokens_per_pass
    assert s.acceptance_rate == pytest.approx(s.passes_reused / s.passes)
    assert s.steps_fully_computed >= 1  # the first step has nothing to compare with
    assert s.draft_passes == 20 and s.verify_passes == 18  # first cond and first uncond pass: no comparison
    assert s.average_draft_time_ms > 0 and s.average_verify_time_ms > 0
    assert_clean(model.pipe)


def test_fast_skips_at_least_as_much_as_balanced(model, tmp_path):
    _p, balanced = run(model, tmp_path, "balanced", num_inference_steps=30)
    _p, fast = run(model, tmp_path, "fast", num_inference_steps=30)
    assert fast.decoder.passes_reused >= balanced.decoder.passes_reused > 0


@pytest.mark.parametrize("level", ["off", "fast"])
def test_stats_agree_with_the_engine_step_timings(model, tmp_path, monkeypatch, level):
    with recorder_spy(monkeypatch) as seen:
        _plan, out = run(model, tmp_path, level)
    s, records, steps = out.decoder, seen[0].passes, out.step_seconds
    assert len(steps) == s.steps == 10
    assert s.denoise_seconds == pytest.approx(sum(steps), rel=1e-9)
    assert out.mean_step_seconds == pytest.approx(s.denoise_seconds / s.steps, rel=1e-9)
    assert s.denoise_seconds <= out.denoise_seconds  # prompt encoding etc. are outside the steps
    # Recompute the definitions from the engine's step times and the per-pass records.
    verify = {i: sum(r.verify_seconds or 0.0 for r in records if r.step == i) for i in range(10)}
    full = [i for i in range(1, 10) if all(r.computed for r in records if r.step == i)]
    full_step = np.mean([steps[i] - verify[i] for i in full]) if full else steps[0] - verify[0]
    assert s.full_step_seconds == pytest.approx(full_step, rel=1e-9)
    assert s.full_step_samples == (len(full) or 1)
    uncached = (steps[0] - verify[0]) + full_step * (len(steps) - 1)
    assert s.uncached_estimate_seconds == pytest.approx(uncached, rel=1e-9)
    if level == "off":
        assert s.speedup_factor == 1.0 and s.speedup_basis.startswith("off")
    else:
        assert s.estimated_speedup_factor == pytest.approx(uncached / sum(steps), rel=1e-9)
        reported = s.uncached_measured_seconds if s.speedup_basis.startswith("measured") else uncached
        assert s.speedup_factor == pytest.approx(reported / sum(steps), rel=1e-9)
    assert s.average_draft_time_ms == pytest.approx(
        1000 * np.mean([r.draft_seconds for r in records if r.draft_seconds is not None]) if s.draft_passes else 0.0)
    # A draft is one block of two, the verify one comparison: both are a fraction of a step.
    assert s.average_draft_time_ms / 1000 < s.full_step_seconds
    assert s.average_verify_time_ms <= s.average_draft_time_ms or level == "off"


def test_output_video_shape_and_frames_unchanged(model, tmp_path):
    _p, off = run(model, tmp_path, "off")
    _p, fast = run(model, tmp_path, "fast")
    assert (fast.frames, fast.width, fast.height, fast.fps) == (off.frames, off.width, off.height, off.fps)
    a, b = video_frames(off.video_path), video_frames(fast.video_path)
    assert a.shape == b.shape == (12, 480, 848, 3)
    assert fast.thumbnail_path.read_bytes()[:2] == b"\xff\xd8"


def test_cache_is_removed_after_the_run_and_the_next_off_run_computes_everything(model, tmp_path):
    run(model, tmp_path, "fast")
    assert_clean(model.pipe)
    with tail_block_counter(model.pipe) as calls:
        _p, out = run(model, tmp_path, "off")
    assert calls[0] == out.decoder.passes == 20 and out.decoder.passes_reused == 0


def test_cache_is_removed_after_a_cancelled_run(model, tmp_path):
    plan = make_plan(parse_request({**BODY, "acceleration": "fast"}), CATALOG["tiny"], seed=1)
    with pytest.raises(Cancelled):
        run_text_to_video(model, plan, Hooks(cancel_after_step=3), tmp_path / "c.mp4", tmp_path / "c.jpg")
    assert_clean(model.pipe)


def test_a_cache_enabled_by_someone_else_is_refused_and_left_alone(model):
    from diffusers import FirstBlockCacheConfig

    pipe = model.pipe
    pipe.transformer.enable_cache(FirstBlockCacheConfig(threshold=0.5))
    try:
        with pytest.raises(RuntimeError, match="already enabled"):
            with step_cache.apply(pipe, "fast"):
                pass
        assert pipe.transformer.is_cache_enabled and not pipe.transformer._forward_pre_hooks
    finally:
        pipe.transformer.disable_cache()


def test_both_wan22_experts_are_cached_and_counted():
    """Wan2.2-A14B layout: a high-noise ``transformer`` and a low-noise ``transformer_2``."""
    base = build_tiny_pipeline()
    second = build_tiny_pipeline().transformer
    pipe = WanPipeline(tokenizer=base.tokenizer, text_encoder=base.text_encoder, vae=base.vae,
                       scheduler=base.scheduler, transformer=base.transformer, transformer_2=second,
                       boundary_ratio=0.5)
    pipe.set_progress_bar_config(disable=True)
    seen_enabled = []
    kwargs = dict(prompt="a fox", negative_prompt="blurry", height=96, width=160, num_frames=9,
                  num_inference_steps=12, guidance_scale=5.0, output_type="latent",
                  callback_on_step_end=lambda p, i, t, k: seen_enabled.append(
                      (p.transformer.is_cache_enabled, p.transformer_2.is_cache_enabled)) or {})
    with step_cache.apply(pipe, "fast") as recorder:
        pipe(generator=torch.Generator().manual_seed(5), **kwargs)
    assert set(seen_enabled) == {(True, True)}
    experts = {r.expert for r in recorder.passes}
    assert experts == {0, 1}
    stats = recorder.stats([0.01] * 12)
    assert stats.passes == 24
    # Each expert's first cond and uncond pass has nothing to compare with.
    assert stats.verify_passes == 24 - 4
    assert stats.passes_reused > 0
    assert_clean(pipe)


# -- the reported speedup against an A/B run -----------------------------------------------------

# What the reported speedup_factor is checked against: the same request (same seed, so the
# cache makes the same decisions) run uncached and cached on the tiny model, speedup = off
# denoise / cached denoise. With a measured baseline the reported figure IS that ratio, so the
# tolerance only covers rounding; without one the figure is an estimate and must say so.
AB_TOLERANCE = 1e-6


@pytest.fixture()
def fresh_baselines():
    step_cache.BASELINES.clear()
    yield step_cache.BASELINES
    step_cache.BASELINES.clear()


def test_reported_speedup_is_the_measured_ab_speedup(model, tmp_path, fresh_baselines):
    _p, first_fast = run(model, tmp_path, "fast", num_inference_steps=20)
    s = first_fast.decoder
    # No uncached run of this shape yet: an estimate, labelled, with what it rests on.
    assert s.speedup_basis.startswith("estimate:") and "sample" in s.speedup_basis
    assert s.baseline_runs == 0 and s.uncached_measured_seconds is None
    assert s.speedup_factor == pytest.approx(s.estimated_speedup_factor, rel=1e-12)

    _p, off = run(model, tmp_path, "off", num_inference_steps=20)
    _p, fast = run(model, tmp_path, "fast", num_inference_steps=20)
    ab = off.decoder.denoise_seconds / fast.decoder.denoise_seconds  # the A/B measurement, same seed
    s = fast.decoder
    assert s.speedup_basis.startswith("measured:") and s.baseline_runs == 1
    assert s.uncached_measured_seconds == pytest.approx(off.decoder.denoise_seconds, rel=1e-12)
    assert s.speedup_factor == pytest.approx(ab, rel=AB_TOLERANCE)
    assert s.passes_reused == first_fast.decoder.passes_reused  # same seed, same cache decisions
    assert off.decoder.speedup_factor == 1.0 and off.decoder.speedup_basis.startswith("off")


def test_baseline_is_the_median_of_recent_off_runs_of_the_same_shape(model, tmp_path, fresh_baselines):
    offs = [run(model, tmp_path, "off")[1].decoder.denoise_seconds for _ in range(3)]
    _p, other_steps = run(model, tmp_path, "fast", num_inference_steps=12)  # another shape: no baseline
    assert other_steps.decoder.speedup_basis.startswith("estimate:")
    _p, fast = run(model, tmp_path, "fast")
    assert fast.decoder.baseline_runs == 3
    assert fast.decoder.uncached_measured_seconds == pytest.approx(float(np.median(offs)), rel=1e-12)
    baselines = step_cache.UncachedBaselines(runs=2, shapes=1)
    for value in (1.0, 2.0, 3.0):
        baselines.add("a", value)
    baselines.add("b", 5.0)
    assert baselines.get("a") == [] and baselines.get("b") == [5.0]


def test_aggregate_says_how_much_of_its_speedup_is_measured():
    agg = DecoderStatsAggregate()
    estimated = _stats("fast", 10, 1.0, 2.0)
    estimated.method = "first_block_cache"
    agg.add(estimated)
    assert agg.snapshot()["speedup_basis"] == "estimate"
    measured = _stats("fast", 10, 1.0, 2.0)
    measured.method, measured.uncached_measured_seconds, measured.baseline_runs = "first_block_cache", 1.5, 1
    agg.add(measured)
    snap = agg.snapshot()
    assert snap["measured_tasks"] == 1 and snap["speedup_basis"].startswith("mixed: 1 of 2")
    assert snap["speedup_factor"] == pytest.approx((2.0 + 1.5) / 2.0)
    stats_summary(agg)


# -- the aggregate ------------------------------------------------------------------------------


def _stats(level: str, reused: int, denoise: float, uncached: float) -> DecoderStats:
    return DecoderStats(level=level, method=None, threshold=None, steps=10, passes=20, passes_reused=reused,
                        steps_fully_computed=10 - reused // 2, steps_fully_reused=reused // 2, tokens_per_pass=100,
                        total_tokens=2000, accepted_tokens=reused * 100, acceptance_rate=reused / 20,
                        speedup_factor=uncached / denoise, average_draft_time_ms=2.0 if reused else 0.0,
                        average_verify_time_ms=0.5 if reused else 0.0, draft_passes=20 if reused else 0,
                        verify_passes=18 if reused else 0, full_step_seconds=uncached / 10, full_step_samples=9,
                        uncached_estimate_seconds=uncached, denoise_seconds=denoise)


def test_aggregate_is_ratios_of_totals_per_level_and_thread_safe():
    agg = DecoderStatsAggregate()
    empty = agg.snapshot()
    assert (empty["tasks"], empty["total_tokens"], empty["acceptance_rate"], empty["speedup_factor"]) == (0, 0, 0.0, 1.0)

    def feed():
        for _ in range(50):
            agg.add(_stats("off", 0, 1.0, 1.0))
            agg.add(_stats("fast", 10, 1.0, 2.0))

    threads = [threading.Thread(target=feed) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    snap = agg.snapshot()
    assert snap["tasks"] == 400 and snap["passes"] == 8000 and snap["passes_reused"] == 2000
    assert snap["total_tokens"] == 800_000 and snap["accepted_tokens"] == 200_000
    assert snap["acceptance_rate"] == pytest.approx(0.25)
    assert snap["speedup_factor"] == pytest.approx(3.0 / 2.0)  # (1 + 2) s uncached / (1 + 1) s actual
    assert snap["average_draft_time_ms"] == pytest.approx(2.0) and snap["average_verify_time_ms"] == pytest.approx(0.5)
    assert snap["by_level"]["fast"]["tasks"] == 200 and snap["by_level"]["fast"]["speedup_factor"] == pytest.approx(2.0)
    assert snap["by_level"]["off"]["acceptance_rate"] == 0.0 and snap["by_level"]["balanced"]["tasks"] == 0
    assert snap["levels"]["fast"]["threshold"] == CACHE_LEVELS["fast"].threshold
    stats_summary(agg)  # validates against the response model


# -- REST ---------------------------------------------------------------------------------------


STATS_PATH = "/v1/genius/decoder/stats"


@pytest.fixture()
def decoder_api(live_server, http):
    """The route, mounted by app.py once wired; until then inserted ahead of the /v1 catch-all."""
    from studio.api.genius_decoder import router

    if http.get(STATS_PATH).status_code == 404:  # answered by app.py's /v1 catch-all: not wired yet
        routes = live_server.app.router.routes
        before = len(routes)
        live_server.app.include_router(router)
        added = routes[before:]
        del routes[before:]
        routes[0:0] = added
    return http


def test_rest_generate_with_acceleration_reports_stats(decoder_api, live_server):
    http = decoder_api
    before = http.get(STATS_PATH)
    assert before.status_code == 200, before.text
    before = before.json()

    task_id = http.post("/v1/generate", json={**BODY, "acceleration": "fast"}).json()["task_id"]
    assert wait_for_terminal(http, task_id)["status"] == "completed"
    meta = http.get(f"/v1/result/{task_id}").json()["metadata"]
    stats = meta["decoder"]
    assert stats["level"] == "fast" and stats["passes"] == 20 and 0 < stats["passes_reused"] < 20
    assert stats["accepted_tokens"] == stats["passes_reused"] * stats["tokens_per_pass"]
    assert stats["denoise_seconds"] == pytest.approx(
        meta["timings"]["mean_step_seconds"] * stats["steps"], rel=1e-2, abs=1e-3)

    after = http.get(STATS_PATH).json()
    for field in ("total_tokens", "accepted_tokens", "acceptance_rate", "speedup_factor",
                  "average_draft_time_ms", "average_verify_time_ms"):
        assert isinstance(after[field], (int, float)), field
    assert after["tasks"] >= before["tasks"] + 1
    fast_before, fast_after = before["by_level"]["fast"], after["by_level"]["fast"]
    assert fast_after["tasks"] == fast_before["tasks"] + 1
    assert fast_after["accepted_tokens"] == fast_before["accepted_tokens"] + stats["accepted_tokens"]
    assert fast_after["total_tokens"] == fast_before["total_tokens"] + stats["total_tokens"]
    assert 0 < after["acceptance_rate"] <= 1 and after["speedup_factor"] > 0
    assert after["levels"]["fast"]["method"] == "first_block_cache"
    assert after["since"]


def test_rest_stats_need_a_key(decoder_api, live_server):
    import httpx

    response = httpx.get(live_server.url + STATS_PATH)
    assert response.status_code == 401 and set(response.json()) == {"error", "detail", "type"}
    assert decoder_api.get(STATS_PATH, headers=AUTH).status_code == 200


def test_rest_rejects_an_unknown_acceleration(decoder_api):
    response = decoder_api.post("/v1/generate", json={**BODY, "acceleration": "turbo"})
    assert response.status_code == 400 and "acceleration" in response.json()["detail"]


def test_rest_batch_settings_carry_acceleration(decoder_api):
    http = decoder_api
    settings = {k: v for k, v in BODY.items() if k != "prompt"}
    submitted = http.post("/v1/genius/batch/submit", json={"prompts": [BODY["prompt"]],
                                                           "settings": {**settings, "acceleration": "balanced"}})
    assert submitted.status_code == 202, submitted.text
    (task_id,) = submitted.json()["task_ids"]
    assert wait_for_terminal(http, task_id)["status"] == "completed"
    stats = http.get(f"/v1/result/{task_id}").json()["metadata"]["decoder"]
    assert stats["level"] == "balanced" and stats["passes_reused"] > 0
