"""The Vocabulary tab: a user's grown tokens and their events as table rows, the size over turns as a plot."""

from __future__ import annotations

import time
from typing import Any

from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from chatbot.views import VocabularyView

TOKEN_COLUMNS = ["token", "id", "level", "strength", "uses", "grown at turn", "built from"]
EVENT_COLUMNS = ["time", "turn", "event", "token", "level", "strength", "built from"]


def summary(view: VocabularyView, user: str) -> str:
    mine = f"You hold {len(view.tokens)} of them after {view.user_step} of your messages, {user}. " if user else ""
    return (
        f"{view.added} added tokens over {view.base_size:,} base tokens after {view.step} messages (all users). "
        f"{mine}Each user's tokens are their own: only your messages grow, strengthen and prune them, and only "
        f"replies to you use them. Below: the words your messages turned into tokens"
        + ("." if user else "; type your name in the Chat tab to see them.")
    )


def token_rows(view: VocabularyView) -> list[list[Any]]:
    """TOKEN_COLUMNS rows of the user's live added tokens, strongest first."""
    return [
        [repr(t["text"]), t["id"], t["level"], round(t["strength"], 3), t["uses"], t["born"], " + ".join(repr(p) for p in t["pieces"])]
        for t in view.tokens
    ]


def event_rows(view: VocabularyView) -> list[list[Any]]:
    """EVENT_COLUMNS rows of the user's newest grow and prune events."""
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
        for e in view.events
    ]


def size_figure(view: VocabularyView) -> Figure:
    """The user's added tokens after every turn of theirs, as a step plot up to their current turn."""
    points = [(0, 0)] + view.sizes
    steps = [s for s, _ in points] + [max(view.user_step, points[-1][0])]
    added = [n for _, n in points] + [points[-1][1]]
    fig = Figure(figsize=(7, 3))  # not pyplot: no global figure state, no display backend
    ax = fig.subplots()
    ax.step(steps, added, where="post")
    ax.set_xlabel("turn (your messages)")
    ax.set_ylabel(f"your added tokens\n(base {view.base_size:,})")
    ax.set_ylim(bottom=0)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.yaxis.set_major_locator(MaxNLocator(integer=True))
    ax.grid(alpha=0.3)
    fig.tight_layout()
    return fig
