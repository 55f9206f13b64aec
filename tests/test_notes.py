"""chatbot/notes.py: which remembered statements become notes, cue words and answer words."""

import pytest
import torch

from chatbot.config import ChatConfig
from chatbot.notes import (answer_words, choose_notes, correct_notes, correctable, word_overlap, cue_words, names_in, rank_notes, restated, value_words,
                           without_names)
from memory.engram_state import Engram, EngramType
from text import mentioned_words, topic_words


def notes_of(chat, reminded, closeness, cues=()):
    return choose_notes([], reminded, closeness, cues, None, chat, from_reads=False)


@pytest.mark.parametrize(
    ("margin", "closeness", "expected"),
    [
        (0.0, [0.80, 0.75, 0.60], ["Bram works at Quillmere."]),  # closest only
        (0.1, [0.80, 0.75, 0.60], ["Actually, Bram now works at Zentrifol."]),  # the newer one within the margin
        (0.1, [0.80, 0.65, 0.60], ["Bram works at Quillmere."]),  # a later statement too far off loses
    ],
)
def test_notes_prefer_the_newest_of_the_nearly_closest(margin, closeness, expected):
    chat = ChatConfig(max_notes=1, note_recency_margin=margin)
    texts = ["Bram works at Quillmere.", "Actually, Bram now works at Zentrifol.", "Where does Bram work?"]
    reminded = [Engram(i, EngramType.SHORTTERM, t, i + 1, 10.0, 1, 1, {}) for i, t in enumerate(texts)]
    closeness = [*closeness[:2], 0.95]  # the earlier question is closest but never a note
    assert notes_of(chat, reminded, closeness)[0] == expected


def test_notes_are_the_statements_naming_whom_the_question_is_about():
    chat = ChatConfig(max_notes=1, note_recency_margin=0.1)
    texts = ["Kora works at Quillmere.", "Bram works at Zentrifol.", "Bram's sister is Kora.", "Where does Bram work?"]
    reminded = [Engram(i, EngramType.SHORTTERM, t, i + 1, 10.0, 1, 1, {}) for i, t in enumerate(texts)]
    closeness = [0.9, 0.7, 0.3, 0.95]  # a look-alike fact about someone else is the closest
    assert notes_of(chat, reminded, closeness)[0] == ["Kora works at Quillmere."]  # no names given
    assert notes_of(chat, reminded, closeness, ("bram",))[0] == ["Bram works at Zentrifol."]
    # among the statements naming Bram, the newest within the margin of the closest of them
    closeness = [0.9, 0.7, 0.65, 0.95]
    assert notes_of(chat, reminded, closeness, ("bram",))[0] == ["Bram's sister is Kora."]


def test_a_later_statement_like_an_earlier_one_supersedes_it_as_the_note():
    texts = ["Bram lives in Vantastad.", "Bram works at Zentrifol.", "Bram moved to Quillmere.", "Kora lives in Oldport."]
    vectors = torch.nn.functional.normalize(torch.tensor([[1.0, 0.0, 0.1], [0.0, 1.0, 0.1], [0.8, 0.2, 0.3], [1.0, 0.0, 0.0]]), dim=-1)
    candidates = [(i, t, close) for i, (t, close) in enumerate(zip(texts, [0.85, 0.40, 0.60, 0.9]))]
    order = rank_notes(candidates, ("bram",), 0.0, vectors=vectors, link=0.9)
    # the move supersedes the home it is like, as close to the question as it; the fact it replaced goes last
    assert [texts[i] for i in order] == [texts[2], texts[1], texts[3], texts[0]]
    assert [texts[i] for i in rank_notes(candidates, ("bram",), 0.0)] == [texts[0], texts[2], texts[1], texts[3]]
    # a statement supersedes only one naming the same people, and only for a question that names someone
    assert rank_notes(candidates, ("bram", "kora"), 0.0, vectors=vectors, link=0.9) == [3, 2, 1, 0]
    assert rank_notes(candidates, (), 0.0, vectors=vectors, link=0.9) == [3, 0, 2, 1]
    # asked about work, the closest chain is the work fact, which nothing superseded
    candidates = [(i, t, close) for i, (t, close) in enumerate(zip(texts, [0.5, 0.8, 0.45, 0.2]))]
    assert texts[rank_notes(candidates, ("bram",), 0.0, vectors=vectors, link=0.9)[0]] == texts[1]


def test_a_superseded_statement_can_be_left_out_so_it_is_never_shown_beside_its_correction():
    texts = ["Bram lives in Vantastad.", "Bram works at Zentrifol.", "Bram moved to Quillmere.", "Kora lives in Oldport."]
    vectors = torch.nn.functional.normalize(torch.tensor([[1.0, 0.0, 0.1], [0.0, 1.0, 0.1], [0.8, 0.2, 0.3], [1.0, 0.0, 0.0]]), dim=-1)
    candidates = [(i, t, close) for i, (t, close) in enumerate(zip(texts, [0.85, 0.40, 0.60, 0.9]))]
    kept = rank_notes(candidates, ("bram",), 0.0, vectors=vectors, link=0.9)
    dropped = rank_notes(candidates, ("bram",), 0.0, vectors=vectors, link=0.9, drop_superseded=True)
    assert dropped == [i for i in kept if texts[i] != "Bram lives in Vantastad."] == [2, 1, 3]
    # nothing supersedes without vectors, so nothing is left out
    assert rank_notes(candidates, ("bram",), 0.0, drop_superseded=True) == rank_notes(candidates, ("bram",), 0.0)


def test_with_related_words_only_a_statement_about_the_same_thing_outranks_the_closest_by_being_newer():
    texts = ["Cardiology referral: Prof. Lindqvist, 3 March, outpatients building C.", "My GP is Dr. Okafor.",
             "Scratch that, Prof. Lindqvist moved it to 4 March.", "Doing my weekly health admin, bear with me."]
    candidates = [(i, t, close) for i, (t, close) in enumerate(zip(texts, [0.34, 0.33, 0.30, 0.32]))]
    asked = mentioned_words("remind me which building outpatients is in")
    # without: the newest of the nearly closest, a remark about nothing asked
    assert texts[rank_notes(candidates, (), 0.15)[0]] == texts[3]
    # with: the correction sharing words with the closest still wins; the remark and the GP rank by closeness
    assert [texts[i] for i in rank_notes(candidates, (), 0.15, related=asked)] == [texts[2], texts[0], texts[1], texts[3]]
    assert texts[rank_notes(candidates[:2] + candidates[3:], (), 0.15, related=asked)[0]] == texts[0]


def test_statements_sharing_the_most_topic_words_come_first_after_names():
    texts = ["The boiler code is 7731.", "The gate code is 1200.", "My hotel room number is 930.", "I changed the boiler code, it's 4471 now."]
    candidates = [(i, t, close) for i, (t, close) in enumerate(zip(texts, [0.70, 0.80, 0.75, 0.60]))]
    topic = topic_words("What is the boiler code?")
    assert topic == ["boiler", "code"]
    # the two about the boiler code first, the newer of them as it is within the margin; then the other code
    assert [texts[i] for i in rank_notes(candidates, (), 0.15, topic=topic)][:3] == [texts[3], texts[0], texts[1]]
    assert texts[rank_notes(candidates, (), 0.15)[0]] == texts[2]  # without: the newest of the nearly closest, the hotel room
    # a correction naming fewer of them supersedes what it is like, and stands for it
    texts = ["Oriel's locker code is 1234.", "Oriel's gym is Fenholm.", "Oriel changed the code to 5678."]
    vectors = torch.nn.functional.normalize(torch.tensor([[1.0, 0.1], [0.0, 1.0], [0.9, 0.2]]), dim=-1)
    candidates = [(i, t, close) for i, (t, close) in enumerate(zip(texts, [0.8, 0.5, 0.6]))]
    order = rank_notes(candidates, ("oriel",), 0.15, vectors=vectors, link=0.9, topic=["locker", "code"])
    assert [texts[i] for i in order] == [texts[2], texts[1], texts[0]]
    # names still come first: a topic word never outranks the person asked about
    texts = ["Oriel's boiler code is 7731.", "Bram's gate code is 1200."]
    candidates = [(i, t, 0.5) for i, t in enumerate(texts)]
    assert rank_notes(candidates, ("bram",), 0.15, topic=["boiler", "code"])[0] == 1


def test_without_names_masks_whole_words_only():
    assert without_names("What company pays Kedar? kedar's code is 4417, not 44170 or Kedarx.", ("kedar", "4417")) == (
        "What company pays someone? someone's code is someone, not 44170 or Kedarx."
    )


@pytest.mark.parametrize(
    ("message", "cues"),
    [
        ("Where does Oriel live?", ("oriel",)),
        ("What's Alahia's pet's name?", ("alahia",)),
        ("Remind me of Maize's locker code.", ("maize",)),
        ("Tell me what Bram and Kora said.", ("bram", "kora")),
        ("Remember: my PIN is 4411.", ("pin", "4411")),
        ("I went for a long walk yesterday.", ()),
        ("How are you? What do you know?", ()),
    ],
)
def test_cue_words_are_the_names_and_numbers_a_message_mentions(message, cues):
    assert cue_words(message) == cues


@pytest.mark.parametrize(
    ("message", "notes", "expected"),
    [
        ("Where does Oriel live?", ["Oriel moved to Quillmere.", "Bram works at Bobcorp."], ["moved", "to", "Quillmere"]),
        ("What's Oriel's locker code?", ["The code of Oriel's locker is 4411."], ["The", "of", "is", "4411"]),
        ("Oriel moved to Quillmere.", ["Oriel lives in Vantastad."], []),  # a statement answers nothing
        ("How are you today?", ["Oriel moved to Quillmere."], []),  # asks about no one
        ("Where does Bram work?", ["Oriel moved to Quillmere."], []),  # the notes are about someone else
    ],
)
def test_answer_words_come_from_the_notes_about_whom_a_question_asks(message, notes, expected):
    assert answer_words(message, notes) == expected


def test_a_name_the_user_has_used_cues_recall_also_in_lowercase():
    names = {"oriel", "vantastad"}
    assert cue_words("where does oriel live?", names) == ("oriel",)
    assert cue_words("where does oriel live?") == ()
    assert cue_words("who lives in vantastad and where?", names) == ("vantastad",)
    # a common word starting a sentence, or a function word in capitals for emphasis, names no one
    common = {"quick", "need", "again"}.__contains__
    assert cue_words("Quick one, what's Mila's teacher called AGAIN? Need to sign a form.", (), common) == ("mila",)
    assert names_in("Mila's feet grew AGAIN, new shoes are 12.5.", common) == {"mila"}
    assert answer_words("where does oriel live?", ["Oriel moved to Quillmere."], names) == ["moved", "to", "Quillmere"]
    # no name asked: the notes about the question's topic words
    topic = topic_words("what is the boiler code?")
    assert answer_words("what is the boiler code?", ["The boiler code is 4471.", "Bram lives in Oldport."], (), topic) == ["4471"]
    assert answer_words("the boiler code is old.", ["The boiler code is 4471."], (), topic) == []  # not a question


def test_names_are_capitalized_words_and_at_a_sentence_start_only_uncommon_ones():
    common = {"correction", "remember", "my", "the", "yesterday"}.__contains__
    assert names_in("My sister Oriel lives in Vantastad.", common) == {"oriel", "vantastad"}
    assert names_in("Oriel moved. Correction: bay 14, not 9.", common) == {"oriel"}
    assert names_in("Yesterday I met Bram at the Quillmere market. Where is he?", common) == {"bram", "quillmere"}


def test_the_agent_learns_its_users_names_and_forgets_them_with_their_memories(tmp_path, tiny_controller):
    from .conftest import make_agent

    agent = make_agent(tmp_path, tiny_controller)
    agent.chat("ann", "My sister Oriel lives in Vantastad.")
    assert {"oriel", "vantastad"} <= agent.memories.names("ann")
    assert agent.memories.names("bob") == set()  # one user's names are never another's cues
    agent.close()
    again = make_agent(tmp_path, tiny_controller)  # after a restart, rebuilt from what memory holds
    again.chat("ann", "where does oriel live?")
    assert {"oriel", "vantastad"} <= again.memories.names("ann")
    again.clear_memory("ann")
    assert again.memories.names("ann") == set()
    again.close()


COMMON = {"mail", "correction", "sorry", "oops", "wait", "update", "the", "my", "it's", "small"}.__contains__


def test_value_words_are_numbers_codes_addresses_and_names():
    assert value_words("Sorry, I said March 14 but it's April 3.", COMMON) == ["March", "14", "April", "3"]
    assert value_words("Mail ana.b@example.com at 9:15 about Oriel.", COMMON) == ["ana.b@example.com", "9:15", "Oriel"]


@pytest.mark.parametrize(
    ("statement", "correction", "expected"),
    [
        ("The boiler code is 7731.", "Correction: 4471, not 7731.", "The boiler code is 4471."),
        ("My call with the bank is 7:20 p.m.", "Small fix: 7:20 p.m. should be 7:35 p.m.", "My call with the bank is 7:35 p.m."),
        ("Mum's birthday is March 14.", "Sorry, I said March 14 but it's April 3.", "Mum's birthday is April 3."),
        ("The landlord's name is Wryn.", "Oops, not Wryn, it's Brelia.", "The landlord's name is Brelia."),
        ("The gate code is 3422, while the pickup is at 9:15.", "Update: the gate code is 5120 now, not 3422.",
         "The gate code is 5120, while the pickup is at 9:15."),
        # no word that says it corrects, or values that do not pair up: not a correction of it
        ("The boiler code is 7731.", "The shed code is 4471 and the boiler code is 7731.", None),
        ("The boiler code is 7731.", "Correction: the shed code is 4471.", None),
        ("The boiler code is 7731.", "Correction: 7731 is now Bram's code.", None),
        ("Oriel lives in Vantastad.", "Oriel moved to Quillmere, not Vantastad.", "Oriel lives in Quillmere."),
        ("Oriel lives in Vantastad.", "Oriel moved to Quillmere now, Vantastad was too loud.", None),  # none said wrong
        # the quoted name is whom it is about, the new value a day: the day it does not quote is not changed
        ("My tea supplier is Kettleby Leaf Traders and they deliver on Tuesdays.",
         "Kettleby rang: from next week they deliver Wednesdays instead.", None),
        ("The standup is on Monday at 9:15.", "Standup moved: Tuesday, not Monday.", "The standup is on Tuesday at 9:15."),
    ],
)
def test_a_correction_that_quotes_a_value_restates_the_statement(statement, correction, expected):
    assert restated(statement, correction, COMMON) == expected


def test_notes_follow_their_corrections_in_order():
    said = [Engram(id=i, type=EngramType.SHORTTERM, text=t, turn=i, lifespan=1.0, age=0, fire_count=0, links={}) for i, t in
            enumerate(["The boiler code is 7731.", "Correction: 4471, not 7731.", "Oops, not 4471, it's 4480.",
                       "The gate code is 1200."])]

    def later(note, since):
        return [e for e in said if e.id > since and set(value_words(note, COMMON)) & set(value_words(e.text, COMMON))]

    notes, applied = correct_notes(["The boiler code is 7731.", "The gate code is 1200."], [0, 3], later, COMMON)
    assert notes == ["The boiler code is 4480.", "The gate code is 1200."]
    assert applied == [[(1, "Correction: 4471, not 7731."), (2, "Oops, not 4471, it's 4480.")], []]


def test_a_sentence_that_only_quotes_the_old_value_corrects_with_the_next_sentence_of_its_message():
    texts = [(0, "The boiler code is 7731."), (1, "Wait, 7731 was wrong."), (1, "It's 4471."),
             (2, "The gate code 1200 is wrong."), (3, "It is 5555.")]
    said = [Engram(id=i, type=EngramType.SHORTTERM, text=t, turn=turn, lifespan=1.0, age=0, fire_count=0, links={})
            for i, (turn, t) in enumerate(texts)]

    def later(note, since):
        return [e for e in said if e.id > since and set(value_words(note, COMMON)) & set(value_words(e.text, COMMON))]

    def next_sentence(e):
        after = said[e.id + 1] if e.id + 1 < len(said) else None
        return after.text if after is not None and after.turn == e.turn else ""

    notes, applied = correct_notes(["The boiler code is 7731.", "The gate code is 1200."], [0, 0], later, COMMON,
                                   next_sentence=next_sentence)
    assert notes == ["The boiler code is 4471.", "The gate code is 1200."]  # the next message is not the sentence's own
    assert applied == [[(1, "Wait, 7731 was wrong. It's 4471.")], []]
    assert correct_notes(["The boiler code is 7731."], [0], later, COMMON)[0] == ["The boiler code is 7731."]


def test_the_agent_answers_from_the_note_as_a_later_message_corrected_it(tmp_path, tiny_controller):
    from .conftest import make_agent

    agent = make_agent(tmp_path, tiny_controller)
    for text in ["Remember: the boiler code is 7731.", "How are you?", "Correction: 4471, not 7731.", "Nice weather."]:
        agent.chat("ann", text)
    reply = list(agent.chat_stream("ann", "What is the boiler code?"))[-1]
    fixed = [n for n in reply.memory["notes"] if "boiler" in n]
    assert fixed and "4471" in fixed[0] and "7731" not in fixed[0]
    assert reply.memory["corrected"][fixed[0]] == ["Correction: 4471, not 7731."]
    from ui.memory_tab import memory_markdown

    assert f"- {fixed[0]}\n  - as corrected by: Correction: 4471, not 7731." in memory_markdown(reply.memory)
    agent.chat("ann", "The gate code is 1200.")
    agent.chat("ann", "Wait, 1200 was wrong. It's 5521.")
    gate = list(agent.chat_stream("ann", "What is the gate code?"))[-1]
    assert "The gate code is 5521." in gate.memory["notes"]
    other = list(agent.chat_stream("bob", "What is the boiler code?"))[-1]  # another user's corrections are not theirs
    assert not other.memory.get("corrected")
    agent.close()


def test_a_cue_matches_its_plural_and_singular():
    candidates = [(0, "Mila wants a unicorn cake.", 0.5), (1, "Friday pickup is 1:05 now.", 0.4)]
    assert rank_notes(candidates, ["fridays"], 0.1)[0] == 1


def test_a_statement_names_whom_its_message_names():
    candidates = [(0, "Lieke lives in Utrecht.", 0.5), (1, "Bram works at the studio.", 0.55), (2, "She works as a sound engineer.", 0.6)]
    assert rank_notes(candidates, ["lieke"], 0.05)[0] == 0  # alone, the pronoun's statement names no one
    context = [set(), set(), {"lieke", "is", "new"}]
    assert rank_notes(candidates, ["lieke"], 0.05, context=context)[:2] == [2, 0]
    assert rank_notes(candidates, ["bram"], 0.05, context=context)[0] == 1


def test_only_statements_a_later_correction_quotes_are_correctable():
    said = [Engram(id=i, type=EngramType.SHORTTERM, text=t, turn=i, lifespan=1.0, age=0, fire_count=0, links={}) for i, t in
            enumerate(["The boiler code is 7731.", "The gate code is 1200.", "Correction: 4471, not 7731.", "Bram has 7731 too."])]
    assert [e.id for e in correctable(said, COMMON)] == [0]  # not what comes after the correction, nor what it does not quote


def test_word_overlap_is_the_share_of_the_questions_content_words_by_stem():
    statements = ["The Hydrology class is in room C-381.", "I parked on level 6.", "Nothing in common here."]
    assert word_overlap("In which room is my Hydrology class?", statements) == [1.0, 0.0, 0.0]
    assert word_overlap("Which level did I park on?", statements)[1] == 1.0  # "park" is "parked"'s stem
    assert word_overlap("How are you?", statements) == [0.0, 0.0, 0.0]  # no content word asked


def test_a_question_asking_for_a_kind_of_value_is_answered_first_from_statements_holding_one():
    from chatbot.grounding import asked_kind

    texts = ["Work update: the Riverline deadline moved, it's 5 May now.", "Riverline is coming together, the cycling layer looks great.",
             "Lieke fixed the Riverline build."]
    candidates = [(i, t, close) for i, (t, close) in enumerate(zip(texts, [0.55, 0.60, 0.40]))]
    kind = asked_kind("when's the Riverline deadline now? i need to plan the weekend")
    fits = [bool(kind.search(t)) for t in texts]
    assert fits == [True, False, False]
    # without: the newest of the nearly closest, which says no date
    assert texts[rank_notes(candidates, ("riverline",), 0.15)[0]] == texts[1]
    assert [texts[i] for i in rank_notes(candidates, ("riverline",), 0.15, fits=fits)] == [texts[0], texts[1], texts[2]]
    # names still come first: a date about someone else does not outrank the statement about whom the question names
    assert texts[rank_notes(candidates, ("lieke",), 0.15, fits=fits)[0]] == texts[2]
    # when none holds the kind, the order is as without
    assert rank_notes(candidates, ("riverline",), 0.15, fits=[False] * 3) == rank_notes(candidates, ("riverline",), 0.15)
    assert asked_kind("Who is the specialist I'm seeing there?") is None
