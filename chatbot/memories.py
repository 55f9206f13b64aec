"""The learned parts a turn reads and writes, for every user: the elastic vocabulary, the
neural memory, the engram store and the retrieval baseline, each None when switched off;
how their vectors are made; and bringing a user's memories in from the store and back.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path

import torch

from memory.chat_memory import ChatMemory, SentenceStep
from memory.interface import MemoryModel, unit_keys
from memory.memoria import Memoria
from memory.retrieval import RetrievalIndex, SentenceEncoder
from storage import Database, Store
from storage.engrams import engrams_stale, load_engrams, save_engrams
from storage.neural import load_neural, neural_stale, save_neural
from storage.vocab import load_vocab, save_vocab
from text import is_question, split_sentences
from vocab import ElasticVocab, VocabEvent

from .config import Config
from .controller import Controller
from .forget import ForgetRequest, forget_request
from .loading import ModelLoadError, model_tag
from .notes import names_in

log = logging.getLogger(__name__)

Features = list[tuple[list[int], torch.Tensor, torch.Tensor]]  # per sentence: token ids, [T, H] hidden states, [T, H] embeddings


class Memories:
    """Every user's memories in this process.

    Built in two steps, so that a start that fails on a checkpoint never touches the
    database: the parts (checkpoints loaded), then `open(store)`.

    Args:
        cfg: the configuration; its switches decide which parts exist.
        controller: the language model (features, and the rows the vocabulary grows).
    """

    def __init__(self, cfg: Config, controller: Controller) -> None:
        m = cfg.memoria  # its choices (vector, reward, unit) are checked when the config is loaded
        self.cfg, self.controller = cfg, controller
        self.store: Store | None = None  # set by open()
        # The elastic vocabulary: one lexicon and one set of rows in the model it resizes, each user's tokens their own
        # (vocab/users.py); restored from the store by open().
        self.vocab = ElasticVocab(controller.tokenizer, cfg.vocab, controller.model) if cfg.vocab.enabled else None
        # The memory interface runs when the neural memory is on, or when it gives Memoria its keys.
        self.neural: ChatMemory | None = None
        if cfg.neural_memory.enabled or (m.enabled and m.vector == "key"):
            self.neural = self._chat_memory()
        # One sentence encoder for Memoria's "sentence" vectors and the retrieval baseline.
        wants_sentences = (m.enabled and m.vector == "sentence") or cfg.retrieval.enabled
        self.sentences = SentenceEncoder(run=controller.call) if wants_sentences else None
        self._vectors: Callable[[list[str]], torch.Tensor] = {
            "key": self._key_vectors, "sentence": self.sentences, "hidden": self._hidden_vectors,
        }[m.vector]
        self.memoria = (
            Memoria(m.num_reminded_stm, m.stm_capacity, m.ltm_search_depth, m.initial_lifespan, m.num_final_ltms,
                    max_links=m.max_links, vector_kind=self._vector_kind())
            if m.enabled
            else None
        )
        # The retrieval baseline (off in the product): an index of each user's statements.
        self.retrieval = RetrievalIndex(self.sentences) if cfg.retrieval.enabled else None
        self._loaded: set[str] = set()
        self._names: dict[str, set[str]] = {}  # user -> the words they used as names (`names`)

    def open(self, store: Store) -> None:
        """Read and write users' memories in `store`; the vocabulary is restored from it now."""
        self.store = store
        if self.vocab is not None:
            with self.controller.lock:
                load_vocab(store.db, self.vocab)
            self.controller.vocab = self.vocab

    def _chat_memory(self) -> ChatMemory:
        cfg = self.cfg
        path = cfg.neural_memory.checkpoint
        if path:
            if not Path(path).is_file():
                raise ModelLoadError(f"neural_memory.checkpoint {path} does not exist; train one with train_meta.py or set it to \"\"")
            try:
                return ChatMemory.from_checkpoint(path, self.controller, cfg=cfg.neural_memory, consolidation=cfg.consolidation)
            except Exception as exc:  # torch, pickle and shape errors alike: a damaged, foreign or wrong-width file
                raise ModelLoadError(f"neural_memory.checkpoint {path} cannot be used with this model ({exc}); "
                                     "retrain it with train_meta.py or set it to \"\"") from None
        # No checkpoint: an untrained memory of the configured shape, seeded so it is the same every start.
        with torch.random.fork_rng():
            torch.manual_seed(0)
            model = MemoryModel(cfg.neural_memory, cfg.interface, self.controller.hidden_size, self.controller.hidden_size)
        return ChatMemory(
            model, self.controller, feature_layer=cfg.interface.feature_layer, tag="untrained",
            cfg=cfg.neural_memory, consolidation=cfg.consolidation,
        )

    def _vector_kind(self) -> str:
        """Names what makes Memoria's vectors, so engrams saved another way are re-embedded."""
        vector, unit = self.cfg.memoria.vector, self.cfg.memoria.unit
        if vector == "key":
            return f"key:{self.neural.tag}:{unit}"
        if vector == "hidden":
            return f"hidden:{model_tag(self.cfg.model)}:layer{self.cfg.interface.feature_layer}:{unit}"
        return f"sentence:all-MiniLM-L6-v2:{unit}"

    # ---- vectors ------------------------------------------------------------------------

    def encode(self, sentences: list[str]) -> Features:
        """Each sentence's features at the interface's layer (computed on the model's thread)."""
        return self.controller.call(self._encode, sentences)

    def _encode(self, sentences: list[str]) -> Features:
        if self.neural is not None:
            return self.neural.featurize(sentences)
        from memory.features import hidden_states  # Memoria on hidden states alone

        hidden = hidden_states(self.controller, sentences, self.cfg.interface.feature_layer)
        return [([], h, torch.zeros(0)) for h in hidden]

    def _key_vectors(self, sentences: list[str]) -> torch.Tensor:
        return unit_keys(self.neural.keys(sentences, [is_question(t) for t in sentences]), self.neural.heads)

    def _hidden_vectors(self, sentences: list[str]) -> torch.Tensor:
        return torch.nn.functional.normalize(torch.stack([h.float().mean(0) for _, h, _ in self.encode(sentences)]), dim=-1)

    def sentence_vectors(self, sentences: list[str]) -> torch.Tensor:
        """[N, D] unit vectors of sentences by memoria.vector (no memory is read or written)."""
        return self._vectors(sentences)

    def engram_vectors(self, texts: list[str]) -> torch.Tensor:
        """[N, D] vectors of engram texts, made as a turn makes them (a message: its sentences' mean)."""
        if not texts:  # the vector width still matters: it is the user's engram width from now on
            return self.sentence_vectors(["."])[:0]
        parts = [split_sentences(t) or [t or "."] for t in texts]
        flat = self.sentence_vectors([s for p in parts for s in p])
        out, start = [], 0
        for p in parts:
            out.append(flat[start : start + len(p)].mean(0))
            start += len(p)
        return torch.stack(out)

    def step_vectors(self, steps: list[SentenceStep]) -> torch.Tensor:
        """[S, D] vectors of this turn's sentences, from the work their steps already did."""
        if self.cfg.memoria.vector == "key":
            return unit_keys(torch.stack([s.key for s in steps]), self.neural.heads)
        if self.cfg.memoria.vector == "sentence":
            return self.sentences([s.text for s in steps])
        # unit length, so Memoria's L2 ranking is the cosine ranking (raw norms vary with sentence length)
        return torch.nn.functional.normalize(torch.stack([s.hidden for s in steps]), dim=-1)

    # ---- a user's memories in and out of the store ----------------------------------------

    def load(self, user: str) -> int:
        """Bring the user's memories into this process (again, if another process saved
        them since); returns the user's row id."""
        uid = self.store.user_id(user)
        fresh = user in self._loaded
        if fresh and self.memoria is not None:
            fresh = not engrams_stale(self.store.db, self.memoria, user)
        if fresh and self.neural is not None:
            fresh = not neural_stale(self.store.db, self.neural, user, uid)
        if not fresh:
            self._names.pop(user, None)
            if self.memoria is not None:
                load_engrams(self.store.db, self.memoria, user)
                if self.memoria.vector_kind_of(user) != self.memoria.vector_kind:
                    self._reembed_engrams(user)
            if self.neural is not None:
                load_neural(self.store.db, self.neural, user, uid)
            if self.retrieval is not None:
                self.retrieval.replace(user, self._statements(user))
            self._loaded.add(user)
        return uid

    def unload(self, user: str) -> None:
        """Forget what this process holds of the user: a failed save makes the next use reload from the store."""
        self._loaded.discard(user)
        self._names.pop(user, None)

    # ---- names ------------------------------------------------------------------------------

    def names(self, user: str) -> set[str]:
        """The words the user has used as names in what memory holds of them, lowercased:
        asked about in lowercase ("where does oriel live?"), they still cue recall."""
        if user not in self._names:
            if self.memoria is not None:
                texts = [e.text or "" for e in self.memoria.engrams(user)]
            else:
                texts = [w.text for w in self.neural.writes(user) if not w.forgotten] if self.neural is not None else []
            self._names[user] = {n for t in texts for n in names_in(t, self.common_word)}
        return self._names[user]

    def learn_names(self, user: str, text: str) -> None:
        """Add the names `text` uses to the user's (after its turn's recall)."""
        self.names(user).update(names_in(text, self.common_word))

    def common_word(self, word: str) -> bool:
        """A word the base tokenizer holds whole (" correction"): English, not a name it must spell out."""
        return len(self.controller.tokenizer(" " + word, add_special_tokens=False)["input_ids"]) == 1

    def _reembed_engrams(self, user: str) -> None:
        """The user's engrams were saved with vectors made another way (another encoder,
        model or unit): make them again from their texts; the next save stores them."""
        engrams = self.memoria.engrams(user)
        log.info("re-embedding %d engrams of %s: saved as %s, now %s", len(engrams), user,
                 self.memoria.vector_kind_of(user), self.memoria.vector_kind)
        self.memoria.replace_vectors(user, self.engram_vectors([e.text or "" for e in engrams]))

    def _statements(self, user: str) -> list[str]:
        """Every statement the user made, oldest first (what the retrieval baseline indexes)."""
        return [s for text in self.store.said(user) if forget_request(text) is None for s in split_sentences(text) if not is_question(s)]

    def save(self, db: Database, user: str, uid: int) -> None:
        """Write the user's engrams and neural memory; call inside `Store.transaction()`."""
        if self.memoria is not None:
            save_engrams(db, self.memoria, user)
        if self.neural is not None:
            save_neural(db, self.neural, user, uid)

    def save_now(self, user: str, uid: int) -> None:
        """The user's memories in a transaction of their own (after a Memory-tab change)."""
        try:
            with self.store.transaction() as db:
                if self.vocab is not None:
                    with self.controller.lock:
                        save_vocab(db, self.vocab, user=user)
                self.save(db, user, uid)
        except BaseException:
            self.unload(user)
            raise

    # ---- forgetting ------------------------------------------------------------------------

    def forget(self, user: str, request: ForgetRequest) -> list[str]:
        """Forget the user's engrams, writes and indexed statements that match; returns their
        texts (for `unlearn_words`)."""
        texts: list[str] = []
        self._drop_derived(user)
        if self.memoria is not None:
            doomed = [e for e in self.memoria.engrams(user) if e.text and not is_question(e.text) and request.matches(e.text)]
            self.memoria.forget([e.id for e in doomed], user=user)
            texts += [e.text for e in doomed]
        if self.neural is not None:
            writes = [w for w in self.neural.writes(user) if not w.forgotten and request.matches(w.text)]
            texts += [w.text for w in self.neural.forget(user, [w.id for w in writes])]
        if self.retrieval is not None:
            doomed = {t for t in self.retrieval.texts(user) if request.matches(t)}
            self.retrieval.forget(user, doomed)
            texts += sorted(doomed)
        return list(dict.fromkeys(texts))

    def forget_engram(self, user: str, engram_id: int) -> list[str]:
        """Forget one engram and the neural-memory write of the same sentence; returns the texts
        forgotten (for `unlearn_words`)."""
        texts = []
        self._drop_derived(user)
        if self.memoria is not None:
            texts += [e.text for e in self.memoria.engrams(user) if e.id == engram_id]
            self.memoria.forget([engram_id], user=user)
        if self.neural is not None:
            texts += [w.text for w in self.neural.forget(user, [w.id for w in self.neural.writes(user) if w.engram == engram_id])]
        return list(dict.fromkeys(texts))

    def clear(self, user: str) -> int:
        """Forget all of the user's engrams and writes, and the words only they held
        (`unlearn_words`); returns how many sentences were forgotten."""
        count, texts = 0, []
        self._drop_derived(user)
        if self.memoria is not None:
            engrams = self.memoria.engrams(user)
            texts = [e.text or "" for e in engrams]
            count = len(self.memoria.forget([e.id for e in engrams], user=user))
        if self.neural is not None:
            texts += [w.text for w in self.neural.writes(user) if not w.forgotten]
            count += self.neural.clear(user)
        self.unlearn_words(user, texts)
        return count

    def unlearn_words(self, user: str, forgotten: list[str]) -> list[VocabEvent]:
        """Prune the user's grown tokens and growth counts of words that only `forgotten` held
        among what memory keeps of them; the events are saved with the turn (or `save_now`)."""
        if self.vocab is None or not forgotten:
            return []
        kept = [e.text or "" for e in self.memoria.engrams(user)] if self.memoria is not None else []
        if self.neural is not None:
            kept += [w.text for w in self.neural.writes(user) if not w.forgotten]
        if self.retrieval is not None:
            kept += list(self.retrieval.texts(user))
        with self.controller.lock:  # resizes the model's matrices: never mid-generation
            return self.vocab.forget_words(forgotten, kept=kept, user=user)

    def _drop_derived(self, user: str) -> None:
        """Before forgetting: drop what was made from the user's memories, the names they
        used and the keys and values kept of their last prompt (which may hold what goes)."""
        self.controller.forget_prompts(user)
        self._names.pop(user, None)

    def close(self) -> None:
        """Give the controller back its base vocabulary, so another Agent (a restart in
        the same process) can load the saved one over it."""
        self.controller.forget_prompts()
        if self.vocab is not None:
            with self.controller.lock:
                self.vocab.detach()
                if self.controller.vocab is self.vocab:
                    self.controller.vocab = None
