"""Image-to-video and first/last frame in Generate (issue 13, part 4): ``image`` / ``last_image``
(base64 or a URL through the guarded fetcher) on an image model, picked for you when the request
names none; text-only models refuse an image, image models refuse to run without one.

The tiny image models are untrained, so their frames are noise whatever the image: these tests
show the image reaches the model and changes the video, not that the video looks like it."""

from __future__ import annotations

import base64
import io
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import av
import cv2
import numpy as np
import pytest
from skimage import data

from studio.models.catalog import TINY_I2V, TINY_I2V_FIRST
from tests.conftest import SMALL, client_owner, wait_for_terminal


def b64(image: np.ndarray) -> str:
    ok, png = cv2.imencode(".png", cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
    return base64.b64encode(png.tobytes()).decode()


def _frames(http, task_id: str) -> np.ndarray:
    with av.open(io.BytesIO(http.get(f"/v1/videos/{task_id}.mp4").content)) as container:
        return np.stack([f.to_ndarray(format="rgb24") for f in container.decode(video=0)])


def _run(http, **fields) -> str:
    response = http.post("/v1/generate", json={**SMALL, "seed": 9, **fields})
    assert response.status_code == 202, response.text
    task_id = response.json()["task_id"]
    assert wait_for_terminal(http, task_id)["status"] == "completed"
    return task_id


def test_an_image_runs_the_image_model_and_conditions_the_video(http):
    astronaut = _run(http, image=b64(data.astronaut()))
    meta = http.get(f"/v1/result/{astronaut}").json()["metadata"]
    assert meta["model"] == TINY_I2V_FIRST and meta["conditioning"] == "first frame"
    assert any("conditioned on the given first frame" in note for note in meta["notes"])
    coffee = _run(http, image=b64(data.coffee()))
    again = _run(http, image=b64(data.astronaut()))
    # the same seed: another image gives another video, the same image the same one
    assert np.abs(_frames(http, astronaut).astype(int) - _frames(http, coffee)).mean() > 0.5
    assert np.array_equal(_frames(http, astronaut), _frames(http, again))


def test_a_first_and_a_last_frame_run_the_first_last_frame_model(http):
    task_id = _run(http, image=b64(data.astronaut()), last_image=b64(data.coffee()))
    meta = http.get(f"/v1/result/{task_id}").json()["metadata"]
    assert meta["model"] == TINY_I2V and meta["conditioning"] == "first and last frame"


@pytest.mark.parametrize("fields, detail", [
    ({"model": "tiny", "image": "IMAGE"}, "tiny generates from text only"),
    ({"model": TINY_I2V_FIRST}, "generates from an image; give image"),
    ({"last_image": "IMAGE"}, "last_image needs image"),
    ({"model": TINY_I2V_FIRST, "image": "IMAGE", "last_image": "IMAGE"}, "takes a first frame only"),
    ({"model": TINY_I2V, "image": "IMAGE"}, "give last_image too"),
    ({"image": "not base64!"}, "image: image is not valid base64"),
    ({"image": "https://10.0.0.1/frame.png"}, "10.0.0.1"),
])
def test_images_that_do_not_fit_the_model_are_refused_with_the_reason(http, fields, detail):
    image = b64(data.astronaut()[::8, ::8].copy())
    body = {**SMALL, **{k: image if v == "IMAGE" else v for k, v in fields.items()}}
    response = http.post("/v1/generate", json=body)
    assert response.status_code == 400, response.text
    assert detail in response.json()["detail"]


def test_an_image_url_is_fetched_by_the_server(http):
    ok, png = cv2.imencode(".png", cv2.cvtColor(data.astronaut(), cv2.COLOR_RGB2BGR))

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):
            self.send_response(200)
            self.send_header("Content-Type", "image/png")
            self.send_header("Content-Length", str(len(png)))
            self.end_headers()
            self.wfile.write(png.tobytes())

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)  # loopback: allowed in tests only
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        by_url = _run(http, image=f"http://127.0.0.1:{server.server_port}/astronaut.png")
    finally:
        server.shutdown()
    by_data = _run(http, image=b64(data.astronaut()))
    assert np.array_equal(_frames(http, by_url), _frames(http, by_data))


def test_the_models_say_how_many_frames_they_start_from(http):
    models = {m["id"]: m for m in http.get("/v1/models").json()}
    assert (models["tiny"]["images"], models[TINY_I2V_FIRST]["images"], models[TINY_I2V]["images"]) == (0, 1, 2)
    assert models["wan2.1-i2v-14b-480p"]["images"] == models["wan2.2-i2v-a14b"]["images"] == 1


def test_the_gradio_api_starts_from_an_uploaded_image(client, live_server, tmp_path):
    from gradio_client import handle_file

    path = tmp_path / "astronaut.png"
    cv2.imwrite(str(path), cv2.cvtColor(data.astronaut(), cv2.COLOR_RGB2BGR))
    job = client.submit(SMALL["prompt"], "blurry", 1.0, 12, "480p", "16:9", "cinematic", 5, 7.5, 10, "tiny", 1, [],
                        1.0, "standard", handle_file(str(path)), None, api_name="/generate")
    task_id, *_, metadata = list(job)[-1]
    assert metadata["status"] == "completed"
    assert (metadata["metadata"]["model"], metadata["metadata"]["conditioning"]) == (TINY_I2V_FIRST, "first frame")
    assert live_server.studio.status(task_id, client_owner(live_server.studio, client)).status == "completed"


def test_a_ti2v_model_starts_exactly_from_the_image_in_its_latent_space(tmp_path):
    """Wan2.2 TI2V's image conditioning (``tiny-ti2v``): the first latent frame of the result is
    the image's own latents, so the first frame is the VAE's rendering of the image whatever the
    (untrained) transformer does. Text alone still works on the same model."""
    import torch

    from studio.engine.plan import make_plan
    from studio.engine.request import GenerationRequest
    from studio.engine.t2v import FrameImages, QuietHooks, _denoise, image_pipeline
    from studio.models.catalog import TINY_TI2V, get_spec
    from studio.models.loader import ModelCache

    model = ModelCache(tmp_path).get(TINY_TI2V)
    plan = make_plan(GenerationRequest(prompt="a cat", image="stored", num_inference_steps=10), get_spec(TINY_TI2V), 1)
    assert plan.conditioning == "first frame"
    frames = {}
    for name in ("astronaut", "coffee"):
        image = FrameImages(getattr(data, name)())
        with torch.inference_mode():
            latents, *_ = _denoise(model, [plan], [QuietHooks()], 64, 0.2, None, None, (), image)
            pipe = image_pipeline(model.pipe)
            inputs = image.pipeline_inputs(plan.gen_width, plan.gen_height)
            picture = pipe.video_processor.preprocess(inputs["image"], height=plan.gen_height, width=plan.gen_width)
            _, condition, _ = pipe.prepare_latents(picture, 1, 16, plan.gen_height, plan.gen_width, plan.gen_frames,
                                                   torch.float32, torch.device("cpu"), None, latents.clone())
        assert torch.equal(latents[:, :, :1], condition)
        frames[name] = latents
    assert not torch.equal(frames["astronaut"][:, :, :1], frames["coffee"][:, :, :1])
    text_only = make_plan(GenerationRequest(prompt="a cat", num_inference_steps=10), get_spec(TINY_TI2V), 1)
    assert text_only.conditioning == "text"


def test_the_ti2v_model_takes_an_image_or_text_through_rest(http):
    task_id = _run(http, model="tiny-ti2v", image=b64(data.astronaut()))
    assert http.get(f"/v1/result/{task_id}").json()["metadata"]["conditioning"] == "first frame"
    task_id = _run(http, model="tiny-ti2v")
    assert http.get(f"/v1/result/{task_id}").json()["metadata"]["conditioning"] == "text"
    response = http.post("/v1/generate", json={**SMALL, "model": "tiny-ti2v", "image": b64(data.astronaut()),
                                               "last_image": b64(data.coffee())})
    assert response.status_code == 400 and "takes a first frame only" in response.json()["detail"]


def test_a_repeated_request_with_an_idempotency_key_keeps_one_copy_of_its_images(http, live_server):
    inputs = live_server.studio.settings.data_dir / "inputs"
    before = set(inputs.iterdir()) if inputs.exists() else set()
    body = {**SMALL, "image": b64(data.astronaut())}
    headers = {"Idempotency-Key": "i2v-images-once"}
    first = http.post("/v1/generate", json=body, headers=headers).json()["task_id"]
    again = http.post("/v1/generate", json=body, headers=headers).json()["task_id"]
    assert first == again and len(set(inputs.iterdir()) - before) == 1
    wait_for_terminal(http, first)
