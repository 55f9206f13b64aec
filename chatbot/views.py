"""What the Memory and Vocabulary tabs show of one user, gathered from the memories and the store."""

from __future__ import annotations

from dataclasses import dataclass, field

from memory.chat_memory import WriteRecord
from memory.engram_state import Engram
from storage import Database
from storage.vocab import read_events, size_history
from vocab import ElasticVocab


@dataclass
class MemoryView:
    """A user's memories as the Memory tab shows them."""

    engrams: list[Engram]
    writes: list[WriteRecord]
    stats: dict  # the neural memory's counts and mean write strength
    reads: list[dict]  # the newest reads: question, word, confidence, source
    engram_store: bool = True  # false when Memoria is off in the config


@dataclass
class VocabularyView:
    """The elastic vocabulary as the Vocabulary tab shows it to one user."""

    base_size: int
    step: int  # messages observed, all users
    added: int  # live added tokens, all users
    sizes: list[tuple[int, int]]  # (step, vocabulary size) after every step that grew or pruned, all users
    tokens: list[dict] = field(default_factory=list)  # the user's live grown tokens, strongest first
    events: list[dict] = field(default_factory=list)  # the user's newest grow and prune events


def vocabulary_view(vocab: ElasticVocab, db: Database, user: str, *, limit: int = 200) -> VocabularyView:
    """The vocabulary's size over time (no words), and `user`'s own tokens and events (none for user "")."""
    view = VocabularyView(vocab.base_size, vocab.step, len(vocab.tokens), size_history(db, vocab.base_size))
    if not user:
        return view
    mine = {e["text"] for e in read_events(db, user=user) if e["kind"] == "grow"}
    tokens = sorted((t for t in list(vocab.tokens) if t.text in mine), key=lambda t: -vocab.strength(t))
    view.tokens = [
        {"text": t.text, "id": t.id, "level": t.level, "strength": vocab.strength(t), "uses": t.uses, "born": t.born,
         "pieces": [vocab.token_text(p) for p in t.pieces]}
        for t in tokens
    ]
    view.events = read_events(db, user=user, limit=limit)
    return view
