"""The not-told probe: its fit, its file's checks, and the reply it makes "not told" on the lean path."""

import dataclasses

import pytest
import torch

from chatbot import Controller, load_config
from chatbot.answerable import AnswerProbe, file_digest
from chatbot.config import GenerationConfig
from chatbot.controller import Generation
from chatbot.loading import ModelLoadError, model_tag
from chatbot.prompt import NOT_TOLD_REPLIES
from tests.conftest import ROOT, TINY
from text import is_question
from training.answerable import auroc, fit_logistic, last_states, probe_examples

NAMES = ROOT.parent / "shared" / "data" / "names" / "names.txt"
GEN = GenerationConfig(max_new_tokens=40, not_told_above=0.35, decode_weights="float32")  # compared with generate


def messages(text):
    return [{"role": "system", "content": "You are a helpful assistant."}, {"role": "user", "content": text}]


def probe_for(controller, *, layer=1, bias=0.0, threshold=0.5, adapter="", reads=True):
    """A probe of random direction (`reads`), or one whose answer is sigmoid(bias) whatever it reads."""
    h = controller.hidden_size
    weight = torch.randn(h, generator=torch.Generator().manual_seed(0)) if reads else torch.zeros(h)
    return AnswerProbe(layer=layer, mean=torch.zeros(h), scale=torch.ones(h), weight=weight, bias=bias,
                       threshold=threshold, model=model_tag(load_config(TINY).model), adapter=adapter)


@pytest.fixture
def fresh_tiny():
    return Controller.from_config(load_config(TINY).model)


def reply(controller, text, gen=GEN, **kwargs):
    report = Generation()
    said = "".join(controller.generate(controller.chat_ids(messages(text)), gen=gen, report=report, **kwargs))
    return said, report


def test_logistic_fit_separates_what_a_direction_separates_and_auroc_counts_pairs():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(400, 8, generator=g)
    y = (x[:, 2] - x[:, 5] > 0).long()
    mean, scale, weight, bias = fit_logistic(x, y, l2=1e-3)
    scores = torch.sigmoid(((x - mean) / scale) @ weight + bias)
    assert auroc(y, scores) > 0.99 and ((scores > 0.5).long() == y).float().mean() > 0.95
    assert auroc(torch.tensor([1, 1, 0, 0]), torch.tensor([0.9, 0.1, 0.5, 0.5])) == pytest.approx(0.5)
    with pytest.raises(ValueError, match="both labels"):
        auroc(torch.tensor([1, 1]), torch.tensor([0.2, 0.3]))


def test_probe_examples_hold_answerable_unanswerable_and_general_questions_of_their_split():
    train = probe_examples("train", NAMES, "You are a helpful assistant.", dialogues=3, conversations=2, seed=0,
                           not_told_rate=0.3, other_fact_share=0.5, general_share=0.2)
    val = probe_examples("val", NAMES, "You are a helpful assistant.", dialogues=3, conversations=2, seed=1,
                         not_told_rate=0.3, other_fact_share=0.5, general_share=0.2)
    assert {e.kind for e in train} == {"answer", "not_told", "distilled"} == {e.kind for e in val}
    assert all(is_question(e.messages[-1]["content"]) for e in train if e.kind == "distilled")  # statements are dropped
    assert all(e.messages[-1]["role"] == "user" for e in train)
    assert not {e.messages[-1]["content"] for e in train} & {e.messages[-1]["content"] for e in val}


def test_probe_examples_can_show_answers_beside_a_non_answering_note_as_the_adapter_was_trained():
    def answer_notes(lookalikes: float) -> list[int]:
        examples = probe_examples("train", NAMES, "S", dialogues=0, conversations=2, seed=0, not_told_rate=0.0,
                                  other_fact_share=0.0, general_share=0.0, lookalikes=lookalikes)
        return [e.messages[-2]["content"].count("\n- ") for e in examples if e.kind == "answer"]

    plain, crowded = answer_notes(0.0), answer_notes(1.0)
    assert len(plain) == len(crowded) > 0
    assert sum(crowded) > sum(plain)


def test_the_lean_state_is_transformers_hidden_state_and_the_probe_reads_it(fresh_tiny):
    ids = fresh_tiny.chat_ids(messages("Where does Oriel live?"))
    for layer in (1, 2):  # a middle layer's residual stream, and the last (normed) one
        fresh_tiny.probe = probe_for(fresh_tiny, layer=layer)
        expected = fresh_tiny.probe.not_answered(last_states(fresh_tiny.model, [ids])[0, layer])
        _, report = reply(fresh_tiny, "Where does Oriel live?", dataclasses.replace(GEN, not_told_above=1.0),
                          user=f"layer-{layer}", asks=True)
        assert report.not_told_probability == pytest.approx(expected, abs=1e-5) and not report.not_told


def test_above_its_threshold_a_question_is_answered_not_told_and_a_statement_never(fresh_tiny):
    plain, _ = reply(fresh_tiny, "Where does Oriel live?")
    fresh_tiny.probe = probe_for(fresh_tiny, bias=5.0, reads=False)  # P(nothing answers) = 0.993
    said, report = reply(fresh_tiny, "Where does Oriel live?", user="asks", asks=True)
    assert report.not_told and said == NOT_TOLD_REPLIES[0] != plain
    said, report = reply(fresh_tiny, "Oriel lives in Vantastad.", user="tells", asks=False)
    assert report.not_told_probability is None and not report.not_told
    # the configured threshold overrides the probe's own; without one the probe's decides
    said, report = reply(fresh_tiny, "Where does Oriel live?", dataclasses.replace(GEN, not_told_above=1.0), user="never", asks=True)
    assert not report.not_told and said == plain
    fresh_tiny.probe.threshold = 0.999
    said, report = reply(fresh_tiny, "Where does Oriel live?", dataclasses.replace(GEN, not_told_above=None), user="own", asks=True)
    assert report.not_told_probability == pytest.approx(0.9933, abs=1e-4) and not report.not_told and said == plain


def test_after_a_not_told_reply_the_users_cache_still_gives_exact_replies(fresh_tiny):
    fresh_tiny.probe = probe_for(fresh_tiny, bias=5.0, reads=False)
    answer, _ = reply(fresh_tiny, "Where does Oriel live?", user="ann", asks=True)
    fresh_tiny.probe = None
    history = messages("Where does Oriel live?") + [{"role": "assistant", "content": answer}, {"role": "user", "content": "hi"}]
    ids = fresh_tiny.chat_ids(history)
    report = Generation()
    again = "".join(fresh_tiny.generate(ids, gen=GEN, report=report, user="ann"))
    assert report.reused_tokens > 0
    assert again == "".join(fresh_tiny.generate(ids, gen=dataclasses.replace(GEN, decode="transformers")))


def test_a_probe_file_is_checked_against_the_model_and_adapter_it_was_trained_for(tmp_path, fresh_tiny):
    path = tmp_path / "probe.pt"
    probe_for(fresh_tiny).save(path)
    cfg = load_config(TINY).model
    cfg.not_told_probe = str(path)
    loaded = Controller.from_config(cfg).probe
    assert loaded.layer == 1 and torch.equal(loaded.weight, probe_for(fresh_tiny).weight)

    other = tmp_path / "other.pt"
    probe_for(fresh_tiny, adapter=file_digest(ROOT / "checkpoints" / "answer_lora.pt")).save(other)
    cfg.not_told_probe = str(other)
    with pytest.raises(ModelLoadError, match="was trained for .* with adapter .*retrain it"):
        Controller.from_config(cfg)
    cfg.not_told_probe = str(tmp_path / "missing.pt")
    with pytest.raises(ModelLoadError, match="does not exist"):
        Controller.from_config(cfg)
    (tmp_path / "bad.pt").write_bytes(b"not a probe")
    cfg.not_told_probe = str(tmp_path / "bad.pt")
    with pytest.raises(ModelLoadError, match="cannot be read"):
        Controller.from_config(cfg)


def test_the_agent_says_not_told_shows_why_and_keeps_statements_as_they_were(tmp_path, fresh_tiny):
    from chatbot import Agent
    from storage import Store
    from ui.memory_tab import memory_markdown

    fresh_tiny.probe = probe_for(fresh_tiny, bias=5.0, reads=False)
    cfg = load_config(TINY)
    cfg.generation.not_told_above = 0.35
    agent = Agent(cfg, fresh_tiny, Store(tmp_path / "chat.db"))
    told = list(agent.chat_stream("ann", "Oriel lives in Vantastad."))[-1]
    assert "not_told" not in told.memory and told.text != NOT_TOLD_REPLIES[0]
    asked = list(agent.chat_stream("ann", "By the way, where does Oriel live?"))[-1]
    assert asked.text == NOT_TOLD_REPLIES[0] and asked.memory["not_told"] == {"probability": 0.9933, "replied": True}
    assert "**Does a note answer?** p(none does) = 0.99, so the reply says it was not told" in memory_markdown(asked.memory)
    assert agent.history("ann")[-1].reply == NOT_TOLD_REPLIES[0]
    shown = memory_markdown({"not_told": {"probability": 0.2, "replied": False}})
    assert shown == "**Does a note answer?** p(none does) = 0.20"
    agent.close()
