"""The hand-written conversation sets: loading one, and scoring a reply.

bench/data/frozen is for reporting only: nothing is ever chosen on it (its README.md).
bench/data/handval, in the same format, is the hand-written validation set settings are chosen on.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path

from text import split_sentences

FROZEN_DIR = Path(__file__).resolve().parent.parent / "bench" / "data" / "frozen"
# Written the same way, apart from the generator and the frozen set, to choose settings on.
HANDVAL_DIR = FROZEN_DIR.parent / "handval"
# How a reply says it was not told (the adapter's phrasings and the base model's "I don't know"s).
NOT_TOLD = re.compile(r"\b(?:don't|do not|haven't|have not|didn't|did not|not sure|no idea|can't recall|cannot recall)\b",
                      re.IGNORECASE)
# A fragment of 1-12 characters said four or more times in a row ("1515151515", "the the the the").
REPEATS = re.compile(r"(.{1,12}?)\1{3,}", re.DOTALL)


@dataclass(frozen=True)
class Turn:
    """One step of a frozen conversation: a message (scored when `kind` is set) or a restart."""

    text: str = ""
    kind: str = ""  # "" for a plain message; "recall", "latest" or "not_told" for a scored question
    expect: tuple[str, ...] = ()  # any of these in the reply makes it right
    stale: tuple[str, ...] = ()  # values a reply must not claim (old values; for not_told, what was taught)
    source: str = ""  # the message that holds the answer
    restart: bool = False
    after_restart: bool = False  # asked after the conversation's first restart
    about: str = ""  # generated conversations only: what is asked, as a reply names it ("Your gym locker number")


@dataclass
class Conversation:
    name: str
    long: bool  # one of the long, many-session conversations
    turns: list[Turn] = field(default_factory=list)


def load_frozen(directory: str | Path = FROZEN_DIR) -> list[Conversation]:
    """Every conversation of the set, short ones first, in file-name order."""
    out = []
    for path in sorted(Path(directory).glob("*.json"), key=lambda p: (p.name.startswith("long"), p.name)):
        data = json.loads(path.read_text(encoding="utf-8"))
        conversation, restarted = Conversation(data["name"], path.name.startswith("long")), False
        for session in data["sessions"]:
            for t in session["turns"]:
                if t.get("restart"):
                    restarted = True
                    conversation.turns.append(Turn(restart=True))
                elif "say" in t:
                    conversation.turns.append(Turn(t["say"]))
                else:
                    conversation.turns.append(Turn(t["ask"], t["kind"], tuple(t.get("expect", ())), tuple(t.get("stale", ())),
                                                   t.get("source", ""), after_restart=restarted))
        out.append(conversation)
    return out


def score(turn: Turn, reply: str, notes: list[str]) -> dict:
    """How a reply to a scored question did: right, claims a taught value, says not told, had its source as a note."""
    low = reply.lower()
    claims = any(v.lower() in low for v in turn.stale)
    if turn.kind == "not_told":
        right = not claims and bool(NOT_TOLD.search(reply))
    else:
        right = any(e.lower() in low for e in turn.expect)
    return {"kind": turn.kind, "right": right, "claims": claims, "after_restart": turn.after_restart,
            "hit": bool(turn.source) and any(_holds_answer(turn, n) for n in notes), "repeats": bool(REPEATS.search(reply))}


def _holds_answer(turn: Turn, note: str) -> bool:
    """A note is the answering message, or holds a sentence of it with an expected value
    (memory keeps a message's sentences apart; a note may show several of them)."""
    return note == turn.source or any(
        sentence in turn.source and any(e.lower() in sentence.lower() for e in turn.expect) for sentence in split_sentences(note))
