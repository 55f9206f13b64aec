"""What changed since the last save, and which save it matches: the one change-tracking scheme.

The owner of some state (a user's engrams, a user's neural memory, the vocabulary) marks
what it changes; storage/ writes only that and records the save's version. Rows are kept by
key in named parts (one table each); a part can be marked to be rewritten whole (its keys
were renumbered, or it was rebuilt), and records can be appended (an append-only log).

Every save writes a new version into the database, inside the caller's transaction. When
the stored version is not the one this copy last saved or loaded, `stale` is true: either
the transaction that held the last save rolled back, or another process saved since. A
caller about to use the state then reloads it; a save rewrites every part whole and appends
the last save's records again.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Hashable, Iterable
from typing import Any


class Changes:
    """The keys changed and removed per part, parts to rewrite whole, records to append.

    Args:
        version: the stored save this copy matches (0: nothing saved; -1: none at all, so
            the next save rewrites everything).
    """

    def __init__(self, version: float = 0) -> None:
        self.version = version
        self.changed: defaultdict[str, set[Hashable]] = defaultdict(set)
        self.removed: defaultdict[str, set[Hashable]] = defaultdict(set)
        self.whole: set[str] = set()
        self.appended: list[Any] = []
        self.last_appended: list[Any] = []  # what the last save appended, again if it was lost

    def change(self, part: str, keys: Iterable[Hashable]) -> None:
        """Rows `keys` of `part` were added or changed."""
        keys = set(keys)
        self.changed[part] |= keys
        self.removed[part] -= keys

    def remove(self, part: str, keys: Iterable[Hashable]) -> None:
        """Rows `keys` of `part` are gone."""
        keys = set(keys)
        self.changed[part] -= keys
        self.removed[part] |= keys

    def rewrite(self, part: str) -> None:
        """Every row of `part` is to be written again (and no other kept)."""
        self.whole.add(part)
        self.changed[part].clear()
        self.removed[part].clear()

    def append(self, records: Iterable[Any]) -> None:
        """Records for an append-only log."""
        self.appended.extend(records)

    def stale(self, stored: float) -> bool:
        """Whether the database's version `stored` is not the one this copy matches."""
        return stored != self.version

    def rewrites(self, part: str, stored: float) -> bool:
        """Whether a save over version `stored` writes `part` whole."""
        return part in self.whole or self.stale(stored)

    def to_append(self, stored: float) -> list[Any]:
        """The records a save over version `stored` appends."""
        return (self.last_appended if self.stale(stored) else []) + self.appended

    def saved(self, version: float, appended: Iterable[Any] = ()) -> None:
        """A save wrote everything pending but the records not among `appended` (they wait for a later save), as `version`."""
        written = {id(r) for r in appended}
        self.version = version
        self.changed.clear()
        self.removed.clear()
        self.whole.clear()
        self.last_appended = [r for r in self.appended + self.last_appended if id(r) in written]
        self.appended = [r for r in self.appended if id(r) not in written]
