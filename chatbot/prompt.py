"""How memory enters the prompt: the system prompt, the conversation, then the notes just before the new message.

The notes come last so that everything before them (system prompt, earlier turns) is
the same from one turn to the next, and the user's cached keys and values of it are
reused (chatbot/kv_cache.py). The agent and the adapter's training build prompts with
these same functions, so the adapter learns exactly the layout it meets in chat.
"""

from __future__ import annotations

NOTES_HEADER = "What the user told you earlier, oldest first:"
# The adapter's replies when no note answers a question (its training targets); the first is
# the reply the not-told probe gives above GenerationConfig.not_told_above.
NOT_TOLD_REPLIES = ("I'm sorry, I don't remember you telling me that.", "You haven't told me that yet, as far as I remember.")
# The adapter's replies to a statement and to a correction (its training targets); a reply to a
# question never opens with one (GenerationConfig.acknowledge_questions).
ACKNOWLEDGEMENTS = ("Got it, I'll remember that.", "Noted. I'll keep that in mind.", "Thanks, I've made a note of that.",
                    "Understood, I'll remember it.")
CORRECTION_ACKNOWLEDGEMENTS = ("Thanks for the update, I'll remember that.", "Got it, I've updated what I know.",
                               "Noted, I'll remember the change.")


def notes_message(notes: list[str]) -> str:
    """The notes memory recalled, one per line under their header."""
    lines = "\n".join(f"- {n}" for n in notes)
    return f"{NOTES_HEADER}\n{lines}"


def chat_messages(system_prompt: str, notes: list[str], history: list[tuple[str, str]], text: str) -> list[dict[str, str]]:
    """Chat messages: system prompt, earlier (user, reply) pairs, the notes (a system message, when any), the new message."""
    messages = [{"role": "system", "content": system_prompt}]
    for said, replied in history:
        messages.append({"role": "user", "content": said})
        messages.append({"role": "assistant", "content": replied})
    if notes:
        messages.append({"role": "system", "content": notes_message(notes)})
    messages.append({"role": "user", "content": text})
    return messages
