"""Teaching the chatbot end to end: in a real browser on the real model, and over HTTP with two users at once."""

import sqlite3
import threading

import pytest
from gradio_client import Client

from .conftest import DEFAULT
from .test_app_e2e import App
from .test_browser import ARTIFACTS, page, wait_for_the_turn_to_end  # noqa: F401  (page is the fixture)

pytestmark = pytest.mark.e2e


@pytest.mark.real_model
def test_teach_chat_ask_then_see_the_memory_and_the_new_token(tmp_path, page):  # noqa: F811
    ARTIFACTS.mkdir(exist_ok=True)
    app = App(DEFAULT, tmp_path / "teach.db", tmp_path)
    try:
        app.wait()
        page.goto(app.url, wait_until="networkidle")
        page.get_by_label("Your name").fill("hana")
        page.get_by_label("Your name").press("Enter")
        message = page.get_by_role("textbox", name="Message")
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
