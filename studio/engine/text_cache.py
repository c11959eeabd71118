"""Reuse of text-encoder outputs: equal prompts are encoded once (batch similarity caching).

Keyed by the model id and the exact text, so a different model (another text encoder or
tokenizer) never shares entries. Small and in memory: entries are a few MB each on real models
(512 tokens x 4096 dims, bf16), so the cache holds the most recent ``capacity`` texts.
"""

from __future__ import annotations

from collections import OrderedDict

import torch

MAX_SEQUENCE_LENGTH = 512  # what WanPipeline.__call__ encodes with


def encode_prompt_embeds(pipe, text: str) -> torch.Tensor:
    """``[1, L, D]`` embeddings of ``text`` with ``pipe``'s text encoder, through WanPipeline's
    encoder code. WanVACEPipeline and WanVideoToVideoPipeline (diffusers 0.42.1) clean prompts
    with ``ftfy`` without checking it is installed, and it is not a dependency here; WanPipeline's
    identical encoder skips that step when ``ftfy`` is absent."""
    from diffusers import WanPipeline

    return WanPipeline._get_t5_prompt_embeds(pipe, [text], 1, MAX_SEQUENCE_LENGTH, pipe._execution_device)


class TextEmbeddingCache:
    """LRU cache of per-prompt embeddings ``[1, L, D]`` (used under the GPU lock only)."""

    def __init__(self, capacity: int = 64):
        self.capacity = capacity
        self._entries: OrderedDict[tuple[str, str], torch.Tensor] = OrderedDict()
        self.hits = 0
        self.misses = 0

    def encode(self, pipe, model_id: str, texts: list[str], device: torch.device) -> tuple[torch.Tensor, list[bool]]:
        """Embeddings of ``texts`` stacked ``[n, L, D]``, and for each whether it was reused
        (from an earlier call, or an equal text earlier in this list)."""
        missing = list(dict.fromkeys(t for t in texts if (model_id, t) not in self._entries))
        reused = [(model_id, t) in self._entries for t in texts]
        seen = set()
        for i, text in enumerate(texts):  # equal texts within this list: the 2nd, 3rd, ... reuse the 1st
            if text in seen:
                reused[i] = True
            seen.add(text)
        if missing:  # WanPipeline's encoder, which any Wan pipeline's modules run (see encode_prompt_embeds)
            from diffusers import WanPipeline

            embeds = WanPipeline._get_t5_prompt_embeds(pipe, missing, 1, MAX_SEQUENCE_LENGTH, device)
            for text, embed in zip(missing, embeds):
                self._entries[(model_id, text)] = embed.unsqueeze(0)
        for text in texts:
            self._entries.move_to_end((model_id, text))
        while len(self._entries) > self.capacity:
            self._entries.popitem(last=False)
        self.hits += sum(reused)
        self.misses += len(texts) - sum(reused)
        return torch.cat([self._entries[(model_id, t)] for t in texts]), reused
