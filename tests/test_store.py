import sqlite3
import subprocess
import sys
import textwrap

import pytest

from memory import store as store_module
from memory.store import SCHEMA_VERSION, Store, StoreError


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
        from memory.store import Store
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

    monkeypatch.setattr(store_module, "MIGRATIONS", [*store_module.MIGRATIONS, add_column])
    monkeypatch.setattr(store_module, "SCHEMA_VERSION", len(store_module.MIGRATIONS))
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

    monkeypatch.setattr(store_module, "MIGRATIONS", [*store_module.MIGRATIONS, broken])
    monkeypatch.setattr(store_module, "SCHEMA_VERSION", len(store_module.MIGRATIONS))
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
