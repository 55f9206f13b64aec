"""Memoria: an engram store with working, short-term and long-term memory.

After Park & Bak, "Memoria: Resolving Fateful Forgetting Problem through
Human-Inspired Memory Architecture" (ICML 2024), whose implementation is the pip
package memoria-pytorch 1.1.0 ("the reference"). This module keeps the
reference's semantics and interface (`Memoria(num_reminded_stm, stm_capacity,
ltm_search_depth, initial_lifespan, num_final_ltms)`, `add_working_memory`,
`remind`, `adjust_lifespan_and_memories`) and adds what a chatbot needs: text
attached to each engram, users kept apart, sparse co-fire links that scale to
100k+ engrams, and persistence in the SQLite store.

An engram is a vector [H] with the text span it came from, the turn and user it
belongs to, its type (WORKING / SHORTTERM / LONGTERM), lifespan, age, fire count
and its co-fire links to other engrams of the same user.

One chat turn (batch size 1; in training a batch of B rows is B users):

    ids = memoria.add_working_memory(vectors[None], user="ann", texts=[spans], turn=7)
    memories, indices = memoria.remind()          # [1, R, H], [1, R] engram ids
    ... generate; mass[r] = attention from the reply to engram r's prompt span ...
    memoria.adjust_lifespan_and_memories(indices, lifespan_delta(mass, scale)[None])
    with store.transaction() as db:
        memoria.save(db, "ann")

Semantics, as in the reference:
- add_working_memory: new engrams are WORKING with lifespan `initial_lifespan`.
- remind: SHORTTERM engrams are ranked by their mean squared L2 distance to the
  working memory; the `num_reminded_stm` closest are reminded. Each reminded STM's
  strongest co-fire link to a LONGTERM engram seeds a path; `ltm_search_depth`
  times every path steps to the unvisited LTM its last engram has the strongest
  link to (all paths step at once, then their targets count as visited). Of the
  seeds and the engrams the paths went through, the `num_final_ltms` closest to
  the working memory are reminded. The working memory and everything reminded
  then fire together: each one's fire count and each pair's co-fire count gain 1.
- adjust_lifespan_and_memories(indices, delta): each reminded engram gains its
  delta; every engram of the batch's users loses 1; WORKING becomes SHORTTERM;
  short-term engrams beyond `stm_capacity`, oldest first, become LONGTERM (this
  count includes engrams about to be forgotten, as in the reference); engrams
  whose lifespan is <= 0 are forgotten together with their links.
- The paper's lifespan reward is the attention the model pays to each reminded
  memory; `lifespan_delta` turns such a usage signal into deltas the same way.

Deviations from memoria-pytorch 1.1.0 (tests/test_memoria.py shows bugs 1-3 on
the installed reference, and runs the reference with fixes 1-5 applied side by
side with this module; the other deviations have tests of their own):
1. Bug fix: the reference marks STM slots that were not reminded with -1 and
   then reads row -1 of the co-fire matrix, i.e. the newest engram's row; its
   links are all zero, so random tie-breaking seeds a random LTM for every
   unselected slot. Here only reminded STMs seed paths.
2. Bug fix: the reference walks LTMs with LTM-local positions and then uses them
   as positions among all engrams, which picks wrong (even forgotten, NULL)
   engrams whenever the LTMs are not a prefix of the engram list (batch > 1).
   Here paths follow engram ids. At batch 1 the LTMs are always a prefix, so
   this bug never shows there.
3. Bug fix: while no LTM seed exists (e.g. before any LTM exists) the reference
   returns position 0 as a found LTM, so the oldest engram, an STM, is reminded
   as if it were long-term. Here no seed means no LTM is reminded.
4. A zero co-fire count is no link. The reference's dense counts let an STM with
   no link to any LTM seed a random LTM, let a path step to the oldest unvisited
   LTM over a zero count, and restart a dead-ended path (-1) from the newest LTM
   (the same -1 wrap as bug 1). Here such an STM seeds nothing and a path stops
   when no unvisited LTM is linked to its last engram.
5. Ties between equally strong links go to the oldest engram, always (the
   reference breaks seed ties at random; its walk already takes the oldest).
6. Indices are engram ids: unique per user, in creation order, never reused.
   The reference's indices are positions that shift as engrams are forgotten.
7. `remind` returns each user's reminded engrams once, STMs first (closest
   first), then LTMs (closest first), padded with -1 (and zero vectors) only to
   align the rows of a batch. The reference pads every row with a -1 slot, and
   that padding competes, as a zero vector, for the `num_final_ltms` places.
8. Co-fire links are sparse: each engram keeps at most `max_links` links, the
   strongest (ties: the newer partner). Until an engram reaches `max_links`
   partners its counts equal the reference's dense counts; beyond that the
   weakest links are dropped, so links can become one-directional, and a link
   that forms again restarts at count 1. Memory is O(N * max_links), not O(N^2).
9. Users are isolated: each user has their own engrams, ids and links, and
   `adjust_lifespan_and_memories` ages only the users in the batch, so one
   user's chatting never shortens another user's memories.
10. Lifespans are kept as an expiry step (float64): lifespan = expires - step,
    so "every engram loses 1" is one counter increment and changes no row on
    disk. The reference decrements float32 lifespans in place; both agree
    exactly for deltas that float32 represents exactly (e.g. multiples of 1/4).
    Distances are computed in float64 (the reference: float32), so rankings can
    differ only between candidates whose distances tie within float32 rounding.
11. `adjust_lifespan_and_memories` adds every delta of an engram listed twice
    (the reference keeps one of them) and rejects ids that are not the user's
    live engrams (the reference indexes whatever the position holds).
12. Engrams live in CPU memory (numpy); results come back on the device of the
    last added data. Age, ids and fire counts are always tracked; the
    reference's `track_age`, `track_id`, `keep_history` and `device` options do
    not exist (history lives in SQLite).
13. `remind` without working memory reminds nothing (the reference averages over
    an empty working memory and ranks NaNs).
14. `forget(ids, user=...)` removes engrams at once, with their links (a chatbot
    needs it for a user's "Forget ..." request, for a correction that supersedes
    an engram, and for the Memory tab's forget button); the reference forgets only
    when a lifespan runs out.

Persistence: `save(db, user)` inside the caller's `Store.transaction()` writes
only the engrams that changed since the last save (new, reminded, retyped,
forgotten) plus one counters row; `load(db, user)` restores the user exactly.
Vectors are float32 blobs; each engram's links are a blob of (id int64, count
int32) pairs. If the database is not at the state this object last saved (the
transaction that held the last save rolled back, or the object never loaded
this user), `save` rewrites all of the user's engrams instead.
"""

from __future__ import annotations

import enum
import time
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass

import numpy as np
import sqlite_utils
import torch

from text import mentioned_words

# Sort keys pack (count, id) into one int64: the count above bit 40, the id below.
_ID_BITS = 40
_ID_MASK = (1 << _ID_BITS) - 1
_LINK_DTYPE = np.dtype([("id", "<i8"), ("count", "<i4")])
_FREE = 0  # type of a slot that holds no engram


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


def lifespan_delta(attention_mass: torch.Tensor, scale: float) -> torch.Tensor:
    """Lifespan gains from how much a reply used each reminded engram.

    As in the paper's GPT-2 model, the usage is normalised over the reminded
    engrams and multiplied by their number and by `scale`, so an engram used as
    much as the average one gains `scale`, and one the reply ignored gains 0.
    A row whose total mass is 0 gains nothing.

    Args:
        attention_mass: [..., N] non-negative usage per engram, e.g. the attention
            from the generated tokens to each engram's span in the prompt.
        scale: the gain of an average engram (the paper uses 8).
    Returns: [..., N] float32 deltas for `adjust_lifespan_and_memories`.
    """
    mass = attention_mass.float()
    total = mass.sum(dim=-1, keepdim=True)
    share = mass / torch.where(total > 0, total, torch.ones_like(total))
    return share * mass.shape[-1] * scale


class _UserMemory:
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
        self.dirty: set[int] = set()  # ids whose rows changed since the last save
        self.deleted: set[int] = set()  # ids forgotten since the last save
        self.save_seq = 0  # the engram_counters.save_seq this state was last saved as
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
        self.dirty.update(id_list)
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
        self.dirty.update(self.ids[fired].tolist())
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
        self.dirty.update(self.ids[slots].tolist())
        self.step += 1
        if self.working:
            self.types[self.id_to_slot[np.asarray(self.working, np.int64)]] = EngramType.SHORTTERM
            self.shortterm.extend(self.working)
            self.dirty.update(self.working)
            self.working = []
        overflow = len(self.shortterm) - stm_capacity
        if overflow > 0:
            moved = self.shortterm[:overflow]
            del self.shortterm[:overflow]
            self.types[self.id_to_slot[np.asarray(moved, np.int64)]] = EngramType.LONGTERM
            self.dirty.update(moved)
        expired = np.flatnonzero(self.expires <= self.step)
        if len(expired):
            self._forget(expired)

    def _forget(self, slots: np.ndarray) -> None:
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
        self.dirty -= gone
        self.deleted |= gone

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


class Memoria:
    """Per-user engram store with Memoria's remind / adjust cycle.

    A batch row is a user: `add_working_memory` names the users of its rows, and
    `remind` / `adjust_lifespan_and_memories` act on those users unless given
    others. Without user names the rows are users "0", "1", ... as in the
    reference, whose batch rows are independent memories.

    Args:
        num_reminded_stm: short-term engrams reminded per turn, closest first.
        stm_capacity: short-term engrams kept per user; older ones become long-term.
        ltm_search_depth: steps of each path through the long-term links.
        initial_lifespan: lifespan of a new engram, in adjust calls.
        num_final_ltms: long-term engrams reminded per turn, closest first.
        max_links: co-fire links kept per engram (the strongest); bounds memory at
            O(engrams * max_links).
        vector_kind: how this store's vectors are made (e.g. an encoder's name); saved
            with a user's engrams, so `vector_kind_of` tells a reload made another way.
    """

    def __init__(
        self,
        num_reminded_stm: int,
        stm_capacity: int,
        ltm_search_depth: int,
        initial_lifespan: float,
        num_final_ltms: int,
        *,
        max_links: int = 64,  # per engram; 64 int64+int32 pairs = 768 bytes of RAM per engram
        vector_kind: str = "",  # what made the vectors; a user's saved engrams of another kind need new ones
    ) -> None:
        for name, value in [
            ("num_reminded_stm", num_reminded_stm),
            ("stm_capacity", stm_capacity),
            ("ltm_search_depth", ltm_search_depth),
            ("num_final_ltms", num_final_ltms),
        ]:
            if value < 0:
                raise ValueError(f"{name} must be >= 0, got {value}")
        if max_links < 1:
            raise ValueError(f"max_links must be >= 1, got {max_links}")
        self.num_reminded_stm = int(num_reminded_stm)
        self.stm_capacity = int(stm_capacity)
        self.ltm_search_depth = int(ltm_search_depth)
        self.initial_lifespan = float(initial_lifespan)
        self.num_final_ltms = int(num_final_ltms)
        self.max_links = max_links
        self.vector_kind = vector_kind
        self._users: dict[str, _UserMemory] = {}
        self._batch: list[str] = []
        self._device = torch.device("cpu")

    def _resolve(self, user: str | Sequence[str] | None, batch_size: int | None, *, new_batch: bool = False) -> list[str]:
        if user is None:
            users = [str(b) for b in range(batch_size)] if new_batch else list(self._batch)
            if not users:
                raise ValueError("no batch yet: call add_working_memory first or name the users")
        elif isinstance(user, str):
            users = [user]
        else:
            users = list(user)
        if batch_size is not None and len(users) != batch_size:
            raise ValueError(f"{len(users)} users named for a batch of {batch_size} rows")
        if len(set(users)) != len(users):
            raise ValueError(f"a batch names a user twice: {users}")
        return users

    @torch.no_grad()
    def add_working_memory(
        self,
        data: torch.Tensor,
        *,
        user: str | Sequence[str] | None = None,
        texts: Sequence[Sequence[str | None]] | None = None,
        turn: int | None = None,
    ) -> torch.Tensor:
        """Add working memory: W new engrams per batch row.

        Args:
            data: [B, W, H] engram vectors (e.g. pooled hidden states per sentence).
            user: the users of the B rows (one name when B == 1); default "0".."B-1".
            texts: [B][W] the text span of each engram, or None.
            turn: the turn the engrams come from (e.g. turns.id), or None.
        Returns: [B, W] the new engrams' ids.
        """
        if data.dim() != 3:
            raise ValueError(f"data must be [batch, length, hidden], got shape {tuple(data.shape)}")
        batch, length, hidden = data.shape
        users = self._resolve(user, batch, new_batch=True)
        if texts is not None and (len(texts) != batch or any(len(row) != length for row in texts)):
            raise ValueError(f"texts must be {batch} rows of {length} spans")
        if turn is not None and turn < 0:
            raise ValueError(f"turn must be >= 0, got {turn}")
        for name in users:
            if name in self._users and self._users[name].hidden_size != hidden:
                raise ValueError(f"user {name!r} has {self._users[name].hidden_size}-dim engrams, got {hidden}")
        self._device = data.device
        self._batch = users
        vectors = data.detach().to("cpu", torch.float32).numpy()
        ids = np.zeros((batch, length), np.int64)
        for row, name in enumerate(users):
            state = self._users.get(name)
            if state is None:
                state = self._users[name] = _UserMemory(hidden, self.max_links, vector_kind=self.vector_kind)
            spans = texts[row] if texts is not None else [None] * length
            ids[row] = state.add(vectors[row], spans, turn, self.initial_lifespan)
        return torch.from_numpy(ids)

    @torch.no_grad()
    def remind(self, *, user: str | Sequence[str] | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Remind engrams for the users' current working memory, and fire them together.

        Args:
            user: the users (default: those of the last add_working_memory).
        Returns:
            memories: [B, R, H] the reminded engrams' vectors (zeros where padded).
            indices: [B, R] their engram ids, -1 where padded; pass to adjust_lifespan_and_memories.
        """
        users = self._resolve(user, None)
        rows = []
        for name in users:
            state = self._users.get(name)
            slots = np.zeros(0, np.int64) if state is None else state.remind(
                self.num_reminded_stm, self.ltm_search_depth, self.num_final_ltms
            )
            rows.append((state, slots))
        width = max(len(slots) for _, slots in rows)
        hidden = next((state.hidden_size for state, _ in rows if state is not None), 0)
        memories = np.zeros((len(users), width, hidden), np.float32)
        indices = np.full((len(users), width), -1, np.int64)
        for row, (state, slots) in enumerate(rows):
            if len(slots):
                memories[row, : len(slots)] = state.vectors[slots]
                indices[row, : len(slots)] = state.ids[slots]
        return torch.from_numpy(memories).to(self._device), torch.from_numpy(indices)

    @torch.no_grad()
    def adjust_lifespan_and_memories(
        self, indices: torch.Tensor, lifespan_delta: torch.Tensor, *, user: str | Sequence[str] | None = None
    ) -> None:
        """Reward reminded engrams, age the users' engrams by one turn, retype and forget.

        Args:
            indices: [B, R] engram ids (normally from `remind`); -1 is ignored.
            lifespan_delta: [B, R] lifespan gain of each listed engram.
            user: the users of the B rows (default: those of the last add_working_memory).
        """
        if indices.shape != lifespan_delta.shape or indices.dim() != 2:
            raise ValueError(f"indices {tuple(indices.shape)} and lifespan_delta {tuple(lifespan_delta.shape)} must be the same [B, R]")
        users = self._resolve(user, indices.shape[0])
        ids = indices.detach().cpu().numpy().astype(np.int64)
        deltas = lifespan_delta.detach().cpu().numpy().astype(np.float64)
        states = [self._users.get(name) for name in users]
        for row, (name, state) in enumerate(zip(users, states)):
            listed = ids[row] >= 0
            if state is None and listed.any():
                raise ValueError(f"user {name!r} has no engrams")
            # validate every row before changing any, so a bad row leaves the batch untouched
            if state is not None:
                state.slots(ids[row][listed])
        for row, state in enumerate(states):
            if state is not None:
                listed = ids[row] >= 0
                state.adjust(state.slots(ids[row][listed]), deltas[row][listed], self.stm_capacity)

    def forget(self, ids: Iterable[int], *, user: str) -> list[int]:
        """Forget the user's engrams `ids` now; ids that are already gone are skipped.

        Returns: the ids that were forgotten.
        """
        state = self._users.get(user)
        if state is None:
            return []
        wanted = np.unique(np.asarray(list(ids), np.int64))
        wanted = wanted[(wanted >= 0) & (wanted < state.next_id)]
        live = wanted[state.id_to_slot[wanted] >= 0]
        if len(live):
            state._forget(state.id_to_slot[live])
        return live.tolist()

    def set_turn(self, ids: Iterable[int], turn: int, *, user: str) -> None:
        """Record the turn the user's live engrams `ids` came from (known once the turn is stored)."""
        state = self._users.get(user)
        if state is None:
            return
        slots = state.slots(list(ids))
        state.turns[slots] = turn
        state.dirty.update(state.ids[slots].tolist())

    def is_live(self, engram_id: int, *, user: str) -> bool:
        """Whether the user's engram `engram_id` exists (not yet forgotten)."""
        state = self._users.get(user)
        return state is not None and 0 <= engram_id < state.next_id and state.id_to_slot[engram_id] >= 0

    def adjust_count(self, user: str) -> int:
        """How many times the user's engrams were adjusted (turns, in chat)."""
        state = self._users.get(user)
        return 0 if state is None else state.step

    def saved_version(self, user: str) -> int:
        """The save this object's copy of the user is at (0: never saved or loaded).

        `stored_version(db, user)` differs when another process saved the user since.
        """
        state = self._users.get(user)
        return 0 if state is None else state.save_seq

    def size(self, user: str) -> int:
        """Number of engrams the user has."""
        state = self._users.get(user)
        return 0 if state is None else int((state.types != _FREE).sum())

    def nbytes(self, user: str) -> int:
        """Bytes of the user's arrays (vectors, links, bookkeeping, spare capacity); texts excluded."""
        state = self._users.get(user)
        if state is None:
            return 0
        arrays = [state.vectors, state.ids, state.types, state.expires, state.born, state.fires, state.turns]
        return sum(a.nbytes for a in arrays + [state.link_ids, state.link_counts, state.id_to_slot])

    def engrams(self, user: str, ids: Iterable[int] | None = None) -> list[Engram]:
        """The user's engrams (all, in id order, or those with `ids`, in that order)."""
        state = self._users.get(user)
        wanted = None if ids is None else list(ids)
        if state is None:
            if wanted:
                raise ValueError(f"user {user!r} has no engrams")
            return []
        slots = state.live_slots() if wanted is None else state.slots(wanted)
        return [state.engram(slot) for slot in slots.tolist()]

    def mentioning(self, words: Iterable[str], *, user: str, limit: int) -> list[int]:
        """Ids of the user's engrams whose text holds any of `words` (lowercase, as
        `text.mentioned_words` splits them): those holding the most of them first, newest first
        among equals; at most `limit`. Cued recall by name, beside the vector remind.
        """
        state = self._users.get(user)
        if state is None or limit <= 0:
            return []
        held = Counter(i for w in set(words) for i in state.mentions.get(w, ()))
        return sorted(held, key=lambda i: (-held[i], -i))[:limit]

    def vectors(self, user: str, ids: Iterable[int]) -> torch.Tensor:
        """Vectors of the user's engrams `ids`. Returns: [N, H] float32."""
        state = self._users.get(user)
        ids = list(ids)
        if state is None:
            if ids:
                raise ValueError(f"user {user!r} has no engrams")
            return torch.zeros(0, 0)
        return torch.from_numpy(state.vectors[state.slots(ids)].copy())

    def save(self, db: sqlite_utils.Database, user: str) -> int:
        """Write the user's changes since the last save; call inside `Store.transaction()`.

        Returns: the number of engram rows written or deleted.
        """
        state = self._users.get(user)
        if state is None:
            return 0
        user_id = _user_row_id(db, user)
        row = db.execute("SELECT save_seq FROM engram_counters WHERE user_id = ?", [user_id]).fetchone()
        saved_seq = row[0] if row else 0
        if saved_seq != state.save_seq:
            db.execute("DELETE FROM engrams WHERE user_id = ?", [user_id])
            deleted: list[int] = []
            slots = state.live_slots()
        else:
            deleted = sorted(state.deleted)
            slots = state.slots(sorted(state.dirty))
        if deleted:
            db.conn.executemany(
                "DELETE FROM engrams WHERE user_id = ? AND id = ?", [(user_id, i) for i in deleted]
            )
        db.conn.executemany(
            "INSERT OR REPLACE INTO engrams (user_id, id, type, expires, born, fire_count, turn, text, vector, links) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            _engram_rows(state, user_id, slots),
        )
        seq = max(saved_seq, state.save_seq) + 1
        db.execute(
            "INSERT OR REPLACE INTO engram_counters (user_id, next_id, step, hidden_size, save_seq, vector_kind) "
            "VALUES (?, ?, ?, ?, ?, ?)",
            [user_id, state.next_id, state.step, state.hidden_size, seq, state.vector_kind],
        )
        state.save_seq = seq
        state.dirty.clear()
        state.deleted.clear()
        return len(deleted) + len(slots)

    def load(self, db: sqlite_utils.Database, user: str) -> None:
        """Replace the user's in-memory engrams with those saved in `db` (none if never saved)."""
        self._users.pop(user, None)
        found = db.execute("SELECT id FROM users WHERE name = ?", [user]).fetchone()
        counters = found and db.execute(
            "SELECT next_id, step, hidden_size, save_seq, vector_kind FROM engram_counters WHERE user_id = ?", [found[0]]
        ).fetchone()
        if not counters:
            return
        next_id, step, hidden_size, save_seq, vector_kind = counters
        rows = db.execute(
            "SELECT id, type, expires, born, fire_count, turn, text, vector, links FROM engrams "
            "WHERE user_id = ? ORDER BY id",
            [found[0]],
        ).fetchall()
        vectors = np.frombuffer(b"".join(r[7] for r in rows), "<f4").reshape(len(rows), hidden_size)
        records = [(r[0], r[1], r[2], r[3], r[4], r[5], r[6], np.frombuffer(r[8], _LINK_DTYPE)) for r in rows]
        self._users[user] = self._state(hidden_size, records, vectors, next_id=next_id, step=step, save_seq=save_seq)
        self._users[user].vector_kind = vector_kind

    def vector_kind_of(self, user: str) -> str | None:
        """How the user's engram vectors were made: this store's kind for new ones, the
        saved kind for loaded ones (None if saved before kinds were kept)."""
        state = self._users.get(user)
        return self.vector_kind if state is None else state.vector_kind

    def replace_vectors(self, user: str, vectors: torch.Tensor) -> None:
        """Give the user's engrams new vectors, made this store's way (e.g. by another encoder).

        vectors: [N, H'] for the user's N engrams in id order (H' may differ from before).
        Links, lifespans and texts stay; the next save rewrites every row.
        """
        state = self._users.get(user)
        slots = state.live_slots() if state is not None else np.zeros(0, np.int64)
        if vectors.dim() != 2 or len(vectors) != len(slots):
            raise ValueError(f"user {user!r} has {len(slots)} engrams, got vectors of shape {tuple(vectors.shape)}")
        if state is None:
            return
        state.hidden_size = vectors.shape[1]
        state.vectors = np.zeros((state.capacity, state.hidden_size), np.float32)
        state.vectors[slots] = vectors.detach().to("cpu", torch.float32).numpy()
        state.dirty.update(state.ids[slots].tolist())
        state.vector_kind = self.vector_kind

    def restore(self, engrams: Sequence[Engram], vectors: torch.Tensor, *, user: str) -> None:
        """Replace the user's engrams by `engrams` (e.g. read from an exported file).

        Ids, types, lifespans, ages, fire counts, turns, texts and links are kept as
        given (links to ids not among `engrams` are dropped); `vectors` [N, H] are their
        vectors, in the same order. The next save rewrites all of the user's rows.
        """
        if len(engrams) != len(vectors):
            raise ValueError(f"{len(engrams)} engrams but {len(vectors)} vectors")
        if len({e.id for e in engrams}) != len(engrams) or any(e.id < 0 for e in engrams):
            raise ValueError("engram ids must be distinct and >= 0")
        step = max([e.age for e in engrams], default=0)
        records = [
            (e.id, int(e.type), step + e.lifespan, step - e.age, e.fire_count, e.turn, e.text,
             np.array(sorted(e.links.items()), _LINK_DTYPE) if e.links else np.zeros(0, _LINK_DTYPE))
            for e in sorted(engrams, key=lambda e: e.id)
        ]
        order = np.argsort([e.id for e in engrams], kind="stable")
        array = vectors.detach().to("cpu", torch.float32).numpy()[order] if len(engrams) else np.zeros((0, vectors.shape[-1]), np.float32)
        next_id = max([e.id for e in engrams], default=-1) + 1
        self._users[user] = self._state(vectors.shape[-1], records, array, next_id=next_id, step=step, save_seq=-1)

    def _state(self, hidden_size: int, records: list[tuple], vectors: np.ndarray, *, next_id: int, step: int, save_seq: int) -> _UserMemory:
        """A user's state from (id, type, expires, born, fire_count, turn, text, links) records in id order."""
        count = len(records)
        state = _UserMemory(hidden_size, self.max_links, capacity=max(64, count), vector_kind=self.vector_kind)
        ids = np.array([r[0] for r in records], np.int64)
        state.next_id = next_id
        state.step = step
        state.save_seq = save_seq
        state.id_to_slot = np.full(max(next_id, 1), -1, np.int64)
        state.id_to_slot[ids] = np.arange(count)
        state.free = list(range(state.capacity - 1, count - 1, -1))
        state.ids[:count] = ids
        state.types[:count] = [r[1] for r in records]
        state.expires[:count] = [r[2] for r in records]
        state.born[:count] = [r[3] for r in records]
        state.fires[:count] = [r[4] for r in records]
        state.turns[:count] = [-1 if r[5] is None else r[5] for r in records]
        state.texts[:count] = [r[6] for r in records]
        for r in records:
            state.index_text(r[0], r[6])
        if count:
            state.vectors[:count] = vectors
        for slot, r in enumerate(records):
            links = r[7]
            # partners forgotten after this row was last written are dropped here
            links = links[(links["id"] >= 0) & (links["id"] < len(state.id_to_slot))]
            links = links[state.id_to_slot[links["id"]] >= 0]
            if len(links) > self.max_links:  # saved under a larger max_links
                order = np.lexsort((-links["id"], -links["count"]))
                links = links[order[: self.max_links]]
            state.link_ids[slot, : len(links)] = links["id"]
            state.link_counts[slot, : len(links)] = links["count"]
        by_type = {t: ids[state.types[:count] == t].tolist() for t in (EngramType.WORKING, EngramType.SHORTTERM)}
        state.working = by_type[EngramType.WORKING]
        state.shortterm = by_type[EngramType.SHORTTERM]
        return state


def stored_version(db: sqlite_utils.Database, user: str) -> int:
    """The save number of the user's engrams in `db` (0 if none were saved)."""
    row = db.execute(
        "SELECT c.save_seq FROM engram_counters c JOIN users u ON u.id = c.user_id WHERE u.name = ?", [user]
    ).fetchone()
    return row[0] if row else 0


def _user_row_id(db: sqlite_utils.Database, name: str) -> int:
    """users.id of `name`, inserted if missing (inside the caller's transaction)."""
    row = db.execute("SELECT id FROM users WHERE name = ?", [name]).fetchone()
    if row:
        return row[0]
    return db["users"].insert({"name": name, "created_at": time.time()}).last_pk


def _engram_rows(state: _UserMemory, user_id: int, slots: np.ndarray, chunk: int = 4096) -> Iterator[tuple]:
    """`engrams` rows of `slots`, built a chunk at a time so a full save stays vectorised."""
    for start in range(0, len(slots), chunk):
        part = slots[start : start + chunk]
        partners = state.link_ids[part]
        live = (partners >= 0) & (state.id_to_slot[np.maximum(partners, 0)] >= 0)
        links = np.empty(partners.shape, _LINK_DTYPE)
        links["id"] = partners
        links["count"] = state.link_counts[part]
        vectors = state.vectors[part].astype("<f4")
        columns = zip(
            part.tolist(),
            state.ids[part].tolist(),
            state.types[part].tolist(),
            state.expires[part].tolist(),
            state.born[part].tolist(),
            state.fires[part].tolist(),
            state.turns[part].tolist(),
        )
        for k, (slot, engram_id, kind, expires, born, fires, turn) in enumerate(columns):
            yield (
                user_id,
                engram_id,
                kind,
                expires,
                born,
                fires,
                None if turn < 0 else turn,
                state.texts[slot],
                vectors[k].tobytes(),
                links[k][live[k]].tobytes(),
            )
