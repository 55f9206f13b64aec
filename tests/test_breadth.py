"""training/breadth.py: broad generated conversations, their splits and their answer keys."""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from training.breadth import ATTRIBUTES, Breadth, breadth_conversations

NAMES = Path(__file__).resolve().parent.parent.parent / "shared" / "data" / "names" / "names.txt"
pytestmark = pytest.mark.skipif(not NAMES.exists(), reason="needs ../shared/data/names")


def test_splits_share_no_attribute_template_or_person():
    gens = {split: Breadth(split, NAMES) for split in ("train", "val", "test")}
    for a, b in [("train", "val"), ("train", "test"), ("val", "test")]:
        assert not {x[0] for x in gens[a].attributes} & {x[0] for x in gens[b].attributes}
        for part in ("teach", "compound", "several", "correct", "correct_unnamed", "ask"):
            assert not set(getattr(gens[a], part)) & set(getattr(gens[b], part)), part
        assert not set(gens[a].people) & set(gens[b].people)
    assert sum(len(g.attributes) for g in gens.values()) == len(ATTRIBUTES)
    assert min(len(g.attributes) for g in gens.values()) >= 15  # a conversation's facts and untold questions


def test_a_conversation_teaches_corrects_and_asks_with_sources_said_before():
    conv = Breadth("val", NAMES).conversation(random.Random(3), "c", facts=12, corrections=3, untold=3)
    said: list[str] = []
    kinds = {"recall": 0, "latest": 0, "not_told": 0}
    for turn in conv.turns:
        if turn.restart:
            continue
        if not turn.kind:
            said.append(turn.text)
            continue
        kinds[turn.kind] += 1
        if turn.kind == "not_told":
            assert not turn.expect and turn.stale  # every taught value would be a wrong claim
            continue
        assert turn.source in said  # the answering message came before the question, verbatim
        assert turn.expect[0] in turn.source  # the value as written there
        if turn.kind == "latest":
            assert turn.stale and turn.stale[0] not in turn.expect  # the old value is not an answer
            assert len(said) - 1 - said.index(turn.source) >= 3  # asked at least three messages later
    assert kinds == {"recall": 9, "latest": 3, "not_told": 3}
    assert sum(t.restart for t in conv.turns) == 1


def test_conversations_are_reproducible_from_the_seed():
    a = breadth_conversations("test", NAMES, 2, seed=5)
    b = breadth_conversations("test", NAMES, 2, seed=5)
    assert [t.text for c in a for t in c.turns] == [t.text for c in b for t in c.turns]
    assert [t.text for t in a[0].turns] != [t.text for t in a[1].turns]


def test_chatter_wraps_a_share_of_teaching_messages_and_keeps_their_values():
    plain = Breadth("train", NAMES).conversation(random.Random(5), "c")
    chatty = Breadth("train", NAMES, chatty=1.0).conversation(random.Random(5), "c")
    asked = [t for t in chatty.turns if t.kind in ("recall", "latest")]
    assert asked and all(any(v in t.source for v in t.expect) for t in asked)  # the answer is still in what was said
    taught = {t.source for t in asked}
    assert not taught & {t.source for t in plain.turns if t.kind in ("recall", "latest")}  # every one is wrapped
    assert all(t.source in [u.text for u in chatty.turns] for t in asked)
