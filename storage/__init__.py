"""Every SQL statement: the database, its schema, and the learned state saved in it.

store.py (connection, transactions, users, conversations, turns), schema.py (tables and
migrations), engrams.py (Memoria), neural.py (ChatMemory), vocab.py (the elastic vocabulary).
memory/ and vocab/ hold no SQL: they expose their state as plain rows and arrays, with what
changed since the last save (changes.py), and the functions here write and read them.
"""

from .store import Database, Store, StoreError, Turn

__all__ = ["Database", "Store", "StoreError", "Turn"]
