"""chatbot/forget.py: which messages ask to forget (`forget_request`) and which remembered
sentences such a request means (`ForgetRequest.matches`)."""

from __future__ import annotations

import pytest

from chatbot.forget import ForgetRequest, forget_request


def test_a_request_to_forget_a_fact_keeps_its_content_words():
    request = forget_request("Forget that Oriel lives in Vantastad.")
    assert request == ForgetRequest(False, ("Oriel", "lives", "Vantastad"))


def test_a_request_to_forget_a_fact_matches_that_fact_and_no_other():
    request = forget_request("Forget that Oriel lives in Vantastad.")
    assert request.matches("Oriel lives in Vantastad.")
    assert request.matches("My sister Oriel lives in Vantastad now.")
    assert not request.matches("Oriel lives in Quillmere.")  # a name of the request is missing
    assert not request.matches("Bram lives in Vantastad.")
    assert not request.matches("Where does Oriel live?")


@pytest.mark.parametrize("text", ["forget Oriel", "Forget Oriel.", "Please forget about Oriel", "FORGET: Oriel", "forget, Oriel"])
def test_forget_a_name_matches_every_sentence_that_mentions_it(text):
    request = forget_request(text)
    assert request == ForgetRequest(False, ("Oriel",))
    assert request.matches("Oriel works at Quillmere.")
    assert request.matches("Bram met oriel.")  # sentences match whatever their case
    assert request.matches("Oriel's brother is Bram.")
    assert not request.matches("Bram works at Quillmere.")
    assert not request.matches("Orielle works at Quillmere.")  # whole words only


def test_a_possessive_names_the_person():
    request = forget_request("Forget Oriel's address.")
    assert request == ForgetRequest(False, ("Oriel", "address"))
    assert request.matches("Oriel moved; her address is 4 Elm Road.")
    assert request.matches("Oriel works at Quillmere.")  # with a name named, the other words need not appear
    assert not request.matches("The address is 4 Elm Road.")


@pytest.mark.parametrize(
    "text", ["Please forget everything", "Forget everything.", "forget all", "Forget it all!", "Forget everything you know",
             "Forget:", "Forget", "  please forget  "],
)
def test_forget_everything_or_nothing_named_matches_every_sentence(text):
    request = forget_request(text)
    assert request == ForgetRequest(True, ())
    assert request.matches("Oriel lives in Vantastad.") and request.matches("")


@pytest.mark.parametrize(
    "text", ["I forgot my keys.", "Don't forget the milk.", "Forgetful people lose keys.", "Never forget Oriel.",
             "What did you forget?", ""],
)
def test_messages_that_do_not_start_with_forget_are_no_request(text):
    assert forget_request(text) is None


def test_every_name_and_number_must_match():
    request = forget_request("Forget that Oriel met Bram in 1999")
    assert request.matches("Oriel met Bram in 1999.")
    assert request.matches("In 1999 Bram and Oriel were in Vantastad.")  # names and numbers alone decide
    assert not request.matches("Oriel met Bram in 2001.")
    assert not request.matches("Oriel met Ysolde in 1999.")


def test_a_number_alone_must_match_whole():
    request = forget_request("Forget the code 4417")
    assert request.words == ("code", "4417")
    assert request.matches("The code of my locker is 4417.")
    assert not request.matches("The code of my locker is 4418.")
    assert not request.matches("The code of my locker is 44170.")


def test_without_names_most_other_content_words_must_match():
    request = forget_request("forget that my favourite colour is teal")
    assert request.words == ("favourite", "colour", "teal")  # how to forget ("that", "my", "is") is dropped
    assert request.matches("My favourite colour is teal.")
    assert request.matches("Teal is a nice colour.")  # two of three
    assert not request.matches("My favourite food is pasta.")  # one of three


def test_a_lowercase_name_counts_as_an_other_content_word():
    request = forget_request("forget oriel")
    assert request.words == ("oriel",)
    assert request.matches("Oriel lives in Vantastad.")
    assert not request.matches("Bram lives in Vantastad.")


def test_a_request_that_names_nothing_matches_nothing():
    for text in ("forget what I told you", "Forget ox"):  # stop words; words of two letters
        request = forget_request(text)
        assert request is not None and not request.everything
        assert not request.matches("Oriel lives in Vantastad.") and not request.matches("I told you about that ox.")


@pytest.mark.parametrize("text", ["Forget it, where does Oriel live?", "forget it", "Forget about that.",
                                  "Forget-me-nots grow in my garden.", "Forget that, what is the code?"])
def test_a_brush_off_or_a_question_is_no_request(text):
    assert forget_request(text) is None
