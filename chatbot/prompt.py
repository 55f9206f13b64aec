"""How a user's message is read and how memory enters the prompt.

A message is split into sentences; each is a question (read from memory) or a
statement (written to memory), and a message that starts with "Forget" is a
request to forget. What memory recalls for a turn becomes notes: the sentences the
user said earlier, oldest first, placed in the system message. The agent and the
adapter's training build prompts with the same functions here, so the adapter
learns exactly the layout it meets in chat.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch

from memory.memoria import text_words

# A sentence ends at . ! or ? followed by space, or at a line break; "e.g. 5.5" stays whole.
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=[A-Z0-9\"'])|\n+")
# Imperative questions: "Tell me where Oriel lives." asks as much as "Where does Oriel live?".
_ASKING = re.compile(r"^\s*(tell me|remind me|name|recall|do you (know|remember)|what|where|who|whom|whose|which|when|why|how)\b", re.IGNORECASE)
_FORGET = re.compile(r"^\s*(please\s+)?forget\b[\s,:]*(?P<what>.*)$", re.IGNORECASE | re.DOTALL)
_EVERYTHING = re.compile(r"^(everything|all|all of it|it all|all memories|everything you know)\W*$", re.IGNORECASE)
_STOP = {
    "that", "about", "what", "said", "told", "you", "the", "a", "an", "my", "me", "i", "of", "is", "was", "are",
    "please", "and", "to", "in", "at", "on", "for", "with", "it", "this", "those", "these", "fact", "facts",
}

# Capitalized words that start sentences or requests rather than name anything.
_NOT_NAMES = _STOP | {
    "where", "who", "whom", "whose", "which", "when", "why", "how", "do", "does", "did", "can", "could", "would",
    "will", "tell", "remind", "name", "recall", "remember", "know", "note", "learn", "forget", "hi", "hello", "hey",
    "thanks", "thank", "yes", "no", "ok", "okay", "oh", "well", "so", "but", "also", "actually", "now", "or",
    "he", "she", "they", "we", "his", "her", "their", "our", "your", "its", "there", "here",
}
_WORD = re.compile(r"[^\W_]+")

NOTES_HEADER = "What the user told you earlier, oldest first:"


def words(text: str) -> list[str]:
    """The text's words as written: runs of letters and digits ("Oriel's" -> "Oriel", "s")."""
    return _WORD.findall(text)


def split_sentences(text: str) -> list[str]:
    """The message's sentences, stripped, empty ones dropped."""
    return [s.strip() for s in _SENTENCE_END.split(text.strip()) if s and s.strip()]


def is_question(sentence: str) -> bool:
    """A sentence that asks: it ends with "?", or starts like a question or a request to tell."""
    return sentence.rstrip().endswith("?") or bool(_ASKING.match(sentence))


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
        present = {w.lower() for w in re.findall(r"\w+", text)}
        names = [w for w in self.words if w[0].isupper() or w.isdigit()]
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
    content = tuple(w for w in words(what) if w.lower() not in _STOP)
    # "Oriel's" names Oriel: the possessive is not a word of its own
    content = tuple(w for w in content if w.lower() != "s")
    return ForgetRequest(False, content)


def cue_words(text: str) -> tuple[str, ...]:
    """The names and numbers a message mentions, lowercased: capitalized words (other
    than question words and the like) and digits. A memory that mentions them is
    recalled by them ("Where does Oriel live?" cues every sentence about Oriel)."""
    cues: list[str] = []
    for w in words(text):
        if (w.isdigit() or w[0].isupper()) and w.lower() not in _NOT_NAMES and w.lower() not in cues:
            cues.append(w.lower())
    return tuple(cues)


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
    about = [k for k, statement in enumerate(statements) if statement and text_words(statement) & set(cues)]
    out = list(closeness)
    if not about:
        return out
    masked = [without_names(t, cues) for t in (text, *(statements[k] for k in about))]
    vectors = torch.nn.functional.normalize(encode(masked), dim=-1)
    for k, vector in zip(about, vectors[1:]):
        out[k] = float(vector @ vectors[0])
    return out


def answer_words(text: str, notes: Sequence[str]) -> list[str]:
    """Where an answer from memory would come from: when `text` asks something and names
    someone, the words of the notes mentioning them that `text` does not hold
    ("Where does Oriel live?" with "Oriel moved to Quillmere." -> moved, to, Quillmere)."""
    cues = cue_words(text)
    if not cues or not any(is_question(s) for s in split_sentences(text)):
        return []
    asked = {w.lower() for w in words(text)}
    return [w for note in notes if text_words(note) & set(cues) for w in words(note) if w.lower() not in asked]


def rank_notes(
    candidates: Sequence[tuple[int, str, float]], cues: Sequence[str], margin: float, *,
    vectors: torch.Tensor | None = None,  # [N, D] unit vectors of the candidates; None = no statement supersedes another
    link: float = 2.0,  # cosine at which a later statement supersedes the closest earlier one naming the same people
) -> list[int]:
    """Candidate statements in the order they become notes: indices into `candidates`.

    candidates: (engram id, higher = newer; text; cosine closeness to the message).
    Those that mention the most of `cues` (the message's names) come first: a question
    about Oriel is answered from what was said about Oriel, not from the look-alike fact
    about someone else that is closer. Among them, a statement at least `link` close to
    the closest earlier one naming the same of them supersedes it ("Oriel moved to
    Quillmere." after "Oriel lives in Vantastad."): the two count as one statement, the
    newer, as close to the message as the closer of them, and the older goes last. The
    remaining ones within `margin` of the closest go newest first, then by closeness;
    the others last, by closeness.
    """
    mentions = [frozenset(text_words(text) & set(cues)) for _, text, _ in candidates]
    named = [len(m) for m in mentions]
    most = max(named, default=0)
    top = sorted((i for i in range(len(candidates)) if named[i] == most), key=lambda i: candidates[i][0])
    newest = {i: i for i in top}  # statement -> the newest of those it was superseded by, in turn
    close = {i: candidates[i][2] for i in top}  # newest -> closeness of the closest it stands for
    for k, i in enumerate(top[1:] if vectors is not None and most > 0 else [], 1):
        # only a statement about the same people: Bram's move never supersedes Kora's home
        earlier = [j for j in top[:k] if mentions[j] == mentions[i]]
        if not earlier:
            continue
        similarity = vectors[earlier] @ vectors[i]
        if float(similarity.max()) < link:
            continue
        old = newest[earlier[int(similarity.argmax())]]
        for j in top[:k]:
            if newest[j] == old:
                newest[j] = i
        close[i] = max(close[i], close.pop(old))
    best = max(close.values(), default=0.0)

    def rank(i: int) -> tuple:
        if named[i] < most:
            return (2, -candidates[i][2])
        if newest[i] != i:
            return (3, -candidates[i][0])
        return (0, -candidates[i][0]) if close[i] >= best - margin else (1, -close[i])

    return sorted(range(len(candidates)), key=rank)


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
