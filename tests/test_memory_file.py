"""chatbot/memory_file.py: the export format round-trips, and a bad file is refused whole, saying where."""

import copy
import json

import pytest

from chatbot.memory_file import EngramEntry, MemoryFile, MemoryFileError, WriteEntry, read_memory_file

FILE = MemoryFile(
    user="ann",
    engrams=[
        EngramEntry(3, "shortterm", "Oriel lives in Vantastad.", 1, 9.5, 2, 1, {4: 2}),
        EngramEntry(4, "longterm", "Bram works at Quillmere.", 2, 3.0, 5, 2, {3: 2}),
    ],
    writes=[
        WriteEntry(1, "Oriel lives in Vantastad.", "Vantastad", 1, 2, False),
        WriteEntry(2, "Oriel moved to Quillmere.", "Quillmere", 2, None, False),
        WriteEntry(5, "Bram works at Quillmere.", "", None, None, True),
    ],
)


def test_a_file_round_trips():
    assert read_memory_file(FILE.to_json()) == FILE
    assert read_memory_file(FILE.to_json().encode()) == FILE
    assert [w.live for w in FILE.writes] == [False, True, False]


@pytest.mark.parametrize(
    "mutate, message",
    [
        (lambda d: d.update(format="other"), "format"),
        (lambda d: d.update(version=2), "version"),
        (lambda d: d["engrams"][0].update(type="eternal"), "type"),
        (lambda d: d["engrams"][0].update(lifespan=float("nan")), "lifespan"),
        (lambda d: d["engrams"][0].update(lifespan=0), "lifespan"),
        (lambda d: d["engrams"][0].update(age=-1), "age"),
        (lambda d: d["engrams"][0].update(age=True), "age"),
        (lambda d: d["engrams"][0].update(links={"77": 1}), "links"),
        (lambda d: d["engrams"][0].update(links={"3": 1}), "links"),  # a link to itself
        (lambda d: d["engrams"][0].update(links={"x": 1}), "links"),
        (lambda d: d["engrams"][1].update(id=3), "distinct"),
        (lambda d: d["engrams"][0].update(text=""), "text"),
        (lambda d: d["engrams"][0].update(text="x" * 8_001), "text"),
        (lambda d: d["engrams"][0].update(extra="__import__('os').system('rm -rf /')"), "unknown fields"),
        (lambda d: d["writes"][0].update(superseded_by=0), "superseded_by"),
        (lambda d: d["writes"][1].update(superseded_by=1), "superseded_by"),  # an earlier write cannot supersede
        (lambda d: d["writes"].reverse(), "in order"),
        (lambda d: d["writes"][0].update(forgotten="no"), "forgotten"),
        (lambda d: d.pop("writes"), "lacks"),
        (lambda d: d.update(engrams={}), "list"),
        # bounds checked before anything is allocated or handed to numpy and SQLite
        (lambda d: d["engrams"][1].update(id=200_000_000), "id"),
        (lambda d: d["engrams"][0].update(age=2**62), "age"),
        (lambda d: d["engrams"][0].update(fire_count=2**63), "fire_count"),
        (lambda d: d["engrams"][0].update(lifespan=1e300), "lifespan"),
        (lambda d: d["engrams"][0].update(links={"9" * 40: 1}), "links"),
        (lambda d: d["engrams"][0].update(text="Oriel \ud800"), "Unicode"),
        (lambda d: d.update(user="\udfff"), "Unicode"),
    ],
)
def test_a_bad_file_is_refused_saying_where(mutate, message):
    data = json.loads(FILE.to_json())
    mutate(data)
    with pytest.raises(MemoryFileError, match=message):
        read_memory_file(json.dumps(data))


@pytest.mark.parametrize("raw", [b"\x80not json", "{", "[]", "null", "[" * 100_000 + "]" * 100_000, "1" * 5_000])
def test_what_is_not_an_export_is_refused(raw):
    with pytest.raises(MemoryFileError):
        read_memory_file(raw)


def test_parsing_is_linear_in_the_engrams():
    count = 50_000  # a quadratic check of links takes minutes here, a linear one a second or two
    data = json.loads(FILE.to_json())
    data["engrams"] = [
        {"id": i, "type": "longterm", "text": f"fact {i}", "turn": None, "lifespan": 1.0, "age": 0, "fire_count": 1,
         "links": {str(i - 1): 1} if i else {}}
        for i in range(count)
    ]
    assert len(read_memory_file(json.dumps(data)).engrams) == count


def test_reading_never_changes_the_parsed_data():
    data = json.loads(FILE.to_json())
    kept = copy.deepcopy(data)
    read_memory_file(json.dumps(data))
    assert data == kept
