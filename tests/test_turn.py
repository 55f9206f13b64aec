"""chatbot/turn.py on the tiny model: what each stage of a turn writes, recalls, forgets, replays and stores.

The tiny model's memory is untrained, so these tests check the mechanics (what is
written where, isolation, the note rules on real sentence vectors, switches); recall
itself is tested on the real model with the shipped checkpoint (test_real_model.py,
bench/teach_recall.py).
"""

from __future__ import annotations

import json

import pytest
import torch

from chatbot.turn import MEMORY_STAGES
from memory.engram_state import EngramType

from .conftest import make_agent


def test_a_statement_is_written_remembered_and_stored_in_one_turn(tmp_path, tiny_controller):
    agent = make_agent(tmp_path, tiny_controller)
    reply = list(agent.chat_stream("ann", "My sister Oriel lives in Vantastad. How are you?"))[-1]
    assert reply.done and set(MEMORY_STAGES) <= set(reply.seconds)
    writes = agent.memories.neural.writes("ann")
    assert [w.text for w in writes] == ["My sister Oriel lives in Vantastad."]  # the question is read, not written
    engrams = agent.memories.memoria.engrams("ann")
    assert [e.text for e in engrams] == ["My sister Oriel lives in Vantastad.", "How are you?"]
    turn = agent.store.db.execute("SELECT id, meta FROM turns").fetchone()
    assert all(e.turn == turn[0] for e in engrams) and writes[0].turn == turn[0] and writes[0].engram == engrams[0].id
    meta = json.loads(turn[1])
    assert meta["memory"]["writes"][0]["text"] == writes[0].text and set(MEMORY_STAGES) <= set(meta["seconds"])
    rows = agent.store.db.execute("SELECT COUNT(*) FROM engrams").fetchone()[0], agent.store.db.execute("SELECT COUNT(*) FROM neural_writes").fetchone()[0]
    assert rows == (2, 1)
    agent.close()


def test_one_users_memory_never_reaches_another(tmp_path, tiny_controller):
    agent = make_agent(tmp_path, tiny_controller)
    agent.chat("ann", "The code of my locker is 4417.")
    reply = list(agent.chat_stream("bob", "What is the code of my locker?"))[-1]
    assert reply.memory["notes"] == [] and reply.memory["reminded"] == []
    assert all(r["source"] is None for r in reply.memory["recall"])
    assert agent.memories.memoria.size("bob") == 1 and agent.memories.neural.writes("bob") == []
    agent.close()


def test_forget_takes_matching_memories_out_of_both_stores(tmp_path, tiny_controller):
    agent = make_agent(tmp_path, tiny_controller)
    agent.chat("ann", "Oriel lives in Vantastad.")
    agent.chat("ann", "Bram works at Quillmere.")
    reply = list(agent.chat_stream("ann", "Forget that Oriel lives in Vantastad."))[-1]
    assert "Oriel lives in Vantastad." in reply.text and reply.memory["forgotten"] == ["Oriel lives in Vantastad."]
    assert [e.text for e in agent.memories.memoria.engrams("ann")] == ["Bram works at Quillmere."]
    writes = agent.memories.neural.writes("ann")
    assert [w.forgotten for w in writes] == [True, False]
    # the memory now holds only what is left: its fast weights are a fresh start written with the kept write
    memory = agent.memories.neural.model.memory
    memory.fast = memory.initial_state(1)
    kept = writes[1]
    memory.write(torch.from_numpy(kept.key)[None], torch.from_numpy(kept.vector)[None], torch.from_numpy(kept.beta)[None])
    assert all(torch.allclose(a, b) for a, b in zip(agent.memories.neural._users["ann"].fast.weights, memory.fast.weights))
    nothing = list(agent.chat_stream("ann", "Forget everything about Zanzibar."))[-1]
    assert "nothing" in nothing.text and nothing.memory["forgotten"] == []
    agent.close()


def test_a_correction_supersedes_the_older_write_and_its_engram(tmp_path, tiny_controller):
    agent = make_agent(tmp_path, tiny_controller, consolidation__supersede_similarity=-1.0)  # everything overwrites
    agent.chat("ann", "Oriel lives in Vantastad.")
    reply = list(agent.chat_stream("ann", "Oriel moved to Quillmere."))[-1]
    first, second = agent.memories.neural.writes("ann")
    assert first.superseded_by == second.id and second.live
    assert reply.memory["superseded"] == [{"id": first.id, "text": first.text, "by": second.id}]
    assert not agent.memories.memoria.is_live(first.engram, user="ann")
    stored = agent.store.db.execute("SELECT superseded_by FROM neural_writes WHERE id = 0").fetchone()[0]
    assert stored == second.id
    agent.close()

    never = make_agent(tmp_path, tiny_controller, db="never.db", consolidation__supersede_similarity=None)  # off
    never.chat("ann", "Oriel lives in Vantastad.")
    never.chat("ann", "Oriel moved to Quillmere.")
    assert all(w.live for w in never.memories.neural.writes("ann"))
    never.close()


def test_long_term_engrams_are_replayed_into_the_neural_memory(tmp_path, tiny_controller):
    agent = make_agent(
        tmp_path, tiny_controller, memoria__stm_capacity=1, consolidation__replay_every=2, consolidation__replay_count=8
    )
    for text in ["Oriel lives in Vantastad.", "Bram works at Quillmere.", "Ida has a cat called Pim.", "Hello."]:
        agent.chat("ann", text)
    assert any(e.type == EngramType.LONGTERM for e in agent.memories.memoria.engrams("ann"))
    assert agent.memories.neural.stats("ann")["replays"] > 0
    agent.close()


@pytest.mark.parametrize(
    "sections",
    [
        {"memoria__enabled": False},
        {"neural_memory__enabled": False},
        {"memoria__vector": "hidden", "neural_memory__enabled": False},
        {"memoria__vector": "sentence", "neural_memory__enabled": False},
        {"memoria__enabled": False, "neural_memory__enabled": False},
        {"memoria__reward": "uniform"},
        {"memoria__unit": "message"},
        {"chat__soft_prefix": True},
    ],
)
def test_every_memory_switch_still_chats(tmp_path, tiny_controller, sections):
    agent = make_agent(tmp_path, tiny_controller, **sections)
    agent.chat("ann", "Oriel lives in Vantastad.")
    reply = list(agent.chat_stream("ann", "Where does Oriel live?"))[-1]
    assert reply.done and len(agent.history("ann")) == 2
    assert (agent.memories.memoria is None) == (sections.get("memoria__enabled") is False)
    if sections.get("neural_memory__enabled") is False:
        assert agent.store.db.execute("SELECT COUNT(*) FROM neural_writes").fetchone()[0] == 0
    agent.close()


def test_a_failed_save_keeps_memory_and_database_in_step(tmp_path, tiny_controller, monkeypatch):
    agent = make_agent(tmp_path, tiny_controller)
    agent.chat("ann", "Oriel lives in Vantastad.")

    def broken(*args, **kwargs):
        raise RuntimeError("disk full")

    monkeypatch.setattr(agent.store, "add_turn", broken)
    with pytest.raises(RuntimeError, match="disk full"):
        agent.chat("ann", "Bram works at Quillmere.")
    monkeypatch.undo()
    agent.chat("ann", "Hello again.")  # reloads the user's memories from the database first
    assert [w.text for w in agent.memories.neural.writes("ann")] == ["Oriel lives in Vantastad.", "Hello again."]
    assert [e.text for e in agent.memories.memoria.engrams("ann")] == ["Oriel lives in Vantastad.", "Hello again."]
    agent.close()


def test_the_retrieval_baseline_puts_the_closest_statements_in_the_prompt_and_survives_a_restart(tmp_path, tiny_controller):
    agent = make_agent(tmp_path, tiny_controller, memoria__enabled=False, neural_memory__enabled=False, retrieval__enabled=True)
    for text in ["My sister Oriel lives in Vantastad.", "I like green tea.", "The vault code is 4417."]:
        agent.chat("ann", text)
    reply = list(agent.chat_stream("ann", "Where does Oriel live?"))[-1]
    assert "My sister Oriel lives in Vantastad." in reply.memory["notes"]
    bob = list(agent.chat_stream("bob", "Where does Oriel live?"))[-1]
    assert bob.memory["notes"] == []
    agent.close()
    again = make_agent(tmp_path, tiny_controller, memoria__enabled=False, neural_memory__enabled=False, retrieval__enabled=True)
    reply = list(again.chat_stream("ann", "What is the vault code?"))[-1]
    assert "The vault code is 4417." in reply.memory["notes"]
    again.close()


def test_a_question_recalls_by_name_what_was_said_among_look_alike_facts(tmp_path, tiny_controller):
    # Memoria reminds the closest short-term engram: the same question asked before; the rest is the product's note rule
    agent = make_agent(tmp_path, tiny_controller, memoria__num_reminded_stm=1)
    names = ["Kora", "Tamsin", "Ulric", "Wendel", "Yara", "Zeno", "Perrin", "Quill", "Rhosyn", "Solvi"]
    agent.chat("ann", "Bram works at Zentrifol.")
    for i, name in enumerate(names):
        agent.chat("ann", f"Who does {name} work for? {name} works for Firm{i}ton.")
    agent.chat("ann", "Who does Bram work for?")
    agent.chat("ann", "Bram now works at Quillmere.")
    agent.chat("bob", "Bram works at Bobcorp.")  # another user's Bram is never recalled for ann
    for name in names[:3]:
        agent.chat("ann", f"{name} moved to Oldport.")
    reply = list(agent.chat_stream("ann", "Who does Bram work for?"))[-1]
    assert reply.memory["notes"] == ["Bram now works at Quillmere."]
    reply = list(agent.chat_stream("bob", "Who does Bram work for?"))[-1]
    assert reply.memory["notes"] == ["Bram works at Bobcorp."]
    agent.close()


@pytest.mark.parametrize(
    ("link", "margin", "note", "work_note"),
    [
        (0.55, 0.0, "Bram reset the locker code to 8290.", "Bram is on the staff of Zentrifol."),
        # no link (None = off): newest within 0.15 of the closest, wrong both times
        (None, 0.15, "The combination for Bram's locker is 4417.", "The combination for Bram's locker is 4417."),
    ],
)
def test_a_correction_phrased_far_from_the_question_is_the_note(tmp_path, tiny_controller, link, margin, note, work_note):
    agent = make_agent(tmp_path, tiny_controller, chat__max_notes=1, chat__note_link_similarity=link, chat__note_recency_margin=margin)
    for text in ["Bram settled down in Vantastad.", "Bram is on the staff of Zentrifol.",
                 "The combination for Bram's locker is 4417.", "How are you today?", "Bram reset the locker code to 8290."]:
        agent.chat("ann", text)
    # MiniLM: the question is 0.85 close to the first locker statement, 0.67 to the reset, which is 0.65 close to it
    reply = list(agent.chat_stream("ann", "Which number does Bram use for the locker?"))[-1]
    assert reply.memory["notes"] == [note]
    reply = list(agent.chat_stream("ann", "Who does Bram work for?"))[-1]
    assert reply.memory["notes"] == [work_note]
    agent.close()


@pytest.mark.parametrize(
    ("unnamed", "margin", "overlap", "pet_note"),
    [
        (True, 0.1, 0.0, "Kedar looks after a rabbit named Peliavale."),
        # with the name in, every statement about Kedar is about as close: by cosine alone the newest within 0.15 wins
        (False, 0.15, 0.0, "The place Kedar calls home is Halucrest."),
        # ... the shared word ("name" in "named") lifts the one asked about
        (False, 0.15, 0.2, "Kedar looks after a rabbit named Peliavale."),
    ],
)
def test_of_several_facts_about_someone_the_note_is_the_one_asked_about(tmp_path, tiny_controller, unnamed, margin, overlap, pet_note):
    agent = make_agent(tmp_path, tiny_controller, chat__max_notes=1, chat__note_recency_margin=margin, chat__note_unnamed_closeness=unnamed,
                       chat__note_word_overlap=overlap)
    for text in ["Kedar is on the staff of Sileholm.", "Kedar looks after a rabbit named Peliavale.",
                 "The place Kedar calls home is Halucrest.", "The code of Kedar's locker is 4417."]:
        agent.chat("ann", text)
    # MiniLM to the pet question, names in: work 0.54, pet 0.65, home 0.55; masked: 0.13, 0.41, 0.24
    reply = list(agent.chat_stream("ann", "What is the name of Kedar's pet?"))[-1]
    assert reply.memory["notes"] == [pet_note]
    reply = list(agent.chat_stream("ann", "Where does Kedar live?"))[-1]
    assert reply.memory["notes"] == ["The place Kedar calls home is Halucrest."]
    agent.close()


def test_each_read_says_what_it_did_this_turn(tmp_path, tiny_controller):
    from ui.memory_tab import memory_markdown

    agent = make_agent(tmp_path, tiny_controller)
    agent.chat("ann", "Oriel lives in Vantastad.")
    reply = list(agent.chat_stream("ann", "Where does Oriel live?"))[-1]
    (read,) = reply.memory["recall"]
    if read["word"] is None:
        assert read["used"].startswith("nothing recalled")
        assert "nothing recalled" in memory_markdown(reply.memory) and "used:" not in memory_markdown(reply.memory)
    elif read["source"] in reply.memory["notes"]:
        assert read["used"] == "its sentence is a note in the prompt"
    else:
        assert read["used"] in ("its sentence was a candidate note, not chosen", "not used")
    sure = {**read, "word": "Vantastad", "confidence": 0.9, "source": "Oriel lives in Vantastad.", "used": "its sentence is a note in the prompt"}
    shown = memory_markdown({"recall": [sure]})
    assert "**Vantastad** (p = 0.90), from \"Oriel lives in Vantastad.\"; used: its sentence is a note in the prompt" in shown
    unsure = memory_markdown({"recall": [{**sure, "word": None, "confidence": 0.2}]})
    assert "nothing recalled (best p = 0.20)" in unsure and "**Vantastad**" not in unsure and "used:" not in unsure
    agent.close()


def test_forgetting_prunes_the_words_only_the_forgotten_sentences_held(tmp_path, tiny_controller):
    from chatbot import Agent, load_config
    from storage import Store

    from .conftest import TINY

    def words(agent: Agent) -> set[str]:
        return {t["text"].strip() for t in agent.vocabulary_view("ann").tokens}

    agent = Agent(load_config(TINY), tiny_controller, Store(tmp_path / "chat.db"))
    agent.chat("ann", "Remember: Oriel lives in Vantastad.")
    agent.chat("ann", "Remember: Bram visits Vantastad and Quillmere.")
    agent.chat("bob", "Remember: Oriel is my cousin in Vantastad.")
    assert {"Oriel", "Vantastad", "Quillmere"} <= words(agent)
    reply = list(agent.chat_stream("ann", "Forget that Oriel lives in Vantastad."))[-1]
    assert reply.memory["forgotten"] == ["Remember: Oriel lives in Vantastad."]
    # Vantastad is still in what Bram's sentence keeps; Oriel was only in the forgotten one
    assert "Oriel" not in words(agent) and {"Vantastad", "Quillmere"} <= words(agent)
    assert ["prune", "Oriel"] in [[kind, text.strip()] for kind, text in json.loads(
        agent.store.db.execute("SELECT meta FROM turns ORDER BY id DESC LIMIT 1").fetchone()[0])["vocab"]]
    assert "Oriel" in {t["text"].strip() for t in agent.vocabulary_view("bob").tokens}  # bob's words are his
    bram = next(e.id for e in agent.memory_view("ann").engrams if "Bram" in (e.text or ""))
    agent.forget_engram("ann", bram)
    agent.close()
    again = Agent(load_config(TINY), tiny_controller, Store(tmp_path / "chat.db"))  # what the store holds
    assert not {"Oriel", "Vantastad", "Quillmere", "Bram"} & words(again)
    assert "Vantastad" in {t["text"].strip() for t in again.vocabulary_view("bob").tokens}
    again.close()


def test_a_note_shows_its_sentence_with_the_next_statements_of_its_message(tmp_path, tiny_controller):
    told = "Farewell drinks for Margarida last night. Was it fun? We went to O Farol Torto. It was loud. I slept late."
    asked = "Where did Margarida have her drinks?"
    agent = make_agent(tmp_path, tiny_controller, chat__max_notes=1, chat__note_message_sentences=3)
    agent.chat("ann", told)
    agent.chat("ann", "Bram works at Quillmere.")
    notes = list(agent.chat_stream("ann", asked))[-1].memory["notes"]
    # the question of the message is left out; the two statements after the recalled one join it
    assert notes == ["Farewell drinks for Margarida last night. We went to O Farol Torto. It was loud."]
    agent.close()
    alone = make_agent(tmp_path, tiny_controller, db="alone.db", chat__max_notes=1, chat__note_message_sentences=1)
    alone.chat("ann", told)
    assert list(alone.chat_stream("ann", asked))[-1].memory["notes"] == ["Farewell drinks for Margarida last night."]
    alone.close()


@pytest.mark.parametrize("on", [True, False])
def test_a_reply_without_a_value_of_the_asked_kind_says_it_was_not_told(tmp_path, tiny_controller, on):
    from chatbot.grounding import wrong_kind
    from chatbot.prompt import NOT_TOLD_REPLIES

    agent = make_agent(tmp_path, tiny_controller, generation__answer_kinds=on, generation__ground_values=False)
    question = "How many parrots does Oriel keep?"
    reply = list(agent.chat_stream("ann", question))[-1]
    stored = agent.store.db.execute("SELECT reply FROM turns").fetchone()[0]
    assert stored == reply.text
    if on:  # the tiny model's babble holds no number: it is not an answer
        assert reply.text == NOT_TOLD_REPLIES[0] and wrong_kind(question, reply.memory["wrong_kind"]["reply"])
    else:
        assert "wrong_kind" not in reply.memory and wrong_kind(question, reply.text)
    agent.close()


@pytest.mark.parametrize(("focus", "note"), [(True, "Greta's baby weighed 3.4 kg."), (False, "Mum rang from Greta's new flat.")])
def test_a_question_recalls_by_what_it_asks_not_by_the_chatter_around_it(tmp_path, tiny_controller, focus, note):
    agent = make_agent(tmp_path, tiny_controller, chat__max_notes=1, chat__question_focus=focus)
    for text in ["Greta's baby weighed 3.4 kg.", "Mum rang from Greta's new flat."]:
        agent.chat("ann", text)
    # off, "Mum" in the remark after the question is a cue too, and the statement naming both Mum and Greta wins
    reply = list(agent.chat_stream("ann", "Wait, how much did Greta's baby weigh? Mum asked me today."))[-1]
    assert reply.memory["notes"] == [note]
    # a question naming no one is about whom the rest of the message names
    reply = list(agent.chat_stream("ann", "I spoke to Greta. How much did the baby weigh?"))[-1]
    assert "Greta's baby weighed 3.4 kg." in reply.memory["notes"]
    agent.close()


@pytest.mark.parametrize(("on", "note"), [(True, "The Riverline deadline moved to 5 May."),
                                          (False, "The Riverline deadline is stressing me out, the cycling layer is not done.")])
def test_a_question_asking_when_is_answered_from_a_statement_holding_a_date(tmp_path, tiny_controller, on, note):
    agent = make_agent(tmp_path, tiny_controller, chat__max_notes=1, chat__note_answer_kind=on)
    for text in ["The Riverline deadline moved to 5 May.", "The Riverline deadline is stressing me out, the cycling layer is not done."]:
        agent.chat("ann", text)
    reply = list(agent.chat_stream("ann", "When is the Riverline deadline?"))[-1]
    assert reply.memory["notes"] == [note]
    agent.close()
