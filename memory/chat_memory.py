"""The meta-trained memory serving chat: one neural memory per user, written every turn.

`ChatMemory` runs the trained interface and neural memory (memory/interface.py) at
batch size 1 over a user's sentences, in order: a statement is written (a test-time
one-shot update of the user's fast weights), a question is read. What training
decoded among a list of answers, chat decodes among the words the user has said in
statements, so a read names one of them (with a probability), and the latest
statement holding that word is the read's source sentence.

Everything a write did is kept in a log (table `neural_writes`): the sentence, the
words its value points at, its write key, value and beta. The log makes possible:
  * corrections: a statement whose write key is within `supersede_similarity`
    (cosine, as the memory compares keys) of an earlier one's overwrote that slot,
    so the earlier write is marked superseded and its words stop being read;
  * forgetting: the fast weights are rebuilt from their meta-learned start by
    replaying every write that is still wanted, in order, so the memory is as if the
    forgotten sentences had never been said;
  * consolidation: a write is replayed (written again) to strengthen it against
    the interference of later writes.
storage/neural.py saves the fast weights and the interface's recurrent state per user
(table `neural_memory`), tagged with the checkpoint that wrote them, and the log's changed
writes; a user's memory written under another checkpoint is relearned from the log's
sentences on load.
"""

from __future__ import annotations

import logging
import re
import threading
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from changes import Changes
from text import distinct_words

from .config import ConsolidationConfig, NeuralMemoryConfig
from .features import TextEncoder, hidden_states
from .interface import QUESTION, STATEMENT, MemoryModel, load_checkpoint, unit_keys
from .neural import FastWeights

log = logging.getLogger(__name__)

WRITES = "writes"  # the Changes part that holds a user's write log, by write id
LEARN_CHUNK = 32  # sentences featurized at once when a user's memory is told again (an import)


@dataclass
class WriteRecord:
    """One write to a user's neural memory."""

    id: int  # per user, in write order
    turn: int | None  # the turn it was said in
    engram: int | None  # the Memoria engram of the same sentence
    text: str
    value: str  # the words the value points at most
    beta: np.ndarray  # [heads] write strength per memory head
    key: np.ndarray  # [key_dim] write key
    vector: np.ndarray  # [H] value
    superseded_by: int | None = None  # the later write that overwrote this one
    forgotten: bool = False  # taken out of the memory at the user's request
    time: float = field(default_factory=time.time)

    @property
    def live(self) -> bool:
        """Still meant to be recalled: neither superseded nor forgotten."""
        return self.superseded_by is None and not self.forgotten


@dataclass
class Recall:
    """What a question's read found among the user's words."""

    word: str | None  # the decoded word; None when less probable than min_confidence, or no words yet
    confidence: float  # its decoding probability among `candidates` words
    candidates: int
    source: WriteRecord | None  # the latest live write whose sentence holds the word


@dataclass
class SentenceStep:
    """The memory's work on one sentence."""

    text: str
    question: bool
    key: torch.Tensor  # [key_dim] the write key (statement) or first read key (question)
    hidden: torch.Tensor  # [Hc] the sentence's mean controller hidden state
    write: WriteRecord | None = None  # statements
    superseded: list[WriteRecord] = field(default_factory=list)  # writes this statement overwrote
    recall: Recall | None = None  # questions
    read: torch.Tensor | None = None  # [H] questions: the decoded vector


@dataclass
class _UserState:
    fast: FastWeights
    state: torch.Tensor  # [1, d] the interface's recurrent state
    writes: list[WriteRecord] = field(default_factory=list)
    replays: int = 0  # writes replayed for consolidation so far
    changes: Changes = field(default_factory=Changes)  # part WRITES: write ids changed since the last save
    candidates: tuple[list[str], torch.Tensor] | None = None  # decoding words and their embeddings


class ChatMemory:
    """A trained `MemoryModel` serving many users, one fast-weight state each.

    Args:
        model: the trained interface + neural memory (eval mode).
        encoder: the controller the model was trained on (features, embeddings, decoding).
        feature_layer: the controller layer the interface reads.
        tag: names the trained weights; fast weights saved under another tag are relearned.
        cfg: neural memory settings (min_confidence is used here).
        consolidation: supersede_similarity is used here.
    """

    def __init__(
        self,
        model: MemoryModel,
        encoder: TextEncoder,
        *,
        feature_layer: int,
        tag: str,
        cfg: NeuralMemoryConfig,
        consolidation: ConsolidationConfig,
    ) -> None:
        self.model = model.eval().requires_grad_(False)
        self.encoder = encoder
        self.feature_layer = feature_layer
        self.tag = tag
        self.cfg = cfg
        self.consolidation = consolidation
        self.heads = model.memory_cfg.heads
        self._users: dict[str, _UserState] = {}
        self._phrases: dict[str, torch.Tensor] = {}
        # The module holds one user's fast weights at a time: swaps happen under this lock.
        self._lock = threading.RLock()

    @classmethod
    def from_checkpoint(
        cls, path: str | Path, encoder: TextEncoder, *, cfg: NeuralMemoryConfig, consolidation: ConsolidationConfig
    ) -> "ChatMemory":
        """Load train_meta.py's checkpoint; the tag is the file's name and training record."""
        model, meta = load_checkpoint(path)
        hidden = encoder.model.config.hidden_size
        if meta["value_dim"] != hidden:
            raise ValueError(f"checkpoint {path} was trained on a {meta['value_dim']}-wide model, this one is {hidden}")
        record = meta["record"]
        tag = f"{Path(path).name}:{record.get('steps')}:{record.get('episodes_seen')}"
        model.memory_cfg.enabled = cfg.enabled
        return cls(model, encoder, feature_layer=meta["feature_layer"], tag=tag, cfg=cfg, consolidation=consolidation)

    # ---- features ------------------------------------------------------------------

    def featurize(self, texts: Sequence[str]) -> list[tuple[list[int], torch.Tensor, torch.Tensor]]:
        """Per text: base token ids, controller hidden states [T, Hc] and input embeddings [T, H]."""
        if not texts:
            return []
        hidden = hidden_states(self.encoder, list(texts), self.feature_layer)
        out = []
        with torch.inference_mode():
            for text, h in zip(texts, hidden):
                ids = self.encoder.tokenizer(text, add_special_tokens=False)["input_ids"]
                emb = self.encoder.embed(torch.tensor([ids]))[0].float()
                out.append((ids, h, emb))
        return out

    def phrase(self, word: str) -> torch.Tensor:
        """Mean input embedding of a word as it appears mid-sentence. Returns: [H]."""
        vector = self._phrases.get(word)
        if vector is None:
            ids = self.encoder.tokenizer(" " + word, add_special_tokens=False)["input_ids"]
            with torch.inference_mode():
                vector = self.encoder.embed(torch.tensor([ids]))[0].float().mean(0)
            self._phrases[word] = vector
        return vector

    # ---- one sentence ----------------------------------------------------------------

    def _user(self, user: str) -> _UserState:
        state = self._users.get(user)
        if state is None:
            state = self._users[user] = _UserState(self.model.memory.initial_state(1), self._zero_state())
        return state

    def _zero_state(self) -> torch.Tensor:
        return torch.zeros(1, self.model.interface_cfg.model_dim)

    @torch.inference_mode()
    def step(
        self, user: str, text: str, features: tuple[list[int], torch.Tensor, torch.Tensor], *, question: bool,
        turn: int | None = None, engram: int | None = None,
    ) -> SentenceStep:
        """Write a statement, or read for a question, in the user's memory.

        Args:
            features: the sentence's (ids, hidden states [T, Hc], embeddings [T, H]) from `featurize`.
            question: read instead of write.
            turn, engram: where the sentence came from, kept with a write.
        """
        ids, feats, emb = features
        with self._lock:
            state = self._user(user)
            self.model.memory.fast = state.fast
            kind = torch.tensor([QUESTION if question else STATEMENT])
            mask = torch.ones(1, len(ids), dtype=torch.bool)
            new_state, out = self.model.step(state.state, feats[None].float(), emb[None], mask, kind)
            state.fast, state.state = self.model.memory.fast, new_state
            step = SentenceStep(text, question, (out.k_r if question else out.k_w)[0], feats.float().mean(0))
            if not self.cfg.enabled:  # the interface still gives keys (Memoria's vectors); nothing is stored
                return step
            if question:
                step.read = out.answer[0]
                step.recall = self._decode(state, out.answer)
            else:
                record = WriteRecord(
                    id=len(state.writes), turn=turn, engram=engram, text=text,
                    value=self._pointed_words(ids, out.value_att[0]),
                    beta=out.beta[0].numpy().copy(), key=out.k_w[0].numpy().copy(), vector=out.v_w[0].numpy().copy(),
                )
                step.superseded = self._supersede(state, record)
                state.writes.append(record)
                state.changes.change(WRITES, [record.id])
                state.candidates = None
                step.write = record
        return step

    def _pointed_words(self, ids: list[int], attention: torch.Tensor) -> str:
        """The run of tokens around the value's strongest pointer, as text."""
        top = int(attention.argmax())
        strong = attention >= 0.5 * attention[top]
        start, end = top, top + 1
        while start > 0 and strong[start - 1]:
            start -= 1
        while end < len(ids) and strong[end]:
            end += 1
        return self.encoder.tokenizer.decode(ids[start:end]).strip()

    def _supersede(self, state: _UserState, record: WriteRecord) -> list[WriteRecord]:
        """Mark the live writes whose keys this write's key overwrote."""
        live = [w for w in state.writes if w.live]
        if not live or self.consolidation.supersede_similarity is None:
            return []
        new = unit_keys(torch.from_numpy(record.key), self.heads)
        old = unit_keys(torch.from_numpy(np.stack([w.key for w in live])), self.heads)
        similar = (old @ new).numpy() >= self.consolidation.supersede_similarity
        gone = [w for w, s in zip(live, similar) if s]
        for w in gone:
            w.superseded_by = record.id
            state.changes.change(WRITES, [w.id])
        return gone

    def _decode(self, state: _UserState, answer: torch.Tensor) -> Recall:
        if state.candidates is None:
            vocab = distinct_words(w.text for w in state.writes if w.live)
            vectors = torch.stack([self.phrase(w) for w in vocab]) if vocab else torch.zeros(0, answer.shape[-1])
            state.candidates = (vocab, vectors)
        vocab, vectors = state.candidates
        if not vocab:
            return Recall(None, 0.0, 0, None)
        probs = torch.softmax(self.model.scores(answer, vectors)[0], -1)
        best = int(probs.argmax())
        confidence = float(probs[best])
        if confidence < self.cfg.min_confidence:
            return Recall(None, confidence, len(vocab), None)
        word = vocab[best]
        pattern = re.compile(rf"(?<!\w){re.escape(word)}(?!\w)")
        source = next((w for w in reversed(state.writes) if w.live and pattern.search(w.text)), None)
        return Recall(word, confidence, len(vocab), source)

    # ---- consolidation and forgetting ----------------------------------------------

    @torch.inference_mode()
    def replay(self, user: str, write_ids: Iterable[int]) -> int:
        """Write these live writes again (consolidation); returns how many were replayed."""
        with self._lock:
            state = self._user(user)
            chosen = [state.writes[i] for i in write_ids if 0 <= i < len(state.writes) and state.writes[i].live]
            if chosen:
                self._write_again(state, chosen)
                state.replays += len(chosen)
            return len(chosen)

    def _write_again(self, state: _UserState, records: Sequence[WriteRecord]) -> None:
        self.model.memory.fast = state.fast
        for w in records:
            self.model.memory.write(
                torch.from_numpy(w.key)[None], torch.from_numpy(w.vector)[None], torch.from_numpy(w.beta)[None]
            )
        state.fast = self.model.memory.fast

    @torch.inference_mode()
    def forget(self, user: str, write_ids: Iterable[int]) -> list[WriteRecord]:
        """Take writes out of the memory: the fast weights are rebuilt from the start by
        replaying every other live write in order. Returns the writes forgotten now."""
        with self._lock:
            state = self._user(user)
            gone = [state.writes[i] for i in set(write_ids) if 0 <= i < len(state.writes) and not state.writes[i].forgotten]
            if not gone:
                return []
            for w in gone:
                w.forgotten = True
                state.changes.change(WRITES, [w.id])
            self._rebuild(state)
            return sorted(gone, key=lambda w: w.id)

    def clear(self, user: str) -> int:
        """Forget every write of the user; returns how many there were."""
        with self._lock:
            state = self._user(user)
            count = sum(not w.forgotten for w in state.writes)
            self.forget(user, range(len(state.writes)))
            state.state = self._zero_state()
            return count

    def _rebuild(self, state: _UserState) -> None:
        state.fast = self.model.memory.initial_state(1)
        self._write_again(state, [w for w in state.writes if w.live])
        state.candidates = None

    # ---- what the Memory tab shows --------------------------------------------------

    def writes(self, user: str) -> list[WriteRecord]:
        """The user's write log, oldest first (superseded and forgotten writes included)."""
        state = self._users.get(user)
        return list(state.writes) if state else []

    def stats(self, user: str) -> dict:
        """Counts and the mean write strength of the user's memory."""
        state = self._users.get(user)
        writes = state.writes if state else []
        live = [w for w in writes if w.live]
        return {
            "writes": len(writes),
            "live": len(live),
            "superseded": sum(w.superseded_by is not None for w in writes),
            "forgotten": sum(w.forgotten for w in writes),
            "replays": state.replays if state else 0,
            "mean_beta": float(np.mean([w.beta.mean() for w in live])) if live else 0.0,
        }

    # ---- saved state (storage/neural.py writes and reads it) ------------------------

    @property
    def rule(self) -> str:
        """The memory's learning rule ("g" or "p")."""
        return self.model.memory_cfg.rule

    def changes(self, user: str) -> Changes | None:
        """What changed in the user's write log since the last save (None: nothing held)."""
        state = self._users.get(user)
        return None if state is None else state.changes

    def snapshot(self, user: str) -> dict[str, torch.Tensor] | None:
        """The user's fast weights, with the interface's recurrent state ("state" [1, d]) and
        the writes replayed so far ("replays"); None if this process holds nothing of the user."""
        with self._lock:
            state = self._users.get(user)
            if state is None:
                return None
            self.model.memory.fast = state.fast
            snapshot = self.model.memory.snapshot()
            snapshot["state"] = state.state.detach().clone()
            snapshot["replays"] = torch.tensor(state.replays)
            return snapshot

    def fits(self, rule: str, tag: str) -> bool:
        """Whether a snapshot saved by a memory with `rule` under weights `tag` loads into this one."""
        return rule == self.rule and tag == self.tag

    def restore(
        self, user: str, writes: Sequence[WriteRecord], snapshot: dict[str, torch.Tensor] | None = None, *,
        version: float = 0.0, written_by: str = "none",
    ) -> None:
        """Replace the user's state with a saved one: its write log and, given a `snapshot`
        that `fits`, its fast weights; `version` is the save they came from.

        Without a snapshot, a memory written by other weights (`written_by`) is relearned:
        its live sentences are written again, in order, by this checkpoint's interface.
        """
        with self._lock:
            self._users.pop(user, None)
            state = self._user(user)
            state.writes = list(writes)
            state.changes = Changes(version)
            if snapshot is not None:
                self.model.memory.load_snapshot(snapshot)
                state.fast = self.model.memory.fast
                state.state = snapshot["state"]
                state.replays = int(snapshot["replays"])
            elif state.writes:
                log.warning("user %r: neural memory was written by other weights (%s); relearning %d sentences",
                            user, written_by, len(state.writes))
                self.relearn(user)

    def relearn(self, user: str) -> None:
        """Write the user's live sentences again from scratch with this checkpoint's interface."""
        with self._lock:
            kept = [w for w in self._user(user).writes if w.live]
            self.learn(user, [(w.text, w.turn, w.engram) for w in kept])

    @torch.inference_mode()
    def learn(self, user: str, sentences: Sequence[tuple[str, int | None, int | None]]) -> list[WriteRecord]:
        """Replace the user's memory by one that was told `sentences` (text, turn, engram), in order."""
        with self._lock:
            state = self._user(user)
            state.fast, state.state = self.model.memory.initial_state(1), self._zero_state()
            state.writes, state.candidates, state.replays = [], None, 0
        # A chunk at a time, the shared locks given back between: a long import never holds other users' turns for long.
        for start in range(0, len(sentences), LEARN_CHUNK):
            chunk = sentences[start : start + LEARN_CHUNK]
            for (text, turn, engram), features in zip(chunk, self.featurize([t for t, _, _ in chunk])):
                self.step(user, text, features, question=False, turn=turn, engram=engram)
        with self._lock:
            state.changes.rewrite(WRITES)  # the old rows give way to these on the next save
            return list(state.writes)

    @torch.inference_mode()
    def keys(self, texts: Sequence[str], questions: Sequence[bool]) -> torch.Tensor:
        """Keys of sentences read in order by a fresh interface, writing nothing: the write key
        of a statement, the read key of a question. Returns: [N, key_dim]."""
        with self._lock:
            memory = self.model.memory
            saved, memory.fast = memory.fast, memory.initial_state(1)
            state, out = self._zero_state(), []
            try:
                for features, question in zip(self.featurize(list(texts)), questions):
                    ids, feats, emb = features
                    # QUESTION: the interface runs and its state moves on, but nothing is written
                    state, step = self.model.step(state, feats[None].float(), emb[None], torch.ones(1, len(ids), dtype=torch.bool),
                                                  torch.tensor([QUESTION]))
                    out.append((step.k_r if question else step.k_w)[0])
            finally:
                memory.fast = saved
            return torch.stack(out) if out else torch.zeros(0, self.model.memory_cfg.key_dim)
