"""The two questions every hub-loaded model asks before loading: may we download, is it cached.

Answered without touching the network, so the API can refuse a request for a model that
cannot load (``ModelUnavailable``, 503) before queueing it.
"""

from __future__ import annotations

import os


def hub_offline() -> bool:
    """Whether ``HF_HUB_OFFLINE`` forbids downloads (then only cached models can load)."""
    return os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes")


def in_cache(repo_id: str, filename: str) -> bool:
    """Whether ``filename`` of ``repo_id`` is in the local Hugging Face cache."""
    from huggingface_hub import try_to_load_from_cache

    return isinstance(try_to_load_from_cache(repo_id, filename), str)
