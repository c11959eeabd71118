"""The learned upscaler (issue 13, part 3's model path): ESRGAN-family networks (RRDBNet) loaded
from either key layout, run tile by tile, and chosen per request with ``upscaler: "learned"``.
The networks here are tiny and random, built offline: they check the path, not the quality."""

from __future__ import annotations

import re

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from studio.engine.super_resolution import LearnedUpscale
from studio.errors import InvalidRequest, ModelUnavailable
from studio.models.esrgan import _OLD_TOP, RRDBNet, load_upscaler
from tests.conftest import AUTH, SMALL, LiveServer, wait_for_terminal


def tiny_net(scale: int = 4, seed: int = 0) -> RRDBNet:
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return RRDBNet(scale, num_feat=8, num_block=2, num_grow_ch=4).eval()


def _old_layout(state: dict) -> dict:
    """BasicSR keys written back in the original ESRGAN layout (``model.N...``)."""
    top = {new: old for old, new in _OLD_TOP.items()}
    blocks = 1 + max(int(k.split(".")[1]) for k in state if k.startswith("body."))
    out = {}
    for key, value in state.items():
        module, _, kind = key.rpartition(".")
        if module in top:
            out[f"{top[module]}.{kind}"] = value
        elif module == "conv_body":
            out[f"model.1.sub.{blocks}.{kind}"] = value
        else:
            block, rdb, conv = re.fullmatch(r"body\.(\d+)\.rdb(\d)\.conv(\d)", module).groups()
            out[f"model.1.sub.{block}.RDB{rdb}.conv{conv}.0.{kind}"] = value
    return out


@pytest.fixture(scope="module")
def weights(tmp_path_factory):
    folder = tmp_path_factory.mktemp("upscalers")
    net = tiny_net()
    save_file(net.state_dict(), folder / "tiny-x4.safetensors")
    torch.save({"params_ema": _old_layout(net.state_dict())}, folder / "tiny-x4-esrgan.pth")
    return folder


def test_both_key_layouts_load_to_the_same_network(weights):
    new, old = load_upscaler(str(weights / "tiny-x4.safetensors")), load_upscaler(str(weights / "tiny-x4-esrgan.pth"))
    assert (new.scale, new.num_feat, new.num_block) == (old.scale, old.num_feat, old.num_block) == (4, 8, 2)
    x = torch.rand(1, 3, 20, 28)
    with torch.inference_mode():
        assert torch.equal(new.net(x), old.net(x)) and new.net(x).shape == (1, 3, 80, 112)


@pytest.mark.parametrize("scale", [2, 8])
def test_the_scale_is_read_from_the_weights(tmp_path, scale):
    path = tmp_path / f"x{scale}.safetensors"
    save_file(tiny_net(scale).state_dict(), path)
    upscaler = load_upscaler(str(path))
    with torch.inference_mode():
        assert upscaler.scale == scale and upscaler.net(torch.rand(1, 3, 16, 16)).shape[-1] == 16 * scale


def test_a_file_that_is_no_rrdbnet_or_is_missing_says_so(tmp_path):
    save_file({"weight": torch.zeros(3, 3)}, tmp_path / "other.safetensors")
    with pytest.raises(InvalidRequest, match="not an ESRGAN-family"):
        load_upscaler(str(tmp_path / "other.safetensors"))
    with pytest.raises(ModelUnavailable, match="does not exist"):
        load_upscaler(str(tmp_path / "missing.pth"))


def test_tiles_join_without_seams(weights):
    """Tiles that see enough of their neighbours give what one pass over the frame gives."""
    upscaler = load_upscaler(str(weights / "tiny-x4.safetensors"))
    frame = np.random.default_rng(1).integers(0, 255, (50, 70, 3), dtype=np.uint8)
    whole = LearnedUpscale(upscaler, torch.device("cpu"), tile=1000)._network(frame)
    tiled = LearnedUpscale(upscaler, torch.device("cpu"), tile=24, overlap=40)._network(frame)
    assert whole.shape == tiled.shape == (200, 280, 3)
    assert np.abs(whole.astype(int) - tiled).max() <= 1


def test_a_request_for_it_on_a_server_without_one_is_refused(http):
    response = http.post("/v1/generate", json={**SMALL, "resolution": "1080p", "upscaler": "learned"})
    assert response.status_code == 503 and "no learned upscaler" in response.json()["detail"]


def test_a_1080p_video_on_tiny_goes_through_the_servers_learned_upscaler(tmp_path, weights):
    import httpx

    with LiveServer(tmp_path / "data", upscaler_model=str(weights / "tiny-x4.safetensors")) as server, \
            httpx.Client(base_url=server.url, timeout=60, headers=AUTH) as http:
        ids = {}
        for upscaler in ("learned", "classical"):
            body = {**SMALL, "resolution": "1080p", "upscaler": upscaler, "seed": 3}
            ids[upscaler] = http.post("/v1/generate", json=body).json()["task_id"]
            assert wait_for_terminal(http, ids[upscaler])["status"] == "completed"
        meta = http.get(f"/v1/result/{ids['learned']}").json()["metadata"]
        assert meta["scaling_method"] == "learned" and (meta["width"], meta["height"]) == (1920, 1088)
        assert meta["upscaler"]["model"] == "tiny-x4.safetensors" and meta["upscaler"]["scale"] == 4
        assert meta["upscaler"]["network_output"] == [meta["generated_width"] * 4, meta["generated_height"] * 4]
        assert any("learned upscaler" in note for note in meta["notes"])
        classical = http.get(f"/v1/result/{ids['classical']}").json()["metadata"]
        assert classical["scaling_method"] == "upscale" and classical["upscaler"] is None
        learned_video = http.get(f"/v1/videos/{ids['learned']}.mp4").content
        assert learned_video != http.get(f"/v1/videos/{ids['classical']}.mp4").content
