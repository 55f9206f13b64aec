"""text.py: the one definition of a word, a sentence and a question."""

from text import distinct_words, is_question, mentioned_words, split_sentences, words


def test_words_are_runs_of_letters_and_digits():
    assert words("Oriel's code is 4417, not 44_17!") == ["Oriel", "s", "code", "is", "4417", "not", "44", "17"]
    assert words("Zoë lives in Łódź.") == ["Zoë", "lives", "in", "Łódź"]


def test_distinct_words_keep_first_appearance_order():
    assert distinct_words(["b a b", "c a"]) == ["b", "a", "c"]


def test_mentioned_words_are_lowercased_without_the_possessive_s():
    assert mentioned_words("Oriel's sister Kora") == {"oriel", "sister", "kora"}
    assert mentioned_words(None) == set()


def test_sentences_split_at_end_marks_and_line_breaks():
    assert split_sentences("Oriel lives in Vantastad. Where does she live?") == ["Oriel lives in Vantastad.", "Where does she live?"]
    assert split_sentences("one\n\ntwo") == ["one", "two"]
    assert split_sentences("i parked on level 6. whats the wifi password?") == ["i parked on level 6.", "whats the wifi password?"]
    assert split_sentences("   ") == []


def test_abbreviations_initials_decimals_times_addresses_end_no_sentence():
    for text in ["Dr. Okafor moved the appointment to 9:15 a.m. on St. Agnes Road.", "J. R. R. Tolkien wrote it.",
                 "The tank holds 3.5 litres, e.g. a lot.", "Mail j.doe@example.com or see https://example.org/a.b for it."]:
        assert split_sentences(text) == [text]
    assert split_sentences("I met Dr. Okafor at 9 a.m. today. He said hi.") == ["I met Dr. Okafor at 9 a.m. today.", "He said hi."]


def test_questions_end_with_a_question_mark_or_ask_to_tell():
    assert is_question("Where does Oriel live?")
    assert is_question("Tell me where Oriel lives.")
    assert is_question("what is the code")
    assert not is_question("Oriel lives in Vantastad.")
    assert not is_question("Remember: the code is 4417.")
