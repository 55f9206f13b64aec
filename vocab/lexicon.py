"""The added tokens as data: ids, what each is built from, and the merge that uses them.

An added token stands for a fixed run of base-tokenizer ids (its expansion). It is
built from `pieces`, which may be base ids or earlier added tokens, so tokens form a
hierarchy (level 1 = built from base pieces only, level k+1 = built from a level-k
token). Encoding merges runs of base ids into added ids; decoding expands them back,
so decode(encode(text)) == text holds whatever tokens exist.

Ids are compact: added token i (in the order they were added) has id base_size + i.
Removing tokens renumbers the survivors and returns the old -> new map. The lexicon
holds every user's tokens; a merge can be limited to the ids one user holds.
"""

from __future__ import annotations

from collections.abc import Container, Iterable, Sequence
from dataclasses import dataclass


class LexiconError(ValueError):
    """An id that is not in the vocabulary, or a token that cannot be added."""


@dataclass
class AddedToken:
    """One token beyond the base vocabulary (who holds it, and how strongly: vocab/users.py)."""

    id: int
    text: str  # the text it decodes to
    pieces: tuple[int, ...]  # ids it is built from: base or earlier added tokens
    expansion: tuple[int, ...]  # the run of base ids it replaces
    level: int  # 1 + the highest level among its pieces; base tokens are level 0


class Lexicon:
    """Added tokens over a base vocabulary of `base_size` ids (0 .. base_size-1)."""

    def __init__(self, base_size: int) -> None:
        self.base_size = base_size
        self.tokens: list[AddedToken] = []
        self._by_expansion: dict[tuple[int, ...], int] = {}
        # For the merge: added tokens by the first base id of their expansion, longest first.
        self._by_first: dict[int, list[tuple[tuple[int, ...], int]]] = {}

    def __len__(self) -> int:
        return len(self.tokens)

    @property
    def size(self) -> int:
        """Base plus added ids: the number of rows the model's matrix must have."""
        return self.base_size + len(self.tokens)

    def __getitem__(self, token_id: int) -> AddedToken:
        if not self.base_size <= token_id < self.size:
            raise LexiconError(f"id {token_id} is not an added token (added ids are {self.base_size}..{self.size - 1})")
        return self.tokens[token_id - self.base_size]

    def level(self, token_id: int) -> int:
        return 0 if token_id < self.base_size else self[token_id].level

    def find(self, expansion: Sequence[int]) -> int | None:
        """The added id whose expansion is exactly `expansion`, if any."""
        return self._by_expansion.get(tuple(expansion))

    def expand(self, ids: Iterable[int]) -> list[int]:
        """Base ids of `ids`: added ids are replaced by their expansions."""
        out: list[int] = []
        for i in ids:
            i = int(i)
            if 0 <= i < self.base_size:
                out.append(i)
            else:
                out.extend(self[i].expansion)
        return out

    def merge(self, base_ids: Sequence[int], allowed: Container[int] | None = None) -> list[int]:
        """Replace runs of base ids by added ids, longest match first, left to right.

        Only runs equal to a whole expansion are replaced, so expand(merge(x)) == x.
        `allowed`: the added ids that may be used (one user's); None = all of them.
        """
        if not self._by_first:
            return [int(i) for i in base_ids]
        ids = [int(i) for i in base_ids]
        out: list[int] = []
        i, n = 0, len(ids)
        while i < n:
            for expansion, token_id in self._by_first.get(ids[i], ()):
                if allowed is not None and token_id not in allowed:
                    continue
                end = i + len(expansion)
                if end <= n and tuple(ids[i:end]) == expansion:
                    out.append(token_id)
                    i = end
                    break
            else:
                out.append(ids[i])
                i += 1
        return out

    def add(self, pieces: Sequence[int], text: str) -> AddedToken:
        """Append a token built from `pieces` (at least two ids that exist now)."""
        pieces = tuple(int(p) for p in pieces)
        if len(pieces) < 2:
            raise LexiconError(f"a token needs at least two pieces, got {pieces}")
        for p in pieces:
            if not 0 <= p < self.size:
                raise LexiconError(f"piece id {p} is not in the vocabulary of {self.size} ids")
        expansion = tuple(self.expand(pieces))
        if expansion in self._by_expansion:
            raise LexiconError(f"{text!r} is already token {self._by_expansion[expansion]}")
        token = AddedToken(
            id=self.size,
            text=text,
            pieces=pieces,
            expansion=expansion,
            level=1 + max(self.level(p) for p in pieces),
        )
        self.tokens.append(token)
        self._index(token)
        return token

    def restore(self, tokens: Sequence[AddedToken]) -> None:
        """Replace every added token by `tokens` (ids base_size, base_size+1, ... in order)."""
        for k, t in enumerate(tokens):
            if t.id != self.base_size + k:
                raise LexiconError(f"stored token {t.text!r} has id {t.id}, expected {self.base_size + k}: ids are not compact")
        self.tokens = list(tokens)
        self._reindex()

    def remove(self, ids: Iterable[int]) -> dict[int, tuple[int, ...]]:
        """Remove the added tokens `ids` and renumber the rest compactly.

        A survivor built from a removed token is rebuilt from that token's pieces, so
        its expansion (and text) stay the same and only its level may drop.

        Returns: for every added id that changed, old id -> new ids: a survivor maps to
        its new id, a removed token to its pieces in new ids (see `remap_ids`).
        """
        doomed = {int(i) for i in ids}
        for i in doomed:
            self[i]  # raises on base or unknown ids: base tokens are never removed
        remap: dict[int, tuple[int, ...]] = {}
        survivors: list[AddedToken] = []
        for t in self.tokens:  # id order: a token's pieces always come before it
            pieces = tuple(remap_ids(t.pieces, remap))
            if t.id in doomed:
                remap[t.id] = pieces
                continue
            new_id = self.base_size + len(survivors)
            if new_id != t.id:
                remap[t.id] = (new_id,)
            t.id = new_id
            t.pieces = pieces
            t.level = 1 + max(0 if p < self.base_size else survivors[p - self.base_size].level for p in pieces)
            survivors.append(t)
        self.tokens = survivors
        self._reindex()
        return remap

    def _index(self, token: AddedToken) -> None:
        self._by_expansion[token.expansion] = token.id
        bucket = self._by_first.setdefault(token.expansion[0], [])
        bucket.append((token.expansion, token.id))
        bucket.sort(key=lambda entry: -len(entry[0]))

    def _reindex(self) -> None:
        self._by_expansion.clear()
        self._by_first.clear()
        for t in self.tokens:
            self._index(t)


def remap_ids(ids: Iterable[int], remap: dict[int, tuple[int, ...]]) -> list[int]:
    """Ids stored before a `Lexicon.remove`, rewritten into the ids after it (same text)."""
    out: list[int] = []
    for i in ids:
        out.extend(remap.get(int(i), (int(i),)))
    return out
