"""app.py as its own process on a free loopback port: over HTTP, in a real headless Chromium,
and teaching the real model end to end."""

import sqlite3
import subprocess
import sys
import threading

import pytest
from gradio_client import Client

from .conftest import ARTIFACTS, DEFAULT, ROOT, App, free_port, open_chat, wait_for_the_turn_to_end

pytestmark = pytest.mark.e2e


def test_chat_over_http_survives_restart(tmp_path, tiny_config_file):
    db = tmp_path / "app.db"
    app = App(tiny_config_file, db, tmp_path)
    try:
        client = app.wait()
        reply = client.predict("dora", "hello from dora", api_name="/chat")
        assert isinstance(reply, str) and reply
        chunks = list(client.submit("dora", "second message", api_name="/chat"))
        assert len(chunks) > 1 and chunks[-1]  # streamed
        client.predict("eve", "eve's own message", api_name="/chat")
        with pytest.raises(Exception, match="empty"):
            client.predict("dora", "   ", api_name="/chat")
    finally:
        app.stop()

    app = App(tiny_config_file, db, tmp_path)
    try:
        client = app.wait()
        history = client.predict("dora", api_name="/history")
        assert [pair[0] for pair in history] == ["hello from dora", "second message"]
        assert history[0][1] == reply
        assert [pair[0] for pair in client.predict("eve", api_name="/history")] == ["eve's own message"]
    finally:
        app.stop()


def test_bad_config_stops_with_one_clear_line(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("model:\n  source: hub\n")
    result = subprocess.run(
        [sys.executable, "app.py", "--config", str(bad), "--db", str(tmp_path / "x.db"), "--port", str(free_port())],
        cwd=ROOT, capture_output=True, text=True, timeout=120,
    )
    assert result.returncode == 2
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("error:") and "'model.source' must be 'package' or 'local' or 'tiny'" in last


def test_chat_in_the_browser_and_reload(tmp_path, tiny_config_file, page):
    app = App(tiny_config_file, tmp_path / "browser.db", tmp_path)
    try:
        app.wait()
        message = open_chat(page, app, "frank")
        message.fill("hello from the browser")
        message.press("Enter")
        page.get_by_text("hello from the browser").first.wait_for(timeout=60_000)
        wait_for_the_turn_to_end(page)
        page.screenshot(path=str(ARTIFACTS / "chat.png"), full_page=True)

        page.reload()
        page.get_by_text("hello from the browser").first.wait_for(timeout=60_000)
        assert page.get_by_label("Your name").input_value() == "frank"
        page.screenshot(path=str(ARTIFACTS / "chat-after-reload.png"), full_page=True)

        page.get_by_label("Your name").fill("grace")
        page.get_by_label("Your name").press("Enter")
        page.wait_for_timeout(1500)
        assert page.get_by_text("hello from the browser").count() == 0  # grace never sees frank's chat

        message.fill("   ")
        message.press("Enter")
        page.get_by_text("the message is empty").first.wait_for(timeout=30_000)
        wait_for_the_turn_to_end(page)
        assert message.input_value() == "   "  # a refused message stays in the box
    finally:
        app.stop()


@pytest.mark.real_model
def test_teach_chat_ask_then_see_the_memory_and_the_new_token(tmp_path, page):
    app = App(DEFAULT, tmp_path / "teach.db", tmp_path)
    try:
        app.wait()
        message = open_chat(page, app, "hana")
        turns = [
            "Remember: my sister Oriel lives in Vantastad.",
            "How are you today?",
            "I had pasta for lunch.",
            "The weather is lovely this morning.",
            "Where does Oriel live?",
        ]
        for text in turns:
            message.fill(text, timeout=120_000)
            message.press("Enter")
            page.get_by_text(text).first.wait_for(timeout=60_000)
            # the box is locked while the turn runs; the next fill waits for it to unlock
        wait_for_the_turn_to_end(page)
        last_reply = page.locator(".message-row.bot-row, .bot").last
        page.get_by_text("Vantastad").last.wait_for(timeout=60_000)
        page.screenshot(path=str(ARTIFACTS / "teach-and-ask.png"), full_page=True)
        assert "Vantastad" in last_reply.inner_text()

        page.get_by_role("tab", name="Memory").click()
        page.get_by_text("my sister Oriel lives in Vantastad").filter(visible=True).first.wait_for(timeout=30_000)
        page.screenshot(path=str(ARTIFACTS / "memory-tab.png"), full_page=True)

        page.get_by_role("tab", name="Vocabulary").click()
        page.get_by_text("Vantastad").filter(visible=True).first.wait_for(timeout=30_000)
        page.screenshot(path=str(ARTIFACTS / "vocabulary-tab.png"), full_page=True)
    finally:
        app.stop()


def test_two_users_chatting_at_once_never_see_each_others_memories(tmp_path, tiny_config_file):
    db = tmp_path / "two.db"
    app = App(tiny_config_file, db, tmp_path)
    said = {
        "ann": ["The code of my locker is 4417.", "My sister Oriel lives in Vantastad.", "What is the code of my locker?"],
        "bob": ["The code of my locker is 9031.", "My brother Bram works at Quillmere.", "Where does my sister live?"],
    }
    errors: list[BaseException] = []
    try:
        app.wait()

        def talk(user: str) -> None:
            try:
                client = Client(app.url, verbose=False)
                for text in said[user]:
                    client.predict(user, text, api_name="/chat")
            except BaseException as exc:  # noqa: BLE001 (reported in the main thread)
                errors.append(exc)

        threads = [threading.Thread(target=talk, args=(u,)) for u in said]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=300)
        assert not errors, errors
        client = Client(app.url, verbose=False)
        for user, other in (("ann", "bob"), ("bob", "ann")):
            memory = client.predict(user, api_name="/memory")
            texts = {e["text"] for e in memory["engrams"]} | {w["text"] for w in memory["writes"]}
            assert texts and texts <= set(said[user]), (user, texts)
            assert [pair[0] for pair in client.predict(user, api_name="/history")] == said[user]
    finally:
        app.stop()
    # nothing of one user ever reached the other's prompt
    conn = sqlite3.connect(db)
    rows = conn.execute(
        "SELECT u.name, t.meta FROM turns t JOIN conversations c ON c.id = t.conversation_id JOIN users u ON u.id = c.user_id"
    ).fetchall()
    assert len(rows) == 6
    for user, meta in rows:
        other = "bob" if user == "ann" else "ann"
        assert not any(text in meta for text in said[other][:2]), (user, meta)


@pytest.mark.parametrize("host", ["0.0.0.0", "192.0.2.7", "::"])
def test_a_non_loopback_address_without_a_login_is_refused(tmp_path, host, capsys):
    import app

    assert app.main(["--host", host, "--db", str(tmp_path / "x.db")]) == 2
    assert "--auth-file" in capsys.readouterr().err.strip().splitlines()[-1]
    assert not (tmp_path / "x.db").exists()
