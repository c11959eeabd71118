"""Time estimates: one cost model (the orchestrator's) for the engine and the orchestrator, and
a status that says whether an estimate rests on a prior or on measured runs (and how many)."""

from __future__ import annotations

import pytest

from studio.config import Settings
from studio.engine.edit import FRAME_RATE, timing_key
from studio.engine.estimate import Estimator
from studio.engine.plan import make_plan
from studio.engine.request import GenerationRequest
from studio.jobs.store import TaskStore
from studio.models.catalog import CATALOG, TINY
from studio.models.cost.architectures import ARCHITECTURES
from studio.models.cost.timing import (
    H200_PRIOR_FLOP_S,
    STEP_RATE,
    CostInputs,
    estimate_time,
    flops_per_step,
    latent_tokens,
    timing_samples,
)

M13, M14, M5, A14 = "wan2.1-t2v-1.3b", "wan2.1-t2v-14b", "wan2.2-ti2v-5b", "wan2.2-t2v-a14b"


@pytest.fixture()
def store(tmp_path):
    store = TaskStore(tmp_path / "studio.sqlite3")
    yield store
    store.close()


def _plan(model: str, resolution: str = "720p"):
    return make_plan(GenerationRequest(prompt="a lighthouse in a storm", resolution=resolution, duration_seconds=5),
                     CATALOG[model], seed=0)


@pytest.mark.parametrize("model", [M13, M14, M5, A14, TINY])
def test_the_engine_estimate_is_the_orchestrators(store, model):
    spec, plan = CATALOG[model], _plan(model)
    engine = Estimator(store).estimate(spec, plan, model_loaded=False)
    orchestrator = estimate_time(CostInputs.of(store), spec, plan)
    assert engine.seconds == pytest.approx(orchestrator.seconds, rel=1e-9)
    assert engine.step_seconds == pytest.approx(orchestrator.step_seconds, rel=1e-9)
    if model != TINY:  # the FLOP model at the H200 prior: the engine no longer scales by parameters alone
        step = flops_per_step(ARCHITECTURES[model], latent_tokens(spec, plan), plan.guidance_scale) / H200_PRIOR_FLOP_S
        assert engine.step_seconds == pytest.approx(step, rel=1e-9)
    assert engine.basis == "prior" and engine.samples == 0


def test_loaded_models_need_no_load_time(store):
    spec, plan = CATALOG[M14], _plan(M14)
    cold = Estimator(store).estimate(spec, plan, model_loaded=False)
    warm = Estimator(store).estimate(spec, plan, model_loaded=True)
    assert warm.load_seconds == 0 and cold.seconds == pytest.approx(warm.seconds + cold.load_seconds)


def test_basis_and_samples_follow_the_measurements(store):
    estimator = Estimator(store)
    spec13, spec14 = CATALOG[M13], CATALOG[M14]
    for _ in range(3):
        store.record_timing(M13, STEP_RATE, 0.05)
    assert timing_samples(store, M13, STEP_RATE) == 3
    own = estimator.estimate(spec13, _plan(M13, "480p"), model_loaded=True)
    assert (own.basis, own.samples) == ("measured", 3) and M13 in own.source
    carried = estimator.estimate(spec14, _plan(M14), model_loaded=True)  # FLOP/s carried over from 1.3B
    assert (carried.basis, carried.samples) == ("measured", 3) and "carried over" in carried.source
    tiny = estimator.estimate(CATALOG[TINY], _plan(TINY), model_loaded=True)
    assert (tiny.basis, tiny.samples) == ("prior", 0)
    store.record_timing(TINY, STEP_RATE, 0.04)
    tiny = estimator.estimate(CATALOG[TINY], _plan(TINY), model_loaded=True)
    assert (tiny.basis, tiny.samples) == ("measured", 1)


@pytest.fixture()
def studio(tmp_path):
    """A studio whose worker never starts: its tasks stay pending."""
    from studio.core import Studio

    studio = Studio(Settings(model=TINY, data_dir=tmp_path / "data"))
    yield studio
    studio.store.close()
    studio.keys.close()


def test_status_says_what_the_estimate_rests_on(studio):
    task_id = studio.submit(GenerationRequest(prompt="a lighthouse in a storm", duration_seconds=1, fps=12,
                                              resolution="480p", num_inference_steps=10, model=TINY)).task_id
    status = studio.status(task_id)
    assert (status.estimate_basis, status.estimate_samples) == ("prior", 0)
    for _ in range(2):
        studio.store.record_timing(TINY, STEP_RATE, 0.04)
    status = studio.status(task_id)
    assert (status.estimate_basis, status.estimate_samples) == ("measured", 2)
    studio.cancel(task_id)
    ended = studio.status(task_id)
    assert ended.estimate_basis is None and ended.estimate_samples is None


def test_status_of_a_video_side_task_says_it_too(studio):
    row = {"mode": "remove", "path": "classical", "feather_radius": 4, "bbox_xywh": [8, 8, 16, 16]}  # a typed spec
    task, _ = studio.store.create_task("inpaint", row, owner="ui")
    assert (studio.status(task.id).estimate_basis, studio.status(task.id).estimate_samples) == ("prior", 0)
    studio.store.record_timing(timing_key("inpaint", "classical"), FRAME_RATE, 0.03)
    assert (studio.status(task.id).estimate_basis, studio.status(task.id).estimate_samples) == ("measured", 1)


def test_video_side_priors_differ_by_kind_until_measured(studio):
    from studio.engine.edit import CLASSICAL_PRIOR_SECONDS_PER_FRAME
    from studio.genius.edit_submit import estimate_seconds

    priors = {kind: estimate_seconds(studio.services, kind, 100) for kind in ("inpaint", "v2v", "lipsync", "consistency")}
    assert len(set(priors.values())) == 4  # one benchmarked rate per kind, not one constant for all
    assert priors["v2v"] == pytest.approx(100 * CLASSICAL_PRIOR_SECONDS_PER_FRAME["v2v"])
    studio.store.record_timing(timing_key("v2v", "classical"), FRAME_RATE, 0.2)
    assert estimate_seconds(studio.services, "v2v", 100) == pytest.approx(20.0)
