"""The adapter's training examples: bAbI questions answered from several notes on one person."""

from __future__ import annotations

import random

from chatbot.adapter import babi_examples
from chatbot.prompt import NOTES_HEADER

STORY = """1 Mary moved to the bathroom.
2 John went to the hallway.
3 Where is Mary? \tbathroom\t1
4 Mary journeyed to the garden.
5 Daniel went back to the office.
6 Mary travelled to the kitchen.
7 Where is Mary? \tkitchen\t6
8 Where is John? \thallway\t2
1 Sandra went to the office.
2 Where is Sandra? \toffice\t1
"""


def notes_of(example) -> list[str]:
    system = example.messages[0]["content"]
    return [line[2:] for line in system.split(NOTES_HEADER)[-1].splitlines() if line.startswith("- ")]


def test_babi_examples_answer_from_the_newest_note_on_the_person(tmp_path):
    path = tmp_path / "qa1.txt"
    path.write_text(STORY)
    examples = babi_examples(path, "You are a helpful assistant.", random.Random(0), 10)
    assert len(examples) == 4  # every question once, however many are asked for
    said = STORY.split("\n")
    for seed in range(20):  # any sampling of notes keeps the rules
        for e in babi_examples(path, "You are a helpful assistant.", random.Random(seed), 4):
            question = e.messages[-1]["content"]
            person = question.split()[-1].rstrip("?")
            notes = notes_of(e)
            about = [n for n in notes if n.startswith(person)]
            assert about and e.value in about[-1]  # the newest note on the person answers
            assert e.reply == f"{person} is in the {e.value}." and e.kind == "answer"
            assert len(about) <= 3 and len(notes) - len(about) <= 2
            order = [next(i for i, line in enumerate(said) if n in line) for n in notes]
            assert order == sorted(order)  # oldest first, as chat shows notes
            if e.value == "bathroom":  # the first question: nothing said after it is a note
                assert set(notes) <= {"Mary moved to the bathroom.", "John went to the hallway."}
            if person == "Sandra":  # nor anything from another story
                assert notes == ["Sandra went to the office."]
