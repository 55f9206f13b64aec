"""chatbot/grounding.py: which values a reply states, and whether the user ever said them."""

from chatbot.grounding import about_the_user, claimed_values, ungrounded, wrong_kind

SAID = [
    "The staging box is 192.168.40.17, ssh on port 2222.",
    "Coach Brennan has a new phone, number is now 07700 552 018",
    "Prices for the record: Assam tins €8.90.",
    "Scratch that time, the hospital rang and it's 2:45 p.m. now.",
    "The invoice is due on the 20th, mail ana.b@example.com about it.",
]


def test_values_are_numbers_codes_and_addresses_with_their_punctuation_off():
    assert claimed_values("Call 07700 552 018, or mail ana.b@example.com.") == ["07700552018", "ana.b@example.com"]
    assert claimed_values("It's at 2:45 p.m. in room B-214 (version 3.12.2).") == ["2:45", "B-214", "3.12.2"]
    assert claimed_values("Your landlady is Mrs Bettencourt.") == []  # names are not checked


def test_a_value_counts_as_said_when_its_digits_are_within_a_number_the_user_wrote():
    for reply in ["The number is 07700 552 018.", "Assam is €8.90 a tin.", "It moved to 2:45.", "Due on the 20th.",
                  "ssh is on 2222", "Write to ana.b@example.com."]:
        assert ungrounded(reply, SAID) == [], reply
    # a look-alike of a said value is still made up: not every digit run is somewhere
    assert ungrounded("The prod server is 192.168.0.1.", SAID) == ["192.168.0.1"]
    assert ungrounded("Deepa's number is 153-299-0999.", SAID) == ["153-299-0999"]
    assert ungrounded("Write to bob@example.com.", SAID) == ["bob@example.com"]
    assert ungrounded("It is 4471.", []) == ["4471"]


def test_only_questions_about_the_users_world_are_checked():
    assert about_the_user("What is my gate code?", "It is 4417.")
    assert about_the_user("whats the prod ip", "You told me that it is 10.0.0.1.")
    assert about_the_user("When does Oriel arrive?", "On Monday.", named={"oriel"})
    assert not about_the_user("How far away is the moon?", "About 384,400 km.")


def test_the_memory_panel_says_which_value_was_not_from_memory():
    from ui.memory_tab import memory_markdown

    shown = memory_markdown({"made_up": {"values": ["153-299-0999"], "reply": "Deepa's number is 153-299-0999."}})
    assert shown == ('**Not from memory:** the reply was "Deepa\'s number is 153-299-0999.", but you never said '
                     "153-299-0999; so it says it was not told")


def test_a_reply_must_hold_a_value_of_the_kind_its_question_asks_for():
    assert wrong_kind("What time is Jonah's football training?", "Jonah's football training is TBC.")
    assert wrong_kind("How many parrots does Oriel keep?", "Oriel lives in Vantastad.")
    assert wrong_kind("ok and when's the deadline now?", "The deadline is with the council.")
    assert wrong_kind("What's Deepa's phone number?", "You told me that Deepa's phone number is 10:50.")  # a time, not a number to call
    assert wrong_kind("what's the number to call for the plumber", "The plumber charges €410.")
    for question, reply in [("What time is it?", "It's 5:45pm."), ("what time does her train get in", "At quarter past six."),
                            ("How many parrots does Oriel keep?", "Oriel keeps two parrots."),
                            ("When is mum's birthday?", "It is on 23 April."), ("which day does Ilka get here", "On the twenty-first."),
                            ("How much was the sofa?", "It was €480."), ("coach's phone number pls", "It's 07700 552 018."),
                            ("What's Deepa's mobile number?", "+44 (0)7700-552-018")]:
        assert not wrong_kind(question, reply), question
    # only a question's asking words count: "when" opening a later clause, or a statement, asks for nothing
    assert not wrong_kind("What does 'cheers' mean when people say it in a shop?", "It means thanks.")
    assert not wrong_kind("Remind me what my landlady is called? I blanked when the postman asked.", "Mrs Bettencourt.")
    assert not wrong_kind("The train leaves at 9:12. What a morning!", "Noted.")


def test_the_memory_panel_says_a_reply_did_not_answer_what_was_asked():
    from ui.memory_tab import memory_markdown

    shown = memory_markdown({"wrong_kind": {"reply": "Jonah's training is TBC."}})
    assert shown.startswith('**Not an answer:** the reply was "Jonah\'s training is TBC."')
