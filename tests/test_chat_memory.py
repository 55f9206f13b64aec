"""memory/chat_memory.py: the per-user neural memory in chat (`ChatMemory`).

On the tiny model the memory is untrained (seeded, as chatbot/memories.py builds one
without a checkpoint), so these tests check the mechanics: a statement is written and
logged, a question read and decoded among the user's words, users kept apart, and the
log's uses (forgetting, clearing, replaying, relearning, supersession). One test runs the
shipped checkpoint on the real model.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import torch

from chatbot import load_config
from memory.chat_memory import WRITES, ChatMemory, Recall, WriteRecord
from memory.interface import MemoryModel
from text import distinct_words, words

from .conftest import DEFAULT, ROOT, TINY

FACTS = ["Oriel lives in Vantastad.", "Bram works at Quillmere.", "Ysolde met Bram in 1999."]


def make_memory(controller, *, supersede: float | None = None, **neural) -> ChatMemory:
    """An untrained ChatMemory of the tiny config, seeded: two made alike hold the same weights."""
    cfg = load_config(TINY)
    memory_cfg = replace(cfg.neural_memory, **neural)
    with torch.random.fork_rng():
        torch.manual_seed(0)
        model = MemoryModel(memory_cfg, cfg.interface, controller.hidden_size, controller.hidden_size)
    return ChatMemory(model, controller, feature_layer=cfg.interface.feature_layer, tag="untrained", cfg=memory_cfg,
                      consolidation=replace(cfg.consolidation, supersede_similarity=supersede))


@pytest.fixture
def memory(tiny_controller) -> ChatMemory:
    return make_memory(tiny_controller)


def tell(memory: ChatMemory, user: str, sentences: list[str], **where) -> list:
    return [memory.step(user, text, features, question=False, **where) for text, features in zip(sentences, memory.featurize(sentences))]


def ask(memory: ChatMemory, user: str, question: str):
    return memory.step(user, question, memory.featurize([question])[0], question=True)


def read(memory: ChatMemory, user: str = "ann") -> Recall:
    return ask(memory, user, "Where does Oriel live?").recall


def weights(memory: ChatMemory, user: str) -> list[torch.Tensor]:
    """The user's fast weights, copied."""
    snapshot = memory.snapshot(user)
    return [snapshot[f"w{i}"].clone() for i in range(len(memory.model.memory.init_w))]


def written(memory: ChatMemory, records: list[WriteRecord]) -> list[torch.Tensor]:
    """Fast weights of a fresh start that these logged writes were written into, in order."""
    neural = memory.model.memory
    neural.fast = neural.initial_state(1)
    for w in records:
        neural.write(torch.from_numpy(w.key)[None], torch.from_numpy(w.vector)[None], torch.from_numpy(w.beta)[None])
    return [w.clone() for w in neural.fast.weights]


def same(a: list[torch.Tensor], b: list[torch.Tensor]) -> bool:
    return all(torch.allclose(x, y, atol=1e-6) for x, y in zip(a, b, strict=True))


# ---- features -----------------------------------------------------------------------------


def test_featurize_gives_each_texts_token_ids_hidden_states_and_embeddings(memory, tiny_controller):
    assert memory.featurize([]) == []
    features = memory.featurize(FACTS[:2])
    assert len(features) == 2
    for text, (ids, hidden, emb) in zip(FACTS, features):
        assert ids == tiny_controller.tokenizer(text, add_special_tokens=False)["input_ids"]
        assert hidden.shape == (len(ids), tiny_controller.hidden_size) and torch.isfinite(hidden).all()
        assert torch.equal(emb, tiny_controller.embed(torch.tensor([ids]))[0].float())


# ---- statements and questions ---------------------------------------------------------------


def test_a_statement_changes_the_users_fast_weights_and_logs_one_write(memory, tiny_controller):
    start = [w.clone() for w in memory.model.memory.initial_state(1).weights]
    (step,) = tell(memory, "ann", [FACTS[0]], turn=7, engram=3)
    assert not step.question and step.recall is None
    assert not same(weights(memory, "ann"), start)
    assert memory.writes("ann") == [step.write]
    write = step.write
    assert (write.id, write.turn, write.engram, write.text) == (0, 7, 3, FACTS[0])
    assert write.value and write.value in write.text  # the words the value points at, from the sentence
    assert write.live and write.superseded_by is None and not write.forgotten
    assert write.beta.shape == (memory.heads,) and (write.beta > 0).all()
    assert write.key.shape == (memory.model.memory_cfg.key_dim,) and write.vector.shape == (tiny_controller.hidden_size,)
    assert np.array_equal(write.key, step.key.numpy())
    assert same(weights(memory, "ann"), written(memory, [write]))  # the logged write is what changed the weights


def test_each_statement_adds_one_write_in_order(memory):
    steps = tell(memory, "ann", FACTS)
    assert [w.id for w in memory.writes("ann")] == [0, 1, 2]
    assert [w.text for w in memory.writes("ann")] == FACTS
    assert [s.write for s in steps] == memory.writes("ann")
    stats = memory.stats("ann")
    assert {k: stats[k] for k in ("writes", "live", "superseded", "forgotten", "replays")} == {
        "writes": 3, "live": 3, "superseded": 0, "forgotten": 0, "replays": 0}
    assert stats["mean_beta"] == pytest.approx(float(np.mean([s.write.beta.mean() for s in steps])))


def test_a_question_reads_without_writing(memory, tiny_controller):
    tell(memory, "ann", FACTS)
    before = weights(memory, "ann")
    step = ask(memory, "ann", "Where does Oriel live?")
    assert step.question and step.write is None and step.superseded == []
    assert step.read.shape == (tiny_controller.hidden_size,)
    assert isinstance(step.recall, Recall)
    assert len(memory.writes("ann")) == 3
    assert all(torch.equal(a, b) for a, b in zip(weights(memory, "ann"), before))


def test_a_read_decodes_among_the_words_of_the_users_statements(tiny_controller):
    memory = make_memory(tiny_controller, min_confidence=0.0)  # every read names its best word
    tell(memory, "ann", FACTS)
    recall = ask(memory, "ann", "Where does Oriel live?").recall
    vocab = distinct_words(FACTS)  # the question's own words ("Where", "does") are no candidates
    assert recall.candidates == len(vocab) and recall.word in vocab
    assert 1 / len(vocab) <= recall.confidence <= 1
    expected = [w for w in memory.writes("ann") if recall.word in words(w.text)][-1]
    assert recall.source is expected


def test_the_source_is_the_latest_live_statement_holding_the_word(memory):
    tell(memory, "ann", ["Oriel.", "Oriel!"])  # one word to decode: the read names it for sure
    recall = ask(memory, "ann", "Who?").recall
    assert (recall.word, recall.confidence, recall.candidates) == ("Oriel", pytest.approx(1.0), 1)
    assert recall.source is memory.writes("ann")[1]
    memory.forget("ann", [1])
    assert ask(memory, "ann", "Who?").recall.source is memory.writes("ann")[0]


def test_a_read_less_probable_than_min_confidence_names_no_word(tiny_controller):
    sure = make_memory(tiny_controller, min_confidence=0.0)
    tell(sure, "ann", FACTS)
    found = ask(sure, "ann", "Where does Oriel live?").recall
    doubtful = make_memory(tiny_controller, min_confidence=found.confidence + 1e-3)  # the same memory, a higher bar
    tell(doubtful, "ann", FACTS)
    missed = ask(doubtful, "ann", "Where does Oriel live?").recall
    assert missed.word is None and missed.source is None
    assert missed.confidence == pytest.approx(found.confidence) and missed.candidates == found.candidates


def test_a_read_before_any_statement_finds_nothing(memory):
    assert ask(memory, "ann", "Where does Oriel live?").recall == Recall(None, 0.0, 0, None)


def test_one_users_memory_never_reaches_another(memory):
    tell(memory, "ann", FACTS)
    ann = weights(memory, "ann")
    ann_writes = memory.writes("ann")
    ann_state = memory.snapshot("ann")["state"].clone()
    assert memory.writes("bob") == [] and memory.snapshot("bob") is None
    assert ask(memory, "bob", "Where does Oriel live?").recall == Recall(None, 0.0, 0, None)
    tell(memory, "bob", ["Bram lives in Vantastad."])
    assert [w.text for w in memory.writes("bob")] == ["Bram lives in Vantastad."] and memory.writes("bob")[0].id == 0
    assert not same(weights(memory, "bob"), ann)
    assert all(torch.equal(a, b) for a, b in zip(weights(memory, "ann"), ann))  # untouched
    assert torch.equal(memory.snapshot("ann")["state"], ann_state) and memory.writes("ann") == ann_writes
    memory.clear("bob")
    assert same(weights(memory, "ann"), ann) and memory.stats("ann")["live"] == 3


def test_a_disabled_memory_gives_keys_and_stores_nothing(tiny_controller):
    memory = make_memory(tiny_controller, enabled=False)
    (step,) = tell(memory, "ann", [FACTS[0]])
    assert step.key.shape == (memory.model.memory_cfg.key_dim,) and step.write is None
    assert ask(memory, "ann", "Where does Oriel live?").recall is None
    assert memory.writes("ann") == [] and memory.stats("ann")["writes"] == 0


# ---- forgetting, clearing, replaying, relearning --------------------------------------------


def test_forget_marks_writes_forgotten_and_rebuilds_the_weights_from_the_kept_ones(memory):
    tell(memory, "ann", FACTS)
    before = weights(memory, "ann")
    gone = memory.forget("ann", [2, 0, 99])  # an unknown id is passed over
    assert [w.id for w in gone] == [0, 2] and all(w.forgotten and not w.live for w in gone)
    writes = memory.writes("ann")
    assert [w.forgotten for w in writes] == [True, False, True]
    after = weights(memory, "ann")
    assert not same(after, before)
    assert same(after, written(memory, [writes[1]]))  # as if only the kept sentence had been written
    stats = memory.stats("ann")
    assert (stats["writes"], stats["live"], stats["forgotten"]) == (3, 1, 2)
    assert stats["mean_beta"] == pytest.approx(float(writes[1].beta.mean()))
    assert memory.forget("ann", [0]) == []  # already forgotten
    # the forgotten sentences' words are no longer read
    recall = read(memory)
    assert recall.candidates == len(distinct_words([FACTS[1]]))


def test_clear_forgets_every_write_and_starts_the_memory_afresh(memory):
    tell(memory, "ann", FACTS)
    memory.forget("ann", [1])
    assert memory.clear("ann") == 2  # the writes not forgotten before
    assert all(w.forgotten for w in memory.writes("ann"))
    assert same(weights(memory, "ann"), [w.clone() for w in memory.model.memory.initial_state(1).weights])
    assert torch.equal(memory.snapshot("ann")["state"], torch.zeros(1, memory.model.interface_cfg.model_dim))
    assert memory.stats("ann")["live"] == 0 and memory.stats("ann")["mean_beta"] == 0.0
    assert read(memory) == Recall(None, 0.0, 0, None)
    assert memory.clear("ann") == 0


def test_replay_writes_live_writes_again_and_counts_them(memory):
    tell(memory, "ann", FACTS)
    writes = memory.writes("ann")
    memory.forget("ann", [2])
    kept = weights(memory, "ann")
    assert memory.replay("ann", [0, 1, 2, 99]) == 2  # the forgotten and the unknown are not replayed
    assert not same(weights(memory, "ann"), kept)
    assert same(weights(memory, "ann"), written(memory, [writes[0], writes[1], writes[0], writes[1]]))
    assert memory.stats("ann")["replays"] == 2 and memory.snapshot("ann")["replays"] == 2
    assert len(memory.writes("ann")) == 3  # replays add no writes
    assert memory.replay("ann", [2]) == 0 and memory.stats("ann")["replays"] == 2


def test_learn_replaces_the_memory_by_one_told_the_sentences(tiny_controller, memory):
    tell(memory, "ann", ["Zephyrine sings."])
    memory.replay("ann", [0])
    learned = memory.learn("ann", [(FACTS[0], 4, 10), (FACTS[1], 5, 11)])
    assert [(w.id, w.text, w.turn, w.engram) for w in learned] == [(0, FACTS[0], 4, 10), (1, FACTS[1], 5, 11)]
    assert memory.writes("ann") == learned and memory.stats("ann")["replays"] == 0
    told = make_memory(tiny_controller)
    tell(told, "ann", FACTS[:2])
    assert same(weights(memory, "ann"), weights(told, "ann"))
    assert torch.allclose(memory.snapshot("ann")["state"], told.snapshot("ann")["state"], atol=1e-6)
    assert WRITES in memory.changes("ann").whole  # the next save rewrites the log


def test_every_change_to_the_log_is_marked_for_the_next_save(memory):
    assert memory.changes("ann") is None
    tell(memory, "ann", FACTS[:2])
    assert memory.changes("ann").changed[WRITES] == {0, 1}
    memory.changes("ann").saved(1.0)
    memory.forget("ann", [1])
    assert memory.changes("ann").changed[WRITES] == {1}


# ---- supersession -----------------------------------------------------------------------------


def test_with_threshold_minus_one_every_statement_supersedes_the_live_ones(tiny_controller):
    memory = make_memory(tiny_controller, supersede=-1.0, min_confidence=0.0)  # every key is that close
    first, second, third = tell(memory, "ann", FACTS)
    assert first.superseded == [] and second.superseded == [first.write] and third.superseded == [second.write]
    assert [w.superseded_by for w in memory.writes("ann")] == [1, 2, None]
    assert [w.live for w in memory.writes("ann")] == [False, False, True]
    stats = memory.stats("ann")
    assert (stats["live"], stats["superseded"]) == (1, 2)
    recall = ask(memory, "ann", "Where does Oriel live?").recall
    assert recall.candidates == len(distinct_words([FACTS[2]])) and recall.source is third.write  # superseded words are not read


def test_with_threshold_none_nothing_is_ever_superseded(tiny_controller):
    memory = make_memory(tiny_controller, supersede=None)
    steps = tell(memory, "ann", FACTS + ["Oriel lives in Vantastad.", "Oriel lives in Vantastad!"])
    assert all(s.superseded == [] for s in steps)
    assert all(w.superseded_by is None for w in memory.writes("ann")) and memory.stats("ann")["superseded"] == 0


def test_supersession_compares_keys_by_their_cosine_per_head(tiny_controller):
    probe = make_memory(tiny_controller)
    first, second = tell(probe, "ann", FACTS[:2])
    heads = probe.heads
    a, b = first.write.key.reshape(heads, -1), second.write.key.reshape(heads, -1)
    cosine = float(np.mean(np.sum(a * b, -1) / (np.linalg.norm(a, axis=-1) * np.linalg.norm(b, axis=-1))))
    below = make_memory(tiny_controller, supersede=cosine - 1e-4)
    assert tell(below, "ann", FACTS[:2])[1].superseded == [below.writes("ann")[0]]
    above = make_memory(tiny_controller, supersede=cosine + 1e-4)
    assert tell(above, "ann", FACTS[:2])[1].superseded == []


# ---- keys -------------------------------------------------------------------------------------


def test_keys_are_a_fresh_interfaces_and_write_nothing(memory):
    tell(memory, "ann", FACTS[:1])
    ann = weights(memory, "ann")
    texts, questions = [FACTS[0], "Where does Oriel live?"], [False, True]
    keys = memory.keys(texts, questions)
    assert keys.shape == (2, memory.model.memory_cfg.key_dim)
    assert len(memory.writes("ann")) == 1 and all(torch.equal(a, b) for a, b in zip(weights(memory, "ann"), ann))
    # the same keys as a new user's steps: the write key of the statement, the read key of the question
    steps = [*tell(memory, "cat", texts[:1]), ask(memory, "cat", texts[1])]
    assert torch.allclose(keys, torch.stack([s.key for s in steps]), atol=1e-5)
    assert memory.keys([], []).shape == (0, memory.model.memory_cfg.key_dim)


# ---- the shipped checkpoint -------------------------------------------------------------------


def test_a_checkpoint_for_another_model_width_is_refused(tiny_controller):
    cfg = load_config(DEFAULT)
    with pytest.raises(ValueError, match=f"576-wide model, this one is {tiny_controller.hidden_size}"):
        ChatMemory.from_checkpoint(ROOT / cfg.neural_memory.checkpoint, tiny_controller, cfg=cfg.neural_memory,
                                   consolidation=cfg.consolidation)


@pytest.mark.real_model
def test_the_shipped_checkpoint_writes_statements_and_reads_among_them(real_controller):
    cfg = load_config(DEFAULT)
    memory = ChatMemory.from_checkpoint(ROOT / cfg.neural_memory.checkpoint, real_controller,
                                        cfg=replace(cfg.neural_memory, min_confidence=0.0), consolidation=cfg.consolidation)
    assert memory.tag.startswith("mnm_chat.pt:")
    start = [w.clone() for w in memory.model.memory.initial_state(1).weights]
    steps = tell(memory, "ann", FACTS)
    after = weights(memory, "ann")
    assert not same(after, start)
    assert [w.text for w in memory.writes("ann")] == FACTS
    assert all(w.value and w.value in w.text for w in memory.writes("ann"))
    assert same(after, written(memory, [s.write for s in steps]))
    for question in ("Where does Oriel live?", "Where does Bram work?", "When did Ysolde meet Bram?"):
        step = ask(memory, "ann", question)
        recall = step.recall
        assert step.write is None and recall.candidates == len(distinct_words(FACTS))
        assert recall.word in distinct_words(FACTS)
        assert recall.source in memory.writes("ann") and recall.word in words(recall.source.text)
    assert all(torch.equal(a, b) for a, b in zip(weights(memory, "ann"), after))  # reads wrote nothing
