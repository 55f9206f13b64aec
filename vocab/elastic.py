"""The elastic vocabulary: a token layer over a fixed base tokenizer that grows and shrinks.

Encoding runs the base tokenizer, then merges runs of base ids that spell an added
token into its id (see Lexicon); decoding expands added ids back to base ids first,
so decode(encode(text)) == text for every text, whatever was grown or pruned. The
model's embedding matrix (tied to its output layer) has one row per id, so the model
reads added tokens in prompts and can emit them when generating.

Each observed user message is one turn (`step`):
  - every added token the message uses is strengthened (+use_gain), and so is every
    token it is built from, as plastic memory potentiates a sample and its ancestors;
  - words (` ?letters`, as the base pre-tokenizer splits them) that still take
    `min_pieces` or more tokens are counted; at `grow_after` sightings (at once in a
    teaching turn) a word becomes a token built from its current tokens, so it may
    contain earlier added tokens;
  - two adjacent added words seen together `span_grow_after` times become one token
    one level up (a name like " Oriel Vantastad");
  - strengths and counts decay by `decay` per turn; tokens under `prune_below`, and
    the weakest beyond `capacity`, are pruned. Base tokens are never pruned.
Decay is applied lazily (value at the step it was last set, times decay**age), so a
turn only touches what it uses, and `changes` (changes.py) holds only what changed for
storage/vocab.py to save.
"""

from __future__ import annotations

import hashlib
import logging
import re
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from changes import Changes

from .config import VocabConfig
from .lexicon import AddedToken, Lexicon
from .rows import INIT_RULES, FitText, embedding_matrix, fit_rows, initial_rows, is_tied, resize_rows

log = logging.getLogger(__name__)

# The base pre-tokenizer's word chunks (GPT-2 style ` ?\p{L}+`): BPE never merges
# across them, so a chunk's tokens are the same wherever it appears.
WORD = re.compile(r" ?[^\W\d_]+")
# Texts of tokens that may join into a span: one or more words, each after one space.
WORDS = re.compile(r" ?[^\W\d_]+(?: [^\W\d_]+)*")
# The Changes parts: added tokens by id, candidates by key; grow and prune events are appended.
TOKENS, CANDIDATES = "tokens", "candidates"


class VocabError(RuntimeError):
    """The stored vocabulary does not fit this tokenizer; the message says what to do."""


@dataclass(frozen=True)
class VocabEvent:
    """A token grown or pruned."""

    time: float  # unix seconds
    step: int  # the vocabulary's turn counter when it happened
    user: str  # whose message caused it ("" when not caused by a message)
    kind: str  # "grow" or "prune"
    token_id: int  # its id when grown, or just before it was pruned
    text: str
    pieces: tuple[str, ...]  # texts of the tokens it is (was) built from
    level: int
    strength: float


@dataclass
class Candidate:
    """A word or span counted towards growth; `count` is its value at step `touched`."""

    count: float
    touched: int


@dataclass
class SavedVocab:
    """A vocabulary as storage/vocab.py reads it back."""

    base_size: int | None  # the base ids it was grown over; None when nothing was saved
    step: int
    fingerprint: str | None  # the model its rows were taken from (`model_fingerprint`)
    tokens: list[AddedToken]  # in id order
    rows: list[np.ndarray | None]  # per token: its [H] float32 embedding row; None when saved without a model
    candidates: dict[str, Candidate]
    version: float  # the save it came from (Changes.version)


def model_fingerprint(model: PreTrainedModel, base_size: int) -> str:
    """A short hash of some base embedding rows: saved rows only fit the model they came from."""
    matrix = embedding_matrix(model)
    index = torch.linspace(0, base_size - 1, 16).long()
    sample = matrix.detach().index_select(0, index).float().contiguous().numpy()
    return hashlib.sha256(sample.tobytes() + str(tuple(matrix.shape[1:])).encode()).hexdigest()[:16]


class ElasticVocab:
    """Added tokens over a base tokenizer, kept in step with a model's embedding rows.

    Args:
        tokenizer: the base (Hugging Face) tokenizer; never modified.
        cfg: rates and thresholds.
        model: the causal LM whose embedding (and output) rows follow the vocabulary, or
            None to work on ids only. It has one row per base id on entry; fitting rows
            (cfg.fit_steps > 0) needs its input and output embeddings tied.
    """

    def __init__(self, tokenizer: PreTrainedTokenizerBase, cfg: VocabConfig, model: PreTrainedModel | None = None) -> None:
        if cfg.init not in INIT_RULES:
            raise ValueError(f"vocab.init {cfg.init!r} must be one of {', '.join(INIT_RULES)}")
        self.tokenizer = tokenizer
        self.cfg = cfg
        self.model = model
        base_size = embedding_matrix(model).shape[0] if model is not None else len(tokenizer)
        if model is not None and cfg.fit_steps > 0 and not is_tied(model):
            raise ValueError("vocab.fit_steps > 0 needs a model with tied input and output embeddings; set it to 0")
        if base_size < len(tokenizer):
            raise ValueError(f"the model has {base_size} embedding rows but the tokenizer {len(tokenizer)} ids")
        self.lexicon = Lexicon(base_size)
        self.step = 0
        self.candidates: dict[str, Candidate] = {}
        self.fingerprint = model_fingerprint(model, base_size) if model is not None else ""
        self._teaching = re.compile(cfg.teaching_pattern, re.IGNORECASE) if cfg.teaching_pattern else None
        self._special = set(tokenizer.all_special_ids)
        self.changes = Changes()  # parts TOKENS and CANDIDATES, and the events, since the last save

    # ----- ids and text -------------------------------------------------------------

    @property
    def base_size(self) -> int:
        return self.lexicon.base_size

    @property
    def size(self) -> int:
        """Number of ids (base + added) = rows of the model's embedding matrix."""
        return self.lexicon.size

    @property
    def tokens(self) -> list[AddedToken]:
        """The added tokens, in id order."""
        return self.lexicon.tokens

    def base_encode(self, text: str) -> list[int]:
        return self.tokenizer(text, add_special_tokens=False)["input_ids"]

    def encode(self, text: str) -> list[int]:
        """Token ids of `text` in the grown vocabulary (no special tokens added)."""
        return self.lexicon.merge(self.base_encode(text))

    def merge(self, base_ids: Sequence[int] | torch.Tensor) -> list[int]:
        """Base ids (e.g. a rendered chat template) -> ids in the grown vocabulary."""
        if isinstance(base_ids, torch.Tensor):
            base_ids = base_ids.tolist()
        return self.lexicon.merge(base_ids)

    def merge_positions(self, base_ids: Sequence[int] | torch.Tensor) -> tuple[list[int], list[int]]:
        """`merge`, plus where each merged id starts among the base ids ([len(merged)] offsets)."""
        merged = self.merge(base_ids)
        starts, at = [], 0
        for i in merged:
            starts.append(at)
            at += 1 if i < self.base_size else len(self.lexicon[i].expansion)
        return merged, starts

    def decode(self, ids: Sequence[int] | torch.Tensor, **kwargs: Any) -> str:
        """Text of `ids`; keyword arguments go to the base tokenizer's decode.

        Has the base tokenizer's decode signature, so it can serve a transformers
        streamer in the tokenizer's place.
        """
        if isinstance(ids, torch.Tensor):
            ids = ids.reshape(-1).tolist()
        return self.tokenizer.decode(self.lexicon.expand(ids), **kwargs)

    def token_text(self, token_id: int) -> str:
        return self.decode([token_id])

    def strength(self, token: AddedToken) -> float:
        """Strength of `token` now (its stored value decayed to the current step)."""
        return token.strength * self.cfg.decay ** (self.step - token.touched)

    # ----- one turn -----------------------------------------------------------------

    def observe(self, text: str, *, user: str = "", teaching: bool = False) -> list[VocabEvent]:
        """Learn from one user message: strengthen, count, grow, decay, prune.

        `teaching` (or a match of cfg.teaching_pattern) grows every eligible word at once.
        Returns the grow and prune events of this turn, in order.
        """
        self.step += 1
        teaching = teaching or bool(self._teaching and self._teaching.search(text))
        base_ids = self.base_encode(text)
        for token_id in self.lexicon.merge(base_ids):
            if token_id >= self.base_size:
                self._use(token_id)
        events = self._grow(self._ripe_words(text, teaching), user=user, context=base_ids)
        if self.cfg.span_grow_after > 0:
            events += self._grow(self._ripe_spans(self.lexicon.merge(base_ids)), user=user, context=base_ids)
        weak = self.weakest()
        if weak:
            events += self.prune(weak, user=user)
        self._forget_faint_candidates()
        for e in events:
            log.info("vocab %s %r (id %d, level %d, strength %.2f)", e.kind, e.text, e.token_id, e.level, e.strength)
        return events

    def decay(self, turns: int = 1) -> None:
        """Let `turns` turns pass without a message (strengths and counts decay)."""
        self.step += turns

    def weakest(self) -> list[int]:
        """Ids due for pruning now: under `prune_below`, then the weakest beyond `capacity`."""
        scored = sorted((self.strength(t), t.touched, t.id) for t in self.tokens)
        doomed = [i for s, _, i in scored if s < self.cfg.prune_below]
        keep = [i for s, _, i in scored if s >= self.cfg.prune_below]
        over = len(keep) - self.cfg.capacity
        return doomed + (keep[:over] if over > 0 else [])

    def _use(self, token_id: int) -> None:
        token = self.lexicon[token_id]
        token.strength = self.strength(token) + self.cfg.use_gain
        token.touched = self.step
        token.uses += 1
        self.changes.change(TOKENS, [token_id])
        for p in set(token.pieces):
            if p >= self.base_size:
                self._use(p)

    def _count(self, key: str, times: int = 1) -> float:
        cand = self.candidates.get(key)
        count = float(times) if cand is None else cand.count * self.cfg.decay ** (self.step - cand.touched) + times
        self.candidates[key] = Candidate(count, self.step)
        self.changes.change(CANDIDATES, [key])
        return count

    def _ripe_words(self, text: str, teaching: bool) -> list[tuple[str, list[int]]]:
        """Words of `text` to grow now, with their current ids."""
        times: dict[str, int] = {}
        for m in WORD.finditer(text):
            times[m.group(0)] = times.get(m.group(0), 0) + 1
        if not times:
            return []
        chunks = list(times)
        ripe = []
        for chunk, ids in zip(chunks, self.tokenizer(chunks, add_special_tokens=False)["input_ids"]):
            merged = self.lexicon.merge(ids)
            if len(merged) < max(2, self.cfg.min_pieces):
                continue
            count = self._count(chunk, times[chunk])
            if teaching or count >= self.cfg.grow_after:
                ripe.append((chunk, merged))
        return ripe

    def _ripe_spans(self, ids: list[int]) -> list[tuple[str, list[int]]]:
        """Adjacent pairs of added word tokens in `ids` seen together often enough."""
        ripe: dict[str, list[int]] = {}
        for a, b in zip(ids, ids[1:]):
            if a < self.base_size or b < self.base_size:
                continue
            text = self.lexicon[a].text + self.lexicon[b].text
            if not WORDS.fullmatch(text) or not self.lexicon[b].text.startswith(" "):
                continue
            if self._count(text) >= self.cfg.span_grow_after:
                ripe[text] = [a, b]
        return list(ripe.items())

    # ----- grow and prune -----------------------------------------------------------

    def grow(self, texts: Sequence[str], *, user: str = "") -> list[VocabEvent]:
        """Make each text a token now (if it takes two or more tokens and is not one yet)."""
        items = []
        for text in dict.fromkeys(texts):
            ids = self.encode(text)
            if len(ids) >= 2 and not self._special.intersection(self.lexicon.expand(ids)):
                items.append((text, ids))
        context = self.base_encode(" ".join(texts))
        return self._grow(items, user=user, context=context)

    def _grow(self, items: list[tuple[str, list[int]]], *, user: str, context: list[int]) -> list[VocabEvent]:
        added: list[AddedToken] = []
        for text, pieces in items:
            if self.lexicon.find(self.lexicon.expand(pieces)) is not None:
                continue  # the same word twice in one batch
            token = self.lexicon.add(pieces, self.decode(pieces), strength=self.cfg.grow_strength, step=self.step)
            added.append(token)
            self.candidates.pop(text, None)
            self.changes.remove(CANDIDATES, [text])
            self.changes.change(TOKENS, [token.id])
        if not added:
            return []
        if self.model is not None:
            matrix = embedding_matrix(self.model)
            resize_rows(self.model, append=initial_rows(matrix, [t.pieces for t in added], self.cfg.init))
            if self.cfg.fit_steps > 0:
                fit_rows(
                    self.model,
                    [t.id for t in added],
                    [self._fit_text(context)],
                    base_size=self.base_size,
                    steps=self.cfg.fit_steps,
                    lr=self.cfg.fit_lr,
                )
        events = [self._event("grow", t, user) for t in added]
        self.changes.append(events)
        return events

    def _fit_text(self, base_ids: list[int]) -> FitText:
        # The prefix gives the message's first token a context the model knows (measured:
        # fitting after <|im_start|> instead of <|endoftext|> left held-out perplexity 3% worse).
        prefix = self.base_encode(self.cfg.fit_prefix)
        grown = prefix + self.lexicon.merge(base_ids)
        widths = [1 if i < self.base_size else len(self.lexicon[i].expansion) for i in grown]
        return FitText(prefix + list(base_ids), grown, widths)

    def prune(self, ids: Sequence[int], *, user: str = "") -> list[VocabEvent]:
        """Remove added tokens `ids`: their rows leave the matrix, the rest are renumbered."""
        doomed = sorted({int(i) for i in ids})
        if not doomed:
            return []
        events = [self._event("prune", self.lexicon[i], user) for i in doomed]
        gone = set(doomed)
        old_ids = [t.id for t in self.tokens if t.id not in gone]
        self.lexicon.remove(doomed)
        if self.model is not None:
            keep = torch.cat([torch.arange(self.base_size), torch.tensor(old_ids, dtype=torch.long)])
            resize_rows(self.model, keep=keep)
        self.changes.rewrite(TOKENS)  # ids were renumbered
        self.changes.append(events)
        return events

    def detach(self) -> None:
        """Take the added rows out of the model, leaving it as it was before this vocabulary.

        The vocabulary's saved state is untouched (this is not a prune), so a later
        ElasticVocab over the same model (an agent restarted in the same process) can
        load it again. This object must not be used afterwards.
        """
        if self.model is not None and embedding_matrix(self.model).shape[0] > self.base_size:
            resize_rows(self.model, keep=torch.arange(self.base_size))

    def _event(self, kind: str, token: AddedToken, user: str) -> VocabEvent:
        return VocabEvent(
            time=time.time(),
            step=self.step,
            user=user,
            kind=kind,
            token_id=token.id,
            text=token.text,
            pieces=tuple(self.token_text(p) for p in token.pieces),
            level=token.level,
            strength=self.strength(token),
        )

    def _forget_faint_candidates(self) -> None:
        over = len(self.candidates) - self.cfg.max_candidates
        if over <= 0:
            return
        faint = sorted(self.candidates, key=lambda k: self.candidates[k].count * self.cfg.decay ** (self.step - self.candidates[k].touched))
        for key in faint[:over]:
            del self.candidates[key]
            self.changes.remove(CANDIDATES, [key])

    # ----- saved state (storage/vocab.py writes and reads it) ------------------------

    def token_rows(self, ids: Sequence[int]) -> np.ndarray | None:
        """[N, H] float32 embedding rows of `ids`; None without a model."""
        if self.model is None:
            return None
        return embedding_matrix(self.model).detach()[list(ids)].float().contiguous().numpy()

    def restore(self, saved: SavedVocab) -> None:
        """Replace this vocabulary (and the model's added rows) by a saved one.

        Rows saved for a different model (another fingerprint, or none saved) are rebuilt
        from the tokens' pieces with the configured rule, and rewritten on the next save.
        """
        if saved.base_size is not None and saved.base_size != self.base_size:
            raise VocabError(
                f"the saved vocabulary was grown over {saved.base_size} base ids but this model has "
                f"{self.base_size}; use the database that belongs to this model (store.path), or a new one"
            )
        self.lexicon.restore(saved.tokens)
        self.step = saved.step
        self.candidates = dict(saved.candidates)
        self.changes = Changes(saved.version)
        if self.model is None:
            return
        base = embedding_matrix(self.model)[: self.base_size].detach()
        fits = saved.fingerprint == self.fingerprint and all(r is not None and r.shape == (base.shape[1],) for r in saved.rows)
        if fits and saved.rows:
            added = torch.from_numpy(np.stack(saved.rows))
        elif saved.tokens:
            log.warning("saved vocabulary rows belong to another model; rebuilding %d rows from their pieces", len(saved.tokens))
            work = torch.cat([base.float(), torch.zeros(len(saved.tokens), base.shape[1])])
            for t in saved.tokens:  # in id order, so a token's pieces already have rows
                work[t.id] = initial_rows(work, [t.pieces], self.cfg.init)[0]
            added = work[self.base_size :]
            self.changes.rewrite(TOKENS)  # every token gets its new row on the next save
        else:
            added = None
        resize_rows(self.model, keep=torch.arange(self.base_size), append=added)
