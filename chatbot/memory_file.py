"""A user's memories as a JSON file: what the Memory tab exports and imports.

The file holds text, not tensors: each engram's sentence, type, lifespan, age, fire
count and co-fire links, and each neural-memory write's sentence and status. On
import the vectors are computed again by the running model, so a file moves between
checkpoints and machines. Reading a file only parses JSON and checks every field
against the schema below; a file that fails any check is refused whole and changes
nothing. Nothing in a file is ever executed.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import Any

FORMAT = "learning-chatbot-memory"
VERSION = 1
MAX_BYTES = 50 * 1024 * 1024  # a file larger than this is refused before parsing
MAX_ITEMS = 200_000  # engrams or writes in one file
MAX_TEXT = 8_000  # characters of one sentence (the longest message a turn reads)
# Engram ids index a dense table in the engram store, so an id bounds what an import allocates (32 MiB here).
MAX_ID = 2**22
MAX_COUNT = 2**31  # ages, turns, fire and link counts: far beyond any real conversation, well inside int64
MAX_LIFESPAN = 1e6
ENGRAM_TYPES = ("working", "shortterm", "longterm")


class MemoryFileError(ValueError):
    """The file is not a memory export this program can read; the message says where."""


@dataclass(frozen=True)
class EngramEntry:
    id: int
    type: str  # one of ENGRAM_TYPES
    text: str
    turn: int | None
    lifespan: float
    age: int
    fire_count: int
    links: dict[int, int]  # partner id -> co-fire count


@dataclass(frozen=True)
class WriteEntry:
    id: int
    text: str
    value: str
    turn: int | None
    superseded_by: int | None
    forgotten: bool

    @property
    def live(self) -> bool:
        return self.superseded_by is None and not self.forgotten


@dataclass(frozen=True)
class MemoryFile:
    user: str
    engrams: list[EngramEntry]
    writes: list[WriteEntry]

    def to_json(self) -> str:
        return json.dumps(
            {
                "format": FORMAT,
                "version": VERSION,
                "user": self.user,
                "engrams": [
                    {"id": e.id, "type": e.type, "text": e.text, "turn": e.turn, "lifespan": e.lifespan, "age": e.age,
                     "fire_count": e.fire_count, "links": {str(k): v for k, v in e.links.items()}}
                    for e in self.engrams
                ],
                "writes": [
                    {"id": w.id, "text": w.text, "value": w.value, "turn": w.turn, "superseded_by": w.superseded_by,
                     "forgotten": w.forgotten}
                    for w in self.writes
                ],
            },
            indent=1,
            ensure_ascii=False,
        )


def _need(ok: bool, where: str, what: str) -> None:
    if not ok:
        raise MemoryFileError(f"{where}: {what}")


def _int(value: Any, where: str, *, minimum: int = 0, maximum: int = MAX_COUNT, optional: bool = False) -> int | None:
    if optional and value is None:
        return None
    _need(isinstance(value, int) and not isinstance(value, bool) and minimum <= value < maximum, where,
          f"must be an integer from {minimum} to {maximum - 1}")
    return value


def _text(value: Any, where: str, *, empty: bool = False) -> str:
    _need(isinstance(value, str) and (empty or value.strip() != "") and len(value) <= MAX_TEXT, where,
          f"must be {'a' if empty else 'a non-empty'} string of at most {MAX_TEXT} characters")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:  # a lone surrogate ("\ud800") is valid JSON but no text
        raise MemoryFileError(f"{where}: is not valid Unicode text") from None
    return value


def _fields(item: Any, where: str, keys: set[str]) -> dict:
    _need(isinstance(item, dict), where, "must be an object")
    missing, extra = keys - item.keys(), item.keys() - keys
    _need(not missing, where, f"lacks {sorted(missing)}")
    _need(not extra, where, f"has unknown fields {sorted(extra)}")
    return item


def read_memory_file(raw: bytes | str) -> MemoryFile:
    """Parse and check an exported file; raises MemoryFileError saying what is wrong."""
    _need(len(raw) <= MAX_BYTES, "file", f"is larger than {MAX_BYTES // 2**20} MiB")
    try:
        data = json.loads(raw)
    except RecursionError:
        raise MemoryFileError("file: nested too deeply to be a memory export") from None
    except ValueError as exc:  # not JSON, not UTF-8, or a number of thousands of digits
        raise MemoryFileError(f"file: not JSON ({exc})") from None
    data = _fields(data, "file", {"format", "version", "user", "engrams", "writes"})
    _need(data["format"] == FORMAT, "format", f"must be {FORMAT!r}")
    _need(data["version"] == VERSION, "version", f"must be {VERSION}")
    _need(isinstance(data["user"], str), "user", "must be a string")
    _text(data["user"], "user", empty=True)
    for key in ("engrams", "writes"):
        _need(isinstance(data[key], list) and len(data[key]) <= MAX_ITEMS, key, f"must be a list of at most {MAX_ITEMS}")

    engrams = []
    for i, item in enumerate(data["engrams"]):
        where = f"engrams[{i}]"
        item = _fields(item, where, {"id", "type", "text", "turn", "lifespan", "age", "fire_count", "links"})
        _need(item["type"] in ENGRAM_TYPES, f"{where}.type", f"must be one of {ENGRAM_TYPES}")
        lifespan = item["lifespan"]
        _need(isinstance(lifespan, (int, float)) and not isinstance(lifespan, bool) and math.isfinite(lifespan)
              and 0 < lifespan <= MAX_LIFESPAN, f"{where}.lifespan", f"must be a number > 0 and at most {MAX_LIFESPAN:g}")
        _need(isinstance(item["links"], dict), f"{where}.links", "must be an object")
        links = {}
        for k, v in item["links"].items():
            _need(isinstance(k, str) and k.isdigit() and len(k) <= 9, f"{where}.links", f"key {k[:20]!r} must be an engram id")
            links[int(k)] = _int(v, f"{where}.links[{k}]", minimum=1)
        engrams.append(EngramEntry(
            _int(item["id"], f"{where}.id", maximum=MAX_ID), item["type"], _text(item["text"], f"{where}.text"),
            _int(item["turn"], f"{where}.turn", optional=True), float(lifespan), _int(item["age"], f"{where}.age"),
            _int(item["fire_count"], f"{where}.fire_count"), links,
        ))
    ids = [e.id for e in engrams]
    _need(len(set(ids)) == len(ids), "engrams", "ids must be distinct")
    known = set(ids)
    for e in engrams:
        _need(all(k in known and k != e.id for k in e.links), f"engram {e.id}.links", "must name other engrams of the file")

    writes = []
    for i, item in enumerate(data["writes"]):
        where = f"writes[{i}]"
        item = _fields(item, where, {"id", "text", "value", "turn", "superseded_by", "forgotten"})
        _need(isinstance(item["forgotten"], bool), f"{where}.forgotten", "must be true or false")
        writes.append(WriteEntry(
            _int(item["id"], f"{where}.id"), _text(item["text"], f"{where}.text"), _text(item["value"], f"{where}.value", empty=True),
            _int(item["turn"], f"{where}.turn", optional=True), _int(item["superseded_by"], f"{where}.superseded_by", optional=True),
            item["forgotten"],
        ))
    _need([w.id for w in writes] == sorted({w.id for w in writes}), "writes", "ids must be distinct and in order")
    write_ids = {w.id for w in writes}
    for w in writes:
        _need(w.superseded_by is None or (w.superseded_by in write_ids and w.superseded_by > w.id),
              f"write {w.id}.superseded_by", "must name a later write of the file")
    return MemoryFile(data["user"], engrams, writes)
