"""What the Vocabulary tab shows: a user's grown tokens, their events, and the size over turns.

Tokens and events are per user (the words of one user's messages are not shown to
another); the size plot counts every user's tokens and names none.
"""

from __future__ import annotations

import time
from typing import Any

from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from .elastic import ElasticVocab
from .persist import read_events, size_history

TOKEN_COLUMNS = ["token", "id", "level", "strength", "uses", "grown at turn", "built from"]
EVENT_COLUMNS = ["time", "turn", "event", "token", "level", "strength", "built from"]


def user_tokens(vocab: ElasticVocab, db: Any, user: str) -> list[list[Any]]:
    """Rows (TOKEN_COLUMNS) of the live added tokens that `user`'s messages grew, strongest first."""
    mine = {e["text"] for e in read_events(db, user=user) if e["kind"] == "grow"}
    tokens = [t for t in list(vocab.tokens) if t.text in mine]
    tokens.sort(key=lambda t: -vocab.strength(t))
    return [
        [repr(t.text), t.id, t.level, round(vocab.strength(t), 3), t.uses, t.born, " + ".join(repr(vocab.token_text(p)) for p in t.pieces)]
        for t in tokens
    ]


def user_events(db: Any, user: str, *, limit: int = 200) -> list[list[Any]]:
    """Rows (EVENT_COLUMNS) of `user`'s newest grow and prune events."""
    return [
        [
            time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(e["time"])),
            e["step"],
            e["kind"],
            repr(e["text"]),
            e["level"],
            round(e["strength"], 3),
            " + ".join(repr(p) for p in e["pieces"]),
        ]
        for e in read_events(db, user=user, limit=limit)
    ]


def size_figure(vocab: ElasticVocab, db: Any) -> Figure:
    """Added tokens (all users) after every turn, as a step plot up to the current turn."""
    points = [(0, vocab.base_size)] + size_history(db, vocab.base_size)
    steps = [s for s, _ in points] + [max(vocab.step, points[-1][0])]
    added = [n - vocab.base_size for _, n in points] + [points[-1][1] - vocab.base_size]
    fig = Figure(figsize=(7, 3))  # not pyplot: no global figure state, no display backend
    ax = fig.subplots()
    ax.step(steps, added, where="post")
    ax.set_xlabel("turn (messages observed)")
    ax.set_ylabel(f"added tokens\n(base {vocab.base_size:,})")
    ax.set_ylim(bottom=0)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.yaxis.set_major_locator(MaxNLocator(integer=True))
    ax.grid(alpha=0.3)
    fig.tight_layout()
    return fig
