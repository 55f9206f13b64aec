"""chatbot/prompt.py: the layout of a prompt: the system prompt, the conversation, the
notes, the new message (the agent and the adapter's training both build prompts with it)."""

from __future__ import annotations

from chatbot.prompt import NOTES_HEADER, chat_messages, notes_message

SYSTEM = "You are a helpful assistant."


def test_notes_are_one_per_line_in_order_under_their_header():
    notes = ["Oriel lives in Vantastad.", "Bram works at Quillmere."]
    assert notes_message(notes) == (
        "What the user told you earlier, oldest first:\n"
        "- Oriel lives in Vantastad.\n"
        "- Bram works at Quillmere."
    )
    assert NOTES_HEADER == "What the user told you earlier, oldest first:"


def test_a_first_message_without_notes_is_the_system_prompt_then_the_users_text():
    assert chat_messages(SYSTEM, [], [], "Hello!") == [
        {"role": "system", "content": SYSTEM},
        {"role": "user", "content": "Hello!"},
    ]


def test_history_then_notes_then_the_new_text():
    history = [("Hi.", "Hello!"), ("Oriel lives in Vantastad.", "Noted.")]
    messages = chat_messages(SYSTEM, ["Oriel lives in Vantastad."], history, "Where does Oriel live?")
    assert messages == [
        {"role": "system", "content": SYSTEM},
        {"role": "user", "content": "Hi."},
        {"role": "assistant", "content": "Hello!"},
        {"role": "user", "content": "Oriel lives in Vantastad."},
        {"role": "assistant", "content": "Noted."},
        {"role": "system", "content": notes_message(["Oriel lives in Vantastad."])},
        {"role": "user", "content": "Where does Oriel live?"},
    ]


def test_what_comes_before_the_notes_does_not_depend_on_them():
    history = [("Hi.", "Hello!")]
    with_notes = chat_messages(SYSTEM, ["The code of my locker is 4417."], history, "What is the code?")
    without = chat_messages(SYSTEM, [], history, "What is the code?")
    assert with_notes[:3] == without[:3]
