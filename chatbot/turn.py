"""One chat turn as named stages over one TurnState, each learned stage behind a config switch:

  vocab        ElasticVocab.observe: the user's words become their tokens, use strengthens them
  encode       the message's sentences through the controller (hidden states)
  neural       ChatMemory.step per sentence: statements are written (test-time one-shot
               update), questions read and decoded among the user's words
  remind       Memoria: the sentences become working memory, engrams are reminded, and
               those the message's names cue are recalled beside them
  notes        which recalled statements go into the prompt (chatbot/notes.py)
  generate     the notes in the system message (optionally the reads as a soft prefix);
               the reply streams
  attention    how much the reply attended to each note (measured by the controller)
  adjust       reminded engrams earn lifespan by that attention; all age one turn
  consolidate  corrections supersede older writes (and their engrams); every
               `replay_every` turns the most fired long-term engrams are replayed
  save         one SQLite transaction: turn, vocabulary, engrams, neural memory
A message starting with "Forget" forgets what matches instead of generating, and prunes
the user's grown tokens of words only the forgotten sentences held.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

import torch

from memory.chat_memory import SentenceStep
from memory.engram_state import Engram, EngramType
from memory.memoria import lifespan_delta
from storage.vocab import save_vocab
from text import is_question, mentioned_words, split_sentences, topic_words
from vocab import VocabEvent

from .config import Config
from .controller import Controller, Generation
from .forget import ForgetRequest, forget_request
from .grounding import about_the_user, asked_kind, claimed_values, ungrounded, wrong_kind
from .memories import Memories
from .notes import answer_words, choose_notes, cue_words, cued_engrams, unnamed_closeness, word_overlap
from .prompt import NOT_TOLD_REPLIES, NOTES_HEADER, chat_messages
from .statements import Statements

# The stages whose time is the memory's cost (the rest: vocabulary, generation, saving).
MEMORY_STAGES = ("encode", "neural", "remind", "attention", "adjust", "consolidate")


@dataclass
class Reply:
    """A reply as it streams: the text so far, notes to show beside it, what memory did."""

    text: str = ""
    notes: list[str] = field(default_factory=list)  # e.g. "your message was truncated"
    done: bool = False  # true on the last snapshot, once the turn is stored
    memory: dict = field(default_factory=dict)  # what memory contributed (filled before the text streams)
    seconds: dict[str, float] = field(default_factory=dict)  # time per stage, complete when done


@dataclass
class TurnState:
    """Everything one turn knows, filled in stage by stage."""

    user: str
    uid: int  # the user's row id
    conversation_id: int
    text: str  # the message, checked and truncated
    reply: Reply
    sentences: list[str] = field(default_factory=list)  # the message, parsed once
    asked: str = ""  # what recall is keyed on: the message, or its asking sentences (chat.question_focus)
    cues: tuple[str, ...] = ()  # the names and numbers it mentions (chatbot/notes.py cue_words)
    topic: tuple[str, ...] = ()  # its other content words (text.topic_words)
    vocab_events: list[VocabEvent] = field(default_factory=list)
    steps: list[SentenceStep] = field(default_factory=list)  # the neural memory's work per sentence
    engram_ids: list[int] = field(default_factory=list)  # this turn's own engrams
    indices: torch.Tensor = field(default_factory=lambda: torch.zeros(1, 0, dtype=torch.long))  # [1, R] Memoria's reminded ids
    reminded: list[Engram] = field(default_factory=list)  # reminded and cued engrams
    closeness: list[float] = field(default_factory=list)  # their cosine closeness to the message
    reminded_vectors: torch.Tensor | None = None  # [R, D] their unit vectors
    notes: list[str] = field(default_factory=list)  # the sentences put in the prompt, oldest first
    note_engrams: list[int | None] = field(default_factory=list)  # the engram each note came from
    note_corrections: list[list[tuple[int, str]]] = field(default_factory=list)  # per note, (engram, words) that restated it
    generation: Generation = field(default_factory=Generation)
    seconds: dict[str, float] = field(default_factory=dict)

    @contextmanager
    def stage(self, name: str) -> Iterator[None]:
        """Time a stage (a stage run twice adds up)."""
        started = time.perf_counter()
        try:
            yield
        finally:
            self.seconds[name] = self.seconds.get(name, 0.0) + time.perf_counter() - started


class Turn:
    """Runs turns against the model, the memories and the store.

    Args:
        cfg: the configuration.
        controller: the language model.
        memories: every user's memories (the parts a config switches off are None).
    """

    def __init__(self, cfg: Config, controller: Controller, memories: Memories) -> None:
        self.cfg, self.controller, self.memories = cfg, controller, memories
        self.store = memories.store
        self.statements = Statements(memories.memoria, memories.common_word, cfg.chat) if memories.memoria is not None else None

    def run(self, state: TurnState) -> Iterator[Reply]:
        """The turn, stage by stage; yields the reply as it grows, and once more when it is stored."""
        request = forget_request(state.text)
        if request is not None:  # its words are not the user's to learn: they are what goes
            self.forget(state, request)
            yield state.reply
        else:
            self.observe_vocabulary(state)
            state.sentences = split_sentences(state.text) or [state.text.strip()]
            chat = self.cfg.chat
            names = self.memories.names(state.user) if chat.name_cues else ()
            state.asked = asked = self._asked(state)
            if chat.cue_limit > 0:  # a question naming no one is about whom the message names ("Ilka's back. When does her train get in?")
                state.cues = cue_words(asked, names, self.memories.common_word) or cue_words(state.text, names, self.memories.common_word)
            state.topic = tuple(topic_words(asked, state.cues)) if chat.topic_cues and chat.cue_limit > 0 else ()
            if chat.name_cues:
                self.memories.learn_names(state.user, state.text)
            self.read_and_write(state)
            self.remind(state)
            self.choose_notes(state)
            yield from self.generate(state)
            self.adjust(state)
            self.consolidate(state)
        state.reply.text = state.reply.text.strip()
        with state.stage("save"):
            self.save(state)
        state.reply.seconds = dict(state.seconds)
        state.reply.done = True
        yield state.reply

    # ---- stages ----------------------------------------------------------------------------

    def observe_vocabulary(self, state: TurnState) -> None:
        if self.memories.vocab is None:
            return
        with state.stage("vocab"):  # on the model's thread: fitting new rows runs the LM
            state.vocab_events = self.controller.call(self._observe, state.text, state.user)

    def _observe(self, text: str, user: str) -> list[VocabEvent]:
        with self.controller.lock:  # resizes the model's matrices: never mid-generation
            return self.memories.vocab.observe(text, user=user)

    def forget(self, state: TurnState, request: ForgetRequest) -> None:
        """Forget the user's memories that match; the reply says what went."""
        texts = self.memories.forget(state.user, request)
        state.vocab_events = self.memories.unlearn_words(state.user, texts)
        state.reply.memory = {"forgotten": texts}
        if not texts:
            state.reply.text = "I had nothing like that in memory, so there was nothing to forget."
            return
        listed = "\n".join(f"- {t}" for t in texts)
        state.reply.text = f"Done. I have forgotten {len(texts)} thing{'s' * (len(texts) != 1)}:\n{listed}"

    def read_and_write(self, state: TurnState) -> None:
        """The neural memory's work on each sentence, in order (keys only when it is off)."""
        m = self.memories
        if m.neural is None and m.memoria is None:
            return
        with state.stage("encode"):
            features = m.encode(state.sentences)
        with state.stage("neural"):
            for sentence, f in zip(state.sentences, features):
                asks = is_question(sentence)
                if m.neural is not None:
                    state.steps.append(m.neural.step(state.user, sentence, f, question=asks))
                else:
                    state.steps.append(SentenceStep(sentence, asks, torch.zeros(0), f[1].float().mean(0)))

    def remind(self, state: TurnState) -> None:
        """The message becomes working memory; Memoria reminds engrams, the cues recall more."""
        memoria = self.memories.memoria
        if memoria is None:
            return
        with state.stage("remind"):
            texts, vectors = self._turn_engrams(state)
            state.engram_ids = memoria.add_working_memory(vectors, user=state.user, texts=[texts])[0].tolist()
            for i, step in enumerate(state.steps):
                if step.write is not None:
                    step.write.engram = state.engram_ids[min(i, len(state.engram_ids) - 1)]
            memories, state.indices = memoria.remind(user=state.user)
            live = [i for i in state.indices[0].tolist() if i >= 0]
            cued = cued_engrams(memoria, state.user, state.cues, state.steps, set(live) | set(state.engram_ids),
                                limit=self.cfg.chat.cue_limit, topic=state.topic)
            state.reminded = memoria.engrams(state.user, live + cued)
            state.reminded_vectors = torch.nn.functional.normalize(
                torch.cat([memories[0, : len(live)], memoria.vectors(state.user, cued)]), dim=-1)
            query = torch.nn.functional.normalize(self._query_vectors(state, vectors[0]).mean(0), dim=-1)
            state.closeness = (state.reminded_vectors @ query).tolist()
            if self.cfg.chat.note_unnamed_closeness and state.cues:
                state.closeness = unnamed_closeness(state.asked, state.cues, [e.text for e in state.reminded], state.closeness,
                                                    self.memories.engram_vectors)
            if self.cfg.chat.note_word_overlap:
                shared = word_overlap(state.asked, [e.text or "" for e in state.reminded])
                state.closeness = [c + self.cfg.chat.note_word_overlap * s for c, s in zip(state.closeness, shared)]

    def _asked(self, state: TurnState) -> str:
        """What the message's recall is keyed on: with chat.question_focus, its asking sentences when it
        asks ("Wait, how much did Greta's baby weigh? Mum asked." recalls by Greta, not by Mum), else all of it."""
        if not self.cfg.chat.question_focus:
            return state.text
        asking = [s for s in state.sentences if is_question(s)]
        return " ".join(asking) if asking else state.text

    def _query_vectors(self, state: TurnState, vectors: torch.Tensor) -> torch.Tensor:
        """Of the turn's engram vectors [W, D], those of what recall is keyed on (`_asked`): [W', D]."""
        asking = [k for k, step in enumerate(state.steps) if step.question]
        if not self.cfg.chat.question_focus or not asking or vectors.shape[0] != len(state.steps):  # one engram a message
            return vectors
        return vectors[asking]

    def _turn_engrams(self, state: TurnState) -> tuple[list[str], torch.Tensor]:
        """This turn's engrams: their texts and [1, W, D] vectors (a sentence each, or the whole message)."""
        vectors = self.memories.step_vectors(state.steps)
        if self.cfg.memoria.unit == "message":
            return [state.text.strip()], vectors.mean(0, keepdim=True)[None]
        return [s.text for s in state.steps], vectors[None]

    def choose_notes(self, state: TurnState) -> None:
        """The notes for the prompt; with the retrieval baseline on, its finds join them."""
        statements = self.statements
        state.notes, state.note_engrams = choose_notes(
            state.steps, state.reminded, state.closeness, state.cues, state.reminded_vectors, self.cfg.chat,
            from_reads=self.memories.memoria is None, topic=state.topic,
            related=mentioned_words(state.asked) if self.cfg.chat.note_recency_related else None,
            context=(lambda engrams: statements.message_words(state.user, engrams))
            if statements is not None and self.cfg.chat.note_message_names else None,
            fits=self._fitting(state))
        if self.cfg.chat.note_message_sentences > 1 and statements is not None:
            state.notes = [statements.in_its_message(state.user, note, engram) for note, engram in zip(state.notes, state.note_engrams)]
        retrieval = self.memories.retrieval
        if retrieval is not None:
            with state.stage("remind"):
                found = [t for t, _ in retrieval.search(state.user, state.text, self.cfg.retrieval.top_k)]
                said = retrieval.texts(state.user)
                notes = sorted(set(state.notes) | set(found), key=lambda t: said.index(t) if t in said else len(said))
                state.notes = notes[: max(self.cfg.chat.max_notes, self.cfg.retrieval.top_k)]
                state.note_engrams = [None] * len(state.notes)
                retrieval.add(state.user, [t for t in state.sentences if not is_question(t)])
        if self.cfg.chat.quoted_corrections and statements is not None:
            state.notes, state.note_corrections = statements.corrected(state.user, state.notes, state.note_engrams)
        state.reply.memory = self._contribution(state)

    def _fitting(self, state: TurnState) -> Callable[[list[Engram]], list[bool]] | None:
        """Whether each engram's message holds a value of the kind the question asks for (chat.note_answer_kind)."""
        kind = asked_kind(state.asked) if self.cfg.chat.note_answer_kind and self.statements is not None else None
        if kind is None:
            return None
        return lambda engrams: [kind.search(text) is not None for text in self.statements.message_texts(state.user, engrams)]

    def corrections(self, user: str) -> dict[int, tuple[int, str]]:
        """Each statement a later one corrects (`Statements.corrections`); empty with quoted corrections or Memoria off."""
        if self.statements is None or not self.cfg.chat.quoted_corrections:
            return {}
        return self.statements.corrections(user)

    def generate(self, state: TurnState) -> Iterator[Reply]:
        """Stream the reply from the prompt with the notes (and the reads as a soft prefix when on)."""
        prefix = None
        if self.cfg.chat.soft_prefix:
            reads = [s.read for s in state.steps if s.read is not None]
            prefix = torch.stack(reads) if reads else None
        ids, spans = self.prompt_ids(state.conversation_id, state.text, state.notes)
        asks = any(map(is_question, state.sentences))
        with state.stage("generate"):
            for piece in self.controller.generate(ids, soft_prefix=prefix, gen=self.cfg.generation, spans=spans,
                                                  report=state.generation, notes=state.notes,
                                                  answer_words=answer_words(state.asked, state.notes, state.cues, self._answer_topic(state)),
                                                  user=state.user, asks=asks):
                state.reply.text += piece
                yield state.reply
        if state.generation.not_told_probability is not None:
            state.reply.memory["not_told"] = {"probability": round(state.generation.not_told_probability, 4),
                                              "replied": state.generation.not_told}
        # everything the user said is read only for a reply that states a value
        if self.cfg.generation.ground_values and asks and claimed_values(state.reply.text) \
                and about_the_user(state.text, state.reply.text, self.memories.names(state.user) & set(state.cues)):
            made_up = ungrounded(state.reply.text, [*self.store.said(state.user), state.text])
            if made_up:
                state.reply.memory["made_up"] = {"values": made_up, "reply": state.reply.text}
                state.reply.text = NOT_TOLD_REPLIES[0]
                yield state.reply
        if self.cfg.generation.answer_kinds and asks and state.reply.text.strip() not in NOT_TOLD_REPLIES \
                and wrong_kind(state.text, state.reply.text):
            state.reply.memory["wrong_kind"] = {"reply": state.reply.text}
            state.reply.text = NOT_TOLD_REPLIES[0]
            yield state.reply
        state.seconds["generate"] -= state.generation.attention_seconds
        state.seconds["attention"] = state.generation.attention_seconds

    def _answer_topic(self, state: TurnState) -> tuple[str, ...]:
        """The content words by which a question naming no one picks the notes whose rare words are nudged."""
        if state.topic or not self.cfg.chat.topic_answer_words:
            return state.topic
        return tuple(topic_words(state.asked, state.cues))

    def prompt_ids(self, conversation_id: int, text: str, notes: list[str] = ()) -> tuple[torch.LongTensor, list[tuple[int, int]]]:
        """Prompt ids with the recent turns that fit the token budget and the notes, and
        each note's token span. Returns [1, T] and one (start, end) per note.

        Once the conversation is longer than `history_turns`, its oldest shown turns leave
        `history_drop` at a time, so the prompt's start stays the same for the turns in
        between and the user's cached keys and values of it are reused.
        """
        chat = self.cfg.chat
        total = self.store.turn_count(conversation_id)
        shown = total
        if total > chat.history_turns:
            dropped = -(-(total - chat.history_turns) // chat.history_drop) * chat.history_drop
            shown = max(total - dropped, 0)
        history = self.store.turns(conversation_id, limit=shown) if shown else []
        budget = min(chat.max_prompt_tokens, self.controller.max_positions) - self.cfg.generation.max_new_tokens
        while True:
            pairs = [(t.user_text, t.reply) for t in history]
            messages = chat_messages(chat.system_prompt, list(notes), pairs, text)
            ids, spans = self.controller.prompt_ids(messages, notes, spans_after=NOTES_HEADER)
            if ids.shape[1] <= budget or not history:
                return ids, spans
            history = history[1:]

    def adjust(self, state: TurnState) -> None:
        """Reminded engrams earn lifespan by the reply's attention to their notes; all age a turn."""
        memoria = self.memories.memoria
        if memoria is None:
            return
        with state.stage("adjust"):
            attention = dict(zip(state.note_engrams, state.generation.span_attention or [0.0] * len(state.note_engrams)))
            shown = set(state.note_engrams)
            if self.cfg.memoria.reward == "uniform":
                mass = [1.0 if e.id in shown else 0.0 for e in state.reminded]
            else:
                mass = [attention.get(e.id, 0.0) for e in state.reminded]
            ids = torch.tensor([[e.id for e in state.reminded]], dtype=torch.long)
            deltas = lifespan_delta(torch.tensor([mass]), self.cfg.memoria.lifespan_scale) if state.reminded else torch.zeros(1, 0)
            memoria.adjust_lifespan_and_memories(ids, deltas, user=state.user)
            for entry, delta in zip(state.reply.memory.get("reminded", []), deltas[0].tolist()):
                entry["attention"] = round(attention.get(entry["id"], 0.0), 4)
                entry["lifespan_gain"] = round(delta, 3)

    def consolidate(self, state: TurnState) -> None:
        """Corrections take the engrams of what they overwrote with them; every
        `replay_every` turns the most fired long-term engrams are written again."""
        with state.stage("consolidate"):
            neural, memoria, user = self.memories.neural, self.memories.memoria, state.user
            superseded = [w for s in state.steps for w in s.superseded]
            if memoria is not None and superseded:
                memoria.forget([w.engram for w in superseded if w.engram is not None], user=user)
            replayed = 0
            every = self.cfg.consolidation.replay_every
            if neural is not None and memoria is not None and every and memoria.adjust_count(user) % every == 0:
                ltms = [e for e in memoria.engrams(user) if e.type == EngramType.LONGTERM and e.text and not is_question(e.text)]
                ltms.sort(key=lambda e: (-e.fire_count, e.id))
                wanted = {e.id for e in ltms[: self.cfg.consolidation.replay_count]}
                replayed = neural.replay(user, [w.id for w in neural.writes(user) if w.engram in wanted])
            state.reply.memory["superseded"] = [{"id": w.id, "text": w.text, "by": w.superseded_by} for w in superseded]
            state.reply.memory["replayed"] = replayed

    def save(self, state: TurnState) -> None:
        """Everything the turn changed, in one transaction. If it fails, the user's memories
        are reloaded from the store next turn, so memory and database never disagree."""
        reply, m = state.reply, self.memories
        meta = {
            "notes": reply.notes,
            "prompt_tokens": state.generation.prompt_tokens,
            "reused_tokens": state.generation.reused_tokens,  # of those, held from the user's last turn
            "new_tokens": state.generation.new_tokens,
            "seconds": {k: round(v, 4) for k, v in state.seconds.items()},
            "vocab": [[e.kind, e.text] for e in state.vocab_events],
            "memory": reply.memory,
        }
        try:
            with self.store.transaction() as db:
                turn_id = self.store.add_turn(db, state.conversation_id, state.text, reply.text, json.dumps(meta))
                if m.vocab is not None:
                    with self.controller.lock:  # another user's turn may be growing a token: its row comes after its id
                        save_vocab(db, m.vocab, turn_id=turn_id, user=state.user)
                if m.memoria is not None:
                    live = [i for i in state.engram_ids if m.memoria.is_live(i, user=state.user)]
                    m.memoria.set_turn(live, turn_id, user=state.user)
                for step in state.steps:
                    if step.write is not None:
                        step.write.turn = turn_id
                m.save(db, state.user, state.uid)
        except BaseException:
            m.unload(state.user)
            raise

    # ---- what memory did ---------------------------------------------------------------------

    @staticmethod
    def _read_use(step: SentenceStep, state: TurnState, soft_prefix: bool) -> str:
        """What a question's neural read did in this turn, in words for the Chat tab."""
        uses = []
        source = step.recall.source
        if step.recall.word is None:
            uses.append("nothing recalled: no word was sure enough")
        elif source is not None and source.text in state.notes:
            uses.append("its sentence is a note in the prompt")
        elif source is not None:
            uses.append("its sentence was a candidate note, not chosen")
        if soft_prefix:
            uses.append("the read vector was prepended to the prompt")
        return "; ".join(uses) or "not used"

    def _contribution(self, state: TurnState) -> dict:
        """What memory did this turn, for the Chat tab and the turn's stored meta."""
        soft_prefix = self.cfg.chat.soft_prefix
        return {
            "notes": state.notes,
            # note -> the messages that restated it
            "corrected": {n: [text for _, text in c] for n, c in zip(state.notes, state.note_corrections) if c},
            "reminded": [
                {"id": e.id, "type": e.type.name.lower(), "text": e.text, "lifespan": round(e.lifespan, 2)} for e in state.reminded
            ],
            "recall": [
                {"question": s.text, "word": s.recall.word, "confidence": round(s.recall.confidence, 4),
                 "source": s.recall.source.text if s.recall.source else None, "used": self._read_use(s, state, soft_prefix)}
                for s in state.steps if s.recall is not None
            ],
            "writes": [
                {"id": s.write.id, "text": s.text, "value": s.write.value, "beta": round(float(s.write.beta.mean()), 4)}
                for s in state.steps if s.write is not None
            ],
        }
