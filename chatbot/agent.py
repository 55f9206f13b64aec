"""The agent: the chatbot's public face. It checks input, runs one turn of a user at a
time (chatbot/turn.py), and gives the Memory tab's operations over a user's memories.

Users are isolated: every memory operation names the speaking user, and notes only
ever come from that user's engrams and writes. Turns of one user run one at a time.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from memory.engram_state import Engram, EngramType
from storage import Store, Turn as StoredTurn

from .config import Config, load_config
from .controller import Controller
from .loading import LoadReport
from .memories import Memories
from .memory_file import EngramEntry, MemoryFile, WriteEntry
from .turn import Reply, Turn, TurnState
from .views import MemoryView, VocabularyView, vocabulary_view

log = logging.getLogger(__name__)

MAX_USER_NAME = 64


class MessageError(ValueError):
    """A message or user name that cannot be answered; the text says why."""


def _check_text(text: str, what: str) -> None:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:  # e.g. a command-line argument of bytes that are not UTF-8
        raise MessageError(f"the {what} is not valid UTF-8 text") from None


def check_user(user: str) -> str:
    """The user name, stripped; raises MessageError if there is none, it is too long or not text."""
    user = (user or "").strip()
    _check_text(user, "user name")
    if not user:
        raise MessageError("a user name is required")
    if len(user) > MAX_USER_NAME:
        raise MessageError(f"user names are at most {MAX_USER_NAME} characters")
    return user


class Agent:
    """The chatbot: a controller, every user's memories, a configuration and a store.

    Args:
        cfg: the configuration.
        controller: the loaded language model.
        store: the SQLite store.
    """

    def __init__(self, cfg: Config, controller: Controller, store: Store, *, memories: Memories | None = None) -> None:
        self.cfg = cfg
        self.controller = controller
        self.store = store
        self.memories = memories or Memories(cfg, controller)
        self.memories.open(store)
        self.turn = Turn(cfg, controller, self.memories)
        self._user_locks: dict[str, threading.Lock] = {}
        self._locks_lock = threading.Lock()

    @classmethod
    def from_config(cls, path: str | Path, *, db: str | Path | None = None) -> "Agent":
        """Load the config at `path`, its model and memories, and last the database (`db`
        overrides store.path), so a start that fails on anything else never creates or changes it."""
        cfg = load_config(path)
        if db is not None:
            cfg.store.path = str(db)
        controller = Controller.from_config(cfg.model)
        memories = Memories(cfg, controller)
        store = Store(cfg.store.path, busy_timeout_s=cfg.store.busy_timeout_s)
        try:
            return cls(cfg, controller, store, memories=memories)
        except BaseException:
            store.close()
            raise

    def check_message(self, user: str, text: str) -> tuple[str, str, list[str]]:
        """Validate a user name and message; returns them cleaned, with notes for the user."""
        user = check_user(user)
        if not text or not text.strip():
            raise MessageError("the message is empty; type something to send")
        _check_text(text, "message")
        notes = []
        limit = self.cfg.chat.max_message_chars
        if len(text) > limit:
            notes.append(f"Your message had {len(text):,} characters; only the first {limit:,} were read.")
            text = text[:limit]
        # Half the prompt's budget at most, so the system prompt, notes and reply still fit (emoji take 3 tokens each).
        budget = (min(self.cfg.chat.max_prompt_tokens, self.controller.max_positions) - self.cfg.generation.max_new_tokens) // 2
        encoded = self.controller.tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
        if len(encoded["input_ids"]) > budget:
            end = encoded["offset_mapping"][budget - 1][1]
            while len(self.controller.tokenizer(text[:end], add_special_tokens=False)["input_ids"]) > budget:
                end -= 1  # the budget's last token was part of a character that takes several
            notes.append(f"Your message had {len(encoded['input_ids']):,} tokens; only the first {budget:,} "
                         f"({end:,} characters) were read.")
            text = text[:end]
        return user, text, notes

    @contextmanager
    def _session(self, user: str) -> Iterator[int]:
        """One turn or memory operation of `user` at a time (different users proceed side by
        side), with the user's memories loaded; yields the user's row id."""
        with self._locks_lock:
            lock = self._user_locks.setdefault(user, threading.Lock())
        with lock, self.store.user_lock(user):
            yield self.memories.load(user)

    # ---- chat ------------------------------------------------------------------------------

    def chat_stream(self, user: str, text: str) -> Iterator[Reply]:
        """Answer `text` from `user`, yielding the reply as it grows; stores the turn at the end."""
        user, text, notes = self.check_message(user, text)
        with self._session(user) as uid:
            conversation_id = self.store.current_conversation(user)
            yield from self.turn.run(TurnState(user, uid, conversation_id, text, Reply(notes=notes)))

    def chat(self, user: str, text: str) -> str:
        """Answer `text` from `user` and return the whole reply."""
        reply = Reply()
        for reply in self.chat_stream(user, text):
            pass
        for note in reply.notes:
            log.warning("%s", note)
        return reply.text

    def history(self, user: str) -> list[StoredTurn]:
        """The user's current conversation, oldest turn first."""
        return self.store.turns(self.store.current_conversation(check_user(user)))

    def new_conversation(self, user: str) -> None:
        """Start a fresh conversation for `user`; earlier ones (and all memories) stay."""
        self.store.new_conversation(check_user(user))

    # ---- the Memory tab ----------------------------------------------------------------------

    def memory_view(self, user: str) -> MemoryView:
        """What the user's memories hold now, for the Memory tab."""
        user = check_user(user)
        neural, memoria = self.memories.neural, self.memories.memoria
        with self._session(user):
            writes = neural.writes(user) if neural is not None and self.cfg.neural_memory.enabled else []
            reads = [r for meta in self.store.recent_meta(user, 20) for r in meta.get("memory", {}).get("recall", [])]
            return MemoryView(
                engrams=memoria.engrams(user) if memoria is not None else [],
                writes=writes,
                stats=neural.stats(user) if writes else {},
                reads=reads[:10],
                engram_store=memoria is not None,
                corrected=self.turn.corrections(user),
            )

    def vocabulary_view(self, user: str) -> VocabularyView | None:
        """The vocabulary as the Vocabulary tab shows it to `user` ("" = no one's words); None when it is off."""
        vocab = self.memories.vocab
        if vocab is None:
            return None
        with self.controller.lock:  # a turn may be growing it
            return vocabulary_view(vocab, self.store.db, user.strip())

    def forget_engram(self, user: str, engram_id: int) -> list[str]:
        """Forget one engram and the neural-memory write of the same sentence; returns the texts forgotten."""
        user = check_user(user)
        with self._session(user) as uid:
            texts = self.memories.forget_engram(user, engram_id)
            self.memories.unlearn_words(user, texts)
            self.memories.save_now(user, uid)
            return texts

    def clear_memory(self, user: str) -> int:
        """Forget all of the user's engrams and writes; returns how many sentences were forgotten."""
        user = check_user(user)
        with self._session(user) as uid:
            count = self.memories.clear(user)
            self.memories.save_now(user, uid)
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
        user = check_user(user)
        neural, memoria = self.memories.neural, self.memories.memoria
        with self._session(user) as uid:
            try:
                engrams = [
                    Engram(e.id, EngramType[e.type.upper()], e.text, e.turn, e.lifespan, e.age, e.fire_count, e.links)
                    for e in file.engrams
                ]
                if memoria is not None:
                    memoria.restore(engrams, self.memories.engram_vectors([e.text for e in engrams]), user=user)
                written = []
                if neural is not None and self.cfg.neural_memory.enabled:
                    engram_of = {e.text: e.id for e in engrams}
                    written = neural.learn(user, [(w.text, w.turn, engram_of.get(w.text)) for w in file.writes if w.live])
                self.memories.save_now(user, uid)
            except BaseException:
                self.memories.unload(user)  # back to what the store holds
                raise
            return (len(engrams) if memoria is not None else 0), len(written)

    @property
    def load_report(self) -> LoadReport:
        """How the model was loaded, and how long it took."""
        return self.controller.load_report

    @property
    def db_path(self) -> Path:
        return self.store.path

    def close(self) -> None:
        """Close the database and give the controller back its base vocabulary."""
        self.memories.close()
        self.store.close()
