"""Whether a reply about what the user told states only values the user said.

The model, shown a note that does not answer, often answers anyway with a number or code
of its own making ("Deepa's phone number is 153-299-0999."). A value the user never
wrote anywhere cannot be what they told: such a reply to a question about their own
world is replaced by saying it was not told. Values are the reply's words holding a
digit (numbers, codes, times, phone numbers, versions, amounts) and its e-mail and web
addresses; names are left alone (a made-up name cannot be told from a common word).

A reply must also hold a value of the kind its question asks for (`wrong_kind`): "what
time" a clock time, "when" a date, day or time, a phone number six digits or more, "how
many" or "how much" a quantity. The model, shown a note about something else, answers
with whatever it holds ("Jonah's football training is TBC.", "Deepa's phone number is
10:50.").
"""

from __future__ import annotations

import re
from collections.abc import Collection, Iterable

from text import is_question, split_sentences

# A whitespace-separated chunk holding a digit, or an address; trailing punctuation is not part of it.
_VALUE = re.compile(r"[^\s]*\d[^\s]*|[\w.+-]+@[\w-]+(?:\.[\w-]+)+|\b[\w-]+\.(?:com|org|net|dev|io|gg|co|uk|de)\b(?:/\S*)?")
_EDGE = re.compile(r"^[\"'(\[{]+|[\"')\]}.,;:!?]+$")
_DIGITS = re.compile(r"\d+")
# Words by which a question is about the asker's own world (their codes, plans, people), not general knowledge.
_FIRST_PERSON = re.compile(r"\b(i|me|my|mine|we|us|our|ours|i'm|i've|i'd)\b", re.IGNORECASE)
# How the adapter's replies open when they answer from memory.
_FROM_MEMORY = re.compile(r"^\s*(you told me|you said|your\b)", re.IGNORECASE)


_NUMBER_WORDS = """zero one two three four five six seven eight nine ten eleven twelve thirteen fifteen twenty thirty forty
fifty sixty seventy eighty ninety hundred thousand million dozen half couple few several none""".split()
_ORDINALS = """first second third fourth fifth sixth seventh eighth ninth tenth eleventh twelfth thirteenth fourteenth fifteenth
sixteenth seventeenth eighteenth nineteenth twentieth thirtieth""".split()
_CALENDAR = """monday tuesday wednesday thursday friday saturday sunday weekend weekday january february march april may june
july august september october november december jan feb mar apr jun jul aug sep sept oct nov dec today tomorrow tonight
yesterday morning afternoon evening night week month year day spring summer autumn fall winter christmas easter noon
midnight next last ago soon later""".split()


def _any_word(words: list[str]) -> str:
    return r"\b(?:" + "|".join(words) + r")s?\b"


_HOURS = "one two three four five six seven eight nine ten eleven twelve".split()
_CLOCK = re.compile(r"\b\d{1,2}[:.h]\d{2}\b|\b\d{1,2}\s*(?:am|pm|a\.m\.|p\.m\.)|\b(?:noon|midday|midnight|o'clock)\b"
                    r"|\b(?:quarter|half|\d+|twenty|ten|five)\s+(?:past|to)\b"
                    r"|\b(?:" + "|".join(_HOURS) + r")\s+(?:thirty|fifteen|forty|in the (?:morning|afternoon|evening)|at night)\b",
                    re.IGNORECASE)
_QUANTITY = re.compile(r"\d|" + _any_word(_NUMBER_WORDS), re.IGNORECASE)
_DATE = re.compile(r"\d|" + _any_word(_CALENDAR + _ORDINALS), re.IGNORECASE)
# Six digits or more, in groups: the shortest phone numbers; a clock time or a price is not one.
_PHONE_DIGITS = re.compile(r"\+?\d(?:[\s().-]{0,2}\d){5,}")
# (what a question asks for, the value a reply to it must hold), first match wins
_ASKED_KINDS = [
    (re.compile(r"\b(?:at )?what time\b", re.IGNORECASE), _CLOCK),
    # "when" among a question's first three words: later it opens a clause ("what does it mean when ...")
    (re.compile(r"^\W*(?:[\w']+\W+){0,2}when\b|\b(?:what|which) (?:day|date)\b", re.IGNORECASE), _DATE),
    (re.compile(r"\b(?:phone|mobile|cell|telephone) number\b|\bnumber to (?:call|ring|text)\b", re.IGNORECASE), _PHONE_DIGITS),
    (re.compile(r"\bhow (?:much|many|long|far|old|big|heavy|tall)\b|\b(?:price|cost|fee)\b", re.IGNORECASE), _QUANTITY),
]


def asked_kind(message: str) -> re.Pattern | None:
    """What a value of the kind the question in `message` asks for looks like (a clock time, a
    date or day, a phone number, a quantity); None when it asks for no such kind. Only the
    asking sentences are read: "when" in "I forgot it when the postman asked" asks for nothing."""
    for sentence in (s for s in split_sentences(message) if is_question(s)):
        for asks, value in _ASKED_KINDS:
            if asks.search(sentence):
                return value
    return None


def wrong_kind(message: str, reply: str) -> bool:
    """Whether `reply` lacks a value of the kind the question in `message` asks for (`asked_kind`)."""
    kind = asked_kind(message)
    return kind is not None and not kind.search(reply)


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
