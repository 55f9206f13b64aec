"""The lean decode path gives what transformers' generate gives, reuses a user's prompt KV only where it is exact."""

import dataclasses

import pytest
import torch

from chatbot import Controller, load_config
from chatbot.config import GenerationConfig
from chatbot.controller import Generation
from tests.conftest import TINY
from vocab import ElasticVocab, VocabConfig

LEAN = GenerationConfig(max_new_tokens=12, decode_weights="float32")  # the exact path; float16 has tests of its own
PLAIN = dataclasses.replace(LEAN, decode="transformers")
PROMPTS = ["hello there", "What is 2+2?", "Tell me about Vantastad and its parrots.", "x"]


def messages(text, history=()):
    out = [{"role": "system", "content": "You are a helpful assistant."}]
    for said, replied in history:
        out += [{"role": "user", "content": said}, {"role": "assistant", "content": replied}]
    return out + [{"role": "user", "content": text}]


def reply(controller, ids, gen, **kwargs):
    report = Generation()
    text = "".join(controller.generate(ids, gen=gen, report=report, **kwargs))
    return text, report


@pytest.fixture
def fresh_tiny():
    """A tiny controller of its own: these tests grow its vocabulary and fill its caches."""
    return Controller.from_config(load_config(TINY).model)


@pytest.mark.parametrize("text", PROMPTS)
def test_lean_greedy_reply_is_generates(tiny_controller, text):
    ids = tiny_controller.chat_ids(messages(text))
    lean, report = reply(tiny_controller, ids, LEAN, user="lean-" + text)
    plain, plain_report = reply(tiny_controller, ids, PLAIN)
    assert report.path == "lean" and plain_report.path == "transformers"
    assert lean == plain and report.new_tokens == plain_report.new_tokens


def test_lean_applies_note_biases_barred_ids_and_soft_prefix_as_generate_does(tiny_controller):
    ids = tiny_controller.chat_ids(messages("Where does Oriel live?"))
    notes, answers = ["Oriel lives in Vantastad."], ["Vantastad"]
    biased = dataclasses.replace(LEAN, note_answer_bias=300.0, note_spelling_bias=300.0)
    lean, _ = reply(tiny_controller, ids, biased, notes=notes, answer_words=answers, user="biases")
    plain, _ = reply(tiny_controller, ids, dataclasses.replace(biased, decode="transformers"), notes=notes, answer_words=answers)
    unbiased, _ = reply(tiny_controller, ids, LEAN, user="biases-off")
    assert lean == plain and lean != unbiased
    prefix = torch.randn(3, tiny_controller.hidden_size, generator=torch.Generator().manual_seed(1)) * 5
    assert reply(tiny_controller, ids, LEAN, soft_prefix=prefix)[0] == reply(tiny_controller, ids, PLAIN, soft_prefix=prefix)[0]


def test_seeded_sampling_is_reproducible_on_the_lean_path(tiny_controller):
    ids = tiny_controller.chat_ids(messages("hello there"))
    sampled = dataclasses.replace(LEAN, do_sample=True, temperature=1.5)
    a, b = (reply(tiny_controller, ids, sampled, seed=3)[0] for _ in range(2))
    others = {reply(tiny_controller, ids, sampled, seed=s)[0] for s in range(4, 8)}
    assert a == b and len(others) > 1


def test_a_users_next_prompt_prefills_only_what_is_new(fresh_tiny):
    first = fresh_tiny.chat_ids(messages("hello there"))
    answer, report = reply(fresh_tiny, first, LEAN, user="ann")
    assert report.reused_tokens == 0
    second = fresh_tiny.chat_ids(messages("and then?", [("hello there", answer)]))
    reused, report = reply(fresh_tiny, second, LEAN, user="ann")
    # the whole first prompt at least is held again; the reply exactly as from scratch
    assert report.reused_tokens >= first.shape[1]
    assert reused == reply(fresh_tiny, second, PLAIN)[0]


def test_one_users_cache_never_serves_another(fresh_tiny):
    ids = fresh_tiny.chat_ids(messages("hello there"))
    reply(fresh_tiny, ids, LEAN, user="ann")
    assert reply(fresh_tiny, ids, LEAN, user="bob")[1].reused_tokens == 0
    assert reply(fresh_tiny, ids, LEAN, user="ann")[1].reused_tokens == ids.shape[1] - 1
    fresh_tiny.forget_prompts("ann")
    assert reply(fresh_tiny, ids, LEAN, user="ann")[1].reused_tokens == 0


def test_a_cache_over_its_budget_is_dropped(fresh_tiny):
    ids = fresh_tiny.chat_ids(messages("hello there"))
    reply(fresh_tiny, ids, dataclasses.replace(LEAN, prefix_cache_mb=0), user="ann")
    assert reply(fresh_tiny, ids, LEAN, user="ann")[1].reused_tokens == 0


def test_a_grown_token_whose_row_changed_is_prefilled_again(fresh_tiny):
    vocab = ElasticVocab(fresh_tiny.tokenizer, VocabConfig(enabled=True), fresh_tiny.model)
    fresh_tiny.vocab = vocab
    vocab.grow([" Vantastad"], user="ann")
    ids = fresh_tiny.chat_ids(messages("Oriel lives in Vantastad, north of here."))
    reply(fresh_tiny, ids, LEAN, user="ann")
    assert reply(fresh_tiny, ids, LEAN, user="ann")[1].reused_tokens == ids.shape[1] - 1 - vocab_merged_pieces(vocab, ids)
    (token,) = vocab.tokens_of("ann")
    with torch.no_grad():
        fresh_tiny.model.get_input_embeddings().weight[token.id] += 1.0
    again, report = reply(fresh_tiny, ids, LEAN, user="ann")
    merged = vocab.merge(ids[0].tolist(), user="ann")
    assert report.reused_tokens == merged.index(token.id)  # up to the changed row, not past it
    assert again == reply(fresh_tiny, ids, PLAIN, user="ann")[0]


def vocab_merged_pieces(vocab, ids):
    """How many positions the user's grown tokens save in `ids`."""
    return ids.shape[1] - len(vocab.merge(ids[0].tolist(), user="ann"))


@pytest.mark.parametrize("weights", ["float16", "int8"])
def test_low_precision_decoding_stays_close_to_float32(fresh_tiny, weights):
    lean = fresh_tiny.lean_path(LEAN)
    ids = fresh_tiny.chat_ids(messages("hello there"))[0]
    exact, copied = lean.new_cache(64), lean.new_cache(64)
    lean.forward(exact, ids=ids)
    lean.forward(copied, ids=ids)
    a = lean.forward(exact, ids=ids[-1:])
    b = lean.forward(copied, ids=ids[-1:], weights=weights)
    assert not torch.equal(a, b)  # the low-precision copies are what it read
    assert torch.nn.functional.cosine_similarity(a, b, dim=0) > (0.9999 if weights == "float16" else 0.99)
    assert reply(fresh_tiny, ids[None], dataclasses.replace(LEAN, decode_weights=weights))[0]


def test_a_float16_step_that_overflows_is_taken_again_in_float32(fresh_tiny):
    lean = fresh_tiny.lean_path(LEAN)
    ids = fresh_tiny.chat_ids(messages("hello there"))[0]
    exact, copied = lean.new_cache(64), lean.new_cache(64)
    lean.forward(exact, ids=ids[:-1])
    lean.forward(copied, ids=ids[:-1])
    lean.forward(copied, ids=ids[-1:], weights="float16")  # the copies exist
    copied.crop(len(ids) - 1)
    layer = lean.layers[0]
    layer.copies["down"] = torch.full_like(layer.copies["down"], 60000.0)  # every product overflows float16
    a = lean.forward(exact, ids=ids[-1:])
    b = lean.forward(copied, ids=ids[-1:], weights="float16")
    assert torch.isfinite(b).all() and torch.equal(a, b)
    assert copied.length == exact.length and torch.equal(copied.keys[:, :, : copied.length], exact.keys[:, :, : exact.length])


def test_unknown_decode_weights_are_refused(fresh_tiny):
    lean = fresh_tiny.lean_path(LEAN)
    cache = lean.new_cache(8)
    lean.forward(cache, ids=torch.tensor([1, 2]))
    with pytest.raises(ValueError, match="decode weights"):
        lean.forward(cache, ids=torch.tensor([3]), weights="int4")
