"""chatbot/__main__.py: one turn from the command line; the reply on stdout, bad input as one line and exit code 2."""

import subprocess
import sys

from storage import Store

from .conftest import ROOT


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


def test_cli_message_of_bytes_that_are_not_utf8_is_one_clear_line(tmp_path, tiny_config_file):
    args = [sys.executable, "-m", "chatbot", "say", "--config", str(tiny_config_file), "--db", str(tmp_path / "c.db"),
            "--user", "x", b"caf\xe9"]
    result = subprocess.run(args, capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert result.returncode == 2 and result.stderr.strip().splitlines()[-1] == "error: the message is not valid UTF-8 text"
