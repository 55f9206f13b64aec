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
    assert split_sentences("It costs 5.5 euros. ok") == ["It costs 5.5 euros. ok"]  # a lowercase start is no new sentence
    assert split_sentences("   ") == []


def test_questions_end_with_a_question_mark_or_ask_to_tell():
    assert is_question("Where does Oriel live?")
    assert is_question("Tell me where Oriel lives.")
    assert is_question("what is the code")
    assert not is_question("Oriel lives in Vantastad.")
    assert not is_question("Remember: the code is 4417.")
