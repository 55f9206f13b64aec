"""One user's engrams in growable arrays: Memoria's remind / fire / adjust / forget on them.

Slots (rows) hold engrams and are reused once an engram is forgotten; ids are per user, in
creation order, never reused. Each engram keeps its strongest `max_links` co-fire links by
partner id. `EngramRows` is the plain-column form storage writes and reads back.
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from changes import Changes
from text import mentioned_words

# Sort keys pack (count, id) into one int64: the count above bit 40, the id below.
_ID_BITS = 40
_ID_MASK = (1 << _ID_BITS) - 1
LINK_DTYPE = np.dtype([("id", "<i8"), ("count", "<i4")])  # one co-fire link: partner id, count
_FREE = 0  # type of a slot that holds no engram
ENGRAMS = "engrams"  # the Changes part that holds a user's engram rows, by id


class EngramType(enum.IntEnum):
    """Engram types, with the reference's values (its NULL = 0 is a forgotten engram)."""

    WORKING = 1
    SHORTTERM = 2
    LONGTERM = 3


@dataclass(frozen=True)
class Engram:
    """One engram, as a person (or the Memory tab) reads it."""

    id: int  # unique per user, in creation order, never reused
    type: EngramType
    text: str | None  # the text span its vector came from
    turn: int | None  # the turn it was added in
    lifespan: float  # adjust calls it survives unless reminded; forgotten at <= 0
    age: int  # adjust calls since it was added
    fire_count: int  # times it fired, as working memory or reminded
    links: dict[int, int]  # partner engram id -> co-fire count


@dataclass
class EngramRows:
    """Engrams as plain columns, in id order: what storage writes and reads back.

    ids, born, fires [N] int64; types [N] EngramType values; expires [N] float64
    (lifespan = expires - step); turns [N] int64, -1 for none; texts [N]; vectors [N, H]
    float32; links [N] arrays of LINK_DTYPE (partner id, co-fire count).
    """

    ids: np.ndarray
    types: np.ndarray
    expires: np.ndarray
    born: np.ndarray
    fires: np.ndarray
    turns: np.ndarray
    texts: list[str | None]
    vectors: np.ndarray
    links: list[np.ndarray]


@dataclass(frozen=True)
class EngramCounters:
    """A user's counters beside the engram rows."""

    next_id: int  # the id the next engram gets
    step: int  # adjust calls so far
    hidden_size: int
    version: float  # the save the state matches (Changes.version)
    vector_kind: str | None  # what made the vectors; None: saved before kinds were kept


class EngramState:
    """One user's engrams in growable arrays; a slot (row) is reused once its engram is forgotten."""

    def __init__(self, hidden_size: int, max_links: int, capacity: int = 64, vector_kind: str | None = None) -> None:
        self.hidden_size = hidden_size
        self.vectors = np.zeros((capacity, hidden_size), np.float32)
        self.ids = np.full(capacity, -1, np.int64)
        self.types = np.zeros(capacity, np.uint8)
        # lifespan = expires - step: "every engram loses 1" is step += 1 and leaves rows unchanged
        self.expires = np.full(capacity, np.inf)
        self.born = np.zeros(capacity, np.int64)  # age = step - born
        self.fires = np.zeros(capacity, np.int64)
        self.turns = np.full(capacity, -1, np.int64)
        # links by partner id: a forgotten partner's id maps to slot -1, so stale
        # entries are skipped without scanning other engrams' rows when one dies
        self.link_ids = np.full((capacity, max_links), -1, np.int64)
        self.link_counts = np.zeros((capacity, max_links), np.int32)
        self.texts: list[str | None] = [None] * capacity
        self.id_to_slot = np.full(capacity, -1, np.int64)
        self.free = list(range(capacity - 1, -1, -1))  # pop() hands out low slots first
        self.working: list[int] = []  # ids, oldest first
        self.shortterm: list[int] = []  # ids, oldest first: the overflow order
        self.next_id = 0
        self.step = 0  # adjust calls so far
        self.changes = Changes()  # part ENGRAMS: ids changed or forgotten since the last save
        self.vector_kind = vector_kind  # how the vectors were made; None = unknown (saved before kinds were kept)
        self.mentions: dict[str, set[int]] = {}  # word -> ids of the engrams whose text holds it

    def index_text(self, engram_id: int, text: str | None, *, remove: bool = False) -> None:
        """Add (or remove) an engram's words in `mentions`."""
        for word in mentioned_words(text):
            if remove:
                holders = self.mentions.get(word)
                if holders is not None:
                    holders.discard(engram_id)
                    if not holders:
                        del self.mentions[word]
            else:
                self.mentions.setdefault(word, set()).add(engram_id)

    @property
    def capacity(self) -> int:
        return len(self.ids)

    @property
    def size(self) -> int:
        """Number of live engrams."""
        return int((self.types != _FREE).sum())

    def _grow(self, capacity: int) -> None:
        old = self.capacity

        def grown(a: np.ndarray, fill: float) -> np.ndarray:
            b = np.full((capacity, *a.shape[1:]), fill, a.dtype)
            b[:old] = a
            return b

        self.vectors = grown(self.vectors, 0)
        self.ids = grown(self.ids, -1)
        self.types = grown(self.types, _FREE)
        self.expires = grown(self.expires, np.inf)
        self.born = grown(self.born, 0)
        self.fires = grown(self.fires, 0)
        self.turns = grown(self.turns, -1)
        self.link_ids = grown(self.link_ids, -1)
        self.link_counts = grown(self.link_counts, 0)
        self.texts.extend([None] * (capacity - old))
        self.free = list(range(capacity - 1, old - 1, -1)) + self.free

    def _reserve_ids(self, count: int) -> None:
        needed = self.next_id + count
        if needed > len(self.id_to_slot):
            table = np.full(max(needed, 2 * len(self.id_to_slot)), -1, np.int64)
            table[: len(self.id_to_slot)] = self.id_to_slot
            self.id_to_slot = table

    def slots(self, ids: Sequence[int] | np.ndarray) -> np.ndarray:
        """Slots of live engram ids; ValueError names any id that is not one."""
        ids = np.asarray(ids, np.int64)
        known = (ids >= 0) & (ids < self.next_id)
        slots = np.full(ids.shape, -1, np.int64)
        slots[known] = self.id_to_slot[ids[known]]
        if (slots < 0).any():
            raise ValueError(f"engram ids {sorted(set(ids[slots < 0].tolist()))} are not this user's live engrams")
        return slots

    def live_slots(self) -> np.ndarray:
        """Slots of all engrams, in id order."""
        slots = np.flatnonzero(self.types != _FREE)
        return slots[np.argsort(self.ids[slots])]

    def add(self, vectors: np.ndarray, texts: Sequence[str | None], turn: int | None, initial_lifespan: float) -> np.ndarray:
        """Store [W, H] vectors as working memory; returns their ids [W]."""
        count = len(vectors)
        if count > len(self.free):
            self._grow(max(2 * self.capacity, self.capacity + count - len(self.free)))
        self._reserve_ids(count)
        slots = np.array([self.free.pop() for _ in range(count)], np.int64)
        ids = np.arange(self.next_id, self.next_id + count, dtype=np.int64)
        self.next_id += count
        self.vectors[slots] = vectors
        self.ids[slots] = ids
        self.types[slots] = EngramType.WORKING
        self.expires[slots] = self.step + initial_lifespan
        self.born[slots] = self.step
        self.fires[slots] = 0
        self.turns[slots] = -1 if turn is None else turn
        self.link_ids[slots] = -1
        self.link_counts[slots] = 0
        for slot, engram_id, text in zip(slots.tolist(), ids.tolist(), texts):
            self.texts[slot] = text
            self.index_text(engram_id, text)
        self.id_to_slot[ids] = slots
        id_list = ids.tolist()
        self.working.extend(id_list)
        self.changes.change(ENGRAMS, id_list)
        return ids

    def _distances(self, working: np.ndarray, candidates: np.ndarray) -> np.ndarray:
        """Mean squared L2 distance from each candidate slot to the working-memory slots.

        Uses mean_w |w - c|^2 = |c|^2 - 2 c . mean(w) + mean |w|^2, so the cost is
        one [C, H] matrix-vector product instead of a [W, C, H] difference.
        """
        w = self.vectors[working].astype(np.float64)
        c = self.vectors[candidates].astype(np.float64)
        return np.einsum("ch,ch->c", c, c) - 2.0 * (c @ w.mean(axis=0)) + np.einsum("wh,wh->", w, w) / len(w)

    def _linked(self, rows: np.ndarray, visited: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
        """Each row's strongest link to a live, unvisited LTM (ties: the oldest).

        Args:
            rows: [P] slots whose links are followed.
            visited: [capacity] bool, or None.
        Returns: ([P] target slots, [P] bool whether the row has such a link).
        """
        partners = self.link_ids[rows]  # [P, K]
        slots = self.id_to_slot[np.maximum(partners, 0)]
        ok = (partners >= 0) & (slots >= 0)
        slots = np.where(ok, slots, 0)
        ok &= self.types[slots] == EngramType.LONGTERM
        if visited is not None:
            ok &= ~visited[slots]
        key = np.where(ok, (self.link_counts[rows].astype(np.int64) << _ID_BITS) | (_ID_MASK - partners), -1)
        best = key.argmax(axis=1)
        picked = np.arange(len(rows))
        return slots[picked, best], key[picked, best] >= 0

    def remind(self, num_reminded_stm: int, ltm_search_depth: int, num_final_ltms: int) -> np.ndarray:
        """Reminded slots [R] (STMs then LTMs, closest first); fires them with the working memory."""
        working = self.id_to_slot[np.asarray(self.working, np.int64)]
        shortterm = self.id_to_slot[np.asarray(self.shortterm, np.int64)]
        if len(working) == 0:
            return np.zeros(0, np.int64)
        reminded_stm = np.zeros(0, np.int64)
        if len(shortterm) and num_reminded_stm > 0:
            order = np.argsort(self._distances(working, shortterm), kind="stable")
            reminded_stm = shortterm[order[:num_reminded_stm]]
        found = np.zeros(0, np.int64)
        if len(reminded_stm) and num_final_ltms > 0:
            targets, linked = self._linked(reminded_stm, None)
            paths = np.unique(targets[linked])
            walked = [paths]
            visited = np.zeros(self.capacity, bool)
            visited[paths] = True
            for _ in range(ltm_search_depth):
                if len(paths) == 0:
                    break
                targets, linked = self._linked(paths, visited)
                # paths that reach the same engram continue identically, so one suffices
                paths = np.unique(targets[linked])
                visited[paths] = True
                walked.append(paths)
            found = np.unique(np.concatenate(walked))
        if len(found):
            found = found[np.argsort(self._distances(working, found), kind="stable")[:num_final_ltms]]
        reminded = np.concatenate([reminded_stm, found])
        self._fire(np.concatenate([working, reminded]))
        return reminded

    def _fire(self, fired: np.ndarray) -> None:
        """Fire distinct slots together: fire counts +1 and every pair's co-fire count +1.

        Each fired engram then keeps its `max_links` strongest links (ties: the
        newer partner), so a row never grows past its preallocated width.
        """
        self.fires[fired] += 1
        self.changes.change(ENGRAMS, self.ids[fired].tolist())
        if len(fired) < 2:
            return
        width = self.link_ids.shape[1]
        fired_ids = self.ids[fired]
        partners = self.link_ids[fired]  # [F, K]
        slots = self.id_to_slot[np.maximum(partners, 0)]
        live = (partners >= 0) & (slots >= 0)
        partners = np.where(live, partners, -1)
        counts = np.where(live, self.link_counts[fired], 0).astype(np.int64)
        match = partners[:, :, None] == fired_ids[None, None, :]  # [F, K, F]
        counts += match.any(axis=2)
        new = ~match.any(axis=1)  # [F, F]: partner not linked yet
        np.fill_diagonal(new, False)
        candidates = np.concatenate([partners, np.where(new, fired_ids[None, :], -1)], axis=1)
        candidate_counts = np.concatenate([counts, new.astype(np.int64)], axis=1)
        key = np.where(candidates >= 0, (candidate_counts << _ID_BITS) | candidates, -1)
        keep = np.argpartition(key, -width, axis=1)[:, -width:]
        kept = np.take_along_axis(key, keep, axis=1) >= 0
        self.link_ids[fired] = np.where(kept, np.take_along_axis(candidates, keep, axis=1), -1)
        self.link_counts[fired] = np.where(kept, np.take_along_axis(candidate_counts, keep, axis=1), 0)

    def adjust(self, slots: np.ndarray, deltas: np.ndarray, stm_capacity: int) -> None:
        """Add deltas to `slots`' lifespans, age everyone by 1, retype, forget the expired."""
        np.add.at(self.expires, slots, deltas)
        self.changes.change(ENGRAMS, self.ids[slots].tolist())
        self.step += 1
        if self.working:
            self.types[self.id_to_slot[np.asarray(self.working, np.int64)]] = EngramType.SHORTTERM
            self.shortterm.extend(self.working)
            self.changes.change(ENGRAMS, self.working)
            self.working = []
        overflow = len(self.shortterm) - stm_capacity
        if overflow > 0:
            moved = self.shortterm[:overflow]
            del self.shortterm[:overflow]
            self.types[self.id_to_slot[np.asarray(moved, np.int64)]] = EngramType.LONGTERM
            self.changes.change(ENGRAMS, moved)
        expired = np.flatnonzero(self.expires <= self.step)
        if len(expired):
            self.forget(expired)

    def forget(self, slots: np.ndarray) -> None:
        """Forget the engrams in `slots`, with their links."""
        ids = self.ids[slots]
        self.id_to_slot[ids] = -1
        self.ids[slots] = -1
        self.types[slots] = _FREE
        self.expires[slots] = np.inf
        self.link_ids[slots] = -1
        self.link_counts[slots] = 0
        for slot, engram_id in zip(slots.tolist(), ids.tolist()):
            self.index_text(engram_id, self.texts[slot], remove=True)
            self.texts[slot] = None
        self.free.extend(slots.tolist())
        gone = set(ids.tolist())
        self.shortterm = [i for i in self.shortterm if i not in gone]
        self.working = [i for i in self.working if i not in gone]
        self.changes.remove(ENGRAMS, gone)

    def links(self, slot: int) -> dict[int, int]:
        """Live links of one slot: partner id -> count, strongest first."""
        partners = self.link_ids[slot]
        live = (partners >= 0) & (self.id_to_slot[np.maximum(partners, 0)] >= 0)
        pairs = sorted(zip(partners[live].tolist(), self.link_counts[slot][live].tolist()), key=lambda p: (-p[1], p[0]))
        return dict(pairs)

    def engram(self, slot: int) -> Engram:
        turn = int(self.turns[slot])
        return Engram(
            id=int(self.ids[slot]),
            type=EngramType(int(self.types[slot])),
            text=self.texts[slot],
            turn=None if turn < 0 else turn,
            lifespan=float(self.expires[slot] - self.step),
            age=int(self.step - self.born[slot]),
            fire_count=int(self.fires[slot]),
            links=self.links(slot),
        )


    @property
    def counters(self) -> EngramCounters:
        return EngramCounters(self.next_id, self.step, self.hidden_size, self.changes.version, self.vector_kind)

    def rows(self, slots: np.ndarray) -> EngramRows:
        """The engrams in `slots` as plain columns; links to forgotten partners are left out."""
        partners = self.link_ids[slots]
        live = (partners >= 0) & (self.id_to_slot[np.maximum(partners, 0)] >= 0)
        links = np.empty(partners.shape, LINK_DTYPE)
        links["id"] = partners
        links["count"] = self.link_counts[slots]
        return EngramRows(
            ids=self.ids[slots], types=self.types[slots], expires=self.expires[slots], born=self.born[slots],
            fires=self.fires[slots], turns=self.turns[slots], texts=[self.texts[s] for s in slots.tolist()],
            vectors=self.vectors[slots], links=[row[keep] for row, keep in zip(links, live)],
        )

    @classmethod
    def from_rows(cls, rows: EngramRows, counters: EngramCounters, max_links: int) -> EngramState:
        """A user's state from rows in id order (links to ids not among them are dropped)."""
        count = len(rows.ids)
        state = cls(counters.hidden_size, max_links, capacity=max(64, count), vector_kind=counters.vector_kind)
        ids = np.asarray(rows.ids, np.int64)
        state.next_id = counters.next_id
        state.step = counters.step
        state.changes = Changes(counters.version)
        state.id_to_slot = np.full(max(counters.next_id, 1), -1, np.int64)
        state.id_to_slot[ids] = np.arange(count)
        state.free = list(range(state.capacity - 1, count - 1, -1))
        state.ids[:count] = ids
        state.types[:count] = rows.types
        state.expires[:count] = rows.expires
        state.born[:count] = rows.born
        state.fires[:count] = rows.fires
        state.turns[:count] = rows.turns
        state.texts[:count] = rows.texts
        for engram_id, text in zip(ids.tolist(), rows.texts):
            state.index_text(engram_id, text)
        if count:
            state.vectors[:count] = rows.vectors
        for slot, links in enumerate(rows.links):
            # partners forgotten after this row was last written are dropped here
            links = links[(links["id"] >= 0) & (links["id"] < len(state.id_to_slot))]
            links = links[state.id_to_slot[links["id"]] >= 0]
            if len(links) > max_links:  # saved under a larger max_links
                order = np.lexsort((-links["id"], -links["count"]))
                links = links[order[:max_links]]
            state.link_ids[slot, : len(links)] = links["id"]
            state.link_counts[slot, : len(links)] = links["count"]
        by_type = {t: ids[state.types[:count] == t].tolist() for t in (EngramType.WORKING, EngramType.SHORTTERM)}
        state.working = by_type[EngramType.WORKING]
        state.shortterm = by_type[EngramType.SHORTTERM]
        return state
