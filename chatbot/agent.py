"""The agent: runs one chat turn for one user and persists it.

One turn, each learned stage behind a config switch:
  check the message
  -> vocab      ElasticVocab.observe: words become tokens, use strengthens them
  -> encode     the message's sentences through the controller (hidden states)
  -> neural     ChatMemory.step per sentence: statements are written (test-time
                one-shot update), questions read and decoded among the user's words
  -> remind     Memoria: the sentences become working memory, engrams are reminded
  -> generate   the recalled sentences are notes in the system message (optionally the
                reads are a soft prefix); the reply streams
  -> attention  how much the reply attended to each note
  -> adjust     reminded engrams earn lifespan by that attention; all age one turn
  -> consolidate corrections supersede older writes (and their engrams); every
                `replay_every` turns the most fired long-term engrams are replayed
                into the neural memory
  -> save       one SQLite transaction: turn, vocabulary, engrams, neural memory.
A message starting with "Forget" forgets what matches instead of generating.

Users are isolated: every memory operation names the speaking user, and notes only
ever come from that user's engrams and writes. Turns of one user run one at a time.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import torch

from memory.interface import MemoryModel, unit_keys
from memory.memoria import Engram, EngramType, Memoria, lifespan_delta, stored_version
from memory.neural_chat import ChatMemory, SentenceStep, WriteRecord
from memory.retrieval import RetrievalIndex, SentenceEncoder
from memory.store import Store, Turn
from vocab import ElasticVocab

from .config import Config, load_config
from .controller import Controller, Generation, ModelLoadError, model_tag
from .memory_file import EngramEntry, MemoryFile, WriteEntry
from text import is_question, split_sentences

from .forget import ForgetRequest, forget_request
from .notes import answer_words, cue_words, rank_notes, unnamed_closeness
from .prompt import chat_messages

log = logging.getLogger(__name__)

MAX_USER_NAME = 64
# The stages whose time is the memory's cost (the rest: vocabulary, generation, saving).
MEMORY_STAGES = ("encode", "neural", "remind", "attention", "adjust", "consolidate")


class MessageError(ValueError):
    """A message or user name that cannot be answered; the text says why."""


@dataclass
class Reply:
    """A reply as it streams: the text so far, notes to show beside it, what memory did."""

    text: str = ""
    notes: list[str] = field(default_factory=list)  # e.g. "your message was truncated"
    done: bool = False  # true on the last snapshot, once the turn is stored
    memory: dict = field(default_factory=dict)  # what memory contributed (filled before the text streams)
    seconds: dict[str, float] = field(default_factory=dict)  # time per stage, complete when done


@dataclass
class MemoryView:
    """A user's memories as the Memory tab shows them."""

    engrams: list[Engram]
    writes: list[WriteRecord]
    stats: dict  # the neural memory's counts and mean write strength
    reads: list[dict]  # the newest reads: question, word, confidence, source


class _Clock:
    """Seconds per stage of one turn."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}

    @contextmanager
    def stage(self, name: str) -> Iterator[None]:
        started = time.perf_counter()
        try:
            yield
        finally:
            self.seconds[name] = self.seconds.get(name, 0.0) + time.perf_counter() - started


class Agent:
    """The chatbot: a controller, its memories, a configuration and a store.

    Args:
        cfg: the configuration.
        controller: the loaded language model.
        store: the SQLite store.
    """

    def __init__(self, cfg: Config, controller: Controller, store: Store) -> None:
        self.cfg = cfg
        self.controller = controller
        self.store = store
        # The elastic vocabulary, shared by all users like the model it resizes; restored from the store.
        self.vocab: ElasticVocab | None = None
        if cfg.vocab.enabled:
            self.vocab = ElasticVocab(controller.tokenizer, cfg.vocab, controller.model)
            with controller.lock:
                self.vocab.load(store.db)
            controller.vocab = self.vocab
        m = cfg.memoria
        if m.vector not in ("key", "hidden", "sentence") or m.reward not in ("attention", "uniform") or m.unit not in ("sentence", "message"):
            raise ValueError(
                f"memoria.vector must be key, hidden or sentence, memoria.reward attention or uniform, memoria.unit sentence "
                f"or message; got {m.vector!r}, {m.reward!r}, {m.unit!r}"
            )
        # The memory interface runs when the neural memory is on, or when it gives Memoria its keys.
        self.memory: ChatMemory | None = None
        if cfg.neural_memory.enabled or (m.enabled and m.vector == "key"):
            self.memory = self._chat_memory()
        # One sentence encoder for Memoria's "sentence" vectors and the retrieval baseline.
        wants_sentences = (m.enabled and m.vector == "sentence") or cfg.retrieval.enabled
        self.sentences = SentenceEncoder() if wants_sentences else None
        self.memoria = (
            Memoria(m.num_reminded_stm, m.stm_capacity, m.ltm_search_depth, m.initial_lifespan, m.num_final_ltms,
                    max_links=m.max_links, vector_kind=self._vector_kind())
            if m.enabled
            else None
        )
        # The retrieval baseline (off in the product): an index of each user's statements.
        self.retrieval = RetrievalIndex(self.sentences) if cfg.retrieval.enabled else None
        self._loaded: set[str] = set()
        self._user_locks: dict[str, threading.Lock] = {}
        self._locks_lock = threading.Lock()

    def _vector_kind(self) -> str:
        """Names what makes Memoria's vectors, so engrams saved another way are re-embedded."""
        vector, unit = self.cfg.memoria.vector, self.cfg.memoria.unit
        if vector == "key":
            return f"key:{self.memory.tag}:{unit}"
        if vector == "hidden":
            return f"hidden:{model_tag(self.cfg.model)}:layer{self.cfg.interface.feature_layer}:{unit}"
        return f"sentence:all-MiniLM-L6-v2:{unit}"

    def _chat_memory(self) -> ChatMemory:
        cfg = self.cfg
        path = cfg.neural_memory.checkpoint
        if path:
            if not Path(path).is_file():
                raise ModelLoadError(f"neural_memory.checkpoint {path} does not exist; train one with train_meta.py or set it to \"\"")
            return ChatMemory.from_checkpoint(path, self.controller, cfg=cfg.neural_memory, consolidation=cfg.consolidation)
        # No checkpoint: an untrained memory of the configured shape, seeded so it is the same every start.
        with torch.random.fork_rng():
            torch.manual_seed(0)
            model = MemoryModel(cfg.neural_memory, cfg.interface, self.controller.hidden_size, self.controller.hidden_size)
        return ChatMemory(
            model, self.controller, feature_layer=cfg.interface.feature_layer, tag="untrained",
            cfg=cfg.neural_memory, consolidation=cfg.consolidation,
        )

    @classmethod
    def from_config(cls, path: str | Path, *, db: str | Path | None = None) -> "Agent":
        """Load the config at `path`, its model, and the database (`db` overrides store.path)."""
        cfg = load_config(path)
        if db is not None:
            cfg.store.path = str(db)
        store = Store(cfg.store.path, busy_timeout_s=cfg.store.busy_timeout_s)
        try:
            return cls(cfg, Controller.from_config(cfg.model), store)
        except BaseException:
            store.close()
            raise

    # ---- messages and prompts ---------------------------------------------------------

    def check_message(self, user: str, text: str) -> tuple[str, str, list[str]]:
        """Validate a user name and message; returns them cleaned, with notes for the user."""
        user = (user or "").strip()
        if not user:
            raise MessageError("a user name is required")
        if len(user) > MAX_USER_NAME:
            raise MessageError(f"user names are at most {MAX_USER_NAME} characters")
        if not text or not text.strip():
            raise MessageError("the message is empty; type something to send")
        notes = []
        limit = self.cfg.chat.max_message_chars
        if len(text) > limit:
            notes.append(f"Your message had {len(text):,} characters; only the first {limit:,} were read.")
            text = text[:limit]
        return user, text, notes

    def _prompt_ids(self, conversation_id: int, text: str, notes: list[str] = ()) -> tuple[torch.LongTensor, list[tuple[int, int]]]:
        """Prompt ids with the notes and as many recent turns as fit the token budget, and
        each note's token span. Returns [1, T] and one (start, end) per note."""
        history = self.store.turns(conversation_id, limit=self.cfg.chat.history_turns)
        budget = min(self.cfg.chat.max_prompt_tokens, self.controller.max_positions) - self.cfg.generation.max_new_tokens
        while True:
            pairs = [(t.user_text, t.reply) for t in history]
            messages = chat_messages(self.cfg.chat.system_prompt, list(notes), pairs, text)
            ids, spans = self.controller.prompt_ids(messages, notes)
            if ids.shape[1] <= budget or not history:
                return ids, spans
            history = history[1:]

    # ---- users' memories ----------------------------------------------------------------

    @contextmanager
    def _turn_of(self, user: str) -> Iterator[None]:
        """One turn of `user` at a time (different users proceed side by side)."""
        with self._locks_lock:
            lock = self._user_locks.setdefault(user, threading.Lock())
        with lock:
            yield

    def _load(self, user: str) -> int:
        """Bring the user's memories into this process (again, if another process saved
        them since); returns the user's row id."""
        uid = self.store.user_id(user)
        fresh = user in self._loaded
        if fresh and self.memoria is not None:
            fresh = self.memoria.saved_version(user) == stored_version(self.store.db, user)
        if fresh and self.memory is not None:
            fresh = self.memory.saved_version(user) == self.memory.stored_version(self.store.db, uid)
        if not fresh:
            if self.memoria is not None:
                self.memoria.load(self.store.db, user)
                if self.memoria.vector_kind_of(user) != self.memoria.vector_kind:
                    self._reembed_engrams(user)
            if self.memory is not None:
                self.memory.load(self.store.db, user, uid)
            if self.retrieval is not None:
                self.retrieval.replace(user, self._said(user))
            self._loaded.add(user)
        return uid

    def _reembed_engrams(self, user: str) -> None:
        """The user's engrams were saved with vectors made another way (another encoder,
        model or unit): make them again from their texts; the next save stores them."""
        engrams = self.memoria.engrams(user)
        log.info("re-embedding %d engrams of %s: saved as %s, now %s", len(engrams), user,
                 self.memoria.vector_kind_of(user), self.memoria.vector_kind)
        self.memoria.replace_vectors(user, self._engram_vectors([e.text or "" for e in engrams]))

    def _engram_vectors(self, texts: list[str]) -> torch.Tensor:
        """[N, D] vectors of engram texts, made as a turn makes them (a message: its sentences' mean)."""
        if not texts:  # the vector width still matters: it is the user's engram width from now on
            return self._sentence_vectors(["."])[:0]
        parts = [split_sentences(t) or [t or "."] for t in texts]
        flat = self._sentence_vectors([s for p in parts for s in p])
        out, start = [], 0
        for p in parts:
            out.append(flat[start : start + len(p)].mean(0))
            start += len(p)
        return torch.stack(out)

    def _sentence_vectors(self, sentences: list[str]) -> torch.Tensor:
        """[N, D] unit vectors of sentences by memoria.vector (no memory is read or written)."""
        if self.cfg.memoria.vector == "key":
            return unit_keys(self.memory.keys(sentences, [is_question(t) for t in sentences]), self.memory.heads)
        if self.cfg.memoria.vector == "sentence":
            return self.sentences(sentences)
        return torch.nn.functional.normalize(torch.stack([h.float().mean(0) for _, h, _ in self._encode(sentences)]), dim=-1)

    def _said(self, user: str) -> list[str]:
        """Every statement the user made, oldest first (what the retrieval baseline indexes)."""
        rows = self.store.db.execute(
            "SELECT t.user_text FROM turns t JOIN conversations c ON c.id = t.conversation_id JOIN users u ON u.id = c.user_id "
            "WHERE u.name = ? ORDER BY t.id", [user],
        ).fetchall()
        return [s for (text,) in rows if forget_request(text) is None for s in split_sentences(text) if not is_question(s)]

    def _encode(self, sentences: list[str]) -> list[tuple[list[int], torch.Tensor, torch.Tensor]]:
        if self.memory is not None:
            return self.memory.featurize(sentences)
        from memory.features import hidden_states  # Memoria on hidden states alone

        hidden = hidden_states(self.controller, sentences, self.cfg.interface.feature_layer)
        return [([], h, torch.zeros(0)) for h in hidden]

    def _steps(self, user: str, sentences: list[str], features: list) -> list[SentenceStep]:
        """The neural memory's work on each sentence, in order (keys only when it is off)."""
        steps = []
        for sentence, f in zip(sentences, features):
            asks = is_question(sentence)
            if self.memory is not None:
                steps.append(self.memory.step(user, sentence, f, question=asks))
            else:
                steps.append(SentenceStep(sentence, asks, torch.zeros(0), f[1].float().mean(0)))
        return steps

    def _engrams_of(self, text: str, steps: list[SentenceStep]) -> tuple[list[str], torch.Tensor]:
        """This turn's engrams: their texts and [1, W, D] vectors (a sentence each, or the whole message)."""
        if self.cfg.memoria.vector == "key":
            vectors = unit_keys(torch.stack([s.key for s in steps]), self.memory.heads)
        elif self.cfg.memoria.vector == "sentence":
            vectors = self.sentences([s.text for s in steps])
        else:  # unit length, so Memoria's L2 ranking is the cosine ranking (raw norms vary with sentence length)
            vectors = torch.nn.functional.normalize(torch.stack([s.hidden for s in steps]), dim=-1)
        if self.cfg.memoria.unit == "message":
            return [text.strip()], vectors.mean(0, keepdim=True)[None]
        return [s.text for s in steps], vectors[None]

    def _notes(
        self, steps: list[SentenceStep], reminded: list, closeness: list[float], cues: tuple[str, ...] = (),
        vectors: torch.Tensor | None = None,
    ) -> tuple[list[str], list[int | None]]:
        """Sentences to show the model, oldest first, and the engram each came from.

        Without an engram store, the sentences holding the neural memory's confident
        reads. Otherwise the reminded statements at least chat.note_min_similarity close
        (cosine) to the turn, in `rank_notes` order (those naming whom the message is
        about, a statement superseded by a later one like it last), up to chat.max_notes.
        vectors: [R, D] the reminded engrams' unit vectors.
        """
        chosen: dict[str, tuple[int, int | None]] = {}  # text -> (turn, engram)
        if self.memoria is None:
            for step in steps:
                source = step.recall.source if step.recall else None
                if source is not None and source.text not in chosen:
                    chosen[source.text] = (source.turn or 0, source.engram)
        eligible = [
            (k, engram, close) for k, (engram, close) in enumerate(zip(reminded, closeness))
            if engram.text and not is_question(engram.text) and close >= self.cfg.chat.note_min_similarity
        ]
        order = rank_notes([(e.id, e.text, close) for _, e, close in eligible], cues, self.cfg.chat.note_recency_margin,
                           vectors=None if vectors is None else vectors[[k for k, _, _ in eligible]],
                           link=self.cfg.chat.note_link_similarity)
        for _, engram, _ in (eligible[i] for i in order):
            if len(chosen) >= self.cfg.chat.max_notes:
                break
            chosen.setdefault(engram.text, (engram.turn or 0, engram.id))
        ordered = sorted(chosen.items(), key=lambda item: (item[1][0], item[1][1] if item[1][1] is not None else -1))
        return [text for text, _ in ordered], [engram for _, (_, engram) in ordered]

    def _cued(self, user: str, cues: tuple[str, ...], steps: list[SentenceStep], skip: set[int]) -> list[int]:
        """Engrams recalled beside Memoria's remind: those mentioning the message's names
        (up to chat.cue_limit), and those holding the neural memory's reads."""
        ids = self.memoria.mentioning(cues, user=user, limit=self.cfg.chat.cue_limit) if cues else []
        ids += [s.recall.source.engram for s in steps if s.recall and s.recall.source and s.recall.source.engram is not None]
        out: list[int] = []
        for i in ids:
            if i not in skip and i not in out and self.memoria.is_live(i, user=user):
                out.append(i)
        return out

    # ---- one turn --------------------------------------------------------------------------

    def chat_stream(self, user: str, text: str) -> Iterator[Reply]:
        """Answer `text` from `user`, yielding the reply as it grows; stores the turn at the end."""
        user, text, notes = self.check_message(user, text)
        with self._turn_of(user):
            yield from self._turn(user, text, notes)

    def _turn(self, user: str, text: str, notes: list[str]) -> Iterator[Reply]:
        clock = _Clock()
        conversation_id = self.store.current_conversation(user)
        uid = self._load(user)
        reply = Reply(notes=notes)
        vocab_events = []
        if self.vocab is not None:
            with clock.stage("vocab"), self.controller.lock:  # resizes the model's matrices: never mid-generation
                vocab_events = self.vocab.observe(text, user=user)
        request = forget_request(text)
        if request is not None:
            reply.text, reply.memory = self._forget(user, request)
            yield reply
            steps, engram_ids, report = [], [], Generation()
        else:
            steps, engram_ids, report = yield from self._remember_and_answer(user, text, conversation_id, reply, clock)
        reply.text = reply.text.strip()
        with clock.stage("save"):
            self._save(user, uid, conversation_id, text, reply, steps, engram_ids, report, vocab_events, clock)
        reply.seconds = dict(clock.seconds)
        reply.done = True
        yield reply

    def _remember_and_answer(
        self, user: str, text: str, conversation_id: int, reply: Reply, clock: _Clock
    ) -> Iterator[Reply]:
        sentences = split_sentences(text) or [text.strip()]
        steps: list[SentenceStep] = []
        engram_ids: list[int] = []
        reminded, indices, closeness, reminded_vectors = [], torch.zeros(1, 0, dtype=torch.long), [], None
        cues = cue_words(text) if self.cfg.chat.cue_limit > 0 else ()
        if self.memory is not None or self.memoria is not None:
            with clock.stage("encode"):
                features = self._encode(sentences)
            with clock.stage("neural"):
                steps = self._steps(user, sentences, features)
        if self.memoria is not None:
            with clock.stage("remind"):
                texts, vectors = self._engrams_of(text, steps)
                engram_ids = self.memoria.add_working_memory(vectors, user=user, texts=[texts])[0].tolist()
                for i, step in enumerate(steps):
                    if step.write is not None:
                        step.write.engram = engram_ids[min(i, len(engram_ids) - 1)]
                memories, indices = self.memoria.remind(user=user)
                live = [i for i in indices[0].tolist() if i >= 0]
                cued = self._cued(user, cues, steps, set(live) | set(engram_ids))
                reminded = self.memoria.engrams(user, live + cued)
                reminded_vectors = torch.nn.functional.normalize(
                    torch.cat([memories[0, : len(live)], self.memoria.vectors(user, cued)]), dim=-1)
                query = torch.nn.functional.normalize(vectors[0].mean(0), dim=-1)
                closeness = (reminded_vectors @ query).tolist()
                if self.cfg.chat.note_unnamed_closeness and cues:
                    closeness = unnamed_closeness(text, cues, [e.text for e in reminded], closeness, self._engram_vectors)
        note_texts, note_engrams = self._notes(steps, reminded, closeness, cues, reminded_vectors)
        if self.retrieval is not None:
            with clock.stage("remind"):
                found = [t for t, _ in self.retrieval.search(user, text, self.cfg.retrieval.top_k)]
                said = self.retrieval.texts(user)
                note_texts = sorted(set(note_texts) | set(found), key=lambda t: said.index(t) if t in said else len(said))
                note_texts = note_texts[: max(self.cfg.chat.max_notes, self.cfg.retrieval.top_k)]
                note_engrams = [None] * len(note_texts)
                self.retrieval.add(user, [t for t in sentences if not is_question(t)])
        reply.memory = self._contribution(steps, reminded, note_texts)
        prefix = None
        if self.cfg.chat.soft_prefix:
            reads = [s.read for s in steps if s.read is not None]
            prefix = torch.stack(reads) if reads else None
        ids, spans = self._prompt_ids(conversation_id, text, note_texts)
        report = Generation()
        with clock.stage("generate"):
            for piece in self.controller.generate(ids, soft_prefix=prefix, gen=self.cfg.generation, spans=spans, report=report,
                                                  notes=note_texts, answer_words=answer_words(text, note_texts)):
                reply.text += piece
                yield reply
        clock.seconds["generate"] -= report.attention_seconds
        clock.seconds["attention"] = report.attention_seconds
        if self.memoria is not None:
            with clock.stage("adjust"):
                self._adjust(user, indices, reminded, note_engrams, report, reply)
        with clock.stage("consolidate"):
            reply.memory["superseded"], reply.memory["replayed"] = self._consolidate(user, steps)
        return steps, engram_ids, report

    def _adjust(self, user: str, indices: torch.Tensor, reminded: list, note_engrams: list, report: Generation, reply: Reply) -> None:
        """Reminded engrams earn lifespan by the reply's attention to their notes; all age a turn."""
        attention = dict(zip(note_engrams, report.span_attention or [0.0] * len(note_engrams)))
        shown = set(note_engrams)
        if self.cfg.memoria.reward == "uniform":
            mass = [1.0 if e.id in shown else 0.0 for e in reminded]
        else:
            mass = [attention.get(e.id, 0.0) for e in reminded]
        ids = torch.tensor([[e.id for e in reminded]], dtype=torch.long)
        deltas = lifespan_delta(torch.tensor([mass]), self.cfg.memoria.lifespan_scale) if reminded else torch.zeros(1, 0)
        self.memoria.adjust_lifespan_and_memories(ids, deltas, user=user)
        for entry, delta in zip(reply.memory.get("reminded", []), deltas[0].tolist()):
            entry["attention"] = round(attention.get(entry["id"], 0.0), 4)
            entry["lifespan_gain"] = round(delta, 3)

    def _consolidate(self, user: str, steps: list[SentenceStep]) -> tuple[list[dict], int]:
        """Corrections take the engrams of what they overwrote with them; every
        `replay_every` turns the most fired long-term engrams are written again."""
        superseded = [w for s in steps for w in s.superseded]
        if self.memoria is not None and superseded:
            self.memoria.forget([w.engram for w in superseded if w.engram is not None], user=user)
        replayed = 0
        every = self.cfg.consolidation.replay_every
        if self.memory is not None and self.memoria is not None and every and self.memoria.adjust_count(user) % every == 0:
            ltms = [e for e in self.memoria.engrams(user) if e.type == EngramType.LONGTERM and e.text and not is_question(e.text)]
            ltms.sort(key=lambda e: (-e.fire_count, e.id))
            wanted = {e.id for e in ltms[: self.cfg.consolidation.replay_count]}
            replayed = self.memory.replay(user, [w.id for w in self.memory.writes(user) if w.engram in wanted])
        return [{"id": w.id, "text": w.text, "by": w.superseded_by} for w in superseded], replayed

    def _contribution(self, steps: list[SentenceStep], reminded: list, notes: list[str]) -> dict:
        """What memory did this turn, for the Chat tab and the turn's stored meta."""
        return {
            "notes": notes,
            "reminded": [
                {"id": e.id, "type": e.type.name.lower(), "text": e.text, "lifespan": round(e.lifespan, 2)} for e in reminded
            ],
            "recall": [
                {"question": s.text, "word": s.recall.word, "confidence": round(s.recall.confidence, 4),
                 "source": s.recall.source.text if s.recall.source else None}
                for s in steps if s.recall is not None
            ],
            "writes": [
                {"id": s.write.id, "text": s.text, "value": s.write.value, "beta": round(float(s.write.beta.mean()), 4)}
                for s in steps if s.write is not None
            ],
        }

    def _forget(self, user: str, request: ForgetRequest) -> tuple[str, dict]:
        """Forget the user's engrams and writes that match; the reply says what went."""
        texts: list[str] = []
        if self.memoria is not None:
            doomed = [e for e in self.memoria.engrams(user) if e.text and not is_question(e.text) and request.matches(e.text)]
            self.memoria.forget([e.id for e in doomed], user=user)
            texts += [e.text for e in doomed]
        if self.memory is not None:
            writes = [w for w in self.memory.writes(user) if not w.forgotten and request.matches(w.text)]
            texts += [w.text for w in self.memory.forget(user, [w.id for w in writes])]
        if self.retrieval is not None:
            doomed = {t for t in self.retrieval.texts(user) if request.matches(t)}
            self.retrieval.forget(user, doomed)
            texts += sorted(doomed)
        texts = list(dict.fromkeys(texts))
        if not texts:
            return "I had nothing like that in memory, so there was nothing to forget.", {"forgotten": []}
        listed = "\n".join(f"- {t}" for t in texts)
        return f"Done. I have forgotten {len(texts)} thing{'s' * (len(texts) != 1)}:\n{listed}", {"forgotten": texts}

    def _save(
        self, user: str, uid: int, conversation_id: int, text: str, reply: Reply, steps: list[SentenceStep],
        engram_ids: list[int], report: Generation, vocab_events: list, clock: _Clock,
    ) -> None:
        """Everything the turn changed, in one transaction. If it fails, the user's memories
        are reloaded from the store next turn, so memory and database never disagree."""
        meta = {
            "notes": reply.notes,
            "prompt_tokens": report.prompt_tokens,
            "new_tokens": report.new_tokens,
            "seconds": {k: round(v, 4) for k, v in clock.seconds.items()},
            "vocab": [[e.kind, e.text] for e in vocab_events],
            "memory": reply.memory,
        }
        try:
            with self.store.transaction() as db:
                turn_id = self.store.add_turn(db, conversation_id, text, reply.text, json.dumps(meta))
                if self.vocab is not None:
                    self.vocab.save(db, turn_id=turn_id)
                if self.memoria is not None:
                    live = [i for i in engram_ids if self.memoria.is_live(i, user=user)]
                    self.memoria.set_turn(live, turn_id, user=user)
                    self.memoria.save(db, user)
                if self.memory is not None:
                    for step in steps:
                        if step.write is not None:
                            step.write.turn = turn_id
                    self.memory.save(db, user, uid)
        except BaseException:
            self._loaded.discard(user)
            raise

    # ---- the Memory tab ----------------------------------------------------------------------

    def memory_view(self, user: str) -> MemoryView:
        """What the user's memories hold now, for the Memory tab."""
        user, _, _ = self.check_message(user, "-")
        with self._turn_of(user):
            self._load(user)
            writes = self.memory.writes(user) if self.memory is not None and self.cfg.neural_memory.enabled else []
            rows = self.store.db.execute(
                "SELECT t.meta FROM turns t JOIN conversations c ON c.id = t.conversation_id JOIN users u ON u.id = c.user_id "
                "WHERE u.name = ? ORDER BY t.id DESC LIMIT 20", [user],
            ).fetchall()
            reads = [r for (meta,) in rows for r in json.loads(meta or "{}").get("memory", {}).get("recall", [])]
            return MemoryView(
                engrams=self.memoria.engrams(user) if self.memoria is not None else [],
                writes=writes,
                stats=self.memory.stats(user) if writes else {},
                reads=reads[:10],
            )

    def forget_engram(self, user: str, engram_id: int) -> list[str]:
        """Forget one engram and the neural-memory write of the same sentence; returns the texts forgotten."""
        user, _, _ = self.check_message(user, "-")
        with self._turn_of(user):
            uid = self._load(user)
            texts = []
            if self.memoria is not None:
                texts += [e.text for e in self.memoria.engrams(user) if e.id == engram_id]
                self.memoria.forget([engram_id], user=user)
            if self.memory is not None:
                texts += [w.text for w in self.memory.forget(user, [w.id for w in self.memory.writes(user) if w.engram == engram_id])]
            self._save_memories(user, uid)
            return list(dict.fromkeys(texts))

    def clear_memory(self, user: str) -> int:
        """Forget all of the user's engrams and writes; returns how many sentences were forgotten."""
        user, _, _ = self.check_message(user, "-")
        with self._turn_of(user):
            uid = self._load(user)
            count = 0
            if self.memoria is not None:
                count += len(self.memoria.forget([e.id for e in self.memoria.engrams(user)], user=user))
            if self.memory is not None:
                count += self.memory.clear(user)
            self._save_memories(user, uid)
            return count

    def export_memory(self, user: str) -> MemoryFile:
        """The user's memories as a file (text, not tensors)."""
        view = self.memory_view(user)
        return MemoryFile(
            user=user.strip(),
            engrams=[
                EngramEntry(e.id, e.type.name.lower(), e.text or "", e.turn, e.lifespan, e.age, e.fire_count, dict(e.links))
                for e in view.engrams if e.text
            ],
            writes=[WriteEntry(w.id, w.text, w.value, w.turn, w.superseded_by, w.forgotten) for w in view.writes],
        )

    def import_memory(self, user: str, file: MemoryFile) -> tuple[int, int]:
        """Replace the user's memories by the file's: engrams as they were (vectors computed
        again), the neural memory told the file's live sentences again, in order.
        Returns (engrams, writes) imported. On any failure nothing changes."""
        user, _, _ = self.check_message(user, "-")
        with self._turn_of(user):
            uid = self._load(user)
            try:
                engrams = [
                    Engram(e.id, EngramType[e.type.upper()], e.text, e.turn, e.lifespan, e.age, e.fire_count, e.links)
                    for e in file.engrams
                ]
                if self.memoria is not None:
                    self.memoria.restore(engrams, self._engram_vectors([e.text for e in engrams]), user=user)
                written = []
                if self.memory is not None and self.cfg.neural_memory.enabled:
                    engram_of = {e.text: e.id for e in engrams}
                    written = self.memory.learn(user, [(w.text, w.turn, engram_of.get(w.text)) for w in file.writes if w.live])
                self._save_memories(user, uid)
            except BaseException:
                self._loaded.discard(user)  # back to what the store holds
                raise
            return (len(engrams) if self.memoria is not None else 0), len(written)

    def _save_memories(self, user: str, uid: int) -> None:
        try:
            with self.store.transaction() as db:
                if self.memoria is not None:
                    self.memoria.save(db, user)
                if self.memory is not None:
                    self.memory.save(db, user, uid)
        except BaseException:
            self._loaded.discard(user)
            raise

    # ---- the rest of the interface --------------------------------------------------------

    def chat(self, user: str, text: str) -> str:
        """Answer `text` from `user` and return the whole reply."""
        reply = Reply()
        for reply in self.chat_stream(user, text):
            pass
        for note in reply.notes:
            log.warning("%s", note)
        return reply.text

    def history(self, user: str) -> list[Turn]:
        """The user's current conversation, oldest turn first."""
        user, _, _ = self.check_message(user, "-")
        return self.store.turns(self.store.current_conversation(user))

    def new_conversation(self, user: str) -> None:
        """Start a fresh conversation for `user`; earlier ones (and all memories) stay."""
        user, _, _ = self.check_message(user, "-")
        self.store.new_conversation(user)

    def close(self) -> None:
        """Close the database and give the controller back with its base vocabulary,
        so another Agent (a restart in the same process) can load the saved one over it."""
        if self.vocab is not None:
            with self.controller.lock:
                self.vocab.detach()
                if self.controller.vocab is self.vocab:
                    self.controller.vocab = None
        self.store.close()
