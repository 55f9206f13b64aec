"""The elastic vocabulary: a token layer over a fixed base tokenizer that grows and shrinks per user.

Encoding runs the base tokenizer, then merges runs of base ids that spell an added
token into its id (see Lexicon); decoding expands added ids back to base ids first,
so decode(encode(text)) == text for every text, whatever was grown or pruned. The
model's embedding matrix (tied to its output layer) has one row per id, so the model
reads added tokens in prompts and can emit them when generating.

Every user has a set of added tokens of their own (vocab/users.py). The lexicon and the
rows are shared (a word two users grew is one token, one row), but a user's text is
merged only into that user's tokens, and replies to them may emit only those (the
controller suppresses the rest, `foreign_ids`). A token leaves the lexicon, and its row
the matrix, when no user holds it any more.

Each observed user message is one turn of that user (`step`):
  - every token of theirs the message uses is strengthened (+use_gain), and so is every
    token of theirs it is built from, as plastic memory potentiates a sample and its ancestors;
  - words (` ?letters`, as the base pre-tokenizer splits them) that still take
    `min_pieces` or more of the user's tokens are counted; at `grow_after` sightings (at
    once in a teaching turn) a word becomes one of the user's tokens: a new one built
    from their current tokens, or the one another user already grew (no new row);
  - two adjacent added words seen together `span_grow_after` times become one token
    one level up (a name like " Oriel Vantastad");
  - the user's strengths and counts decay by `decay` per turn of theirs; their tokens
    under `prune_below`, and their weakest beyond `capacity`, leave their set. Base
    tokens are never pruned. No user's message touches another user's set.
The lexicon holds at most `max_tokens` added tokens in all; beyond that no new row grows.
Decay is applied lazily (value at the step it was last set, times decay**age), so a
turn only touches what it uses, and `changes` (changes.py) holds only what changed for
storage/vocab.py to save.
"""

from __future__ import annotations

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
from .saved import SavedVocab, VocabError, added_rows, model_fingerprint
from .users import Holding, UserVocab

log = logging.getLogger(__name__)

# The base pre-tokenizer's word chunks (GPT-2 style ` ?\p{L}+`): BPE never merges
# across them, so a chunk's tokens are the same wherever it appears.
WORD = re.compile(r" ?[^\W\d_]+")
# Texts of tokens that may join into a span: one or more words, each after one space.
WORDS = re.compile(r" ?[^\W\d_]+(?: [^\W\d_]+)*")
# The Changes parts: added tokens by id, holdings by (user, id), candidates by (user, key),
# users' steps by user; grow and prune events are appended.
TOKENS, HOLDINGS, CANDIDATES, USERS = "tokens", "holdings", "candidates", "users"

__all__ = ["ElasticVocab", "SavedVocab", "VocabError", "VocabEvent"]  # the last two from vocab/saved.py


@dataclass(frozen=True)
class VocabEvent:
    """A token grown into or pruned from one user's set."""

    time: float  # unix seconds
    step: int  # the user's turn counter when it happened
    user: str  # whose set it changed ("" for the anonymous user)
    kind: str  # "grow" or "prune"
    token_id: int  # its id when grown, or just before it was pruned
    text: str
    pieces: tuple[str, ...]  # texts of the tokens it is (was) built from
    level: int
    strength: float


class ElasticVocab:
    """Added tokens over a base tokenizer, held per user, kept in step with a model's embedding rows.

    Every method that reads or changes tokens takes the `user` whose tokens it means;
    "" is the anonymous user (benchmarks, and tests that need only one user).

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
        self.step = 0  # messages observed, all users
        self.users: dict[str, UserVocab] = {}
        self.fingerprint = model_fingerprint(model, base_size) if model is not None else ""
        self._teaching = re.compile(cfg.teaching_pattern, re.IGNORECASE) if cfg.teaching_pattern else None
        self._special = set(tokenizer.all_special_ids)
        self.changes = Changes()  # parts TOKENS, HOLDINGS, CANDIDATES and USERS, and the events, since the last save

    # ----- ids and text -------------------------------------------------------------

    @property
    def base_size(self) -> int:
        return self.lexicon.base_size

    @property
    def size(self) -> int:
        """Number of ids (base + added, all users) = rows of the model's embedding matrix."""
        return self.lexicon.size

    @property
    def tokens(self) -> list[AddedToken]:
        """The added tokens of every user, in id order."""
        return self.lexicon.tokens

    def user(self, user: str) -> UserVocab:
        """`user`'s tokens and counts (an empty set, not kept, for a user never seen)."""
        return self.users.get(user) or UserVocab()

    def tokens_of(self, user: str) -> list[AddedToken]:
        """The added tokens `user` holds, in id order."""
        return [self.lexicon[i] for i in sorted(self.user(user).held)]

    def foreign_ids(self, user: str) -> list[int]:
        """The added ids `user` does not hold: what replies to them must never emit."""
        held = self.user(user).held
        return [i for i in range(self.base_size, self.size) if i not in held]

    def base_encode(self, text: str) -> list[int]:
        return self.tokenizer(text, add_special_tokens=False)["input_ids"]

    def encode(self, text: str, *, user: str = "") -> list[int]:
        """Token ids of `text` in `user`'s grown vocabulary (no special tokens added)."""
        return self.merge(self.base_encode(text), user=user)

    def merge(self, base_ids: Sequence[int] | torch.Tensor, *, user: str = "") -> list[int]:
        """Base ids (e.g. a rendered chat template) -> ids in `user`'s grown vocabulary."""
        if isinstance(base_ids, torch.Tensor):
            base_ids = base_ids.tolist()
        return self.lexicon.merge(base_ids, self.user(user).held)

    def merge_positions(self, base_ids: Sequence[int] | torch.Tensor, *, user: str = "") -> tuple[list[int], list[int]]:
        """`merge`, plus where each merged id starts among the base ids ([len(merged)] offsets)."""
        merged = self.merge(base_ids, user=user)
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

    def strength(self, token: AddedToken | int, user: str = "") -> float:
        """Strength of a token in `user`'s set now (decayed to their step; 0 when they do not hold it)."""
        return self.user(user).strength(token if isinstance(token, int) else token.id, self.cfg.decay)

    # ----- one turn -----------------------------------------------------------------

    def observe(self, text: str, *, user: str = "", teaching: bool = False) -> list[VocabEvent]:
        """Learn from one message of `user`: strengthen, count, grow, decay, prune their tokens.

        `teaching` (or a match of cfg.teaching_pattern) grows every eligible word at once.
        Returns the grow and prune events of this turn, in order.
        """
        self.step += 1
        u = self._member(user)
        u.step += 1
        teaching = teaching or bool(self._teaching and self._teaching.search(text))
        base_ids = self.base_encode(text)
        for token_id in self.lexicon.merge(base_ids, u.held):
            if token_id >= self.base_size:
                self._use(user, token_id)
        events = self._grow(self._ripe_words(user, text, teaching), user=user, context=base_ids)
        if self.cfg.span_grow_after > 0:
            events += self._grow(self._ripe_spans(user, self.lexicon.merge(base_ids, u.held)), user=user, context=base_ids)
        weak = self.weakest(user)
        if weak:
            events += self.prune(weak, user=user)
        faint = u.faint_candidates(self.cfg.max_candidates, self.cfg.decay)
        for key in faint:
            del u.candidates[key]
        self.changes.remove(CANDIDATES, [(user, key) for key in faint])
        for e in events:
            log.info("vocab %s %r (id %d, level %d, strength %.2f)", e.kind, e.text, e.token_id, e.level, e.strength)
        return events

    def decay(self, turns: int = 1, *, user: str = "") -> None:
        """Let `turns` of `user`'s turns pass without a message (their strengths and counts decay)."""
        self._member(user).step += turns

    def weakest(self, user: str = "") -> list[int]:
        """`user`'s ids due for pruning now: under `prune_below`, then their weakest beyond `capacity`."""
        return self.user(user).weakest(self.cfg.prune_below, self.cfg.capacity, self.cfg.decay)

    def _member(self, user: str) -> UserVocab:
        """`user`'s set, made when they first come; their step is saved with this turn."""
        self.changes.change(USERS, [user])
        return self.users.setdefault(user, UserVocab())

    def _use(self, user: str, token_id: int) -> None:
        """Strengthen `token_id` and every token it is built from, where `user` holds them."""
        u = self.users[user]
        h = u.held.get(token_id)
        if h is not None:
            h.strength = u.strength(token_id, self.cfg.decay) + self.cfg.use_gain
            h.touched = u.step
            h.uses += 1
            self.changes.change(HOLDINGS, [(user, token_id)])
        for p in set(self.lexicon[token_id].pieces):
            if p >= self.base_size:
                self._use(user, p)

    def _count(self, user: str, key: str, times: int = 1) -> float:
        self.changes.change(CANDIDATES, [(user, key)])
        return self.users[user].count(key, times, self.cfg.decay)

    def _ripe_words(self, user: str, text: str, teaching: bool) -> list[tuple[str, list[int]]]:
        """Words of `text` to grow now for `user`, with their current ids in the user's vocabulary."""
        times: dict[str, int] = {}
        for m in WORD.finditer(text):
            times[m.group(0)] = times.get(m.group(0), 0) + 1
        if not times:
            return []
        chunks = list(times)
        held = self.users[user].held
        ripe = []
        for chunk, ids in zip(chunks, self.tokenizer(chunks, add_special_tokens=False)["input_ids"]):
            merged = self.lexicon.merge(ids, held)
            if len(merged) < max(2, self.cfg.min_pieces):
                continue
            count = self._count(user, chunk, times[chunk])
            if teaching or count >= self.cfg.grow_after:
                ripe.append((chunk, merged))
        return ripe

    def _ripe_spans(self, user: str, ids: list[int]) -> list[tuple[str, list[int]]]:
        """Adjacent pairs of `user`'s added word tokens in `ids` seen together often enough."""
        ripe: dict[str, list[int]] = {}
        for a, b in zip(ids, ids[1:]):
            if a < self.base_size or b < self.base_size:
                continue
            text = self.lexicon[a].text + self.lexicon[b].text
            if not WORDS.fullmatch(text) or not self.lexicon[b].text.startswith(" "):
                continue
            if self._count(user, text) >= self.cfg.span_grow_after:
                ripe[text] = [a, b]
        return list(ripe.items())

    # ----- grow and prune -----------------------------------------------------------

    def grow(self, texts: Sequence[str], *, user: str = "") -> list[VocabEvent]:
        """Make each text one of `user`'s tokens now (if it takes two or more of their tokens)."""
        self._member(user)
        items = []
        for text in dict.fromkeys(texts):
            ids = self.encode(text, user=user)
            if len(ids) >= 2 and not self._special.intersection(self.lexicon.expand(ids)):
                items.append((text, ids))
        context = self.base_encode(" ".join(texts))
        return self._grow(items, user=user, context=context)

    def _grow(self, items: list[tuple[str, list[int]]], *, user: str, context: list[int]) -> list[VocabEvent]:
        u = self.users[user]
        grown: list[AddedToken] = []
        new: list[AddedToken] = []  # grown with a new row
        for text, pieces in items:
            token_id = self.lexicon.find(self.lexicon.expand(pieces))
            if token_id is not None and token_id in u.held:
                continue  # the same word twice in one batch
            if token_id is None:
                if len(self.lexicon) >= self.cfg.max_tokens:
                    log.warning("vocab: %d added tokens (vocab.max_tokens); %r does not grow", len(self.lexicon), text)
                    continue
                token = self.lexicon.add(pieces, self.decode(pieces))
                new.append(token)
                self.changes.change(TOKENS, [token.id])
            else:
                token = self.lexicon[token_id]  # another user's word: the row is shared
            u.held[token.id] = Holding(self.cfg.grow_strength, u.step, born=u.step)
            grown.append(token)
            u.candidates.pop(text, None)
            self.changes.remove(CANDIDATES, [(user, text)])
            self.changes.change(HOLDINGS, [(user, token.id)])
        if new and self.model is not None:
            matrix = embedding_matrix(self.model)
            resize_rows(self.model, append=initial_rows(matrix, [t.pieces for t in new], self.cfg.init))
            if self.cfg.fit_steps > 0:
                fit_rows(
                    self.model,
                    [t.id for t in new],
                    [self._fit_text(context, user)],
                    base_size=self.base_size,
                    steps=self.cfg.fit_steps,
                    lr=self.cfg.fit_lr,
                )
        events = [self._event("grow", t, user) for t in grown]
        self.changes.append(events)
        return events

    def _fit_text(self, base_ids: list[int], user: str) -> FitText:
        # The prefix gives the message's first token a context the model knows, as it starts documents.
        prefix = self.base_encode(self.cfg.fit_prefix)
        grown = prefix + self.merge(base_ids, user=user)
        widths = [1 if i < self.base_size else len(self.lexicon[i].expansion) for i in grown]
        return FitText(prefix + list(base_ids), grown, widths)

    def prune(self, ids: Sequence[int], *, user: str = "") -> list[VocabEvent]:
        """Take tokens `ids` out of `user`'s set (ids they do not hold are ignored).

        A token no user holds any more leaves the lexicon: its row leaves the matrix and
        the tokens after it are renumbered.
        """
        u = self.users.get(user)
        doomed = sorted({int(i) for i in ids}.intersection(u.held)) if u is not None else []
        if not doomed:
            return []
        events = [self._event("prune", self.lexicon[i], user) for i in doomed]
        for i in doomed:
            del u.held[i]
        self.changes.remove(HOLDINGS, [(user, i) for i in doomed])
        self._remove([i for i in doomed if not any(i in other.held for other in self.users.values())])
        self.changes.append(events)
        return events

    def forget_words(self, gone: Sequence[str], *, kept: Sequence[str], user: str = "") -> list[VocabEvent]:
        """Prune `user`'s tokens and growth counts made of words that `gone` (what they asked
        to forget) holds and `kept` (what they still have remembered) does not, any case:
        a forgotten fact leaves none of its words in their vocabulary."""
        u = self.users.get(user)
        doomed = _lower_words(gone) - _lower_words(kept)
        if u is None or not doomed:
            return []
        counts = [key for key in u.candidates if _lower_words([key]) & doomed]
        for key in counts:
            del u.candidates[key]
        self.changes.remove(CANDIDATES, [(user, key) for key in counts])
        return self.prune([t.id for t in self.tokens_of(user) if _lower_words([t.text]) & doomed], user=user)

    def _remove(self, ids: Sequence[int]) -> None:
        """Take tokens no user holds out of the lexicon and their rows out of the matrix; renumber."""
        if not ids:
            return
        gone = set(ids)
        old_ids = [t.id for t in self.tokens if t.id not in gone]
        remap = self.lexicon.remove(ids)
        for u in self.users.values():
            u.renumber(remap)
        if self.model is not None:
            keep = torch.cat([torch.arange(self.base_size), torch.tensor(old_ids, dtype=torch.long)])
            resize_rows(self.model, keep=keep)
        self.changes.rewrite(TOKENS)  # ids were renumbered
        self.changes.rewrite(HOLDINGS)

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
            step=self.user(user).step,
            user=user,
            kind=kind,
            token_id=token.id,
            text=token.text,
            pieces=tuple(self.token_text(p) for p in token.pieces),
            level=token.level,
            strength=self.strength(token, user),
        )

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
        Tokens no user holds (from a database made before tokens were per user) are dropped.
        """
        if saved.base_size is not None and saved.base_size != self.base_size:
            raise VocabError(
                f"the saved vocabulary was grown over {saved.base_size} base ids but this model has "
                f"{self.base_size}; use the database that belongs to this model (store.path), or a new one"
            )
        self.lexicon.restore(saved.tokens)
        self.step = saved.step
        self.users = {name: UserVocab(u.step, {i: h for i, h in u.held.items() if self.base_size <= i < self.size}, dict(u.candidates))
                      for name, u in saved.users.items()}
        self.changes = Changes(saved.version)
        if any(len(u.held) != len(saved.users[name].held) for name, u in self.users.items()):
            self.changes.rewrite(HOLDINGS)  # holdings of ids no token has are gone
        if self.model is not None:
            added, rebuilt = added_rows(self.model, self.base_size, self.fingerprint, saved, self.cfg.init)
            resize_rows(self.model, keep=torch.arange(self.base_size), append=added)
            if rebuilt:
                self.changes.rewrite(TOKENS)  # every token gets its new row on the next save
        held = set().union(*(u.held for u in self.users.values()))
        orphans = [t.id for t in self.tokens if t.id not in held]
        if orphans:
            log.info("vocab: dropping %d added tokens that no user holds", len(orphans))
            self._remove(orphans)


def _lower_words(texts: Sequence[str]) -> set[str]:
    """The words (as the vocabulary cuts them) of `texts`, lowercased, without their space."""
    return {m.group(0).strip().lower() for text in texts for m in WORD.finditer(text)}
