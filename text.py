"""The one definition of a word, a sentence and a question that every part reads text by."""

from __future__ import annotations

import re
from collections.abc import Iterable

import pysbd
import snowballstemmer

# Addresses are one word each, whatever punctuation they hold: a value to copy whole.
_URL = r"(?:https?://|www\.)[^\s<>\"']*[^\s<>\"'.,;:!?)\]]"
_EMAIL = r"[^\W_][\w.+-]*@[^\W_][\w-]*(?:\.[\w-]+)+"
ADDRESS = re.compile(f"{_URL}|{_EMAIL}")
# A word is a run of letters and digits, kept whole across a hyphen ("88-21", "Saint-Denis")
# and across . : , / between digits ("9:15", "2.5", "1,200", "12/03"): a code, a time or an
# amount is one value. An apostrophe splits ("Oriel's" is "Oriel" and "s"), so the name is a word.
WORD = re.compile(f"{_URL}|{_EMAIL}|" + r"[^\W_]+(?:(?:-|(?<=\d)[.:,/](?=\d))[^\W_]+)*")
_PART = re.compile(r"[^\W_]+")
# Sentence boundaries by pysbd's rules (abbreviations, initials, decimals, times: "Dr.
# Okafor moved it to 9:15 a.m." is one sentence); addresses are hidden from it first,
# since it ends a sentence at a URL's "?".
_SEGMENTER = pysbd.Segmenter(language="en", clean=False, char_span=True)
_STEMMER = snowballstemmer.stemmer("english")
# Imperative questions: "Tell me where Oriel lives." asks as much as "Where does Oriel live?".
# A question or request to tell, also after a spoken opener ("ok and what day does Ilka
# get here", "wait whats the code") and without the apostrophe texting drops ("whats").
_ASKING = re.compile(
    r"^\s*(?:(?:ok|okay|so|and|but|oh|hey|wait|um+|uh+|also|sorry|btw|yo|well|hmm+|hi|hello|quick question|quick one"
    r"|one more thing)\W+)*"
    r"(tell me|remind me|read me|give me|name|recall|do you (know|remember)|what|whats|where|wheres|who|whos|whom|whose"
    r"|which|when|whens|why|how|hows)\b",
    re.IGNORECASE)

# "..., ok?", "..., right?": a tag asks to confirm what the sentence states.
_TAGGED = re.compile(r",\s*(?:ok|okay|right|yeah|yes|alright|all right|got it|understood|remember)\s*\?+\s*$", re.IGNORECASE)
# A sentence opening with an auxiliary asks ("Is it 4417, right?").
_AUXILIARY = re.compile(r"^\s*(?:is|are|was|were|do|does|did|can|could|will|would|should|shall|have|has|had|am)\b", re.IGNORECASE)

# English function words (determiners, pronouns, auxiliaries, prepositions, conjunctions,
# question words, common adverbs): they say how something is asked, not what about.
FUNCTION_WORDS = frozenset("""
a an the this that these those some any each every all both either neither no none another such
i me my mine myself you your yours yourself he him his himself she her hers herself it its itself we us our ours
ourselves they them their theirs themselves one someone something anyone anything everyone everything
am is are was were be been being have has had having do does did doing done will would shall should can could
may might must ought s t d ll re ve m don doesn didn isn aren wasn weren haven hasn hadn won wouldn shouldn can't
what whats what's which who whom whose where when why how whatever whenever
of in on at to from by with about for into onto over under above below between through during before after
up down out off again further then once here there than too very just so also only even still yet already
and or but nor if because as until while since though although unless whether not
please thanks thank hi hey hello ok okay yes no yeah
tell told say said know remember remind recall think
""".split())


def words(text: str) -> list[str]:
    """The text's words as written, in order."""
    return WORD.findall(text)


def topic_words(text: str, skip: Iterable[str] = ()) -> list[str]:
    """What a message is about, lowercased, in order: its words other than function
    words and `skip` ("What's the boiler code again?" -> boiler, code)."""
    skipped = set(skip)
    return list(dict.fromkeys(w for w in (x.lower() for x in WORD.findall(text)) if w not in FUNCTION_WORDS and w not in skipped))


def word_stems(words: Iterable[str]) -> set[str]:
    """The Snowball (Porter 2) stems of lowercased words: "parked" and "park", "appointments"
    and "appointment" share one."""
    return set(_STEMMER.stemWords(list(words)))


def has_digit(word: str) -> bool:
    """Whether a word holds a digit: a number, a code, a time ("4417", "4b", "9:15")."""
    return any(c.isdigit() for c in word)


def distinct_words(texts: Iterable[str]) -> list[str]:
    """The distinct words of `texts`, in order of first appearance."""
    return list(dict.fromkeys(w for t in texts for w in WORD.findall(t)))


def mentioned_words(text: str | None) -> set[str]:
    """The lowercased words a text mentions and the letter-and-digit runs inside them, a
    possessive's "s" left out: "Oriel's" mentions "oriel", "ana.b@example.com" mentions
    itself, "ana", "b", "example" and "com"."""
    found = set(WORD.findall((text or "").lower()))
    return {p for w in found for p in (w, *_PART.findall(w))} - {"s"}


def word_forms(word: str) -> set[str]:
    """A lowercased word and its plural or singular by a trailing "s" ("friday" <-> "fridays"):
    the forms a cue matches in what was said."""
    forms = {word, word + "s"}
    if len(word) > 3 and word.endswith("s") and not word.endswith("ss"):
        forms.add(word[:-1])
    return forms


def split_sentences(text: str) -> list[str]:
    """The text's sentences, stripped, empty ones dropped."""
    return [s.strip() for line in text.splitlines() if line.strip() for s in _line_sentences(line) if s.strip()]


def _line_sentences(line: str) -> list[str]:
    hidden = ADDRESS.sub(lambda m: "x" * len(m.group()), line)
    return [line[span.start:span.end] for span in _SEGMENTER.segment(hidden)]


def is_question(sentence: str) -> bool:
    """A sentence that asks: it ends with "?", or starts like a question or a request to
    tell; a statement with a tag ("The code is 4417, ok?") states."""
    if _ASKING.match(sentence):
        return True
    return sentence.rstrip().endswith("?") and not (_TAGGED.search(sentence) and not _AUXILIARY.match(sentence))
