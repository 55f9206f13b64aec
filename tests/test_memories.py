"""chatbot/memories.py: a user's memories loaded from the store, exactly, again when another process saved them."""

import torch

from chatbot import Agent, load_config
from storage import Store

from .conftest import TINY, make_agent


def test_memories_survive_a_restart_exactly(tmp_path, tiny_controller):
    agent = make_agent(tmp_path, tiny_controller)
    for text in ["Remember: the vault code is 4417.", "Bram works at Quillmere.", "Where does Bram work?"]:
        agent.chat("ann", text)
    engrams, writes = agent.memories.memoria.engrams("ann"), agent.memories.neural.writes("ann")
    fast = [w.clone() for w in agent.memories.neural._users["ann"].fast.weights]
    agent.close()

    again = make_agent(tmp_path, tiny_controller)
    again.memories.load("ann")
    assert again.memories.memoria.engrams("ann") == engrams
    assert [(w.id, w.text, w.value, w.turn, w.engram) for w in again.memories.neural.writes("ann")] == [
        (w.id, w.text, w.value, w.turn, w.engram) for w in writes
    ]
    assert all(torch.equal(a, b) for a, b in zip(again.memories.neural._users["ann"].fast.weights, fast))
    again.close()


def test_another_process_saving_the_user_is_seen_next_turn(tmp_path, tiny_controller):
    first = make_agent(tmp_path, tiny_controller)
    second = make_agent(tmp_path, tiny_controller)
    first.chat("ann", "Oriel lives in Vantastad.")
    second.chat("ann", "Bram works at Quillmere.")  # loads what the first saved, then adds
    first.chat("ann", "Ida has a cat called Pim.")  # sees the second's turn before adding its own
    assert [w.text for w in first.memories.neural.writes("ann")] == [
        "Oriel lives in Vantastad.", "Bram works at Quillmere.", "Ida has a cat called Pim."
    ]
    first.close()
    second.close()


def test_an_agent_restarted_on_the_same_controller_loads_its_grown_vocabulary(tmp_path, tiny_controller):
    cfg = load_config(TINY)
    base_rows = tiny_controller.model.get_input_embeddings().weight.shape[0]
    agent = Agent(cfg, tiny_controller, Store(tmp_path / "vocab.db"))
    agent.chat("ann", "Remember: Vantastad and Quillmere are towns.")
    grown = [t.text for t in agent.memories.vocab.tokens]
    assert grown and tiny_controller.model.get_input_embeddings().weight.shape[0] == base_rows + len(grown)
    agent.close()
    assert tiny_controller.model.get_input_embeddings().weight.shape[0] == base_rows and tiny_controller.vocab is None

    again = Agent(cfg, tiny_controller, Store(tmp_path / "vocab.db"))  # the restart: same model object, same file
    assert [t.text for t in again.memories.vocab.tokens] == grown
    assert again.chat("ann", "Where is Vantastad?")
    again.close()


def test_engrams_saved_with_other_vectors_are_re_embedded_on_load(tmp_path, tiny_controller):
    said = ["The code of my locker is 4417.", "My sister Oriel lives in Vantastad.", "Bram works at Quillmere.",
            "I had pasta for lunch.", "The weather is lovely.", "My dog is called Rex."]
    agent = make_agent(tmp_path, tiny_controller, memoria__vector="hidden")
    for text in said:
        agent.chat("ann", text)
    engrams = agent.memories.memoria.engrams("ann")
    agent.close()

    again = make_agent(tmp_path, tiny_controller, memoria__vector="sentence")
    again.memories.load("ann")
    assert again.memories.memoria.engrams("ann") == engrams
    vectors = again.memories.memoria.vectors("ann", [e.id for e in engrams])
    assert torch.allclose(vectors, again.memories.sentences([e.text for e in engrams]), atol=1e-5)  # 384-dim MiniLM now
    reply = list(again.chat_stream("ann", "Where does Oriel live?"))[-1]  # new engrams join the re-embedded ones
    assert reply.memory["reminded"][0]["text"] == "My sister Oriel lives in Vantastad."
    again.close()

    third = make_agent(tmp_path, tiny_controller, memoria__vector="sentence")
    third.memories.load("ann")  # saved as sentence vectors: loaded as they are
    assert torch.allclose(third.memories.memoria.vectors("ann", [e.id for e in engrams]), vectors, atol=1e-6)
    third.close()


def test_two_processes_on_one_user_take_turns_and_lose_nothing(tmp_path, tiny_controller):
    # Two Agents on one file stand for the app and the command line: a Store each, a lock each.
    import threading

    app, cli = make_agent(tmp_path, tiny_controller), make_agent(tmp_path, tiny_controller)
    app.chat("ann", "Oriel lives in Vantastad.")
    turn = app.chat_stream("ann", "Bram works at Quillmere.")
    next(turn)  # the app's turn is under way: ann's memories are loaded and about to change
    other = threading.Thread(target=cli.chat, args=("ann", "Kora keeps two parrots."))
    other.start()
    other.join(timeout=3)
    assert other.is_alive()  # the command line waits for the app's turn to end
    for _ in turn:
        pass
    other.join(timeout=120)
    assert not other.is_alive()
    fresh = make_agent(tmp_path, tiny_controller)
    texts = [w.text for w in fresh.memory_view("ann").writes]
    assert texts == ["Oriel lives in Vantastad.", "Bram works at Quillmere.", "Kora keeps two parrots."]
    for agent in (app, cli, fresh):
        agent.close()


def test_a_user_busy_in_another_process_is_one_clear_error(tmp_path, tiny_controller):
    import pytest
    from storage import StoreError

    app, cli = make_agent(tmp_path, tiny_controller), make_agent(tmp_path, tiny_controller)
    with app.store.user_lock("ann"):
        with pytest.raises(StoreError, match="busy"):
            with cli.store.user_lock("ann", timeout_s=0.2):
                pass
        with cli.store.user_lock("bob", timeout_s=0.2):  # other users never wait
            pass
    app.close()
    cli.close()
