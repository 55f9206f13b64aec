"""Episodes for meta-training and evaluating the neural memory.

An episode is what one user says in order: statements, which the memory writes,
and questions, which it answers by reading. Two sources:

  * bAbI (Weston et al. 2015, ../shared/data/babi): one episode per story, its
    sentences and questions in file order (a question may only use what came before).
  * teach-and-recall dialogues, generated here: invented people and facts about
    them taught in many phrasings, chit-chat in between, corrections that overwrite
    earlier facts, and paraphrased questions whose answer is the latest value.
    The train / val / test splits share no person names, no values and no templates,
    so a test score measures recall of unseen content in unseen wording.
"""

from __future__ import annotations

import hashlib
import random
from dataclasses import dataclass
from pathlib import Path

BABI_TASKS = {
    1: "single-supporting-fact", 2: "two-supporting-facts", 3: "three-supporting-facts",
    4: "two-arg-relations", 5: "three-arg-relations", 6: "yes-no-questions", 7: "counting",
    8: "lists-sets", 9: "simple-negation", 10: "indefinite-knowledge", 11: "basic-coreference",
    12: "conjunction", 13: "compound-coreference", 14: "time-reasoning", 15: "basic-deduction",
    16: "basic-induction", 17: "positional-reasoning", 18: "size-reasoning", 19: "path-finding",
    20: "agents-motivations",
}
SPLITS = ("train", "val", "test")


@dataclass(frozen=True)
class Fact:
    """What a teaching statement says: `subject`'s `relation` is `value`."""

    subject: str
    relation: str
    value: str


@dataclass
class Step:
    """One utterance. A question has an answer; a statement has none."""

    text: str
    answer: str | None = None
    fact: Fact | None = None  # teach-and-recall statements: the fact taught
    tag: str = ""  # teach-and-recall: "teach", "correct", "chat"; questions: "fact" or "corrected"
    support: tuple[int, ...] = ()  # questions: the statements that answer it (1-based step ids, as bAbI's line ids)

    @property
    def is_question(self) -> bool:
        return self.answer is not None


@dataclass
class Episode:
    steps: list[Step]
    task: str  # "babi1".."babi20" or "teach"
    facts: int = 0  # teach-and-recall: distinct facts taught

    @property
    def questions(self) -> list[Step]:
        return [s for s in self.steps if s.is_question]


# ---- bAbI ------------------------------------------------------------------------


def parse_tasks(spec: str) -> list[int]:
    """'1-20', '1,4,6' or '1-3,7' -> sorted task numbers."""
    tasks: set[int] = set()
    for part in spec.split(","):
        part = part.strip()
        if "-" in part:
            lo, hi = (int(x) for x in part.split("-"))
            tasks.update(range(lo, hi + 1))
        elif part:
            tasks.add(int(part))
    bad = sorted(t for t in tasks if t not in BABI_TASKS)
    if bad or not tasks:
        raise ValueError(f"bAbI tasks must be within 1-20, got {spec!r}")
    return sorted(tasks)


def babi_file(data_dir: str | Path, task: int, split: str, babi_set: str = "en-10k") -> Path:
    """The file of `task`'s `split` ("train" or "test"); falls back to the 1k set (en/)
    where the chosen set lacks it (the 10k qa3 train file is missing from ../shared/data)."""
    name = f"qa{task}_{BABI_TASKS[task]}_{split}.txt"
    for folder in (babi_set, "en"):
        path = Path(data_dir) / "babi" / folder / name
        if path.is_file():
            return path
    raise FileNotFoundError(f"bAbI file {name} is in neither {babi_set}/ nor en/ under {Path(data_dir) / 'babi'}")


def load_babi(path: str | Path, task: int) -> list[Episode]:
    """Parse a bAbI file into one episode per story.

    Line format: `ID text` for a statement, `ID question\\tanswer\\tsupport-ids` for a
    question; ID 1 starts a new story.
    """
    episodes: list[Episode] = []
    for lineno, line in enumerate(Path(path).read_text(encoding="ascii").splitlines(), 1):
        if not line.strip():
            continue
        ident, _, rest = line.partition(" ")
        if not ident.isdigit():
            raise ValueError(f"{path}:{lineno}: a line must start with its id, got {line[:40]!r}")
        if int(ident) == 1:
            episodes.append(Episode([], f"babi{task}"))
        if not episodes:
            raise ValueError(f"{path}:{lineno}: the first story does not start at id 1")
        if "\t" in rest:
            question, answer, support = rest.split("\t")
            episodes[-1].steps.append(
                Step(question.strip(), answer=answer.strip(), support=tuple(int(x) for x in support.split()))
            )
        else:
            episodes[-1].steps.append(Step(rest.strip()))
    return episodes


# ---- teach-and-recall --------------------------------------------------------------

# Each list is cut into train / val / test parts by SPLIT_CUTS, so no template is
# shared between splits. {s} is the person, {v} the value.
TEACH = {
    "home": [
        "{s} lives in {v}.", "My friend {s} has a house in {v}.", "Remember that {s} lives in {v}.",
        "{s} is living in the town of {v} now.", "Note: {s}'s home is {v}.", "You should know {s} resides in {v}.",
        "{s} makes a home in {v}.", "{s} settled down in {v}.", "The place {s} calls home is {v}.",
    ],
    "work": [
        "{s} works at {v}.", "{s} has a job at {v}.", "Remember: {s} is employed by {v}.",
        "{s}'s employer is {v}.", "Every day {s} goes to work at {v}.", "{s} earns a living at {v}.",
        "{s} took a position at {v}.", "The company {s} works for is {v}.", "{s} is on the staff of {v}.",
    ],
    "pet": [
        "{s} has a pet called {v}.", "{s}'s dog is named {v}.", "Remember that {s} owns a cat named {v}.",
        "{s} keeps a parrot called {v}.", "The pet of {s} answers to {v}.", "{s} adopted a puppy named {v}.",
        "{s} walks a dog called {v} every morning.", "{s}'s pet goes by {v}.", "{s} looks after a rabbit named {v}.",
    ],
    "code": [
        "The code of {s}'s locker is {v}.", "{s}'s locker code is {v}.", "Remember: {s} opens the locker with {v}.",
        "{s} uses the number {v} for the locker.", "Note that the locker of {s} has code {v}.",
        "To open {s}'s locker, type {v}.", "{s} set the locker code to {v}.", "The combination for {s}'s locker is {v}.",
        "{s} keeps the locker shut with code {v}.",
    ],
}
CORRECT = {
    "home": ["Actually, {s} moved to {v}.", "Correction: {s} now lives in {v}.", "{s} has relocated to {v}."],
    "work": ["Actually, {s} now works at {v}.", "Update: {s} changed jobs and is at {v} now.", "{s} switched to {v}."],
    "pet": ["Sorry, {s}'s pet is really called {v}.", "Correction: the pet of {s} is named {v}.", "{s} renamed the pet {v}."],
    "code": ["Actually, {s}'s locker code changed to {v}.", "Update: the locker of {s} now opens with {v}.", "{s} reset the locker code to {v}."],
}
ASK = {
    "home": [
        "Where does {s} live?", "Which town is {s}'s home?", "Do you remember where {s} lives?",
        "In what place does {s} live?", "Where is {s}'s house?", "Tell me where {s} lives.",
        "What town does {s} call home?", "Where can I find {s}'s home?", "Which place does {s} live in?",
    ],
    "work": [
        "Where does {s} work?", "Who employs {s}?", "Which company does {s} work for?",
        "Where is {s}'s job?", "What is {s}'s employer?", "Tell me where {s} works.",
        "At which firm does {s} work?", "Who does {s} work for?", "What company pays {s}?",
    ],
    "pet": [
        "What is the name of {s}'s pet?", "What is {s}'s pet called?", "How is {s}'s pet named?",
        "What do they call {s}'s pet?", "Name {s}'s pet.", "Which name does {s}'s pet have?",
        "What did {s} name the pet?", "What's {s}'s pet's name?", "Tell me the name of {s}'s pet.",
    ],
    "code": [
        "What is {s}'s locker code?", "Which code opens {s}'s locker?", "What number opens the locker of {s}?",
        "Tell me {s}'s locker code.", "What's the combination of {s}'s locker?", "How does {s} open the locker?",
        "What is the code for {s}'s locker?", "Which number does {s} use for the locker?", "Remind me of {s}'s locker code.",
    ],
}
CHAT = [
    "How are you today?", "The weather is lovely this morning.", "I had pasta for lunch.", "Tell me a joke.",
    "What a busy week it has been.", "I am thinking about learning the guitar.", "Thanks for listening.",
    "Did you sleep well?", "My coffee went cold again.", "I should water the plants.", "That is interesting.",
    "Let us talk about something else.", "It might rain later.", "I just finished a good book.",
    "The train was late again.", "I love the smell of fresh bread.", "Can you believe it is already evening?",
    "I went for a long walk yesterday.",
]
# fraction of each template list (and of the name and value pools) that goes to train, val, test
SPLIT_CUTS = (0.67, 0.78)

_SYLLABLES_A = ["bra", "cor", "dal", "fen", "gor", "hal", "kel", "lun", "mar", "nor", "pel", "quin", "ros", "sil", "tor", "vel", "wyn", "zan"]
_SYLLABLES_B = ["a", "e", "i", "o", "u", "ae", "ia", "ou"]
_SYLLABLES_C = ["dor", "mere", "stad", "vale", "wick", "holm", "gard", "ton", "brook", "crest", "ford", "lin", "more", "rith", "sk", "x"]
_RELATIONS = tuple(TEACH)


def _split_of(text: str) -> str:
    """A stable split for a name or value: the same string always lands in the same split."""
    x = int(hashlib.sha256(text.lower().encode()).hexdigest()[:8], 16) / 16**8
    return "train" if x < SPLIT_CUTS[0] else "val" if x < SPLIT_CUTS[1] else "test"


def _cut(items: list[str], split: str) -> list[str]:
    n = len(items)  # every split keeps at least one item, even from a list of three
    a = min(max(1, round(n * SPLIT_CUTS[0])), n - 2)
    b = min(max(a + 1, round(n * SPLIT_CUTS[1])), n - 1)
    return {"train": items[:a], "val": items[a:b], "test": items[b:]}[split]


def read_names(names_file: str | Path, split: str) -> list[str]:
    """The first names of `names_file` (one a line), for a generator of `split`, which must be a split's name."""
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
    return Path(names_file).read_text(encoding="utf-8").split()


class TeachRecall:
    """Generator of teach-and-recall dialogues for one split.

    Args:
        split: "train", "val" or "test".
        names_file: first names, one a line (../shared/data/names/names.txt).
    """

    def __init__(self, split: str, names_file: str | Path) -> None:
        names = read_names(names_file, split)
        self.split = split
        # the invented values must never look like a person from any split
        taken = {n.lower() for n in names}
        self.people = sorted({n.capitalize() for n in names if _split_of(n) == split})
        words = {
            (a + b + c).capitalize()
            for a in _SYLLABLES_A for b in _SYLLABLES_B for c in _SYLLABLES_C
        }
        self.values = sorted(w for w in words if w.lower() not in taken and _split_of(w) == split)
        self.teach = {r: _cut(t, split) for r, t in TEACH.items()}
        self.correct = {r: _cut(t, split) for r, t in CORRECT.items()}
        self.ask = {r: _cut(t, split) for r, t in ASK.items()}
        self.chat = _cut(CHAT, split)

    def untold_questions(self, episode: Episode, rng: random.Random, k: int) -> list[str]:
        """Up to `k` questions about a relation `episode` never taught of people it taught something else of."""
        taught = {(s.fact.subject, s.fact.relation) for s in episode.steps if s.fact}
        people = sorted({person for person, _ in taught})
        untaught = [(p, r) for p in people for r in sorted(self.ask) if (p, r) not in taught]
        return [rng.choice(self.ask[r]).format(s=p) for p, r in rng.sample(untaught, min(k, len(untaught)))]

    def _value(self, rng: random.Random, relation: str, used: set[str]) -> str:
        while True:
            v = str(rng.randrange(1000, 10000)) if relation == "code" else rng.choice(self.values)
            if v not in used:
                used.add(v)
                return v

    def episode(
        self,
        rng: random.Random,
        n_facts: int,
        *,
        corrections: int = 0,
        chat_every: int = 3,
        questions: int | None = None,
        people: int | None = None,
    ) -> Episode:
        """One dialogue: teach `n_facts` facts (chit-chat after about every
        `chat_every`), then correct `corrections` of them, chat again, and ask
        `questions` of them (default all), every corrected one among them.
        No value repeats within a dialogue, so every answer is unambiguous.
        With `people`, the facts are about that many people, several each (a person's
        home, work and pet); otherwise almost every fact is about someone new.
        """
        if corrections > n_facts:
            raise ValueError("cannot correct more facts than are taught")
        if people is not None and not 0 < people * len(_RELATIONS) >= n_facts:
            raise ValueError(f"{people} people hold at most {people * len(_RELATIONS)} facts, not {n_facts}")
        pool = self.people if people is None else rng.sample(self.people, people)
        pairs: set[tuple[str, str]] = set()
        while len(pairs) < n_facts:
            pairs.add((rng.choice(pool), rng.choice(_RELATIONS)))
        order = sorted(pairs)
        rng.shuffle(order)
        used: set[str] = set()
        latest: dict[tuple[str, str], str] = {}
        said_at: dict[tuple[str, str], int] = {}  # 1-based id of the step that last set the fact
        steps: list[Step] = []

        def chat() -> None:
            steps.append(Step(rng.choice(self.chat), tag="chat"))

        for i, (s, r) in enumerate(order):
            v = self._value(rng, r, used)
            latest[(s, r)] = v
            steps.append(Step(rng.choice(self.teach[r]).format(s=s, v=v), fact=Fact(s, r, v), tag="teach"))
            said_at[(s, r)] = len(steps)
            if chat_every and rng.random() < 1 / chat_every:
                chat()
        corrected = rng.sample(order, corrections)
        for s, r in corrected:
            chat()
            v = self._value(rng, r, used)
            latest[(s, r)] = v
            steps.append(Step(rng.choice(self.correct[r]).format(s=s, v=v), fact=Fact(s, r, v), tag="correct"))
            said_at[(s, r)] = len(steps)
        for _ in range(2):
            chat()
        n_q = n_facts if questions is None else min(questions, n_facts)
        rest = [p for p in order if p not in set(corrected)]
        asked = corrected + rng.sample(rest, max(0, n_q - len(corrected)))
        rng.shuffle(asked)
        for s, r in asked:
            steps.append(
                Step(
                    rng.choice(self.ask[r]).format(s=s),
                    answer=latest[(s, r)],
                    tag="corrected" if (s, r) in set(corrected) else "fact",
                    support=(said_at[(s, r)],),
                )
            )
        return Episode(steps, "teach", facts=n_facts)
