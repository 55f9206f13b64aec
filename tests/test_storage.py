"""storage/: the database, its migrations, and exact round trips of the engrams, the neural
memory and the vocabulary through it, rolled-back saves included."""

import json
import logging
import sqlite3
import subprocess
import sys
import textwrap
import uuid
from dataclasses import replace

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from transformers import AutoTokenizer

from changes import Changes
from chatbot.config import load_config
from chatbot.controller import Controller
from memory.chat_memory import ChatMemory
from memory.interface import MemoryModel
from memory.memoria import Memoria
from storage import Store, StoreError, schema
from storage.engrams import engrams_stale, load_engrams, save_engrams
from storage.neural import load_neural, neural_stale, save_neural
from storage.schema import SCHEMA_VERSION
from storage.vocab import load_vocab, read_events, save_vocab, size_history
from vocab import ElasticVocab, VocabConfig, VocabError
from vocab.rows import FIRST_LIFT, embedding_matrix

from .conftest import ROOT, TINY
from .test_memoria import SMALL, configs, four_turns, gains_table, named_engrams, our_state, turns
from .test_vocab import fast_cfg, state, tiny_model

# ---- the database ---------------------------------------------------------------------------


def test_new_database_is_migrated_and_in_wal_mode(tmp_path):
    store = Store(tmp_path / "sub" / "c.db")
    assert store.schema_version == SCHEMA_VERSION
    assert store.db.journal_mode == "wal"
    assert {"users", "conversations", "turns"} <= set(store.db.table_names())
    store.close()


def test_turns_round_trip_and_survive_reopen(tmp_path):
    path = tmp_path / "c.db"
    store = Store(path)
    conv = store.current_conversation("alice")
    with store.transaction() as db:
        store.add_turn(db, conv, "hi", "hello")
        store.add_turn(db, conv, "how are you", "fine")
    store.close()
    store = Store(path)
    assert store.current_conversation("alice") == conv
    assert [(t.user_text, t.reply) for t in store.turns(conv)] == [("hi", "hello"), ("how are you", "fine")]
    assert [t.user_text for t in store.turns(conv, limit=1)] == ["how are you"]
    store.close()


def test_users_have_separate_conversations(tmp_path):
    store = Store(tmp_path / "c.db")
    a, b = store.current_conversation("alice"), store.current_conversation("bob")
    assert a != b
    with store.transaction() as db:
        store.add_turn(db, a, "secret", "ok")
    assert store.turns(b) == []
    assert store.new_conversation("alice") != a
    assert store.turns(store.current_conversation("alice")) == []
    store.close()


def test_failed_transaction_writes_nothing(tmp_path):
    store = Store(tmp_path / "c.db")
    conv = store.current_conversation("alice")
    with pytest.raises(RuntimeError):
        with store.transaction() as db:
            store.add_turn(db, conv, "half", "a turn")
            raise RuntimeError("crash mid-turn")
    assert store.turns(conv) == []
    store.close()


def test_killed_process_mid_transaction_loses_nothing_committed(tmp_path):
    path = tmp_path / "c.db"
    store = Store(path)
    conv = store.current_conversation("alice")
    with store.transaction() as db:
        store.add_turn(db, conv, "kept", "yes")
    store.close()
    script = textwrap.dedent(
        f"""
        import os
        from storage import Store
        store = Store({str(path)!r})
        with store.transaction() as db:
            store.add_turn(db, {conv}, "lost", "half-written")
            os._exit(9)  # killed before the commit
        """
    )
    assert subprocess.run([sys.executable, "-c", script]).returncode == 9
    store = Store(path)
    assert [t.user_text for t in store.turns(conv)] == ["kept"]
    store.close()


def test_newer_schema_is_refused(tmp_path):
    path = tmp_path / "c.db"
    Store(path).close()
    conn = sqlite3.connect(path)
    conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 5}")
    conn.close()
    with pytest.raises(StoreError, match="newer than this program"):
        Store(path)


def test_migrations_run_once_each_and_keep_data(tmp_path, monkeypatch):
    path = tmp_path / "c.db"
    store = Store(path)
    conv = store.current_conversation("alice")
    with store.transaction() as db:
        store.add_turn(db, conv, "before", "migration")
    store.close()

    calls = []

    def add_column(db):
        calls.append(1)
        db["turns"].add_column("rating", int)

    monkeypatch.setattr(schema, "MIGRATIONS", [*schema.MIGRATIONS, add_column])
    monkeypatch.setattr(schema, "SCHEMA_VERSION", len(schema.MIGRATIONS))
    for _ in range(2):
        store = Store(path)
        assert store.schema_version == SCHEMA_VERSION + 1
        assert "rating" in store.db["turns"].columns_dict
        assert [t.user_text for t in store.turns(conv)] == ["before"]
        store.close()
    assert calls == [1]


def test_failing_migration_rolls_back(tmp_path, monkeypatch):
    path = tmp_path / "c.db"
    Store(path).close()

    def broken(db):
        db["scratch"].create({"id": int}, pk="id")
        raise RuntimeError("migration bug")

    monkeypatch.setattr(schema, "MIGRATIONS", [*schema.MIGRATIONS, broken])
    monkeypatch.setattr(schema, "SCHEMA_VERSION", len(schema.MIGRATIONS))
    with pytest.raises(RuntimeError, match="migration bug"):
        Store(path)
    conn = sqlite3.connect(path)
    assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    assert "scratch" not in {r[0] for r in conn.execute("SELECT name FROM sqlite_master")}
    conn.close()


def test_corrupt_database_is_a_clear_error_and_untouched(tmp_path):
    path = tmp_path / "c.db"
    garbage = b"this is not sqlite" * 100
    path.write_bytes(garbage)
    with pytest.raises(StoreError, match="corrupt"):
        Store(path)
    assert path.read_bytes() == garbage


def test_locked_database_is_a_clear_error(tmp_path):
    path = tmp_path / "c.db"
    Store(path).close()
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("BEGIN EXCLUSIVE")
    try:
        store = Store(path, busy_timeout_s=0.2)
        with pytest.raises(StoreError, match="locked by another process"):
            with store.transaction() as db:
                store.add_turn(db, 1, "x", "y")
    finally:
        holder.execute("ROLLBACK")
        holder.close()


# ---- change tracking ------------------------------------------------------------------------


def test_changes_track_keys_and_tell_a_lost_save():
    changes = Changes()
    changes.change("rows", [1, 2])
    changes.remove("rows", [2, 3])
    changes.change("rows", [3])
    changes.append(["e1"])
    assert changes.changed["rows"] == {1, 3} and changes.removed["rows"] == {2}
    assert not changes.stale(0) and not changes.rewrites("rows", 0) and changes.to_append(0) == ["e1"]
    changes.saved(1, changes.to_append(0))
    assert changes.changed["rows"] == set() and changes.version == 1
    changes.append(["e2"])
    # the save as version 1 was rolled back: the database still says 0
    assert changes.stale(0) and changes.rewrites("rows", 0) and changes.to_append(0) == ["e1", "e2"]
    changes.rewrite("other")
    assert changes.rewrites("other", 1) and not changes.rewrites("rows", 1)


# ---- engrams --------------------------------------------------------------------------------


def assert_same_memory(a: Memoria, b: Memoria, user: str) -> None:
    assert our_state(a, user) == our_state(b, user)
    engrams = a.engrams(user)
    assert [(e.text, e.turn) for e in engrams] == [(e.text, e.turn) for e in b.engrams(user)]
    ids = [e.id for e in engrams]
    assert torch.equal(a.vectors(user, ids), b.vectors(user, ids))


def save_and_check(store: Store, memoria: Memoria, config: dict) -> Memoria:
    """Save user "u", load it into a new Memoria, check they are the same; returns the new one."""
    with store.transaction() as db:
        save_engrams(db, memoria, "u")
    restored = Memoria(**config)
    load_engrams(store.db, restored, "u")
    assert_same_memory(memoria, restored, "u")
    return restored


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    config=configs,
    script=turns,
    seed=st.integers(0, 2**16),
    saves=st.lists(st.sampled_from(["save", "skip", "mid-turn", "rollback"]), min_size=10, max_size=10),
)
def test_save_then_load_is_an_identity(tmp_path, config, script, seed, saves):
    store = Store(tmp_path / f"{uuid.uuid4().hex}.db")
    try:
        memoria = Memoria(**config)
        generator = torch.Generator().manual_seed(seed)
        gains = gains_table(seed, 64)
        for turn, ((widths, remind), save) in enumerate(zip(script, saves)):
            for width in widths:
                memoria.add_working_memory(torch.randn(1, width, SMALL, generator=generator), user="u", turn=turn)
            indices = memoria.remind()[1] if remind else torch.zeros(1, 0, dtype=torch.long)
            if save == "mid-turn":  # between remind and adjust: what fired must be saved
                save_and_check(store, memoria, config)
            # also reward the oldest engram, reminded or not, as a caller may
            oldest = memoria.engrams("u")[0].id
            indices = torch.cat([indices, torch.tensor([[oldest]])], dim=1)
            memoria.adjust_lifespan_and_memories(indices, gains[indices % 64])
            if save == "save":
                save_and_check(store, memoria, config)
            elif save == "rollback":  # the turn's transaction fails after the engrams were written
                with pytest.raises(RuntimeError), store.transaction() as db:
                    save_engrams(db, memoria, "u")
                    raise RuntimeError("a later write of the turn failed")
        restored = save_and_check(store, memoria, config)
        # and they behave the same from here on
        data = torch.randn(1, 2, SMALL, generator=generator)
        assert torch.equal(memoria.add_working_memory(data, user="u"), restored.add_working_memory(data, user="u"))
        assert torch.equal(memoria.remind()[1], restored.remind()[1])
        assert_same_memory(memoria, restored, "u")
    finally:
        store.close()


def test_a_saved_turn_writes_only_what_changed(tmp_path):
    store = Store(tmp_path / "memoria.db")
    memoria = Memoria(num_reminded_stm=3, stm_capacity=20, ltm_search_depth=2, initial_lifespan=1000, num_final_ltms=3)
    generator = torch.Generator().manual_seed(0)
    for _ in range(50):
        memoria.add_working_memory(torch.randn(1, 4, SMALL, generator=generator), user="u", texts=[["x"] * 4], turn=1)
        _, indices = memoria.remind()
        memoria.adjust_lifespan_and_memories(indices, torch.ones(indices.shape))
    with store.transaction() as db:
        assert save_engrams(db, memoria, "u") == 200
    memoria.add_working_memory(torch.randn(1, 4, SMALL, generator=generator), user="u", turn=2)
    _, indices = memoria.remind()
    memoria.adjust_lifespan_and_memories(indices, torch.ones(indices.shape))
    with store.transaction() as db:
        written = save_engrams(db, memoria, "u")
    # 4 new + at most 6 reminded + 4 moved from short- to long-term, of 204 engrams
    assert 4 < written <= 14
    restored = Memoria(num_reminded_stm=3, stm_capacity=20, ltm_search_depth=2, initial_lifespan=1000, num_final_ltms=3)
    load_engrams(store.db, restored, "u")
    assert_same_memory(memoria, restored, "u")
    store.close()
    reopened = Store(tmp_path / "memoria.db")  # and after a restart
    load_engrams(reopened.db, restored, "u")
    assert_same_memory(memoria, restored, "u")
    assert restored.engrams("u", [0])[0].text == "x" and restored.engrams("u", [0])[0].turn == 1
    reopened.close()


def test_vectors_made_another_way_are_told_apart_and_replaced(tmp_path):
    store = Store(tmp_path / "kinds.db")
    old = Memoria(num_reminded_stm=3, stm_capacity=20, ltm_search_depth=2, initial_lifespan=1000, num_final_ltms=3, vector_kind="a")
    generator = torch.Generator().manual_seed(0)
    for _ in range(5):
        old.add_working_memory(torch.randn(1, 2, SMALL, generator=generator), user="u", texts=[["x", "y"]])
        _, indices = old.remind()
        old.adjust_lifespan_and_memories(indices, torch.ones(indices.shape))
    with store.transaction() as db:
        save_engrams(db, old, "u")
    new = Memoria(num_reminded_stm=3, stm_capacity=20, ltm_search_depth=2, initial_lifespan=1000, num_final_ltms=3, vector_kind="b")
    assert new.vector_kind_of("u") == "b"  # nothing loaded yet: new engrams are of this store's kind
    load_engrams(store.db, new, "u")
    assert new.vector_kind_of("u") == "a"
    before = new.engrams("u")
    with pytest.raises(ValueError, match="10 engrams"):
        new.replace_vectors("u", torch.zeros(3, 5))
    wider = torch.nn.functional.normalize(torch.randn(10, SMALL + 3, generator=generator), dim=-1)
    new.replace_vectors("u", wider)
    assert new.vector_kind_of("u") == "b" and new.engrams("u") == before  # texts, lifespans and links stay
    with store.transaction() as db:
        assert save_engrams(db, new, "u") == 10  # every row gets its new vector
    again = Memoria(num_reminded_stm=3, stm_capacity=20, ltm_search_depth=2, initial_lifespan=1000, num_final_ltms=3, vector_kind="b")
    load_engrams(store.db, again, "u")
    assert again.vector_kind_of("u") == "b" and again.engrams("u") == before
    assert torch.allclose(again.vectors("u", [e.id for e in before]), wider)
    store.close()


def test_forgotten_engrams_stay_forgotten_after_a_reload(tmp_path):
    memoria = four_turns()
    memoria.forget([1, 4, 99], user="ann")
    left = memoria.engrams("ann")
    store = Store(tmp_path / "m.db")
    with store.transaction() as db:
        save_engrams(db, memoria, "ann")
    again = Memoria(num_reminded_stm=4, stm_capacity=8, ltm_search_depth=2, initial_lifespan=20, num_final_ltms=2)
    load_engrams(store.db, again, "ann")
    assert again.engrams("ann") == left


def test_the_name_index_is_built_again_on_load(tmp_path):
    store = Store(tmp_path / "names.db")
    memoria = named_engrams()
    memoria.forget([3], user="u")
    with store.transaction() as db:
        save_engrams(db, memoria, "u")
    reloaded = Memoria(num_reminded_stm=3, stm_capacity=20, ltm_search_depth=2, initial_lifespan=1000, num_final_ltms=3)
    load_engrams(store.db, reloaded, "u")  # the index is built again from the saved texts
    assert reloaded.mentioning(["quillmere", "oriel"], user="u", limit=10) == [2, 1, 0]
    reloaded.restore(reloaded.engrams("u", [1]), reloaded.vectors("u", [1]), user="u")
    assert reloaded.mentioning(["oriel", "bram"], user="u", limit=10) == [1]
    store.close()


def test_another_process_saving_makes_the_engrams_stale(tmp_path):
    path = tmp_path / "two.db"
    mine, theirs = Store(path), Store(path)
    a, b = four_turns(), Memoria(num_reminded_stm=4, stm_capacity=8, ltm_search_depth=2, initial_lifespan=20, num_final_ltms=2)
    with mine.transaction() as db:
        save_engrams(db, a, "ann")
    assert not engrams_stale(mine.db, a, "ann") and engrams_stale(theirs.db, b, "ann")
    load_engrams(theirs.db, b, "ann")
    b.forget([0], user="ann")
    with theirs.transaction() as db:
        save_engrams(db, b, "ann")
    assert engrams_stale(mine.db, a, "ann")
    load_engrams(mine.db, a, "ann")
    assert not engrams_stale(mine.db, a, "ann") and a.engrams("ann") == b.engrams("ann")
    mine.close()
    theirs.close()


# ---- the neural memory ----------------------------------------------------------------------


def chat_memory(controller: Controller, tag: str = "untrained", seed: int = 0) -> ChatMemory:
    """An untrained ChatMemory of the tiny config on the tiny controller."""
    cfg = load_config(TINY)
    torch.manual_seed(seed)
    model = MemoryModel(cfg.neural_memory, cfg.interface, controller.hidden_size, controller.hidden_size)
    return ChatMemory(model, controller, feature_layer=cfg.interface.feature_layer, tag=tag,
                      cfg=cfg.neural_memory, consolidation=replace(cfg.consolidation, supersede_similarity=None))


def tell(memory: ChatMemory, user: str, sentences: list[str]) -> None:
    for text, features in zip(sentences, memory.featurize(sentences)):
        memory.step(user, text, features, question=False)


def same_writes(a: ChatMemory, b: ChatMemory, user: str) -> bool:
    key = lambda w: (w.id, w.turn, w.engram, w.text, w.value, w.beta.tolist(), w.key.tolist(), w.vector.tolist(),  # noqa: E731
                     w.superseded_by, w.forgotten, w.time)
    return [key(w) for w in a.writes(user)] == [key(w) for w in b.writes(user)]


def test_neural_memory_round_trip_and_relearning(tmp_path, tiny_controller, caplog):
    store = Store(tmp_path / "n.db")
    uid = store.user_id("ann")
    memory = chat_memory(tiny_controller)
    tell(memory, "ann", ["Oriel lives in Vantastad.", "Bram works at Quillmere."])
    with store.transaction() as db:
        save_neural(db, memory, "ann", uid)
    tell(memory, "ann", ["Ysolde met Bram."])
    memory.forget("ann", [0])
    with store.transaction() as db:  # only the changed writes: the new one and the forgotten one
        save_neural(db, memory, "ann", uid)
    again = chat_memory(tiny_controller)
    assert neural_stale(store.db, again, "ann", uid)
    load_neural(store.db, again, "ann", uid)
    assert not neural_stale(store.db, again, "ann", uid)
    assert same_writes(memory, again, "ann") and again.stats("ann") == memory.stats("ann")
    for name, tensor in memory.snapshot("ann").items():
        assert torch.equal(again.snapshot("ann")[name], tensor), name
    # other weights cannot read the snapshot: the live sentences are written again
    other = chat_memory(tiny_controller, tag="other", seed=1)
    with caplog.at_level(logging.WARNING):
        load_neural(store.db, other, "ann", uid)
    assert "written by other weights (untrained)" in caplog.text
    assert [w.text for w in other.writes("ann")] == ["Bram works at Quillmere.", "Ysolde met Bram."]
    with store.transaction() as db:  # the relearned log replaces the stored one whole
        save_neural(db, other, "ann", uid)
    assert store.db.execute("SELECT text FROM neural_writes ORDER BY id").fetchall() == [("Bram works at Quillmere.",), ("Ysolde met Bram.",)]
    store.close()


def test_a_rolled_back_neural_save_is_written_again(tmp_path, tiny_controller):
    store = Store(tmp_path / "n.db")
    uid = store.user_id("ann")
    memory = chat_memory(tiny_controller)
    tell(memory, "ann", ["Oriel lives in Vantastad."])
    with store.transaction() as db:
        save_neural(db, memory, "ann", uid)
    tell(memory, "ann", ["Bram works at Quillmere."])
    with pytest.raises(RuntimeError), store.transaction() as db:
        save_neural(db, memory, "ann", uid)
        raise RuntimeError("the turn failed after the memory was written")
    assert neural_stale(store.db, memory, "ann", uid)  # so a chat turn reloads
    tell(memory, "ann", ["Ysolde met Bram."])
    with store.transaction() as db:
        save_neural(db, memory, "ann", uid)
    again = chat_memory(tiny_controller)
    load_neural(store.db, again, "ann", uid)
    assert same_writes(memory, again, "ann")
    store.close()


# ---- the vocabulary -------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tiny_cfg():
    return load_config(TINY)


@pytest.fixture(scope="module")
def tokenizer(tiny_controller):
    return tiny_controller.tokenizer


STREAM = [
    ("ann", "My sister Oriel lives in Vantastad."),
    ("bob", "Remember: Quillmere is where Zephyrine works."),
    ("ann", "Oriel moved to Quillmere with Brannoch."),
    ("bob", "Oriel Vantastad and Oriel Vantastad"),
    ("ann", "Remember: Ysolde, Thelonius, Marisabel."),
    ("bob", "Brannoch and Oriel Vantastad met Ysolde."),
    ("ann", "Remember: Quillmere and Brannoch."),  # words bob holds too: shared rows
]


def test_save_and_load_is_an_identity(tiny_cfg, tokenizer, tmp_path):
    cfg = replace(VocabConfig(), span_grow_after=1.8, capacity=6, fit_steps=1)
    store = Store(tmp_path / "chat.db")
    vocab = ElasticVocab(tokenizer, cfg, tiny_model(tiny_cfg))
    for k, (user, text) in enumerate(STREAM):
        vocab.observe(text, user=user)
        if k == 3:
            vocab.decay(150, user="ann")  # some of ann's tokens fall under the threshold at her next turn
        with store.transaction() as db:
            save_vocab(db, vocab, turn_id=k)
    shared = [t for t in vocab.tokens_of("ann") if t in vocab.tokens_of("bob")]
    assert shared and vocab.prune([shared[0].id], user="ann")  # bob keeps it: only ann's holding goes
    with store.transaction() as db:
        save_vocab(db, vocab)
    assert {e["kind"] for e in read_events(store.db)} == {"grow", "prune"}
    store.close()
    store = Store(tmp_path / "chat.db")  # a restart
    again = ElasticVocab(tokenizer, cfg, tiny_model(tiny_cfg))
    load_vocab(store.db, again)
    assert state(again) == state(vocab)
    assert torch.equal(embedding_matrix(again.model), embedding_matrix(vocab.model))
    for user, text in STREAM:
        assert again.encode(text, user=user) == vocab.encode(text, user=user)
    # Both go on identically.
    a = [(e.kind, e.text, e.token_id) for e in vocab.observe("Thelonius met Thelonius and Zephyrine at Vantastad", user="ann")]
    b = [(e.kind, e.text, e.token_id) for e in again.observe("Thelonius met Thelonius and Zephyrine at Vantastad", user="ann")]
    assert a == b and state(again) == state(vocab)
    for user in ("ann", "bob"):  # each user's size history ends at the tokens they hold
        held = len(vocab.tokens_of(user)) - (len([e for e in a if e[0] == "grow"]) - len([e for e in a if e[0] == "prune"])) * (user == "ann")
        assert size_history(store.db, user)[-1][1] == held
    store.close()


def test_a_rolled_back_save_is_written_again(tokenizer, tmp_path):
    store = Store(tmp_path / "chat.db")
    vocab = ElasticVocab(tokenizer, fast_cfg())
    vocab.observe("Remember: Oriel")
    with store.transaction() as db:
        save_vocab(db, vocab)
    vocab.observe("Remember: Quillmere")
    with pytest.raises(RuntimeError), store.transaction() as db:
        save_vocab(db, vocab)
        raise RuntimeError("the turn failed after the vocabulary was written")
    vocab.observe("Oriel again")
    with store.transaction() as db:
        save_vocab(db, vocab)
    again = ElasticVocab(tokenizer, fast_cfg())
    load_vocab(store.db, again)
    assert state(again) == state(vocab)
    assert [e["text"] for e in read_events(store.db)] == [" Quillmere", " Oriel"]


def test_rows_saved_for_another_model_are_rebuilt(tiny_cfg, tokenizer, tmp_path, caplog):
    store = Store(tmp_path / "chat.db")
    vocab = ElasticVocab(tokenizer, fast_cfg(), tiny_model(tiny_cfg))
    vocab.observe("Remember: Oriel Vantastad")
    with store.transaction() as db:
        save_vocab(db, vocab)
    other_cfg = replace(tiny_cfg.model, tiny=replace(tiny_cfg.model.tiny, seed=1))
    other = ElasticVocab(tokenizer, fast_cfg(), Controller.from_config(other_cfg).model)
    with caplog.at_level(logging.WARNING):
        load_vocab(store.db, other)
    assert "another model" in caplog.text
    matrix = embedding_matrix(other.model)
    for t in other.tokens:  # the start rule, lifted off the first piece (vocab/rows.py)
        assert torch.allclose(matrix[t.id], matrix[t.pieces[0]] * (1 + FIRST_LIFT))
    assert state(other)[0] == state(vocab)[0]


def test_load_refuses_another_tokenizer(tokenizer, tmp_path):
    store = Store(tmp_path / "chat.db")
    vocab = ElasticVocab(tokenizer, fast_cfg())
    vocab.observe("Remember: Oriel")
    with store.transaction() as db:
        save_vocab(db, vocab)
    gpt2_like = AutoTokenizer.from_pretrained(ROOT / "data" / "models" / "SmolLM2-135M-Instruct.Q4_1")
    gpt2_like.add_tokens(["<extra>"])
    with pytest.raises(VocabError, match="base ids"):
        load_vocab(store.db, ElasticVocab(gpt2_like, fast_cfg()))


def test_a_database_from_before_per_user_tokens_is_migrated(tokenizer, tmp_path, monkeypatch):
    """Schema N-1 had one set of tokens for all users: each token goes to the user whose grow
    made it, a prune event to the user whose token it pruned, and a token no one grew is dropped."""
    path = tmp_path / "old.db"
    with monkeypatch.context() as m:
        m.setattr(schema, "SCHEMA_VERSION", SCHEMA_VERSION - 1)
        old = Store(path)
        assert old.schema_version == SCHEMA_VERSION - 1
    made = ElasticVocab(tokenizer, fast_cfg())
    made.grow([" Oriel", " Vantastad", " Quillmere"])
    strengths = {" Oriel": 3.0, " Vantastad": 1.0, " Quillmere": 2.5}
    with old.transaction() as db:
        db["vocab_tokens"].insert_all(
            {"id": t.id, "text": t.text, "pieces": json.dumps(list(t.pieces)), "expansion": json.dumps(list(t.expansion)),
             "level": t.level, "strength": strengths[t.text], "touched": 4, "uses": 2, "born": 1, "row": None}
            for t in made.tokens
        )
        db["vocab_events"].insert_all(
            {"time": 0.0, "step": step, "turn_id": None, "user": user, "kind": kind, "token_id": 0, "text": text, "pieces": "[]",
             "level": 1, "strength": 1.0}
            for step, user, kind, text in [
                (1, "ann", "grow", " Oriel"),
                (2, "bob", "grow", " Quillmere"),
                (3, "ann", "prune", " Quillmere"),  # ann's message pruned bob's token (the shared vocabulary)
                (4, "carol", "grow", " Quillmere"),
            ]
        )
        db["vocab_candidates"].insert({"key": " Brannoch", "count": 1.0, "touched": 4}, pk="key")
        meta = {"step": 5, "base_size": made.base_size, "fingerprint": "", "save_seq": 3}
        db["vocab_meta"].insert_all([{"key": k, "value": json.dumps(v)} for k, v in meta.items()], pk="key")
    old.close()
    store = Store(path)
    assert store.schema_version == SCHEMA_VERSION
    assert [(e["user"], e["kind"], e["text"]) for e in read_events(store.db)][1] == ("bob", "prune", " Quillmere")
    vocab = ElasticVocab(tokenizer, fast_cfg())
    load_vocab(store.db, vocab)
    assert [(t.id - vocab.base_size, t.text) for t in vocab.tokens] == [(0, " Oriel"), (1, " Quillmere")]  # compact again
    assert {user: [t.text for t in vocab.tokens_of(user)] for user in vocab.users} == {
        "ann": [" Oriel"], "bob": [], "carol": [" Quillmere"]}
    assert all(u.step == 5 and not u.candidates for u in vocab.users.values())
    assert vocab.strength(vocab.tokens[1], "carol") == pytest.approx(2.5 * vocab.cfg.decay)  # touched at step 4, now 5
    assert vocab.encode("Oriel met Quillmere", user="carol")[-1] == vocab.tokens[1].id
    with store.transaction() as db:
        save_vocab(db, vocab)
    again = ElasticVocab(tokenizer, fast_cfg())
    load_vocab(store.db, again)
    assert state(again) == state(vocab)
    store.close()
