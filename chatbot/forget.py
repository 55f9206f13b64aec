"""A request to forget: "Forget that Oriel lives in Vantastad.", "Forget Oriel", "Forget everything"."""

from __future__ import annotations

import re
from dataclasses import dataclass

from text import has_digit, mentioned_words, words

# "forget" as a word of its own ("Forget-me-nots grow here." asks nothing).
_FORGET = re.compile(r"^\s*(please\s+)?forget(?![\w-])[\s,:]*(?P<what>.*)$", re.IGNORECASE | re.DOTALL)
# "Forget it", "forget about that": a brush-off, not a request to forget anything.
_BRUSH_OFF = re.compile(r"^(about\s+)?(it|that|this)\s*([,.!;]|$)", re.IGNORECASE)
_EVERYTHING = re.compile(r"^(everything|all|all of it|it all|all memories|everything you know)\W*$", re.IGNORECASE)
# Words of a request that say how to forget, not what.
STOP_WORDS = {
    "that", "about", "what", "said", "told", "you", "the", "a", "an", "my", "me", "i", "of", "is", "was", "are",
    "please", "and", "to", "in", "at", "on", "for", "with", "it", "this", "those", "these", "fact", "facts",
}


@dataclass(frozen=True)
class ForgetRequest:
    """"Forget ..." read as what to forget."""

    everything: bool  # "Forget everything"
    words: tuple[str, ...]  # content words a memory must hold to match (names and numbers first)

    def matches(self, text: str) -> bool:
        """Whether a remembered sentence is what the user asked to forget.

        Every name and number the request mentions must appear in the sentence; a
        request without any needs most of its other content words there.
        """
        if self.everything:
            return True
        present = mentioned_words(text)
        names = [w for w in self.words if w[0].isupper() or has_digit(w)]
        if names:
            return all(w.lower() in present for w in names)
        others = [w for w in self.words if len(w) > 2]
        return bool(others) and sum(w.lower() in present for w in others) >= max(1, round(0.6 * len(others)))


def forget_request(text: str) -> ForgetRequest | None:
    """The request if the message asks to forget something, else None."""
    m = _FORGET.match(text)
    if not m:
        return None
    what = m.group("what").strip()
    if not what or _EVERYTHING.match(what):
        return ForgetRequest(True, ())
    if _BRUSH_OFF.match(what) or "?" in what:
        return None  # "Forget it, where does Oriel live?" asks a question
    content = tuple(w for w in words(what) if w.lower() not in STOP_WORDS)
    # "Oriel's" names Oriel: the possessive is not a word of its own
    content = tuple(w for w in content if w.lower() != "s")
    return ForgetRequest(False, content)


