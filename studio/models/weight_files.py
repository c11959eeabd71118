"""The weight files of the server's own networks (generate's learned upscaler and learned frame
interpolator): where one comes from, and its state dict.

A source is a file path, or ``hub:<owner>/<repository>/<file>`` on the Hugging Face Hub, fetched
(and cached) by ``huggingface_hub`` when the network is first used. A file is a
``.safetensors`` file or a PyTorch state dict (``.pth``, ``.pkl``, ``.ckpt``) read with
``weights_only``, possibly wrapped in ``params_ema`` / ``params`` / ``state_dict`` (BasicSR and
Lightning checkpoints) and possibly with DataParallel's ``module.`` prefix on every key.
"""

from __future__ import annotations

from pathlib import Path

import torch

from studio.errors import InvalidRequest, ModelUnavailable


def fetch_weights(source: str, what: str) -> Path:
    """The local file of ``source`` (``ModelUnavailable`` when it is missing or cannot be fetched);
    ``what`` names the network in messages (e.g. "the learned upscaler")."""
    if not source.startswith("hub:"):
        path = Path(source).expanduser()
        if not path.is_file():
            raise ModelUnavailable(f"{what} file {path} does not exist")
        return path
    from huggingface_hub import hf_hub_download

    parts = source[len("hub:"):].split("/")  # owner / repository / file path in it
    repo_id, filename = "/".join(parts[:2]), "/".join(parts[2:])
    if len(parts) < 3 or not filename:
        raise ModelUnavailable(f"{what} {source!r} should read hub:<owner>/<repository>/<file>")
    try:
        return Path(hf_hub_download(repo_id, filename))
    except Exception as error:
        raise ModelUnavailable(f"{what} {source[4:]} could not be fetched from the Hugging Face Hub: "
                               f"{str(error)[:200]}") from None


def read_state_dict(path: Path, what: str) -> dict[str, torch.Tensor]:
    """The tensors in ``path``, unwrapped and without a ``module.`` prefix (``InvalidRequest`` when
    it is not a readable state dict); ``what`` names the network in messages."""
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            state = load_file(path)
        else:
            state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:
        raise InvalidRequest(f"{what} {path.name}: not a readable state dict ({str(error)[:160]})") from None
    for wrapper in ("params_ema", "params", "state_dict"):
        if isinstance(state, dict) and isinstance(state.get(wrapper), dict):
            state = state[wrapper]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise InvalidRequest(f"{what} {path.name}: not a state dict of tensors")
    if state and all(k.startswith("module.") for k in state):
        state = {k[len("module."):]: v for k, v in state.items()}
    return state
