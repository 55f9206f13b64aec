"""The elastic vocabulary in SQLite: tokens (with their embedding rows), candidates, events.

  vocab_tokens      one row per added token: id, text, pieces and expansion (JSON ids),
                    level, strength at step `touched`, uses, born, embedding row (float32 blob)
  vocab_candidates  words and spans counted towards growth: count at step `touched`
  vocab_events      every grow and prune: time, step, turn_id, user, kind, token, pieces, level, strength
  vocab_meta        step, base_size, the model fingerprint the rows belong to, and save_seq
`save_vocab` writes only what the vocabulary's `changes` name, inside the caller's
transaction, and bumps save_seq; when the stored save_seq is not the one the vocabulary
last saved or loaded (that save was rolled back with its turn), it rewrites everything,
with that save's events.
"""

from __future__ import annotations

import json
from typing import Any

import numpy as np

from vocab.elastic import CANDIDATES, TOKENS, Candidate, ElasticVocab, SavedVocab
from vocab.lexicon import AddedToken

from .store import Database


def save_vocab(db: Database, vocab: ElasticVocab, *, turn_id: int | None = None) -> None:
    """Write the vocabulary's unsaved changes; call inside `Store.transaction()`.

    Args:
        turn_id: the turn row this turn's events belong to, if any.
    """
    changes = vocab.changes
    row = db.execute("SELECT value FROM vocab_meta WHERE key = 'save_seq'").fetchone()
    stored = json.loads(row[0]) if row else 0
    events = changes.to_append(stored)
    if changes.rewrites(TOKENS, stored):
        db.execute("DELETE FROM vocab_tokens")
        tokens = vocab.tokens
    else:
        tokens = [vocab.lexicon[i] for i in sorted(changes.changed[TOKENS])]
    if tokens:
        rows = vocab.token_rows([t.id for t in tokens])
        db["vocab_tokens"].upsert_all([_token_record(t, None if rows is None else rows[k]) for k, t in enumerate(tokens)], pk="id")
    if changes.rewrites(CANDIDATES, stored):
        db.execute("DELETE FROM vocab_candidates")
        keys = sorted(vocab.candidates)
    else:
        keys = sorted(changes.changed[CANDIDATES])
        for key in changes.removed[CANDIDATES]:
            db.execute("DELETE FROM vocab_candidates WHERE key = ?", [key])
    if keys:
        db["vocab_candidates"].upsert_all(
            [{"key": k, "count": vocab.candidates[k].count, "touched": vocab.candidates[k].touched} for k in keys],
            pk="key",
        )
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


def _token_record(t: AddedToken, row: np.ndarray | None) -> dict[str, Any]:
    return {
        "id": t.id,
        "text": t.text,
        "pieces": json.dumps(list(t.pieces)),
        "expansion": json.dumps(list(t.expansion)),
        "level": t.level,
        "strength": t.strength,
        "touched": t.touched,
        "uses": t.uses,
        "born": t.born,
        "row": None if row is None else row.tobytes(),
    }


def load_vocab(db: Database, vocab: ElasticVocab) -> None:
    """Replace `vocab`'s state (and its model's added rows) by what `db` holds (ElasticVocab.restore)."""
    meta = {k: json.loads(v) for k, v in db.execute("SELECT key, value FROM vocab_meta").fetchall()}
    records = db.execute(
        "SELECT id, text, pieces, expansion, level, strength, touched, uses, born, row FROM vocab_tokens ORDER BY id"
    ).fetchall()
    tokens = [
        AddedToken(
            id=r[0],
            text=r[1],
            pieces=tuple(json.loads(r[2])),
            expansion=tuple(json.loads(r[3])),
            level=r[4],
            strength=r[5],
            touched=r[6],
            uses=r[7],
            born=r[8],
        )
        for r in records
    ]
    candidates = {k: Candidate(c, t) for k, c, t in db.execute("SELECT key, count, touched FROM vocab_candidates").fetchall()}
    vocab.restore(SavedVocab(
        base_size=meta["base_size"] if meta else None,
        step=meta.get("step", 0),
        fingerprint=meta.get("fingerprint"),
        tokens=tokens,
        # a blob that is not whole float32 values is no row: the rows are rebuilt
        rows=[None if r[9] is None or len(r[9]) % 4 else np.frombuffer(r[9], dtype=np.float32).copy() for r in records],
        candidates=candidates,
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


def size_history(db: Database, base_size: int) -> list[tuple[int, int]]:
    """(step, vocabulary size after that step) at every step that grew or pruned, oldest first."""
    rows = db.execute(
        "SELECT step, SUM(CASE kind WHEN 'grow' THEN 1 ELSE -1 END) FROM vocab_events GROUP BY step ORDER BY step"
    ).fetchall()
    size, out = base_size, []
    for step, delta in rows:
        size += delta
        out.append((step, size))
    return out
