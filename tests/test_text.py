"""text.py: the one definition of a word, a sentence and a question."""

from text import (
    distinct_words,
    has_digit,
    is_question,
    mentioned_words,
    split_sentences,
    words,
)


def test_words_are_runs_of_letters_and_digits():
    assert words("Oriel's code is 4417, not 44_17!") == ["Oriel", "s", "code", "is", "4417", "not", "44", "17"]
    assert words("Zoë lives in Łódź.") == ["Zoë", "lives", "in", "Łódź"]


def test_values_are_one_word_each():
    text = "At 9:15 a.m. pay $1,200.50 for 2.5 kg, code 88-21 (flat 4b), Saint-Denis, 12/03, and/or end.Then"
    assert words(text) == ["At", "9:15", "a", "m", "pay", "1,200.50", "for", "2.5", "kg", "code", "88-21", "flat", "4b",
                           "Saint-Denis", "12/03", "and", "or", "end", "Then"]
    assert words("Mail ana.b+x@mail.example.com, see https://wiki.example.org/page?id=42&x=1. Or www.foo.org/a.") == [
        "Mail", "ana.b+x@mail.example.com", "see", "https://wiki.example.org/page?id=42&x=1", "Or", "www.foo.org/a"]
    assert has_digit("4b") and has_digit("9:15") and not has_digit("Oriel")


def test_distinct_words_keep_first_appearance_order():
    assert distinct_words(["b a b", "c a"]) == ["b", "a", "c"]


def test_mentioned_words_are_lowercased_without_the_possessive_s():
    assert mentioned_words("Oriel's sister Kora") == {"oriel", "sister", "kora"}
    assert mentioned_words(None) == set()
    # a whole value and its parts: "ana's address" finds the sentence holding ana.b@example.com
    assert mentioned_words("Mail ana.b@example.com at 9:15") == {"mail", "ana.b@example.com", "ana", "b", "example", "com",
                                                                  "at", "9:15", "9", "15"}


def test_sentences_split_at_end_marks_and_line_breaks():
    assert split_sentences("Oriel lives in Vantastad. Where does she live?") == ["Oriel lives in Vantastad.", "Where does she live?"]
    assert split_sentences("one\n\ntwo") == ["one", "two"]
    assert split_sentences("i parked on level 6. whats the wifi password?") == ["i parked on level 6.", "whats the wifi password?"]
    assert split_sentences("   ") == []


def test_abbreviations_initials_decimals_times_addresses_end_no_sentence():
    for text in ["Dr. Okafor moved the appointment to 9:15 a.m. on St. Agnes Road.", "J. R. R. Tolkien wrote it.",
                 "The tank holds 3.5 litres, e.g. a lot.", "Mail j.doe@example.com or see https://example.org/a.b for it."]:
        assert split_sentences(text) == [text]
    assert split_sentences("The wiki is https://example.org/page?id=42 now. Log in!") == [
        "The wiki is https://example.org/page?id=42 now.", "Log in!"]
    assert split_sentences("See www.example.org. Then call.") == ["See www.example.org.", "Then call."]
    assert split_sentences("I met Dr. Okafor at 9 a.m. today. He said hi.") == ["I met Dr. Okafor at 9 a.m. today.", "He said hi."]


def test_questions_end_with_a_question_mark_or_ask_to_tell():
    assert is_question("Where does Oriel live?")
    assert is_question("Tell me where Oriel lives.")
    assert is_question("what is the code")
    assert not is_question("Oriel lives in Vantastad.")
    assert not is_question("Remember: the code is 4417.")
    assert not is_question("So the gate code is 4417 and the standup is at 9:15, ok?")  # a tag confirms a statement
    assert is_question("Is the gate code 4417, right?")
    assert is_question("What is the gate code, ok?")
    # spoken openers and texting spellings still ask; a statement opening the same way states
    assert is_question("ok and what day does Ilka get here")
    assert is_question("wait whats the plumber guy called again")
    assert is_question("so, where's the spare key now")
    assert is_question("read me the plumber's number")
    assert not is_question("ok so the plumber is Wolak and he comes at six")
    assert not is_question("Sorry, the code changed to 5512.")
