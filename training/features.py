"""Frozen controller features of sentences, computed once and kept on disk.

The controller stays frozen during meta-training, so each distinct sentence's
hidden states never change: they are computed once (in batches, stopping the
forward pass at the layer that is used) and saved under `meta_train.feature_cache`.
Training then never runs the language model. bAbI has only ~3,600 distinct
sentences across all 20 tasks, so the cache is small.

A cache holds, per sentence, its token ids and hidden states [T, Hc] (float16),
and, per phrase (answers), its mean token embedding [H]; plus the embedding rows
of every token it has seen, so training needs neither the model nor its full
embedding matrix.
"""

from __future__ import annotations

from pathlib import Path

import torch

from memory.features import TextEncoder, hidden_states


class FeatureCache:
    """Sentence features and phrase embeddings of one controller at one layer.

    Args:
        directory: where the cache file lives (created if missing).
        tag: names the controller (chatbot.loading.model_tag), so caches of different models never mix.
        layer: the hidden layer the features come from.
    """

    def __init__(self, directory: str | Path, tag: str, layer: int) -> None:
        self.path = Path(directory) / f"{tag}-layer{layer}.pt"
        self.layer = layer
        self.index: dict[str, int] = {}
        self.ids: list[torch.Tensor] = []  # int32 token ids [T]
        self.feats: list[torch.Tensor] = []  # float16 [T, Hc]
        self.phrases: dict[str, torch.Tensor] = {}  # float32 [H]
        self.phrase_ids: dict[str, list[int]] = {}  # token ids of " " + phrase (as it appears mid-sentence)
        self.token_rows: dict[int, torch.Tensor] = {}  # float32 [H], input embedding of a token id
        if self.path.is_file():
            data = torch.load(self.path, weights_only=True)
            self.ids, self.feats = data["ids"], data["feats"]
            self.index = {t: i for i, t in enumerate(data["texts"])}
            self.phrases = dict(zip(data["phrase_texts"], data["phrase_vecs"]))
            self.token_rows = dict(zip(data["token_ids"].tolist(), data["token_vecs"]))
            self.phrase_ids = data.get("phrase_ids", {})

    def __len__(self) -> int:
        return len(self.index)

    def save(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(".partial")
        tokens = sorted(self.token_rows)
        torch.save(
            {
                "texts": list(self.index), "ids": self.ids, "feats": self.feats,
                "phrase_texts": list(self.phrases), "phrase_vecs": list(self.phrases.values()),
                "token_ids": torch.tensor(tokens, dtype=torch.long),
                "token_vecs": [self.token_rows[t] for t in tokens],
                "phrase_ids": self.phrase_ids,
            },
            tmp,
        )
        tmp.replace(self.path)  # a killed run never leaves a half-written cache

    def missing(self, texts: list[str], phrases: list[str] = ()) -> tuple[list[str], list[str]]:
        return (
            sorted({t for t in texts if t not in self.index}),
            sorted({p for p in phrases if p not in self.phrases or p not in self.phrase_ids}),
        )

    def ensure(self, controller: TextEncoder, texts: list[str], phrases: list[str] = (), *, batch_size: int = 64, progress: bool = False) -> int:
        """Compute whatever `texts` and `phrases` lack, save, and return how many were new."""
        new_texts, new_phrases = self.missing(texts, phrases)
        if not new_texts and not new_phrases:
            return 0
        emb = controller.model.get_input_embeddings().weight
        # similar lengths together: less padding per batch
        new_texts.sort(key=len)
        batches = range(0, len(new_texts), batch_size)
        if progress:
            from tqdm import tqdm

            batches = tqdm(batches, desc=f"features (layer {self.layer})", unit="batch")
        for start in batches:
            chunk = new_texts[start : start + batch_size]
            for text, hidden in zip(chunk, hidden_states(controller, chunk, self.layer)):
                ids = controller.tokenizer(text, add_special_tokens=False)["input_ids"]
                self.index[text] = len(self.ids)
                self.ids.append(torch.tensor(ids, dtype=torch.int32))
                self.feats.append(hidden.half())
                for t in ids:
                    if t not in self.token_rows:
                        self.token_rows[t] = emb[t].detach().float().clone()
        for phrase in new_phrases:
            self.phrases[phrase] = phrase_embedding(controller, phrase)
            self.phrase_ids[phrase] = controller.tokenizer(" " + phrase, add_special_tokens=False)["input_ids"]
        self.save()
        return len(new_texts) + len(new_phrases)


@torch.inference_mode()
def phrase_embedding(controller: TextEncoder, phrase: str) -> torch.Tensor:
    """Mean input embedding of a phrase's tokens as it appears mid-sentence (leading space).

    This is where a value that copied the phrase's tokens lands, so reads are decoded
    by comparing with these. Returns: [H] float32.
    """
    ids = controller.tokenizer(" " + phrase, add_special_tokens=False, return_tensors="pt")["input_ids"]
    return controller.embed(ids)[0].float().mean(0).clone()
