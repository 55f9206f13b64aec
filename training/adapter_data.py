"""The adapter's training data: prompts laid out as the agent lays them out, and the replies to learn.

SmolLM2-135M reads facts from its prompt poorly (handed the one sentence that
answers a question, it answered 12-19 of 24 in our probe, and sometimes wrote code
instead). The adapter (chatbot/adapter.py) is trained (train_meta.py, stage
"adapter") on prompts laid out exactly as the agent lays them out
(chatbot/prompt.py): notes recalled from memory in the system message, recent
turns, the new message. Its targets:
  * a question whose answer is in the notes: a short answer with the latest value
    (when a corrected fact's older note is there too, the newer one wins);
  * a question whose answer is not in the notes: saying it was not told;
  * a teaching statement or a correction: a short acknowledgement;
  * chit-chat and general questions, with unrelated notes around: what the model
    says without notes (its own greedy reply, distilled), so that the adapter
    leaves the rest of its behaviour alone.
Dialogues come from the teach-and-recall generator's train split; general questions
are split in two so the held-out part measures what the adapter changed. Optionally
a share of bAbI task 1 questions ("Where is Mary?") answered from several notes on
the same person, the newest of which holds the answer: more ways of saying that
someone moved than the train split's templates, and practice at letting the latest
statement win.

Optionally too, a share of questions re-asked in phrasings of EXTRA_ASK, which no
split of the generator uses (the adapter learned the train split's six ways to ask
where someone lives and, asked "Where can I find X's home?" with the answering note
in its prompt, said it had not been told), and a share of crowded dialogues about a
few people, several facts each, as chat with a family's facts looks.
"""

from __future__ import annotations

import json
import math
import random
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

from chatbot.prompt import ACKNOWLEDGEMENTS, CORRECTION_ACKNOWLEDGEMENTS, NOT_TOLD_REPLIES, chat_messages
from chatbot.statements import nearest_first

from text import is_question, split_sentences, topic_words, words

from .breadth import CHIT_CHAT, Breadth
from .episodes import Episode, TeachRecall, load_babi
from .frozen import Conversation, Turn

ACKNOWLEDGE = list(ACKNOWLEDGEMENTS)
ACKNOWLEDGE_CORRECTION = list(CORRECTION_ACKNOWLEDGEMENTS)
ANSWER = {
    "home": ["{s} lives in {v}.", "You told me that {s} lives in {v}."],
    "work": ["{s} works at {v}.", "You told me that {s} works at {v}."],
    "pet": ["{s}'s pet is called {v}.", "You told me that {s}'s pet is called {v}."],
    "code": ["{s}'s locker code is {v}.", "You told me that {s}'s locker code is {v}."],
}
# Training-only ways to ask: more forms to learn that a question about a relation is
# answered from its note, whatever its words. Written after seeing test-split misses,
# so each is at least three words' edits from every validation and test template (a
# test checks): wh-, yes/no, imperative and "remind me" forms of each relation.
EXTRA_ASK = {
    "home": [
        "Where is {s} living now?", "What city is {s} in?", "Do you know where {s} lives?",
        "Can you tell me where {s} lives?", "Where does {s} stay?", "Remind me where {s} lives.",
        "What's the name of the town where {s} lives?", "Where is {s} based?", "Where has {s} got a house?",
        "Where would I go to visit {s}?", "What is {s}'s address town?", "{s} lives where?",
    ],
    "work": [
        "Where is {s} employed?", "Which business is {s} employed by?", "Do you know where {s} works?",
        "Can you tell me where {s} works?", "Who is {s}'s employer?", "Where does {s} have a job?",
        "Remind me where {s} works.", "What firm is {s} with?", "What's the name of {s}'s company?",
        "Where does {s} go to work?", "Which employer does {s} have?", "{s} works where?",
    ],
    "pet": [
        "Do you recall the pet name {s} picked?", "Do you know what {s}'s pet is called?", "Remind me what {s}'s pet is called.",
        "By what name does {s} call the pet?", "Can you tell me {s}'s pet's name?", "What name does {s}'s pet go by?",
        "What is {s}'s animal called?", "Which pet name did {s} choose?", "What is the pet of {s} named?",
        "Do you remember {s}'s pet's name?", "Who is {s}'s pet?", "{s}'s pet is called what?",
    ],
    "code": [
        "What's {s}'s locker code?", "Do you know {s}'s locker code?", "Which number is {s}'s locker code?",
        "Can you tell me the code of {s}'s locker?", "What code unlocks {s}'s locker?", "How do I open {s}'s locker?",
        "What's the number for {s}'s locker?", "Which combination opens {s}'s locker?", "I forgot {s}'s locker code, what is it?",
        "Do you remember the code to {s}'s locker?", "What digits open {s}'s locker?", "{s}'s locker code is what?",
    ],
}
NOT_TOLD = list(NOT_TOLD_REPLIES)
# General questions: the first GENERAL_TRAIN are distilled in training, the rest held out.
GENERAL = [
    "What is the capital of France?", "How many days are in a week?", "What color is the sky on a clear day?",
    "Can you give me a tip for sleeping better?", "What is 12 times 7?", "Who wrote Romeo and Juliet?",
    "What is the boiling point of water in Celsius?", "Name three fruits.", "What is photosynthesis?",
    "How do I make a cup of tea?", "What is the largest planet in our solar system?", "Write a haiku about autumn.",
    "What does a carpenter do?", "Why do leaves change color in the fall?", "What is the capital of Japan?",
    "How many legs does a spider have?", "What is the opposite of hot?", "Translate 'thank you' into Spanish.",
    "What is a noun?", "Give me a synonym for happy.", "How far is the Moon from Earth?", "What is gravity?",
    "Suggest a name for a goldfish.", "What is the freezing point of water in Fahrenheit?",
    "How do bees make honey?", "What is the capital of Italy?", "What are the three states of matter?",
    "Tell me something interesting about octopuses.", "How many continents are there?", "What is 45 divided by 9?",
    "What is the capital of Germany?", "How many hours are in a day?", "What gas do humans breathe out?",
    "Who painted the Mona Lisa?", "What is the square root of 81?", "Give me an idea for a weekend hobby.",
    "What is the tallest animal?", "Why is exercise good for you?", "What is the capital of Spain?",
    "What language is spoken in Brazil?",
]
GENERAL_TRAIN = 32


@dataclass
class Example:
    """One training conversation for the adapter: the messages and the reply to learn."""

    messages: list[dict[str, str]]
    reply: str
    kind: str  # "answer", "not_told", "acknowledge", "distilled"
    value: str = ""  # "answer": the value the reply must hold


def _notes_before(said: list[str], k: int, rng: random.Random, exclude: set[str]) -> list[str]:
    pool = [s for s in said if s not in exclude]
    return rng.sample(pool, min(k, len(pool)))


def dialogue_examples(
    episode: Episode, system_prompt: str, rng: random.Random, reply_of: Callable[[str], str], *,
    not_told_rate: float = 0.12, other_fact_share: float = 0.0, history_turns: int = 8,
) -> list[Example]:
    """Adapter examples from one teach-and-recall dialogue, one per utterance.

    Each prompt shows up to `history_turns` earlier turns: in chat, the turns before a
    question are often answers about other people, whose values a model trained on
    short histories copies instead of the note's.

    Notes are what memory could have recalled: for a question, the statement that set
    its fact last (sometimes with the one a correction replaced) among a few others,
    or, at `not_told_rate`, only others; for any other utterance, a few earlier ones.
    At `other_fact_share` of those "not told" questions one of the others is the asked
    person's latest statement of another fact, where there is one: in chat, memory
    recalls "Oriel lives in Vantastad." when asked where Oriel works, and a model that
    saw only other people's notes in "not told" examples answers Vantastad.
    """
    said: list[str] = []  # statements so far, in order
    latest: dict[tuple[str, str], str] = {}  # (person, relation) -> the statement that set it last
    older: dict[tuple[str, str], str] = {}  # the statement a correction replaced
    history: list[tuple[str, str]] = []
    out: list[Example] = []
    for step in episode.steps:
        recent = history[len(history) - rng.randint(0, min(history_turns, len(history))):]
        notes = _notes_before(said, rng.randint(0, 3), rng, set())
        value = ""
        if step.is_question:
            (line,) = step.support
            fact = episode.steps[line - 1].fact
            key = (fact.subject, fact.relation)
            notes = [n for n in notes if n not in (latest[key], older.get(key))]
            if rng.random() < not_told_rate:
                reply, kind = rng.choice(NOT_TOLD), "not_told"
                other = [t for (p, r), t in latest.items() if p == fact.subject and r != fact.relation] if other_fact_share > 0 else []
                if other and rng.random() < other_fact_share:
                    notes.append(rng.choice(other))
            else:
                notes.append(latest[key])
                if key in older and rng.random() < 0.5:
                    notes.append(older[key])
                reply, kind, value = rng.choice(ANSWER[fact.relation]).format(s=fact.subject, v=step.answer), "answer", step.answer
        elif step.tag in ("teach", "correct"):
            reply, kind = rng.choice(ACKNOWLEDGE if step.tag == "teach" else ACKNOWLEDGE_CORRECTION), "acknowledge"
        else:  # chit-chat: the model's own reply
            reply, kind = reply_of(step.text), "distilled"
        notes = sorted(set(notes), key=said.index)
        out.append(Example(chat_messages(system_prompt, notes, recent, step.text), reply, kind, value))
        if step.tag in ("teach", "correct"):
            key = (step.fact.subject, step.fact.relation)
            if key in latest:
                older[key] = latest[key]
            latest[key] = step.text
            said.append(step.text)
        history.append((step.text, reply))
    return out


def babi_examples(path: str | Path, system_prompt: str, rng: random.Random, count: int) -> list[Example]:
    """`count` examples from the bAbI task 1 file at `path` (one supporting fact per question).

    Notes: up to three of the story's statements so far about the asked person, the
    last of which answers, among up to two about others, in story order.
    """
    questions = []
    for episode in load_babi(path, 1):
        for i, step in enumerate(episode.steps):
            if step.is_question:
                questions.append((episode.steps[:i], step))
    out = []
    for before, step in rng.sample(questions, min(count, len(questions))):
        said = [s.text for s in before if not s.is_question]
        person = step.text.split()[-1].rstrip("?")
        about = [s for s in said if s.split()[0] == person][-rng.randint(1, 3):]
        others = [s for s in said if s.split()[0] != person]
        notes = sorted(about + rng.sample(others, min(rng.randint(0, 2), len(others))), key=said.index)
        reply = f"{person} is in the {step.answer}."
        out.append(Example(chat_messages(system_prompt, notes, [], step.text), reply, "answer", step.answer))
    return out


def breadth_examples(conversation: Conversation, system_prompt: str, rng: random.Random, reply_of: Callable[[str], str], *,
                     history_turns: int = 8, not_told_rate: float = 0.15, message_sentences: int = 1,
                     lookalike_rate: float = 0.0) -> list[Example]:
    """Adapter examples from one broad generated conversation (training/breadth.py), one per message.

    Notes, as chat recalls them: for a question, the sentence that answers it (a corrected
    value restated in the statement it corrects, as chat.quoted_corrections shows it) among
    up to three earlier sentences. For a never-taught question, and at `not_told_rate` for a
    taught one whose message is not in the shown history, the notes lack the answer but
    hold the earlier sentence most like the question when one shares a topic word (chat
    recalls "the bin day is Monday" when asked for the market day), and the reply says it
    was not told. Statements are acknowledged, chit-chat gets the model's own reply. Each
    note is shown with the nearest other sentences of its message, `message_sentences` in
    all, as chat shows it (chat.note_message_sentences). At `lookalike_rate`, a taught
    question's notes also hold an earlier sentence that does not answer it: the one most
    like it, else one naming whom it names, else any (as chat.max_notes 2 shows the
    answer beside the next best statement).
    """
    said: list[str] = []  # sentences of statements so far
    message_of: dict[str, list[str]] = {}  # a sentence -> the statement sentences of its message
    history: list[tuple[str, str]] = []
    out: list[Example] = []
    for turn in conversation.turns:
        if turn.restart:
            history = []
            continue
        recent = history[len(history) - rng.randint(0, min(history_turns, len(history))):]
        notes = rng.sample(said, min(rng.randint(0, 3), len(said)))
        value = ""
        shown = {text for pair in recent for text in pair}
        withheld = turn.kind in ("recall", "latest") and turn.source not in shown and rng.random() < not_told_rate
        if turn.kind in ("recall", "latest") and not withheld:
            answer = _answering_sentence(turn, said)
            notes = [n for n in notes if n != answer] + [answer]
            others = [s for s in said if s not in notes and not _answers(turn, s)] if lookalike_rate > 0 else []
            if others and rng.random() < lookalike_rate:  # at 0 no draw, so the random stream is a recipe without look-alikes
                notes.append(_most_like(turn.text, others) or _naming_alike(turn.text, others) or rng.choice(others))
            reply, kind, value = f"{turn.about} is {turn.expect[0]}".rstrip(".") + ".", "answer", turn.expect[0]
        elif turn.kind == "not_told" or withheld:  # whatever is recalled is about something else
            others = said if turn.kind == "not_told" else [s for s in said if not _answers(turn, s)]
            notes = [n for n in notes if n in others]
            look_alike = _most_like(turn.text, others)
            notes = notes + [look_alike] if look_alike else notes or rng.sample(others, min(1, len(others)))
            reply, kind = rng.choice(NOT_TOLD), "not_told"
        elif turn.text in CHIT_CHAT:
            reply, kind = reply_of(turn.text), "distilled"
        else:
            reply, kind = rng.choice(ACKNOWLEDGE), "acknowledge"
        notes = sorted(set(notes), key=lambda n: said.index(n) if n in said else len(said))  # a restated note is the newest
        notes = list(dict.fromkeys(_in_message(n, message_of.get(n, [n]), message_sentences) for n in notes))
        out.append(Example(chat_messages(system_prompt, notes, recent, turn.text), reply, kind, value))
        if not turn.kind:
            statements = [s for s in split_sentences(turn.text) if not is_question(s)]
            said.extend(s for s in statements if s not in said)
            message_of.update((s, statements) for s in statements)
        history.append((turn.text, reply))
    return out


def _in_message(sentence: str, message: list[str], count: int) -> str:
    """`sentence` with the nearest other sentences of its `message`, `count` in all (the following first), in order."""
    near = nearest_first(message.index(sentence), range(len(message)))[:count]
    return " ".join(message[j] for j in sorted(near))


def _answers(turn: Turn, sentence: str) -> bool:
    """Whether `sentence` holds a value a taught question asks for: its answer, or one it replaced."""
    return any(v.lower() in sentence.lower() for v in turn.expect + turn.stale if v)


def _most_like(question: str, sentences: list[str]) -> str | None:
    """The first of `sentences` sharing the most topic words with `question`; None when none shares one."""
    asked = set(topic_words(question))
    best = max(sentences, key=lambda s: len(asked & set(topic_words(s))), default=None)
    return best if best is not None and asked & set(topic_words(best)) else None


def _naming_alike(question: str, sentences: list[str]) -> str | None:
    """The first of `sentences` sharing a capitalized word past its first with `question` (a name); None if none does."""
    names = {w for w in words(question)[1:] if w[:1].isupper()}
    return next((s for s in sentences if names & set(words(s))), None)


def _answering_sentence(turn: Turn, said: list[str]) -> str:
    """The sentence of `turn.source` that holds the answer; a correction that only quotes the
    old value shown, as chat shows it, as the corrected statement with the new value."""
    own = split_sentences(turn.source)
    sentence = next((s for s in own if turn.expect[0].lower() in s.lower()), turn.source)
    for old in turn.stale:
        if old.lower() in turn.source.lower():  # "Correction: 4471, not 7731.": restate the statement it corrects
            earlier = next((s for s in reversed(said) if old.lower() in s.lower() and s not in own), None)
            if earlier is not None:
                return earlier.replace(old, turn.expect[0])
    return sentence


def distilled_examples(
    prompts: list[str], said: list[str], system_prompt: str, reply_of: Callable[[str], str], rng: random.Random, count: int
) -> list[Example]:
    """`count` examples of general prompts among unrelated notes whose target is the model's own reply without notes."""
    out = []
    for _ in range(count):
        prompt = rng.choice(prompts)
        notes = rng.sample(said, min(rng.randint(0, 3), len(said)))
        out.append(Example(chat_messages(system_prompt, notes, [], prompt), reply_of(prompt), "distilled"))
    return out


def paraphrased(episode: Episode, rng: random.Random, share: float) -> Episode:
    """`episode` with a `share` of its questions asked in an EXTRA_ASK phrasing instead."""
    steps = list(episode.steps)
    for i, step in enumerate(steps):
        if step.is_question and rng.random() < share:
            fact = steps[step.support[0] - 1].fact
            steps[i] = replace(step, text=rng.choice(EXTRA_ASK[fact.relation]).format(s=fact.subject))
    return replace(episode, steps=steps)


def training_dialogue(
    gen: TeachRecall, rng: random.Random, max_facts: int, *, paraphrase_share: float = 0.0, crowded_share: float = 0.0
) -> Episode:
    """One dialogue of 2..`max_facts` facts, a third of them at most corrected.

    At `crowded_share` it is about ceil(facts / 3) people; `paraphrase_share` of its
    questions are asked in EXTRA_ASK phrasings. At 0 neither draws from `rng`, so the
    dialogues are those of a recipe without them.
    """
    n = rng.randint(2, max_facts)
    people = math.ceil(n / 3) if crowded_share > 0 and rng.random() < crowded_share else None
    episode = gen.episode(rng, n, corrections=rng.randint(0, n // 3), people=people)
    return paraphrased(episode, rng, paraphrase_share) if paraphrase_share > 0 else episode


def training_examples(
    names_file: str | Path, system_prompt: str, *, dialogues: int, max_facts: int, seed: int, split: str,
    reply_of: Callable[[str], str], distilled_share: float = 0.2, history_turns: int = 8,
    babi_file: str | Path | None = None, babi_share: float = 0.0, paraphrase_share: float = 0.0,
    crowded_share: float = 0.0, other_fact_share: float = 0.0, breadth_share: float = 0.0,
    breadth_chatty: float = 0.0, message_sentences: int = 1, breadth_lookalikes: float = 0.0,
) -> list[Example]:
    """The adapter's examples from `dialogues` generated dialogues of `split`, plus distilled
    ones and, with `babi_file` (bAbI task 1), a `babi_share` of bAbI questions; the
    dialogues' shares as `training_dialogue` takes them, `other_fact_share` as
    `dialogue_examples` does; a `breadth_share` of examples from broad generated
    conversations of `split` (`breadth_examples`), a `breadth_chatty` share of their messages
    wrapped in chatter, notes shown with `message_sentences` of their message, a
    `breadth_lookalikes` share of their taught questions shown a look-alike note too."""
    gen = TeachRecall(split, names_file)
    rng = random.Random(seed)
    examples, said = [], []
    for _ in range(dialogues):
        episode = training_dialogue(gen, rng, max_facts, paraphrase_share=paraphrase_share, crowded_share=crowded_share)
        examples += dialogue_examples(episode, system_prompt, rng, reply_of, other_fact_share=other_fact_share,
                                      history_turns=history_turns)
        said += [s.text for s in episode.steps if s.tag in ("teach", "correct")]
    general = GENERAL[:GENERAL_TRAIN] if split == "train" else GENERAL[GENERAL_TRAIN:]
    count = int(distilled_share * len(examples) / (1 - distilled_share))
    examples += distilled_examples(general, said, system_prompt, reply_of, rng, count)
    if breadth_share > 0:
        broad, extra = Breadth(split, names_file, chatty=breadth_chatty), []
        wanted = int(breadth_share * len(examples) / (1 - breadth_share))
        while len(extra) < wanted:
            conversation = broad.conversation(random.Random(seed + len(extra)), "adapter")
            extra += breadth_examples(conversation, system_prompt, rng, reply_of, history_turns=history_turns,
                                      message_sentences=message_sentences, lookalike_rate=breadth_lookalikes)
        examples += extra[:wanted]
    if babi_file is not None and babi_share > 0:
        examples += babi_examples(babi_file, system_prompt, rng, int(babi_share * len(examples) / (1 - babi_share)))
    rng.shuffle(examples)
    return examples


class ReplyCache:
    """The base model's own greedy replies to prompts (no notes), computed once and kept in a JSON file."""

    def __init__(self, path: str | Path, generate: Callable[[str], str]) -> None:
        self.path = Path(path)
        self.generate = generate
        self.replies: dict[str, str] = json.loads(self.path.read_text()) if self.path.is_file() else {}

    def __call__(self, prompt: str) -> str:
        if prompt not in self.replies:
            self.replies[prompt] = self.generate(prompt)
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self.path.write_text(json.dumps(self.replies, indent=1))
        return self.replies[prompt]
