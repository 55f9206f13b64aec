import json
import subprocess
import sys

import pytest

from chatbot import Agent, MessageError
from memory.store import Store

from .conftest import ROOT


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


@pytest.mark.parametrize("user", ["", "   ", "x" * 65])
def test_bad_user_names_are_refused(tiny_agent, user):
    with pytest.raises(MessageError, match="user name"):
        tiny_agent.chat(user, "hello")


def test_huge_message_is_truncated_with_a_note(tiny_agent):
    tiny_agent.cfg.chat.max_message_chars = 100
    final = list(tiny_agent.chat_stream("alice", "a" * 150))[-1]
    assert final.notes and "150" in final.notes[0] and "100" in final.notes[0]
    stored = tiny_agent.history("alice")[-1]
    assert stored.user_text == "a" * 100
    meta = json.loads(tiny_agent.store.db.execute("SELECT meta FROM turns").fetchone()[0])
    assert meta["notes"] == final.notes


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


def run_cli(*args, cwd=ROOT):
    return subprocess.run(
        [sys.executable, "-m", "chatbot", *args], capture_output=True, text=True, cwd=cwd, timeout=300
    )


def test_cli_prints_only_the_reply_and_shares_the_database(tmp_path, tiny_config_file):
    db = tmp_path / "cli.db"
    result = run_cli("say", "--config", str(tiny_config_file), "--db", str(db), "--user", "carol", "hello")
    assert result.returncode == 0, result.stderr
    store = Store(db)
    turns = store.turns(store.current_conversation("carol"))
    assert [t.user_text for t in turns] == ["hello"]
    assert result.stdout == turns[0].reply + "\n"
    store.close()


def test_cli_bad_config_is_one_clear_line(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("chat:\n  histroy_turns: 2\n")
    result = run_cli("say", "--config", str(bad), "--user", "x", "hi")
    assert result.returncode == 2 and result.stdout == ""
    assert result.stderr.strip().splitlines()[-1].startswith("error:") and "chat.histroy_turns" in result.stderr


def test_cli_corrupt_database_is_one_clear_line(tmp_path, tiny_config_file):
    db = tmp_path / "broken.db"
    db.write_bytes(b"not a database at all" * 50)
    result = run_cli("say", "--config", str(tiny_config_file), "--db", str(db), "--user", "x", "hi")
    assert result.returncode == 2 and "corrupt" in result.stderr and result.stdout == ""


def test_cli_empty_message(tmp_path, tiny_config_file):
    result = run_cli("say", "--config", str(tiny_config_file), "--db", str(tmp_path / "c.db"), "--user", "x", "  ")
    assert result.returncode == 2 and "empty" in result.stderr
