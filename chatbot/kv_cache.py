"""KV caches of the lean decode path: one sequence's keys and values, and a bounded set of them kept per user.

A user's next prompt starts with most of their last one (system prompt, earlier turns),
so keeping its keys and values lets a turn prefill only what is new. Each user's cache
is theirs alone; the least recently used are dropped to stay under a byte budget.
"""

from __future__ import annotations

from collections import OrderedDict

import torch


class KVCache:
    """Keys and values of one sequence, and what produced them.

    keys, values: [layers, kv_heads, capacity, head_dim]; positions [0, length) are filled.
    ids: the model token id at each filled position (-1 where an embedding was fed
    directly), so a later prompt can reuse the longest prefix it shares.
    rows: input-embedding rows of the added (grown) ids among `ids`, as they were when
    read: a row refitted or renumbered since makes the positions after it stale.
    """

    def __init__(self, layers: int, kv_heads: int, head_dim: int, capacity: int, dtype: torch.dtype) -> None:
        self.keys = torch.zeros(layers, kv_heads, capacity, head_dim, dtype=dtype)
        self.values = torch.zeros_like(self.keys)
        self.length = 0
        self.ids: list[int] = []
        self.rows: dict[int, torch.Tensor] = {}

    @property
    def capacity(self) -> int:
        return self.keys.shape[2]

    @property
    def nbytes(self) -> int:
        return 2 * self.keys.numel() * self.keys.element_size()

    def reserve(self, length: int) -> None:
        """Make room for `length` positions (doubling, so a long reply reallocates rarely)."""
        if length <= self.capacity:
            return
        grown = max(length, 2 * self.capacity)
        for name in ("keys", "values"):
            old = getattr(self, name)
            new = old.new_zeros(old.shape[0], old.shape[1], grown, old.shape[3])
            new[:, :, : self.length] = old[:, :, : self.length]
            setattr(self, name, new)

    def crop(self, length: int) -> None:
        """Forget every position from `length` on."""
        self.length = min(self.length, length)
        del self.ids[self.length:]
        self.rows = {i: r for i, r in self.rows.items() if i in self.ids}

    def reusable(self, ids: list[int], embedding: torch.Tensor, base_rows: int) -> int:
        """How many leading positions of a prompt with model ids `ids` this cache already holds.

        The longest common prefix, cut before the first added id whose embedding row
        (`embedding`: [V, H]) differs from the row it was computed with.
        """
        n = 0
        for held, new in zip(self.ids, ids):
            if held != new or held < 0:
                break
            if held >= base_rows and (held >= embedding.shape[0] or not torch.equal(self.rows[held], embedding[held])):
                break
            n += 1
        return n


class UserCaches:
    """Each user's last `KVCache`, least recently used dropped first beyond `max_bytes` in all."""

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self._caches: OrderedDict[str, KVCache] = OrderedDict()

    @property
    def nbytes(self) -> int:
        return sum(c.nbytes for c in self._caches.values())

    def take(self, user: str) -> KVCache | None:
        """Remove and return `user`'s cache (None when there is none): a turn owns it until `put`."""
        return self._caches.pop(user, None)

    def put(self, user: str, cache: KVCache) -> None:
        """Keep `cache` as `user`'s newest, then drop the least recently used over the budget (this one too)."""
        self._caches[user] = cache
        while self._caches and self.nbytes > self.max_bytes:
            self._caches.popitem(last=False)

    def drop(self, user: str | None = None) -> None:
        """Drop `user`'s cache; None = every user's."""
        if user is None:
            self._caches.clear()
        else:
            self._caches.pop(user, None)
