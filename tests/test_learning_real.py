"""The learning chatbot on the real model with the shipped memory and adapter: teach, correct, forget, restart.

Questions are asked in a new conversation (or after many turns), so the fact is not in
the prompt's recent history: only memory can bring it back.
"""

import pytest

from chatbot import Agent, load_config
from storage import Store

from .conftest import DEFAULT

pytestmark = pytest.mark.real_model


@pytest.fixture
def make_agent(real_controller, tmp_path):
    def make() -> Agent:
        cfg = load_config(DEFAULT)
        cfg.generation.max_new_tokens = 32
        return Agent(cfg, real_controller, Store(tmp_path / "chat.db"))

    return make


def test_a_taught_fact_is_recalled_in_a_new_conversation_and_after_a_restart(make_agent):
    agent = make_agent()
    agent.chat("ivy", "My sister Oriel lives in Vantastad.")
    for text in ["How are you today?", "I had pasta for lunch.", "The weather is lovely this morning."]:
        agent.chat("ivy", text)
    agent.new_conversation("ivy")
    assert "Vantastad" in agent.chat("ivy", "Where does Oriel live?")
    assert "Vantastad" not in agent.chat("max", "Where does Oriel live?")  # another user's memory is not ivy's
    agent.close()
    again = make_agent()  # a restart: everything comes back from the SQLite file
    again.new_conversation("ivy")
    assert "Vantastad" in again.chat("ivy", "Where does Oriel live?")
    again.close()


def test_a_correction_is_answered_with_the_new_value(make_agent):
    # supersession is off: the correction wins as the newest statement naming Bram near the
    # closest (bench/teach_recall.py measures how often that holds: latest-value accuracy)
    agent = make_agent()
    agent.chat("jo", "Bram works at Quillmere.")
    agent.chat("jo", "Tell me a joke.")
    agent.chat("jo", "Actually, Bram now works at Zentrifol.")
    agent.new_conversation("jo")
    answer = agent.chat("jo", "Where does Bram work?")
    assert "Zentrifol" in answer and "Quillmere" not in answer
    agent.close()


def test_forget_removes_the_memory(make_agent):
    agent = make_agent()
    agent.chat("kim", "Remember: the code of my locker is 4417.")
    agent.new_conversation("kim")
    assert "4417" in agent.chat("kim", "What is the code of my locker?")
    reply = agent.chat("kim", "Forget the code of my locker.")
    assert "4417" in reply  # it says what it forgot
    agent.new_conversation("kim")
    assert "4417" not in agent.chat("kim", "What is the code of my locker?")
    agent.close()
