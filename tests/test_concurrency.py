"""Turns and memory operations from many threads at once (issue 21, item 1).

The app runs every request on a worker thread of its own: several users chat while the
same and other users read their history and memories, start conversations, export and
import. Each test runs real turns on the tiny model in this process, then checks the
database itself (a connection of its own, plain SQL) against what the callers were told:
every completed turn stored exactly once, with its neural write and its engram, nothing
of one user in another's rows, and a failed save leaving nothing of its turn. The last
tests hold the elastic vocabulary, which all users' turns change and save, to the same:
a turn's save while another user's turn grows a word, a failed turn's words, and which
turn a grow event is stored with.
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
import traceback
from collections.abc import Callable
from pathlib import Path

import pytest

from chatbot import Agent, load_config
from chatbot.memory_file import EngramEntry, MemoryFile, WriteEntry
from storage import Store

from .conftest import TINY, make_agent

# One word per user that no other user ever says (and no word contains another).
WORDS = {"ann": "Zorbanth", "bob": "Quillmere", "cyd": "Vantastad", "dee": "Kestrelby", "imp": "Marrowfen"}


class Agents:
    """Opens agents on the tiny model and closes each once, even when the test fails (an agent
    left open keeps its grown vocabulary rows in the session's shared model)."""

    def __init__(self, tmp_path: Path, controller) -> None:
        self.tmp_path, self.controller, self.open = tmp_path, controller, []

    def product(self, db: str = "chat.db") -> Agent:
        """The tiny config as it is: the elastic vocabulary on, shared by every user, as in the app.
        One at a time: it grows the shared model's rows."""
        return self._keep(Agent(load_config(TINY), self.controller, Store(self.tmp_path / db)))

    def plain(self, db: str = "chat.db") -> Agent:
        """tests/conftest.py's agent: the vocabulary off, so any number share the model."""
        return self._keep(make_agent(self.tmp_path, self.controller, db=db))

    def _keep(self, agent: Agent) -> Agent:
        self.open.append(agent)
        return agent

    def close(self, agent: Agent) -> None:
        if agent in self.open:
            self.open.remove(agent)
            agent.close()


@pytest.fixture
def agents(tmp_path, tiny_controller):
    kept = Agents(tmp_path, tiny_controller)
    yield kept
    for agent in reversed(list(kept.open)):
        kept.close(agent)


def statement(user: str, i: int, tag: str = "") -> str:
    return f"{WORDS[user]}{tag} keeps {i + 2} blue parrots in the garden."


class Workers:
    """Threads whose exceptions are kept, with their tracebacks, for the test to assert on."""

    def __init__(self) -> None:
        self.errors: list[str] = []
        self.threads: list[threading.Thread] = []
        self.lock = threading.Lock()

    def start(self, target: Callable, *args) -> None:
        def run() -> None:
            try:
                target(*args)
            except BaseException:  # noqa: BLE001 (reported by the test)
                with self.lock:
                    self.errors.append(f"{threading.current_thread().name}: {traceback.format_exc()}")

        thread = threading.Thread(target=run, name=f"{target.__name__}{args}", daemon=True)
        self.threads.append(thread)
        thread.start()

    def join(self, timeout: float = 240) -> None:
        deadline = time.monotonic() + timeout
        for thread in self.threads:
            thread.join(max(0.0, deadline - time.monotonic()))
        alive = [t.name for t in self.threads if t.is_alive()]
        assert not alive, f"threads still running after {timeout} s: {alive}"


def stored_turns(db: Path, user: str) -> list[tuple[int, str, str]]:
    """(turn id, user text, meta) of every turn of `user`, in every conversation, oldest first."""
    with sqlite3.connect(db) as conn:
        return conn.execute(
            "SELECT t.id, t.user_text, t.meta FROM turns t JOIN conversations c ON c.id = t.conversation_id "
            "JOIN users u ON u.id = c.user_id WHERE u.name = ? ORDER BY t.id", [user],
        ).fetchall()


def stored_writes(db: Path, user: str) -> list[tuple[int, int | None, int | None, str, int | None, int]]:
    """(id, turn, engram, text, superseded_by, forgotten) of the user's neural writes, in write order."""
    with sqlite3.connect(db) as conn:
        return conn.execute(
            "SELECT w.id, w.turn, w.engram, w.text, w.superseded_by, w.forgotten FROM neural_writes w "
            "JOIN users u ON u.id = w.user_id WHERE u.name = ? ORDER BY w.id", [user],
        ).fetchall()


def stored_engrams(db: Path, user: str) -> list[tuple[int, int | None, str | None]]:
    """(id, turn, text) of the user's engrams, by id."""
    with sqlite3.connect(db) as conn:
        return conn.execute(
            "SELECT e.id, e.turn, e.text FROM engrams e JOIN users u ON u.id = e.user_id WHERE u.name = ? ORDER BY e.id",
            [user],
        ).fetchall()


def integrity(db: Path) -> str:
    with sqlite3.connect(db) as conn:
        return conn.execute("PRAGMA integrity_check").fetchone()[0]


def assert_turns_consistent(db: Path, user: str, said: list[str]) -> list[tuple[int, str, str]]:
    """`said` (one statement each) is stored exactly once, in order, and every turn has
    exactly one neural write and one engram of its sentence, and nothing else does."""
    turns = stored_turns(db, user)
    assert [text for _, text, _ in turns] == said, user
    ids = [tid for tid, _, _ in turns]
    text_of = {tid: text for tid, text, _ in turns}
    writes = stored_writes(db, user)
    assert [w[0] for w in writes] == list(range(len(writes))), f"{user}: write ids have gaps"
    assert sorted(w[1] for w in writes) == ids, f"{user}: writes' turns {[w[1] for w in writes]} are not the turns {ids}"
    assert all(text_of[turn] == text for _, turn, _, text, _, _ in writes), user
    assert [w[1] for w in writes] == ids, f"{user}: writes are not in the order of their turns"
    engrams = stored_engrams(db, user)
    assert [e[1] for e in engrams] == ids, f"{user}: engrams' turns {[e[1] for e in engrams]} are not the turns {ids}"
    assert all(text_of[turn] == text for _, turn, text in engrams), user
    engram_of_turn = {turn: eid for eid, turn, _ in engrams}
    assert all(engram == engram_of_turn[turn] for _, turn, engram, _, _, _ in writes), f"{user}: a write names another engram"
    return turns


def assert_isolated(db: Path, users: list[str]) -> None:
    """No user's turns (text and meta: notes, recalls, reminded engrams) or memories hold another user's word."""
    for user in users:
        others = [WORDS[u] for u in WORDS if u != user]
        rows = [text + meta for _, text, meta in stored_turns(db, user)]
        rows += [w[3] for w in stored_writes(db, user)] + [e[2] or "" for e in stored_engrams(db, user)]
        leaked = [(word, row) for row in rows for word in others if word in row]
        assert not leaked, f"{user} holds another user's words: {leaked[:3]}"


def assert_memory_matches_store(agent: Agent, db: Path, user: str) -> None:
    """What the process holds of the user is what the database holds."""
    view = agent.memory_view(user)
    assert [(w.id, w.turn, w.engram, w.text) for w in view.writes] == [w[:4] for w in stored_writes(db, user)], user
    assert [(e.id, e.turn, e.text) for e in view.engrams] == stored_engrams(db, user), user


# ---- (a) many users chat while the same and other users read, export and start conversations ----------------


def test_users_chat_while_others_read_export_and_start_conversations(agents):
    agent = agents.product()
    db = agent.db_path
    chatters, turns_each = ["ann", "bob", "cyd"], 10
    done: dict[str, list[str]] = {u: [] for u in chatters}  # messages whose chat call returned
    stop = threading.Event()
    ops = ("history", "memory_view", "export_memory", "new_conversation", "vocabulary_view")
    calls = dict.fromkeys(ops, 0)
    workers = Workers()

    def chat(user: str) -> None:
        for i in range(turns_each):
            text = statement(user, i)
            assert isinstance(agent.chat(user, text), str)
            done[user].append(text)

    def read(seed: int) -> None:
        users = chatters + ["dee"]  # dee never chats: reads and new conversations of a user with no turns
        k = seed
        while not stop.is_set():
            op, user = ops[k % len(ops)], users[(k // len(ops)) % len(users)]
            if op == "history":
                for turn in agent.history(user):
                    assert WORDS[user] in turn.user_text, (user, turn.user_text)
            elif op == "memory_view":
                view = agent.memory_view(user)
                assert all(WORDS[user] in w.text for w in view.writes), user
                assert all(WORDS[user] in (e.text or "") for e in view.engrams), user
            elif op == "export_memory":
                exported = agent.export_memory(user)
                assert exported.user == user and all(WORDS[user] in w.text for w in exported.writes), user
            elif op == "new_conversation":
                agent.new_conversation(user)
            else:
                agent.vocabulary_view(user)
            calls[op] += 1
            k += 1
            time.sleep(0.005)

    started = time.monotonic()
    for user in chatters:
        workers.start(chat, user)
    for seed in (0, 7):
        workers.start(read, seed)
    for thread in workers.threads[: len(chatters)]:
        thread.join(200)
    stop.set()
    workers.join()
    elapsed = time.monotonic() - started
    assert not workers.errors, "\n".join(workers.errors)
    assert all(calls.values()), calls

    assert integrity(db) == "ok"
    for user in chatters:
        assert done[user] == [statement(user, i) for i in range(turns_each)]
        assert_turns_consistent(db, user, done[user])
        assert_memory_matches_store(agent, db, user)
    assert stored_turns(db, "dee") == [] and stored_writes(db, "dee") == []
    assert_isolated(db, chatters + ["dee"])
    agents.close(agent)
    fresh = agents.product()  # the next start reads the same, and every user has a conversation to chat in
    for user in chatters:
        assert_memory_matches_store(fresh, db, user)
        with sqlite3.connect(db) as conn:
            assert conn.execute("SELECT COUNT(*) FROM conversations c JOIN users u ON u.id = c.user_id WHERE u.name = ?",
                                [user]).fetchone()[0] >= 1
    fresh.chat("ann", statement("ann", 99))
    assert_turns_consistent(db, "ann", done["ann"] + [statement("ann", 99)])
    print(f"{sum(len(v) for v in done.values())} turns and {calls} in {elapsed:.1f} s")


# ---- (b) one user from two threads at once ---------------------------------------------------------------------


@pytest.mark.parametrize("stores", ["one agent", "two agents on one file"])
def test_one_user_from_two_threads_loses_nothing(agents, stores):
    if stores == "one agent":
        first = second = agents.product()
    else:  # the app and the command line: a Store and a lock file each (the vocabulary off: one model between them)
        first, second = agents.plain(), agents.plain()
    db = first.db_path
    turns_each = 5
    sent: dict[str, list[str]] = {"A": [], "B": []}
    workers = Workers()

    def chat(agent: Agent, tag: str) -> None:
        for i in range(turns_each):
            text = statement("ann", i, tag)
            agent.chat("ann", text)
            sent[tag].append(text)

    workers.start(chat, first, "A")
    workers.start(chat, second, "B")
    workers.join()
    assert not workers.errors, "\n".join(workers.errors)

    assert integrity(db) == "ok"
    said = [text for _, text, _ in stored_turns(db, "ann")]
    assert len(said) == 2 * turns_each and sorted(said) == sorted(sent["A"] + sent["B"])
    for tag in ("A", "B"):  # each thread's turns in the order it sent them
        assert [t for t in said if t.startswith(WORDS["ann"] + tag)] == sent[tag]
    assert_turns_consistent(db, "ann", said)  # one write and one engram per turn, in turn order
    for agent in {first, second}:
        assert_memory_matches_store(agent, db, "ann")
    fresh = agents.plain()
    assert_memory_matches_store(fresh, db, "ann")
    view = fresh.memory_view("ann")
    assert [w.text for w in view.writes] == said and view.stats["live"] == len(said)


# ---- (c) an import for one user while another chats --------------------------------------------------------------


def test_an_import_for_one_user_while_another_chats(agents):
    agent = agents.product()
    db = agent.db_path
    facts = [statement("imp", i) for i in range(48)]  # a long import: two chunks of featurizing
    file = MemoryFile(
        user="imp",
        engrams=[EngramEntry(i, "shortterm", text, None, 400.0, 0, 0, {}) for i, text in enumerate(facts)],
        writes=[WriteEntry(i, text, "", None, None, False) for i, text in enumerate(facts)],
    )
    agent.chat("imp", statement("imp", 100))  # imp had memories before: the import replaces them
    chatted: list[str] = []
    imports: list[tuple[int, int]] = []
    chatting = threading.Event()
    chatting.set()
    workers = Workers()

    def importer() -> None:
        while chatting.is_set() or not imports:
            imports.append(agent.import_memory("imp", file))

    def chat() -> None:
        try:
            for i in range(5):
                text = statement("bob", i)
                agent.chat("bob", text)
                chatted.append(text)
        finally:
            chatting.clear()

    workers.start(importer)
    workers.start(chat)
    workers.join()
    assert not workers.errors, "\n".join(workers.errors)
    assert imports and set(imports) == {(len(facts), len(facts))}

    assert integrity(db) == "ok"
    assert chatted == [statement("bob", i) for i in range(5)]
    assert_turns_consistent(db, "bob", chatted)
    assert [w[3] for w in stored_writes(db, "imp")] == facts
    assert [e[2] for e in stored_engrams(db, "imp")] == facts
    assert_isolated(db, ["bob", "imp"])
    fresh = agents.plain()
    for user in ("bob", "imp"):
        assert_memory_matches_store(fresh, db, user)
    assert_memory_matches_store(agent, db, "imp")
    agent.chat("bob", statement("bob", 5))  # and both go on
    agent.chat("imp", statement("imp", 101))
    assert_turns_consistent(db, "bob", chatted + [statement("bob", 5)])


# ---- (d) a save that fails inside its transaction ---------------------------------------------------------------

TURN_TABLES = ["turns", "engrams", "engram_counters", "neural_memory", "neural_writes", "vocab_tokens",
               "vocab_candidates", "vocab_events", "vocab_meta"]


def _snapshot(db: Path) -> dict[str, list]:
    """Every row of every table a turn writes."""
    with sqlite3.connect(db) as conn:
        return {t: conn.execute(f"SELECT * FROM {t} ORDER BY 1, 2").fetchall() for t in TURN_TABLES}


def _failing(monkeypatch, target: str) -> Callable[[], None]:
    """Make storage function `target` do its writes and then raise; returns the undo."""
    import importlib

    module_name, name = target.rsplit(".", 1)
    module = importlib.import_module(module_name)
    original = getattr(module, name)

    def fails(*args, **kwargs):
        original(*args, **kwargs)  # its rows are written inside the turn's transaction, then
        raise RuntimeError("disk on fire")

    monkeypatch.setattr(module, name, fails)
    return lambda: monkeypatch.setattr(module, name, original)


FAILED = "Failwort keeps seven cats in the cellar."


@pytest.mark.parametrize("target", ["chatbot.turn.save_vocab", "chatbot.memories.save_engrams", "chatbot.memories.save_neural"])
def test_a_save_that_fails_raises_stores_nothing_and_the_next_turn_reloads(agents, monkeypatch, target):
    agent = agents.product()
    db = agent.db_path
    first, after = statement("ann", 0), statement("ann", 1)
    agent.chat("ann", first)
    before = _snapshot(db)

    undo = _failing(monkeypatch, target)
    with pytest.raises(RuntimeError, match="disk on fire"):
        agent.chat("ann", FAILED)
    assert _snapshot(db) == before  # nothing of the failed turn: no turn, engram, write, snapshot or vocabulary row
    assert integrity(db) == "ok"
    undo()

    agent.chat("ann", after)  # reloads ann from the store, and works
    assert_turns_consistent(db, "ann", [first, after])
    assert_memory_matches_store(agent, db, "ann")
    view = agent.memory_view("ann")
    assert all("Failwort" not in w.text for w in view.writes) and all("Failwort" not in (e.text or "") for e in view.engrams)
    with sqlite3.connect(db) as conn:
        assert "Failwort" not in json.dumps(conn.execute("SELECT * FROM turns").fetchall())
    fresh = agents.plain()
    assert_memory_matches_store(fresh, db, "ann")


@pytest.mark.xfail(strict=True, reason="known: the shared vocabulary keeps a failed turn's growth in memory and the next "
                   "save writes it (rolling it back would drop other users' turns in flight)")
def test_a_failed_turn_leaves_nothing_in_the_vocabulary_after_the_next_turn(agents, monkeypatch):
    agent = agents.product()
    db = agent.db_path
    agent.chat("ann", statement("ann", 0))
    undo = _failing(monkeypatch, "chatbot.memories.save_neural")
    with pytest.raises(RuntimeError, match="disk on fire"):
        agent.chat("ann", FAILED + " Failwort, Failwort!")  # said three times: it grows a token
    undo()
    agent.chat("ann", statement("ann", 1))
    with sqlite3.connect(db) as conn:
        vocabulary = {t: conn.execute(f"SELECT * FROM {t}").fetchall() for t in ("vocab_tokens", "vocab_candidates", "vocab_events")}
    leaked = {t: [r for r in rows if "Failwort" in repr(r)] for t, rows in vocabulary.items()}
    assert not any(leaked.values()), f"the failed turn's words were saved with the next turn: {leaked}"


# ---- (e) the shared vocabulary while users chat at once -------------------------------------------------------


def test_vocabulary_events_belong_to_the_turns_and_users_that_made_them(agents):
    agent = agents.product()
    db = agent.db_path
    workers = Workers()

    def chat(user: str) -> None:
        for i in range(6):
            word = f"{WORDS[user]}{chr(ord('a') + i)}x"  # a new word each turn, said twice: it grows a token
            agent.chat(user, f"I met {word} and {word} in the garden.")

    for user in ("ann", "bob"):
        workers.start(chat, user)
    workers.join()
    assert not workers.errors, "\n".join(workers.errors)
    with sqlite3.connect(db) as conn:
        events = conn.execute(
            "SELECT e.user, e.kind, e.text, e.turn_id, u.name, t.user_text FROM vocab_events e LEFT JOIN turns t ON t.id = e.turn_id "
            "LEFT JOIN conversations c ON c.id = t.conversation_id LEFT JOIN users u ON u.id = c.user_id ORDER BY e.id"
        ).fetchall()
    grown = [e for e in events if e[1] == "grow"]
    assert len(grown) >= 12
    wrong = [e for e in grown if e[4] != e[0] or e[2].strip() not in (e[5] or "")]
    assert not wrong, f"{len(wrong)} of {len(grown)} grow events name another user's turn: {wrong[:3]}"


@pytest.mark.parametrize("pause", ["initial_rows", "fit_rows"])
def test_a_save_while_another_user_grows_a_word_fails_nothing_and_keeps_the_row(agents, monkeypatch, pause):
    """ann's turn saves while bob's turn is inside the vocabulary's growth of a word, held
    there: before the new token's row exists ("initial_rows") or before it is fitted
    ("fit_rows"). ann's turn must not fail, and every stored row must be the model's."""
    import numpy as np

    import chatbot.turn
    import vocab.elastic

    agent = agents.product()
    db = agent.db_path
    agent.chat("ann", statement("ann", 0))
    agent.chat("bob", statement("bob", 0))
    ann_at_save, bob_growing, ann_saved = threading.Event(), threading.Event(), threading.Event()
    save_vocab, hold = chatbot.turn.save_vocab, getattr(vocab.elastic, pause)

    def ann_saves_while_bob_grows(*args, **kwargs):
        if threading.current_thread().name.startswith("ann"):
            ann_at_save.set()  # ann's reply is done: the model is free for bob's turn
            bob_growing.wait(30)
            try:
                return save_vocab(*args, **kwargs)
            finally:
                ann_saved.set()
        return save_vocab(*args, **kwargs)

    def bob_held_in_growth(*args, **kwargs):
        # growth runs on the model's thread; once ann's turn is at its save, any growth is bob's
        if ann_at_save.is_set():
            bob_growing.set()
            ann_saved.wait(3)  # a save that waits for the growth to end finds it ended in 3 s
        return hold(*args, **kwargs)

    monkeypatch.setattr(chatbot.turn, "save_vocab", ann_saves_while_bob_grows)
    monkeypatch.setattr(vocab.elastic, pause, bob_held_in_growth)
    errors: list[str] = []

    def chat(user: str, text: str) -> None:
        try:
            agent.chat(user, text)
        except BaseException:  # noqa: BLE001 (reported below)
            errors.append(f"{user}: {traceback.format_exc()}")

    ann = threading.Thread(target=chat, args=("ann", statement("ann", 1)), name="ann-turn")
    bob = threading.Thread(target=chat, args=("bob", "I met Quillmereax and Quillmereax in the garden."), name="bob-turn")
    ann.start()
    assert ann_at_save.wait(60)
    bob.start()
    ann.join(60)
    bob.join(60)
    assert bob_growing.is_set() and ann_saved.is_set()  # the moment this test is about came
    assert not errors, "\n".join(errors)
    assert [t for _, t, _ in stored_turns(db, "ann")] == [statement("ann", 0), statement("ann", 1)]
    assert [t for _, t, _ in stored_turns(db, "bob")][-1] == "I met Quillmereax and Quillmereax in the garden."
    with sqlite3.connect(db) as conn:
        saved = conn.execute("SELECT id, text, row FROM vocab_tokens ORDER BY id").fetchall()
    model = agent.memories.vocab.token_rows([i for i, _, _ in saved])
    assert any(text == " Quillmereax" for _, text, _ in saved)
    stale = [text for k, (_, text, row) in enumerate(saved) if not np.array_equal(np.frombuffer(row, np.float32), model[k])]
    assert not stale, f"the stored rows of {stale} are not the model's (a restart would read other rows)"
