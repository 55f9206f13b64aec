"""The elastic vocabulary in SQLite: tokens (with their embedding rows), who holds them, counts, events.

  vocab_tokens      one row per added token (all users): id, text, pieces and expansion
                    (JSON ids), level, embedding row (float32 blob)
  vocab_holdings    one row per token a user holds: strength at the user's step `touched`, uses, born
  vocab_candidates  each user's words and spans counted towards growth: count at step `touched`
  vocab_users       each user's turn counter (step)
  vocab_events      every grow and prune: time, the user's step, turn_id, user, kind, token, pieces, level, strength
  vocab_meta        step (messages observed, all users), base_size, the model fingerprint the rows belong to, and save_seq
`save_vocab` writes only what the vocabulary's `changes` name, inside the caller's
transaction, and bumps save_seq; when the stored save_seq is not the one the vocabulary
last saved or loaded (that save was rolled back with its turn), it rewrites everything,
with that save's events.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Hashable, Iterable
from typing import Any

import numpy as np

from changes import Changes
from vocab.elastic import CANDIDATES, HOLDINGS, TOKENS, USERS, ElasticVocab
from vocab.lexicon import AddedToken
from vocab.saved import SavedVocab
from vocab.users import Candidate, Holding, UserVocab

from .store import Database


def save_vocab(db: Database, vocab: ElasticVocab, *, turn_id: int | None = None, user: str | None = None) -> None:
    """Write the vocabulary's unsaved changes; call inside `Store.transaction()`, holding the
    model's lock (a turn growing a token adds its id before its row).

    Args:
        turn_id: the turn row this turn's events belong to, if any.
        user: whose turn this is: only that user's grow and prune events are written with it;
            other users' wait for their own turns (None: every pending event).
    """
    changes = vocab.changes
    row = db.execute("SELECT value FROM vocab_meta WHERE key = 'save_seq'").fetchone()
    stored = json.loads(row[0]) if row else 0
    events = [e for e in changes.to_append(stored) if user is None or e.user == user]
    if changes.rewrites(TOKENS, stored):
        db.execute("DELETE FROM vocab_tokens")
        tokens = vocab.tokens
    else:
        tokens = [vocab.lexicon[i] for i in sorted(changes.changed[TOKENS])]
    if tokens:
        rows = vocab.token_rows([t.id for t in tokens])
        db["vocab_tokens"].upsert_all([_token_record(t, None if rows is None else rows[k]) for k, t in enumerate(tokens)], pk="id")
    users = vocab.users

    def holding(key: tuple[str, int]) -> dict[str, Any] | None:
        h = users[key[0]].held.get(key[1]) if key[0] in users else None
        return None if h is None else {"user": key[0], "token_id": key[1], "strength": h.strength, "touched": h.touched,
                                       "uses": h.uses, "born": h.born}

    def candidate(key: tuple[str, str]) -> dict[str, Any] | None:
        c = users[key[0]].candidates.get(key[1]) if key[0] in users else None
        return None if c is None else {"user": key[0], "key": key[1], "count": c.count, "touched": c.touched}

    _save_part(db, changes, stored, HOLDINGS, "vocab_holdings", ("user", "token_id"), holding,
               lambda: [(name, i) for name, u in users.items() for i in u.held])
    _save_part(db, changes, stored, CANDIDATES, "vocab_candidates", ("user", "key"), candidate,
               lambda: [(name, k) for name, u in users.items() for k in u.candidates])
    _save_part(db, changes, stored, USERS, "vocab_users", ("user",),
               lambda name: {"user": name, "step": users[name].step} if name in users else None, lambda: list(users))
    if events:
        db["vocab_events"].insert_all(
            {
                "time": e.time,
                "step": e.step,
                "turn_id": turn_id,
                "user": e.user,
                "kind": e.kind,
                "token_id": e.token_id,
                "text": e.text,
                "pieces": json.dumps(list(e.pieces)),
                "level": e.level,
                "strength": e.strength,
            }
            for e in events
        )
    version = max(stored, changes.version) + 1
    meta = {"step": vocab.step, "base_size": vocab.base_size, "fingerprint": vocab.fingerprint, "save_seq": version}
    db["vocab_meta"].upsert_all([{"key": k, "value": json.dumps(v)} for k, v in meta.items()], pk="key")
    changes.saved(version, events)


def _save_part(db: Database, changes: Changes, stored: float, part: str, table: str, pk: tuple[str, ...],
               record: Callable[[Any], dict[str, Any] | None], every: Callable[[], Iterable[Hashable]]) -> None:
    """Write `part`'s changed rows (all of its rows when it is rewritten whole) and delete its removed ones.

    `record(key)` is the row of a key (None when it is gone); `every()` lists every key.
    """
    if changes.rewrites(part, stored):
        db.execute(f"DELETE FROM {table}")
        keys = list(every())
    else:
        keys = list(changes.changed[part])
        where = " AND ".join(f"{column} = ?" for column in pk)
        for key in changes.removed[part]:
            db.execute(f"DELETE FROM {table} WHERE {where}", list(key) if isinstance(key, tuple) else [key])
    records = [r for r in map(record, sorted(keys)) if r is not None]
    if records:
        db[table].upsert_all(records, pk=pk[0] if len(pk) == 1 else pk)


def _token_record(t: AddedToken, row: np.ndarray | None) -> dict[str, Any]:
    return {
        "id": t.id,
        "text": t.text,
        "pieces": json.dumps(list(t.pieces)),
        "expansion": json.dumps(list(t.expansion)),
        "level": t.level,
        "row": None if row is None else row.tobytes(),
    }


def load_vocab(db: Database, vocab: ElasticVocab) -> None:
    """Replace `vocab`'s state (and its model's added rows) by what `db` holds (ElasticVocab.restore)."""
    meta = {k: json.loads(v) for k, v in db.execute("SELECT key, value FROM vocab_meta").fetchall()}
    records = db.execute("SELECT id, text, pieces, expansion, level, row FROM vocab_tokens ORDER BY id").fetchall()
    tokens = [
        AddedToken(id=r[0], text=r[1], pieces=tuple(json.loads(r[2])), expansion=tuple(json.loads(r[3])), level=r[4])
        for r in records
    ]
    users = {name: UserVocab(step) for name, step in db.execute("SELECT user, step FROM vocab_users").fetchall()}
    for name, i, strength, touched, uses, born in db.execute(
        "SELECT user, token_id, strength, touched, uses, born FROM vocab_holdings"
    ).fetchall():
        users.setdefault(name, UserVocab()).held[i] = Holding(strength, touched, uses, born)
    for name, key, count, touched in db.execute("SELECT user, key, count, touched FROM vocab_candidates").fetchall():
        users.setdefault(name, UserVocab()).candidates[key] = Candidate(count, touched)
    vocab.restore(SavedVocab(
        base_size=meta["base_size"] if meta else None,
        step=meta.get("step", 0),
        fingerprint=meta.get("fingerprint"),
        tokens=tokens,
        # a blob that is not whole float32 values is no row: the rows are rebuilt
        rows=[None if r[5] is None or len(r[5]) % 4 else np.frombuffer(r[5], dtype=np.float32).copy() for r in records],
        users=users,
        version=meta.get("save_seq", 0),
    ))


def read_events(db: Database, *, user: str | None = None, limit: int | None = None) -> list[dict[str, Any]]:
    """Grow and prune events, newest first: all of them, or `user`'s; the newest `limit`."""
    sql = "SELECT time, step, turn_id, user, kind, token_id, text, pieces, level, strength FROM vocab_events"
    params: list[Any] = []
    if user is not None:
        sql += " WHERE user = ?"
        params.append(user)
    sql += " ORDER BY id DESC"
    if limit is not None:
        sql += " LIMIT ?"
        params.append(limit)
    keys = ("time", "step", "turn_id", "user", "kind", "token_id", "text", "pieces", "level", "strength")
    return [dict(zip(keys, row)) | {"pieces": json.loads(row[7])} for row in db.execute(sql, params).fetchall()]


def size_history(db: Database, user: str) -> list[tuple[int, int]]:
    """(the user's step, how many added tokens they held after it) at every step of theirs that grew or pruned, oldest first."""
    rows = db.execute(
        "SELECT step, SUM(CASE kind WHEN 'grow' THEN 1 ELSE -1 END) FROM vocab_events WHERE user = ? GROUP BY step ORDER BY step",
        [user],
    ).fetchall()
    size, out = 0, []
    for step, delta in rows:
        size += delta
        out.append((step, size))
    return out
