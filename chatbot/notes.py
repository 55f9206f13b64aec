"""Which remembered sentences become the turn's notes, and what a reply from them would copy.

A question names whom it is about (its cue words); the statements naming them are
ranked by `rank_notes`, a later statement like an earlier one about the same people
standing in for it; `answer_words` are the words a reply answering from the notes
would copy, which the controller nudges.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Collection, Sequence

import torch

from memory.chat_memory import SentenceStep
from memory.engram_state import Engram
from memory.memoria import Memoria
from text import (ADDRESS, FUNCTION_WORDS, has_digit, is_question, mentioned_words, split_sentences, topic_words, word_forms,
                  word_stems, words)

from .config import ChatConfig
from .forget import STOP_WORDS

# Capitalized words that start sentences or requests rather than name anything.
_NOT_NAMES = STOP_WORDS | {
    "where", "who", "whom", "whose", "which", "when", "why", "how", "do", "does", "did", "can", "could", "would",
    "will", "tell", "remind", "name", "recall", "remember", "know", "note", "learn", "forget", "hi", "hello", "hey",
    "thanks", "thank", "yes", "no", "ok", "okay", "oh", "well", "so", "but", "also", "actually", "now", "or",
    "he", "she", "they", "we", "his", "her", "their", "our", "your", "its", "there", "here",
}


def _capitalized_names(sentence: str, common: Callable[[str], bool] | None) -> list[str]:
    """The capitalized words a sentence uses as names, lowercased, in order: not question
    words and the like, not a function word in capitals for emphasis ("AGAIN"), and at
    the sentence's start, where every word is capitalized, not a `common` word (None:
    any)."""
    found = []
    for k, w in enumerate(words(sentence)):
        low = w.lower()
        if not w[0].isupper() or low in _NOT_NAMES or (w.isupper() and len(w) > 1 and low in FUNCTION_WORDS):
            continue
        if k == 0 and common is not None and common(low):
            continue
        found.append(low)
    return found


def cue_words(text: str, names: Collection[str] = (), common: Callable[[str], bool] | None = None) -> tuple[str, ...]:
    """The names and numbers a message mentions, lowercased, in order: capitalized words
    (`_capitalized_names`; with `common`, "Quick one, ..." cues nothing), digits, and words
    the user has used as names (`names`, lowercased: "where does oriel live?"). A memory
    that mentions them is recalled by them ("Where does Oriel live?" cues every sentence
    about Oriel)."""
    capitalized = {n for sentence in split_sentences(text) for n in _capitalized_names(sentence, common)}
    cues: list[str] = []
    for w in words(text):
        low = w.lower()
        if (has_digit(w) or low in capitalized or low in names) and low not in _NOT_NAMES and low not in cues:
            cues.append(low)
    return tuple(cues)


def names_in(text: str, common: Callable[[str], bool]) -> set[str]:
    """The words `text` uses as names, lowercased (`_capitalized_names`): "Oriel moved."
    names Oriel, "Correction: ..." nothing, "Her feet grew AGAIN." nothing."""
    return {n for sentence in split_sentences(text) for n in _capitalized_names(sentence, common)}


# Words by which a message says it corrects something it quotes ("Correction: 4471, not 7731.").
_CORRECTING = re.compile(r"\b(?:not|instead|wrong|correction|correct|mistake|meant|said|sorry|oops|replace|should be|rather than|actually|"
                         r"scratch|changed?|now|fix|update[ds]?)\b", re.IGNORECASE)


def value_words(text: str, common: Callable[[str], bool]) -> list[str]:
    """The words of `text` that carry a value, in order, as written: those holding a
    digit, addresses, and names (`names_in`): "Sorry, I said March 14 but it's April 3."
    -> March, 14, April, 3."""
    names = names_in(text, common)
    found = [w for w in words(text) if has_digit(w) or ADDRESS.fullmatch(w) or w.lower() in names]
    return list(dict.fromkeys(found))


# Calendar words: a day or month replaces a day or month, never a name ("deliver Wednesdays instead" is no new supplier).
_CALENDAR = frozenset("""monday tuesday wednesday thursday friday saturday sunday mon tue tues wed thu thur thurs fri sat sun
january february march april may june july august september october november december jan feb mar apr jun jul aug sep sept
oct nov dec""".split())
# "not X", "instead of X", "rather than X": the value said to be wrong.
_NEGATED = re.compile(r"\b(?:not|instead of|rather than)\s+$", re.IGNORECASE)


def _value_kind(word: str) -> str:
    """What kind of value a value word is: "number", "date" (a day or month), "address" or "name"."""
    if has_digit(word):
        return "number"
    if word_forms(word.lower()) & _CALENDAR:
        return "date"
    return "address" if ADDRESS.fullmatch(word) else "name"


def restated(statement: str, correction: str, common: Callable[[str], bool]) -> str | None:
    """`statement` as a later `correction` restates it, or None when it does not correct it.

    A correction quotes values of the statement and gives as many new ones of the same kind
    (a number for a number, a day or month for a day or month, a name for a name), with a
    word that says it corrects ("not", "instead", "should be", "now", ...): each quoted value
    is replaced by the new one of its kind, in order. "The boiler code is 7731." with
    "Correction: 4471, not 7731." -> "The boiler code is 4471."; it need not name what it
    corrects, the quoted value does. A kind only quoted or only new is what the correction
    is about, not a value it changes ("Kettleby rang: they deliver Wednesdays instead.");
    where a kind has more quoted values than new ones, those said to be wrong ("not X") are
    the changed ones ("Oriel moved to Quillmere, not Vantastad.").
    """
    if not _CORRECTING.search(correction):
        return None
    held = mentioned_words(statement)
    values = value_words(correction, common)
    pairs: list[tuple[str, str]] = []
    for kind in dict.fromkeys(_value_kind(v) for v in values):
        quoted = [v for v in values if _value_kind(v) == kind and v.lower() in held]
        new = [v for v in values if _value_kind(v) == kind and v.lower() not in held]
        if quoted and new and len(quoted) > len(new):
            quoted = [v for v in quoted if _NEGATED.search(correction[: correction.find(v)])]
        if quoted and new and len(quoted) != len(new):
            return None
        pairs += zip(quoted, new)
    if not pairs:
        return None
    for old, value in pairs:
        statement = re.sub(rf"(?<![^\W_]){re.escape(old)}(?![^\W_])", value, statement, flags=re.IGNORECASE)
    return statement


def correctable(statements: Sequence[Engram], common: Callable[[str], bool]) -> list[Engram]:
    """Those of `statements` that a later one may correct (`restated`): it says it corrects
    and names a value they mention. A cheap filter before `correct_notes` over many."""
    quoting = [(e.id, {w.lower() for w in value_words(e.text or "", common)})
               for e in statements if _CORRECTING.search(e.text or "")]
    return [e for e in statements if any(i > e.id and values & mentioned_words(e.text) for i, values in quoting)]


def correct_notes(notes: Sequence[str], note_engrams: Sequence[int | None], later: Callable[[str, int], list[Engram]],
                  common: Callable[[str], bool], *, next_sentence: Callable[[Engram], str] = lambda e: "",
                  limit: int = 8) -> tuple[list[str], list[list[tuple[int, str]]]]:
    """Each note as the user's later corrections restate it (`restated`), one after another
    in the order they were said (a correction of the correction too), and the corrections
    applied to each, as (engram id, words that correct), at most `limit` a note.

    later(note, engram id): the user's statements newer than that engram that mention a
    value word of `note`, oldest first. next_sentence(engram): the sentence after it in the
    same message, "" if none: a sentence that only quotes the old value ("Wait, 7731 was
    wrong.") corrects with it ("It's 4471.").
    """
    out, applied = [], []
    for note, since in zip(notes, note_engrams):
        used: list[tuple[int, str]] = []
        while since is not None and len(used) < limit:
            found = _first_correction(note, later(note, since), common, next_sentence)
            if found is None:
                break
            correction, text, note = found
            since = correction.id
            used.append((correction.id, text))
        out.append(note)
        applied.append(used)
    return out, applied


def _first_correction(note: str, statements: list[Engram], common: Callable[[str], bool],
                      next_sentence: Callable[[Engram], str]) -> tuple[Engram, str, str] | None:
    """The first of `statements` that corrects `note`: it, the words that correct (the
    statement, or it and the next sentence of its message), and the note they make."""
    for statement in statements:
        text = statement.text or ""
        fixed = restated(note, text, common)
        if fixed is None and _only_quotes(text, note, common) and (following := next_sentence(statement)):
            text = f"{text} {following}"
            fixed = restated(note, text, common)
        if fixed is not None and fixed != note:
            return statement, text, fixed
    return None


def _only_quotes(text: str, note: str, common: Callable[[str], bool]) -> bool:
    """Whether `text` names values and every one of them is a value `note` holds."""
    values, held = value_words(text, common), mentioned_words(note)
    return bool(values) and all(v.lower() in held for v in values)


def without_names(text: str, cues: Sequence[str]) -> str:
    """`text` with the names and numbers `cues` holds replaced by "someone": what it says
    about them ("Kedar is on the staff of Sileholm." -> "someone is on the staff of Sileholm.")."""
    for cue in cues:
        text = re.sub(rf"(?<![^\W_]){re.escape(cue)}(?![^\W_])", "someone", text, flags=re.IGNORECASE)
    return text


def unnamed_closeness(
    text: str, cues: Sequence[str], statements: Sequence[str], closeness: Sequence[float],
    encode: Callable[[list[str]], torch.Tensor],  # texts -> [N, D] vectors
) -> list[float]:
    """`closeness` of `statements` to `text`, but for those naming `cues`, measured with
    those names masked in both: among several statements about Kedar, "What company pays
    Kedar?" is closest to the one about his work, where the shared name would let his home
    or his pet be as close."""
    about = [k for k, statement in enumerate(statements) if statement and mentioned_words(statement) & set(cues)]
    out = list(closeness)
    if not about:
        return out
    masked = [without_names(t, cues) for t in (text, *(statements[k] for k in about))]
    vectors = torch.nn.functional.normalize(encode(masked), dim=-1)
    for k, vector in zip(about, vectors[1:]):
        out[k] = float(vector @ vectors[0])
    return out


def word_overlap(text: str, statements: Sequence[str]) -> list[float]:
    """The share of `text`'s content words (`text.topic_words`, by stem) each of `statements`
    holds: "In which room is my Hydrology class?" shares "hydrology", "class" and "room"
    with "The Hydrology class is in room C-381.", a rare word MiniLM's closeness weighs little."""
    asked = word_stems(topic_words(text))
    if not asked:
        return [0.0] * len(statements)
    return [len(asked & word_stems(mentioned_words(s))) / len(asked) for s in statements]


def answer_words(text: str, notes: Sequence[str], names: Collection[str] = (), topic: Sequence[str] = ()) -> list[str]:
    """Where an answer from memory would come from: when `text` asks something and names
    someone (`cue_words` with the user's `names`), or else is about `topic` words, the words
    of the notes mentioning them that `text` does not hold ("Where does Oriel live?" with
    "Oriel moved to Quillmere." -> moved, to, Quillmere; "what is the boiler code?" with
    "The boiler code is 4471." -> The, is, 4471)."""
    keys = set(cue_words(text, names)) or set(topic)
    if not keys or not any(is_question(s) for s in split_sentences(text)):
        return []
    asked = {w.lower() for w in words(text)}
    return [w for note in notes if mentioned_words(note) & keys for w in words(note) if w.lower() not in asked]


def rank_notes(
    candidates: Sequence[tuple[int, str, float]], cues: Sequence[str], margin: float, *,
    vectors: torch.Tensor | None = None,  # [N, D] unit vectors of the candidates; None = no statement supersedes another
    link: float | None = None,  # cosine at which a later statement supersedes the closest earlier one naming the same people; None = off
    topic: Sequence[str] = (),  # the message's other content words (`text.topic_words`); () = names alone
    related: Collection[str] | None = None,  # the message's content words; None = every statement within `margin` is newest-first
    context: Sequence[Collection[str]] | None = None,  # words of each candidate's message's other statements; None = own words only
    fits: Sequence[bool] | None = None,  # whether each candidate's message holds a value of the kind asked for; None = any
    drop_superseded: bool = False,  # leave out a statement a later one supersedes, rather than ranking it last
) -> list[int]:
    """Candidate statements in the order they become notes: indices into `candidates`.

    candidates: (engram id, higher = newer; text; cosine closeness to the message).
    Those that mention the most of `cues` (the message's names, in either number: `text.word_forms`) come first: a question
    about Oriel is answered from what was said about Oriel, not from the look-alike fact
    about someone else that is closer. With `context`, a statement also names whom the
    rest of its message names ("She works as a sound engineer." after "Lieke is new.").
    Among them, a statement at least `link` close to
    the closest earlier one naming the same of them supersedes it ("Oriel moved to
    Quillmere." after "Oriel lives in Vantastad."): the two count as one statement, the
    newer, as close to the message as the closer of them and sharing as many of `topic`
    (the message's other content words: "What is the boiler code?" -> boiler, code) as
    either, and the older goes last. Those sharing the most of `topic` come first: within
    `margin` of the closest of them newest first, then by closeness; then the rest, most
    topic words first. With `related`, newest first holds only for the closest and the
    statements within `margin` sharing a content word with it or with the message (what
    a correction shares with what it corrects): a later remark as vaguely close as the
    answer ("Doing my weekly health admin.") does not outrank it. With `fits`, when a
    question asks for a kind of value (a time, a date, a quantity), those of them whose
    message holds one come before those whose message does not ("when is the Riverline
    deadline?" is answered by "it's 5 May now", not by the newer "Riverline is coming
    together."), and one whose message holds none supersedes nothing ("They moved it to
    18 September, same hour." leaves the hour to what it corrects). With `drop_superseded`
    a superseded statement is not in the order at all: shown beside what supersedes it,
    the old value is often the one answered.
    """
    held = [mentioned_words(text) for _, text, _ in candidates]
    named_set, topic_set = set(cues), set(topic)
    naming = held if context is None else [h | set(c) for h, c in zip(held, context)]
    mentions = [frozenset(c for c in named_set if word_forms(c) & h) for h in naming]
    named = [len(m) for m in mentions]
    most = max(named, default=0)
    top = sorted((i for i in range(len(candidates)) if named[i] == most), key=lambda i: candidates[i][0])
    newest = {i: i for i in top}  # statement -> the newest of those it was superseded by, in turn
    close = {i: candidates[i][2] for i in top}  # newest -> closeness of the closest it stands for
    shared = {i: len(held[i] & topic_set) for i in top}  # newest -> most topic words of those it stands for
    fitting = fits is not None and any(fits[i] for i in top)
    for k, i in enumerate(top[1:] if vectors is not None and link is not None and most > 0 else [], 1):
        # only a statement about the same people: Bram's move never supersedes Kora's home; and, asked for a
        # kind of value, only one holding such a value ("moved to 18 September, same hour" keeps the hour)
        earlier = [j for j in top[:k] if mentions[j] == mentions[i]]
        if not earlier or (fitting and not fits[i]):
            continue
        similarity = vectors[earlier] @ vectors[i]
        if float(similarity.max()) < link:
            continue
        old = newest[earlier[int(similarity.argmax())]]
        for j in top[:k]:
            if newest[j] == old:
                newest[j] = i
        close[i] = max(close[i], close.pop(old))
        shared[i] = max(shared[i], shared.pop(old))
    widest = max(shared.values(), default=0)
    best = max((c for i, c in close.items() if shared[i] == widest), default=0.0)
    closest = next((i for i, c in close.items() if shared[i] == widest and c == best), None)
    about = set() if related is None or closest is None else (held[closest] | set(related)) - FUNCTION_WORDS

    def recent(i: int) -> bool:
        """Ranked newest first: within `margin` of the closest and, with `related`, about the same."""
        return close[i] >= best - margin and (related is None or i == closest or bool(held[i] & about))

    def rank(i: int) -> tuple:
        if named[i] < most:
            return (4, -candidates[i][2])
        if newest[i] != i:
            return (5, -candidates[i][0])
        if fitting and not fits[i]:
            return (3, -shared[i], -close[i])
        if shared[i] < widest:
            return (2, -shared[i], -close[i])
        return (0, -candidates[i][0]) if recent(i) else (1, -close[i])

    return sorted((i for i in range(len(candidates)) if not (drop_superseded and newest.get(i, i) != i)), key=rank)




def cued_engrams(memoria: Memoria, user: str, cues: Sequence[str], steps: Sequence[SentenceStep], skip: set[int], *,
                 limit: int, topic: Sequence[str] = ()) -> list[int]:
    """Engrams recalled beside Memoria's remind: those mentioning the message's names, and
    those mentioning its `topic` words (up to `limit` each, the most shared first), and
    those holding the neural memory's reads; none in `skip`, all live."""
    ids = memoria.mentioning({f for c in cues for f in word_forms(c)}, user=user, limit=limit) if cues else []
    ids += memoria.mentioning(topic, user=user, limit=limit) if topic else []
    ids += [s.recall.source.engram for s in steps if s.recall and s.recall.source and s.recall.source.engram is not None]
    out: list[int] = []
    for i in ids:
        if i not in skip and i not in out and memoria.is_live(i, user=user):
            out.append(i)
    return out


def choose_notes(
    steps: Sequence[SentenceStep], reminded: Sequence[Engram], closeness: Sequence[float], cues: Sequence[str],
    vectors: torch.Tensor | None, chat: ChatConfig, *,
    from_reads: bool,  # no engram store: the sentences holding the neural memory's reads come first
    topic: Sequence[str] = (),  # the message's topic words (`text.topic_words`), which rank statements after its names
    related: Collection[str] | None = None,  # the message's content words, for `rank_notes`; None = off
    context: Callable[[list[Engram]], list[set[str]]] | None = None,  # engrams -> their messages' other words; None = off
    fits: Callable[[list[Engram]], list[bool]] | None = None,  # engrams -> whether their messages hold the asked kind; None = off
) -> tuple[list[str], list[int | None]]:
    """Sentences to show the model, oldest first, and the engram each came from.

    The reminded statements at least chat.note_min_similarity close (cosine) to the
    turn (all when it is None), in `rank_notes` order (those naming whom the message is about, a statement
    superseded by a later one like it last), up to chat.max_notes.
    vectors: [R, D] the reminded engrams' unit vectors.
    """
    chosen: dict[str, tuple[int, int | None]] = {}  # text -> (turn, engram)
    if from_reads:
        for step in steps:
            source = step.recall.source if step.recall else None
            if source is not None and source.text not in chosen:
                chosen[source.text] = (source.turn or 0, source.engram)
    eligible = [
        (k, engram, close) for k, (engram, close) in enumerate(zip(reminded, closeness))
        if engram.text and not is_question(engram.text)
        and (chat.note_min_similarity is None or close >= chat.note_min_similarity)
    ]
    order = rank_notes([(e.id, e.text, close) for _, e, close in eligible], cues, chat.note_recency_margin,
                       vectors=None if vectors is None else vectors[[k for k, _, _ in eligible]],
                       link=chat.note_link_similarity, topic=topic, related=related,
                       context=None if context is None else context([e for _, e, _ in eligible]),
                       fits=None if fits is None else fits([e for _, e, _ in eligible]),
                       drop_superseded=chat.note_drop_superseded)
    for _, engram, _ in (eligible[i] for i in order):
        if len(chosen) >= chat.max_notes:
            break
        chosen.setdefault(engram.text, (engram.turn or 0, engram.id))
    ordered = sorted(chosen.items(), key=lambda item: (item[1][0], item[1][1] if item[1][1] is not None else -1))
    return [text for text, _ in ordered], [engram for _, (_, engram) in ordered]
