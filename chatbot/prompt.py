"""How memory enters the prompt: the notes in the system message, then the conversation.

The agent and the adapter's training build prompts with these same functions, so the
adapter learns exactly the layout it meets in chat.
"""

from __future__ import annotations

NOTES_HEADER = "What the user told you earlier, oldest first:"


def system_message(system_prompt: str, notes: list[str]) -> str:
    """The system prompt, followed by the notes memory recalled (if any), one per line."""
    if not notes:
        return system_prompt
    lines = "\n".join(f"- {n}" for n in notes)
    return f"{system_prompt}\n\n{NOTES_HEADER}\n{lines}"


def chat_messages(system_prompt: str, notes: list[str], history: list[tuple[str, str]], text: str) -> list[dict[str, str]]:
    """Chat messages: system (with notes), earlier (user, reply) pairs, the new message."""
    messages = [{"role": "system", "content": system_message(system_prompt, notes)}]
    for said, replied in history:
        messages.append({"role": "user", "content": said})
        messages.append({"role": "assistant", "content": replied})
    messages.append({"role": "user", "content": text})
    return messages
