"""The elastic vocabulary in SQLite: tokens (with their embedding rows), candidates, events.

The tables are created by a migration in memory/store.py:
  vocab_tokens      one row per added token: id, text, pieces and expansion (JSON ids),
                    level, strength at step `touched`, uses, born, embedding row (float32 blob)
  vocab_candidates  words and spans counted towards growth: count at step `touched`
  vocab_events      every grow and prune: time, step, turn_id, user, kind, token, pieces, level, strength
  vocab_meta        step, base_size, hidden_size and the model fingerprint the rows belong to
`save` writes only what changed since the previous save, inside the caller's transaction.
A counter in vocab_meta tells it when the previous save was rolled back with its turn;
it then rewrites everything, with that save's events.
"""

from __future__ import annotations

import hashlib
import json
import logging
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from transformers import PreTrainedModel

from .lexicon import AddedToken
from .rows import embedding_matrix, initial_rows, resize_rows

if TYPE_CHECKING:
    from .elastic import ElasticVocab

log = logging.getLogger(__name__)


def model_fingerprint(model: PreTrainedModel, base_size: int) -> str:
    """A short hash of some base embedding rows: saved rows only fit the model they came from."""
    matrix = embedding_matrix(model)
    index = torch.linspace(0, base_size - 1, 16).long()
    sample = matrix.detach().index_select(0, index).float().contiguous().numpy()
    return hashlib.sha256(sample.tobytes() + str(tuple(matrix.shape[1:])).encode()).hexdigest()[:16]


def save(db: Any, vocab: ElasticVocab, *, turn_id: int | None = None) -> None:
    """Write the vocabulary's unsaved changes to `db` (a sqlite_utils.Database)."""
    matrix = embedding_matrix(vocab.model) if vocab.model is not None else None
    row = db.execute("SELECT value FROM vocab_meta WHERE key = 'save_seq'").fetchone()
    lost = (json.loads(row[0]) if row else 0) != vocab.save_seq
    events = (vocab.last_saved_events if lost else []) + vocab.unsaved_events
    if vocab.rewrite_all or lost:
        db.execute("DELETE FROM vocab_tokens")
        changed = vocab.tokens
    else:
        changed = [vocab.lexicon[i] for i in sorted(vocab.dirty_tokens)]
    if changed:
        db["vocab_tokens"].upsert_all([_token_record(t, matrix) for t in changed], pk="id")
    if lost:
        db.execute("DELETE FROM vocab_candidates")
    keys = sorted(vocab.candidates) if lost else sorted(vocab.dirty_candidates)
    if keys:
        db["vocab_candidates"].upsert_all(
            [{"key": k, "count": vocab.candidates[k].count, "touched": vocab.candidates[k].touched} for k in keys],
            pk="key",
        )
    for key in vocab.dropped_candidates:
        db.execute("DELETE FROM vocab_candidates WHERE key = ?", [key])
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
    vocab.save_seq += 1
    meta = {"step": vocab.step, "base_size": vocab.base_size, "fingerprint": vocab.fingerprint, "save_seq": vocab.save_seq}
    db["vocab_meta"].upsert_all([{"key": k, "value": json.dumps(v)} for k, v in meta.items()], pk="key")
    vocab.last_saved_events = events
    vocab.unsaved_events = []
    vocab.dirty_tokens.clear()
    vocab.dirty_candidates.clear()
    vocab.dropped_candidates.clear()
    vocab.rewrite_all = False


def _token_record(t: AddedToken, matrix: torch.Tensor | None) -> dict[str, Any]:
    row = None if matrix is None else matrix[t.id].detach().float().contiguous().numpy().tobytes()
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
        "row": row,
    }


def load(db: Any, vocab: ElasticVocab) -> None:
    """Replace `vocab`'s state (and its model's added rows) by what `db` holds.

    Rows saved for a different model (another fingerprint, or none saved) are rebuilt
    from the tokens' pieces with the configured rule, and rewritten on the next save.
    """
    from .elastic import Candidate, VocabError

    meta = {k: json.loads(v) for k, v in db.execute("SELECT key, value FROM vocab_meta").fetchall()}
    if meta and meta["base_size"] != vocab.base_size:
        raise VocabError(
            f"the saved vocabulary was grown over {meta['base_size']} base ids but this model has "
            f"{vocab.base_size}; use the database that belongs to this model (store.path), or a new one"
        )
    cols = "id, text, pieces, expansion, level, strength, touched, uses, born, row"
    records = db.execute(f"SELECT {cols} FROM vocab_tokens ORDER BY id").fetchall()
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
    vocab.lexicon.restore(tokens)
    vocab.step = meta.get("step", 0)
    vocab.save_seq = meta.get("save_seq", 0)
    vocab.candidates = {
        k: Candidate(c, t) for k, c, t in db.execute("SELECT key, count, touched FROM vocab_candidates").fetchall()
    }
    vocab.unsaved_events = []
    vocab.last_saved_events = []
    vocab.dirty_tokens.clear()
    vocab.dirty_candidates.clear()
    vocab.dropped_candidates.clear()
    vocab.rewrite_all = False
    if vocab.model is None:
        return
    matrix = embedding_matrix(vocab.model)
    base = matrix[: vocab.base_size].detach()
    rows = [r[9] for r in records]
    fits = meta.get("fingerprint") == vocab.fingerprint and all(r is not None and len(r) == 4 * base.shape[1] for r in rows)
    if fits and rows:
        added = torch.stack([torch.from_numpy(np.frombuffer(r, dtype=np.float32).copy()) for r in rows])
    elif tokens:
        log.warning("saved vocabulary rows belong to another model; rebuilding %d rows from their pieces", len(tokens))
        work = torch.cat([base.float(), torch.zeros(len(tokens), base.shape[1])])
        for t in tokens:  # in id order, so a token's pieces already have rows
            work[t.id] = initial_rows(work, [t.pieces], vocab.cfg.init)[0]
        added = work[vocab.base_size :]
        vocab.rewrite_all = True  # rewrite every token with its new row on the next save
    else:
        added = None
    resize_rows(vocab.model, keep=torch.arange(vocab.base_size), append=added)


def read_events(db: Any, *, user: str | None = None, limit: int | None = None) -> list[dict[str, Any]]:
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


def size_history(db: Any, base_size: int) -> list[tuple[int, int]]:
    """(step, vocabulary size after that step) at every step that grew or pruned, oldest first."""
    rows = db.execute(
        "SELECT step, SUM(CASE kind WHEN 'grow' THEN 1 ELSE -1 END) FROM vocab_events GROUP BY step ORDER BY step"
    ).fetchall()
    size, out = base_size, []
    for step, delta in rows:
        size += delta
        out.append((step, size))
    return out
