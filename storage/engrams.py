"""Memoria's engrams in SQLite: each user's rows and counters (tables engrams, engram_counters).

A row holds one engram: its vector as a float32 blob and its co-fire links as a blob of
(partner id int64, count int32) pairs. A save writes only the rows the user's `changes`
name, plus the counters row, whose `save_seq` is the save's version; when the stored
version is not the one the user's engrams were saved or loaded as (the transaction that
held the last save rolled back, or they never came from this database), it rewrites all
of the user's rows instead.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np

from changes import Changes
from memory.engram_state import ENGRAMS, LINK_DTYPE, EngramCounters, EngramRows, EngramState
from memory.memoria import Memoria

from .store import Database, user_row_id

_CHUNK = 4096  # engrams per batch of rows: a full save stays vectorised without copying every vector at once


def stored_version(db: Database, user: str) -> int:
    """The save number of the user's engrams in `db` (0 if none were saved)."""
    row = db.execute(
        "SELECT c.save_seq FROM engram_counters c JOIN users u ON u.id = c.user_id WHERE u.name = ?", [user]
    ).fetchone()
    return row[0] if row else 0


def engrams_stale(db: Database, memoria: Memoria, user: str) -> bool:
    """Whether `db` holds another save of the user's engrams than `memoria` has (another process saved since)."""
    state = memoria.state(user)
    return (state.changes if state is not None else Changes()).stale(stored_version(db, user))


def save_engrams(db: Database, memoria: Memoria, user: str) -> int:
    """Write the user's changes since the last save; call inside `Store.transaction()`.

    Returns: the number of engram rows written or deleted.
    """
    state = memoria.state(user)
    if state is None:
        return 0
    changes = state.changes
    user_id = user_row_id(db, user)
    row = db.execute("SELECT save_seq FROM engram_counters WHERE user_id = ?", [user_id]).fetchone()
    stored = row[0] if row else 0
    if changes.rewrites(ENGRAMS, stored):
        db.execute("DELETE FROM engrams WHERE user_id = ?", [user_id])
        removed: list[int] = []
        slots = state.live_slots()
    else:
        removed = sorted(changes.removed[ENGRAMS])
        slots = state.slots(sorted(changes.changed[ENGRAMS]))
    if removed:
        db.conn.executemany("DELETE FROM engrams WHERE user_id = ? AND id = ?", [(user_id, i) for i in removed])
    db.conn.executemany(
        "INSERT OR REPLACE INTO engrams (user_id, id, type, expires, born, fire_count, turn, text, vector, links) "
        "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        _rows(state, user_id, slots),
    )
    version = max(stored, changes.version) + 1
    c = state.counters
    db.execute(
        "INSERT OR REPLACE INTO engram_counters (user_id, next_id, step, hidden_size, save_seq, vector_kind) "
        "VALUES (?, ?, ?, ?, ?, ?)",
        [user_id, c.next_id, c.step, c.hidden_size, version, c.vector_kind],
    )
    changes.saved(version)
    return len(removed) + len(slots)


def _rows(state: EngramState, user_id: int, slots: np.ndarray) -> Iterator[tuple]:
    """`engrams` rows of `slots`, built a chunk at a time."""
    for start in range(0, len(slots), _CHUNK):
        rows = state.rows(slots[start : start + _CHUNK])
        vectors = rows.vectors.astype("<f4")
        columns = zip(
            rows.ids.tolist(), rows.types.tolist(), rows.expires.tolist(), rows.born.tolist(), rows.fires.tolist(),
            rows.turns.tolist(), rows.texts, rows.links,
        )
        for k, (engram_id, kind, expires, born, fires, turn, text, links) in enumerate(columns):
            yield (user_id, engram_id, kind, expires, born, fires, None if turn < 0 else turn, text,
                   vectors[k].tobytes(), links.tobytes())


def load_engrams(db: Database, memoria: Memoria, user: str) -> None:
    """Replace the user's engrams in `memoria` with those saved in `db` (none if never saved)."""
    found = db.execute("SELECT id FROM users WHERE name = ?", [user]).fetchone()
    counters = found and db.execute(
        "SELECT next_id, step, hidden_size, save_seq, vector_kind FROM engram_counters WHERE user_id = ?", [found[0]]
    ).fetchone()
    if not counters:
        memoria.load(user, None)
        return
    next_id, step, hidden_size, version, vector_kind = counters
    records = db.execute(
        "SELECT id, type, expires, born, fire_count, turn, text, vector, links FROM engrams WHERE user_id = ? ORDER BY id",
        [found[0]],
    ).fetchall()
    rows = EngramRows(
        ids=np.array([r[0] for r in records], np.int64),
        types=np.array([r[1] for r in records], np.uint8),
        expires=np.array([r[2] for r in records], np.float64),
        born=np.array([r[3] for r in records], np.int64),
        fires=np.array([r[4] for r in records], np.int64),
        turns=np.array([-1 if r[5] is None else r[5] for r in records], np.int64),
        texts=[r[6] for r in records],
        vectors=np.frombuffer(b"".join(r[7] for r in records), "<f4").reshape(len(records), hidden_size),
        links=[np.frombuffer(r[8], LINK_DTYPE) for r in records],
    )
    memoria.load(user, EngramCounters(next_id, step, hidden_size, version, vector_kind), rows)
