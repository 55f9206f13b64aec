"""The agent: runs one chat turn for one user and persists it.

A turn: check the message -> build the prompt (system prompt, the user's recent
turns, the new message) in the model's chat template -> stream the reply ->
write the turn in one SQLite transaction. Users are isolated by name: a prompt
is only ever built from the speaking user's own conversation.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from memory.store import Store, Turn
from vocab import ElasticVocab

from .config import Config, load_config
from .controller import Controller

log = logging.getLogger(__name__)

MAX_USER_NAME = 64


class MessageError(ValueError):
    """A message or user name that cannot be answered; the text says why."""


@dataclass
class Reply:
    """A reply as it streams: the text so far and notes to show beside it."""

    text: str = ""
    notes: list[str] = field(default_factory=list)  # e.g. "your message was truncated"
    done: bool = False  # true on the last snapshot, once the turn is stored


class Agent:
    """The chatbot: a controller, a configuration and a store.

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

    @classmethod
    def from_config(cls, path: str | Path, *, db: str | Path | None = None) -> "Agent":
        """Load the config at `path`, its model, and the database (`db` overrides store.path)."""
        cfg = load_config(path)
        if db is not None:
            cfg.store.path = str(db)
        store = Store(cfg.store.path, busy_timeout_s=cfg.store.busy_timeout_s)
        try:
            controller = Controller.from_config(cfg.model)
        except BaseException:
            store.close()
            raise
        return cls(cfg, controller, store)

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

    def prompt_messages(self, history: list[Turn], text: str) -> list[dict[str, str]]:
        """Chat messages for the prompt: system, the given earlier turns, the new message."""
        messages = [{"role": "system", "content": self.cfg.chat.system_prompt}]
        for turn in history:
            messages.append({"role": "user", "content": turn.user_text})
            messages.append({"role": "assistant", "content": turn.reply})
        messages.append({"role": "user", "content": text})
        return messages

    def _prompt_ids(self, conversation_id: int, text: str):
        """Prompt ids with as many recent turns as fit the token budget. Returns [1, T]."""
        history = self.store.turns(conversation_id, limit=self.cfg.chat.history_turns)
        budget = min(self.cfg.chat.max_prompt_tokens, self.controller.max_positions) - self.cfg.generation.max_new_tokens
        while True:
            ids = self.controller.chat_ids(self.prompt_messages(history, text))
            if ids.shape[1] <= budget or not history:
                return ids
            history = history[1:]

    def chat_stream(self, user: str, text: str) -> Iterator[Reply]:
        """Answer `text` from `user`, yielding the reply as it grows; stores the turn at the end."""
        user, text, notes = self.check_message(user, text)
        conversation_id = self.store.current_conversation(user)
        started = time.perf_counter()
        vocab_events = []
        if self.vocab is not None:
            with self.controller.lock:  # resizes the model's matrices: never during a generation
                vocab_events = self.vocab.observe(text, user=user)
        ids = self._prompt_ids(conversation_id, text)
        reply = Reply(notes=notes)
        for piece in self.controller.generate(ids, gen=self.cfg.generation):
            reply.text += piece
            yield reply
        reply.text = reply.text.strip()
        meta = {
            "notes": notes,
            "prompt_tokens": ids.shape[1],
            "seconds": round(time.perf_counter() - started, 3),
            "vocab": [[e.kind, e.text] for e in vocab_events],
        }
        with self.store.transaction() as db:
            turn_id = self.store.add_turn(db, conversation_id, text, reply.text, json.dumps(meta))
            if self.vocab is not None:
                self.vocab.save(db, turn_id=turn_id)
        reply.done = True
        yield reply

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
        """Start a fresh conversation for `user`; earlier ones stay in the database."""
        user, _, _ = self.check_message(user, "-")
        self.store.new_conversation(user)

    def close(self) -> None:
        self.store.close()
