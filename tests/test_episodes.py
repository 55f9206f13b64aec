"""Episode sources: the bAbI parser and the teach-and-recall generator."""

from __future__ import annotations

import random
import re
from pathlib import Path

import pytest

from training.episodes import ASK, CHAT, CORRECT, SPLITS, TEACH, TeachRecall, babi_file, load_babi, parse_tasks

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT.parent / "shared" / "data"
NAMES = DATA / "names" / "names.txt"
needs_data = pytest.mark.skipif(not (DATA / "babi").is_dir(), reason="../shared/data/babi is absent")


@needs_data
def test_babi_parse_matches_the_file_format():
    path = babi_file(DATA, 1, "test")
    episodes = load_babi(path, 1)
    first = episodes[0].steps
    assert [s.text for s in first[:3]] == ["John travelled to the hallway.", "Mary journeyed to the bathroom.", "Where is John?"]
    assert (first[2].answer, first[2].support) == ("hallway", (1,))
    assert (first[5].text, first[5].answer, first[5].support) == ("Where is Mary?", "bathroom", (2,))
    assert not first[0].is_question
    assert sum(len(e.questions) for e in episodes) == 1000
    lines = [l for l in path.read_text().splitlines() if l.strip()]
    assert sum(len(e.steps) for e in episodes) == len(lines)
    assert len(episodes) == sum(1 for l in lines if l.split(" ", 1)[0] == "1")
    # a question's supporting facts are statements that came before it
    for episode in episodes[:50]:
        for i, step in enumerate(episode.steps):
            for line_id in step.support:
                assert line_id <= i and not episode.steps[line_id - 1].is_question


@needs_data
def test_missing_10k_file_falls_back_to_the_1k_set():
    assert babi_file(DATA, 3, "train", "en-10k").parent.name == "en"
    assert babi_file(DATA, 1, "train", "en-10k").parent.name == "en-10k"


def test_task_specs():
    assert parse_tasks("1-3,7") == [1, 2, 3, 7]
    assert parse_tasks("1-20") == list(range(1, 21))
    with pytest.raises(ValueError):
        parse_tasks("0,21")


def test_babi_parse_rejects_a_malformed_line(tmp_path):
    bad = tmp_path / "qa1.txt"
    bad.write_text("1 John went home.\nJohn is here.\n")
    with pytest.raises(ValueError, match=":2:"):
        load_babi(bad, 1)


@pytest.fixture(scope="module")
def generators() -> dict[str, TeachRecall]:
    if not NAMES.is_file():
        pytest.skip("../shared/data/names is absent")
    return {split: TeachRecall(split, NAMES) for split in SPLITS}


def test_splits_share_no_names_values_or_templates(generators):
    for a in SPLITS:
        for b in SPLITS:
            if a < b:
                ga, gb = generators[a], generators[b]
                assert not set(ga.people) & set(gb.people)
                assert not set(ga.values) & set(gb.values)
                assert not set(ga.chat) & set(gb.chat)
                for table in ("teach", "correct", "ask"):
                    for relation in TEACH:
                        assert not set(getattr(ga, table)[relation]) & set(getattr(gb, table)[relation])
    for split in SPLITS:  # every split has something of each kind
        g = generators[split]
        assert g.people and len(g.values) > 250 and g.chat
        assert all(g.teach[r] and g.correct[r] and g.ask[r] for r in TEACH)
    covered = {t for g in generators.values() for r in TEACH for t in g.ask[r]}
    assert covered == {t for r in ASK for t in ASK[r]}
    assert {t for g in generators.values() for t in g.chat} == set(CHAT)
    assert {t for g in generators.values() for r in TEACH for t in g.correct[r]} == {t for r in CORRECT for t in CORRECT[r]}


def test_test_dialogues_mention_no_training_person_or_value(generators):
    train = set(generators["train"].people) | set(generators["train"].values)
    episode = generators["test"].episode(random.Random(0), 50, corrections=10)
    template_words = {w for t in CHAT + [t for r in TEACH for t in TEACH[r] + ASK[r] + CORRECT[r]] for w in re.findall(r"\w+", t)}
    words = {w for s in episode.steps for w in re.findall(r"\b[A-Z][a-z]+\b", s.text)} - template_words
    assert len(words) > 50 and not words & train


@pytest.mark.parametrize("seed", range(5))
def test_corrections_make_the_latest_value_the_answer(generators, seed):
    rng = random.Random(seed)
    episode = generators["train"].episode(rng, 20, corrections=6)
    latest: dict[tuple[str, str], str] = {}
    corrected = set()
    for step in episode.steps:
        if step.fact:
            key = (step.fact.subject, step.fact.relation)
            if step.tag == "correct":
                assert key in latest and latest[key] != step.fact.value
                corrected.add(key)
            latest[key] = step.fact.value
            assert step.fact.subject in step.text and step.fact.value in step.text
        elif step.is_question:
            subject = next(s for s, _ in latest if re.search(rf"\b{s}\b", step.text))
            answers = {v for (s, _), v in latest.items() if s == subject}
            assert step.answer in answers
    questions = episode.questions
    assert len(questions) == 20 and len({q.answer for q in questions}) == 20
    assert sum(q.tag == "corrected" for q in questions) == 6 == len(corrected)
    assert {q.answer for q in questions} == set(latest.values())
    assert any(s.tag == "chat" for s in episode.steps)
    # every question comes after all teaching and correcting
    last_fact = max(i for i, s in enumerate(episode.steps) if s.fact)
    assert min(i for i, s in enumerate(episode.steps) if s.is_question) > last_fact


def test_two_hundred_fact_dialogues_have_unique_values(generators):
    episode = generators["test"].episode(random.Random(3), 200, corrections=20, questions=200)
    assert episode.facts == 200 and len(episode.questions) == 200
    assert len({q.answer for q in episode.questions}) == 200


def test_dialogues_about_few_people_give_each_several_facts(generators):
    episode = generators["val"].episode(random.Random(5), 40, corrections=8, people=12)
    taught = [s.fact for s in episode.steps if s.tag == "teach"]
    people = {f.subject for f in taught}
    assert len(taught) == 40 and len(people) <= 12
    assert len({(f.subject, f.relation) for f in taught}) == 40  # a person's facts are about different things
    with pytest.raises(ValueError, match="12 people hold at most 48 facts"):
        generators["val"].episode(random.Random(5), 50, people=12)


def test_teach_recall_questions_point_at_the_statement_that_last_set_the_fact(generators):
    gen = generators["train"]
    episode = gen.episode(random.Random(3), 12, corrections=4)
    for question in episode.questions:
        (line_id,) = question.support
        statement = episode.steps[line_id - 1]
        assert statement.fact.value == question.answer
        assert statement.tag == ("correct" if question.tag == "corrected" else "teach")
