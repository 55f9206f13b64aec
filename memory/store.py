"""SQLite persistence for everything that must survive a restart.

One file, opened through sqlite-utils in WAL mode so the app can read while a
turn is being written. The schema is versioned with SQLite's `user_version`;
`MIGRATIONS[i]` takes a database from version i to i+1 inside one transaction,
so a crash during a migration leaves the old schema intact.

A turn is written by `Store.transaction()`: everything a turn changes (the turn
row, and in later parts engrams, vocabulary events and memory weights) commits
together or not at all.
"""

from __future__ import annotations

import contextlib
import json
import sqlite3
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import sqlite_utils


class StoreError(RuntimeError):
    """The database cannot be used; the message says what to do."""


def _migrate_to_1(db: sqlite_utils.Database) -> None:
    db["users"].create(
        {"id": int, "name": str, "created_at": float},
        pk="id",
        not_null={"name", "created_at"},
    )
    db["users"].create_index(["name"], unique=True)
    db["conversations"].create(
        {"id": int, "user_id": int, "title": str, "created_at": float},
        pk="id",
        foreign_keys=[("user_id", "users", "id")],
        not_null={"user_id", "created_at"},
    )
    db["conversations"].create_index(["user_id"])
    db["turns"].create(
        {
            "id": int,
            "conversation_id": int,
            "user_text": str,
            "reply": str,
            "created_at": float,
            "meta": str,  # JSON: notes shown to the user, timings, what memory contributed
        },
        pk="id",
        foreign_keys=[("conversation_id", "conversations", "id")],
        not_null={"conversation_id", "user_text", "reply", "created_at"},
    )
    db["turns"].create_index(["conversation_id"])


def _create_engram_tables(db: sqlite_utils.Database) -> None:
    """Memoria's engrams (memory/memoria.py) and its per-user counters."""
    db["engrams"].create(
        {
            "user_id": int,
            "id": int,  # per user, in creation order, never reused
            "type": int,  # 1 working, 2 short-term, 3 long-term
            # lifespan = expires - engram_counters.step, so aging every engram writes no row
            "expires": float,
            "born": int,  # the user's step when added; age = step - born
            "fire_count": int,
            "turn": int,  # turns.id in chat; not a foreign key, training steps use it too
            "text": str,
            "vector": bytes,  # float32 little-endian, hidden_size values
            "links": bytes,  # co-fire links: (partner id int64, count int32) little-endian pairs
        },
        pk=("user_id", "id"),
        foreign_keys=[("user_id", "users", "id")],
        not_null={"user_id", "id", "type", "expires", "born", "fire_count", "vector", "links"},
    )
    db["engram_counters"].create(
        {
            "user_id": int,
            "next_id": int,
            "step": int,  # adjust calls so far
            "hidden_size": int,
            "save_seq": int,  # bumped by every save; a mismatch means a save was rolled back
        },
        pk="user_id",
        foreign_keys=[("user_id", "users", "id")],
        not_null={"next_id", "step", "hidden_size", "save_seq"},
    )


def _create_neural_memory_table(db: sqlite_utils.Database) -> None:
    """Each user's neural-memory fast weights (memory/neural.py), one snapshot per user."""
    db["neural_memory"].create(
        {
            "user_id": int,
            "rule": str,  # "g" or "p": a snapshot only loads into a memory with the same rule
            "tag": str,  # which trained slow weights wrote it; other weights cannot read it
            "writes": int,  # writes the snapshot holds
            "weights": bytes,  # torch.save of the fast weights (dict of float32 tensors)
            "updated_at": float,
        },
        pk="user_id",
        foreign_keys=[("user_id", "users", "id")],
        not_null={"rule", "tag", "writes", "weights", "updated_at"},
    )


def _create_vocab_tables(db: sqlite_utils.Database) -> None:
    """The elastic vocabulary (vocab/persist.py): added tokens, growth candidates, events, counters."""
    db["vocab_tokens"].create(
        {
            "id": int,  # current token id (base_size + rank); renumbered when tokens are pruned
            "text": str,
            "pieces": str,  # JSON list of the ids it is built from
            "expansion": str,  # JSON list of the base ids it stands for
            "level": int,
            "strength": float,  # value at step `touched`; it decays from there
            "touched": int,
            "uses": int,
            "born": int,
            "row": bytes,  # float32 embedding row; NULL when saved without a model
        },
        pk="id",
        not_null={"text", "pieces", "expansion", "level", "strength", "touched", "uses", "born"},
    )
    db["vocab_candidates"].create(
        {"key": str, "count": float, "touched": int},  # count at step `touched`
        pk="key",
        not_null={"count", "touched"},
    )
    db["vocab_events"].create(
        {
            "id": int,
            "time": float,
            "step": int,  # the vocabulary's turn counter
            "turn_id": int,  # turns.id in chat; not a foreign key, benchmarks log events too
            "user": str,
            "kind": str,  # "grow" or "prune"
            "token_id": int,
            "text": str,
            "pieces": str,  # JSON list of the texts of its pieces
            "level": int,
            "strength": float,
        },
        pk="id",
        not_null={"time", "step", "user", "kind", "token_id", "text", "pieces", "level", "strength"},
    )
    db["vocab_events"].create_index(["step"])
    db["vocab_meta"].create({"key": str, "value": str}, pk="key", not_null={"value"})  # JSON values


def _create_neural_writes_table(db: sqlite_utils.Database) -> None:
    """Every write to a user's neural memory (memory/neural_chat.py): what was said, what
    the value pointed at, and the key and value themselves, so that a correction can
    supersede a write, a forgotten write can be taken out by replaying the others, and
    long-term memories can be replayed."""
    db["neural_writes"].create(
        {
            "user_id": int,
            "id": int,  # per user, in write order
            "turn": int,  # turns.id in chat; not a foreign key, imports and benchmarks write too
            "engram": int,  # the Memoria engram of the same sentence, if any
            "text": str,
            "value": str,  # the words the value points at most
            "beta": bytes,  # float32 per memory head
            "key": bytes,  # float32 write key
            "vector": bytes,  # float32 value
            "superseded_by": int,  # id of the later write that overwrote it (a correction)
            "forgotten": int,  # 1 once the user asked to forget it; it is no longer in the memory
            "time": float,
        },
        pk=("user_id", "id"),
        foreign_keys=[("user_id", "users", "id")],
        not_null={"user_id", "id", "text", "value", "beta", "key", "vector", "forgotten", "time"},
    )


def _add_engram_vector_kind(db: sqlite_utils.Database) -> None:
    """What made each user's engram vectors, so a reload made another way re-embeds them."""
    db["engram_counters"].add_column("vector_kind", str)  # NULL for rows saved before: unknown


MIGRATIONS: list[Callable[[sqlite_utils.Database], None]] = [
    _migrate_to_1,
    _create_engram_tables,
    _create_neural_memory_table,
    _create_vocab_tables,
    _create_neural_writes_table,
    _add_engram_vector_kind,
]
SCHEMA_VERSION = len(MIGRATIONS)


@dataclass(frozen=True)
class Turn:
    """One exchange: what the user said and what the bot replied."""

    id: int
    conversation_id: int
    user_text: str
    reply: str
    created_at: float
    meta: str = "{}"  # JSON: notes, timings, what memory contributed


class Store:
    """The chatbot's SQLite database.

    Args:
        path: the database file; its folder is created if missing.
        busy_timeout_s: how long a write waits for another process's lock.
    """

    def __init__(self, path: str | Path, *, busy_timeout_s: float = 5.0) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            conn = sqlite3.connect(
                self.path, timeout=busy_timeout_s, check_same_thread=False, isolation_level=None
            )
            self.db = sqlite_utils.Database(conn)
            self.db.execute("PRAGMA foreign_keys = ON")
            self.db.enable_wal()
            self._migrate()
        except sqlite3.DatabaseError as exc:
            raise self._explain(exc) from None

    def _explain(self, exc: sqlite3.DatabaseError) -> StoreError:
        text = str(exc)
        if "locked" in text or "busy" in text:
            return StoreError(
                f"database {self.path} is locked by another process; stop the other chatbot "
                "using it or pass a different --db"
            )
        if "not a database" in text or "malformed" in text:
            return StoreError(
                f"database {self.path} is corrupt ({text}); move it aside to keep it and start "
                "with a new file, or pass a different --db"
            )
        return StoreError(f"database {self.path}: {text}")

    def _migrate(self) -> None:
        version = self.db.execute("PRAGMA user_version").fetchone()[0]
        if version > SCHEMA_VERSION:
            raise StoreError(
                f"database {self.path} has schema version {version}, newer than this program's "
                f"{SCHEMA_VERSION}; update the program"
            )
        for target in range(version + 1, SCHEMA_VERSION + 1):
            with self.transaction():
                MIGRATIONS[target - 1](self.db)
                self.db.execute(f"PRAGMA user_version = {target}")

    @property
    def schema_version(self) -> int:
        return self.db.execute("PRAGMA user_version").fetchone()[0]

    @contextlib.contextmanager
    def transaction(self) -> Iterator[sqlite_utils.Database]:
        """Everything written inside commits together, or nothing does.

        BEGIN IMMEDIATE takes the write lock up front, so a second process
        waits (up to busy_timeout_s) instead of failing halfway through a turn.
        """
        try:
            self.db.execute("BEGIN IMMEDIATE")
        except sqlite3.DatabaseError as exc:
            raise self._explain(exc) from None
        try:
            yield self.db
        except BaseException:
            self.db.execute("ROLLBACK")
            raise
        try:
            self.db.execute("COMMIT")
        except sqlite3.DatabaseError as exc:
            self.db.execute("ROLLBACK")
            raise self._explain(exc) from None

    def user_id(self, name: str) -> int:
        """The id of user `name`, created on first use."""
        row = self.db.execute("SELECT id FROM users WHERE name = ?", [name]).fetchone()
        if row:
            return row[0]
        with self.transaction() as db:
            return db["users"].insert({"name": name, "created_at": time.time()}).last_pk

    def current_conversation(self, user: str) -> int:
        """The user's newest conversation, started if they have none."""
        uid = self.user_id(user)
        row = self.db.execute(
            "SELECT id FROM conversations WHERE user_id = ? ORDER BY id DESC LIMIT 1", [uid]
        ).fetchone()
        return row[0] if row else self.new_conversation(user)

    def new_conversation(self, user: str, title: str = "") -> int:
        uid = self.user_id(user)
        with self.transaction() as db:
            return (
                db["conversations"]
                .insert({"user_id": uid, "title": title, "created_at": time.time()})
                .last_pk
            )

    def add_turn(self, db: sqlite_utils.Database, conversation_id: int, user_text: str, reply: str, meta: str = "{}") -> int:
        """Insert a turn; call inside `transaction()` together with the turn's other writes."""
        return (
            db["turns"]
            .insert(
                {
                    "conversation_id": conversation_id,
                    "user_text": user_text,
                    "reply": reply,
                    "created_at": time.time(),
                    "meta": meta,
                }
            )
            .last_pk
        )

    def turns(self, conversation_id: int, limit: int | None = None) -> list[Turn]:
        """The conversation's turns, oldest first; with `limit`, only the newest `limit`."""
        sql = "SELECT id, conversation_id, user_text, reply, created_at, COALESCE(meta, '{}') FROM turns WHERE conversation_id = ? ORDER BY id DESC"
        params: list = [conversation_id]
        if limit is not None:
            sql += " LIMIT ?"
            params.append(limit)
        rows = self.db.execute(sql, params).fetchall()
        return [Turn(*row) for row in reversed(rows)]

    def said(self, user: str) -> list[str]:
        """Everything `user` said, in every conversation, oldest first."""
        rows = self.db.execute(
            "SELECT t.user_text FROM turns t JOIN conversations c ON c.id = t.conversation_id JOIN users u ON u.id = c.user_id "
            "WHERE u.name = ? ORDER BY t.id", [user],
        ).fetchall()
        return [text for (text,) in rows]

    def recent_meta(self, user: str, limit: int) -> list[dict]:
        """The stored meta (JSON) of `user`'s newest `limit` turns, newest first."""
        rows = self.db.execute(
            "SELECT t.meta FROM turns t JOIN conversations c ON c.id = t.conversation_id JOIN users u ON u.id = c.user_id "
            "WHERE u.name = ? ORDER BY t.id DESC LIMIT ?", [user, limit],
        ).fetchall()
        return [json.loads(meta or "{}") for (meta,) in rows]

    def close(self) -> None:
        self.db.close()
