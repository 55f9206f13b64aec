"""The elastic vocabulary's invariants: round trips, compact ids, restored behaviour,
trainable new rows, and its place in a chat turn (persistence: test_storage.py)."""

from __future__ import annotations

import math
from dataclasses import replace
from pathlib import Path

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from transformers import TextIteratorStreamer

from chatbot.config import load_config
from chatbot.controller import Controller
from storage import Store
from storage.vocab import read_events
from vocab import ElasticVocab, Lexicon, LexiconError, VocabConfig, remap_ids
from vocab.rows import embedding_matrix

ROOT = Path(__file__).resolve().parent.parent
TINY = ROOT / "configs" / "tiny.yaml"
NAMES = ["Oriel", "Vantastad", "Quillmere", "Zephyrine", "Brannoch", "Ysolde", "Thelonius", "Marisabel"]
# Words, names, punctuation, digits, whitespace runs, non-Latin text and special-token markup.
PARTS = st.sampled_from(NAMES + [" ", "  ", "\n", ".", ",", "'s", "4417", "é", "日本", "🙂", "<|im_end|>", "the", " and "])
# SmolLM2's byte-level vocabulary lacks six control bytes and the lead bytes of the unassigned
# planes 4-11, so the base tokenizer itself drops those characters; any other text round-trips.
UNENCODABLE = "\x04\x06\x13\x14\x16\x1d"
CHARS = st.characters(exclude_categories=("Cs", "Cn"), exclude_characters=UNENCODABLE)
TEXTS = st.one_of(st.text(CHARS, max_size=60), st.lists(PARTS, max_size=14).map("".join))


@pytest.fixture(scope="module")
def tiny_cfg():
    return load_config(TINY)


@pytest.fixture(scope="module")
def tokenizer(tiny_cfg):
    return Controller.from_config(tiny_cfg.model).tokenizer


def tiny_model(cfg):
    return Controller.from_config(cfg.model).model


def fast_cfg(**kw) -> VocabConfig:
    """Rates for tests; row fitting off unless a test is about it (it costs model passes)."""
    return replace(VocabConfig(), fit_steps=0, **kw)


def check_ids(vocab: ElasticVocab) -> None:
    """Ids contiguous, expansions unique, pieces older than the token, matrix rows = ids."""
    seen = set()
    for k, t in enumerate(vocab.tokens):
        assert t.id == vocab.base_size + k
        assert t.expansion not in seen and len(t.expansion) >= 2
        seen.add(t.expansion)
        assert all(0 <= p < t.id for p in t.pieces)
        assert vocab.lexicon.expand(t.pieces) == list(t.expansion)
        assert t.level == 1 + max(vocab.lexicon.level(p) for p in t.pieces)
    if vocab.model is not None:
        assert embedding_matrix(vocab.model).shape[0] == vocab.size == vocab.model.config.vocab_size
        assert vocab.model.get_output_embeddings().weight is embedding_matrix(vocab.model)


# ----- the lexicon alone ---------------------------------------------------------------


@settings(max_examples=200, deadline=None)
@given(st.data())
def test_lexicon_merge_expand_and_remove_keep_text(data):
    lex = Lexicon(base_size=8)
    stored = data.draw(st.lists(st.integers(0, 7), max_size=30))
    held = list(stored)  # ids someone stored; kept valid through every remove via remap_ids
    for _ in range(data.draw(st.integers(0, 12))):
        if lex.tokens and data.draw(st.booleans()):
            doomed = data.draw(st.lists(st.sampled_from([t.id for t in lex.tokens]), min_size=1, unique=True))
            held = remap_ids(held, lex.remove(doomed))
        else:
            pieces = data.draw(st.lists(st.integers(0, lex.size - 1), min_size=2, max_size=4))
            try:
                lex.add(pieces, "t")
            except LexiconError:
                pass  # the same expansion twice
            held = lex.merge(lex.expand(held))
        assert lex.expand(held) == stored
        assert lex.expand(lex.merge(stored)) == stored
        allowed = {t.id for t in lex.tokens[::2]}  # one user's tokens: only those merge
        assert lex.expand(lex.merge(stored, allowed)) == stored and set(lex.merge(stored, allowed)) <= allowed | set(range(8))
        assert [t.id for t in lex.tokens] == list(range(8, lex.size))
        assert len({t.expansion for t in lex.tokens}) == len(lex.tokens)


def test_lexicon_refuses_base_and_unknown_ids():
    lex = Lexicon(base_size=4)
    lex.add([1, 2], "ab")
    for bad in (0, 3, 5, -1):
        with pytest.raises(LexiconError):
            lex.remove([bad])
    with pytest.raises(LexiconError):
        lex.expand([9])
    with pytest.raises(LexiconError):
        lex.add([1, 2], "ab again")


# ----- round trips over grow and prune ---------------------------------------------------


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(text=TEXTS, ops=st.lists(st.tuples(st.sampled_from(["grow", "prune", "observe", "decay"]), TEXTS), max_size=8))
def test_round_trip_for_any_text_and_any_grow_prune_sequence(tokenizer, text, ops):
    vocab = ElasticVocab(tokenizer, fast_cfg(grow_after=1.0, capacity=6))
    for op, arg in ops:
        if op == "grow":
            vocab.grow([arg, *NAMES[: len(arg) % 4], " " + NAMES[len(arg) % 8]])
        elif op == "prune" and vocab.tokens:
            vocab.prune([t.id for t in vocab.tokens[:: 1 + len(arg) % 3]])
        elif op == "observe":
            vocab.observe(arg + " " + text, teaching=len(arg) % 2 == 0)
        else:
            vocab.decay(1 + len(arg) * 10)
        check_ids(vocab)
        assert vocab.decode(vocab.encode(text)) == text
        assert vocab.lexicon.expand(vocab.encode(text)) == vocab.base_encode(text)


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(text=st.text(max_size=40))
def test_any_text_decodes_as_the_base_tokenizer_decodes_it(tokenizer, text):
    """Even where the base tokenizer loses characters, the elastic layer adds no loss of its own."""
    vocab = ElasticVocab(tokenizer, fast_cfg())
    vocab.grow(NAMES + [text])
    base = tokenizer(text, add_special_tokens=False)["input_ids"]
    assert vocab.decode(vocab.encode(text)) == tokenizer.decode(base)


def test_names_become_tokens_and_shorten_text(tokenizer):
    vocab = ElasticVocab(tokenizer, fast_cfg())
    text = "My sister Oriel lives in Vantastad."
    before = len(vocab.encode(text))
    assert vocab.observe(text) == []  # seen once: only counted
    events = vocab.observe("Oriel's friend visited Vantastad.")
    assert {e.text for e in events if e.kind == "grow"} == {" Vantastad"}  # "Oriel" at the start is another word
    assert len(vocab.encode(text)) == before - 3  # " V", "ant", "ast", "ad" -> one token
    assert vocab.decode(vocab.encode(text)) == text


def test_teaching_grows_at_once_and_digits_and_specials_never(tokenizer):
    vocab = ElasticVocab(tokenizer, fast_cfg())
    events = vocab.observe("Remember: the vault code is 4417 and Quillmere <|im_end|> 日本")
    assert [(e.kind, e.text, e.level) for e in events] == [("grow", " Quillmere", 1), ("grow", " 日本", 1)]
    assert events[0].pieces == (" Qu", "ill", "mere")
    assert vocab.observe("Zephyrine", teaching=True)[0].text == "Zephyrine"


def test_spans_of_added_words_grow_one_level_up_and_survive_their_parts(tokenizer):
    vocab = ElasticVocab(tokenizer, fast_cfg(span_grow_after=1.8))
    vocab.observe("Remember: my sister is Oriel Vantastad.")
    assert sorted(t.text for t in vocab.tokens) == [" Oriel", " Vantastad"]
    vocab.observe("Yes, Oriel Vantastad.")
    span = vocab.tokens[-1]
    assert (span.text, span.level) == (" Oriel Vantastad", 2)
    vocab.observe("Oriel Vantastad Brannoch", teaching=True)
    text = "I met Oriel Vantastad Brannoch today"
    ids = vocab.encode(text)
    assert span.id in ids and vocab.decode(ids) == text
    # Pruning a part inlines it into the span: same text, lower level, ids still compact.
    part = next(t for t in vocab.tokens if t.text == " Oriel")
    vocab.prune([part.id])
    check_ids(vocab)
    span = next(t for t in vocab.tokens if t.text == " Oriel Vantastad")
    assert span.level == 2 and len(span.pieces) == 3  # " Ori", "el", " Vantastad"
    assert vocab.decode(vocab.encode(text)) == text


def test_use_strengthens_the_token_and_its_parts(tokenizer):
    vocab = ElasticVocab(tokenizer, fast_cfg(span_grow_after=1.0))
    vocab.observe("Remember: Oriel Vantastad")
    vocab.observe("so Oriel Vantastad")
    span = next(t for t in vocab.tokens if t.level == 2)
    before = {t.text: vocab.strength(t) for t in vocab.tokens}
    vocab.observe("so Oriel Vantastad again")
    after = {t.text: vocab.strength(t) for t in vocab.tokens}
    for text in (span.text, " Oriel", " Vantastad"):
        assert after[text] == pytest.approx(before[text] * vocab.cfg.decay + vocab.cfg.use_gain)


def test_decay_prunes_unused_tokens_and_capacity_prunes_the_weakest(tokenizer):
    cfg = fast_cfg(capacity=2)
    vocab = ElasticVocab(tokenizer, cfg)
    vocab.observe("Remember: Oriel")
    vocab.observe("Remember: Quillmere Quillmere")  # the same word twice grows it once
    vocab.observe("yes, Quillmere")
    events = vocab.observe("Remember: Zephyrine")  # a third token: over capacity
    assert [(e.kind, e.text) for e in events] == [("grow", " Zephyrine"), ("prune", " Oriel")]
    turns = math.ceil(math.log(cfg.prune_below / (cfg.grow_strength + 3)) / math.log(cfg.decay))
    vocab.decay(turns)
    events = vocab.observe("nothing new here")
    assert {e.kind for e in events} == {"prune"} and vocab.tokens == []
    assert vocab.size == vocab.base_size


# ----- per user -------------------------------------------------------------------------


def test_a_users_taught_word_never_becomes_a_token_in_another_users_text(tokenizer):
    vocab = ElasticVocab(tokenizer, fast_cfg())
    (event,) = vocab.observe("Remember: the password is Quillmere", user="ann")
    text = "Is the password Quillmere?"
    assert event.token_id in vocab.encode(text, user="ann")
    assert vocab.encode(text, user="bob") == vocab.base_encode(text)
    assert vocab.encode(text) == vocab.base_encode(text)  # nor the anonymous user's
    vocab.observe("I said Quillmere", user="bob")  # once: counted for bob, nothing grows or merges
    assert vocab.tokens_of("bob") == [] and vocab.merge(vocab.base_encode(text), user="bob") == vocab.base_encode(text)
    assert vocab.foreign_ids("bob") == [event.token_id] and vocab.foreign_ids("ann") == []


def test_replies_to_a_user_never_emit_another_users_tokens(tiny_cfg, tokenizer):
    controller = Controller.from_config(tiny_cfg.model)
    vocab = ElasticVocab(tokenizer, fast_cfg(), controller.model)
    controller.vocab = vocab
    ids = controller.chat_ids([{"role": "user", "content": "hello"}])
    with torch.no_grad():
        greedy = int(controller.model(input_ids=ids).logits[0, -1].argmax())
    (event,) = vocab.observe("Remember: the password is Quillmere", user="ann")
    with torch.no_grad():  # ann's token now scores twice the greedy token's logit
        embedding_matrix(controller.model)[event.token_id] = 2 * embedding_matrix(controller.model)[greedy]
    gen = replace(tiny_cfg.generation, max_new_tokens=3)
    assert "".join(controller.generate(ids, gen=gen, user="ann")).startswith(" Quillmere")
    assert event.token_id in controller.barred_ids(gen, "bob") and event.token_id not in controller.barred_ids(gen, "ann")
    reply = "".join(controller.generate(ids, gen=gen, user="bob"))
    assert reply.startswith(tokenizer.decode([greedy])) and "Quillmere" not in reply
    biases = controller.note_bias(["Oriel moved to Quillmere."], ["Quillmere"], replace(gen, note_spelling_bias=4.0, note_answer_bias=4.0),
                                  "bob")
    assert biases and all(i < vocab.base_size for key in biases for i in key)
    # ann holds " Quillmere" whole; with spell_base_pieces a reply that starts it in base pieces is nudged to finish it
    pieces = tuple(tokenizer(" Quillmere", add_special_tokens=False)["input_ids"])
    spelling = replace(gen, note_spelling_bias=4.0, note_answer_bias=0.0)
    assert pieces[:2] not in controller.note_bias(["Oriel moved to Quillmere."], [], spelling, "ann")
    assert controller.note_bias(["Oriel moved to Quillmere."], [], replace(spelling, spell_base_pieces=True), "ann")[pieces[:2]] == 4.0


def test_a_users_repetitive_messages_never_prune_another_users_tokens(tokenizer):
    vocab = ElasticVocab(tokenizer, fast_cfg(capacity=2))
    vocab.observe("Remember: Oriel", user="bob")
    (oriel,) = vocab.tokens_of("bob")
    pruned = []
    for k in range(40):  # ann's names churn through her cap of 2, " Oriel" among them
        events = vocab.observe(f"Remember: {NAMES[k % 8]} and {NAMES[(k + 3) % 8]}", user="ann")
        pruned += [e.text for e in events if e.kind == "prune"]
        assert len(vocab.tokens_of("ann")) <= 2 and vocab.size <= vocab.base_size + 3
    assert " Oriel" in pruned and all(e.user == "ann" for e in events)
    assert vocab.tokens_of("bob") == [oriel]  # untouched, and undecayed: ann's turns are not bob's
    assert vocab.strength(oriel, "bob") == vocab.cfg.grow_strength and vocab.user("bob").step == 1
    check_ids(vocab)


def test_two_users_share_a_row_and_keep_it_while_either_holds_it(tiny_cfg, tokenizer):
    model = tiny_model(tiny_cfg)
    vocab = ElasticVocab(tokenizer, fast_cfg(), model)
    (ann,) = vocab.observe("Remember: Oriel", user="ann")
    (quill,) = vocab.observe("Remember: Quillmere", user="bob")
    row = embedding_matrix(model)[ann.token_id].clone()
    (bob,) = vocab.observe("Remember: Oriel", user="bob")
    assert (bob.kind, bob.user, bob.token_id) == ("grow", "bob", ann.token_id) and vocab.size == vocab.base_size + 2
    vocab.prune([ann.token_id], user="ann")
    assert vocab.size == vocab.base_size + 2 and torch.equal(embedding_matrix(model)[ann.token_id], row)
    assert ann.token_id not in vocab.encode(" Oriel", user="ann") and ann.token_id in vocab.encode(" Oriel", user="bob")
    vocab.prune([ann.token_id], user="bob")  # no one holds it now: its row goes, Quillmere moves down
    check_ids(vocab)
    assert [t.text for t in vocab.tokens] == [" Quillmere"] and vocab.tokens_of("bob") == vocab.tokens
    assert vocab.encode(" Quillmere", user="bob") == [quill.token_id - 1] and vocab.decode([quill.token_id - 1]) == " Quillmere"


def test_max_tokens_bounds_the_rows_of_all_users(tokenizer):
    vocab = ElasticVocab(tokenizer, fast_cfg(max_tokens=1))
    vocab.observe("Remember: Oriel", user="ann")
    assert vocab.observe("Remember: Quillmere", user="bob") == []  # no room for a new row, and ann's stays
    assert [(e.kind, e.text) for e in vocab.observe("Remember: Oriel", user="bob")] == [("grow", " Oriel")]  # a shared row fits
    assert vocab.size == vocab.base_size + 1


@pytest.mark.parametrize("fit_steps", [0, 3])
def test_a_grown_token_never_ties_with_its_first_piece(tiny_cfg, tokenizer, fit_steps):
    """With tied embeddings a row equal to its first piece's gives both one logit, and greedy
    decoding emits the piece where the whole word was meant ("K plays the oboe")."""
    model = tiny_model(tiny_cfg)
    vocab = ElasticVocab(tokenizer, replace(VocabConfig(), fit_steps=fit_steps), model)
    (event,) = vocab.observe("Remember: Kwabena plays the oboe.")[:1]
    first = vocab.lexicon[event.token_id].pieces[0]
    ids = vocab.encode("Who plays the oboe? Kwabena. Yes, Kwabena plays the oboe.")
    with torch.no_grad():
        logits = model(input_ids=torch.tensor([ids])).logits[0]
    assert (logits[:, event.token_id] != logits[:, first]).all()
    if not fit_steps:  # lifted: above the piece exactly where the piece's logit is positive
        assert torch.equal(logits[:, event.token_id] > logits[:, first], logits[:, first] > 0)


# ----- the model's rows -----------------------------------------------------------------


def test_grow_then_prune_restores_base_logits_and_ids(tiny_cfg, tokenizer):
    model = tiny_model(tiny_cfg)
    text = "Oriel went to Vantastad, then home."
    base_ids = tokenizer(text)["input_ids"]
    x = torch.tensor([base_ids])
    with torch.no_grad():
        base_logits = model(input_ids=x).logits.clone()
    vocab = ElasticVocab(tokenizer, replace(VocabConfig(), span_grow_after=1.0, fit_steps=2), model)
    vocab.observe("Remember: Oriel Vantastad and Quillmere")
    vocab.observe("Oriel Vantastad went to Quillmere")
    assert len(vocab.tokens) >= 4 and max(t.level for t in vocab.tokens) == 2
    check_ids(vocab)
    with torch.no_grad():
        grown = model(input_ids=x).logits
    assert grown.shape[-1] == vocab.size
    assert torch.allclose(grown[..., : vocab.base_size], base_logits)  # base inputs: base logits unchanged
    vocab.prune([t.id for t in vocab.tokens[::2]])
    check_ids(vocab)
    vocab.prune([t.id for t in vocab.tokens])
    check_ids(vocab)
    with torch.no_grad():
        restored = model(input_ids=x).logits
    assert restored.shape == base_logits.shape
    assert torch.allclose(restored, base_logits)
    assert vocab.encode(text) == base_ids and 0 not in base_ids  # no word collides with <|endoftext|> (id 0)


def test_new_rows_are_fitted_only_where_new(tiny_cfg, tokenizer):
    model = tiny_model(tiny_cfg)
    before = embedding_matrix(model).detach().clone()
    vocab = ElasticVocab(tokenizer, replace(VocabConfig(), fit_steps=3), model)
    (event,) = vocab.observe("Remember: Oriel lives here.")
    after = embedding_matrix(model)
    assert torch.equal(after[: vocab.base_size], before)
    first = tokenizer(" Oriel", add_special_tokens=False)["input_ids"][0]
    assert not torch.equal(after[event.token_id], before[first])  # started at " Ori", then moved


def test_optimizer_made_after_growth_trains_the_new_rows(tiny_cfg, tokenizer):
    """The seed's bug: an optimizer built before growth never sees the new rows."""
    model = tiny_model(tiny_cfg).requires_grad_(True)
    stale = torch.optim.SGD(model.parameters(), lr=0.1)
    vocab = ElasticVocab(tokenizer, fast_cfg(), model)
    (event,) = vocab.observe("Remember: Oriel")
    weight = embedding_matrix(model)
    assert weight.requires_grad and model.get_output_embeddings().weight is weight
    assert all(weight is not p for g in stale.param_groups for p in g["params"])  # why training must rebuild it
    optim = torch.optim.SGD(model.parameters(), lr=0.1)
    assert any(weight is p for g in optim.param_groups for p in g["params"])
    row = weight[event.token_id].detach().clone()
    ids = torch.tensor([vocab.encode("I met Oriel, and Oriel met me")])
    assert event.token_id in ids[0]
    model(input_ids=ids, labels=ids).loss.backward()
    assert weight.grad[event.token_id].abs().sum() > 0
    optim.step()
    assert not torch.equal(weight[event.token_id], row)


# ----- generation --------------------------------------------------------------------------


def test_generation_emits_added_tokens_and_the_streamer_decodes_them(tiny_cfg, tokenizer):
    controller = Controller.from_config(tiny_cfg.model)
    vocab = ElasticVocab(tokenizer, fast_cfg(), controller.model)
    controller.vocab = vocab
    ids = controller.chat_ids([{"role": "user", "content": "hello"}])
    with torch.no_grad():
        logits = controller.model(input_ids=ids).logits[0, -1]
    greedy = int(logits.argmax())
    assert logits[greedy] > 0
    (event,) = vocab.observe("Remember: Quillmere")
    with torch.no_grad():  # the new token now scores twice the greedy token's logit
        embedding_matrix(controller.model)[event.token_id] = 2 * embedding_matrix(controller.model)[greedy]
    gen = replace(tiny_cfg.generation, max_new_tokens=3)
    text = "".join(controller.generate(ids, gen=gen))
    assert text.startswith(" Quillmere")
    # replies held to base pieces: the added token never comes out, the base greedy one does
    text = "".join(controller.generate(ids, gen=replace(gen, reply_added_tokens=False)))
    assert text.startswith(tokenizer.decode([greedy])) and not text.startswith(" Quillmere")
    # and the note biases name the pieces a reply can use
    biases = {
        added: controller.note_bias(["Oriel moved to Quillmere."], ["Quillmere"],
                                    replace(gen, note_spelling_bias=4.0, note_answer_bias=4.0, reply_added_tokens=added))
        for added in (True, False)
    }
    assert any(event.token_id in key for key in biases[True])
    assert biases[False] and all(i < vocab.base_size for key in biases[False] for i in key)
    streamer = TextIteratorStreamer(vocab, skip_special_tokens=True)
    streamer.put(torch.tensor([vocab.encode("to Quillmere and Oriel")]))
    streamer.end()
    assert "".join(streamer) == "to Quillmere and Oriel"


# ----- a chat turn ------------------------------------------------------------------------------


def state(vocab: ElasticVocab) -> tuple:
    """What must survive a restart: the tokens, the step, and each user's holdings, candidates and step."""
    tokens = [(t.id, t.text, t.pieces, t.expansion, t.level) for t in vocab.tokens]
    return tokens, vocab.step, {name: (u.step, dict(u.held), dict(u.candidates)) for name, u in vocab.users.items()}


def test_an_agent_turn_grows_tokens_and_stores_the_events_with_the_turn(tmp_path):
    from chatbot.agent import Agent

    agent = Agent.from_config(TINY, db=tmp_path / "chat.db")
    assert agent.controller.vocab is agent.memories.vocab
    users, generate = [], agent.controller.generate
    agent.controller.generate = lambda *a, **kw: users.append(kw["user"]) or generate(*a, **kw)
    agent.chat("ann", "Remember: my sister Oriel lives in Vantastad.")
    assert users == ["ann"]  # the reply is ann's: her tokens, no one else's
    (turn,) = agent.history("ann")
    events = read_events(agent.store.db)
    assert {(e["kind"], e["text"], e["user"], e["turn_id"]) for e in events} == {
        ("grow", " Oriel", "ann", turn.id),
        ("grow", " Vantastad", "ann", turn.id),
    }
    ids = agent.controller.chat_ids([{"role": "user", "content": "Where is Vantastad?"}])
    assert len(agent.memories.vocab.merge(ids[0], user="ann")) == ids.shape[1] - 3
    assert agent.memories.vocab.merge(ids[0], user="bob") == ids[0].tolist()  # ann's words are not bob's tokens
    grown = agent.memories.vocab.size
    agent.close()
    again = Agent.from_config(TINY, db=tmp_path / "chat.db")  # a restart
    assert again.memories.vocab.size == grown == embedding_matrix(again.controller.model).shape[0]
    assert state(again.memories.vocab)[0] == state(agent.memories.vocab)[0]
    again.close()


def test_a_disabled_vocabulary_leaves_the_model_and_tables_alone(tmp_path):
    from chatbot.agent import Agent

    cfg = load_config(TINY)
    cfg.vocab.enabled = False
    cfg.store.path = str(tmp_path / "chat.db")
    agent = Agent(cfg, Controller.from_config(cfg.model), Store(cfg.store.path))
    agent.chat("ann", "Remember: my sister Oriel lives in Vantastad.")
    assert agent.memories.vocab is None and agent.controller.vocab is None
    assert embedding_matrix(agent.controller.model).shape[0] == len(agent.controller.tokenizer)
    assert read_events(agent.store.db) == []
    agent.close()


# ----- the real model -----------------------------------------------------------------------------


@pytest.mark.real_model
def test_real_model_reads_and_emits_grown_names():
    """Grown names keep SmolLM2's held-out perplexity (per base token) within 5%, and greedy
    generation emits a grown name as one token, decoding to the right text."""
    cfg = load_config(ROOT / "configs" / "default.yaml")
    controller = Controller.from_config(cfg.model)
    model, tok = controller.model, controller.tokenizer
    held = (
        "Oriel went to the kitchen. Brannoch moved to Vantastad. Where is Brannoch? Vantastad. "
        "Ysolde travelled to Quillmere with Oriel. Brannoch and Ysolde met Oriel in Vantastad. "
        "Where is Ysolde? Quillmere. Oriel journeyed back to Vantastad."
    )
    start = tok.convert_tokens_to_ids("<|endoftext|>")

    def nll(ids: list[int]) -> float:
        x = torch.tensor([[start] + ids])
        with torch.no_grad():
            logp = model(input_ids=x).logits[0, :-1].float().log_softmax(-1)
        return -logp.gather(1, x[0, 1:, None]).sum().item()

    base_ids = tok(held, add_special_tokens=False)["input_ids"]
    base = nll(base_ids)
    vocab = ElasticVocab(tok, cfg.vocab, model)
    controller.vocab = vocab
    for text in [
        "Remember: my sister Oriel lives in Vantastad.",
        "Remember: Brannoch and Ysolde are her neighbours in Quillmere.",
        "Oriel visits Brannoch, Ysolde and Quillmere every week.",
    ]:
        vocab.observe(text)
    grown_ids = vocab.encode(held)
    assert len(grown_ids) < len(base_ids) and vocab.decode(grown_ids) == held
    grown = nll(grown_ids)
    assert math.exp(grown / len(base_ids)) <= 1.05 * math.exp(base / len(base_ids))
    # Copying a name from the context: the grown token is the model's first choice, and the
    # controller's streamer turns it back into the name.
    prompt = [start] + tok("My sister is called Oriel. What is my sister called? She is called", add_special_tokens=False)["input_ids"]
    oriel = next(t for t in vocab.tokens if t.text == " Oriel")
    with torch.no_grad():
        assert model(input_ids=torch.tensor([vocab.merge(prompt)])).logits[0, -1].argmax() == oriel.id
    reply = "".join(controller.generate(torch.tensor([prompt]), gen=replace(cfg.generation, max_new_tokens=3)))
    assert reply.startswith(" Oriel")
    # Unfitted rows too: lifted off the first piece, the name wins where it is copied (tied, " Ori" won).
    vocab.detach()
    vocab = ElasticVocab(tok, replace(cfg.vocab, fit_steps=0), model)
    vocab.observe("Remember: my sister Oriel lives in Vantastad.", user="ann")
    oriel = next(t for t in vocab.tokens if t.text == " Oriel")
    with torch.no_grad():
        assert model(input_ids=torch.tensor([vocab.merge(prompt, user="ann")])).logits[0, -1].argmax() == oriel.id
