"""Whether a reply about what the user told states only values the user said.

The model, shown a note that does not answer, often answers anyway with a number or code
of its own making ("Deepa's phone number is 153-299-0999."). A value the user never
wrote anywhere cannot be what they told: such a reply to a question about their own
world is replaced by saying it was not told. Values are the reply's words holding a
digit (numbers, codes, times, phone numbers, versions, amounts) and its e-mail and web
addresses; names are left alone (a made-up name cannot be told from a common word).
"""

from __future__ import annotations

import re
from collections.abc import Collection, Iterable

# A whitespace-separated chunk holding a digit, or an address; trailing punctuation is not part of it.
_VALUE = re.compile(r"[^\s]*\d[^\s]*|[\w.+-]+@[\w-]+(?:\.[\w-]+)+|\b[\w-]+\.(?:com|org|net|dev|io|gg|co|uk|de)\b(?:/\S*)?")
_EDGE = re.compile(r"^[\"'(\[{]+|[\"')\]}.,;:!?]+$")
_DIGITS = re.compile(r"\d+")
# Words by which a question is about the asker's own world (their codes, plans, people), not general knowledge.
_FIRST_PERSON = re.compile(r"\b(i|me|my|mine|we|us|our|ours|i'm|i've|i'd)\b", re.IGNORECASE)
# How the adapter's replies open when they answer from memory.
_FROM_MEMORY = re.compile(r"^\s*(you told me|you said|your\b)", re.IGNORECASE)


def claimed_values(reply: str) -> list[str]:
    """The values a reply states: chunks with a digit ("07700 552 018" as one), e-mail and
    web addresses, in order."""
    found = (_EDGE.sub("", m.group(0)) for m in _VALUE.finditer(_joined(reply)))
    return list(dict.fromkeys(v for v in found if v))


def about_the_user(question: str, reply: str, named: Collection[str] = ()) -> bool:
    """Whether `question` asks about what the user told: it speaks of them ("my", "we"),
    names someone they have named before (`named`), or the reply answers as from memory."""
    return bool(named) or bool(_FIRST_PERSON.search(question)) or bool(_FROM_MEMORY.match(reply))


def ungrounded(reply: str, said: Iterable[str]) -> list[str]:
    """The values `reply` states that appear in nothing the user `said`.

    A number counts as said when its digits, in order, are within a number they wrote,
    separators aside ("07700552018" for "07700 552 018", "20" for "the 20th", "2:45" for
    "2:45 p.m."; not "192.168.0.1" for "192.168.40.17"); an address when they wrote it.
    """
    values = claimed_values(reply)
    if not values:
        return []
    texts = [_joined(t.lower()) for t in said]
    numbers = {"".join(_DIGITS.findall(chunk)) for t in texts for chunk in t.split()} - {""}
    everything = " ".join(texts)

    def said_it(value: str) -> bool:
        digits = "".join(_DIGITS.findall(value))
        if not digits:
            return value.lower() in everything
        return any(digits in n for n in numbers)

    return [v for v in values if not said_it(v)]


def _joined(text: str) -> str:
    """`text` with the spaces between digit groups taken out ("07700 552 018" -> "07700552018")."""
    return re.sub(r"(?<=\d)\s+(?=\d)", "", text)
