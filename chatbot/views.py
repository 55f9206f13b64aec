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
    # engram id -> (the later statement's engram that corrected it, the statement as corrected): what a note of it says
    corrected: dict[int, tuple[int, str]] = field(default_factory=dict)


@dataclass
class VocabularyView:
    """The elastic vocabulary as the Vocabulary tab shows it to one user: their own tokens only."""

    base_size: int
    step: int  # messages observed, all users
    added: int  # live added tokens, all users (rows; no words)
    # (the user's turn, tokens they held) after each of their turns that grew or pruned
    sizes: list[tuple[int, int]] = field(default_factory=list)
    user_step: int = 0  # the user's turns observed
    tokens: list[dict] = field(default_factory=list)  # the user's live grown tokens, strongest first
    events: list[dict] = field(default_factory=list)  # the user's newest grow and prune events


def vocabulary_view(vocab: ElasticVocab, db: Database, user: str, *, limit: int = 200) -> VocabularyView:
    """How many tokens all users have (no words), and `user`'s own tokens, events and their
    number over their turns (none for user "")."""
    view = VocabularyView(vocab.base_size, vocab.step, len(vocab.tokens))
    if not user:
        return view
    mine = vocab.user(user)
    view.user_step = mine.step
    view.sizes = size_history(db, user)
    tokens = sorted(vocab.tokens_of(user), key=lambda t: -vocab.strength(t, user))
    view.tokens = [
        {"text": t.text, "id": t.id, "level": t.level, "strength": vocab.strength(t, user), "uses": mine.held[t.id].uses,
         "born": mine.held[t.id].born, "pieces": [vocab.token_text(p) for p in t.pieces]}
        for t in tokens
    ]
    view.events = read_events(db, user=user, limit=limit)
    return view
