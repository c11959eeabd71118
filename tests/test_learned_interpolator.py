"""The learned frame interpolator (issue 13, part 2's model path): RIFE 4.6 networks loaded from
a file (safetensors, or a DataParallel-prefixed PyTorch pickle), run on any frame size, and chosen
per request with ``interpolator: "learned"``; the classical optical flow stays the default."""

from __future__ import annotations

import io

import av
import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from studio.engine.learned_interpolation import LearnedInterpolation
from studio.engine.plan import make_plan
from studio.engine.request import GenerationRequest
from studio.errors import InvalidRequest, ModelUnavailable
from studio.models.catalog import CATALOG, TINY
from studio.models.rife import IFNet, load_interpolator
from tests.conftest import AUTH, SMALL, LiveServer, wait_for_terminal

WIDTHS = (16, 16, 8, 8)  # a tiny RIFE: same layout, narrow blocks


def _tiny_net(seed: int = 0) -> IFNet:
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return IFNet(WIDTHS).eval()


def _shifting_net(pixels: float) -> IFNet:
    """A net whose flow is ``pixels`` in x for frame 0 (set by the last block's output bias, every
    output weight zero) and whose mask takes frame 0 alone: it returns frame 0 moved left."""
    net = _tiny_net()
    with torch.no_grad():
        for block in (net.block0, net.block1, net.block2, net.block3):
            block.lastconv[0].weight.zero_()
            block.lastconv[0].bias.zero_()
        bias = net.block3.lastconv[0].bias  # 24 channels -> 6 after the 2x2 pixel shuffle (4 each)
        bias[0:4] = pixels  # channel 0: frame 0's x flow
        bias[16:20] = 30.0  # channel 4: the mask, sigmoid ~ 1 -> frame 0's warp alone
    return net


@pytest.fixture(scope="module")
def weights(tmp_path_factory):
    folder = tmp_path_factory.mktemp("interpolators")
    net = _tiny_net()
    save_file(net.state_dict(), folder / "tiny-rife.safetensors")
    torch.save({f"module.{k}": v for k, v in net.state_dict().items()}, folder / "flownet.pkl")
    return folder


def _video_frames(data: bytes) -> list[np.ndarray]:
    with av.open(io.BytesIO(data)) as container:
        return [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]


# -- the network -----------------------------------------------------------------------------

def test_both_file_forms_load_to_the_same_network(weights):
    plain, prefixed = load_interpolator(str(weights / "tiny-rife.safetensors")), \
        load_interpolator(str(weights / "flownet.pkl"))
    assert plain.net.widths == prefixed.net.widths == WIDTHS
    a, b = torch.rand(1, 3, 64, 128), torch.rand(1, 3, 64, 128)
    with torch.inference_mode():
        assert torch.equal(plain.net(a, b, 0.5), prefixed.net(a, b, 0.5))
    assert plain.describe()["architecture"] == "IFNet (RIFE 4.6)"


def test_files_that_are_not_rife_46_are_refused_with_the_reason(tmp_path):
    save_file({"conv_first.weight": torch.zeros(8, 3, 3, 3)}, tmp_path / "esrgan.safetensors")
    with pytest.raises(InvalidRequest, match="not a RIFE IFNet"):
        load_interpolator(str(tmp_path / "esrgan.safetensors"))
    later = {k: v for k, v in _tiny_net().state_dict().items()}
    later["block0.conv0.0.0.weight"] = torch.zeros(8, 7 + 16, 3, 3)  # 4.7+: encoded features in the input
    save_file(later, tmp_path / "rife47.safetensors")
    with pytest.raises(InvalidRequest, match="later RIFE versions"):
        load_interpolator(str(tmp_path / "rife47.safetensors"))
    with pytest.raises(ModelUnavailable, match="does not exist"):
        load_interpolator(str(tmp_path / "missing.pkl"))


def test_the_flow_moves_frame_zero_by_its_pixels_on_any_frame_size():
    """The warp's convention (flow in pixels, x first, edges repeated) and the padding to 64: a
    flow of +3 px samples frame 0 three pixels to the right, on a 90 x 100 frame."""
    from studio.models.rife import Interpolator

    rng = np.random.default_rng(0)
    frame0 = rng.integers(0, 256, (90, 100, 3), dtype=np.uint8)
    frame1 = rng.integers(0, 256, (90, 100, 3), dtype=np.uint8)
    middle = LearnedInterpolation(Interpolator(_shifting_net(3.0), "shift"), torch.device("cpu"))(frame0, frame1, 0.5)
    assert middle.shape == frame0.shape and middle.dtype == np.uint8
    assert np.abs(middle[:, :-3].astype(int) - frame0[:, 3:]).max() <= 1


def test_a_random_network_blends_only_what_the_two_frames_hold(weights):
    """Warping samples the frames and the mask blends convexly: every value lies between the
    frames' own extremes, and the two neighbours are not simply repeated."""
    interpolate = LearnedInterpolation(load_interpolator(str(weights / "tiny-rife.safetensors")), torch.device("cpu"))
    frame0 = np.full((48, 80, 3), 60, np.uint8)
    frame1 = np.full((48, 80, 3), 180, np.uint8)
    frame0[10:30, 10:30] = 120
    middle = interpolate(frame0, frame1, 0.25)
    assert 60 <= middle.min() and middle.max() <= 180
    assert not np.array_equal(middle, frame0) and not np.array_equal(middle, frame1)


# -- the request ------------------------------------------------------------------------------

def test_the_plan_asks_for_the_network_only_when_frames_are_interpolated():
    spec = CATALOG[TINY]
    more = make_plan(GenerationRequest(prompt="a cat", fps=48, interpolator="learned"), spec, seed=1)
    assert more.temporal == "flow" and more.interpolator == "learned"
    assert any("by the server's learned interpolator" in note for note in more.notes)
    at_native = make_plan(GenerationRequest(prompt="a cat", fps=24, duration_seconds=2, interpolator="learned"),
                          CATALOG["wan2.2-ti2v-5b"], seed=1)  # 24 fps: 49 generated frames for 48
    assert at_native.temporal == "nearest" and at_native.interpolator == "classical"


def test_a_server_without_a_learned_interpolator_says_so(http):
    response = http.post("/v1/generate", json={**SMALL, "fps": 48, "interpolator": "learned"})
    assert response.status_code == 503 and "no learned interpolator" in response.json()["detail"]


def test_a_48_fps_video_on_tiny_goes_through_the_servers_learned_interpolator(tmp_path, weights):
    import httpx

    with LiveServer(tmp_path / "data", interpolator_model=str(weights / "flownet.pkl")) as server, \
            httpx.Client(base_url=server.url, timeout=60, headers=AUTH) as http:
        ids = {}
        for interpolator in ("learned", "classical"):
            body = {**SMALL, "fps": 48, "interpolator": interpolator, "seed": 3}
            ids[interpolator] = http.post("/v1/generate", json=body).json()["task_id"]
            assert wait_for_terminal(http, ids[interpolator])["status"] == "completed"
        meta = http.get(f"/v1/result/{ids['learned']}").json()["metadata"]
        assert meta["frame_rate_method"] == "learned" and meta["frames"] == 48
        assert meta["interpolator"]["model"] == "flownet.pkl" and meta["interpolator"]["block_widths"] == list(WIDTHS)
        classical = http.get(f"/v1/result/{ids['classical']}").json()["metadata"]
        assert classical["frame_rate_method"] == "optical_flow" and classical["interpolator"] is None
        learned = _video_frames(http.get(f"/v1/videos/{ids['learned']}.mp4").content)
        assert len(learned) == 48
        classical_frames = _video_frames(http.get(f"/v1/videos/{ids['classical']}.mp4").content)
        assert any(not np.array_equal(a, b) for a, b in zip(learned, classical_frames))
        # The same choice through the Gradio API (the Generate tab's "Frames and size" accordion).
        from gradio_client import Client

        client = Client(server.url, verbose=False, download_files=False)
        try:
            job = client.submit(SMALL["prompt"], "blurry", 1.0, 48, "480p", "16:9", "cinematic", 3, 7.5, 10, "tiny",
                                1, [], 1.0, "standard", None, None, "classical", "learned", api_name="/generate")
            *_, metadata = list(job)[-1]
        finally:
            client.close()
        assert metadata["status"] == "completed", metadata
        assert metadata["metadata"]["frame_rate_method"] == "learned"
