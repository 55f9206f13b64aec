"""Memory-only answering for the benchmarks: episodes in, decoded answers out.

"Memory-only" means the language model does not generate: each story is written
to the neural memory sentence by sentence, each question is answered by reading
it, and the read is decoded to the nearest answer embedding among a candidate set.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch

from memory.config import MetaLossConfig
from memory.features import TextEncoder
from memory.interface import MemoryModel, load_checkpoint

from .batching import Candidates, episode_texts, make_batch, statement_words
from .episodes import Episode
from .features import FeatureCache

_NO_LOSSES = MetaLossConfig(answer=0.0, meta=0.0, vicreg=0.0, recall=0.0)


@dataclass
class Loaded:
    """A trained memory model and the feature cache of the controller it was trained on."""

    model: MemoryModel
    meta: dict  # the checkpoint's configs, candidates and training record
    cache: FeatureCache

    def features(self, episodes: Sequence[Episode], phrases: Sequence[str], encoder: Callable[[], TextEncoder]) -> None:
        """Make sure every sentence and phrase is cached; `encoder()` loads the controller only if something is missing."""
        texts = episode_texts(episodes)
        if any(self.cache.missing(texts, list(phrases))):
            self.cache.ensure(encoder(), texts, list(phrases), progress=True)


def load_for_eval(checkpoint: str | Path, *, model_tag: str, cache_dir: str | Path) -> Loaded:
    """Load `checkpoint`, checking it was trained on the model named `model_tag`."""
    model, meta = load_checkpoint(checkpoint)
    if meta["cache_tag"] != model_tag:
        raise ValueError(
            f"checkpoint {checkpoint} was trained on controller {meta['cache_tag']}, the config's model is {model_tag}"
        )
    return Loaded(model, meta, FeatureCache(cache_dir, meta["cache_tag"], meta["feature_layer"]))


@torch.no_grad()
def answer_episodes(
    loaded: Loaded, episodes: Sequence[Episode], candidates: Candidates, *, batch_size: int = 64, word_distractors: bool = False
) -> list[list[str]]:
    """Decoded answer of every question, per episode, in order (with `word_distractors`,
    decoded among the candidates and every word of the batch's statements)."""
    answers: list[list[str]] = [[] for _ in episodes]
    order = sorted(range(len(episodes)), key=lambda i: len(episodes[i].steps))
    for start in range(0, len(order), batch_size):
        idx = order[start : start + batch_size]
        chosen = [episodes[i] for i in idx]
        batch = make_batch(chosen, loaded.cache, candidates, word_distractors=word_distractors)
        phrases = candidates.phrases + ([w for w in statement_words(chosen) if w not in candidates.index] if word_distractors else [])
        result = loaded.model(batch, _NO_LOSSES)
        predicted = result["logits"].argmax(-1).tolist()
        # positions come row-major (episode, then step): each episode's questions in order
        for (row, _), p in zip(result["positions"].tolist(), predicted):
            answers[idx[row]].append(phrases[p])
    return answers
