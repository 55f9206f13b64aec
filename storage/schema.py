"""The database's schema: every table, created by numbered migrations.

The schema is versioned with SQLite's `user_version`: `MIGRATIONS[i]` takes a database
from version i to i+1. Store runs each one inside a transaction of its own, so a crash
during a migration leaves the old schema intact. A migration, once released, never
changes: a new table or column is a new migration at the end.
"""

from __future__ import annotations

import json
from collections.abc import Callable

import sqlite_utils


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
    """Memoria's engrams (memory/memoria.py, storage/engrams.py) and its per-user counters."""
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
    """Each user's neural-memory fast weights (memory/chat_memory.py, storage/neural.py), one snapshot per user."""
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
    """The elastic vocabulary (vocab/elastic.py, storage/vocab.py): added tokens, growth candidates, events, counters."""
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
    """Every write to a user's neural memory (memory/chat_memory.py): what was said, what
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


def _per_user_vocab(db: sqlite_utils.Database) -> None:
    """Added tokens per user (vocab/users.py): each user's turn counter, the tokens they hold
    with their strength, and their growth counts; a token's row stays in vocab_tokens, once.

    A token of an older database goes to the user whose grow event made it (the last grow
    of its text), with the strength it had, and every user with events starts at the
    vocabulary's step. A prune event is put under the user whose token it pruned (it was
    under the user whose message pruned it). Growth counts belonged to no one and are dropped.
    """
    db["vocab_users"].create({"user": str, "step": int}, pk="user", not_null={"step"})  # step: the user's turns
    db["vocab_holdings"].create(
        # strength: its value at the user's step `touched`; born: the user's step when they grew it
        {"user": str, "token_id": int, "strength": float, "touched": int, "uses": int, "born": int},
        pk=("user", "token_id"),
        not_null={"strength", "touched", "uses", "born"},
    )
    db["vocab_candidates"].drop()
    db["vocab_candidates"].create(
        {"user": str, "key": str, "count": float, "touched": int},  # count at the user's step `touched`
        pk=("user", "key"),
        not_null={"count", "touched"},
    )
    row = db.execute("SELECT value FROM vocab_meta WHERE key = 'step'").fetchone()
    step = json.loads(row[0]) if row else 0
    grower: dict[str, str] = {}  # text -> the user whose grow made the token now in the lexicon
    users: set[str] = set()
    for event_id, user, kind, text in db.execute("SELECT id, user, kind, text FROM vocab_events ORDER BY id").fetchall():
        if kind == "grow":
            grower[text] = user
        elif text in grower:
            owner = grower.pop(text)
            if owner != user:
                db.execute("UPDATE vocab_events SET user = ? WHERE id = ?", [owner, event_id])
            user = owner
        users.add(user)
    tokens = db.execute("SELECT id, text, strength, touched, uses, born FROM vocab_tokens").fetchall()
    db["vocab_holdings"].insert_all(
        {"user": grower[text], "token_id": i, "strength": s, "touched": t, "uses": n, "born": b}
        for i, text, s, t, n, b in tokens if text in grower
    )
    db["vocab_users"].insert_all({"user": u, "step": step} for u in sorted(users))
    for column in ("strength", "touched", "uses", "born"):
        db.execute(f"ALTER TABLE vocab_tokens DROP COLUMN {column}")


MIGRATIONS: list[Callable[[sqlite_utils.Database], None]] = [
    _migrate_to_1,
    _create_engram_tables,
    _create_neural_memory_table,
    _create_vocab_tables,
    _create_neural_writes_table,
    _add_engram_vector_kind,
    _per_user_vocab,
]
SCHEMA_VERSION = len(MIGRATIONS)


def user_version(db: sqlite_utils.Database) -> int:
    """The schema version `db` is at (0: empty)."""
    return db.execute("PRAGMA user_version").fetchone()[0]


def migrate(db: sqlite_utils.Database, target: int) -> None:
    """Run migration `target` (version target - 1 -> target); call inside a transaction."""
    MIGRATIONS[target - 1](db)
    db.execute(f"PRAGMA user_version = {target}")
