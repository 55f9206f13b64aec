"""The chatbot's SQLite database: the connection, transactions, users, conversations and turns.

One file, opened through sqlite-utils in WAL mode so the app can read while a turn is
being written, and brought to the current schema (storage/schema.py) when opened. Each
thread has a connection of its own: the app's worker threads run turns, history and
memory operations at once, and a transaction never spans two of them.

A turn is written by `Store.transaction()`: everything a turn changes (the turn row,
engrams, vocabulary, neural memory) commits together or not at all.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import sqlite3
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import sqlite_utils

from . import schema

Database = sqlite_utils.Database  # what `Store.transaction()` yields to the storage functions


class StoreError(RuntimeError):
    """The database cannot be used; the message says what to do."""


@dataclass(frozen=True)
class Turn:
    """One exchange: what the user said and what the bot replied."""

    id: int
    conversation_id: int
    user_text: str
    reply: str
    created_at: float
    meta: str = "{}"  # JSON: notes, timings, what memory contributed


def user_row_id(db: Database, name: str) -> int:
    """users.id of `name`, inserted if missing (inside the caller's transaction)."""
    row = db.execute("SELECT id FROM users WHERE name = ?", [name]).fetchone()
    if row:
        return row[0]
    return db["users"].insert({"name": name, "created_at": time.time()}).last_pk


class Store:
    """The chatbot's SQLite database.

    Args:
        path: the database file; its folder is created if missing.
        busy_timeout_s: how long a write waits for another process's lock.
    """

    # A user's turn may run this long in another process (a long reply on a busy machine) before one here gives up.
    USER_WAIT_S = 300.0

    def __init__(self, path: str | Path, *, busy_timeout_s: float = 5.0) -> None:
        self.path = Path(path)
        self.busy_timeout_s = busy_timeout_s
        self._local = threading.local()
        self._connections: list[sqlite3.Connection] = []
        self._connections_lock = threading.Lock()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            self.db.enable_wal()
            self._migrate()
        except sqlite3.DatabaseError as exc:
            self.close()
            raise self._explain(exc) from None

    @property
    def db(self) -> Database:
        """This thread's connection (opened on first use)."""
        db = getattr(self._local, "db", None)
        if db is None:
            conn = sqlite3.connect(self.path, timeout=self.busy_timeout_s, check_same_thread=False, isolation_level=None)
            with self._connections_lock:
                self._connections.append(conn)
            db = self._local.db = sqlite_utils.Database(conn)
            db.execute("PRAGMA foreign_keys = ON")
        return db

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
        version = schema.user_version(self.db)
        if version > schema.SCHEMA_VERSION:
            raise StoreError(
                f"database {self.path} has schema version {version}, newer than this program's "
                f"{schema.SCHEMA_VERSION}; update the program"
            )
        for target in range(version + 1, schema.SCHEMA_VERSION + 1):
            with self.transaction():
                schema.migrate(self.db, target)

    @property
    def schema_version(self) -> int:
        return schema.user_version(self.db)

    @contextlib.contextmanager
    def transaction(self) -> Iterator[Database]:
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
            return user_row_id(db, name)

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

    def add_turn(self, db: Database, conversation_id: int, user_text: str, reply: str, meta: str = "{}") -> int:
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

    def turn_count(self, conversation_id: int) -> int:
        return self.db.execute("SELECT COUNT(*) FROM turns WHERE conversation_id = ?", [conversation_id]).fetchone()[0]

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

    @contextlib.contextmanager
    def user_lock(self, user: str, *, timeout_s: float | None = None) -> Iterator[None]:
        """Hold `user` against every other process and Store on this file (the app and the
        command line): one loads, changes and saves the user's memories while the other waits,
        so neither overwrites what the other saved. Different users never wait for each other."""
        locks = self.path.with_name(self.path.name + ".locks")
        locks.mkdir(exist_ok=True)
        fd = os.open(locks / (hashlib.sha256(user.encode()).hexdigest()[:32] + ".lock"), os.O_RDWR | os.O_CREAT, 0o600)
        try:
            deadline = time.monotonic() + (self.USER_WAIT_S if timeout_s is None else timeout_s)
            while True:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    if time.monotonic() > deadline:
                        raise StoreError(f"user {user!r} is busy in another process using {self.path}; try again") from None
                    time.sleep(0.05)
            yield
        finally:
            os.close(fd)  # releases the lock

    def close(self) -> None:
        """Close every thread's connection."""
        with self._connections_lock:
            for conn in self._connections:
                conn.close()
            self._connections.clear()
        self._local = threading.local()
