"""The learning turn on the tiny model: what each memory stage stores, forgets, replays and restores.

The tiny model's memory is untrained, so these tests check the mechanics (what is
written where, isolation, persistence, switches); recall itself is tested on the
real model with the shipped checkpoint (test_real_model.py, bench/teach_recall.py).
"""

from __future__ import annotations

import json

import pytest
import torch

from chatbot import Agent, load_config
from chatbot.turn import MEMORY_STAGES
from chatbot.notes import answer_words, choose_notes, cue_words, rank_notes, without_names
from memory.memoria import Engram, EngramType
from memory.store import Store

from .conftest import TINY


def make_agent(tmp_path, controller, db="chat.db", **sections) -> Agent:
    cfg = load_config(TINY)
    cfg.vocab.enabled = False  # these tests watch the memories; the vocabulary has its own
    for dotted, value in sections.items():
        section, key = dotted.split("__")
        setattr(getattr(cfg, section), key, value)
    return Agent(cfg, controller, Store(tmp_path / db))


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

    never = make_agent(tmp_path, tiny_controller, db="never.db", consolidation__supersede_similarity=1.5)
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


def test_memory_tab_operations_forget_one_and_clear_all(tmp_path, tiny_controller):
    agent = make_agent(tmp_path, tiny_controller)
    for text in ["Oriel lives in Vantastad.", "Bram works at Quillmere.", "Where does Bram work?"]:
        agent.chat("ann", text)
    view = agent.memory_view("ann")
    assert [e.text for e in view.engrams] == ["Oriel lives in Vantastad.", "Bram works at Quillmere.", "Where does Bram work?"]
    assert view.stats["writes"] == 2 and len(view.reads) == 1 and view.reads[0]["question"] == "Where does Bram work?"
    oriel = view.engrams[0].id
    assert agent.forget_engram("ann", oriel) == ["Oriel lives in Vantastad."]
    again = make_agent(tmp_path, tiny_controller)  # what the store holds after the button
    view = again.memory_view("ann")
    assert oriel not in {e.id for e in view.engrams} and [w.forgotten for w in view.writes] == [True, False]
    assert again.clear_memory("ann") == 3  # two engrams and one live write
    assert again.memory_view("ann").engrams == [] and all(w.forgotten for w in again.memory_view("ann").writes)
    agent.close()
    again.close()


def test_export_then_import_restores_the_memories_for_another_user(tmp_path, tiny_controller):
    from chatbot.memory_file import read_memory_file

    agent = make_agent(tmp_path, tiny_controller, consolidation__supersede_similarity=1.5)
    for text in ["Oriel lives in Vantastad.", "Bram works at Quillmere.", "Where does Oriel live?"]:
        agent.chat("ann", text)
    agent.forget_engram("ann", 1)
    exported = agent.export_memory("ann").to_json()
    file = read_memory_file(exported)
    assert file.user == "ann" and [e.text for e in file.engrams] == ["Oriel lives in Vantastad.", "Where does Oriel live?"]
    assert [(w.text, w.forgotten) for w in file.writes] == [("Oriel lives in Vantastad.", False), ("Bram works at Quillmere.", True)]

    assert agent.import_memory("zoe", file) == (2, 1)
    fresh = make_agent(tmp_path, tiny_controller)
    view = fresh.memory_view("zoe")
    ann = agent.memories.memoria.engrams("ann")
    assert [(e.id, e.type, e.text, e.lifespan, e.age, e.fire_count, e.links) for e in view.engrams] == [
        (e.id, e.type, e.text, e.lifespan, e.age, e.fire_count, e.links) for e in ann
    ]
    assert [w.text for w in view.writes] == ["Oriel lives in Vantastad."] and view.writes[0].engram == 0
    assert fresh.memory_view("ann").engrams == ann  # the exporting user is untouched
    agent.close()
    fresh.close()


@pytest.mark.parametrize(
    "mutate, message",
    [
        (lambda d: d.update(format="other"), "format"),
        (lambda d: d["engrams"][0].update(type="eternal"), "type"),
        (lambda d: d["engrams"][0].update(lifespan=float("nan")), "lifespan"),
        (lambda d: d["engrams"][0].update(links={"77": 1}), "links"),
        (lambda d: d["engrams"][0].update(text=""), "text"),
        (lambda d: d["engrams"][0].update(extra="__import__('os').system('rm -rf /')"), "unknown fields"),
        (lambda d: d["writes"][0].update(superseded_by=0), "superseded_by"),
        (lambda d: d.pop("writes"), "lacks"),
    ],
)
def test_a_bad_import_file_is_refused_and_changes_nothing(tmp_path, tiny_controller, mutate, message):
    from chatbot.memory_file import MemoryFileError, read_memory_file

    agent = make_agent(tmp_path, tiny_controller)
    agent.chat("ann", "Oriel lives in Vantastad.")
    data = json.loads(agent.export_memory("ann").to_json())
    mutate(data)
    before = agent.store.db.execute("SELECT COUNT(*), SUM(LENGTH(vector)) FROM engrams").fetchone()
    with pytest.raises(MemoryFileError, match=message):
        agent.import_memory("ann", read_memory_file(json.dumps(data)))
    assert agent.store.db.execute("SELECT COUNT(*), SUM(LENGTH(vector)) FROM engrams").fetchone() == before
    with pytest.raises(MemoryFileError, match="not JSON"):
        read_memory_file(b"\x80not json")
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


def notes_of(agent, reminded, closeness, cues=()):
    return choose_notes([], reminded, closeness, cues, None, agent.cfg.chat, from_reads=False)


@pytest.mark.parametrize(
    ("margin", "closeness", "expected"),
    [
        (0.0, [0.80, 0.75, 0.60], ["Bram works at Quillmere."]),  # closest only
        (0.1, [0.80, 0.75, 0.60], ["Actually, Bram now works at Zentrifol."]),  # the newer one within the margin
        (0.1, [0.80, 0.65, 0.60], ["Bram works at Quillmere."]),  # a later statement too far off loses
    ],
)
def test_notes_prefer_the_newest_of_the_nearly_closest(tmp_path, tiny_controller, margin, closeness, expected):
    agent = make_agent(tmp_path, tiny_controller, chat__max_notes=1, chat__note_recency_margin=margin)
    texts = ["Bram works at Quillmere.", "Actually, Bram now works at Zentrifol.", "Where does Bram work?"]
    reminded = [Engram(i, EngramType.SHORTTERM, t, i + 1, 10.0, 1, 1, {}) for i, t in enumerate(texts)]
    closeness = [*closeness[:2], 0.95]  # the earlier question is closest but never a note
    assert notes_of(agent, reminded, closeness)[0] == expected
    agent.close()


def test_notes_are_the_statements_naming_whom_the_question_is_about(tmp_path, tiny_controller):
    agent = make_agent(tmp_path, tiny_controller, chat__max_notes=1, chat__note_recency_margin=0.1, chat__cue_limit=8)
    texts = ["Kora works at Quillmere.", "Bram works at Zentrifol.", "Bram's sister is Kora.", "Where does Bram work?"]
    reminded = [Engram(i, EngramType.SHORTTERM, t, i + 1, 10.0, 1, 1, {}) for i, t in enumerate(texts)]
    closeness = [0.9, 0.7, 0.3, 0.95]  # a look-alike fact about someone else is the closest
    assert notes_of(agent, reminded, closeness)[0] == ["Kora works at Quillmere."]  # no names given
    assert notes_of(agent, reminded, closeness, ("bram",))[0] == ["Bram works at Zentrifol."]
    # among the statements naming Bram, the newest within the margin of the closest of them
    closeness = [0.9, 0.7, 0.65, 0.95]
    assert notes_of(agent, reminded, closeness, ("bram",))[0] == ["Bram's sister is Kora."]
    agent.close()


def test_a_question_recalls_by_name_what_was_said_among_look_alike_facts(tmp_path, tiny_controller):
    # Memoria reminds the closest short-term engram: the same question asked before
    agent = make_agent(tmp_path, tiny_controller, memoria__vector="sentence", memoria__num_reminded_stm=1,
                       chat__max_notes=1, chat__cue_limit=8, chat__note_recency_margin=0.15)
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


def test_a_later_statement_like_an_earlier_one_supersedes_it_as_the_note():
    texts = ["Bram lives in Vantastad.", "Bram works at Zentrifol.", "Bram moved to Quillmere.", "Kora lives in Oldport."]
    vectors = torch.nn.functional.normalize(torch.tensor([[1.0, 0.0, 0.1], [0.0, 1.0, 0.1], [0.8, 0.2, 0.3], [1.0, 0.0, 0.0]]), dim=-1)
    candidates = [(i, t, close) for i, (t, close) in enumerate(zip(texts, [0.85, 0.40, 0.60, 0.9]))]
    order = rank_notes(candidates, ("bram",), 0.0, vectors=vectors, link=0.9)
    # the move supersedes the home it is like, as close to the question as it; the fact it replaced goes last
    assert [texts[i] for i in order] == [texts[2], texts[1], texts[3], texts[0]]
    assert [texts[i] for i in rank_notes(candidates, ("bram",), 0.0)] == [texts[0], texts[2], texts[1], texts[3]]
    # a statement supersedes only one naming the same people, and only for a question that names someone
    assert rank_notes(candidates, ("bram", "kora"), 0.0, vectors=vectors, link=0.9) == [3, 2, 1, 0]
    assert rank_notes(candidates, (), 0.0, vectors=vectors, link=0.9) == [3, 0, 2, 1]
    # asked about work, the closest chain is the work fact, which nothing superseded
    candidates = [(i, t, close) for i, (t, close) in enumerate(zip(texts, [0.5, 0.8, 0.45, 0.2]))]
    assert texts[rank_notes(candidates, ("bram",), 0.0, vectors=vectors, link=0.9)[0]] == texts[1]


@pytest.mark.parametrize(
    ("link", "margin", "note", "work_note"),
    [
        (0.55, 0.0, "Bram reset the locker code to 8290.", "Bram is on the staff of Zentrifol."),
        # the rule before: newest within 0.15 of the closest, wrong both times
        (2.0, 0.15, "The combination for Bram's locker is 4417.", "The combination for Bram's locker is 4417."),
    ],
)
def test_a_correction_phrased_far_from_the_question_is_the_note(tmp_path, tiny_controller, link, margin, note, work_note):
    agent = make_agent(tmp_path, tiny_controller, memoria__vector="sentence", chat__max_notes=1, chat__cue_limit=8,
                       chat__note_link_similarity=link, chat__note_recency_margin=margin)
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
    ("unnamed", "margin", "pet_note"),
    [
        (True, 0.1, "Kedar looks after a rabbit named Peliavale."),
        # with the name in, every statement about Kedar is about as close: the newest within 0.15 wins
        (False, 0.15, "The place Kedar calls home is Halucrest."),
    ],
)
def test_of_several_facts_about_someone_the_note_is_the_one_asked_about(tmp_path, tiny_controller, unnamed, margin, pet_note):
    agent = make_agent(tmp_path, tiny_controller, memoria__vector="sentence", chat__max_notes=1, chat__cue_limit=8,
                       chat__note_link_similarity=0.6, chat__note_recency_margin=margin, chat__note_unnamed_closeness=unnamed)
    for text in ["Kedar is on the staff of Sileholm.", "Kedar looks after a rabbit named Peliavale.",
                 "The place Kedar calls home is Halucrest.", "The code of Kedar's locker is 4417."]:
        agent.chat("ann", text)
    # MiniLM to the pet question, names in: work 0.54, pet 0.65, home 0.55; masked: 0.13, 0.41, 0.24
    reply = list(agent.chat_stream("ann", "What is the name of Kedar's pet?"))[-1]
    assert reply.memory["notes"] == [pet_note]
    reply = list(agent.chat_stream("ann", "Where does Kedar live?"))[-1]
    assert reply.memory["notes"] == ["The place Kedar calls home is Halucrest."]
    agent.close()


def test_without_names_masks_whole_words_only():
    assert without_names("What company pays Kedar? kedar's code is 4417, not 44170 or Kedarx.", ("kedar", "4417")) == (
        "What company pays someone? someone's code is someone, not 44170 or Kedarx."
    )


@pytest.mark.parametrize(
    ("message", "cues"),
    [
        ("Where does Oriel live?", ("oriel",)),
        ("What's Alahia's pet's name?", ("alahia",)),
        ("Remind me of Maize's locker code.", ("maize",)),
        ("Tell me what Bram and Kora said.", ("bram", "kora")),
        ("Remember: my PIN is 4411.", ("pin", "4411")),
        ("I went for a long walk yesterday.", ()),
        ("How are you? What do you know?", ()),
    ],
)
def test_cue_words_are_the_names_and_numbers_a_message_mentions(message, cues):
    assert cue_words(message) == cues


@pytest.mark.parametrize(
    ("message", "notes", "expected"),
    [
        ("Where does Oriel live?", ["Oriel moved to Quillmere.", "Bram works at Bobcorp."], ["moved", "to", "Quillmere"]),
        ("What's Oriel's locker code?", ["The code of Oriel's locker is 4411."], ["The", "of", "is", "4411"]),
        ("Oriel moved to Quillmere.", ["Oriel lives in Vantastad."], []),  # a statement answers nothing
        ("How are you today?", ["Oriel moved to Quillmere."], []),  # asks about no one
        ("Where does Bram work?", ["Oriel moved to Quillmere."], []),  # the notes are about someone else
    ],
)
def test_answer_words_come_from_the_notes_about_whom_a_question_asks(message, notes, expected):
    assert answer_words(message, notes) == expected
