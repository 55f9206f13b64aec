"""ChatMemory in SQLite: each user's fast-weight snapshot (neural_memory) and write log (neural_writes).

The snapshot is a `torch.save` of the fast weights, the interface's recurrent state and
the replay count, tagged with the rule and the trained weights that wrote it; its
`updated_at` is the save's version. A write's key, value and beta are float32 blobs.
A save writes the snapshot and the writes the user's `changes` name; when the log was
relearned, or the stored version is not the one this copy matches, it rewrites the
whole log.
"""

from __future__ import annotations

import io
import time

import numpy as np
import torch

from memory.chat_memory import WRITES, ChatMemory, WriteRecord

from .store import Database


def _blob(a: np.ndarray) -> bytes:
    return np.asarray(a, dtype="<f4").tobytes()


def _array(b: bytes) -> np.ndarray:
    return np.frombuffer(b, dtype="<f4").copy()


def stored_version(db: Database, user_id: int) -> float:
    """The version of the user's snapshot in `db` (0: none)."""
    row = db.execute("SELECT updated_at FROM neural_memory WHERE user_id = ?", [user_id]).fetchone()
    return row[0] if row else 0.0


def neural_stale(db: Database, memory: ChatMemory, user: str, user_id: int) -> bool:
    """Whether `db` holds another save of the user's neural memory than `memory` has (another process saved since)."""
    changes = memory.changes(user)
    return (changes.version if changes is not None else 0.0) != stored_version(db, user_id)


def save_neural(db: Database, memory: ChatMemory, user: str, user_id: int) -> None:
    """Write the user's fast weights and changed writes; call inside `Store.transaction()`."""
    changes, snapshot = memory.changes(user), memory.snapshot(user)
    if changes is None or snapshot is None:
        return
    writes = memory.writes(user)
    stored = stored_version(db, user_id)
    buf = io.BytesIO()
    torch.save(snapshot, buf)
    # a wall-clock version, as updated_at; strictly later than this copy's last one
    version = max(time.time(), changes.version + 1e-6)
    db["neural_memory"].upsert(
        {"user_id": user_id, "rule": memory.rule, "tag": memory.tag, "writes": len(writes),
         "weights": buf.getvalue(), "updated_at": version},
        pk="user_id",
    )
    if changes.rewrites(WRITES, stored):
        db.execute("DELETE FROM neural_writes WHERE user_id = ?", [user_id])
        ids = range(len(writes))
    else:
        ids = sorted(changes.changed[WRITES])
    rows = [_row(user_id, writes[i]) for i in ids]
    if rows:
        db["neural_writes"].upsert_all(rows, pk=("user_id", "id"))
    changes.saved(version)


def _row(user_id: int, w: WriteRecord) -> dict:
    return {
        "user_id": user_id, "id": w.id, "turn": w.turn, "engram": w.engram, "text": w.text, "value": w.value,
        "beta": _blob(w.beta), "key": _blob(w.key), "vector": _blob(w.vector),
        "superseded_by": w.superseded_by, "forgotten": int(w.forgotten), "time": w.time,
    }


def load_neural(db: Database, memory: ChatMemory, user: str, user_id: int) -> None:
    """Replace the user's state in `memory` with the saved one (empty if none).

    A memory saved under other trained weights is relearned (ChatMemory.restore).
    """
    rows = db.execute(
        "SELECT id, turn, engram, text, value, beta, key, vector, superseded_by, forgotten, time "
        "FROM neural_writes WHERE user_id = ? ORDER BY id", [user_id],
    ).fetchall()
    writes = [
        WriteRecord(r[0], r[1], r[2], r[3], r[4], _array(r[5]), _array(r[6]), _array(r[7]), r[8], bool(r[9]), r[10])
        for r in rows
    ]
    saved = db.execute("SELECT rule, tag, weights, updated_at FROM neural_memory WHERE user_id = ?", [user_id]).fetchone()
    if saved is None:
        memory.restore(user, writes)
        return
    rule, tag, weights, version = saved
    snapshot = torch.load(io.BytesIO(weights), weights_only=True) if memory.fits(rule, tag) else None
    memory.restore(user, writes, snapshot, version=version, written_by=tag)
