"""chatbot/agent.py: input checks, streaming and storing a turn, history, conversations and the Memory tab's operations."""

import json

import pytest

from chatbot import Agent, MessageError
from chatbot.prompt import NOTES_HEADER

from .conftest import ROOT, make_agent


def test_turn_is_streamed_and_stored(tiny_agent):
    snapshots = [(r.text, r.done) for r in tiny_agent.chat_stream("alice", "hello")]
    assert len(snapshots) > 2 and snapshots[-1][1] and not any(done for _, done in snapshots[:-1])
    history = tiny_agent.history("alice")
    assert [(t.user_text, t.reply) for t in history] == [("hello", snapshots[-1][0])]


def test_chat_returns_the_stored_reply(tiny_agent):
    reply = tiny_agent.chat("alice", "hello")
    assert reply and tiny_agent.history("alice")[-1].reply == reply


@pytest.mark.parametrize("text", ["", "   ", "\n\t "])
def test_empty_messages_are_refused_and_store_nothing(tiny_agent, text):
    with pytest.raises(MessageError, match="empty"):
        tiny_agent.chat("alice", text)
    assert tiny_agent.history("alice") == []


@pytest.mark.parametrize("user", ["", "   ", "x" * 65, "ann\udcff"])
def test_bad_user_names_are_refused(tiny_agent, user):
    with pytest.raises(MessageError, match="user name"):
        tiny_agent.chat(user, "hello")


def test_a_message_that_is_not_text_is_refused(tiny_agent):
    with pytest.raises(MessageError, match="UTF-8"):
        tiny_agent.chat("ann", "caf\udce9")  # how Python hands over the bytes b"caf\xe9" of a command line
    assert tiny_agent.history("ann") == []


def test_huge_message_is_truncated_with_a_note(tiny_agent):
    tiny_agent.cfg.chat.max_message_chars = 100
    final = list(tiny_agent.chat_stream("alice", "a" * 150))[-1]
    assert final.notes and "150" in final.notes[0] and "100" in final.notes[0]
    stored = tiny_agent.history("alice")[-1]
    assert stored.user_text == "a" * 100
    meta = json.loads(tiny_agent.store.db.execute("SELECT meta FROM turns").fetchone()[0])
    assert meta["notes"] == final.notes


def test_a_message_of_too_many_tokens_is_cut_to_half_the_prompt_budget(tiny_agent):
    chat, gen = tiny_agent.cfg.chat, tiny_agent.cfg.generation
    budget = (min(chat.max_prompt_tokens, tiny_agent.controller.max_positions) - gen.max_new_tokens) // 2
    final = list(tiny_agent.chat_stream("alice", "🦜" * 2_000))[-1]  # well under max_message_chars, ~3 tokens each
    assert any("tokens" in note for note in final.notes)
    stored = tiny_agent.history("alice")[-1].user_text
    assert 0 < len(tiny_agent.controller.tokenizer(stored, add_special_tokens=False)["input_ids"]) <= budget
    assert stored == "🦜" * len(stored)  # cut between characters


def test_prompt_carries_history_of_this_user_only(tiny_agent):
    tiny_agent.chat("alice", "my code word is zebra")
    tiny_agent.chat("bob", "my code word is giraffe")
    conv = tiny_agent.store.current_conversation("bob")
    prompt = tiny_agent.controller.tokenizer.decode(tiny_agent.turn.prompt_ids(conv, "what was it?")[0][0])
    assert "giraffe" in prompt and "zebra" not in prompt
    assert [t.user_text for t in tiny_agent.history("alice")] == ["my code word is zebra"]


def test_old_turns_are_dropped_to_fit_the_prompt_budget(tiny_agent):
    for i in range(3):
        tiny_agent.chat("alice", f"message number {i} " + "filler " * 40)
    conv = tiny_agent.store.current_conversation("alice")
    full = tiny_agent.turn.prompt_ids(conv, "last")[0].shape[1]
    tiny_agent.cfg.chat.max_prompt_tokens = full - 20 + tiny_agent.cfg.generation.max_new_tokens
    prompt = tiny_agent.controller.tokenizer.decode(tiny_agent.turn.prompt_ids(conv, "last")[0][0])
    assert "message number 0" not in prompt and "message number 2" in prompt


def test_new_conversation_starts_empty_and_keeps_the_old(tiny_agent):
    tiny_agent.chat("alice", "first")
    old = tiny_agent.store.current_conversation("alice")
    tiny_agent.new_conversation("alice")
    assert tiny_agent.history("alice") == []
    assert [t.user_text for t in tiny_agent.store.turns(old)] == ["first"]


def test_from_config_overrides_db(tmp_path):
    agent = Agent.from_config(ROOT / "configs" / "tiny.yaml", db=tmp_path / "x.db")
    try:
        assert agent.store.path == tmp_path / "x.db"
    finally:
        agent.close()


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

    agent = make_agent(tmp_path, tiny_controller)
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


def test_a_bad_import_file_is_refused_and_changes_nothing(tmp_path, tiny_controller):
    from chatbot.memory_file import MemoryFileError, read_memory_file

    agent = make_agent(tmp_path, tiny_controller)
    agent.chat("ann", "Oriel lives in Vantastad.")
    data = json.loads(agent.export_memory("ann").to_json())
    data["engrams"][0]["links"] = {"77": 1}  # every way a file can be bad: tests/test_memory_file.py
    before = agent.store.db.execute("SELECT COUNT(*), SUM(LENGTH(vector)) FROM engrams").fetchone()
    with pytest.raises(MemoryFileError, match="links"):
        agent.import_memory("ann", read_memory_file(json.dumps(data)))
    assert agent.store.db.execute("SELECT COUNT(*), SUM(LENGTH(vector)) FROM engrams").fetchone() == before
    agent.close()


@pytest.mark.parametrize("checkpoint", ["missing.pt", "broken.pt"])
def test_a_start_that_fails_on_a_checkpoint_never_touches_the_database(tmp_path, tiny_config_file, checkpoint):
    import sqlite3

    from chatbot import ModelLoadError

    (tmp_path / "broken.pt").write_bytes(b"not a checkpoint")
    config = tmp_path / "c.yaml"
    text = tiny_config_file.read_text(encoding="utf-8").replace('checkpoint: ""', f"checkpoint: {tmp_path / checkpoint}")
    config.write_text(text, encoding="utf-8")
    fresh, journal = tmp_path / "new.db", tmp_path / "journal.db"
    conn = sqlite3.connect(journal)  # a database in rollback-journal mode, as another program may leave it
    conn.execute("CREATE TABLE t (x)")
    conn.commit()
    conn.close()
    before = journal.read_bytes()
    for db in (fresh, journal):
        with pytest.raises(ModelLoadError, match="neural_memory.checkpoint"):
            Agent.from_config(config, db=db)
    assert not fresh.exists() and journal.read_bytes() == before


def test_old_turns_leave_in_blocks_so_the_prompts_start_stays_put(tiny_agent):
    chat = tiny_agent.cfg.chat
    chat.history_turns, chat.history_drop = 4, 2
    conv = tiny_agent.store.current_conversation("alice")
    starts = []
    for i in range(9):
        tiny_agent.chat("alice", f"message number {i}")
        prompt = tiny_agent.controller.tokenizer.decode(tiny_agent.turn.prompt_ids(conv, "next")[0][0])
        starts.append(next(k for k in range(i + 1) if f"message number {k}" in prompt))
        assert f"message number {i}" in prompt and prompt.count("message number") <= chat.history_turns
    # the oldest shown turn moves two at a time, never one: the prompt's start is reused in between
    assert starts == [0, 0, 0, 0, 2, 2, 4, 4, 6]


def test_a_notes_span_is_found_in_the_notes_even_when_said_in_an_earlier_turn(tiny_agent):
    said = "Oriel lives in Vantastad."
    tiny_agent.chat("alice", said)
    conv = tiny_agent.store.current_conversation("alice")
    ids, (span,) = tiny_agent.turn.prompt_ids(conv, "Where does Oriel live?", [said])
    text = tiny_agent.controller.tokenizer.decode(ids[0])
    before_span = tiny_agent.controller.tokenizer.decode(ids[0][: span[0]])
    assert text.count(said) == 2 and NOTES_HEADER in before_span
    assert tiny_agent.controller.tokenizer.decode(ids[0][span[0]:span[1]]).strip() == said


def test_a_conversations_next_turn_prefills_only_what_is_new(tiny_agent):
    for text in ["hello there", "my code word is zebra", "what was it?"]:
        tiny_agent.chat("alice", text)
    conv = tiny_agent.store.current_conversation("alice")
    metas = [json.loads(row[0]) for row in tiny_agent.store.db.execute("SELECT meta FROM turns WHERE conversation_id = ? ORDER BY id", [conv])]
    assert metas[0]["reused_tokens"] == 0
    # the first turn's whole prompt starts the later ones (the notes come after the history): it comes from the cache
    assert all(meta["reused_tokens"] >= metas[0]["prompt_tokens"] for meta in metas[1:])
    tiny_agent.clear_memory("alice")  # forgetting drops what the cache held
    tiny_agent.chat("alice", "and now?")
    last = json.loads(tiny_agent.store.db.execute("SELECT meta FROM turns ORDER BY id DESC").fetchone()[0])
    assert last["reused_tokens"] == 0


def test_memory_tab_marks_a_statement_a_later_one_corrected(tmp_path, tiny_controller):
    from ui.memory_tab import engram_rows

    agent = make_agent(tmp_path, tiny_controller)
    for text in ["The boiler code is 7731.", "The gate code is 1200.", "Correction: 4471, not 7731."]:
        agent.chat("ann", text)
    view = agent.memory_view("ann")
    boiler, gate, correction = view.engrams
    assert view.corrected == {boiler.id: (correction.id, "The boiler code is 4471.")}
    rows = {row[0]: row[-1] for row in engram_rows(view.engrams, view.corrected)}
    assert rows == {boiler.id: f"by #{correction.id}: The boiler code is 4471.", gate.id: "", correction.id: ""}
    assert agent.memory_view("bob").corrected == {}  # another user's statements correct nothing of ann's
    agent.close()
