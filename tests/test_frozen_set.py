"""The hand-written conversation sets: the frozen evaluation set (bench/data/frozen/), its format
and the totals issue 18 demands, and the validation set (bench/data/handval/) in the same format.

Plain data checks, no model. The frozen set is for reporting only; these tests only guard that the
sets stay well-formed and big enough, never what a model scores on them.
"""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import pytest

FROZEN = Path(__file__).resolve().parent.parent / "bench" / "data" / "frozen"
FILES = sorted(FROZEN.glob("*.json"))
SHORT = [p for p in FILES if p.name.startswith("short_")]
LONG = [p for p in FILES if p.name.startswith("long_")]
HANDVAL = Path(__file__).resolve().parent.parent / "bench" / "data" / "handval"
HANDVAL_FILES = sorted(HANDVAL.glob("*.json"))
KINDS = {"recall", "latest", "not_told"}
MIN_GAP = 3  # user messages between the teaching message and the question about it


def load(path: Path) -> dict:
    return json.loads(path.read_text(encoding="utf-8"))


def turns(conv: dict) -> list[dict]:
    return [t for s in conv["sessions"] for t in s["turns"]]


def messages(conv: dict) -> list[dict]:
    """The user messages (say and ask) in order; restarts are not messages."""
    return [t for t in turns(conv) if "say" in t or "ask" in t]


def asks(paths: list[Path]) -> list[dict]:
    return [t for p in paths for t in turns(load(p)) if "ask" in t]


def test_files_present():
    assert len(SHORT) >= 6, SHORT
    assert len(LONG) >= 2, LONG
    assert set(FILES) == set(SHORT) | set(LONG), "every file is short_*.json or long_*.json"
    assert (FROZEN / "README.md").is_file()
    assert "REPORTING ONLY" in (FROZEN / "README.md").read_text(encoding="utf-8")


def test_the_validation_set_is_apart_from_the_frozen_one():
    assert len(HANDVAL_FILES) >= 6 and "VALIDATION" in (HANDVAL / "README.md").read_text(encoding="utf-8")
    assert all(p.name.startswith(("short_", "long_")) for p in HANDVAL_FILES)
    frozen_says = {t["say"] for p in FILES for t in turns(load(p)) if "say" in t}
    assert not frozen_says & {t["say"] for p in HANDVAL_FILES for t in turns(load(p)) if "say" in t}


@pytest.mark.parametrize("path", FILES + HANDVAL_FILES, ids=lambda p: f"{p.parent.name}/{p.stem}")
def test_format(path: Path):
    conv = load(path)
    assert set(conv) == {"name", "style", "sessions"}
    assert conv["name"] == path.stem
    assert isinstance(conv["style"], str) and conv["style"].strip()
    assert isinstance(conv["sessions"], list) and conv["sessions"]

    dates = []
    for session in conv["sessions"]:
        assert set(session) == {"date", "turns"}
        dates.append(dt.date.fromisoformat(session["date"]))
        assert isinstance(session["turns"], list) and session["turns"]
    assert dates == sorted(dates) and len(set(dates)) == len(dates), f"dates not ascending: {dates}"

    said: list[str] = []  # say texts so far, in order
    position: dict[str, int] = {}  # say text -> its index among the user messages
    n_msg = 0
    restarted = asked_after_restart = False
    for turn in turns(conv):
        if "restart" in turn:
            assert turn == {"restart": True}
            restarted = True
            continue
        if "say" in turn:
            assert set(turn) == {"say"}
            text = turn["say"]
            assert isinstance(text, str) and text.strip() and text == text.strip()
            assert text not in position, f"duplicate say (sources must be unambiguous): {text!r}"
            said.append(text)
            position[text] = n_msg
            n_msg += 1
            continue

        assert "ask" in turn, f"unknown turn {turn}"
        question, kind = turn["ask"], turn.get("kind")
        assert isinstance(question, str) and question.strip()
        assert kind in KINDS, turn
        asked_after_restart |= restarted
        stale = turn.get("stale")
        if stale is not None:
            assert isinstance(stale, list) and all(isinstance(s, str) and s.strip() for s in stale), turn

        if kind == "not_told":
            assert set(turn) == {"ask", "kind", "stale"}, turn
            assert stale, f"not_told lists the values taught about its subject: {turn}"
            # the validation set also lists other spellings of a said value ("4471" for "four four seven one")
            for s in stale[:1] if path.parent == HANDVAL else stale:
                assert any(s.lower() in t.lower() for t in said), f"stale {s!r} was never said: {turn}"
        else:
            want = {"ask", "kind", "expect", "source"} | ({"stale"} if kind == "latest" else set())
            assert set(turn) == want, turn
            expect, source = turn["expect"], turn["source"]
            assert isinstance(expect, list) and expect, turn
            assert all(isinstance(e, str) and e.strip() for e in expect), turn
            assert source in position, f"source is not the exact text of an earlier say: {turn}"
            # The first spelling is the one the source message uses; the rest are accepted variants.
            assert expect[0].lower() in source.lower(), f"{expect[0]!r} not in its source: {turn}"
            assert n_msg - position[source] >= MIN_GAP, f"asked too soon after teaching: {turn}"
            if kind == "latest":
                assert stale, turn
                before = said[: said.index(source)]
                for k, s in enumerate(stale):
                    assert (k and path.parent == HANDVAL) or any(s.lower() in t.lower() for t in before), (
                        f"stale {s!r} not in a say before the correction: {turn}")
                    for e in expect:  # a right answer must never look stale, nor a stale one right
                        assert s.lower() not in e.lower() and e.lower() not in s.lower(), (s, e)
        n_msg += 1

    assert restarted, "every conversation restarts at least once"
    assert asked_after_restart, "some questions come after a restart"


def test_short_totals():
    scored = asks(SHORT)
    facts = [t for t in scored if t["kind"] in ("recall", "latest")]
    latest = [t for t in scored if t["kind"] == "latest"]
    not_told = [t for t in scored if t["kind"] == "not_told"]
    assert len(facts) >= 60, len(facts)
    assert len(latest) >= 15, len(latest)
    assert len(not_told) >= 15, len(not_told)
    for path in SHORT:
        n = len(messages(load(path)))
        assert 20 <= n <= 40, (path.name, n)


@pytest.mark.parametrize("path", LONG, ids=lambda p: p.stem)
def test_long_totals(path: Path):
    conv = load(path)
    assert len(conv["sessions"]) >= 5
    assert len(messages(conv)) >= 150
    scored = [t for t in turns(conv) if "ask" in t]
    assert len(scored) >= 25
    assert {t["kind"] for t in scored} == KINDS, "long ones have recall, corrected plans and never-told"


def test_the_loader_keeps_every_turn_and_marks_questions_after_a_restart():
    from training.frozen import load_frozen, score

    conversations = load_frozen()
    assert len(conversations) == len(list(FROZEN.glob("*.json"))) and not conversations[0].long and conversations[-1].long
    for c in conversations:
        first = next(i for i, t in enumerate(c.turns) if t.restart)
        assert all(t.after_restart for t in c.turns[first:] if t.kind) and not any(t.after_restart for t in c.turns[:first])
    asked = next(t for c in conversations for t in c.turns if t.kind == "latest")
    assert score(asked, f"It is {asked.expect[0].upper()} now.", [asked.source]) | {"after_restart": None} == {
        "kind": "latest", "right": True, "claims": False, "after_restart": None, "hit": True, "repeats": False}
    # memory keeps a message's sentences apart: its sentence holding the answer is the source too, another is not
    from training.frozen import Turn

    told = Turn("What is the gate code?", "recall", ("4417",), source="Hi there. The gate code is 4417.")
    assert score(told, "", ["The gate code is 4417."])["hit"] and not score(told, "", ["Hi there."])["hit"]
    # a note showing several sentences of messages, one of them the answering one
    assert score(told, "", ["I moved. The gate code is 4417."])["hit"] and not score(told, "", ["I moved. The gate code changed."])["hit"]
    untold = next(t for c in conversations for t in c.turns if t.kind == "not_told")
    assert score(untold, "You haven't told me that yet.", [])["right"]
    assert not score(untold, f"I don't know, maybe {untold.stale[0]}?", [])["right"]
    assert score(untold, "1515151515151515", [])["repeats"]
