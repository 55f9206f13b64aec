"""Each user's share of the elastic vocabulary: the added tokens they hold, and their counts.

The lexicon and the model's rows are one for all users (a word several users grew is
one token with one row), but which added tokens a text may use is per user: a user's
messages are merged into, strengthen, count towards and prune only that user's own
tokens, and replies to them never use another's. Everything here decays with the
user's own turns (`step`), so another user's messages change none of it.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class Holding:
    """One added token in one user's set; `strength` is its value at the user's step `touched`."""

    strength: float
    touched: int
    uses: int = 0  # times the user's text has used it since they grew it
    born: int = 0  # the user's step when they grew it


@dataclass
class Candidate:
    """A word or span counted towards growth; `count` is its value at the user's step `touched`."""

    count: float
    touched: int


@dataclass
class UserVocab:
    """One user's tokens (by id) and growth candidates (by text), and their turn counter."""

    step: int = 0  # the user's messages observed (and turns let pass by `decay`)
    held: dict[int, Holding] = field(default_factory=dict)
    candidates: dict[str, Candidate] = field(default_factory=dict)

    def strength(self, token_id: int, decay: float) -> float:
        """Strength of a held token now (0 when not held)."""
        h = self.held.get(token_id)
        return 0.0 if h is None else h.strength * decay ** (self.step - h.touched)

    def count(self, key: str, times: float, decay: float) -> float:
        """Add `times` sightings to candidate `key`; returns its count now."""
        cand = self.candidates.get(key)
        count = float(times) if cand is None else cand.count * decay ** (self.step - cand.touched) + times
        self.candidates[key] = Candidate(count, self.step)
        return count

    def faint_candidates(self, limit: int, decay: float) -> list[str]:
        """Candidates beyond the `limit` strongest, faintest first."""
        over = len(self.candidates) - limit
        if over <= 0:
            return []
        now = {k: c.count * decay ** (self.step - c.touched) for k, c in self.candidates.items()}
        return sorted(now, key=now.__getitem__)[:over]

    def weakest(self, prune_below: float, capacity: int, decay: float) -> list[int]:
        """Held ids due for pruning now: under `prune_below`, then the weakest beyond `capacity`."""
        scored = sorted((self.strength(i, decay), h.touched, i) for i, h in self.held.items())
        doomed = [i for s, _, i in scored if s < prune_below]
        keep = [i for s, _, i in scored if s >= prune_below]
        over = len(keep) - capacity
        return doomed + (keep[:over] if over > 0 else [])

    def renumber(self, remap: dict[int, tuple[int, ...]]) -> None:
        """Rewrite held ids after `Lexicon.remove` (whose removed tokens no user held)."""
        held = {}
        for i, h in self.held.items():
            new = remap.get(i, (i,))
            assert len(new) == 1, f"token {i} was removed while a user held it"
            held[new[0]] = h
        self.held = held
