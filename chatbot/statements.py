"""A user's remembered statements in Memoria read back as they were said: in their message, and as later ones corrected them.

Memory keeps a message's sentences apart, as engrams with consecutive ids and the message's
turn. A note is shown with the nearest statements of its message, a statement names whom
its message names, and a later statement that quotes a note's value as wrong restates it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence

from memory.engram_state import Engram
from memory.memoria import Memoria
from text import is_question, mentioned_words

from .config import ChatConfig
from .notes import correct_notes, correctable, value_words

# How many sentences before and after a statement its message's other statements are looked for.
MESSAGE_REACH = 8


def nearest_first(center: int, ids: Iterable[int]) -> list[int]:
    """`ids` by their distance from `center`, the following one first at equal distance: the order in which
    a statement's neighbours in its message are shown with it."""
    return sorted(ids, key=lambda i: (abs(i - center), i < center))


class Statements:
    """The statements of each user that `memoria` holds.

    Args:
        memoria: the engram store.
        common: whether a word is a common English word (not a name at a sentence's start).
        chat: note_message_sentences (how many of a message's sentences a note shows) and
            cue_limit (how many later statements a correction is looked for among).
    """

    def __init__(self, memoria: Memoria, common: Callable[[str], bool], chat: ChatConfig) -> None:
        self.memoria, self.common, self.chat = memoria, common, chat

    def message_words(self, user: str, engrams: Sequence[Engram]) -> list[set[str]]:
        """The words of the other statements of each engram's message."""
        return [set().union(*(mentioned_words(a.text) for a in others)) for others in self._others(user, engrams)]

    def message_texts(self, user: str, engrams: Sequence[Engram]) -> list[str]:
        """Each engram's text with the other statements of its message, in order."""
        return [" ".join(a.text for a in sorted([*others, e], key=lambda a: a.id))
                for e, others in zip(engrams, self._others(user, engrams))]

    def _others(self, user: str, engrams: Sequence[Engram]) -> list[list[Engram]]:
        """The other live statements of each engram's message, within MESSAGE_REACH of it."""
        if not engrams:
            return []
        near = sorted({i for e in engrams for i in range(max(e.id - MESSAGE_REACH, 0), e.id + MESSAGE_REACH + 1)})
        around = [a for a in self._live(user, near) if a.text and not is_question(a.text)]
        return [[a for a in around if a.turn == e.turn and a.id != e.id and abs(a.id - e.id) <= MESSAGE_REACH] for e in engrams]

    def in_its_message(self, user: str, note: str, engram: int | None) -> str:
        """The note with the nearest other statements of its message (chat.note_message_sentences in all, the
        following first), in order: the answer often comes a sentence after the one recalled."""
        if engram is None or not self.memoria.is_live(engram, user=user):
            return note
        (chosen,) = self.memoria.engrams(user, [engram])
        near = nearest_first(engram, range(engram - MESSAGE_REACH, engram + MESSAGE_REACH + 1))
        around = {e.id: e for e in self._live(user, [i for i in near if i != engram and i >= 0])
                  if e.turn == chosen.turn and e.text and not is_question(e.text)}  # its questions are not shown
        shown = [engram] + [i for i in near if i in around][: self.chat.note_message_sentences - 1]
        return " ".join(note if i == engram else around[i].text for i in sorted(shown))

    def later(self, user: str, note: str, since: int) -> list[Engram]:
        """The user's statements after engram `since` that mention a value word of `note`, oldest first."""
        values = [w.lower() for w in value_words(note, self.common)]
        ids = [i for i in self.memoria.mentioning(values, user=user, limit=self.chat.cue_limit) if i > since]
        return [e for e in sorted(self.memoria.engrams(user, ids), key=lambda e: e.id) if e.text and not is_question(e.text)]

    def next_sentence(self, user: str, engram: Engram) -> str:
        """The statement after `engram` in the same message ("" if none)."""
        try:
            (after,) = self.memoria.engrams(user, [engram.id + 1])
        except ValueError:  # forgotten, or not yet written
            return ""
        return after.text if after.turn == engram.turn and after.text and not is_question(after.text) else ""

    def corrected(self, user: str, notes: Sequence[str],
                  engrams: Sequence[int | None]) -> tuple[list[str], list[list[tuple[int, str]]]]:
        """`correct_notes` over the user's later statements: each note as corrected, and (engram, words) that did."""
        return correct_notes(notes, engrams, lambda note, since: self.later(user, note, since), self.common,
                             next_sentence=lambda e: self.next_sentence(user, e))

    def corrections(self, user: str) -> dict[int, tuple[int, str]]:
        """Each statement a later one corrects: engram id -> (the last correcting engram, the statement as corrected)."""
        statements = correctable([e for e in self.memoria.engrams(user) if e.text and not is_question(e.text)], self.common)
        notes, applied = self.corrected(user, [e.text for e in statements], [e.id for e in statements])
        return {e.id: (used[-1][0], note) for e, note, used in zip(statements, notes, applied) if used}

    def _live(self, user: str, ids: Sequence[int]) -> list[Engram]:
        return self.memoria.engrams(user, [i for i in ids if self.memoria.is_live(i, user=user)])
