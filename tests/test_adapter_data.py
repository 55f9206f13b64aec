"""The adapter's training examples: bAbI questions answered from several notes on one person."""

from __future__ import annotations

import math
import random
import re

import pytest

from chatbot.prompt import NOTES_HEADER
from training.adapter_data import EXTRA_ASK, babi_examples, training_dialogue, training_examples
from training.episodes import ASK, TeachRecall, _cut

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
    block = next((m["content"] for m in example.messages if m["content"].startswith(NOTES_HEADER)), "")
    return [line[2:] for line in block.splitlines() if line.startswith("- ")]


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


def word_edits(a: str, b: str) -> int:
    """Word-level edit distance between two templates, case and end punctuation aside."""
    x, y = (t.lower().rstrip("?.").split() for t in (a, b))
    row = list(range(len(y) + 1))
    for i, u in enumerate(x, 1):
        prev, row[0] = row[:], i
        for j, v in enumerate(y, 1):
            row[j] = min(prev[j] + 1, row[j - 1] + 1, prev[j - 1] + (u != v))
    return row[-1]


def test_training_only_phrasings_stay_away_from_validation_and_test_templates():
    for relation, forms in EXTRA_ASK.items():
        assert len(forms) == len(set(forms)) >= 8 and all("{s}" in f for f in forms)
        held_out = _cut(ASK[relation], "val") + _cut(ASK[relation], "test")
        for form in forms:
            assert min(word_edits(form, t) for t in held_out) >= 3, form


@pytest.fixture
def names_file(tmp_path):
    path = tmp_path / "names.txt"
    path.write_text("\n".join(f"{a}{b}" for a in ("Al", "Bor", "Cel", "Dun", "Ev", "Fal") for b in ("ma", "rin", "tos", "wen", "dra")))
    return path


def test_paraphrased_questions_ask_the_same_fact_in_training_only_forms(names_file):
    kwargs = dict(dialogues=6, max_facts=8, seed=3, split="train", reply_of=lambda p: "ok")
    asked = [e for e in training_examples(names_file, "S", paraphrase_share=1.0, **kwargs) if e.kind in ("answer", "not_told")]
    assert asked
    forms = [re.escape(f).replace(re.escape("{s}"), r"(\w+)") for fs in EXTRA_ASK.values() for f in fs]
    for e in asked:
        question = e.messages[-1]["content"]
        match = next((m for m in (re.fullmatch(f, question) for f in forms) if m), None)
        assert match, question
        if e.kind == "answer":  # the reply answers the paraphrase: the person asked about, the value
            assert match.group(1) in e.reply and e.value in e.reply


def test_crowded_dialogues_teach_about_three_facts_per_person(names_file):
    gen = TeachRecall("train", names_file)
    for seed in range(10):
        rng = random.Random(seed)
        episode = training_dialogue(gen, rng, 12, crowded_share=1.0)
        people = {s.fact.subject for s in episode.steps if s.tag == "teach"}
        assert len(people) == math.ceil(episode.facts / 3)
    for seed in range(10):  # without the shares, the dialogue of the recipe before them: no extra draws
        rng, before = random.Random(seed), random.Random(seed)
        n = before.randint(2, 12)
        assert training_dialogue(gen, rng, 12) == gen.episode(before, n, corrections=before.randint(0, n // 3))
    spread = [training_dialogue(gen, random.Random(seed), 12) for seed in range(10)]
    assert sum(len({s.fact.subject for s in e.steps if s.tag == "teach"}) for e in spread) > sum(e.facts for e in spread) / 2


def test_not_told_examples_can_show_another_fact_of_the_asked_person(names_file):
    kwargs = dict(dialogues=40, max_facts=9, seed=5, split="train", reply_of=lambda p: "ok", crowded_share=1.0)
    plain = training_examples(names_file, "S", **kwargs)

    def share_about_the_asked(examples) -> float:  # of "not told" examples, those with a note naming whom the question asks about
        not_told = [e for e in examples if e.kind == "not_told"]
        names = lambda text: set(re.findall(r"[A-Z][a-z]+", text))
        return sum(any(names(e.messages[-1]["content"]) & names(n) for n in notes_of(e)) for e in not_told) / len(not_told)

    assert share_about_the_asked(training_examples(names_file, "S", other_fact_share=1.0, **kwargs)) > 0.8
    assert share_about_the_asked(plain) < 0.5


def test_broad_conversations_give_answers_from_their_notes_and_not_told_without(names_file):
    from training.adapter_data import breadth_examples
    from training.breadth import breadth_conversations

    kinds = set()
    for conversation in breadth_conversations("train", names_file, 3, seed=2):
        for e in breadth_examples(conversation, "S", random.Random(0), lambda p: "ok"):
            kinds.add(e.kind)
            notes = notes_of(e)
            if e.kind == "answer":  # the value as written, in a note (a corrected one restated with it)
                assert any(e.value in n for n in notes) and e.value in e.reply
            if e.kind == "not_told":
                assert notes and not any(c in e.reply for c in "0123456789")
    assert kinds == {"answer", "not_told", "acknowledge", "distilled"}

    def not_told(rate: float) -> list:
        return [e for c in breadth_conversations("train", names_file, 3, seed=2)
                for e in breadth_examples(c, "S", random.Random(0), lambda p: "ok", not_told_rate=rate) if e.kind == "not_told"]

    assert len(not_told(0.15)) > len(not_told(0.0))  # taught questions shown without their answer too
    kwargs = dict(dialogues=10, max_facts=6, seed=1, split="train", reply_of=lambda p: "ok")
    plain, broad = training_examples(names_file, "S", **kwargs), training_examples(names_file, "S", breadth_share=0.5, **kwargs)
    assert len(broad) >= 1.8 * len(plain)  # as many broad examples again as the others


def test_a_not_told_example_shows_the_look_alike_chat_would_recall():
    from training.adapter_data import _most_like

    said = ["I had pasta for lunch.", "For the record, the bin day is Monday.", "The gate code is 4417."]
    assert _most_like("hey, what's the market day?", said) == "For the record, the bin day is Monday."
    assert _most_like("What is my cat's name?", said) is None


def test_a_broad_note_is_shown_with_its_message_as_chat_shows_it(names_file):
    from training.adapter_data import _in_message, breadth_examples
    from training.breadth import breadth_conversations

    message = ["Long day today.", "The gate code is 4417.", "Better than last time!", "Ugh."]
    assert _in_message("The gate code is 4417.", message, 1) == "The gate code is 4417."
    assert _in_message("The gate code is 4417.", message, 3) == "Long day today. The gate code is 4417. Better than last time!"
    assert _in_message("Ugh.", message, 2) == "Better than last time! Ugh."
    conversation = breadth_conversations("train", names_file, 1, seed=4, facts=8)[0]

    def notes(count: int) -> list[str]:
        return [e.messages[-2]["content"] for e in breadth_examples(conversation, "S", random.Random(0), lambda p: "ok",
                                                                    message_sentences=count) if e.kind == "answer"]

    alone, in_message = notes(1), notes(3)
    assert len(alone) == len(in_message)
    assert all(a.count("\n- ") == b.count("\n- ") for a, b in zip(alone, in_message))  # the same notes
    assert sum(map(len, in_message)) > sum(map(len, alone))  # some with the sentences around them


def test_a_broad_taught_question_can_be_shown_its_answer_beside_a_look_alike(names_file):
    from training.adapter_data import breadth_examples
    from training.breadth import breadth_conversations

    conversation = breadth_conversations("train", names_file, 1, seed=4, facts=8)[0]

    def answers(rate: float) -> list:
        return [e for e in breadth_examples(conversation, "S", random.Random(0), lambda p: "ok", not_told_rate=0.0,
                                            lookalike_rate=rate) if e.kind == "answer"]

    plain, crowded = answers(0.0), answers(1.0)
    assert len(plain) == len(crowded)
    assert sum(len(notes_of(e)) == 1 for e in plain) > 0
    assert all(len(notes_of(e)) >= 2 for e in crowded)  # never the answer alone
    assert all(any(e.value in n for n in notes_of(e)) for e in crowded)  # still answered from its own note
