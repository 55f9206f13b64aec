"""chatbot/prompt.py: the layout of a prompt, the notes in the system message and the
conversation after it (the agent and the adapter's training both build prompts with it)."""

from __future__ import annotations

from chatbot.prompt import NOTES_HEADER, chat_messages, system_message

SYSTEM = "You are a helpful assistant."


def test_without_notes_the_system_message_is_the_system_prompt():
    assert system_message(SYSTEM, []) == SYSTEM


def test_notes_follow_the_system_prompt_under_their_header_one_per_line_in_order():
    notes = ["Oriel lives in Vantastad.", "Bram works at Quillmere."]
    assert system_message(SYSTEM, notes) == (
        "You are a helpful assistant.\n"
        "\n"
        "What the user told you earlier, oldest first:\n"
        "- Oriel lives in Vantastad.\n"
        "- Bram works at Quillmere."
    )
    assert NOTES_HEADER == "What the user told you earlier, oldest first:"


def test_a_first_message_is_the_system_message_then_the_users_text():
    assert chat_messages(SYSTEM, [], [], "Hello!") == [
        {"role": "system", "content": SYSTEM},
        {"role": "user", "content": "Hello!"},
    ]


def test_history_comes_between_the_system_message_and_the_new_text_oldest_first():
    history = [("Hi.", "Hello!"), ("Oriel lives in Vantastad.", "Noted."), ("Thanks.", "You're welcome.")]
    messages = chat_messages(SYSTEM, ["Oriel lives in Vantastad."], history, "Where does Oriel live?")
    assert messages[0] == {"role": "system", "content": system_message(SYSTEM, ["Oriel lives in Vantastad."])}
    assert messages[1:] == [
        {"role": "user", "content": "Hi."},
        {"role": "assistant", "content": "Hello!"},
        {"role": "user", "content": "Oriel lives in Vantastad."},
        {"role": "assistant", "content": "Noted."},
        {"role": "user", "content": "Thanks."},
        {"role": "assistant", "content": "You're welcome."},
        {"role": "user", "content": "Where does Oriel live?"},
    ]


def test_notes_go_into_the_system_message_only():
    note = "The code of my locker is 4417."
    messages = chat_messages(SYSTEM, [note], [("Hi.", "Hello!")], "What is the code?")
    assert note in messages[0]["content"]
    assert all(note not in m["content"] for m in messages[1:])
