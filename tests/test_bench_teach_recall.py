"""bench/teach_recall.py's probe of facts never taught: what it asks and how it scores replies."""

from __future__ import annotations

import importlib.util
import random
from pathlib import Path

import pytest

from training.adapter_data import ANSWER, NOT_TOLD
from training.episodes import TeachRecall

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location("teach_recall_bench", ROOT / "bench" / "teach_recall.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def gen(tmp_path):
    path = tmp_path / "names.txt"
    path.write_text("\n".join(f"{a}{b}" for a in ("Al", "Bor", "Cel", "Dun", "Ev", "Fal") for b in ("ma", "rin", "tos", "wen", "dra")))
    return TeachRecall("test", path)


def test_untold_questions_ask_a_relation_never_taught_of_someone_taught_something_else(gen):
    episode = gen.episode(random.Random(0), 4, corrections=1)
    taught = {(s.fact.subject, s.fact.relation) for s in episode.steps if s.fact}
    questions = gen.untold_questions(episode, random.Random(1), 6)
    assert len(questions) == len(set(questions)) == 6
    for text in questions:
        # which template of the split asks it, about whom
        (person, relation), = [(p, r) for p, r in {(p, r) for p, _ in taught for r in gen.ask}
                                if any(t.format(s=p) == text for t in gen.ask[r])]
        assert (person, relation) not in taught
    # asking for more than exist gives all of them once
    everything = gen.untold_questions(episode, random.Random(1), 1000)
    assert len(everything) == len(set(everything)) == len({p for p, _ in taught}) * len(gen.ask) - len(taught)


def test_not_told_matches_the_adapters_refusals_and_not_its_answers(bench):
    for reply in NOT_TOLD + ["I don't know where Alma works.", "I'm not sure."]:
        assert bench.NOT_TOLD.search(reply), reply
    for forms in ANSWER.values():
        for form in forms:
            assert not bench.NOT_TOLD.search(form.format(s="Alma", v="Quillmere")), form
