"""Episodes -> padded tensor batches, from cached controller features."""

from __future__ import annotations

import random
from collections.abc import Iterator, Sequence

import torch

from memory.interface import PAD, QUESTION, STATEMENT, EpisodeBatch
from text import distinct_words

from .episodes import Episode
from .features import FeatureCache


class Candidates:
    """The answers a read is decoded among: strings and their embeddings [C, H]."""

    def __init__(self, cache: FeatureCache, phrases: Sequence[str]) -> None:
        self.phrases = list(dict.fromkeys(phrases))
        self.index = {p: i for i, p in enumerate(self.phrases)}
        self.vectors = torch.stack([cache.phrases[p] for p in self.phrases])


def episode_texts(episodes: Sequence[Episode]) -> list[str]:
    return [s.text for e in episodes for s in e.steps]


def statement_words(episodes: Sequence[Episode]) -> list[str]:
    return distinct_words(s.text for e in episodes for s in e.steps if not s.is_question)


def make_batch(
    episodes: Sequence[Episode], cache: FeatureCache, candidates: Candidates, *, word_distractors: bool = False
) -> EpisodeBatch:
    """Pad `episodes` into one batch; every sentence must be in `cache`.

    With `word_distractors`, a read is decoded among the candidates and every word of
    the batch's statements (whose phrases must be cached too), as a chat decodes among
    the words its user said: a value that points at the subject's name scores wrong.
    """
    b, s = len(episodes), max(len(e.steps) for e in episodes)
    rows = [[cache.index[st.text] for st in e.steps] for e in episodes]
    t = max(len(cache.ids[i]) for r in rows for i in r)
    hc = cache.feats[rows[0][0]].shape[-1]
    tokens = torch.full((b, s, t), -1, dtype=torch.long)
    feats = torch.zeros(b, s, t, hc)
    kind = torch.full((b, s), PAD, dtype=torch.long)
    answer = torch.full((b, s), -100, dtype=torch.long)
    for i, (episode, r) in enumerate(zip(episodes, rows)):
        for j, (step, row) in enumerate(zip(episode.steps, r)):
            n = len(cache.ids[row])
            tokens[i, j, :n] = cache.ids[row].long()
            feats[i, j, :n] = cache.feats[row].float()
            kind[i, j] = QUESTION if step.is_question else STATEMENT
            if step.is_question:
                answer[i, j] = candidates.index.get(step.answer, -100)  # -100: not decodable, scored wrong
    support = torch.zeros(b, s, s, dtype=torch.bool)
    pointer = torch.zeros(b, s, t, dtype=torch.bool)
    for i, episode in enumerate(episodes):
        for j, step in enumerate(episode.steps):
            for line_id in step.support:  # 1-based step ids
                support[i, j, line_id - 1] = True
            if step.fact is not None and step.fact.value in cache.phrase_ids:
                at = _find(tokens[i, j].tolist(), cache.phrase_ids[step.fact.value])
                if at is not None:
                    pointer[i, j, at[0] : at[1]] = True
    mask = tokens >= 0
    uniq, tok_u = torch.unique(tokens, return_inverse=True)
    # padding (-1) gets a zero row: it never attracts a read's cosine
    zero = torch.zeros_like(next(iter(cache.token_rows.values())))
    vocab = torch.stack([cache.token_rows[int(x)] if x >= 0 else zero for x in uniq])
    emb = vocab[tok_u] * mask.unsqueeze(-1)
    vectors = candidates.vectors
    if word_distractors:
        extra = [w for w in statement_words(episodes) if w not in candidates.index]
        if extra:
            vectors = torch.cat([vectors, torch.stack([cache.phrases[w] for w in extra])])
    return EpisodeBatch(feats, emb, mask, kind, answer, vectors, vocab, tok_u, support, pointer)


def _find(ids: list[int], part: list[int]) -> tuple[int, int] | None:
    """[start, end) of the last occurrence of `part` in `ids` (a value usually ends its sentence)."""
    for start in range(len(ids) - len(part), -1, -1):
        if ids[start : start + len(part)] == part:
            return start, start + len(part)
    return None


class StepBudgetSampler:
    """Batches of episodes of similar length, at most `budget` padded steps per batch.

    Bounds the memory a batch takes (the fast weights of every step are kept for
    backpropagation) whatever the story lengths; yields lists of indices, as a
    torch batch_sampler.
    """

    def __init__(self, lengths: Sequence[int], budget: int, max_batch: int, seed: int) -> None:
        self.lengths, self.budget, self.max_batch, self.seed = list(lengths), budget, max_batch, seed
        self.epoch = 0
        self.batches = self._plan()

    def _plan(self) -> list[list[int]]:
        rng = random.Random(self.seed + self.epoch)
        order = sorted(range(len(self.lengths)), key=lambda i: (self.lengths[i], rng.random()))
        batches, current = [], []
        for i in order:
            longest = max(self.lengths[i], *(self.lengths[j] for j in current)) if current else self.lengths[i]
            if current and (longest * (len(current) + 1) > self.budget or len(current) >= self.max_batch):
                batches.append(current)
                current = []
            current.append(i)
        if current:
            batches.append(current)
        rng.shuffle(batches)
        return batches

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch
        self.batches = self._plan()

    def __iter__(self) -> Iterator[list[int]]:
        return iter(self.batches)

    def __len__(self) -> int:
        return len(self.batches)
