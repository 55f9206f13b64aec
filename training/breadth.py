"""Broad teach-and-recall conversations, generated: many kinds of facts, said, corrected and asked as people do.

`episodes.TeachRecall` knows four relations of invented people. Here a fact is one of
about a hundred attributes (codes, passwords, times, dates, places, amounts with units,
e-mail and web addresses, names of pets and people) of an owner: the user ("my gym
locker number"), a named person ("Oriel's dentist"), or a thing ("the boiler code").
Facts are taught alone, two in one sentence, or several in one message; corrected in
everyday phrasings, some of which never name what they correct ("Correction: 4471, not
7731."); asked in many forms, some lowercase or with a typo; and attributes never
taught are asked too. A share of teaching and correcting messages can be wrapped in
chatter (`chatty`: a greeting before, a filler clause, an aside, a remark after). Attributes, templates, names and values are cut into train / val /
test, so a split measures unseen relations in unseen wording.

Conversations come out in the frozen set's form (`training.frozen.Conversation`), so one
scorer reads both; the frozen set itself is hand-written and reported only.
"""

from __future__ import annotations

import hashlib
import random
import string
from dataclasses import dataclass
from pathlib import Path

from text import split_sentences

from .episodes import CHAT, _split_of, read_names
from .frozen import Conversation, Turn

# (attribute, kind of value, whose): "my" = the user's, "person" = a named person's, "the" = a thing's
ATTRIBUTES: list[tuple[str, str, str]] = [
    ("gym locker number", "number", "my"), ("bike lock combination", "code", "my"), ("PIN for the storage unit", "code", "the"),
    ("boiler code", "code", "the"), ("gate code", "code", "the"), ("alarm code", "code", "the"), ("garage door code", "code", "the"),
    ("wifi password", "password", "the"), ("guest wifi password", "password", "the"), ("laptop password", "password", "my"),
    ("booking reference", "reference", "my"), ("order number", "reference", "my"), ("tracking number", "reference", "the"),
    ("membership number", "number", "my"), ("library card number", "number", "my"), ("desk number", "number", "my"),
    ("hotel room number", "number", "my"), ("parking bay", "number", "my"), ("seat number", "seat", "my"),
    ("flight number", "flight", "my"), ("licence plate", "plate", "my"), ("insurance policy number", "reference", "my"),
    ("standup time", "time", "the"), ("dentist appointment time", "time", "my"), ("yoga class time", "time", "my"),
    ("train departure time", "time", "my"), ("pickup time", "time", "the"), ("dinner reservation time", "time", "the"),
    ("call with the bank", "time", "my"), ("piano lesson time", "time", "person"), ("shift start time", "time", "person"),
    ("birthday", "date", "person"), ("anniversary", "date", "my"), ("rent due date", "date", "the"),
    ("exam date", "date", "person"), ("passport expiry date", "date", "my"), ("moving day", "date", "person"),
    ("wedding date", "date", "person"), ("visa appointment date", "date", "my"), ("hometown", "place", "person"),
    ("favourite café", "place", "my"), ("gym", "place", "person"), ("home town", "place", "my"),
    ("new office", "place", "the"), ("holiday destination", "place", "person"), ("dentist's street", "place", "my"),
    ("village", "place", "person"), ("bakery", "place", "the"), ("school", "place", "person"),
    ("dog's name", "name", "person"), ("cat's name", "name", "my"), ("landlord's name", "name", "the"),
    ("doctor's name", "name", "my"), ("manager's name", "name", "person"), ("piano teacher's name", "name", "person"),
    ("horse's name", "name", "person"), ("neighbour's name", "name", "my"), ("goldfish's name", "name", "person"),
    ("rent", "money", "the"), ("monthly budget for groceries", "money", "my"), ("deposit", "money", "the"),
    ("price of the sofa", "money", "the"), ("gym fee", "money", "person"), ("phone bill", "money", "my"),
    ("weight goal", "mass", "my"), ("suitcase weight limit", "mass", "the"), ("dose of the medicine", "dose", "my"),
    ("daily dose", "dose", "person"), ("distance to the lake", "distance", "the"), ("running goal", "distance", "my"),
    ("commute", "distance", "person"), ("fish tank size", "volume", "the"), ("water bottle size", "volume", "my"),
    ("landlord's email", "email", "the"), ("work email", "email", "person"), ("backup email", "email", "my"),
    ("project wiki", "url", "the"), ("recipe link", "url", "the"), ("portfolio site", "url", "person"),
    ("parking level", "level", "my"), ("floor", "level", "person"), ("platform", "number", "the"),
    ("shoe size", "number", "person"), ("jersey number", "number", "person"), ("bus number", "number", "my"),
    ("favourite tea", "thing", "person"), ("instrument", "thing", "person"), ("car", "thing", "my"),
    ("allergy", "thing", "person"), ("lucky number", "number", "person"), ("safe combination", "code", "the"),
    ("meeting room", "reference", "the"), ("locker at the pool", "number", "my"), ("bin day", "weekday", "the"),
    ("cleaning day", "weekday", "my"), ("market day", "weekday", "the"), ("swimming day", "weekday", "person"),
]

TEACH = [
    "{Own} is {v}.", "Remember that {own} is {v}.", "Please note: {own} is {v}.", "fyi {own} is {v}",
    "Just so you know, {own} is {v}.", "{Own}? It's {v}.", "Can you keep this for me: {own} is {v}.",
    "Quick one, {own} is {v}, don't let me forget.", "I'm writing this down here: {own} = {v}.",
    "Heads up, {own} is {v}.", "ok so {own} is {v} lol", "For the record, {own} is {v}.",
    "Note to self: {own} is {v}.", "Good to know: {own} is {v}.", "btw {own} is {v}.",
    "Something to remember: {own} is {v}.", "Keep in mind that {own} is {v}.", "Just noting that {own} is {v}.",
]
# two facts in one sentence; several in one message
COMPOUND = [
    "{Own} is {v} and {own2} is {v2}.", "{Own} is {v}, and {own2} is {v2}.", "{Own} is {v}; also, {own2} is {v2}.",
    "So {own} is {v} and {own2} is {v2}, ok?", "{Own} is {v}, while {own2} is {v2}.", "{Own} is {v} plus {own2} is {v2}.",
]
SEVERAL = [
    "Two things. {Own} is {v}. {Own2} is {v2}.", "A couple of notes: {own} is {v}. Also, {own2} is {v2}.",
    "Some admin stuff. {Own} is {v}. And {own2} is {v2}.", "Writing these down: {own} is {v}. {Own2} is {v2}.",
    "Two updates for you. First, {own} is {v}. Second, {own2} is {v2}.", "Okay. {Own} is {v}. Oh and {own2} is {v2}.",
]
# naming what they correct
CORRECT = [
    "Change of plan: {own} is now {v}.", "I changed {own}, it's {v} now.", "Update: {own} is {v}, not {old} anymore.",
    "{Own} changed to {v}.", "Scratch that, {own} is actually {v}.", "new {own}: {v}", "{Own} is now {v}.",
    "They moved {own} to {v}.", "Heads up, {own} is different now: {v}.", "From now on {own} is {v}.",
    "I got that wrong earlier, {own} is {v}.", "{Own} has been changed to {v}.",
]
# not naming it: only the old value ties them to what they correct
CORRECT_UNNAMED = [
    "Correction: {v}, not {old}.", "Sorry, I said {old} but it's {v}.", "Oops, not {old}, it's {v}.",
    "Wait, {old} was wrong. It's {v}.", "Make that {v} instead of {old}.", "It's {v} now, not {old}.",
    "Small fix: {old} should be {v}.", "My mistake, {v} rather than {old}.", "Replace {old} with {v}, please.",
]
ASK = [
    "What is {own}?", "what's {own} again?", "Do you remember {own}?", "Remind me, what is {own}?",
    "Can you tell me {own}?", "{Own}?", "whats {own}", "I forgot {own}, what was it?", "Any idea what {own} is?",
    "What did I say {own} was?", "Tell me {own}.", "Quick question: what is {own}?", "Hey, what's {own}?",
    "Do you know {own}?", "What was {own} again?", "Could you remind me of {own}?", "Which is {own}?",
    "What do you have for {own}?",
]
CHIT_CHAT = CHAT + [
    "Ugh, Mondays.", "What should I cook tonight?", "I finally fixed the squeaky door.", "Do you like rainy days?",
    "My neighbour's dog barked all night.", "I think I need a holiday.", "What's a good way to relax?",
    "I watched a documentary about octopuses.", "The traffic was awful today.", "How do plants drink water?",
    "I'm trying to drink more water.", "Any tips for sleeping better?", "I started a puzzle with 1000 pieces.",
    "Why do cats purr?", "We had a fire drill at work.", "I bought new running shoes.",
]
# chatter around a fact, as people write: a sentence before, a clause before or after, a sentence after
OPEN_SENTENCE = [
    "Long day today.", "Morning!", "Right, back to admin.", "Busy week ahead.", "Ok, random thing.", "Sorry for the late message.",
    "Phew, finally home.", "Quick update.", "So, news.", "Weekend admin time.", "Hi again.", "Sorting my inbox today.",
    "The post came early.", "Just got off the phone.", "Rainy morning here.", "Tiny thing.",
]
OPEN_CLAUSE = [
    "Oh, and ", "ok so um ", "Anyway, ", "By the way, ", "One more thing: ", "Also ", "Honestly ", "Before I forget, ",
    "So basically ", "Turns out ", "Right, ", "Hmm, so ", "Random, but ", "Oh yeah, ", "Speaking of which, ", "Apparently ",
]
ASIDE = [
    " - I'm writing it here so I don't lose it", ", which is a relief", " (finally)", ", don't ask why", " - they told me this morning",
    ", at least that's what the email says", ", I double-checked", " lol", " - long story", ", in case I need it later",
    ", according to the letter", " - the receptionist insisted I note it", ", if I remember right", " :)", ", ugh",
    " - better than before",
]
CLOSE_SENTENCE = [
    "Better than last time!", "Such a hassle.", "Anyway, that's that.", "I'll need it next week.", "Ugh.", "Fingers crossed.",
    "Don't let me forget it.", "Pretty happy about that.", "Weird, I know.", "More on that later.", "Long story.",
    "It took ages to sort out.", "So that's settled.", "Can't believe it.", "Back to work now.", "Thanks!",
]
_FEW = {"weekday", "thing", "level"}  # kinds with too few values to split: common words, not invented content
_MONTHS = ["January", "February", "March", "April", "May", "June", "July", "August", "September", "October",
           "November", "December"]
_WEEKDAYS = ["Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday"]
_THINGS = {
    "favourite tea": ["rooibos", "oolong", "sencha", "chamomile", "earl grey", "lapsang souchong", "genmaicha", "hibiscus",
                      "yerba mate", "darjeeling", "assam", "gunpowder tea"],
    "instrument": ["oboe", "cello", "banjo", "harp", "bassoon", "ukulele", "trombone", "accordion", "viola", "flute",
                   "clarinet", "marimba"],
    "car": ["green Skoda", "red Fiat Panda", "white Volvo estate", "blue Mini", "silver Corolla", "yellow Beetle",
            "black Saab", "orange Clio", "grey Passat", "brown Land Rover", "purple Twingo", "beige Micra"],
    "allergy": ["peanuts", "penicillin", "shellfish", "bee stings", "pollen", "latex", "sesame", "dust mites",
                "kiwi fruit", "cat hair", "mustard", "soy"],
}
_WORDS = ["otter", "maple", "copper", "falcon", "walnut", "ember", "harbor", "lilac", "pebble", "thistle", "canyon", "juniper",
          "saffron", "velvet", "quartz", "meadow", "orbit", "bramble", "cobalt", "willow"]
_SYLLABLES = (["bra", "cor", "dal", "fen", "gor", "hal", "kel", "lun", "mar", "nor", "pel", "quin", "ros", "sil", "tor",
               "vel", "wyn", "zan", "bel", "dru"], ["a", "e", "i", "o", "u", "ae", "ia", "ou"],
              ["dor", "mere", "stad", "vale", "wick", "holm", "gard", "ton", "brook", "crest", "ford", "lin", "more", "rith"])


@dataclass(frozen=True)
class Fact:
    attribute: str
    kind: str
    owner: str  # "my", "the" or a person's name

    def phrase(self, start: bool = False, *, reply: bool = False) -> str:
        """How a message names it: "my gym locker number", "Oriel's birthday", "The boiler code";
        a `reply` to the user says "your" for "my"."""
        head = f"{self.owner}'s" if self.owner not in ("my", "the") else "your" if reply and self.owner == "my" else self.owner
        text = f"{head} {self.attribute}"
        return text[0].upper() + text[1:] if start else text


class Breadth:
    """Generator of broad teach-and-recall conversations for one split.

    Args:
        split: "train", "val" or "test".
        names_file: first names, one a line (../shared/data/names/names.txt).
        chatty: share of teaching and correcting messages wrapped in chatter (a greeting, a filler, an aside).
    """

    def __init__(self, split: str, names_file: str | Path, *, chatty: float = 0.0) -> None:
        names = sorted({n.capitalize() for n in read_names(names_file, split)})
        self.split = split
        self.people = [n for n in names if _split_of(n) == split]
        self.pet_names = [n for n in names if _split_of(n + " pet") == split]
        self.attributes = [a for a in ATTRIBUTES if _attribute_split(a[0]) == split]
        self.teach, self.compound, self.several = _quarters(TEACH, split), _quarters(COMPOUND, split), _quarters(SEVERAL, split)
        self.correct, self.correct_unnamed = _quarters(CORRECT, split), _quarters(CORRECT_UNNAMED, split)
        self.ask, self.chat = _quarters(ASK, split), _quarters(CHIT_CHAT, split)
        self.chatter = [_quarters(t, split) for t in (OPEN_SENTENCE, OPEN_CLAUSE, ASIDE, CLOSE_SENTENCE)]
        self.chatty = chatty
        self.taken = {n.lower() for n in names}

    def value(self, rng: random.Random, fact: Fact) -> tuple[str, tuple[str, ...]]:
        """A value of the fact's kind in this split, and the strings a right reply may hold instead."""
        while True:
            v, also = self._draw(rng, fact)
            if fact.kind in _FEW or _split_of(v) == self.split:
                return v, also

    def _draw(self, rng: random.Random, fact: Fact) -> tuple[str, tuple[str, ...]]:
        kind = fact.kind
        if kind in ("code", "number"):
            return str(rng.randrange(1000, 100000) if kind == "code" else rng.randrange(12, 999)), ()
        if kind == "password":
            return f"{rng.choice(_WORDS)}-{rng.choice(_WORDS)}-{rng.randrange(10, 99)}", ()
        if kind == "reference":
            return "".join(rng.choice(string.ascii_uppercase + string.digits) for _ in range(6)), ()
        if kind == "seat":
            return f"{rng.randrange(2, 40)}{rng.choice('ABCDEF')}", ()
        if kind == "flight":
            return f"{rng.choice(['LH', 'BA', 'KL', 'AF', 'IB', 'SK'])}{rng.randrange(100, 2999)}", ()
        if kind == "plate":
            return f"{rng.choice(string.ascii_uppercase)}{rng.choice(string.ascii_uppercase)}-{rng.randrange(100, 999)}", ()
        if kind == "time":
            hour, minute = rng.randrange(1, 12), rng.choice([5, 10, 15, 20, 25, 35, 40, 45, 50, 55])
            return f"{hour}:{minute:02d} {rng.choice(['a.m.', 'p.m.'])}", (f"{hour}:{minute:02d}",)
        if kind == "date":
            day, month = rng.randrange(1, 29), rng.choice(_MONTHS)
            return (f"{month} {day}", (f"{day} {month}",)) if rng.random() < 0.5 else (f"{day} {month}", (f"{month} {day}",))
        if kind == "weekday":
            return rng.choice(_WEEKDAYS), ()
        if kind in ("place", "name"):
            pool = self.pet_names if kind == "name" else None
            if pool and rng.random() < 0.5:
                return rng.choice(pool), ()
            word = "".join(rng.choice(s) for s in _SYLLABLES).capitalize()
            return (word, ()) if word.lower() not in self.taken else self._draw(rng, fact)
        if kind == "money":
            amount = rng.randrange(20, 2500)
            return (f"${amount:,}", (f"{amount:,}", str(amount))) if rng.random() < 0.5 else (f"{amount} euros", (str(amount),))
        units = {"mass": ("kg", 3, 120), "dose": ("mg", 5, 900), "distance": ("km", 2, 80), "volume": ("litres", 1, 300)}
        if kind in units:
            unit, low, high = units[kind]
            number = str(rng.randrange(low, high)) if rng.random() < 0.6 else f"{rng.randrange(low, high)}.{rng.randrange(1, 10)}"
            return f"{number} {unit}", (number,)
        if kind == "level":  # "Audri's floor is 6." answers "Audri's floor is level 6."
            level = rng.randrange(-3, 12)
            return f"level {level}", (f" {level}.", f" {level} ", f"is {level}")
        if kind == "email":
            return f"{rng.choice(_WORDS)}.{rng.choice(_WORDS)}{rng.randrange(1, 99)}@{rng.choice(_WORDS)}mail.com", ()
        if kind == "url":
            return f"https://{rng.choice(_WORDS)}.example.org/{rng.choice(_WORDS)}", ()
        if kind == "thing":
            return rng.choice(_THINGS[fact.attribute]), ()
        raise ValueError(f"unknown kind of value {kind!r}")

    def conversation(self, rng: random.Random, name: str, *, facts: int = 12, corrections: int = 3, untold: int = 3,
                     restart: bool = True) -> Conversation:
        """One conversation: `facts` facts taught (alone, in pairs, in one message), chit-chat
        between, `corrections` of them corrected, every fact asked after at least three more
        messages, `untold` questions about attributes never taught; a restart half-way
        through the questions when `restart`."""
        chosen = self._facts(rng, facts + untold)
        taught, never = chosen[:facts], chosen[facts:]
        values = {f: self.value(rng, f) for f in taught}
        turns: list[Turn] = []
        source: dict[Fact, str] = {}
        queue = list(taught)
        while queue:
            turns.extend(Turn(rng.choice(self.chat)) for _ in range(rng.random() < 0.4))
            fact = queue.pop(0)
            if queue and rng.random() < 0.3:
                other = queue.pop(0)
                template = rng.choice(self.compound if rng.random() < 0.5 else self.several)
                text = template.format(own=fact.phrase(), Own=fact.phrase(True), v=values[fact][0], own2=other.phrase(),
                                       Own2=other.phrase(True), v2=values[other][0])
                text = self._chatter(rng, _tidy(text), fact.owner)
                source[fact] = source[other] = text
            else:
                text = rng.choice(self.teach).format(own=fact.phrase(), Own=fact.phrase(True), v=values[fact][0])
                text = self._chatter(rng, _tidy(text), fact.owner)
                source[fact] = text
            turns.append(Turn(_tidy(text)))
        stale: dict[Fact, list[str]] = {f: [] for f in taught}
        for fact in rng.sample(taught, min(corrections, len(taught))):
            turns.extend(Turn(rng.choice(self.chat)) for _ in range(1 + (rng.random() < 0.5)))
            old = values[fact][0]
            new = self.value(rng, fact)
            while new[0] == old:
                new = self.value(rng, fact)
            templates = self.correct_unnamed if rng.random() < 0.4 else self.correct
            text = rng.choice(templates).format(own=fact.phrase(), Own=fact.phrase(True), v=new[0], old=old)
            text = self._chatter(rng, _tidy(text), fact.owner)
            stale[fact].append(old)
            values[fact], source[fact] = new, text
            turns.append(Turn(text))
        turns.extend(Turn(c) for c in rng.sample(self.chat, 3))
        every_value = [v for f in taught for v in (values[f][0], *stale[f])]
        questions = [(f, "latest" if stale[f] else "recall") for f in taught] + [(f, "not_told") for f in never]
        rng.shuffle(questions)
        half = len(questions) // 2 if restart else -1
        for k, (fact, kind) in enumerate(questions):
            if k == half:
                turns.append(Turn(restart=True))
            text = self._question(rng, fact)
            after = restart and k >= half
            if kind == "not_told":
                turns.append(Turn(text, kind, stale=tuple(every_value), after_restart=after))
            else:
                value, also = values[fact]
                turns.append(Turn(text, kind, (value, *also), tuple(stale[fact]), source[fact], after_restart=after,
                                  about=fact.phrase(True, reply=True)))
        return Conversation(name, False, turns)

    def _chatter(self, rng: random.Random, text: str, owner: str) -> str:
        """`text` wrapped, at the `chatty` share, in one or two pieces of chatter: a sentence before, a clause
        before (the text's first letter lowered unless it starts a name `owner`), a clause before its final
        full stop (one-sentence texts not ending in an abbreviation), a sentence after."""
        if self.chatty <= 0 or rng.random() >= self.chatty:
            return text
        open_sentence, open_clause, aside, close_sentence = self.chatter
        for where in sorted(rng.sample(range(4), rng.choice([1, 1, 2])), reverse=True):  # inner pieces first
            if where == 0:
                text = f"{rng.choice(open_sentence)} {text}"
            elif where == 1 and not text.startswith(owner) and not text.startswith(("I ", "I'")):
                text = rng.choice(open_clause) + text[0].lower() + text[1:]
            elif where == 2 and text.endswith(".") and text.split()[-1].count(".") == 1 and len(split_sentences(text)) == 1:
                text = text[:-1] + rng.choice(aside) + "."
            elif where == 3:
                text = f"{text} {rng.choice(close_sentence)}"
        return text

    def _facts(self, rng: random.Random, count: int) -> list[Fact]:
        """`count` distinct facts: the user's, a few named people's and things'."""
        people = rng.sample(self.people, 3)
        out: list[Fact] = []
        for attribute, kind, whose in rng.sample(self.attributes, len(self.attributes)):
            if len(out) == count:
                break
            owner = rng.choice(people) if whose == "person" else whose
            out.append(Fact(attribute, kind, owner))
        if len(out) < count:
            raise ValueError(f"the {self.split} split has {len(self.attributes)} attributes, fewer than {count}")
        return out

    def _question(self, rng: random.Random, fact: Fact) -> str:
        text = rng.choice(self.ask).format(own=fact.phrase(), Own=fact.phrase(True))
        roll = rng.random()
        if roll < 0.25:
            return text.lower()
        if roll < 0.4:
            return _typo(rng, text, keep=fact.owner)
        return text


def _attribute_split(attribute: str) -> str:
    """Half the attributes train, a quarter each val and test: every split needs enough for a conversation."""
    x = int(hashlib.sha256(attribute.encode()).hexdigest()[:8], 16) / 16**8
    return "train" if x < 0.5 else "val" if x < 0.75 else "test"


def _quarters(items: list[str], split: str) -> list[str]:
    """The first half of `items` for train, the next quarter for val, the last for test."""
    a, b = len(items) // 2, (3 * len(items)) // 4
    return {"train": items[:a], "val": items[a:b], "test": items[b:]}[split]


def _tidy(text: str) -> str:
    """One full stop where a value ending in one ("p.m.") meets the template's."""
    return text.replace("..", ".")


def _typo(rng: random.Random, text: str, keep: str) -> str:
    """`text` with two neighbouring letters of one longer word swapped (never in `keep`, a name)."""
    words = text.split(" ")
    spots = [i for i, w in enumerate(words) if len(w) >= 5 and w.isalpha() and keep not in w]
    if not spots:
        return text
    i = rng.choice(spots)
    w = words[i]
    j = rng.randrange(1, len(w) - 2)
    words[i] = w[:j] + w[j + 1] + w[j] + w[j + 2:]
    return " ".join(words)


def breadth_conversations(split: str, names_file: str | Path, count: int, seed: int = 0, **kwargs) -> list[Conversation]:
    """`count` conversations of `split`, reproducible from `seed`."""
    gen, rng = Breadth(split, names_file), random.Random(seed)
    return [gen.conversation(rng, f"breadth-{split}-{k}", **kwargs) for k in range(count)]
