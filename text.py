"""The one definition of a word, a sentence and a question that every part reads text by."""

from __future__ import annotations

import re
from collections.abc import Iterable

import pysbd

# A word is a run of letters and digits: "Oriel's" is "Oriel" and "s", "4417" is a word.
WORD = re.compile(r"[^\W_]+")
# Sentence boundaries by pysbd's rules (abbreviations, initials, decimals, times, e-mail
# addresses and URLs do not end a sentence: "Dr. Okafor moved it to 9:15 a.m." is one).
_SEGMENTER = pysbd.Segmenter(language="en", clean=False)
# Imperative questions: "Tell me where Oriel lives." asks as much as "Where does Oriel live?".
_ASKING = re.compile(r"^\s*(tell me|remind me|name|recall|do you (know|remember)|what|where|who|whom|whose|which|when|why|how)\b",
                     re.IGNORECASE)


def words(text: str) -> list[str]:
    """The text's words as written, in order."""
    return WORD.findall(text)


def distinct_words(texts: Iterable[str]) -> list[str]:
    """The distinct words of `texts`, in order of first appearance."""
    return list(dict.fromkeys(w for t in texts for w in WORD.findall(t)))


def mentioned_words(text: str | None) -> set[str]:
    """The lowercased words a text mentions, a possessive's "s" left out ("Oriel's" mentions "oriel")."""
    return {w for w in WORD.findall((text or "").lower()) if w != "s"}


def split_sentences(text: str) -> list[str]:
    """The text's sentences, stripped, empty ones dropped."""
    return [s.strip() for line in text.splitlines() if line.strip() for s in _SEGMENTER.segment(line) if s.strip()]


def is_question(sentence: str) -> bool:
    """A sentence that asks: it ends with "?", or starts like a question or a request to tell."""
    return sentence.rstrip().endswith("?") or bool(_ASKING.match(sentence))
