"""Memoria: an engram store with working, short-term and long-term memory.

After Park & Bak, "Memoria: Resolving Fateful Forgetting Problem through
Human-Inspired Memory Architecture" (ICML 2024), whose implementation is the pip
package memoria-pytorch 1.1.0 ("the reference"). This module keeps the
reference's semantics and interface (`Memoria(num_reminded_stm, stm_capacity,
ltm_search_depth, initial_lifespan, num_final_ltms)`, `add_working_memory`,
`remind`, `adjust_lifespan_and_memories`) and adds what a chatbot needs: text
attached to each engram, users kept apart, and sparse co-fire links that scale to
100k+ engrams. The arrays live in memory/engram_state.py.

An engram is a vector [H] with the text span it came from, the turn and user it
belongs to, its type (WORKING / SHORTTERM / LONGTERM), lifespan, age, fire count
and its co-fire links to other engrams of the same user.

One chat turn (batch size 1; in training a batch of B rows is B users):

    ids = memoria.add_working_memory(vectors[None], user="ann", texts=[spans], turn=7)
    memories, indices = memoria.remind()          # [1, R, H], [1, R] engram ids
    ... generate; mass[r] = attention from the reply to engram r's prompt span ...
    memoria.adjust_lifespan_and_memories(indices, lifespan_delta(mass, scale)[None])
    with store.transaction() as db:
        storage.engrams.save_engrams(db, memoria, "ann")

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

Persistence (storage/engrams.py): each user's `changes` (changes.py) holds the ids
new, reminded, retyped or forgotten since the last save, so a save writes only
those rows; `state` and `load` hand the arrays to storage and take them back.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence

import numpy as np
import torch

from .engram_state import ENGRAMS, LINK_DTYPE, Engram, EngramCounters, EngramRows, EngramState


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
        self._users: dict[str, EngramState] = {}
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
                state = self._users[name] = EngramState(hidden, self.max_links, vector_kind=self.vector_kind)
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
            state.forget(state.id_to_slot[live])
        return live.tolist()

    def set_turn(self, ids: Iterable[int], turn: int, *, user: str) -> None:
        """Record the turn the user's live engrams `ids` came from (known once the turn is stored)."""
        state = self._users.get(user)
        if state is None:
            return
        slots = state.slots(list(ids))
        state.turns[slots] = turn
        state.changes.change(ENGRAMS, state.ids[slots].tolist())

    def is_live(self, engram_id: int, *, user: str) -> bool:
        """Whether the user's engram `engram_id` exists (not yet forgotten)."""
        state = self._users.get(user)
        return state is not None and 0 <= engram_id < state.next_id and state.id_to_slot[engram_id] >= 0

    def adjust_count(self, user: str) -> int:
        """How many times the user's engrams were adjusted (turns, in chat)."""
        state = self._users.get(user)
        return 0 if state is None else state.step

    def size(self, user: str) -> int:
        """Number of engrams the user has."""
        state = self._users.get(user)
        return 0 if state is None else state.size

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

    def state(self, user: str) -> EngramState | None:
        """The user's engrams as arrays, with what changed since the last save (None: no engrams)."""
        return self._users.get(user)

    def load(self, user: str, counters: EngramCounters | None, rows: EngramRows | None = None) -> None:
        """Replace the user's engrams by saved ones: `rows` in id order, with their `counters`
        (None: the user has none)."""
        self._users.pop(user, None)
        if counters is not None:
            self._users[user] = EngramState.from_rows(rows, counters, self.max_links)

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
        state.changes.change(ENGRAMS, state.ids[slots].tolist())
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
        ordered = sorted(engrams, key=lambda e: e.id)
        order = np.argsort([e.id for e in engrams], kind="stable")
        array = vectors.detach().to("cpu", torch.float32).numpy()[order] if len(engrams) else np.zeros((0, vectors.shape[-1]), np.float32)
        rows = EngramRows(
            ids=np.array([e.id for e in ordered], np.int64),
            types=np.array([int(e.type) for e in ordered], np.uint8),
            expires=np.array([step + e.lifespan for e in ordered], np.float64),
            born=np.array([step - e.age for e in ordered], np.int64),
            fires=np.array([e.fire_count for e in ordered], np.int64),
            turns=np.array([-1 if e.turn is None else e.turn for e in ordered], np.int64),
            texts=[e.text for e in ordered],
            vectors=array,
            links=[np.array(sorted(e.links.items()), LINK_DTYPE) if e.links else np.zeros(0, LINK_DTYPE) for e in ordered],
        )
        next_id = max([e.id for e in engrams], default=-1) + 1
        # version -1 matches no stored save, so the next save rewrites all of the user's rows
        counters = EngramCounters(next_id, step, vectors.shape[-1], -1, self.vector_kind)
        self._users[user] = EngramState.from_rows(rows, counters, self.max_links)
